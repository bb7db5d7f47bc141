//! Audit events, their canonical encoding and the hash chain; consent and its decision point.

pub mod consent;

use std::io::Write;

use chrono::{DateTime, Utc};
use hie_core::context::RequestContext;

/// The hash before the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How an access ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Permitted,
    Denied(String),
    Failed(String),
}

impl Outcome {
    pub fn code(&self) -> &'static str {
        match self {
            Outcome::Permitted => "permitted",
            Outcome::Denied(_) => "denied",
            Outcome::Failed(_) => "failed",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Permitted => None,
            Outcome::Denied(reason) | Outcome::Failed(reason) => Some(reason),
        }
    }
}

/// One access to a person's data: who, why, what, how it ended, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub occurred_at: DateTime<Utc>,
    pub request_id: String,
    pub organisation: Option<String>,
    pub user_id: String,
    pub role: String,
    pub purpose: String,
    pub reason: Option<String>,
    /// What was done, for example `population.resolve`.
    pub action: String,
    pub person_id: Option<String>,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub outcome: Outcome,
    /// Emergency access (break-the-glass): always flagged.
    pub emergency: bool,
}

impl AuditEvent {
    /// An event for `context` doing `action` on a resource.
    pub fn new(
        context: &RequestContext,
        action: &str,
        person_id: Option<String>,
        resource_type: &str,
        resource_id: Option<String>,
        outcome: Outcome,
    ) -> AuditEvent {
        AuditEvent {
            occurred_at: hie_core::time::now(),
            request_id: context.request_id.clone(),
            organisation: context.organisation.as_ref().map(|o| o.to_string()),
            user_id: context.user_id.clone(),
            role: context.role.code().to_owned(),
            purpose: context.purpose.code().to_owned(),
            reason: context.reason.clone(),
            action: action.to_owned(),
            person_id,
            resource_type: resource_type.to_owned(),
            resource_id,
            outcome,
            emergency: context.purpose == hie_core::context::Purpose::Emergency,
        }
    }

    /// An unambiguous encoding of every field with its sequence number: each field as its length
    /// in bytes, a colon and the bytes, an absent field as `-`. Two different events never encode
    /// alike, whatever their text holds.
    pub fn canonical(&self, sequence: i64) -> Vec<u8> {
        let micros = hie_core::time::to_micros(self.occurred_at).to_string();
        let sequence = sequence.to_string();
        let fields: [Option<&str>; 15] = [
            Some(&sequence),
            Some(&micros),
            Some(&self.request_id),
            self.organisation.as_deref(),
            Some(&self.user_id),
            Some(&self.role),
            Some(&self.purpose),
            self.reason.as_deref(),
            Some(&self.action),
            self.person_id.as_deref(),
            Some(&self.resource_type),
            self.resource_id.as_deref(),
            Some(self.outcome.code()),
            self.outcome.reason(),
            Some(if self.emergency { "1" } else { "0" }),
        ];
        let mut out = Vec::with_capacity(256);
        for field in fields {
            match field {
                Some(text) => {
                    // Writing into a Vec cannot fail. (Every read of a person's data hashes one
                    // event, so the encoding avoids a string per field.)
                    let _ = write!(out, "{}:", text.len());
                    out.extend_from_slice(text.as_bytes());
                }
                None => out.push(b'-'),
            }
            out.push(b';');
        }
        out
    }

    /// SHA-256 over the previous hash and the canonical encoding, in lower-case hex.
    pub fn chain_hash(&self, sequence: i64, previous_hash: &str) -> String {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(previous_hash.as_bytes());
        context.update(&self.canonical(sequence));
        lower_hex(context.finish().as_ref())
    }
}

/// Lower-case hex of `bytes`, without a formatting call per byte.
fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    hex
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("audit event {sequence} was edited: its content no longer matches its hash")]
    Edited { sequence: i64 },
    #[error("audit events are missing: expected event {expected}, found {found}")]
    Gap { expected: i64, found: i64 },
    #[error(
        "audit events are missing at the end: the chain's head is event {head}, the last stored is {last}"
    )]
    Truncated { head: i64, last: i64 },
}

