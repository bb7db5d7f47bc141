//! The events service's rules: the log, filters and entitlements, subscriptions, delivery.

pub mod delivery;
pub mod filter;
pub mod log;
pub mod subscriptions;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use hie_access::AccessGate;
use hie_access::grpc::PersonRegistry;
use hie_core::db::Database;
use hie_directory::DirectoryService;

use crate::store::EventStore;
pub use delivery::Delivered;
pub use filter::{Entitlement, EventFilter};
pub use log::{EventLog, LoggedEvent};
pub use subscriptions::{Channel, Subscription};

#[derive(Clone, Debug)]
pub struct EventService {
    pub(crate) store: EventStore,
    pub(crate) log: EventLog,
    pub(crate) access: AccessGate,
    pub(crate) directory: DirectoryService,
    pub(crate) registry: Arc<dyn PersonRegistry>,
    /// Whether this exchange relays to NATS (`--events-nats`): NATS subscriptions need it.
    pub(crate) nats_enabled: bool,
    /// Subscriptions cancelled by this process, whose streams end at their next step (another
    /// replica's cancellations are seen when a stream next reads its subscription).
    pub(crate) cancelled: Arc<Mutex<HashSet<String>>>,
    /// Set when the server stops: every delivery loop ends, so that open streams do not hold a
    /// graceful shutdown for ever (subscribers resume from their cursor elsewhere).
    pub(crate) closing: Arc<tokio::sync::watch::Sender<bool>>,
}

impl EventService {
    /// The service; the log hears of every write this process commits, so that its sequencer
    /// numbers new events at once instead of at its next poll.
    pub fn new(
        database: Database,
        access: AccessGate,
        directory: DirectoryService,
        registry: Arc<dyn PersonRegistry>,
    ) -> EventService {
        let store = EventStore::new(database);
        let log = EventLog::new(store.clone());
        let woken = log.clone();
        access
            .audit()
            .on_commit(Arc::new(move |_events: &[hie_core::outbox::OutboxEvent]| {
                woken.wake()
            }));
        EventService {
            store,
            log,
            access,
            directory,
            registry,
            nats_enabled: false,
            cancelled: Arc::default(),
            closing: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }

    /// Ends every delivery loop of this process (the server is stopping).
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// The service with NATS subscriptions allowed (the server runs the relay).
    pub fn with_nats(mut self) -> EventService {
        self.nats_enabled = true;
        self
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }
}
