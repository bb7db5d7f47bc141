//! The resident health archive (居民健康档案): entries of the WS 365 types submitted by primary
//! care and public health, each with a validated, structured payload, versioned per source key,
//! and read through the read gate.
//!
//! It owns the `health_record_entries` and `health_record_versions` tables and must never read or
//! write any other service's tables: persons come from the population registry's service,
//! organisations from the directory's.

pub mod domain;
pub mod grpc;
pub mod store;

pub use domain::RecordsService;