/// Walks stored events in sequence order, checking each against the one before.
#[derive(Debug)]
pub struct ChainVerifier {
    expected_sequence: i64,
    previous_hash: String,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier {
            expected_sequence: 1,
            previous_hash: GENESIS_HASH.to_owned(),
        }
    }
}

impl ChainVerifier {
    /// Checks the next stored event: its sequence number, the hash it claims to follow, and its
    /// own hash recomputed from its content.
    pub fn check(
        &mut self,
        sequence: i64,
        event: &AuditEvent,
        previous_hash: &str,
        hash: &str,
    ) -> Result<(), ChainBreak> {
        if sequence != self.expected_sequence {
            return Err(ChainBreak::Gap {
                expected: self.expected_sequence,
                found: sequence,
            });
        }
        if previous_hash != self.previous_hash || event.chain_hash(sequence, previous_hash) != hash {
            return Err(ChainBreak::Edited { sequence });
        }
        self.expected_sequence += 1;
        self.previous_hash = hash.to_owned();
        Ok(())
    }

    /// After the last event: the chain's head must be the last event checked.
    pub fn finish(&self, head_sequence: i64) -> Result<i64, ChainBreak> {
        let last = self.expected_sequence - 1;
        if head_sequence != last {
            return Err(ChainBreak::Truncated {
                head: head_sequence,
                last,
            });
        }
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_lower_case_hex_of_sha256() {
        assert_eq!(lower_hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        let digest = ring::digest::digest(&ring::digest::SHA256, b"abc");
        assert_eq!(
            lower_hex(digest.as_ref()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    fn event(action: &str) -> AuditEvent {
        AuditEvent {
            occurred_at: hie_core::time::from_micros(1_800_000_000_000_000),
            request_id: "r1".into(),
            organisation: Some("QDN-H01".into()),
            user_id: "dr-wu".into(),
            role: "clinician".into(),
            purpose: "treatment".into(),
            reason: None,
            action: action.into(),
            person_id: Some("p1".into()),
            resource_type: "person".into(),
            resource_id: Some("p1".into()),
            outcome: Outcome::Permitted,
            emergency: false,
        }
    }

    fn chain(events: &[AuditEvent]) -> Vec<(i64, AuditEvent, String, String)> {
        let mut previous = GENESIS_HASH.to_owned();
        let mut out = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let sequence = i as i64 + 1;
            let hash = e.chain_hash(sequence, &previous);
            out.push((sequence, e.clone(), previous.clone(), hash.clone()));
            previous = hash;
        }
        out
    }

    fn verify(stored: &[(i64, AuditEvent, String, String)], head: i64) -> Result<i64, ChainBreak> {
        let mut verifier = ChainVerifier::default();
        for (sequence, event, previous, hash) in stored {
            verifier.check(*sequence, event, previous, hash)?;
        }
        verifier.finish(head)
    }

    #[test]
    fn an_intact_chain_verifies() {
        let stored = chain(&[event("a"), event("b"), event("c")]);
        assert_eq!(verify(&stored, 3), Ok(3));
    }

    #[test]
    fn an_edited_event_is_named() {
        let mut stored = chain(&[event("a"), event("b"), event("c")]);
        stored[1].1.user_id = "someone-else".into();
        assert_eq!(verify(&stored, 3), Err(ChainBreak::Edited { sequence: 2 }));
    }

    #[test]
    fn a_deleted_event_is_a_gap_and_a_deleted_tail_is_found_by_the_head() {
        let mut stored = chain(&[event("a"), event("b"), event("c")]);
        stored.remove(1);
        assert_eq!(
            verify(&stored, 3),
            Err(ChainBreak::Gap {
                expected: 2,
                found: 3
            })
        );
        let mut truncated = chain(&[event("a"), event("b"), event("c")]);
        truncated.pop();
        assert_eq!(
            verify(&truncated, 3),
            Err(ChainBreak::Truncated { head: 3, last: 2 })
        );
    }

    #[test]
    fn field_boundaries_cannot_be_shifted() {
        let mut a = event("x");
        a.user_id = "ab".into();
        a.role = "c".into();
        let mut b = event("x");
        b.user_id = "a".into();
        b.role = "bc".into();
        assert_ne!(a.canonical(1), b.canonical(1));
    }
}
