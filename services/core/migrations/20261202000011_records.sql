-- Owned by hie-records: the resident health archive. Each entry is keyed by its source
-- (organisation, the organisation's own entry id); the table holds the current version and
-- health_record_versions every version, the current one included. The payload is the entry's
-- validated content as JSON, in the shape hie_records::domain writes. `person_id` is the person
-- the entry was submitted for; reads follow merges from there (the population registry's
-- persons.merged_into), so a merge or an unmerge moves nothing here.
CREATE TABLE health_record_entries (
    id                        TEXT PRIMARY KEY,
    person_id                 TEXT NOT NULL,
    source_organisation_code  TEXT NOT NULL,
    source_entry_id           TEXT NOT NULL,
    entry_type                TEXT NOT NULL,
    recorded_on               TEXT NOT NULL,
    version                   BIGINT NOT NULL,
    content_hash              TEXT NOT NULL,
    payload                   TEXT NOT NULL,
    sensitive_category        TEXT,
    submitted_at              BIGINT NOT NULL,
    UNIQUE (source_organisation_code, source_entry_id)
);
CREATE INDEX health_record_entries_by_person ON health_record_entries (person_id, recorded_on);

CREATE TABLE health_record_versions (
    entry_id            TEXT NOT NULL,
    version             BIGINT NOT NULL,
    recorded_on         TEXT NOT NULL,
    content_hash        TEXT NOT NULL,
    payload             TEXT NOT NULL,
    sensitive_category  TEXT,
    submitted_at        BIGINT NOT NULL,
    submitted_by        TEXT NOT NULL,
    PRIMARY KEY (entry_id, version)
);

-- Owned by hie-emr: visits, one row per (organisation, visit number), updated as the visit
-- moves (an admission, a transfer, the discharge).
CREATE TABLE encounters (
    id                     TEXT PRIMARY KEY,
    person_id              TEXT NOT NULL,
    organisation_code      TEXT NOT NULL,
    visit_number           TEXT NOT NULL,
    kind                   TEXT NOT NULL,
    department             TEXT NOT NULL,
    attending_practitioner TEXT,
    diagnoses              TEXT NOT NULL,
    sensitive_category     TEXT,
    started_at             BIGINT NOT NULL,
    ended_at               BIGINT,
    registered_at          BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL,
    UNIQUE (organisation_code, visit_number)
);
CREATE INDEX encounters_by_person ON encounters (person_id, started_at);

-- Owned by hie-emr: the document registry (XDS.b DocumentEntry), its submission sets and
-- associations, and the content kept in the exchange. A document is never deleted: a replaced
-- one is deprecated. `repository_organisation_code` is empty when the exchange keeps the
-- content, else the hospital that does. `event_codes` is the codes separated and enclosed by
-- spaces (' I10 E11.9 '), so that one LIKE finds a code on either database. `class_code` and
-- `type_code` hold the codes the stored query filters on; `codes` every coded attribute in full
-- (scheme, code, display) as JSON. `sensitive_category_named` is the category the source named;
-- `sensitive_category` the one the document reveals (named, or revealed by an event code).
CREATE TABLE document_submission_sets (
    id                        TEXT PRIMARY KEY,
    unique_id                 TEXT NOT NULL UNIQUE,
    source_organisation_code  TEXT NOT NULL,
    submitted_at              BIGINT NOT NULL,
    submitted_by              TEXT NOT NULL
);

CREATE TABLE documents (
    id                            TEXT PRIMARY KEY,
    unique_id                     TEXT NOT NULL UNIQUE,
    submission_set_id             TEXT NOT NULL,
    source_organisation_code      TEXT NOT NULL,
    person_id                     TEXT NOT NULL,
    source_patient_system         TEXT NOT NULL,
    source_patient_value          TEXT NOT NULL,
    class_code                    TEXT NOT NULL,
    type_code                     TEXT NOT NULL,
    codes                         TEXT NOT NULL,
    confidentiality_code          TEXT NOT NULL,
    sensitive_category_named      TEXT,
    event_codes                   TEXT NOT NULL,
    creation_time                 BIGINT NOT NULL,
    service_start_time            BIGINT,
    service_stop_time             BIGINT,
    author_person                 TEXT NOT NULL,
    author_institution            TEXT NOT NULL,
    author_role                   TEXT NOT NULL,
    author_specialty              TEXT NOT NULL,
    language_code                 TEXT NOT NULL,
    mime_type                     TEXT NOT NULL,
    content_hash                  TEXT NOT NULL,
    content_size                  BIGINT NOT NULL,
    repository_organisation_code  TEXT NOT NULL,
    status                        TEXT NOT NULL,
    title                         TEXT NOT NULL,
    legal_authenticator           TEXT NOT NULL,
    observations                  TEXT NOT NULL,
    sensitive_category            TEXT,
    registered_at                 BIGINT NOT NULL,
    deprecated_at                 BIGINT
);
CREATE INDEX documents_by_person ON documents (person_id, creation_time);

CREATE TABLE document_associations (
    id                  TEXT PRIMARY KEY,
    kind                TEXT NOT NULL,
    source_document_id  TEXT NOT NULL,
    target_document_id  TEXT NOT NULL,
    submission_set_id   TEXT NOT NULL,
    created_at          BIGINT NOT NULL
);
CREATE INDEX document_associations_by_target ON document_associations (target_document_id);

-- BYTEA is PostgreSQL's binary type; SQLite stores the bytes as given under any declared type.
CREATE TABLE document_contents (
    document_id  TEXT PRIMARY KEY,
    content      BYTEA NOT NULL
);

-- Owned by hie-population: reads of the registries follow merges from a survivor to the persons
-- merged into it.
CREATE INDEX persons_by_merged_into ON persons (merged_into);
