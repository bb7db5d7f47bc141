//! Staged audit events: a write's events wait in `audit_staged`, committed with the write,
//! until the trail chains them (moments later, in batches), so that no write holds the chain's
//! head while it commits.

use hie_core::Error;
use hie_core::db::Database;
use sqlx::AnyConnection;

use super::{ChainKeys, EventColumns, append_in};
use crate::domain::AuditEvent;

/// Stages the events of a write inside the write's transaction: they commit or vanish with it,
/// and take no lock on the chain's head. [`AuditTrail::chain_staged_soon`] (after the commit)
/// or [`AuditTrail::flush`] moves them into the chain.
pub(crate) async fn stage_in(conn: &mut AnyConnection, events: &[AuditEvent]) -> Result<(), Error> {
    if events.is_empty() {
        return Ok(());
    }
    insert_staged_row(conn, &staged_row(events)?).await
}

/// Writes a staged row made by [`staged_row`] in the caller's transaction.
async fn insert_staged_row(conn: &mut AnyConnection, (id, events): &(String, String)) -> Result<(), Error> {
    sqlx::query("INSERT INTO audit_staged (id, events) VALUES ($1, $2)")
        .bind(id)
        .bind(events)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The `audit_staged` row (id, events) of `events`, for a caller that writes it within a
/// statement of its own (see [`stage_in`]).
pub(crate) fn staged_row(events: &[AuditEvent]) -> Result<(String, String), Error> {
    let staged: Vec<EventColumns> = events.iter().map(EventColumns::of).collect();
    let json =
        serde_json::to_string(&staged).map_err(|e| Error::internal("encoding staged audit events", e))?;
    Ok((uuid::Uuid::now_v7().to_string(), json))
}

/// How many staged transactions one chaining transaction takes.
const STAGED_PER_CHAINING: i64 = 256;

/// Moves staged events into the chain, oldest first, a batch per transaction, until none are
/// left; returns how many events it chained. Each batch is taken off `audit_staged` and appended
/// in the same transaction, so that an event is staged or chained, never neither or both.
pub(super) async fn chain_staged(database: &Database, keys: &ChainKeys) -> Result<usize, Error> {
    let mut chained = 0;
    loop {
        let mut transaction = database.begin_write().await?;
        let mut rows: Vec<(String, String)> = sqlx::query_as(
            "DELETE FROM audit_staged WHERE id IN (SELECT id FROM audit_staged ORDER BY id LIMIT $1) \
             RETURNING id, events",
        )
        .bind(STAGED_PER_CHAINING)
        .fetch_all(&mut *transaction)
        .await?;
        if rows.is_empty() {
            transaction.rollback().await?;
            return Ok(chained);
        }
        rows.sort();
        let mut events = Vec::new();
        for (_, json) in rows {
            let staged: Vec<EventColumns> = serde_json::from_str(&json)
                .map_err(|_| Error::Internal("a staged audit event does not parse".into()))?;
            events.extend(staged.into_iter().map(|staged| staged.event()));
        }
        let (sequences, head_hash) = append_in(&mut transaction, &events, keys.key()).await?;
        transaction.commit().await?;
        keys.committed(&sequences, &head_hash);
        chained += events.len();
    }
}
