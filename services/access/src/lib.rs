//! Access to a person's data. Today: the tamper-evident audit trail (IHE ATNA-like). Every read
//! and write of a person's data appends an event; events are hash-chained with SHA-256, so that
//! an edit or a deletion is found by `hie audit verify`. Consent directives and break-the-glass
//! follow in this crate.
//!
//! It owns the `audit_events` and `audit_head` tables. It must never update or delete an event.

pub mod domain;
pub mod gate;
pub mod grpc;
pub mod store;

pub use domain::{AuditEvent, ChainBreak, Outcome};
pub use gate::AccessGate;
pub use store::AuditTrail;
