//! The transactional outbox: a change that others must hear about writes its event in the same
//! transaction as the change, so that the event exists exactly when the change does. The events
//! service (a later issue) delivers them; until then they wait in `outbox_events`.

use sqlx::AnyConnection;

use crate::Error;
use crate::time;

/// Appends one event. `payload` is JSON; it carries ids, never demographics.
pub async fn append(conn: &mut AnyConnection, topic: &str, payload: &serde_json::Value) -> Result<(), Error> {
    sqlx::query("INSERT INTO outbox_events (id, topic, payload, created_at) VALUES ($1, $2, $3, $4)")
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(topic)
        .bind(payload.to_string())
        .bind(time::to_micros(time::now()))
        .execute(&mut *conn)
        .await?;
    Ok(())
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
