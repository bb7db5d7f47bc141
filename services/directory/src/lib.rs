//! The directory: every organisation taking part in the exchange and the practitioners working
//! for them. Other services ask it whether an organisation may submit data.
//!
//! It owns the `organisations` and `practitioners` tables and must never read or write any other
//! service's tables. The gRPC layer (`grpc`) maps proto messages to the domain (`domain`), which
//! holds the rules and calls the store (`store`) for SQL.

pub mod domain;
pub mod grpc;
pub mod store;

pub use domain::DirectoryService;
