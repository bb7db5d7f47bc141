//! The transactional outbox: a change that others must hear about writes its event in the same
//! transaction as the change, so that the event exists exactly when the change does. The events
//! service (a later issue) delivers them; until then they wait in `outbox_events`.

use sqlx::AnyConnection;

use crate::Error;
use crate::time;

/// An event as its `outbox_events` row is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: String,
    pub topic: String,
    pub payload: String,
    pub created_at: i64,
}

impl OutboxRow {
    /// The row of an event. `payload` is JSON; it carries ids, never demographics.
    pub fn new(topic: &str, payload: &serde_json::Value) -> OutboxRow {
        OutboxRow {
            id: uuid::Uuid::now_v7().to_string(),
            topic: topic.to_owned(),
            payload: payload.to_string(),
            created_at: time::to_micros(time::now()),
        }
    }

    /// Writes the row in the caller's transaction.
    pub async fn insert(&self, conn: &mut AnyConnection) -> Result<(), Error> {
        sqlx::query("INSERT INTO outbox_events (id, topic, payload, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&self.id)
            .bind(&self.topic)
            .bind(&self.payload)
            .bind(self.created_at)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

/// Appends one event.
pub async fn append(conn: &mut AnyConnection, topic: &str, payload: &serde_json::Value) -> Result<(), Error> {
    OutboxRow::new(topic, payload).insert(conn).await
}

/// The events of a topic, oldest first, as (topic, payload): for tests and operators.
pub async fn events(
    conn: &mut AnyConnection,
    topic_prefix: &str,
) -> Result<Vec<(String, serde_json::Value)>, Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT topic, payload FROM outbox_events WHERE topic LIKE $1 ORDER BY created_at, id",
    )
    .bind(format!("{topic_prefix}%"))
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|(topic, payload)| {
            serde_json::from_str(&payload)
                .map(|p| (topic, p))
                .map_err(|e| Error::Internal(format!("an outbox payload is not JSON: {e}")))
        })
        .collect()
}
