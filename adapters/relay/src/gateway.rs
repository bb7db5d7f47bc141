//! The hospital's side of federated retrieval: `hie.hospital.v1.HospitalGateway`, served by the
//! adapter for documents the hospital keeps itself. The exchange registered their metadata
//! (hash and size) and fetches the content here when someone retrieves one; it checks the bytes
//! against what was registered. Only the exchange may ask: over mutual TLS, the client
//! certificate must be one of the fingerprints the hospital configured (its CA may also have
//! issued other hospitals' certificates).
//!
//! The documents are files in one folder, each named by its unique id with every character other
//! than letters, digits, `.`, `_` and `-` written as `%XX`, optionally followed by an extension
//! that gives its MIME type (`urn%3Aoid%3A1.2.3.pdf`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hie_proto::hospital::hospital_gateway_server::{HospitalGateway, HospitalGatewayServer};
use hie_proto::hospital::{RetrieveDocumentRequest, RetrieveDocumentResponse};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

/// The gateway's mutual TLS: its own certificate, the CA of the exchange's certificate, and the
/// fingerprints (SHA-256 of the DER, hex) of the exchange certificates it answers.
#[derive(Debug, Clone)]
pub struct GatewayTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    pub exchange_fingerprints: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub listen: SocketAddr,
    pub documents_folder: PathBuf,
    /// Required unless the gateway listens on a loopback address.
    pub tls: Option<GatewayTls>,
}

/// The documents of a folder, as the gateway serves them.
#[derive(Debug, Clone)]
pub struct FolderGateway {
    folder: PathBuf,
    /// Empty when the gateway serves plaintext on loopback (development).
    exchange_fingerprints: Vec<String>,
}

/// The file stem a unique id is kept under.
pub fn file_stem(unique_id: &str) -> String {
    unique_id
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn mime_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("pdf") => "application/pdf",
        Some("txt") => "text/plain",
        Some("xml") | Some("cda") => "text/xml",
        Some("json") => "application/fhir+json",
        Some("html") | Some("htm") => "text/html",
        Some("jpg") | Some("jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("dcm") => "application/dicom",
        _ => "application/octet-stream",
    }
}

impl FolderGateway {
    /// The file keeping `unique_id`: the stem alone, or the stem and one extension. The stem's
    /// escaping keeps every lookup inside the folder (no `/`, and `..` only as part of a name).
    fn file_of(&self, unique_id: &str) -> std::io::Result<Option<PathBuf>> {
        let stem = file_stem(unique_id);
        if stem.starts_with('.') {
            return Ok(None);
        }
        let exact = self.folder.join(&stem);
        if exact.is_file() {
            return Ok(Some(exact));
        }
        let prefix = format!("{stem}.");
        for entry in std::fs::read_dir(&self.folder)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(extension) = name.strip_prefix(&prefix)
                && !extension.contains('.')
                && entry.file_type()?.is_file()
            {
                return Ok(Some(entry.path()));
            }
        }
        Ok(None)
    }

    fn check_caller<T>(&self, request: &Request<T>) -> Result<(), Status> {
        if self.exchange_fingerprints.is_empty() {
            return Ok(());
        }
        let presented = request
            .peer_certs()
            .and_then(|certs| certs.first().map(|c| hie_transport::pki::fingerprint(c.as_ref())));
        match presented {
            Some(fingerprint)
                if self
                    .exchange_fingerprints
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(&fingerprint)) =>
            {
                Ok(())
            }
            _ => Err(Status::permission_denied(
                "this gateway answers only the exchange's certificate",
            )),
        }
    }
}

