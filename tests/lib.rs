//! Empty: this crate holds only tests (see main.rs).
