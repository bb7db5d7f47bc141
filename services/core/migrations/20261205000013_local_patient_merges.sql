-- HL7 A40: a hospital merged two of its own patient numbers. The prior number's record is kept
-- (its number still resolves) but retired into the surviving record: it no longer speaks for
-- the person's golden record.
ALTER TABLE source_records ADD COLUMN retired_into TEXT;