#[tonic::async_trait]
impl HospitalGateway for FolderGateway {
    async fn retrieve_document(
        &self,
        request: Request<RetrieveDocumentRequest>,
    ) -> Result<Response<RetrieveDocumentResponse>, Status> {
        self.check_caller(&request)?;
        let request = request.into_inner();
        let unique_id = request.unique_id.trim();
        if unique_id.is_empty() || unique_id.len() > 128 {
            return Err(Status::invalid_argument(
                "unique_id: expected 1 to 128 characters",
            ));
        }
        let path = self.file_of(unique_id).map_err(|e| {
            tracing::error!(error = %e, "cannot read the documents folder");
            Status::unavailable("the hospital's document store cannot be read right now")
        })?;
        let Some(path) = path else {
            return Err(Status::not_found(
                "the hospital keeps no document under this unique_id",
            ));
        };
        let content = tokio::fs::read(&path).await.map_err(|e| {
            tracing::error!(error = %e, "cannot read a document");
            Status::unavailable("the hospital's document store cannot be read right now")
        })?;
        tracing::info!(
            requesting_organisation = %request.requesting_organisation_code,
            requesting_user = %request.requesting_user,
            bytes = content.len(),
            "document served to the exchange"
        );
        Ok(Response::new(RetrieveDocumentResponse {
            content,
            mime_type: mime_type(&path).to_owned(),
        }))
    }
}

/// Binds and serves the gateway until `shutdown` turns true; returns where it listens.
pub async fn serve(
    settings: &GatewaySettings,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), String> {
    if !settings.documents_folder.is_dir() {
        return Err(format!(
            "--documents-folder {}: not a folder",
            settings.documents_folder.display()
        ));
    }
    let mut server = Server::builder();
    let fingerprints = match &settings.tls {
        Some(tls) => {
            let read = |path: &Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
            let config = ServerTlsConfig::new()
                .identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?))
                .client_ca_root(tonic::transport::Certificate::from_pem(read(&tls.client_ca)?));
            server = server.tls_config(config).map_err(|e| e.to_string())?;
            if tls.exchange_fingerprints.is_empty() {
                return Err(
                    "the gateway needs the exchange's certificate fingerprint (--exchange-fingerprint)"
                        .to_owned(),
                );
            }
            tls.exchange_fingerprints.clone()
        }
        None if settings.listen.ip().is_loopback() => Vec::new(),
        None => {
            return Err(format!(
                "--gateway-listen {}: documents leave this machine only over mutual TLS; give the gateway's certificate",
                settings.listen
            ));
        }
    };
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let gateway = FolderGateway {
        folder: settings.documents_folder.clone(),
        exchange_fingerprints: fingerprints,
    };
    let router = server.add_service(HospitalGatewayServer::new(gateway));
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let task = tokio::spawn(async move {
        let stopped = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, stopped).await {
            tracing::error!(error = %e, "the hospital gateway stopped");
        }
    });
    Ok((address, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unique_id_maps_to_one_file_name_inside_the_folder() {
        assert_eq!(file_stem("urn:oid:1.2.3"), "urn%3Aoid%3A1.2.3");
        assert_eq!(file_stem("../../etc/passwd"), "..%2F..%2Fetc%2Fpasswd");
        assert!(!file_stem("a/b\\c").contains(['/', '\\']));
    }

    #[tokio::test]
    async fn a_document_is_found_with_or_without_its_extension_and_nothing_outside_the_folder() {
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(folder.path().join("urn%3Aoid%3A1.2.3.pdf"), b"%PDF").unwrap();
        std::fs::write(folder.path().join("plain"), b"text").unwrap();
        let gateway = FolderGateway {
            folder: folder.path().to_path_buf(),
            exchange_fingerprints: Vec::new(),
        };
        let found = gateway
            .retrieve_document(Request::new(RetrieveDocumentRequest {
                unique_id: "urn:oid:1.2.3".into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (found.content.as_slice(), found.mime_type.as_str()),
            (&b"%PDF"[..], "application/pdf")
        );
        let plain = gateway.file_of("plain").unwrap();
        assert!(plain.is_some());
        for missing in ["urn:oid:9", "../plain", ".", ".."] {
            let refused = gateway
                .retrieve_document(Request::new(RetrieveDocumentRequest {
                    unique_id: missing.into(),
                    ..Default::default()
                }))
                .await
                .unwrap_err();
            assert_eq!(refused.code(), tonic::Code::NotFound, "{missing}");
        }
    }
}
