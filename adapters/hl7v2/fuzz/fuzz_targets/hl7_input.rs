//! Arbitrary bytes as a peer would send them: MLLP framing, parsing in every charset,
//! translation and the acknowledgement. Run from adapters/hl7v2:
//! `cargo +nightly fuzz run hl7_input -- -max_total_time=300`.
#![no_main]

use hie_adapter_hl7v2::robustness::{exercise, fuzzing_hospital};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    exercise(data, &fuzzing_hospital());
});
