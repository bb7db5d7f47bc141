//! The integration tests of hie, in one binary: the storage conformance suite (every test on a
//! fresh SQLite database and on a fresh PostgreSQL database), end-to-end tests of the real
//! server over TCP with tonic clients, the bad-input suite, and the architecture invariants
//! checked on the source tree.
//!
//! PostgreSQL is found through `HIE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). When it is unreachable the PostgreSQL variants
//! are skipped with a message, except under `CI=true`, where they fail.

// Test code may unwrap: a panic is a failing test (see clippy.toml).
#![allow(clippy::unwrap_used)]

mod adapters;
mod architecture;
mod audit;
mod bad_input;
mod cards;
mod e2e;
mod events;
mod fhir;
mod harness;
mod matching;
mod records;
mod search;
mod storage;
pub(crate) mod trust;
