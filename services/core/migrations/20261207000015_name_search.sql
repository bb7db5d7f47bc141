-- Identity quality II: the keys a name is found by at the reception desk (its pinyin spellings,
-- its initials, the consonant skeleton of its words), written with each record's name. Records
-- registered before this migration are found by their exact name until `hie population rematch`
-- writes their keys.
CREATE TABLE name_search_keys (
    key              TEXT NOT NULL,
    source_record_id TEXT NOT NULL REFERENCES source_records (id),
    PRIMARY KEY (key, source_record_id)
);

CREATE INDEX name_search_keys_by_record ON name_search_keys (source_record_id);
