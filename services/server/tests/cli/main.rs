//! The `hie` binary as operators run it: one test binary for every command tested from outside.

mod audit_verify;
mod certs;
mod linkage;
