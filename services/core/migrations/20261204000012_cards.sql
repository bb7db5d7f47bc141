-- Owned by hie-cards: the cards linked to persons. No card number is stored: `token` is the
-- HMAC-SHA256 of the card's type and number under the token key `token_key_id` names (the key
-- lives outside the database), `last_four` is kept for display. A card keeps its row for ever;
-- its status moves on (lost, revoked, expired, replaced, unlinked) and card_changes keeps every
-- step. `person_id` is the person it was linked to; reads follow merges from there.
CREATE TABLE cards (
    id                 TEXT PRIMARY KEY,
    card_type          TEXT NOT NULL,
    token              TEXT NOT NULL UNIQUE,
    token_key_id       TEXT NOT NULL,
    last_four          TEXT NOT NULL,
    person_id          TEXT NOT NULL,
    status             TEXT NOT NULL,
    expires_on         TEXT,
    replaces           TEXT,
    replaced_by        TEXT,
    linked_at          BIGINT NOT NULL,
    status_changed_at  BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX cards_by_person ON cards (person_id);
-- Replicas read every card at start and poll for the cards changed since, page by page in
-- (updated_at, id) order.
CREATE INDEX cards_by_update ON cards (updated_at, id);
-- One active card of each type but bank cards per person: two concurrent links cannot both win.
CREATE UNIQUE INDEX cards_one_active_per_type ON cards (person_id, card_type)
    WHERE status = 'active' AND card_type <> 'bank';

CREATE TABLE card_changes (
    id                 TEXT PRIMARY KEY,
    card_id            TEXT NOT NULL,
    changed_at         BIGINT NOT NULL,
    change             TEXT NOT NULL,
    status             TEXT NOT NULL,
    person_id          TEXT NOT NULL,
    organisation_code  TEXT,
    user_id            TEXT NOT NULL,
    reason             TEXT
);
CREATE INDEX card_changes_by_card ON card_changes (card_id, changed_at);
