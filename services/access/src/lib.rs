//! Access to a person's data: consent directives and break-the-glass, the one read gate every
//! read of a person's data asks ([`read_gate`]), the unit of work every write goes through
//! ([`unit_of_work`]), and the tamper-evident audit trail (IHE ATNA-like) both record into:
//! events are chained with HMAC-SHA256 under a key held outside the database, so that an edit or
//! a deletion is found by `hie audit verify`.
//!
//! It owns the `audit_*` and `consent_directives` tables. It must never update or delete an
//! audit event.

pub mod domain;
pub mod gate;
pub mod grpc;
pub mod read_gate;
pub mod store;
pub mod unit_of_work;

pub use domain::{AuditEvent, ChainBreak, Outcome};
pub use gate::AccessGate;
pub use read_gate::{Kept, PersonRead, Seen, require_patient_is_one_of};
pub use store::AuditTrail;
pub use store::consent::ConsentStore;
pub use unit_of_work::{Subject, UnitOfWork};
