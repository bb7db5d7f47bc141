//! An adapter as a process, the half every kind shares: the journal, the forwarder, the hospital
//! gateway and the journal's upkeep, started together and stopped together. Each kind adds its
//! own intake (an MLLP listener, a FHIR endpoint) with [`RunningRelay::spawn`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::exchange::ExchangeClient;
use crate::forwarder::{Backoff, Forwarder};
use crate::gateway::GatewaySettings;
use crate::journal::{Journal, now_ms};
use crate::submission::{Hospital, Translator};

/// The files of the hospital's side of mutual TLS with the exchange.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA that issued the exchange's server certificate.
    pub ca: PathBuf,
    /// The hospital's certificate and key (the organisation the exchange knows it as).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The name on the exchange's certificate; the URL's host when absent.
    pub server_name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub exchange_url: String,
    pub tls: Option<TlsFiles>,
    pub hospital: Hospital,
    pub data_folder: PathBuf,
    /// The user the adapter's calls are made as (the interface, not a person).
    pub user: String,
    pub lanes: usize,
    pub backoff: Backoff,
    /// How long delivered messages are kept, so that a sender's late resend is recognised.
    pub keep_delivered: Duration,
    /// The hospital gateway for documents the hospital keeps, when it keeps any.
    pub gateway: Option<GatewaySettings>,
}

/// A started relay.
#[derive(Debug)]
pub struct RunningRelay {
    gateway_address: Option<SocketAddr>,
    journal: Journal,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl RunningRelay {
    /// Where the hospital gateway listens, when it serves one.
    pub fn gateway_address(&self) -> Option<SocketAddr> {
        self.gateway_address
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Turns true when the adapter stops.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Runs `task` (an intake) until the adapter stops; it should return once `stopping` turns.
    pub fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Stops everything; what is pending stays in the journal for the next start.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }

    /// Runs until the process is interrupted.
    pub async fn until_interrupted(self) {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("stopping the adapter");
        self.stop().await;
    }
}

/// A started adapter of any kind: where its intake listens (MLLP, FHIR), and the relay behind it.
#[derive(Debug)]
pub struct RunningAdapter {
    intake_address: SocketAddr,
    relay: RunningRelay,
}

impl RunningAdapter {
    pub fn new(intake_address: SocketAddr, relay: RunningRelay) -> RunningAdapter {
        RunningAdapter {
            intake_address,
            relay,
        }
    }

    /// Where the intake listens (the port, when 0 was asked for).
    pub fn intake_address(&self) -> SocketAddr {
        self.intake_address
    }

    /// Where the hospital gateway listens, when it serves one.
    pub fn gateway_address(&self) -> Option<SocketAddr> {
        self.relay.gateway_address()
    }

    pub fn journal(&self) -> &Journal {
        self.relay.journal()
    }

    /// Stops the intake and forwarding; what is pending stays in the journal for the next start.
    pub async fn stop(self) {
        self.relay.stop().await;
    }

    /// Runs until the process is interrupted.
    pub async fn until_interrupted(self) {
        self.relay.until_interrupted().await;
    }
}

/// Opens the journal, starts forwarding (with `translator`) and the gateway.
pub async fn start(
    settings: &RelaySettings,
    translator: Arc<dyn Translator>,
) -> Result<RunningRelay, String> {
    let journal = Journal::open(&settings.data_folder)
        .await
        .map_err(|e| e.to_string())?;
    let tls = match &settings.tls {
        None => None,
        Some(files) => {
            let uri: tonic::transport::Uri = settings
                .exchange_url
                .parse()
                .map_err(|e| format!("--exchange {}: {e}", settings.exchange_url))?;
            let server_name = files
                .server_name
                .clone()
                .or_else(|| uri.host().map(str::to_owned))
                .unwrap_or_default();
            Some(
                hie_transport::tls::client_config(&files.ca, &server_name, Some((&files.cert, &files.key)))
                    .map_err(|e| e.to_string())?,
            )
        }
    };
    let exchange = ExchangeClient::new(&settings.exchange_url, tls, &settings.user)?;
    let (shutdown, stopping) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let forwarder = Forwarder {
        journal: journal.clone(),
        exchange,
        translator,
        lanes: settings.lanes,
        backoff: settings.backoff,
    };
    tasks.spawn(forwarder.run(stopping.clone()));
    let gateway_address = match &settings.gateway {
        None => None,
        Some(gateway) => {
            let (address, serving) = crate::gateway::serve(gateway, stopping.clone()).await?;
            tasks.spawn(async move {
                let _ = serving.await;
            });
            tracing::info!(gateway = %address, "hospital gateway serving documents");
            Some(address)
        }
    };
    tasks.spawn(prune_delivered(
        journal.clone(),
        settings.keep_delivered,
        stopping,
    ));
    tracing::info!(
        exchange = %settings.exchange_url,
        organisation = %settings.hospital.organisation,
        journal = %journal.path().display(),
        "adapter forwarding"
    );
    Ok(RunningRelay {
        gateway_address,
        journal,
        shutdown,
        tasks,
    })
}

async fn prune_delivered(journal: Journal, keep: Duration, mut stopping: watch::Receiver<bool>) {
    loop {
        let before = now_ms() - keep.as_millis() as i64;
        match journal.prune_delivered(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(messages = n, "forgot delivered messages past their keeping time"),
            Err(e) => tracing::warn!(error = %e, "cannot prune the journal"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = stopping.changed() => return,
        }
    }
}
