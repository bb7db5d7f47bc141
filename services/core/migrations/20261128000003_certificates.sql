-- Owned by hie-directory: the client certificates each organisation may connect with (mutual
-- TLS), by the SHA-256 fingerprint of the certificate's DER encoding, hex in lower case.
CREATE TABLE organisation_certificates (
    fingerprint       TEXT PRIMARY KEY,
    organisation_code TEXT NOT NULL REFERENCES organisations (code),
    registered_at     BIGINT NOT NULL,
    revoked_at        BIGINT
);

CREATE INDEX organisation_certificates_by_organisation ON organisation_certificates (organisation_code);
