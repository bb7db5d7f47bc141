//! What every hie service shares: the domain types that parse and check identifiers and
//! demographics (resident identity numbers, division codes, sex and ethnicity codes, phones,
//! names), the one error type and its mapping to gRPC status codes, paging, and the database
//! handle with its migrations for SQLite and PostgreSQL.
//!
//! This crate must never hold a service's business rules, and its domain types must never be
//! constructible in an invalid state: every one is built through a `parse` that checks it.

pub mod batch;
pub mod context;
pub mod db;
pub mod domain;
pub mod error;
pub mod outbox;
pub mod page;
pub mod time;

pub use error::{Error, FieldError, ResultExt};
