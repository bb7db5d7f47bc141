//! Everything the adapter does with bytes a network peer sent, run synchronously: the framing,
//! the parse in each charset, the translation, and the acknowledgement (which must parse again).
//! The fuzz target (`adapters/hl7v2/fuzz`) feeds it arbitrary bytes; the tests below feed it
//! mutations of valid messages on stable Rust, so that CI holds the same line.

use chrono::TimeZone;

use crate::hl7::ack::{AckCode, Answering, acknowledgement};
use crate::hl7::{Charset, Message};
use crate::mllp::{Frame, FrameDecoder};
use crate::translate::{Hospital, translate};

/// Runs `bytes` through the adapter's handling of untrusted input. Panics only where a property
/// fails (an acknowledgement that does not parse); any other panic is a bug in the code it calls.
pub fn exercise(bytes: &[u8], hospital: &Hospital) {
    let mut decoder = FrameDecoder::new(4096);
    for &byte in bytes {
        if let Some(
            Frame::Message(message) | Frame::Truncated(message) | Frame::Oversized { head: message, .. },
        ) = decoder.push(byte)
        {
            handle(&message, hospital);
        }
    }
    let _ = decoder.finish();
    handle(bytes, hospital);
}

fn handle(bytes: &[u8], hospital: &Hospital) {
    for charset in [Charset::Utf8, Charset::Gb18030, Charset::Latin1] {
        let Ok(message) = Message::parse(bytes, charset) else {
            continue;
        };
        let refusal = translate(&message, hospital).err();
        let answering = Answering::message(&message);
        let now = hospital
            .utc_offset
            .with_ymd_and_hms(2026, 12, 4, 10, 0, 0)
            .single();
        let Some(now) = now else { continue };
        let problem = refusal.map(|r| match r {
            crate::translate::Refusal::Reject(p) | crate::translate::Refusal::Error(p) => p,
        });
        let ack = acknowledgement(&answering, AckCode::Error, "x", problem.as_ref(), "A1", now);
        let charset = answering.charset.unwrap_or(Charset::Utf8);
        assert!(
            Message::parse(&ack, charset).is_ok(),
            "an acknowledgement does not parse: {:?} answering {:?}",
            String::from_utf8_lossy(&ack),
            String::from_utf8_lossy(bytes)
        );
    }
}

/// The hospital the fuzz target and the tests translate for.
pub fn fuzzing_hospital() -> Hospital {
    Hospital::in_china(hie_core::domain::OrganisationCode::parse("QDN-H01").expect("a valid code"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEEDS: &[&str] = &[
        "MSH|^~\\&|HIS|QDN-H01|HIE|HIE|20261204101500||ADT^A01^ADT_A01|C1|P|2.5.1|||||CHN|UNICODE UTF-8\rEVN|A01|20261204101500\rPID|1||P1^^^QDN-H01^MR~522601198001010016^^^CHN^NI||张^伟||19800101|M|||凯里市^^^^^CHN^H^^522601||13800001111\rPV1|1|I|内科||||D001||||||||||||V1|||||||||||||||||||||||||20261204100000\rDG1|1||I10\r",
        "MSH|^~\\&|LIS|QDN-H01|HIE|HIE|20261204||ORU^R01|C2|P|2.3\rPID|1||P1^^^QDN-H01^MR||王^芳\rOBR|1||L1|GLU^血糖^L|||20261204080000\rOBX|1|NM|GLU^血糖||6.1|mmol/L|3.9-6.1|N\rOBX|2|SN|X||>^5|U\rNTE|1||\\H\\note\\N\\\r",
        "MSH|^~\\&|EMR|QDN-H01|HIE|HIE|20261204||MDM^T02|C3|P|2.5\rPID|1||P1||李^娜\rTXA|1|DS^小结|TX|20261204|D1||||||||DOC1||||AU|R\rOBX|1|ED|DS||^application^pdf^Base64^JVBERi0=\r",
        "MSH|^~\\&|HIS|QDN-H01|HIE|HIE|20261204||ADT^A40^ADT_A39|C4|P|2.4\rPID|1||P1^^^QDN-H01^MR||张^伟\rMRG|P2^^^QDN-H01^MR\r",
    ];

    /// A small deterministic generator (xorshift), so that a failure replays.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    #[test]
    fn mutated_messages_and_frames_never_panic_the_adapter() {
        let hospital = fuzzing_hospital();
        let interesting = b"|^~\\&\r\n\x0b\x1c\"0123456789MSHPIDOBXTXA.+-X\xff\xfe\xe5\x81";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..20_000 {
            let seed = SEEDS[round % SEEDS.len()].as_bytes();
            let mut bytes = seed.to_vec();
            for _ in 0..=rng.below(8) {
                let at = rng.below(bytes.len() + 1);
                match rng.below(4) {
                    0 if at < bytes.len() => bytes[at] = interesting[rng.below(interesting.len())],
                    1 => bytes.insert(at, interesting[rng.below(interesting.len())]),
                    2 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => bytes.truncate(at),
                }
            }
            if round % 3 == 0 {
                bytes = crate::mllp::frame(&bytes);
            }
            exercise(&bytes, &hospital);
        }
    }

    #[test]
    fn inputs_the_fuzzers_found_stay_fixed() {
        let hospital = fuzzing_hospital();
        // A delimiter that is also a character of the charset's usual name (found by the
        // mutation test and by cargo fuzz): the acknowledgement must still declare a charset its
        // reader knows.
        for found in [
            &b"MSH|-^~\\&|EMR|QDN-H01|HIE|HIE|20261204||MDM^T02|C3|P|2.5\r"[..],
            b"\x0bMSH|^~/|HIS||Q|H|20261204||X|C|P|2.5|||||||8859/1\r\x1c\r",
            b"MSH|^~-|&|IS|QDN-H01|HIE|HIE|20261204||ADT^A40^ADT_A3|C4|P|2.4\r",
        ] {
            exercise(found, &hospital);
        }
    }

    #[test]
    fn random_bytes_never_panic_the_adapter() {
        let hospital = fuzzing_hospital();
        let mut rng = Rng(42);
        for _ in 0..5_000 {
            let length = rng.below(300);
            let mut bytes: Vec<u8> = (0..length).map(|_| rng.next() as u8).collect();
            if rng.below(2) == 0 {
                bytes.splice(0..0, b"MSH|^~\\&|".iter().copied());
            }
            exercise(&bytes, &hospital);
        }
    }
}
