//! The exchange as the forwarder sees it: the calls a translated message makes, over one
//! HTTP/2 connection (mutual TLS in production), each answered as delivered, to retry, or
//! refused for good.

use std::time::Duration;

use hie_core::context::{PURPOSE_HEADER, ROLE_HEADER, USER_HEADER};
use hie_proto::emr::emr_registry_client::EmrRegistryClient;
use hie_proto::population::MergeLocalPatientsRequest;
use hie_proto::population::population_registry_client::PopulationRegistryClient;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

use crate::submission::{Submission, Translated};

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// The exchange could not take it now (unreachable, overloaded, a transient failure): try
    /// again later.
    Retry(String),
    /// The exchange refused it (an unknown patient, a value it does not accept, a permission it
    /// does not grant): it goes to the dead letters, for an operator.
    Refused(String),
    /// The exchange failed on it with an internal error: retried for a while, then a dead letter,
    /// so that a message the exchange cannot process does not hold back the patients who share
    /// its lane for ever.
    Failed(String),
}

/// Who the adapter's calls are made as: the interface user, with the role of a registration
/// desk for ADT and of a clinician for results and documents (the roles whose systems the
/// registries take them from).
#[derive(Debug, Clone)]
pub struct ExchangeClient {
    population: PopulationRegistryClient<Channel>,
    emr: EmrRegistryClient<Channel>,
    user: String,
}

impl ExchangeClient {
    /// A client of the exchange at `url`; it connects when first used, so that the adapter
    /// starts (and journals) while the exchange is down. `tls` is required unless `url` is a
    /// plaintext loopback address.
    pub fn new(url: &str, tls: Option<ClientTlsConfig>, user: &str) -> Result<ExchangeClient, String> {
        let mut endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| format!("--exchange {url}: {e}"))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        match tls {
            Some(tls) => {
                endpoint = endpoint
                    .tls_config(tls)
                    .map_err(|e| format!("--exchange {url}: {e}"))?
            }
            None => {
                let host = endpoint.uri().host().unwrap_or_default();
                let loopback =
                    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
                if !loopback {
                    return Err(format!(
                        "--exchange {url}: patient data leaves this machine only over mutual TLS; give --ca, --cert and --key"
                    ));
                }
            }
        }
        let channel = endpoint.connect_lazy();
        Ok(ExchangeClient {
            population: PopulationRegistryClient::new(channel.clone()),
            emr: EmrRegistryClient::new(channel),
            user: user.to_owned(),
        })
    }

    /// Makes the calls `message` stands for, in order; stops at the first that does not go
    /// through. Every call is idempotent, so a retry of a message that got part of the way
    /// repeats what was done without doing it twice.
    pub async fn deliver(&self, message: &Translated) -> Delivery {
        match self.calls(message).await {
            Ok(()) => Delivery::Delivered,
            Err(status) => classify(&status),
        }
    }

    async fn calls(&self, message: &Translated) -> Result<(), Status> {
        match &message.submission {
            Submission::Patient { record, visit } => {
                let mut population = self.population.clone();
                let registered = population
                    .register_source_record(self.request(record.clone(), "registration_clerk"))
                    .await?
                    .into_inner();
                if let Some(visit) = visit {
                    // The visit goes to the person the record was just linked to: naming them
                    // spares the registry resolving the hospital's number again.
                    let mut visit = visit.as_ref().clone();
                    if !registered.person_id.is_empty() {
                        visit.person = Some(hie_proto::records::PersonSelector {
                            selector: Some(hie_proto::records::person_selector::Selector::PersonId(
                                registered.person_id,
                            )),
                        });
                    }
                    let mut emr = self.emr.clone();
                    emr.register_encounter(self.request(visit, "registration_clerk"))
                        .await?;
                }
            }
            Submission::MergePatients {
                record,
                prior_local_patient_number,
            } => {
                let mut population = self.population.clone();
                population
                    .register_source_record(self.request(record.clone(), "registration_clerk"))
                    .await?;
                let merge = MergeLocalPatientsRequest {
                    organisation_code: record.organisation_code.clone(),
                    prior_local_patient_number: prior_local_patient_number.clone(),
                    surviving_local_patient_number: record.local_patient_number.clone(),
                };
                population
                    .merge_local_patients(self.request(merge, "registration_clerk"))
                    .await?;
            }
            Submission::Visit(visit) => {
                let mut emr = self.emr.clone();
                emr.register_encounter(self.request(visit.as_ref().clone(), "registration_clerk"))
                    .await?;
            }
            Submission::Document(set) => {
                let mut emr = self.emr.clone();
                emr.register_document_set(self.request(set.clone(), "clinician"))
                    .await?;
            }
        }
        Ok(())
    }

    fn request<T>(&self, message: T, role: &'static str) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        if let Ok(user) = self.user.parse() {
            metadata.insert(USER_HEADER, user);
        }
        metadata.insert(ROLE_HEADER, tonic::metadata::MetadataValue::from_static(role));
        metadata.insert(
            PURPOSE_HEADER,
            tonic::metadata::MetadataValue::from_static("treatment"),
        );
        request
    }
}

/// Which answers are worth another try. A refusal of the message itself (its content, the
/// patient it names, what the organisation may do) will not change by trying again; anything
/// about the exchange's state or the network may.
fn classify(status: &Status) -> Delivery {
    let what = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::FailedPrecondition
        | Code::PermissionDenied
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::DataLoss => Delivery::Refused(what),
        Code::Internal => Delivery::Failed(what),
        _ => Delivery::Retry(what),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_of_the_message_is_final_and_an_outage_is_retried() {
        assert!(matches!(
            classify(&Status::not_found("no such patient")),
            Delivery::Refused(_)
        ));
        assert!(matches!(
            classify(&Status::invalid_argument("x")),
            Delivery::Refused(_)
        ));
        assert!(matches!(
            classify(&Status::unavailable("down")),
            Delivery::Retry(_)
        ));
        assert!(matches!(
            classify(&Status::deadline_exceeded("slow")),
            Delivery::Retry(_)
        ));
        assert!(matches!(
            classify(&Status::aborted("conflict")),
            Delivery::Retry(_)
        ));
        // A certificate being renewed: the operator fixes it, the messages wait.
        assert!(matches!(
            classify(&Status::unauthenticated("unknown certificate")),
            Delivery::Retry(_)
        ));
    }

    #[tokio::test]
    async fn plaintext_is_refused_off_loopback() {
        assert!(ExchangeClient::new("http://10.1.2.3:50051", None, "hl7").is_err());
        assert!(ExchangeClient::new("http://127.0.0.1:50051", None, "hl7").is_ok());
    }
}
