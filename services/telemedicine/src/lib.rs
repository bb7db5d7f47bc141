//! Telemedicine (`hie.telemedicine.v1.Telemedicine`): the catalogue of billable service items,
//! and consults between clinics and hospitals. Accepting a consult grants the consulting
//! practitioner time-boxed access to the patient's records through the consent layer (a grant in
//! the patient's directives, ended at completion or cancellation, or at its expiry); the report
//! is registered in the EMR registry; each step is audited and emits an event.
//!
//! It owns the `service_items`, `consults` and `consult_steps` tables and must never read or
//! write any other service's tables: persons come from the population registry's service,
//! organisations from the directory's, documents and summaries from the EMR registry's, consent
//! from the access layer.

pub mod domain;
pub mod grpc;
pub mod store;

pub use domain::TelemedicineService;
