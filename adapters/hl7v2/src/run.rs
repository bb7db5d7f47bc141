//! `hie adapter hl7v2` as a process: the shared relay (journal, forwarder, gateway) with the
//! MLLP listener as its intake.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hie_adapter_relay::forwarder::Backoff;
use hie_adapter_relay::gateway::GatewaySettings;
use hie_adapter_relay::run::RelaySettings;
pub use hie_adapter_relay::run::RunningAdapter;
pub use hie_adapter_relay::run::TlsFiles;
use hie_adapter_relay::submission::{Translated, Translator};
use tokio::net::TcpListener;

use crate::hl7::{Charset, Message};
use crate::listener::{ListenerSettings, Receiver};
use crate::translate::{Hospital, Refusal, translate};

#[derive(Debug, Clone)]
pub struct AdapterSettings {
    pub listen: SocketAddr,
    pub exchange_url: String,
    pub tls: Option<TlsFiles>,
    pub hospital: Hospital,
    pub data_folder: PathBuf,
    /// The user the adapter's calls are made as (the interface, not a person).
    pub user: String,
    pub lanes: usize,
    pub backoff: Backoff,
    pub listener: ListenerSettings,
    /// How long delivered messages are kept, so that a sender's late resend is recognised.
    pub keep_delivered: Duration,
    /// The hospital gateway for documents the hospital keeps, when it keeps any.
    pub gateway: Option<GatewaySettings>,
}

/// HL7 v2 bytes to the exchange's calls, for the forwarder.
#[derive(Debug)]
pub struct Hl7Translator {
    pub hospital: Hospital,
    pub default_charset: Charset,
}

impl Translator for Hl7Translator {
    fn translate(&self, raw: &[u8]) -> Result<Translated, String> {
        let message = Message::parse(raw, self.default_charset).map_err(|problem| problem.to_string())?;
        translate(&message, &self.hospital).map_err(|refusal| match refusal {
            Refusal::Reject(p) | Refusal::Error(p) => p.to_string(),
        })
    }
}

/// Opens the journal, starts forwarding and binds the listener.
pub async fn start(settings: AdapterSettings) -> Result<RunningAdapter, String> {
    let translator = Hl7Translator {
        hospital: settings.hospital.clone(),
        default_charset: settings.listener.default_charset,
    };
    let relay_settings = RelaySettings {
        exchange_url: settings.exchange_url.clone(),
        tls: settings.tls.clone(),
        hospital: settings.hospital.clone(),
        data_folder: settings.data_folder.clone(),
        user: settings.user.clone(),
        lanes: settings.lanes,
        backoff: settings.backoff,
        keep_delivered: settings.keep_delivered,
        gateway: settings.gateway.clone(),
    };
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    let mllp_address = listener.local_addr().map_err(|e| e.to_string())?;
    let mut relay = hie_adapter_relay::run::start(&relay_settings, Arc::new(translator)).await?;
    let receiver = Arc::new(Receiver::new(
        relay.journal().clone(),
        settings.hospital,
        settings.listener,
    ));
    let stopping = relay.stopping();
    relay.spawn(receiver.serve(listener, stopping));
    tracing::info!(mllp = %mllp_address, "HL7 v2 adapter listening");
    Ok(RunningAdapter::new(mllp_address, relay))
}
