-- Owned by hie-directory: organisations and practitioners.
-- Portable SQL: the same file migrates SQLite and PostgreSQL. Flags are SMALLINT 0/1 rather than
-- BOOLEAN, because sqlx's Any driver cannot decode SQLite's BOOLEAN.
-- Instants are microseconds since the Unix epoch (UTC) in 64-bit integers, on every backend.

CREATE TABLE organisations (
    code           TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    kind           TEXT NOT NULL,
    hospital_grade TEXT,
    division_code  TEXT NOT NULL,
    active         SMALLINT NOT NULL CHECK (active IN (0, 1)),
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE INDEX organisations_by_division ON organisations (division_code, code);

CREATE TABLE practitioners (
    id                TEXT PRIMARY KEY,
    request_id        TEXT NOT NULL UNIQUE,
    name              TEXT NOT NULL,
    organisation_code TEXT NOT NULL REFERENCES organisations (code),
    role              TEXT NOT NULL,
    specialty         TEXT NOT NULL,
    active            SMALLINT NOT NULL CHECK (active IN (0, 1)),
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

CREATE INDEX practitioners_by_organisation ON practitioners (organisation_code, id);
