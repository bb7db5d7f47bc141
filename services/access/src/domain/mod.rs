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
    /// How a call that ended in `error` is recorded: a refusal as denied with its reason,
    /// anything else as failed with the message the caller saw. An internal error's cause (which
    /// may name tables or values) never reaches the trail, as it never reaches the caller.
    pub fn of_error(error: &hie_core::Error) -> Outcome {
        match error {
            hie_core::Error::PermissionDenied(reason) => Outcome::Denied(reason.clone()),
            hie_core::Error::Internal(_) => Outcome::Failed("internal error".to_owned()),
            other => Outcome::Failed(other.to_string()),
        }
    }

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
        action: hie_core::vocabulary::AuditAction,
        person_id: Option<&hie_core::id::PersonId>,
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
            action: action.code().to_owned(),
            person_id: person_id.map(|id| id.as_str().to_owned()),
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

    /// The event's link in the chain, in lower-case hex: HMAC-SHA256 under `key` over the previous
    /// link and the canonical encoding. `None` is the plain SHA-256 of events chained before the
    /// trail had a key, which [`ChainVerifier`] accepts only before the first keyed event.
    pub fn chain_hash(&self, sequence: i64, previous_hash: &str, key: Option<&AuditKey>) -> String {
        match key {
            Some(key) => {
                let mut context = ring::hmac::Context::with_key(&key.key);
                context.update(previous_hash.as_bytes());
                context.update(&self.canonical(sequence));
                lower_hex(context.sign().as_ref())
            }
            None => {
                let mut context = ring::digest::Context::new(&ring::digest::SHA256);
                context.update(previous_hash.as_bytes());
                context.update(&self.canonical(sequence));
                lower_hex(context.finish().as_ref())
            }
        }
    }
}

/// The secret that keys the audit chain. It is held outside the database (a key file named in the
/// settings), so that someone who can write to the database but not read the key cannot
/// recompute the chain after editing, deleting or inserting events. Its id (a digest of the
/// secret, which does not reveal it) is stored beside each event, so that a retired key still
/// verifies the events it chained.
#[derive(Clone)]
pub struct AuditKey {
    id: String,
    key: ring::hmac::Key,
    /// The last event chained before this key existed (the head when its file was made): only
    /// events up to it may carry no key. Without it, whoever can write to the database could
    /// rewrite the whole chain as unkeyed.
    legacy_until: i64,
}

impl AuditKey {
    /// The fewest bytes of secret a key may have.
    pub const MIN_SECRET_BYTES: usize = 32;

    pub fn from_secret(secret: &[u8]) -> Result<AuditKey, String> {
        if secret.len() < Self::MIN_SECRET_BYTES {
            return Err(format!(
                "the audit key has {} bytes, expected at least {}",
                secret.len(),
                Self::MIN_SECRET_BYTES
            ));
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, secret);
        Ok(AuditKey {
            id: lower_hex(&digest.as_ref()[..8]),
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
            legacy_until: 0,
        })
    }

    /// The key, made when the trail's head was at event `sequence`: the events up to it were
    /// chained without a key.
    pub fn made_after(mut self, sequence: i64) -> AuditKey {
        self.legacy_until = sequence.max(0);
        self
    }

    /// A new random secret of 32 bytes, for a key file.
    pub fn generate_secret() -> Result<[u8; 32], String> {
        use ring::rand::SecureRandom;
        let mut secret = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| "the system's random source failed".to_owned())?;
        Ok(secret)
    }

    /// A key that lives only as long as the process: for benchmarks and tests of one process.
    pub fn ephemeral() -> AuditKey {
        let secret = Self::generate_secret().unwrap_or([7; 32]);
        AuditKey::from_secret(&secret).unwrap_or_else(|_| unreachable!("32 bytes suffice"))
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKey({})", self.id)
    }
}

/// The key that chains new events, and the retired ones that still verify older events.
#[derive(Clone, Debug)]
pub struct AuditKeys {
    current: AuditKey,
    retired: Vec<AuditKey>,
}

impl AuditKeys {
    pub fn new(current: AuditKey, retired: Vec<AuditKey>) -> AuditKeys {
        AuditKeys { current, retired }
    }

    pub fn current(&self) -> &AuditKey {
        &self.current
    }

    /// The last event that may carry no key: the head when the first of these keys was made.
    pub fn legacy_until(&self) -> i64 {
        std::iter::once(&self.current)
            .chain(&self.retired)
            .map(|key| key.legacy_until)
            .min()
            .unwrap_or(0)
    }

    /// The key with this id, current or retired.
    pub fn by_id(&self, id: &str) -> Option<&AuditKey> {
        std::iter::once(&self.current)
            .chain(&self.retired)
            .find(|key| key.id == id)
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
    #[error("the chain's head was edited: it does not name the last stored event {last}")]
    HeadEdited { last: i64 },
    #[error(
        "audit events are missing at the end: this server chained up to event {anchored} (its anchor file), \
         the trail ends at event {last}"
    )]
    BelowAnchor { anchored: i64, last: i64 },
    #[error("audit event {sequence} is not the event this server chained there (its anchor file)")]
    AnchorMismatch { sequence: i64 },
    #[error("audit event {sequence} was chained with key {key_id}, which the settings do not hold")]
    UnknownKey { sequence: i64, key_id: String },
    #[error(
        "audit event {sequence} carries no key although it was chained after the trail had one: it was rewritten"
    )]
    Unkeyed { sequence: i64 },
}

