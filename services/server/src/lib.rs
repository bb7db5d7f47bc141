//! The `hie` binary's library: typed settings, the builder that composes every service into one
//! gRPC server (used by `main` and by the end-to-end tests alike), the command line, the demo
//! population and the benchmarks.
//!
//! It owns no tables and no business rules: those belong to the service crates it composes.

pub mod adapter_cli;
pub mod app;
pub mod audit_keys;
pub mod bench;
pub mod card_cli;
pub mod card_keys;
pub mod cli;
pub mod demo;
pub mod demo_cards;
pub mod demo_records;
pub mod key_files;
pub mod linkage_cli;
pub mod population_file;
pub mod population_jobs;
pub mod settings;

pub use app::{Exchange, RunningServer};
pub use settings::Settings;
