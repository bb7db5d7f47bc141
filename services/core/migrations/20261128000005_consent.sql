-- Owned by hie-access: each person's consent directives. Lists are stored as text (codes joined
-- by commas; grants as organisation|practitioner|expiry-microseconds joined by semicolons), so
-- that one row holds a person's whole directive and one look-up serves a decision.
CREATE TABLE consent_directives (
    person_id             TEXT PRIMARY KEY,
    sharing               SMALLINT CHECK (sharing IN (0, 1)),
    allowed_organisations TEXT NOT NULL,
    denied_organisations  TEXT NOT NULL,
    consented_categories  TEXT NOT NULL,
    grants                TEXT NOT NULL,
    updated_at            BIGINT NOT NULL,
    updated_by            TEXT NOT NULL
);
