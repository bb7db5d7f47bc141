//! The `hie` binary as operators run it: one test binary for every command tested from outside.

// Test code may unwrap: a panic is a failing test (see clippy.toml).
#![allow(clippy::unwrap_used)]

mod audit_verify;
mod certs;
mod linkage;
