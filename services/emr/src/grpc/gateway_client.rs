//! The client of hospitals' gateways (`hie.hospital.v1.HospitalGateway`): one lazily connected
//! channel per hospital, over mutual TLS with the exchange's identity (plaintext only to a
//! loopback address, for development and tests).

use std::collections::BTreeMap;
use std::time::Duration;

use hie_core::Error;
use hie_core::context::RequestContext;
use hie_core::domain::OrganisationCode;
use hie_proto::hospital as proto;
use hie_proto::hospital::hospital_gateway_client::HospitalGatewayClient;
use tonic::transport::{Channel, ClientTlsConfig};

use crate::domain::gateway::{BoxFuture, HospitalGateways, not_configured};

/// Where one hospital's gateway listens, and how to trust it.
#[derive(Debug, Clone)]
pub struct GatewayEndpoint {
    pub organisation: OrganisationCode,
    /// `https://host:port`, or `http://127.0.0.1:port` for development.
    pub url: String,
    /// Required for `https`: the CA, the name on the gateway's certificate, and the exchange's
    /// own certificate and key.
    pub tls: Option<ClientTlsConfig>,
}

/// Every configured hospital's gateway.
#[derive(Debug, Clone)]
pub struct GrpcGateways {
    channels: BTreeMap<OrganisationCode, Channel>,
    timeout: Duration,
    max_content_bytes: usize,
}

impl GrpcGateways {
    /// Prepares a channel per endpoint (connected at first use). Plaintext to anything but a
    /// loopback address is refused: documents would cross the network unencrypted.
    pub fn new(
        endpoints: Vec<GatewayEndpoint>,
        timeout: Duration,
        max_content_bytes: usize,
    ) -> Result<GrpcGateways, Error> {
        let mut channels = BTreeMap::new();
        for (i, endpoint) in endpoints.into_iter().enumerate() {
            let field = format!("hospital_gateways[{i}].url");
            let mut channel = Channel::from_shared(endpoint.url.clone())
                .map_err(|e| Error::precondition(&field, e.to_string()))?
                .timeout(timeout)
                // A retrieve is one small request and one answer: waiting to coalesce packets
                // (Nagle) would add tens of milliseconds to every call.
                .tcp_nodelay(true);
            match endpoint.tls {
                Some(tls) => {
                    channel = channel
                        .tls_config(tls)
                        .map_err(|e| Error::precondition(&field, e.to_string()))?;
                }
                None => {
                    let host = channel.uri().host().unwrap_or_default().to_owned();
                    let loopback = host == "localhost"
                        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
                    if !loopback {
                        return Err(Error::precondition(
                            field,
                            format!(
                                "{} is plaintext to {host}, which is not loopback; use https with a ca",
                                endpoint.url
                            ),
                        ));
                    }
                }
            }
            channels.insert(endpoint.organisation, channel.connect_lazy());
        }
        Ok(GrpcGateways {
            channels,
            timeout,
            max_content_bytes,
        })
    }
}

impl HospitalGateways for GrpcGateways {
    fn retrieve<'a>(
        &'a self,
        hospital: &'a OrganisationCode,
        unique_id: &'a str,
        context: &'a RequestContext,
    ) -> BoxFuture<'a, Result<Vec<u8>, Error>> {
        Box::pin(async move {
            let channel = self
                .channels
                .get(hospital)
                .cloned()
                .ok_or_else(|| not_configured(hospital))?;
            let mut client = HospitalGatewayClient::new(channel)
                .max_decoding_message_size(self.max_content_bytes.saturating_add(64 * 1024));
            let mut request = tonic::Request::new(proto::RetrieveDocumentRequest {
                unique_id: unique_id.to_owned(),
                requesting_organisation_code: context
                    .organisation
                    .as_ref()
                    .map(|o| o.to_string())
                    .unwrap_or_default(),
                requesting_user: context.user_id.clone(),
            });
            request.set_timeout(self.timeout);
            match client.retrieve_document(request).await {
                Ok(response) => Ok(response.into_inner().content),
                Err(status) if status.code() == tonic::Code::NotFound => Err(Error::NotFound(format!(
                    "hospital {hospital} does not have document {unique_id}"
                ))),
                Err(status) => Err(Error::Unavailable(format!(
                    "hospital {hospital}'s gateway did not answer: {}",
                    status.message()
                ))),
            }
        })
    }
}
