-- Owned by hie-directory: an organisation whose very records reveal a sensitive category (a
-- psychiatric hospital: mental health; an HIV/STI clinic; a family-planning service station:
-- reproductive health; a methadone clinic: substance use). A person's records there are shared
-- only where the person consented to that category. NULL for every other organisation.
ALTER TABLE organisations ADD COLUMN sensitive_category TEXT;
