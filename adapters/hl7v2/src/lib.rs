//! The hospital adapter for HL7 v2 over MLLP (`hie adapter hl7v2`). It owns the hospital's side
//! of the feed: the MLLP listener the hospital's interface engine sends to, the parsing and
//! acknowledgement of every message, a durable journal (SQLite in the adapter's data folder) that
//! holds every accepted message until the exchange has taken it, and the forwarder that sends
//! them on, in order per patient, with an idempotency key, retrying while the exchange is down.
//!
//! It must never acknowledge a message before it is journaled, never lose a journaled message,
//! and never write patient data to the log.

pub mod hl7;
pub mod listener;
pub mod mllp;
pub mod robustness;
pub mod run;
pub mod translate;

// The store-and-forward half, shared with the other adapters; kept under these names.
pub use hie_adapter_relay::{exchange, forwarder, gateway, journal};
