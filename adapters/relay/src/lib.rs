//! Store and forward for the hospital adapters (`hie adapter hl7v2`, `hie adapter fhir`): the
//! journal every accepted message is kept in until the exchange has taken it, the forwarder
//! that delivers it in order per patient with retries and dead letters, the client of the
//! exchange's calls, and the hospital gateway for documents the hospital keeps. The adapters
//! differ only in what they accept and how they translate it ([`submission::Translator`]).
//!
//! It must never lose a journaled message and never write patient data to the log.

pub mod exchange;
pub mod forwarder;
pub mod gateway;
pub mod journal;
pub mod run;
pub mod submission;
