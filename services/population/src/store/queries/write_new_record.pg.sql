-- PostgreSQL only: every row a new record's registration writes, in one statement (data-modifying
-- CTEs), so that a registration costs one round trip for its writes instead of six. Foreign keys
-- are checked at the end of the statement, when the person and the record both exist.
-- $1 record id, $2 organisation, $3 local number, $4 person id, $5..$11 the demographic columns (golden::DEMOGRAPHIC_FIELDS),
-- $12 name key, $13 now, $14 1 to create the person, 0 to apply the record to its golden record,
-- 2 to leave the person's row to the caller,
-- $15 identifiers as JSON [{"system","value"}], $16 blocking keys as comma-separated integers,
-- $17 the outbox events as JSON (hie_core::outbox::OutboxEvent::to_json), $18 and $19 the staged
-- audit row or NULL, $20 the name's search keys as comma-separated text.
WITH created AS (
    INSERT INTO persons (id, {demographic_columns}, created_at, updated_at)
    SELECT $4, $5, $6, $7, $8, $9, $10, $11, $13, $13 WHERE $14 = 1
), joined AS (
    UPDATE persons SET {apply_newest}, updated_at = $13
    WHERE id = $4 AND $14 = 0
), record AS (
    INSERT INTO source_records (
        id, organisation_code, local_patient_number, person_id,
        {demographic_columns},
        name_key, created_at, updated_at
    ) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)
), identifiers AS (
    INSERT INTO person_identifiers (source_record_id, system, value, person_id, organisation_code)
    SELECT $1, x.system, x.value, $4, $2 FROM json_to_recordset($15::json) AS x(system text, value text)
), keys AS (
    INSERT INTO match_keys (key, source_record_id)
    SELECT k::bigint, $1 FROM unnest(string_to_array($16::text, ',')) AS k WHERE $16::text <> ''
), names AS (
    INSERT INTO name_search_keys (key, source_record_id)
    SELECT k, $1 FROM unnest(string_to_array($20::text, ',')) AS k WHERE $20::text <> ''
), outbox AS (
    INSERT INTO outbox_events (id, topic, person_id, organisation_code, schema_version, payload, created_at)
    SELECT x.id, x.topic, x.person_id, x.organisation_code, x.schema_version, x.payload, x.created_at
    FROM json_to_recordset($17::json) AS {outbox_recordset}
)
INSERT INTO audit_staged (id, events) SELECT $18::text, $19::text WHERE $18::text IS NOT NULL
