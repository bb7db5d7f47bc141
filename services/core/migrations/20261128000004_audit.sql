-- Owned by hie-access: the audit trail. Append-only and hash-chained: each event's hash is
-- SHA-256 over the previous event's hash and a canonical encoding of the event, so that
-- `hie audit verify` finds any edited event and any gap where one was deleted.
CREATE TABLE audit_events (
    sequence          BIGINT PRIMARY KEY,
    occurred_at       BIGINT NOT NULL,
    request_id        TEXT NOT NULL,
    organisation_code TEXT,
    user_id           TEXT NOT NULL,
    role              TEXT NOT NULL,
    purpose           TEXT NOT NULL,
    reason            TEXT,
    action            TEXT NOT NULL,
    person_id         TEXT,
    resource_type     TEXT NOT NULL,
    resource_id       TEXT,
    outcome           TEXT NOT NULL,
    outcome_reason    TEXT,
    emergency         SMALLINT NOT NULL CHECK (emergency IN (0, 1)),
    previous_hash     TEXT NOT NULL,
    hash              TEXT NOT NULL
);

CREATE INDEX audit_events_by_person ON audit_events (person_id, sequence);
CREATE INDEX audit_events_by_organisation ON audit_events (organisation_code, sequence);

-- The head of the chain: the last sequence number handed out and the hash of that event. Its one
-- row is the lock that orders appends.
CREATE TABLE audit_head (
    id       SMALLINT PRIMARY KEY CHECK (id = 1),
    sequence BIGINT NOT NULL,
    hash     TEXT NOT NULL
);

INSERT INTO audit_head (id, sequence, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
