//! The transactional outbox: a change that others must hear about writes its event in the same
//! transaction as the change, so that the event exists exactly when the change does. Each event
//! is typed ([`EventType`], with its payload's schema version) and says whose it is (the person)
//! and where it happened (the organisation), in columns of their own, so that the events service
//! can filter without opening payloads. Ids are UUID version 7, made inside the writing
//! transaction: the events of one person are made under that person's lock, so their ids are in
//! the order they happened.

use sqlx::AnyConnection;

use crate::Error;
use crate::domain::OrganisationCode;
use crate::id::PersonId;
use crate::time;
use crate::vocabulary::EventType;

/// An event to announce, as its `outbox_events` row is written. The payload carries ids and
/// codes, never demographics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    pub id: String,
    pub event_type: EventType,
    pub person_id: Option<PersonId>,
    pub organisation: Option<OrganisationCode>,
    pub payload: String,
    pub created_at: i64,
}

/// The columns of `outbox_events`, in the order [`OutboxEvent::insert`] binds them.
pub const OUTBOX_COLUMNS: &str =
    "id, topic, person_id, organisation_code, schema_version, payload, created_at";

impl OutboxEvent {
    pub fn new(
        event_type: EventType,
        person_id: Option<&PersonId>,
        organisation: Option<&OrganisationCode>,
        payload: &serde_json::Value,
    ) -> OutboxEvent {
        OutboxEvent {
            id: uuid::Uuid::now_v7().to_string(),
            event_type,
            person_id: person_id.cloned(),
            organisation: organisation.cloned(),
            payload: payload.to_string(),
            created_at: time::to_micros(time::now()),
        }
    }

    /// Writes the rows in the caller's transaction, a statement per hundred. On PostgreSQL,
    /// when one of them concerns every replica, the transaction also notifies
    /// [`crate::db::CHANGES_CHANNEL`], delivered to the listening replicas as it commits.
    pub async fn insert_all(conn: &mut AnyConnection, events: &[OutboxEvent]) -> Result<(), Error> {
        if events.iter().any(|e| e.event_type.concerns_replicas()) && conn.backend_name() == "PostgreSQL" {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(crate::db::CHANGES_CHANNEL)
                .execute(&mut *conn)
                .await?;
        }
        for chunk in events.chunks(100) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let p = i * 7;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
                        p + 1,
                        p + 2,
                        p + 3,
                        p + 4,
                        p + 5,
                        p + 6,
                        p + 7
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO outbox_events ({OUTBOX_COLUMNS}) VALUES {}",
                rows.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for event in chunk {
                query = query
                    .bind(event.id.clone())
                    .bind(event.event_type.code())
                    .bind(event.person_id.as_ref().map(|p| p.as_str().to_owned()))
                    .bind(event.organisation.as_ref().map(|o| o.as_str().to_owned()))
                    .bind(event.event_type.schema_version())
                    .bind(event.payload.clone())
                    .bind(event.created_at);
            }
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// The persons the event names: its person and every person id in its payload (a merge
    /// names both persons, a link the record's old person and its new one).
    pub fn persons_named(&self) -> Vec<PersonId> {
        persons_named(self.person_id.as_ref().map(PersonId::as_str), &self.payload)
    }

    /// The event as the JSON object a PostgreSQL statement reads with `json_to_recordset`
    /// (see `OUTBOX_RECORDSET`), for a store that writes a whole write in one statement.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "topic": self.event_type.code(),
            "person_id": self.person_id.as_ref().map(PersonId::as_str),
            "organisation_code": self.organisation.as_ref().map(OrganisationCode::as_str),
            "schema_version": self.event_type.schema_version(),
            "payload": self.payload,
            "created_at": self.created_at,
        })
    }
}

/// The record type of [`OutboxEvent::to_json`] for PostgreSQL's `json_to_recordset`.
pub const OUTBOX_RECORDSET: &str = "x(id text, topic text, person_id text, organisation_code text, \
     schema_version bigint, payload text, created_at bigint)";

/// A stored event, as the events service and operators read it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub id: String,
    pub event_type: String,
    pub person_id: Option<String>,
    pub organisation_code: Option<String>,
    pub schema_version: i64,
    pub payload: serde_json::Value,
}

#[derive(sqlx::FromRow)]
struct StoredRow {
    id: String,
    topic: String,
    person_id: Option<String>,
    organisation_code: Option<String>,
    schema_version: i64,
    payload: String,
}

/// The events of the types `event_types` (all when empty), oldest first: for tests and operators.
pub async fn events(conn: &mut AnyConnection, event_types: &[EventType]) -> Result<Vec<StoredEvent>, Error> {
    let rows: Vec<StoredRow> = sqlx::query_as(
        "SELECT id, topic, person_id, organisation_code, schema_version, payload FROM outbox_events ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .filter(|row| event_types.is_empty() || event_types.iter().any(|t| t.code() == row.topic))
        .map(|row| {
            let payload = serde_json::from_str(&row.payload)
                .map_err(|e| Error::internal("an outbox payload is not JSON", e))?;
            Ok(StoredEvent {
                id: row.id,
                event_type: row.topic,
                person_id: row.person_id,
                organisation_code: row.organisation_code,
                schema_version: row.schema_version,
                payload,
            })
        })
        .collect()
}

/// The persons a stored event names: `person` and every string of its payload that is a person id.
fn persons_named(person: Option<&str>, payload: &str) -> Vec<PersonId> {
    fn collect(value: &serde_json::Value, into: &mut Vec<PersonId>) {
        match value {
            serde_json::Value::String(text) => into.extend(PersonId::parse(text).ok()),
            serde_json::Value::Array(items) => items.iter().for_each(|item| collect(item, into)),
            serde_json::Value::Object(fields) => fields.values().for_each(|item| collect(item, into)),
            _ => {}
        }
    }
    let mut persons: Vec<PersonId> = person.and_then(|p| PersonId::parse(p).ok()).into_iter().collect();
    if let Ok(payload) = serde_json::from_str::<serde_json::Value>(payload) {
        collect(&payload, &mut persons);
    }
    persons.sort();
    persons.dedup();
    persons
}

/// Events of `event_types` written at or after `since` (UTC microseconds), oldest first, at most
/// `limit`: for a replica that keeps derived state current with what other replicas changed.
pub async fn written_since(
    pool: &sqlx::AnyPool,
    event_types: &[EventType],
    since: i64,
    limit: i64,
) -> Result<Vec<OutboxEvent>, Error> {
    let topics = crate::db::placeholders(3, event_types.len());
    let sql = format!(
        "SELECT id, topic, person_id, organisation_code, payload, created_at FROM outbox_events \
         WHERE created_at >= $1 AND topic IN ({topics}) ORDER BY created_at LIMIT $2"
    );
    let mut query = sqlx::query_as::<_, (String, String, Option<String>, Option<String>, String, i64)>(
        sqlx::AssertSqlSafe(sql),
    )
    .bind(since)
    .bind(limit);
    for event_type in event_types {
        query = query.bind(event_type.code());
    }
    let unreadable = || Error::Internal("a stored outbox event is unreadable".into());
    query
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|(id, topic, person, organisation, payload, created_at)| {
            Ok(OutboxEvent {
                id,
                event_type: EventType::parse(&topic).ok_or_else(unreadable)?,
                person_id: person
                    .map(|p| PersonId::parse(&p))
                    .transpose()
                    .map_err(|_| unreadable())?,
                organisation: organisation
                    .map(|o| OrganisationCode::parse(&o))
                    .transpose()
                    .map_err(|_| unreadable())?,
                payload,
                created_at,
            })
        })
        .collect()
}
