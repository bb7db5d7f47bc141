//! `hie adapter hl7v2` as a process: the shared relay (journal, forwarder, gateway) with the
//! MLLP listener as its intake.

use std::net::SocketAddr;
use std::sync::Arc;

use hie_adapter_relay::run::RelaySettings;
pub use hie_adapter_relay::run::RunningAdapter;
use hie_adapter_relay::submission::{Translated, Translator};
use tokio::net::TcpListener;

use crate::hl7::{Charset, Message};
use crate::listener::{ListenerSettings, Receiver};
use crate::translate::{Hospital, Refusal, translate};

#[derive(Debug, Clone)]
pub struct AdapterSettings {
    /// Where the MLLP listener listens.
    pub listen: SocketAddr,
    pub listener: ListenerSettings,
    /// The exchange, the hospital, the journal, forwarding and the gateway.
    pub relay: RelaySettings,
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
    let hospital = settings.relay.hospital.clone();
    let translator = Hl7Translator {
        hospital: hospital.clone(),
        default_charset: settings.listener.default_charset,
    };
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    let mllp_address = listener.local_addr().map_err(|e| e.to_string())?;
    let mut relay = hie_adapter_relay::run::start(&settings.relay, Arc::new(translator)).await?;
    let receiver = Arc::new(Receiver::new(
        relay.journal().clone(),
        hospital,
        settings.listener,
    ));
    let stopping = relay.stopping();
    relay.spawn(receiver.serve(listener, stopping));
    tracing::info!(mllp = %mllp_address, "HL7 v2 adapter listening");
    Ok(RunningAdapter::new(mllp_address, relay))
}
