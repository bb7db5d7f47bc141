//! The population registry, the master patient index of the exchange. Each organisation submits
//! its own records of its patients ("source records"); the registry links the records that
//! describe one resident to one person, keeps every identifier they assert, answers which
//! identifiers belong together (PIX) and finds persons by demographics (PDQ).
//!
//! It owns the `persons`, `source_records`, `person_identifiers` and `match_locks` tables. It
//! must never delete a source record, and it must never link two records except through the
//! [`domain::Matcher`] on the registration path, so that the probabilistic matcher can replace the
//! deterministic one without touching anything else.

pub mod domain;
pub mod grpc;
pub mod store;

pub use domain::PopulationService;
