//! One-time challenges for chip cards. A challenge is made for one card (its token), lives 60
//! seconds, and is taken out when answered, whether the answer verifies or not: an answer can
//! be used once. Challenges are held in this process's memory, so an answer is redeemed at the
//! replica that issued its challenge (a reader keeps its gRPC channel to one replica; an answer
//! sent elsewhere is refused as unknown, never accepted twice).

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use hie_core::Error;

use super::keys::CardToken;

/// How long a challenge may be answered.
pub const CHALLENGE_LIFETIME: Duration = Duration::seconds(60);

/// The most challenges waiting at once; more are refused until some are answered or expire.
pub const MOST_PENDING: usize = 200_000;

/// A challenge handed to a reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub id: String,
    pub bytes: [u8; 16],
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug)]
struct Pending {
    card: CardToken,
    bytes: [u8; 16],
    expires_at: DateTime<Utc>,
}

/// The challenges issued and not yet answered.
#[derive(Debug, Default)]
pub struct Challenges {
    pending: Mutex<HashMap<[u8; 16], Pending>>,
}

fn parse_id(text: &str) -> Option<[u8; 16]> {
    uuid::Uuid::try_parse(text.trim()).ok().map(|id| *id.as_bytes())
}

impl Challenges {
    /// A new challenge for the card with token `card`.
    pub fn issue(&self, card: CardToken, now: DateTime<Utc>) -> Result<Challenge, Error> {
        let random: [u8; 32] = ring::rand::generate(&ring::rand::SystemRandom::new())
            .map_err(|_| Error::Unavailable("the random source did not answer".into()))?
            .expose();
        let (id, bytes) = random.split_at(16);
        let id = uuid::Builder::from_random_bytes(id.try_into().unwrap_or_default()).into_uuid();
        let bytes: [u8; 16] = bytes.try_into().unwrap_or_default();
        let expires_at = now + CHALLENGE_LIFETIME;
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Expired challenges are swept by the replica's refresh (every 250 ms), not here: a full
        // map swept on every call would make each call as slow as the map is large.
        if pending.len() >= MOST_PENDING {
            return Err(Error::Unavailable(
                "too many card challenges are waiting to be answered; try again shortly".into(),
            ));
        }
        pending.insert(
            *id.as_bytes(),
            Pending {
                card,
                bytes,
                expires_at,
            },
        );
        Ok(Challenge {
            id: id.to_string(),
            bytes,
            expires_at,
        })
    }

    /// Takes the challenge `id` for answering by the card with token `card`: its bytes, or why
    /// it cannot be answered (unknown or used, expired, made for another card). Taken either way.
    pub fn take(&self, id: &str, card: CardToken, now: DateTime<Utc>) -> Result<[u8; 16], Error> {
        const FIELD: &str = "card.chip.challenge_id";
        let key =
            parse_id(id).ok_or_else(|| Error::invalid(FIELD, "is not a challenge id, expected a UUID"))?;
        let taken = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&key);
        let pending = taken.ok_or_else(|| {
            Error::precondition(
                FIELD,
                "no such challenge is waiting: it was answered already, expired, or was issued by another replica; \
                 ask for a new one (BeginCardAuthentication)",
            )
        })?;
        if pending.expires_at <= now {
            return Err(Error::precondition(
                FIELD,
                "the challenge expired; ask for a new one (BeginCardAuthentication)",
            ));
        }
        if pending.card != card {
            return Err(Error::invalid(FIELD, "the challenge was issued for another card"));
        }
        Ok(pending.bytes)
    }

    /// Forgets the challenges that expired (run now and then, so the map stays small).
    pub fn sweep(&self, now: DateTime<Utc>) {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|_, p| p.expires_at > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARD: CardToken = CardToken { value: [1; 32] };
    const OTHER: CardToken = CardToken { value: [2; 32] };

    #[test]
    fn a_challenge_is_answered_once_for_its_own_card_before_it_expires() {
        let challenges = Challenges::default();
        let now = Utc::now();
        let issued = challenges.issue(CARD, now).unwrap();
        assert_eq!(challenges.take(&issued.id, CARD, now).unwrap(), issued.bytes);
        let replay = challenges.take(&issued.id, CARD, now).unwrap_err();
        assert!(matches!(replay, Error::FailedPrecondition { .. }), "{replay}");

        let issued = challenges.issue(CARD, now).unwrap();
        let late = now + CHALLENGE_LIFETIME + Duration::seconds(1);
        assert!(
            challenges
                .take(&issued.id, CARD, late)
                .unwrap_err()
                .to_string()
                .contains("expired")
        );

        let issued = challenges.issue(CARD, now).unwrap();
        let stolen = challenges.take(&issued.id, OTHER, now).unwrap_err();
        assert!(matches!(stolen, Error::InvalidArgument { .. }), "{stolen}");
        // Taken even so: the rightful card cannot answer it afterwards either.
        assert!(challenges.take(&issued.id, CARD, now).is_err());
        assert!(matches!(
            challenges.take("nonsense", CARD, now),
            Err(Error::InvalidArgument { .. })
        ));

        challenges.issue(CARD, now).unwrap();
        challenges.sweep(late);
        assert!(challenges.pending.lock().unwrap().is_empty());
    }
}
