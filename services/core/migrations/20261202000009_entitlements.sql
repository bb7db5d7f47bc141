-- Owned by hie-directory: the roles and purposes of use each organisation's systems may assert in
-- the request context (codes joined by commas). NULL on rows written before: the defaults of the
-- organisation's kind apply.
ALTER TABLE organisations ADD COLUMN assertable_roles TEXT;
ALTER TABLE organisations ADD COLUMN assertable_purposes TEXT;
