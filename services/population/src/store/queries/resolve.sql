-- Every identifier of the person who carries ($1, $2), with the record asserting it: one indexed
-- look-up of the identifier, then one of the person's identifiers.
SELECT x.person_id, x.system, x.value, x.organisation_code, x.source_record_id
FROM person_identifiers x
WHERE x.person_id IN (
    SELECT i.person_id FROM person_identifiers i WHERE i.system = $1 AND i.value = $2
)
ORDER BY x.system, x.value, x.organisation_code, x.source_record_id
