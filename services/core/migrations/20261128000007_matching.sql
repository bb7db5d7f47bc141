-- Owned by hie-population: what probabilistic matching, the review queue and manual decisions
-- keep. (match_locks of migration 2 is no longer used: PostgreSQL registrations now take
-- transaction-scoped advisory locks on their blocking keys, which write nothing.)

-- The blocking keys of every source record: a rule's 64-bit hash of the record's values.
CREATE TABLE match_keys (
    key              BIGINT NOT NULL,
    source_record_id TEXT NOT NULL REFERENCES source_records (id),
    PRIMARY KEY (key, source_record_id)
);

CREATE INDEX match_keys_by_record ON match_keys (source_record_id);

-- Models trained by `hie population train`; the highest version is the one in use.
CREATE TABLE match_models (
    version            BIGINT PRIMARY KEY,
    model              TEXT NOT NULL,
    trained_at         BIGINT NOT NULL,
    trained_on_records BIGINT NOT NULL
);

-- Pairs scored between the thresholds, waiting for a person to decide, and the decisions.
-- A rejected pair is never proposed again.
CREATE TABLE match_reviews (
    id                  TEXT PRIMARY KEY,
    source_record_id    TEXT NOT NULL REFERENCES source_records (id),
    candidate_person_id TEXT NOT NULL REFERENCES persons (id),
    candidate_record_id TEXT NOT NULL REFERENCES source_records (id),
    probability         DOUBLE PRECISION NOT NULL,
    pattern             BIGINT NOT NULL,
    model_version       BIGINT NOT NULL,
    -- pending, linked or rejected
    status              TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    decided_at          BIGINT,
    decided_by          TEXT,
    reason              TEXT,
    UNIQUE (source_record_id, candidate_person_id)
);

CREATE INDEX match_reviews_by_status ON match_reviews (status, created_at);

-- 1 when a person linked the record by hand (review, link, unlink, merge): automatic matching
-- never moves it again.
ALTER TABLE source_records ADD COLUMN linked_manually SMALLINT NOT NULL DEFAULT 0;

-- Set when the person was merged into another; such a person has no records.
ALTER TABLE persons ADD COLUMN merged_into TEXT;

-- Every merge, with the records it moved, so that an unmerge restores exactly what was.
CREATE TABLE person_merges (
    id              TEXT PRIMARY KEY,
    from_person_id  TEXT NOT NULL REFERENCES persons (id),
    into_person_id  TEXT NOT NULL REFERENCES persons (id),
    -- JSON: [{"record": id, "manual": 0|1}, …], the moved records and their earlier flags.
    moved_records   TEXT NOT NULL,
    merged_at       BIGINT NOT NULL,
    merged_by       TEXT NOT NULL,
    reason          TEXT NOT NULL,
    unmerged_at     BIGINT,
    unmerged_by     TEXT,
    unmerge_reason  TEXT
);

CREATE INDEX person_merges_by_from ON person_merges (from_person_id);

-- Owned by hie-core: events written in the same transaction as the change they report, for
-- the events service to deliver (the transactional outbox).
CREATE TABLE outbox_events (
    id         TEXT PRIMARY KEY,
    topic      TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX outbox_events_by_time ON outbox_events (created_at, id);

-- Owned by hie-population: where a long job (re-matching) got to, so that it resumes there.
CREATE TABLE job_checkpoints (
    job        TEXT PRIMARY KEY,
    position   TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
