//! The audit trail's storage. Appends take the one row of `audit_head` (a row lock on
//! PostgreSQL; SQLite's write lock serialises them anyway), so that the chain has one order.
//! Reads' events go through a batcher that appends many in one transaction (group commit): an
//! audited read costs a share of a commit, not a commit of its own.

pub mod consent;

use std::sync::Arc;

use hie_core::batch::Batcher;
use hie_core::db::Database;
use hie_core::{Error, time};
use sqlx::{AnyConnection, FromRow};

use crate::domain::{AuditEvent, ChainBreak, ChainVerifier, Outcome};

/// Which events a query returns; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub person_id: Option<String>,
    pub organisation: Option<String>,
    pub user_id: Option<String>,
    pub outcome: Option<String>,
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    pub to: Option<chrono::DateTime<chrono::Utc>>,
}

/// The audit trail.
#[derive(Clone, Debug)]
pub struct AuditTrail {
    database: Database,
    writer: Batcher<AuditEvent, i64>,
}

#[derive(FromRow)]
struct StoredEvent {
    sequence: i64,
    occurred_at: i64,
    request_id: String,
    organisation_code: Option<String>,
    user_id: String,
    role: String,
    purpose: String,
    reason: Option<String>,
    action: String,
    person_id: Option<String>,
    resource_type: String,
    resource_id: Option<String>,
    outcome: String,
    outcome_reason: Option<String>,
    emergency: i64,
    previous_hash: String,
    hash: String,
}

impl StoredEvent {
    fn event(&self) -> AuditEvent {
        let reason = self.outcome_reason.clone().unwrap_or_default();
        AuditEvent {
            occurred_at: time::from_micros(self.occurred_at),
            request_id: self.request_id.clone(),
            organisation: self.organisation_code.clone(),
            user_id: self.user_id.clone(),
            role: self.role.clone(),
            purpose: self.purpose.clone(),
            reason: self.reason.clone(),
            action: self.action.clone(),
            person_id: self.person_id.clone(),
            resource_type: self.resource_type.clone(),
            resource_id: self.resource_id.clone(),
            // An unknown outcome code cannot re-encode to the stored hash, so it shows as an edit.
            outcome: match self.outcome.as_str() {
                "permitted" => Outcome::Permitted,
                "denied" => Outcome::Denied(reason),
                _ => Outcome::Failed(reason),
            },
            emergency: self.emergency != 0,
        }
    }
}

/// The columns of an audit event row, and how many rows one INSERT carries (well under both
/// backends' limits on bound parameters).
const COLUMNS: usize = 17;
const ROWS_PER_INSERT: usize = 100;

/// Appends `events` to the chain inside the caller's transaction; returns their sequence numbers.
pub async fn append_in(conn: &mut AnyConnection, events: &[AuditEvent]) -> Result<Vec<i64>, Error> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let (last, mut previous_hash): (i64, String) = sqlx::query_as(
        "UPDATE audit_head SET sequence = sequence + $1 WHERE id = 1 RETURNING sequence, hash",
    )
    .bind(events.len() as i64)
    .fetch_one(&mut *conn)
    .await?;
    let first = last - events.len() as i64 + 1;
    let mut sequences = Vec::with_capacity(events.len());
    // Chain first, then write in multi-row statements: one statement per event made a batch of
    // audited reads cost a round trip per read inside the one transaction that orders the chain.
    let mut rows = Vec::with_capacity(events.len());
    for (offset, event) in events.iter().enumerate() {
        let sequence = first + offset as i64;
        let hash = event.chain_hash(sequence, &previous_hash);
        rows.push((
            sequence,
            event,
            std::mem::replace(&mut previous_hash, hash.clone()),
            hash,
        ));
        sequences.push(sequence);
    }
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let placeholders: Vec<String> = (0..chunk.len())
            .map(|row| {
                let first = row * COLUMNS + 1;
                let list: Vec<String> = (first..first + COLUMNS).map(|n| format!("${n}")).collect();
                format!("({})", list.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO audit_events (sequence, occurred_at, request_id, organisation_code, user_id, role, purpose, \
             reason, action, person_id, resource_type, resource_id, outcome, outcome_reason, emergency, previous_hash, hash) \
             VALUES {}",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (sequence, event, previous, hash) in chunk {
            query = query
                .bind(*sequence)
                .bind(time::to_micros(event.occurred_at))
                .bind(event.request_id.clone())
                .bind(event.organisation.clone())
                .bind(event.user_id.clone())
                .bind(event.role.clone())
                .bind(event.purpose.clone())
                .bind(event.reason.clone())
                .bind(event.action.clone())
                .bind(event.person_id.clone())
                .bind(event.resource_type.clone())
                .bind(event.resource_id.clone())
                .bind(event.outcome.code())
                .bind(event.outcome.reason().map(str::to_owned))
                .bind(i64::from(event.emergency))
                .bind(previous.clone())
                .bind(hash.clone());
        }
        query.execute(&mut *conn).await?;
    }
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(previous_hash)
        .execute(&mut *conn)
        .await?;
    Ok(sequences)
}

