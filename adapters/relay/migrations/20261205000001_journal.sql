-- The adapter's journal: every message it acknowledged, until the exchange has taken it, and
-- after that (as delivered) for a while, so that a sender's resend is recognised.
CREATE TABLE messages (
    sequence        INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Sending facility and message control id (MSH-4, MSH-10): the message's identity.
    idempotency_key TEXT    NOT NULL UNIQUE,
    -- SHA-256 of the message's bytes: a resend is the same message only if these agree.
    content_hash    TEXT    NOT NULL,
    message_type    TEXT    NOT NULL,
    -- The hospital's patient number: messages about one patient are forwarded in order.
    patient_key     TEXT    NOT NULL,
    received_at_ms  INTEGER NOT NULL,
    raw             BLOB    NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    last_attempt_ms INTEGER,
    delivered_at_ms INTEGER
);
CREATE INDEX messages_by_state ON messages (state, sequence);
