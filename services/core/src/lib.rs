//! What every hie service shares: the domain types that parse and check identifiers and
//! demographics (resident identity numbers, division codes, sex and ethnicity codes, phones,
//! names), the one error type and its mapping to gRPC status codes, paging, and the database
//! handle with its migrations for SQLite and PostgreSQL, and the kit every service is built
//! with: ids ([`id_type!`], [`id::PersonId`]), the vocabulary of audit actions and event types,
//! the typed outbox, and the [`service::ServiceModule`] the server mounts.
//!
//! This crate must never hold a service's business rules, and its domain types must never be
//! constructible in an invalid state: every one is built through a `parse` that checks it.

pub mod batch;
pub mod cache;
pub mod context;
pub mod db;
pub mod digest;
pub mod domain;
pub mod error;
pub mod id;
pub mod outbox;
pub mod page;
pub mod service;
pub mod time;
pub mod vocabulary;

pub use error::{Error, FieldError, ResultExt};
