//! `hie adapter fhir` as a process: the shared relay (journal, forwarder, gateway) with the FHIR
//! endpoint as its intake.

use std::net::SocketAddr;
use std::sync::Arc;

use hie_adapter_relay::run::RelaySettings;
pub use hie_adapter_relay::run::RunningAdapter;
use tokio::net::TcpListener;

use crate::intake::{FhirTranslator, Intake};
use crate::poll::{PollSettings, Poller};

#[derive(Debug, Clone)]
pub struct FhirSettings {
    /// Where the FHIR endpoint listens (`http://ADDR/fhir`).
    pub listen: SocketAddr,
    /// Accept plaintext HTTP beyond loopback (a hospital network the operator vouches for).
    pub plaintext_on_network: bool,
    pub max_body_bytes: usize,
    pub relay: RelaySettings,
    /// Also poll the hospital's FHIR server, when it publishes rather than pushes.
    pub poll: Option<PollSettings>,
}

pub async fn start(settings: FhirSettings) -> Result<RunningAdapter, String> {
    if !settings.listen.ip().is_loopback() && !settings.plaintext_on_network {
        return Err(format!(
            "--fhir-listen {}: the FHIR endpoint serves plaintext HTTP; off loopback only with --insecure-plaintext-on-network",
            settings.listen
        ));
    }
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let hospital = settings.relay.hospital.clone();
    let mut relay = hie_adapter_relay::run::start(
        &settings.relay,
        Arc::new(FhirTranslator {
            hospital: hospital.clone(),
        }),
    )
    .await?;
    let intake = Intake {
        journal: relay.journal().clone(),
        hospital,
    };
    if let Some(poll) = &settings.poll {
        let poller = Poller::new(intake.clone(), poll.clone(), &settings.relay.data_folder);
        let stopping = relay.stopping();
        relay.spawn(poller.run(stopping));
        tracing::info!(
            interval_seconds = poll.interval.as_secs_f64(),
            "polling the hospital's FHIR server"
        );
    }
    let router = crate::server::router(intake, settings.max_body_bytes);
    let mut stopping = relay.stopping();
    relay.spawn(async move {
        let stopped = async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        };
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!(error = %e, "the FHIR endpoint stopped");
        }
    });
    tracing::info!(fhir = %address, "FHIR adapter listening");
    Ok(RunningAdapter::new(address, relay))
}