impl AuditTrail {
    pub fn new(database: Database) -> AuditTrail {
        let for_writer = database.clone();
        let writer = Batcher::new(
            1,
            256,
            Arc::new(move |events: Vec<AuditEvent>| {
                let database = for_writer.clone();
                Box::pin(async move {
                    let mut transaction = database.begin_write().await?;
                    let sequences = append_in(&mut transaction, &events).await?;
                    transaction.commit().await?;
                    Ok(sequences)
                })
            }),
        );
        AuditTrail { database, writer }
    }

    /// Appends one event in a transaction of its own (shared with concurrent events), and
    /// returns once it is committed: for reads, which have no transaction to join.
    pub async fn record(&self, event: AuditEvent) -> Result<i64, Error> {
        self.writer.submit(event).await
    }

    /// Appends several events and returns once all are committed.
    pub async fn record_all(&self, events: Vec<AuditEvent>) -> Result<Vec<i64>, Error> {
        self.writer.submit_all(events).await
    }

    /// Stored events matching `filter`, newest first, before the sequence number `before`.
    pub async fn events(
        &self,
        filter: &AuditFilter,
        before: i64,
        limit: u32,
    ) -> Result<Vec<(i64, AuditEvent)>, Error> {
        let rows: Vec<StoredEvent> = sqlx::query_as(
            "SELECT * FROM audit_events WHERE ($1 = '' OR person_id = $1) AND ($2 = '' OR organisation_code = $2) \
             AND ($3 = '' OR user_id = $3) AND ($4 = '' OR outcome = $4) AND occurred_at >= $5 AND occurred_at < $6 \
             AND sequence < $7 ORDER BY sequence DESC LIMIT $8",
        )
        .bind(filter.person_id.clone().unwrap_or_default())
        .bind(filter.organisation.clone().unwrap_or_default())
        .bind(filter.user_id.clone().unwrap_or_default())
        .bind(filter.outcome.clone().unwrap_or_default())
        .bind(filter.from.map_or(i64::MIN, time::to_micros))
        .bind(filter.to.map_or(i64::MAX, time::to_micros))
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(self.database.pool())
        .await?;
        Ok(rows.iter().map(|row| (row.sequence, row.event())).collect())
    }

    /// Walks the whole chain; `Ok(Ok(n))` when all `n` events are intact.
    pub async fn verify(&self) -> Result<Result<i64, ChainBreak>, Error> {
        let (head,): (i64,) = sqlx::query_as("SELECT sequence FROM audit_head WHERE id = 1")
            .fetch_one(self.database.pool())
            .await?;
        let mut verifier = ChainVerifier::default();
        let mut after = 0i64;
        loop {
            let page: Vec<StoredEvent> =
                sqlx::query_as("SELECT * FROM audit_events WHERE sequence > $1 ORDER BY sequence LIMIT 1000")
                    .bind(after)
                    .fetch_all(self.database.pool())
                    .await?;
            let Some(last) = page.last() else { break };
            after = last.sequence;
            for stored in &page {
                if let Err(broken) = verifier.check(
                    stored.sequence,
                    &stored.event(),
                    &stored.previous_hash,
                    &stored.hash,
                ) {
                    return Ok(Err(broken));
                }
            }
        }
        Ok(verifier.finish(head))
    }
}
