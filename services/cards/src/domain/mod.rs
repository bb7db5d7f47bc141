//! The card service's domain: card types and numbers (`number.rs`), keys and chips (`keys.rs`),
//! one-time challenges (`challenge.rs`), the replica's card table (`index.rs`) and view of
//! persons (`persons.rs`) and their upkeep (`replica.rs`), the life cycle (`service.rs`), lists
//! and histories (`reads.rs`), and the reception's resolve and check-in (`reception.rs`).

pub mod challenge;
pub mod index;
pub mod keys;
pub mod number;
pub mod persons;
mod reads;
mod reception;
mod replica;
pub mod service;

use chrono::{DateTime, NaiveDate, Utc};
use hie_core::domain::OrganisationCode;
use hie_core::id::PersonId;

pub use number::{CardNumber, CardType};
pub use reception::{CheckInRequest, CheckedIn, Presentation, ResolvedCard};
pub use service::CardService;

hie_core::id_type!(
    /// The exchange's id of a card: what every answer shows instead of its number.
    CardId,
    "card"
);

/// Where a card stands in its life cycle. Only an active card works at a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CardStatus {
    Active,
    Lost,
    Revoked,
    Expired,
    Replaced,
    Unlinked,
}

impl CardStatus {
    pub const ALL: [CardStatus; 6] = [
        CardStatus::Active,
        CardStatus::Lost,
        CardStatus::Revoked,
        CardStatus::Expired,
        CardStatus::Replaced,
        CardStatus::Unlinked,
    ];

    pub fn code(self) -> &'static str {
        match self {
            CardStatus::Active => "active",
            CardStatus::Lost => "lost",
            CardStatus::Revoked => "revoked",
            CardStatus::Expired => "expired",
            CardStatus::Replaced => "replaced",
            CardStatus::Unlinked => "unlinked",
        }
    }

    pub fn from_code(code: &str) -> Option<CardStatus> {
        CardStatus::ALL.into_iter().find(|s| s.code() == code)
    }
}

/// A card as the exchange keeps it: its number only as a keyed hash (in the store) and its last
/// four characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub id: CardId,
    pub card_type: CardType,
    /// The keyed hash the card is found by (under the token key it was stored with).
    pub token: keys::CardToken,
    pub last_four: String,
    pub status: CardStatus,
    /// The person it was linked to (reads follow merges from there).
    pub person: PersonId,
    pub expires_on: Option<NaiveDate>,
    pub replaces: Option<CardId>,
    pub replaced_by: Option<CardId>,
    pub linked_at: DateTime<Utc>,
    pub status_changed_at: DateTime<Utc>,
    /// When the row last changed: a replica's table keeps the newest it has seen.
    pub updated_at: DateTime<Utc>,
}

impl Card {
    /// The status a reader meets today: an active card past its expiry date is expired.
    pub fn status_on(&self, today: NaiveDate) -> CardStatus {
        status_on(self.status, self.expires_on, today)
    }

    /// "resident health card …1234", as errors and histories name a card.
    pub fn described(&self) -> String {
        format!("{} …{}", self.card_type.name(), self.last_four)
    }
}

/// The status a reader meets on `today`: an active card past its last day is expired.
pub(crate) fn status_on(status: CardStatus, expires_on: Option<NaiveDate>, today: NaiveDate) -> CardStatus {
    match (status, expires_on) {
        (CardStatus::Active, Some(last_day)) if today > last_day => CardStatus::Expired,
        (status, _) => status,
    }
}

/// What happened to a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardChangeKind {
    Linked,
    Unlinked,
    Lost,
    Revoked,
    Expired,
    /// This card was replaced by another.
    Replaced,
    /// This card replaced another.
    Replacement,
}

impl CardChangeKind {
    pub const ALL: [CardChangeKind; 7] = [
        CardChangeKind::Linked,
        CardChangeKind::Unlinked,
        CardChangeKind::Lost,
        CardChangeKind::Revoked,
        CardChangeKind::Expired,
        CardChangeKind::Replaced,
        CardChangeKind::Replacement,
    ];

    pub fn code(self) -> &'static str {
        match self {
            CardChangeKind::Linked => "linked",
            CardChangeKind::Unlinked => "unlinked",
            CardChangeKind::Lost => "lost",
            CardChangeKind::Revoked => "revoked",
            CardChangeKind::Expired => "expired",
            CardChangeKind::Replaced => "replaced",
            CardChangeKind::Replacement => "replacement",
        }
    }

    pub fn from_code(code: &str) -> Option<CardChangeKind> {
        CardChangeKind::ALL.into_iter().find(|k| k.code() == code)
    }
}

/// One entry of a card's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardChange {
    pub card: CardId,
    pub changed_at: DateTime<Utc>,
    pub kind: CardChangeKind,
    pub status: CardStatus,
    pub person: PersonId,
    pub organisation: Option<OrganisationCode>,
    pub user_id: String,
    pub reason: Option<String>,
}
