//! The integration tests of hie, in one binary: the storage conformance suite (every test on a
//! fresh SQLite database and on a fresh PostgreSQL database), end-to-end tests of the real
//! server over TCP with tonic clients, and the bad-input suite.
//!
//! PostgreSQL is found through `HIE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). When it is unreachable the PostgreSQL variants
//! are skipped with a message, except under `CI=true`, where they fail.

mod audit;
mod bad_input;
mod e2e;
mod harness;
mod matching;
mod storage;
mod trust;