/// The last link this server chained, kept outside the database (a file beside the key), so that
/// deleting the tail of the trail and moving the head back, which a keyed chain alone cannot show,
/// is found too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub sequence: i64,
    pub hash: String,
}

impl Anchor {
    /// One line of fixed length (the sequence zero-padded to 20 digits, the 64-digit link), so
    /// that each advance overwrites the last in place.
    pub fn encode(&self) -> String {
        format!("{:020} {:<64}\n", self.sequence, self.hash)
    }

    pub fn parse(text: &str) -> Option<Anchor> {
        let (sequence, hash) = text.trim().split_once(' ')?;
        Some(Anchor {
            sequence: sequence.parse().ok()?,
            hash: hash.trim().to_owned(),
        })
    }
}

/// Walks stored events in sequence order, checking each against the one before.
#[derive(Debug)]
pub struct ChainVerifier<'k> {
    keys: &'k AuditKeys,
    expected_sequence: i64,
    previous_hash: String,
    keyed: bool,
    anchor: Option<Anchor>,
}

impl<'k> ChainVerifier<'k> {
    /// A verifier with these keys and, when this server keeps one, its anchor.
    pub fn new(keys: &'k AuditKeys, anchor: Option<Anchor>) -> ChainVerifier<'k> {
        ChainVerifier {
            keys,
            expected_sequence: 1,
            previous_hash: GENESIS_HASH.to_owned(),
            keyed: false,
            anchor,
        }
    }

    /// Checks the next stored event: its sequence number, the link it claims to follow, and its
    /// own link recomputed from its content under the key it names.
    pub fn check(
        &mut self,
        sequence: i64,
        event: &AuditEvent,
        key_id: Option<&str>,
        previous_hash: &str,
        hash: &str,
    ) -> Result<(), ChainBreak> {
        if sequence != self.expected_sequence {
            return Err(ChainBreak::Gap {
                expected: self.expected_sequence,
                found: sequence,
            });
        }
        let key = match key_id {
            Some(id) => Some(self.keys.by_id(id).ok_or_else(|| ChainBreak::UnknownKey {
                sequence,
                key_id: id.chars().take(32).collect(),
            })?),
            None if self.keyed || sequence > self.keys.legacy_until() => {
                return Err(ChainBreak::Unkeyed { sequence });
            }
            None => None,
        };
        if previous_hash != self.previous_hash || event.chain_hash(sequence, previous_hash, key) != hash {
            return Err(ChainBreak::Edited { sequence });
        }
        if let Some(anchor) = &self.anchor
            && anchor.sequence == sequence
            && anchor.hash != hash
        {
            return Err(ChainBreak::AnchorMismatch { sequence });
        }
        self.keyed |= key.is_some();
        self.expected_sequence += 1;
        self.previous_hash = hash.to_owned();
        Ok(())
    }

    /// After the last event: the chain's head must name the last event checked, and the trail
    /// must reach at least as far as this server's anchor.
    pub fn finish(&self, head_sequence: i64, head_hash: &str) -> Result<i64, ChainBreak> {
        let last = self.expected_sequence - 1;
        if head_sequence != last {
            return Err(ChainBreak::Truncated {
                head: head_sequence,
                last,
            });
        }
        if head_hash != self.previous_hash {
            return Err(ChainBreak::HeadEdited { last });
        }
        if let Some(anchor) = &self.anchor
            && anchor.sequence > last
        {
            return Err(ChainBreak::BelowAnchor {
                anchored: anchor.sequence,
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

    fn keys() -> AuditKeys {
        AuditKeys::new(AuditKey::from_secret(&[1; 32]).unwrap(), vec![])
    }

    type Stored = (i64, AuditEvent, String, String);

    fn chain_with(events: &[AuditEvent], key: Option<&AuditKey>) -> Vec<Stored> {
        let mut previous = GENESIS_HASH.to_owned();
        let mut out = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let sequence = i as i64 + 1;
            let hash = e.chain_hash(sequence, &previous, key);
            out.push((sequence, e.clone(), previous.clone(), hash.clone()));
            previous = hash;
        }
        out
    }

    fn chain(events: &[AuditEvent]) -> Vec<Stored> {
        chain_with(events, Some(keys().current()))
    }

    fn verify_with(
        stored: &[Stored],
        head: i64,
        keys: &AuditKeys,
        anchor: Option<Anchor>,
    ) -> Result<i64, ChainBreak> {
        let mut verifier = ChainVerifier::new(keys, anchor);
        for (sequence, event, previous, hash) in stored {
            verifier.check(*sequence, event, Some(keys.current().id()), previous, hash)?;
        }
        let head_hash = stored
            .iter()
            .find(|s| s.0 == head)
            .map_or(GENESIS_HASH.to_owned(), |s| s.3.clone());
        verifier.finish(head, &head_hash)
    }

    fn verify(stored: &[Stored], head: i64) -> Result<i64, ChainBreak> {
        verify_with(stored, head, &keys(), None)
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
            verify_with(&truncated, 3, &keys(), None),
            Err(ChainBreak::Truncated { head: 3, last: 2 })
        );
    }

    #[test]
    fn a_chain_rewritten_without_the_key_does_not_verify() {
        // Whoever edits an event and recomputes every link after it, without the key, can only
        // recompute plain or wrongly keyed links.
        let mut forged = chain(&[event("a"), event("b")]);
        forged[1].1.user_id = "someone-else".into();
        let unkeyed = chain_with(&[forged[0].1.clone(), forged[1].1.clone()], None);
        assert_eq!(verify(&unkeyed, 2), Err(ChainBreak::Edited { sequence: 1 }));
        let other_key = AuditKey::from_secret(&[2; 32]).unwrap();
        let wrong = chain_with(&[forged[0].1.clone(), forged[1].1.clone()], Some(&other_key));
        assert_eq!(verify(&wrong, 2), Err(ChainBreak::Edited { sequence: 1 }));
    }

    #[test]
    fn a_tail_deleted_with_the_head_moved_back_is_found_by_the_anchor() {
        let full = chain(&[event("a"), event("b"), event("c")]);
        let anchor = Anchor {
            sequence: 3,
            hash: full[2].3.clone(),
        };
        let trimmed = &full[..2];
        assert_eq!(verify(trimmed, 2), Ok(2), "the chain alone cannot tell");
        assert_eq!(
            verify_with(trimmed, 2, &keys(), Some(anchor.clone())),
            Err(ChainBreak::BelowAnchor { anchored: 3, last: 2 })
        );
        assert_eq!(verify_with(&full, 3, &keys(), Some(anchor)), Ok(3));
    }

    #[test]
    fn events_chained_before_the_trail_had_a_key_verify_only_before_the_first_keyed_one() {
        let keys = AuditKeys::new(AuditKey::from_secret(&[1; 32]).unwrap().made_after(2), vec![]);
        let events = [event("a"), event("b"), event("c")];
        // a and b chained with plain SHA-256 (before the upgrade), c keyed after them.
        let mut previous = GENESIS_HASH.to_owned();
        let mut stored = Vec::new();
        for (i, (e, key)) in events.iter().zip([None, None, Some(keys.current())]).enumerate() {
            let sequence = i as i64 + 1;
            let hash = e.chain_hash(sequence, &previous, key);
            stored.push((
                sequence,
                e.clone(),
                key.map(|k| k.id().to_owned()),
                previous.clone(),
                hash.clone(),
            ));
            previous = hash;
        }
        let walk = |stored: &[(i64, AuditEvent, Option<String>, String, String)]| {
            let mut verifier = ChainVerifier::new(&keys, None);
            for (sequence, event, key_id, previous, hash) in stored {
                verifier.check(*sequence, event, key_id.as_deref(), previous, hash)?;
            }
            Ok::<_, ChainBreak>(())
        };
        assert_eq!(walk(&stored), Ok(()));
        // An unkeyed event after a keyed one is a rewrite, whatever its hash.
        let mut rewritten = stored.clone();
        let forged = rewritten[2].1.chain_hash(3, &rewritten[2].3, None);
        rewritten[2].2 = None;
        rewritten[2].4 = forged;
        let mut appended = stored;
        let fourth = event("d");
        let fourth_hash = fourth.chain_hash(4, &appended[2].4, None);
        appended.push((4, fourth, None, appended[2].4.clone(), fourth_hash));
        assert_eq!(walk(&appended), Err(ChainBreak::Unkeyed { sequence: 4 }));
        assert_eq!(
            walk(&rewritten),
            Err(ChainBreak::Unkeyed { sequence: 3 }),
            "the key was made after event 2"
        );
    }

    #[test]
    fn an_anchor_is_one_line_of_one_length_that_parses_back() {
        let hash = "ab".repeat(32);
        let small = Anchor {
            sequence: 7,
            hash: hash.clone(),
        };
        let large = Anchor {
            sequence: 9_000_000_000,
            hash,
        };
        assert_eq!(small.encode().len(), large.encode().len());
        assert_eq!(Anchor::parse(&small.encode()), Some(small));
        assert_eq!(Anchor::parse(&large.encode()), Some(large));
        assert_eq!(Anchor::parse("seven abc"), None);
    }

    #[test]
    fn an_unknown_key_and_a_short_secret_are_refused() {
        assert!(AuditKey::from_secret(&[1; 16]).is_err());
        let other = AuditKeys::new(AuditKey::from_secret(&[3; 32]).unwrap(), vec![]);
        let stored = chain(&[event("a")]);
        let mut verifier = ChainVerifier::new(&other, None);
        let (sequence, event, previous, hash) = &stored[0];
        assert!(matches!(
            verifier.check(*sequence, event, Some(keys().current().id()), previous, hash),
            Err(ChainBreak::UnknownKey { .. })
        ));
        assert!(
            !format!("{:?}", keys().current()).contains("0101"),
            "the secret never prints"
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
