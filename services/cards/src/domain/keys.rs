//! The keys of the card service: the token key that turns a card number into the keyed hash it
//! is found by, and the issuers' master keys from which each chip card's own key is derived.
//! Keys come from files named in the settings; they never enter the database, a log or an error
//! (only a token key's id, a digest, is stored beside each token, so that a rotation keeps every
//! card findable: look-ups try the current key and every retired one).

use ring::hmac;

use super::number::{CardNumber, CardType};

/// The fewest bytes of secret a key may have.
pub const MIN_SECRET_BYTES: usize = 32;

/// A secret used as an HMAC-SHA256 key, with its id (the first 8 bytes of its SHA-256, in hex).
#[derive(Clone)]
pub struct SecretKey {
    id: String,
    key: hmac::Key,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.id)
    }
}

impl SecretKey {
    pub fn from_secret(secret: &[u8]) -> Result<SecretKey, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the key has {} bytes, expected at least {MIN_SECRET_BYTES}",
                secret.len()
            ));
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, secret);
        Ok(SecretKey {
            id: hie_core::digest::hex(&digest.as_ref()[..8]),
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        })
    }

    /// A random key that lives as long as the process (tests, scratch exchanges).
    pub fn ephemeral() -> SecretKey {
        SecretKey::from_secret(&generate_secret()).unwrap_or_else(|_| unreachable_key())
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn sign(&self, parts: &[&[u8]]) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.key);
        for part in parts {
            context.update(part);
            // A separator no part contains keeps ("ab","c") from signing as ("a","bc").
            context.update(&[0]);
        }
        context.sign()
    }
}

/// 32 bytes from the system's random source (for new key files and ephemeral keys).
pub fn generate_secret() -> [u8; 32] {
    ring::rand::generate::<[u8; 32]>(&ring::rand::SystemRandom::new())
        .expect("the system's random source answers")
        .expose()
}

/// Never used: every secret given to it is 32 bytes (an HMAC-SHA256 tag or a generated one).
fn unreachable_key() -> SecretKey {
    SecretKey {
        id: "0000000000000000".to_owned(),
        key: hmac::Key::new(hmac::HMAC_SHA256, &[7; 32]),
    }
}

/// A card's look-up token: the keyed hash of its type and number, and the key that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CardToken {
    pub value: [u8; 32],
}

impl CardToken {
    pub fn to_hex(self) -> String {
        hie_core::digest::hex(&self.value)
    }

    pub fn from_hex(text: &str) -> Option<CardToken> {
        if text.len() != 64 {
            return None;
        }
        let mut value = [0u8; 32];
        for (i, byte) in value.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(CardToken { value })
    }
}

/// The token key in use and the retired ones still stored beside older cards.
#[derive(Debug, Clone)]
pub struct TokenKeys {
    current: SecretKey,
    retired: Vec<SecretKey>,
}

impl TokenKeys {
    pub fn new(current: SecretKey, retired: Vec<SecretKey>) -> TokenKeys {
        TokenKeys { current, retired }
    }

    pub fn ephemeral() -> TokenKeys {
        TokenKeys::new(SecretKey::ephemeral(), Vec::new())
    }

    pub fn current_id(&self) -> &str {
        self.current.id()
    }

    /// The token a card is stored under now.
    pub fn token(&self, card: &CardNumber) -> CardToken {
        token_under(&self.current, card)
    }

    /// Every token the card may be stored under: the current key's first.
    pub fn candidates(&self, card: &CardNumber) -> Vec<CardToken> {
        std::iter::once(&self.current)
            .chain(&self.retired)
            .map(|key| token_under(key, card))
            .collect()
    }
}

fn token_under(key: &SecretKey, card: &CardNumber) -> CardToken {
    let tag = key.sign(&[
        b"hie-card-token/v1",
        card.card_type().code().as_bytes(),
        card.digits().as_bytes(),
    ]);
    let mut value = [0u8; 32];
    value.copy_from_slice(tag.as_ref());
    CardToken { value }
}

/// How a card type's chip proves it is genuine: the card holds a key its issuer derived from a
/// master key and the card's number, and answers a challenge with a MAC under it. The national
/// SM3/SM4 family is another implementation of this trait, chosen per card type.
pub trait ChipAuthenticator: Send + Sync + std::fmt::Debug {
    /// The algorithm's name, told to the reader with each challenge.
    fn algorithm(&self) -> &'static str;
    /// The MAC the genuine card computes over `challenge` (the issuer's side, and the simulator's).
    fn respond(&self, card: &CardNumber, challenge: &[u8]) -> Vec<u8>;
    /// Whether `mac` is the genuine card's answer to `challenge`, compared in constant time.
    fn verify(&self, card: &CardNumber, challenge: &[u8], mac: &[u8]) -> bool;
}

