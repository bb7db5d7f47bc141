//! The per-replica look-up table of cards: token → card, in memory, so that resolving a card at
//! a reader costs no database round trip for the look-up. Each replica loads it at start and
//! keeps it current: its own writes put their cards in as they commit, and a poll every
//! [`REFRESH_EVERY`] reads the cards changed since (by other replicas) from the database. Until
//! the load finishes, look-ups go to the database.
//!
//! Memory: about 80 bytes per card (a 16-byte key, the card and person ids as 16-byte numbers,
//! type, status, expiry and last four) plus the hash table's slack; `hie bench checkin` reports
//! the process's resident memory with 3,000,000 cards.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::NaiveDate;
use hie_core::id::PersonId;

use super::keys::CardToken;
use super::{Card, CardId, CardStatus, CardType};

/// How often a replica reads the cards others changed.
pub const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

const SHARDS: usize = 16;

/// What the table keeps of a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    card: u128,
    person: u128,
    card_type: CardType,
    status: CardStatus,
    expires_on: Option<NaiveDate>,
    last_four: [u8; 4],
    updated_at: i64,
}

/// A card as the table answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedCard {
    pub id: CardId,
    pub person: PersonId,
    pub card_type: CardType,
    pub status: CardStatus,
    pub expires_on: Option<NaiveDate>,
    pub last_four: String,
    /// When the card last changed (UTC microseconds): the table keeps the newest it is given.
    pub updated_at: i64,
}

impl IndexedCard {
    pub fn of(card: &Card) -> IndexedCard {
        IndexedCard {
            id: card.id.clone(),
            person: card.person.clone(),
            card_type: card.card_type,
            status: card.status,
            expires_on: card.expires_on,
            last_four: card.last_four.clone(),
            updated_at: hie_core::time::to_micros(card.updated_at),
        }
    }

    /// The status a reader meets today (an active card past its expiry date is expired).
    pub fn status_on(&self, today: NaiveDate) -> CardStatus {
        super::status_on(self.status, self.expires_on, today)
    }
}

fn as_number(id: &str) -> Option<u128> {
    uuid::Uuid::try_parse(id).ok().map(|u| u.as_u128())
}

/// The token's first 16 bytes: as unique as the whole among any number of cards a region holds.
fn key_of(token: &CardToken) -> u128 {
    let mut first = [0u8; 16];
    first.copy_from_slice(&token.value[..16]);
    u128::from_be_bytes(first)
}

/// The table.
#[derive(Debug)]
pub struct CardIndex {
    shards: Vec<RwLock<HashMap<u128, Entry>>>,
    loaded: AtomicBool,
}

impl Default for CardIndex {
    fn default() -> CardIndex {
        CardIndex {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            loaded: AtomicBool::new(false),
        }
    }
}

impl CardIndex {
    fn shard(&self, key: u128) -> &RwLock<HashMap<u128, Entry>> {
        &self.shards[(key % SHARDS as u128) as usize]
    }

    /// Whether the table holds every card (its first load finished).
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    pub fn mark_loaded(&self) {
        self.loaded.store(true, Ordering::Release);
    }

    /// Puts the card stored under `token` in the table, as it now stands.
    pub fn put(&self, token: &CardToken, card: &IndexedCard) {
        let (Some(id), Some(person)) = (as_number(card.id.as_str()), as_number(card.person.as_str())) else {
            return;
        };
        let mut last_four = [b' '; 4];
        for (slot, byte) in last_four.iter_mut().zip(card.last_four.bytes()) {
            *slot = byte;
        }
        let key = key_of(token);
        let entry = Entry {
            card: id,
            person,
            card_type: card.card_type,
            status: card.status,
            expires_on: card.expires_on,
            last_four,
            updated_at: card.updated_at,
        };
        let mut shard = self
            .shard(key)
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // A poll that read the row before a local write committed must not undo that write.
        if shard
            .get(&key)
            .is_none_or(|kept| kept.updated_at <= entry.updated_at)
        {
            shard.insert(key, entry);
        }
    }

    /// The card stored under the first of `tokens` the table holds.
    pub fn get(&self, tokens: &[CardToken]) -> Option<IndexedCard> {
        tokens.iter().find_map(|token| {
            let key = key_of(token);
            let entry = *self
                .shard(key)
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .get(&key)?;
            Some(IndexedCard {
                id: CardId::parse(&uuid::Uuid::from_u128(entry.card).to_string()).ok()?,
                person: PersonId::parse(&uuid::Uuid::from_u128(entry.person).to_string()).ok()?,
                card_type: entry.card_type,
                status: entry.status,
                expires_on: entry.expires_on,
                last_four: String::from_utf8_lossy(&entry.last_four).trim().to_owned(),
                updated_at: entry.updated_at,
            })
        })
    }

    /// How many cards the table holds.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|poisoned| poisoned.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_put_is_found_by_its_token_and_replaced_in_place() {
        let index = CardIndex::default();
        let token = CardToken { value: [9; 32] };
        let mut card = IndexedCard {
            id: CardId::generate(),
            person: PersonId::generate(),
            card_type: CardType::Citizen,
            status: CardStatus::Active,
            expires_on: NaiveDate::from_ymd_opt(2030, 1, 31),
            last_four: "0123".to_owned(),
            updated_at: 1,
        };
        index.put(&token, &card);
        assert_eq!(
            index.get(&[CardToken { value: [8; 32] }, token]),
            Some(card.clone())
        );
        card.status = CardStatus::Lost;
        card.updated_at = 2;
        index.put(&token, &card);
        assert_eq!(index.get(&[token]).map(|c| c.status), Some(CardStatus::Lost));
        // An older read of the row (a poll racing a local write) changes nothing.
        let stale = IndexedCard {
            status: CardStatus::Active,
            updated_at: 1,
            ..card.clone()
        };
        index.put(&token, &stale);
        assert_eq!(index.get(&[token]).map(|c| c.status), Some(CardStatus::Lost));
        assert_eq!(index.len(), 1);
        let today = NaiveDate::from_ymd_opt(2030, 2, 1).unwrap();
        card.status = CardStatus::Active;
        assert_eq!(card.status_on(today), CardStatus::Expired);
    }
}
