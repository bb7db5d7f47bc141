//! SQL of cards and their histories, written once for SQLite and PostgreSQL. Writes take the
//! caller's unit of work; reads return rows and leave the decisions to the domain.

use chrono::NaiveDate;
use hie_access::UnitOfWork;
use hie_core::db::{Database, placeholders};
use hie_core::domain::OrganisationCode;
use hie_core::id::PersonId;
use hie_core::{Error, time};
use sqlx::{AssertSqlSafe, FromRow};

use crate::domain::keys::CardToken;
use crate::domain::{Card, CardChange, CardChangeKind, CardId, CardStatus, CardType};

#[derive(Clone, Debug)]
pub struct CardStore {
    database: Database,
}

fn corrupt(what: &str) -> Error {
    Error::Internal(format!("a stored {what} is unreadable").into())
}

const CARD_COLUMNS: &str = "id, card_type, token, last_four, person_id, status, expires_on, replaces, replaced_by, \
     linked_at, status_changed_at, updated_at";

#[derive(FromRow)]
struct CardRow {
    id: String,
    card_type: String,
    token: String,
    last_four: String,
    person_id: String,
    status: String,
    expires_on: Option<String>,
    replaces: Option<String>,
    replaced_by: Option<String>,
    linked_at: i64,
    status_changed_at: i64,
    updated_at: i64,
}

fn card_id(text: Option<String>) -> Result<Option<CardId>, Error> {
    text.map(|id| CardId::parse(&id).map_err(|_| corrupt("card id")))
        .transpose()
}

impl TryFrom<CardRow> for Card {
    type Error = Error;

    fn try_from(row: CardRow) -> Result<Card, Error> {
        Ok(Card {
            id: CardId::parse(&row.id).map_err(|_| corrupt("card id"))?,
            card_type: CardType::from_code(&row.card_type).ok_or_else(|| corrupt("card type"))?,
            token: CardToken::from_hex(&row.token).ok_or_else(|| corrupt("card token"))?,
            last_four: row.last_four,
            person: PersonId::parse(&row.person_id).map_err(|_| corrupt("card's person"))?,
            status: CardStatus::from_code(&row.status).ok_or_else(|| corrupt("card status"))?,
            expires_on: row
                .expires_on
                .map(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").map_err(|_| corrupt("card expiry")))
                .transpose()?,
            replaces: card_id(row.replaces)?,
            replaced_by: card_id(row.replaced_by)?,
            linked_at: time::from_micros(row.linked_at),
            status_changed_at: time::from_micros(row.status_changed_at),
            updated_at: time::from_micros(row.updated_at),
        })
    }
}

#[derive(FromRow)]
struct ChangeRow {
    card_id: String,
    changed_at: i64,
    change: String,
    status: String,
    person_id: String,
    organisation_code: Option<String>,
    user_id: String,
    reason: Option<String>,
}

impl TryFrom<ChangeRow> for CardChange {
    type Error = Error;

    fn try_from(row: ChangeRow) -> Result<CardChange, Error> {
        Ok(CardChange {
            card: CardId::parse(&row.card_id).map_err(|_| corrupt("card id"))?,
            changed_at: time::from_micros(row.changed_at),
            kind: CardChangeKind::from_code(&row.change).ok_or_else(|| corrupt("card change"))?,
            status: CardStatus::from_code(&row.status).ok_or_else(|| corrupt("card status"))?,
            person: PersonId::parse(&row.person_id).map_err(|_| corrupt("card's person"))?,
            organisation: row
                .organisation_code
                .map(|code| OrganisationCode::parse(&code).map_err(|_| corrupt("organisation")))
                .transpose()?,
            user_id: row.user_id,
            reason: row.reason,
        })
    }
}

/// A duplicate token or a second active card of a type, written by a concurrent link: tried
/// again, the link then finds the first.
fn concurrent(error: sqlx::Error) -> Error {
    match Error::from(error) {
        Error::AlreadyExists(_) => {
            Error::Conflict("a concurrent link of the same card or card type; retry".into())
        }
        other => other,
    }
}

type CardQuery<'q> = sqlx::query::QueryAs<'q, sqlx::Any, CardRow, sqlx::any::AnyArguments>;

fn by_tokens(tokens: &[CardToken]) -> CardQuery<'static> {
    let sql = format!(
        "SELECT {CARD_COLUMNS} FROM cards WHERE token IN ({})",
        placeholders(1, tokens.len())
    );
    tokens
        .iter()
        .fold(sqlx::query_as(AssertSqlSafe(sql)), |query, token| {
            query.bind(token.to_hex())
        })
}

