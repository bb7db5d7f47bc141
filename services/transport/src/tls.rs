//! Mutual TLS configuration, both sides: the server presents its certificate and requires a
//! client certificate issued by the client CA; a client (an adapter, a benchmark, a test) trusts
//! the exchange's CA and presents its organisation's certificate.

use std::path::Path;
use std::time::Duration;

use hie_core::Error;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, ServerTlsConfig};

fn read(path: &Path, what: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path)
        .map_err(|e| Error::precondition("tls", format!("cannot read the {what} {}: {e}", path.display())))
}

/// The server's side: its certificate and key, and the CA whose client certificates it accepts
/// (one is required: `client_auth_optional` stays false).
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    handshake_timeout: Duration,
) -> Result<ServerTlsConfig, Error> {
    let identity = Identity::from_pem(read(cert, "server certificate")?, read(key, "server key")?);
    let client_ca = Certificate::from_pem(read(client_ca, "client CA certificate")?);
    Ok(ServerTlsConfig::new()
        .identity(identity)
        .client_ca_root(client_ca)
        .timeout(handshake_timeout))
}

/// A client's side: trusts `ca` for a server named `server_name`, and presents `identity`
/// (certificate and key files of its organisation) when given.
pub fn client_config(
    ca: &Path,
    server_name: &str,
    identity: Option<(&Path, &Path)>,
) -> Result<ClientTlsConfig, Error> {
    let mut config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(ca, "CA certificate")?))
        .domain_name(server_name);
    if let Some((cert, key)) = identity {
        config = config.identity(Identity::from_pem(
            read(cert, "client certificate")?,
            read(key, "client key")?,
        ));
    }
    Ok(config)
}

/// A channel to `url` (`https://host:port`) over mutual TLS with `config`.
pub async fn connect(url: &str, config: ClientTlsConfig) -> Result<Channel, Error> {
    Channel::from_shared(url.to_owned())
        .map_err(|e| Error::invalid("url", e.to_string()))?
        .tls_config(config)
        .map_err(|e| Error::invalid("tls", e.to_string()))?
        .connect()
        .await
        .map_err(|e| Error::Unavailable(format!("cannot connect to {url}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_certificate_file_is_named_in_the_refusal() {
        let missing = Path::new("/nonexistent/hie/ca.pem");
        let refused = client_config(missing, "localhost", None).unwrap_err();
        assert!(
            matches!(&refused, Error::FailedPrecondition { field, reason } if field == "tls" && reason.contains("/nonexistent/hie/ca.pem")),
            "{refused:?}"
        );
        let refused = server_config(missing, missing, missing, Duration::from_secs(1)).unwrap_err();
        assert!(refused.to_string().contains("server certificate"), "{refused}");
    }

    #[test]
    fn a_client_presents_its_organisations_certificate_from_the_development_pki() {
        let folder = std::env::temp_dir().join(format!("hie-tls-{}", uuid::Uuid::now_v7()));
        let pki = crate::pki::PkiFolder::new(&folder);
        crate::pki::init(&pki, &[]).unwrap();
        crate::pki::issue_organisation(&pki, "QDN-H01").unwrap();
        let with_identity = client_config(
            &pki.ca_cert(),
            "localhost",
            Some((
                &pki.organisation_cert("QDN-H01"),
                &pki.organisation_key("QDN-H01"),
            )),
        );
        assert!(with_identity.is_ok(), "{with_identity:?}");
        let _ = std::fs::remove_dir_all(&folder);
    }
}