/// HMAC-SHA256 chips: the card key is HMAC(master key, type and number); the answer
/// HMAC(card key, challenge).
#[derive(Debug, Clone)]
pub struct HmacSha256Chip {
    master: SecretKey,
}

impl HmacSha256Chip {
    pub fn new(master: SecretKey) -> HmacSha256Chip {
        HmacSha256Chip { master }
    }

    fn card_key(&self, card: &CardNumber) -> SecretKey {
        let derived = self.master.sign(&[
            b"hie-card-key/v1",
            card.card_type().code().as_bytes(),
            card.digits().as_bytes(),
        ]);
        SecretKey::from_secret(derived.as_ref()).unwrap_or_else(|_| unreachable_key())
    }
}

impl ChipAuthenticator for HmacSha256Chip {
    fn algorithm(&self) -> &'static str {
        "hmac-sha256"
    }

    fn respond(&self, card: &CardNumber, challenge: &[u8]) -> Vec<u8> {
        self.card_key(card)
            .sign(&[b"hie-card-auth/v1", challenge])
            .as_ref()
            .to_vec()
    }

    fn verify(&self, card: &CardNumber, challenge: &[u8], mac: &[u8]) -> bool {
        let card_key = self.card_key(card);
        let mut message = Vec::with_capacity(challenge.len() + 20);
        message.extend_from_slice(b"hie-card-auth/v1\0");
        message.extend_from_slice(challenge);
        message.push(0);
        hmac::verify(&card_key.key, &message, mac).is_ok()
    }
}

/// The chip authenticator of each card type.
#[derive(Debug, Clone)]
pub struct Chips {
    by_type: Vec<(CardType, std::sync::Arc<dyn ChipAuthenticator>)>,
}

impl Chips {
    pub fn new(by_type: Vec<(CardType, std::sync::Arc<dyn ChipAuthenticator>)>) -> Chips {
        Chips { by_type }
    }

    /// HMAC-SHA256 chips for every type, under random master keys (tests, scratch exchanges).
    pub fn ephemeral() -> Chips {
        Chips::new(
            CardType::ALL
                .into_iter()
                .map(|t| {
                    let chip: std::sync::Arc<dyn ChipAuthenticator> =
                        std::sync::Arc::new(HmacSha256Chip::new(SecretKey::ephemeral()));
                    (t, chip)
                })
                .collect(),
        )
    }

    pub fn of(&self, card_type: CardType) -> Option<&dyn ChipAuthenticator> {
        self.by_type
            .iter()
            .find(|(t, _)| *t == card_type)
            .map(|(_, chip)| chip.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::number::with_luhn_digit;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_secret(&[byte; 32]).unwrap()
    }

    #[test]
    fn tokens_are_keyed_per_type_and_survive_a_rotation() {
        let card = CardNumber::parse(CardType::Bank, &with_luhn_digit("622202123456789")).unwrap();
        let old = TokenKeys::new(key(1), Vec::new());
        let rotated = TokenKeys::new(key(2), vec![key(1)]);
        assert_ne!(old.token(&card), rotated.token(&card));
        assert_eq!(rotated.candidates(&card)[1], old.token(&card));
        let citizen = CardNumber::parse(CardType::Citizen, &with_luhn_digit("52260112345")).unwrap();
        assert_ne!(old.token(&citizen), old.token(&card));
        let hex = old.token(&card).to_hex();
        assert!(!hex.contains(card.digits()));
        assert_eq!(CardToken::from_hex(&hex), Some(old.token(&card)));
        assert!(SecretKey::from_secret(&[1; 16]).is_err());
    }

    #[test]
    fn only_the_genuine_card_answers_its_challenge() {
        let chip = HmacSha256Chip::new(key(3));
        let card = CardNumber::parse(CardType::SocialSecurity, "A12345678").unwrap();
        let other = CardNumber::parse(CardType::SocialSecurity, "A12345679").unwrap();
        let mac = chip.respond(&card, b"challenge-1");
        assert_eq!(mac.len(), 32);
        assert!(chip.verify(&card, b"challenge-1", &mac));
        assert!(!chip.verify(&card, b"challenge-2", &mac));
        assert!(!chip.verify(&other, b"challenge-1", &mac));
        assert!(!HmacSha256Chip::new(key(4)).verify(&card, b"challenge-1", &mac));
        assert!(!chip.verify(&card, b"challenge-1", &mac[..31]));
    }
}
