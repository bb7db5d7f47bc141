-- The outbox becomes an ordered event log (owned by hie-events): each event gets a position, in
-- the order the sequencer saw the events committed. Ids (UUID v7) are made inside transactions
-- and so are not in commit order: a subscriber resuming after an id could miss an event whose
-- transaction committed later with a smaller id. A position is given only to committed events,
-- under one lock, so every event a reader sees below the head was there before the head moved.
ALTER TABLE outbox_events ADD COLUMN log_position BIGINT;
CREATE UNIQUE INDEX outbox_events_by_position ON outbox_events (log_position);
CREATE INDEX outbox_events_unsequenced ON outbox_events (created_at, id) WHERE log_position IS NULL;

-- Durable subscriptions (hie-events). The filter is JSON; positions are log positions.
CREATE TABLE event_subscriptions (
    id                    TEXT PRIMARY KEY,
    organisation_code     TEXT NOT NULL,
    filter                TEXT NOT NULL,
    channel               TEXT NOT NULL,
    start_position        BIGINT NOT NULL,
    acknowledged_position BIGINT NOT NULL,
    created_at            BIGINT NOT NULL,
    created_by            TEXT NOT NULL,
    role                  TEXT NOT NULL,
    purpose               TEXT NOT NULL,
    cancelled_at          BIGINT
);
CREATE INDEX event_subscriptions_by_organisation ON event_subscriptions (organisation_code, id);

-- The telemedicine service-item catalogue (hie-telemedicine). Money in fen.
CREATE TABLE service_items (
    code                        TEXT PRIMARY KEY,
    name                        TEXT NOT NULL,
    price_fen                   BIGINT NOT NULL CHECK (price_fen >= 0),
    reimbursable                SMALLINT NOT NULL CHECK (reimbursable IN (0, 1)),
    reimbursable_ratio_permille BIGINT NOT NULL CHECK (reimbursable_ratio_permille BETWEEN 0 AND 1000),
    active_from                 BIGINT NOT NULL,
    active_until                BIGINT,
    updated_at                  BIGINT NOT NULL,
    updated_by                  TEXT NOT NULL
);

-- Consults between clinics and hospitals (hie-telemedicine).
CREATE TABLE consults (
    id                       TEXT PRIMARY KEY,
    person_id                TEXT NOT NULL,
    patient_system           TEXT NOT NULL,
    patient_value            TEXT NOT NULL,
    requesting_organisation  TEXT NOT NULL,
    consulting_organisation  TEXT NOT NULL,
    specialty                TEXT NOT NULL,
    reason                   TEXT NOT NULL,
    service_item_code        TEXT NOT NULL,
    price_fen                BIGINT NOT NULL,
    attachments              TEXT NOT NULL,
    status                   TEXT NOT NULL,
    consultant               TEXT,
    access_expires_at        BIGINT,
    report_unique_id         TEXT,
    requested_at             BIGINT NOT NULL,
    updated_at               BIGINT NOT NULL
);
CREATE INDEX consults_by_requester ON consults (requesting_organisation, id);
CREATE INDEX consults_by_consultant ON consults (consulting_organisation, id);

-- Each step of a consult: who did what, when.
CREATE TABLE consult_steps (
    consult_id        TEXT NOT NULL,
    step_number       BIGINT NOT NULL,
    step              TEXT NOT NULL,
    organisation_code TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    at                BIGINT NOT NULL,
    note              TEXT NOT NULL,
    PRIMARY KEY (consult_id, step_number)
);
