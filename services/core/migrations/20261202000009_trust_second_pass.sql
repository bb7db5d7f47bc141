-- Owned by hie-directory: the roles and purposes of use each organisation's systems may assert in
-- the request context (codes joined by commas). NULL on rows written before: the defaults of the
-- organisation's kind apply.
ALTER TABLE organisations ADD COLUMN assertable_roles TEXT;
ALTER TABLE organisations ADD COLUMN assertable_purposes TEXT;

-- Owned by hie-population: what a merge did to the surviving person's consent directives (JSON:
-- {"before": directives or null, "after": directives}), so that an unmerge gives them back.
ALTER TABLE person_merges ADD COLUMN into_consent TEXT;

-- Owned by hie-access: the id of the key whose HMAC-SHA256 chains each event (the key itself is
-- held outside the database). NULL for events chained with plain SHA-256 before the trail had a
-- key; `hie audit verify` accepts those only before the first keyed event.
ALTER TABLE audit_events ADD COLUMN key_id TEXT;

-- Owned by hie-population: a person's identifiers of one system, the look-up matching makes for
-- every candidate (the person's identity number). Without it SQLite, which has no statistics
-- before the first ANALYZE, read every identifier of the system per candidate: the demo's
-- hospital records loaded at 20 a second.
CREATE INDEX person_identifiers_by_person_system ON person_identifiers (person_id, system, value);