fn by_id(id: &CardId) -> CardQuery<'static> {
    let sql = format!("SELECT {CARD_COLUMNS} FROM cards WHERE id = $1");
    sqlx::query_as(AssertSqlSafe(sql)).bind(id.as_str().to_owned())
}

impl CardStore {
    pub fn new(database: Database) -> CardStore {
        CardStore { database }
    }

    /// The card stored under any of `tokens`, read in the unit (a write's own look-up).
    pub async fn card_by_tokens(
        &self,
        unit: &mut UnitOfWork,
        tokens: &[CardToken],
    ) -> Result<Option<Card>, Error> {
        let row = by_tokens(tokens)
            .fetch_optional(&mut *unit.connection().await?)
            .await?;
        row.map(Card::try_from).transpose()
    }

    /// The card stored under any of `tokens`, read outside any write (the reader's look-up
    /// while the replica's table is still loading).
    pub async fn find_by_tokens(&self, tokens: &[CardToken]) -> Result<Option<Card>, Error> {
        let row = by_tokens(tokens).fetch_optional(self.database.pool()).await?;
        row.map(Card::try_from).transpose()
    }

    /// The card `id`, read in the unit.
    pub async fn card_in(&self, unit: &mut UnitOfWork, id: &CardId) -> Result<Option<Card>, Error> {
        let row = by_id(id).fetch_optional(&mut *unit.connection().await?).await?;
        row.map(Card::try_from).transpose()
    }

    /// The card `id`.
    pub async fn card(&self, id: &CardId) -> Result<Option<Card>, Error> {
        let row = by_id(id).fetch_optional(self.database.pool()).await?;
        row.map(Card::try_from).transpose()
    }

    /// The active cards of `card_type` linked to any of `persons`, read in the unit.
    pub async fn active_of_type(
        &self,
        unit: &mut UnitOfWork,
        persons: &[PersonId],
        card_type: CardType,
    ) -> Result<Vec<Card>, Error> {
        let sql = format!(
            "SELECT {CARD_COLUMNS} FROM cards WHERE card_type = $1 AND status = 'active' AND person_id IN ({})",
            placeholders(2, persons.len())
        );
        let mut query = sqlx::query_as::<_, CardRow>(AssertSqlSafe(sql)).bind(card_type.code());
        for person in persons {
            query = query.bind(person.as_str());
        }
        let rows = query.fetch_all(&mut *unit.connection().await?).await?;
        rows.into_iter().map(Card::try_from).collect()
    }

    /// Every card linked to any of `persons`, the newest link first.
    pub async fn cards_of(&self, persons: &[PersonId]) -> Result<Vec<Card>, Error> {
        let sql = format!(
            "SELECT {CARD_COLUMNS} FROM cards WHERE person_id IN ({}) ORDER BY linked_at DESC, id",
            placeholders(1, persons.len())
        );
        let mut query = sqlx::query_as::<_, CardRow>(AssertSqlSafe(sql));
        for person in persons {
            query = query.bind(person.as_str());
        }
        let rows = query.fetch_all(self.database.pool()).await?;
        rows.into_iter().map(Card::try_from).collect()
    }

