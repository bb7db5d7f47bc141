-- Owned by hie-core: the outbox becomes typed, so that the events service can filter and deliver
-- without opening payloads. `topic` keeps its name and holds the event type's code
-- (`hie_core::vocabulary::EventType`); whose the event is and where it happened get columns of
-- their own, and the payload's schema version says which shape it has. Events written before
-- this change have no person or organisation column (their payloads still name them) and are
-- schema version 1.
ALTER TABLE outbox_events ADD COLUMN person_id TEXT;
ALTER TABLE outbox_events ADD COLUMN organisation_code TEXT;
ALTER TABLE outbox_events ADD COLUMN schema_version INTEGER NOT NULL DEFAULT 1;

-- The events service reads a person's events in order, and a type's since a cursor.
CREATE INDEX outbox_events_by_person ON outbox_events (person_id, id);
CREATE INDEX outbox_events_by_type ON outbox_events (topic, id);
