-- Owned by hie-population: persons, the source records linked to them, and every identifier
-- those records assert. Source records are never deleted.

CREATE TABLE persons (
    id            TEXT PRIMARY KEY,
    -- The person's demographics, copied from the most recently updated linked source record.
    name          TEXT NOT NULL,
    sex           TEXT,
    birth_date    TEXT,
    ethnicity     TEXT,
    phone         TEXT,
    division_code TEXT,
    address_line  TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE source_records (
    id                   TEXT PRIMARY KEY,
    organisation_code    TEXT NOT NULL REFERENCES organisations (code),
    local_patient_number TEXT NOT NULL,
    person_id            TEXT NOT NULL REFERENCES persons (id),
    name                 TEXT NOT NULL,
    -- Lower-cased name, the key names are searched by.
    name_key             TEXT NOT NULL,
    sex                  TEXT,
    birth_date           TEXT,
    ethnicity            TEXT,
    phone                TEXT,
    division_code        TEXT,
    address_line         TEXT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    UNIQUE (organisation_code, local_patient_number)
);

CREATE INDEX source_records_by_person ON source_records (person_id);
CREATE INDEX source_records_by_name ON source_records (name_key);
CREATE INDEX source_records_by_birth_date ON source_records (birth_date);

-- Every identifier a source record asserts, including the record's own local patient number.
-- person_id and organisation_code repeat the record's, so that resolving an identifier to all
-- of its person's cross-references is one indexed query.
CREATE TABLE person_identifiers (
    source_record_id  TEXT NOT NULL REFERENCES source_records (id),
    system            TEXT NOT NULL,
    value             TEXT NOT NULL,
    person_id         TEXT NOT NULL REFERENCES persons (id),
    organisation_code TEXT NOT NULL,
    PRIMARY KEY (source_record_id, system, value)
);

CREATE INDEX person_identifiers_by_value ON person_identifiers (system, value);
CREATE INDEX person_identifiers_by_person ON person_identifiers (person_id);

-- One row per blocking key ever matched on. A registration locks the rows of its keys for the
-- rest of its transaction, so two registrations of the same new resident cannot both create a
-- person.
CREATE TABLE match_locks (
    key TEXT PRIMARY KEY
);