    /// Writes a card as it now stands: a new one with its token (under the key `token_key_id`),
    /// or an existing one's person, status, expiry and successor (its number never changes).
    pub async fn write(&self, unit: &mut UnitOfWork, card: &Card, token_key_id: &str) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO cards (id, card_type, token, token_key_id, last_four, person_id, status, expires_on, \
             replaces, replaced_by, linked_at, status_changed_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (id) DO UPDATE SET person_id = excluded.person_id, status = excluded.status, \
             expires_on = excluded.expires_on, replaced_by = excluded.replaced_by, linked_at = excluded.linked_at, \
             status_changed_at = excluded.status_changed_at, updated_at = excluded.updated_at",
        )
        .bind(card.id.as_str())
        .bind(card.card_type.code())
        .bind(card.token.to_hex())
        .bind(token_key_id)
        .bind(&card.last_four)
        .bind(card.person.as_str())
        .bind(card.status.code())
        .bind(card.expires_on.map(|d| d.format("%Y-%m-%d").to_string()))
        .bind(card.replaces.as_ref().map(CardId::as_str))
        .bind(card.replaced_by.as_ref().map(CardId::as_str))
        .bind(time::to_micros(card.linked_at))
        .bind(time::to_micros(card.status_changed_at))
        .bind(time::to_micros(card.updated_at))
        .execute(&mut *unit.connection().await?)
        .await
        .map_err(concurrent)?;
        Ok(())
    }

    /// Adds one step to a card's history.
    pub async fn record_change(&self, unit: &mut UnitOfWork, change: &CardChange) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO card_changes (id, card_id, changed_at, change, status, person_id, organisation_code, \
             user_id, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(change.card.as_str())
        .bind(time::to_micros(change.changed_at))
        .bind(change.kind.code())
        .bind(change.status.code())
        .bind(change.person.as_str())
        .bind(change.organisation.as_ref().map(OrganisationCode::as_str))
        .bind(&change.user_id)
        .bind(change.reason.as_deref())
        .execute(&mut *unit.connection().await?)
        .await?;
        Ok(())
    }

    /// A card's history, oldest first.
    pub async fn changes_of(&self, card: &CardId) -> Result<Vec<CardChange>, Error> {
        let rows: Vec<ChangeRow> = sqlx::query_as(
            "SELECT card_id, changed_at, change, status, person_id, organisation_code, user_id, reason \
             FROM card_changes WHERE card_id = $1 ORDER BY changed_at, id",
        )
        .bind(card.as_str())
        .fetch_all(self.database.pool())
        .await?;
        rows.into_iter().map(CardChange::try_from).collect()
    }

    /// On PostgreSQL, a connection listening for the changes other replicas commit.
    pub async fn listen_for_changes(&self) -> Result<Option<hie_core::db::ChangeListener>, Error> {
        self.database.listen_for_changes().await
    }

    /// The outbox events of `events` written at or after `since` (UTC microseconds).
    pub async fn events_since(
        &self,
        events: &[hie_core::vocabulary::EventType],
        since: i64,
    ) -> Result<Vec<hie_core::outbox::OutboxEvent>, Error> {
        hie_core::outbox::written_since(self.database.pool(), events, since, 50_000).await
    }

    /// Up to `limit` cards changed at or after `since` (UTC microseconds), in (change, id) order
    /// after the card `(since, after)`: the replica's table reads them page by page, and
    /// the poll reads what others changed. The last card's change time comes with each page.
    pub async fn changed_since(
        &self,
        since: i64,
        after: &str,
        limit: i64,
    ) -> Result<Vec<(Card, i64)>, Error> {
        let sql = format!(
            "SELECT {CARD_COLUMNS} FROM cards WHERE (updated_at, id) > ($1, $2) ORDER BY updated_at, id LIMIT $3"
        );
        let rows: Vec<CardRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(since)
            .bind(after)
            .bind(limit)
            .fetch_all(self.database.pool())
            .await?;
        rows.into_iter()
            .map(|row| {
                let updated_at = row.updated_at;
                Card::try_from(row).map(|card| (card, updated_at))
            })
            .collect()
    }
}
