//! A development certificate authority for mutual TLS: `hie certs init` makes the CA and the
//! server's certificate, `hie certs issue --org CODE` an organisation's client certificate, whose
//! URI subject alternative name `urn:hie:org:<CODE>` names the organisation. Production uses the
//! region's own CA; the exchange only needs its root and each client certificate's fingerprint.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType,
};

/// The files of a PKI folder.
#[derive(Debug, Clone)]
pub struct PkiFolder {
    pub dir: PathBuf,
}

impl PkiFolder {
    pub fn new(dir: impl Into<PathBuf>) -> PkiFolder {
        PkiFolder { dir: dir.into() }
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
    pub fn organisation_cert(&self, code: &str) -> PathBuf {
        self.dir.join("orgs").join(format!("{code}.pem"))
    }
    pub fn organisation_key(&self, code: &str) -> PathBuf {
        self.dir.join("orgs").join(format!("{code}.key"))
    }
}

/// The SHA-256 fingerprint of a certificate's DER encoding, lower-case hex: how the directory
/// knows which organisation a client certificate belongs to.
pub fn fingerprint(der: &[u8]) -> String {
    hie_core::digest::sha256_hex(der)
}

/// The fingerprint of the first certificate in a PEM file.
pub fn fingerprint_of_pem(pem: &str) -> Result<String, String> {
    let der = pem_to_der(pem).ok_or("the file holds no PEM certificate")?;
    Ok(fingerprint(&der))
}

fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END CERTIFICATE-----"))
        .collect();
    decode_base64(&body)
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut buffer, mut bits) = (0u32, 0);
    for byte in text.bytes().filter(|b| !b.is_ascii_whitespace() && *b != b'=') {
        let value = ALPHABET.iter().position(|&a| a == byte)? as u32;
        buffer = (buffer << 6) | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    (!out.is_empty()).then_some(out)
}

fn write_private(path: &Path, contents: &str) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    #[cfg(unix)]
    if path.extension().is_some_and(|e| e == "key") {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot restrict {}: {e}", path.display()))?;
    }
    Ok(())
}

fn rcgen_error(e: rcgen::Error) -> String {
    format!("certificate generation failed: {e}")
}

/// Creates the CA and the server's certificate (for `localhost`, 127.0.0.1 and `server_names`).
/// Refuses to overwrite an existing CA.
pub fn init(folder: &PkiFolder, server_names: &[String]) -> Result<(), String> {
    if folder.ca_cert().exists() {
        return Err(format!(
            "{} exists already; a CA is made once",
            folder.ca_cert().display()
        ));
    }
    let ca_key = KeyPair::generate().map_err(rcgen_error)?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, "hie development CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let ca_cert = ca.self_signed(&ca_key).map_err(rcgen_error)?;
    write_private(&folder.ca_cert(), &ca_cert.pem())?;
    write_private(&folder.ca_key(), &ca_key.serialize_pem())?;

    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    names.extend(server_names.iter().cloned());
    let mut server = CertificateParams::new(names).map_err(rcgen_error)?;
    server.distinguished_name.push(DnType::CommonName, "hie exchange");
    // The exchange's one identity: its server certificate, and its client certificate when it
    // calls a hospital's gateway.
    server.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let server_key = KeyPair::generate().map_err(rcgen_error)?;
    let issuer = Issuer::new(ca, ca_key);
    let server_cert = server.signed_by(&server_key, &issuer).map_err(rcgen_error)?;
    write_private(&folder.server_cert(), &server_cert.pem())?;
    write_private(&folder.server_key(), &server_key.serialize_pem())?;
    Ok(())
}

/// Issues an organisation's client certificate; returns its fingerprint.
pub fn issue_organisation(folder: &PkiFolder, code: &str) -> Result<String, String> {
    let ca_pem = std::fs::read_to_string(folder.ca_cert()).map_err(|e| {
        format!(
            "cannot read {} (run `hie certs init` first): {e}",
            folder.ca_cert().display()
        )
    })?;
    let ca_key_pem = std::fs::read_to_string(folder.ca_key())
        .map_err(|e| format!("cannot read {}: {e}", folder.ca_key().display()))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(rcgen_error)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(rcgen_error)?;

    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, code);
    let uri = format!("urn:hie:org:{code}");
    params.subject_alt_names = vec![SanType::URI(uri.try_into().map_err(rcgen_error)?)];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_after = rcgen::date_time_ymd(2031, 1, 1);
    let key = KeyPair::generate().map_err(rcgen_error)?;
    let cert = params.signed_by(&key, &issuer).map_err(rcgen_error)?;
    write_private(&folder.organisation_cert(code), &cert.pem())?;
    write_private(&folder.organisation_key(code), &key.serialize_pem())?;
    Ok(fingerprint(cert.der()))
}

/// The organisation code a client certificate names in its `urn:hie:org:<CODE>` URI SAN.
pub fn organisation_in_certificate(der: &[u8]) -> Option<String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    let names = certificate.subject_alternative_name().ok()??;
    names.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) => uri.strip_prefix("urn:hie:org:").map(str::to_owned),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_certificate_names_its_organisation_and_its_fingerprint_is_stable() {
        let dir = std::env::temp_dir().join(format!("hie-pki-{}", uuid::Uuid::now_v7()));
        let folder = PkiFolder::new(&dir);
        init(&folder, &[]).unwrap();
        assert!(init(&folder, &[]).is_err(), "a CA is made once");
        let fingerprint = issue_organisation(&folder, "QDN-H01").unwrap();
        let pem = std::fs::read_to_string(folder.organisation_cert("QDN-H01")).unwrap();
        assert_eq!(fingerprint_of_pem(&pem).unwrap(), fingerprint);
        let der = pem_to_der(&pem).unwrap();
        assert_eq!(organisation_in_certificate(&der).as_deref(), Some("QDN-H01"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
