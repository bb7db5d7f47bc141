-- Owned by hie-access: audit events of writes, committed in the write's own transaction without
-- waiting for the chain's head, then chained into audit_events by the audit trail's writer
-- (moments later, in batches). A write and its event are still all or nothing; writes no longer
-- queue behind one another for the head row.
CREATE TABLE audit_staged (
    id     TEXT PRIMARY KEY,
    -- A JSON array of the transaction's events.
    events TEXT NOT NULL
);

-- Listings of the trail go by when events occurred (a staged event is chained after events that
-- occurred later), newest first.
CREATE INDEX audit_events_by_time ON audit_events (occurred_at, sequence);
