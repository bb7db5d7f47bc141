-- $5 to $11 are the demographic columns, in the order of golden::DEMOGRAPHIC_FIELDS.
INSERT INTO source_records (
    id, organisation_code, local_patient_number, person_id,
    {demographic_columns},
    name_key, created_at, updated_at
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)
