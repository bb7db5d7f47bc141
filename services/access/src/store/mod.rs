//! The audit trail's storage. Appends take the one row of `audit_head` (a row lock on
//! PostgreSQL; SQLite's write lock serialises them anyway), so that the chain has one order.
//! Reads' events go through a batcher that appends many in one transaction (group commit): an
//! audited read costs a share of a commit, not a commit of its own.

mod anchor;
pub mod consent;
mod event_columns;
mod staging;

pub use anchor::{AnchorFile, ChainKeys};
use event_columns::EventColumns;
use staging::chain_staged;
// Staging is the unit of work's business alone: no service stages its own audit events.
pub(crate) use staging::{stage_in, staged_row};

use std::sync::Arc;
use std::time::Duration;

use hie_core::batch::Batcher;
use hie_core::context::RequestContext;
use hie_core::db::{Backend, Database, HeldConnections};
use hie_core::outbox::OutboxEvent;
use hie_core::{Error, time};
use serde::Serialize;
use sqlx::{AnyConnection, AssertSqlSafe, FromRow};
use tokio::sync::Semaphore;

use crate::domain::{AuditEvent, AuditKey, ChainBreak, ChainVerifier, Outcome};

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

/// Where an event stands in a listing: when it occurred (UTC microseconds), then its sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditPosition {
    pub occurred_at: i64,
    pub sequence: i64,
}

impl AuditPosition {
    /// Before every event: the first page.
    pub const START: AuditPosition = AuditPosition {
        occurred_at: i64::MAX,
        sequence: i64::MAX,
    };

    /// The position as a page token's key, and back.
    pub fn key(self) -> String {
        format!("{}.{}", self.occurred_at, self.sequence)
    }

    pub fn parse(key: &str) -> Option<AuditPosition> {
        let (occurred_at, sequence) = key.split_once('.')?;
        Some(AuditPosition {
            occurred_at: occurred_at.parse().ok()?,
            sequence: sequence.parse().ok()?,
        })
    }
}

/// The audit trail.
#[derive(Clone, Debug)]
pub struct AuditTrail {
    database: Database,
    keys: ChainKeys,
    writer: Batcher<AuditEvent, i64>,
    /// Whether a task is chaining staged events, and whether more were staged meanwhile.
    chaining: Arc<(std::sync::atomic::AtomicBool, std::sync::atomic::AtomicBool)>,
    /// One permit per read event that may be answered before its event is committed.
    uncommitted: Arc<Semaphore>,
    most_uncommitted: u32,
    /// Told the outbox events of each write this process commits, right after the commit.
    observers: CommitObservers,
}

/// The observers of commits (a list of closures, which have no `Debug` of their own).
#[derive(Clone, Default)]
struct CommitObservers(Arc<std::sync::RwLock<Vec<CommitObserver>>>);

impl std::fmt::Debug for CommitObservers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommitObservers")
    }
}

/// What [`AuditTrail::on_commit`] calls with a committed write's outbox events.
pub type CommitObserver = Arc<dyn Fn(&[OutboxEvent]) + Send + Sync>;

/// How many events of answered reads may wait for their commit at once. A full backlog makes
/// reads wait for the audit trail: when it cannot be written, reads stop (fail closed) instead of
/// going unrecorded.
pub const MOST_UNCOMMITTED: u32 = 4096;

/// A chained event as `audit_events` stores it.
#[derive(FromRow)]
struct StoredEvent {
    sequence: i64,
    #[sqlx(flatten)]
    columns: EventColumns,
    previous_hash: String,
    hash: String,
    key_id: Option<String>,
}

/// The columns of an audit event row, in the order of [`ChainedRow`]'s fields.
const COLUMNS: [&str; 18] = [
    "sequence",
    "occurred_at",
    "request_id",
    "organisation_code",
    "user_id",
    "role",
    "purpose",
    "reason",
    "action",
    "person_id",
    "resource_type",
    "resource_id",
    "outcome",
    "outcome_reason",
    "emergency",
    "previous_hash",
    "hash",
    "key_id",
];

/// One event with its place in the chain, as the JSON object the append statements read: a batch
/// of events travels as one JSON array in one bound parameter, so that every append is the same
/// prepared statement whatever its size.
#[derive(Serialize)]
struct ChainedRow<'a> {
    sequence: i64,
    #[serde(flatten)]
    columns: EventColumns,
    previous_hash: String,
    hash: String,
    key_id: &'a str,
}

/// Chains `events` under `key` after the event `last` whose hash is `last_hash`: the rows as one
/// JSON array, their sequence numbers, and the new head's hash.
fn chain<'a>(
    events: &'a [AuditEvent],
    last: i64,
    last_hash: &str,
    key: &'a AuditKey,
) -> Result<(String, Vec<i64>, String), Error> {
    let mut previous_hash = last_hash.to_owned();
    let mut rows = Vec::with_capacity(events.len());
    for (offset, event) in events.iter().enumerate() {
        let sequence = last + 1 + offset as i64;
        let hash = event.chain_hash(sequence, &previous_hash, Some(key));
        rows.push(ChainedRow {
            sequence,
            columns: EventColumns::of(event),
            previous_hash: std::mem::replace(&mut previous_hash, hash.clone()),
            hash,
            key_id: key.id(),
        });
    }
    let sequences = rows.iter().map(|row| row.sequence).collect();
    let json = serde_json::to_string(&rows).map_err(|e| Error::internal("encoding audit events", e))?;
    Ok((json, sequences, previous_hash))
}

/// `INSERT INTO audit_events … SELECT` of the rows in the JSON array bound at `$parameter`, with
/// `condition` after the FROM. The two backends unpack JSON differently; the rest is shared.
fn insert_from_json(backend: Backend, parameter: usize, condition: &str) -> String {
    let columns = COLUMNS.join(", ");
    let rows = match backend {
        Backend::Postgres => {
            format!("SELECT {columns} FROM json_populate_recordset(NULL::audit_events, ${parameter}::json)")
        }
        Backend::Sqlite => {
            let extracted: Vec<String> = COLUMNS
                .iter()
                .map(|column| format!("json_extract(value, '$.{column}') AS {column}"))
                .collect();
            format!("SELECT {} FROM json_each(${parameter})", extracted.join(", "))
        }
    };
    format!("INSERT INTO audit_events ({columns}) {rows} {condition}")
}

fn backend_of(conn: &AnyConnection) -> Backend {
    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    }
}

/// Appends `events` to the chain under `key` inside the caller's transaction; returns their
/// sequence numbers and the new head's hash. The head row is locked first, so that concurrent
/// appends take their turns.
async fn append_in(
    conn: &mut AnyConnection,
    events: &[AuditEvent],
    key: &AuditKey,
) -> Result<(Vec<i64>, String), Error> {
    if events.is_empty() {
        return Ok((Vec::new(), String::new()));
    }
    let (last, last_hash): (i64, String) = sqlx::query_as(
        "UPDATE audit_head SET sequence = sequence + $1 WHERE id = 1 RETURNING sequence, hash",
    )
    .bind(events.len() as i64)
    .fetch_one(&mut *conn)
    .await?;
    let (rows, sequences, head_hash) = chain(events, last - events.len() as i64, &last_hash, key)?;
    let insert = insert_from_json(backend_of(conn), 1, "");
    sqlx::query(AssertSqlSafe(insert))
        .bind(rows)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(head_hash.clone())
        .execute(&mut *conn)
        .await?;
    Ok((sequences, head_hash))
}

/// How long staged events wait for company before they are chained.
const CHAINING_DELAY: Duration = Duration::from_millis(20);

/// The group writer's side of the chain. On PostgreSQL it appends a batch in one statement that
/// moves the head only if it is still where the writer left it (and inserts nothing otherwise),
/// so an append costs one round trip instead of five, on a connection held for it
/// ([`HeldConnections`]). When the head is elsewhere (a registration or another replica moved it)
/// the writer reads the head again and retries, and after a few misses takes the head's lock as
/// registrations do.
#[derive(Debug)]
struct GroupWriter {
    database: Database,
    keys: ChainKeys,
    connection: HeldConnections,
    /// The head the last append left; `None` when unknown.
    head: std::sync::Mutex<Option<(i64, String)>>,
    optimistic_append: String,
}

/// How many times the optimistic append is tried before the locking one.
const OPTIMISTIC_TRIES: usize = 3;

impl GroupWriter {
    fn new(database: Database, keys: ChainKeys) -> GroupWriter {
        GroupWriter {
            keys,
            optimistic_append: insert_from_json(Backend::Postgres, 4, "WHERE EXISTS (SELECT 1 FROM moved)")
                .replacen(
                    "INSERT",
                    "WITH moved AS (UPDATE audit_head SET sequence = $1, hash = $2 \
                 WHERE id = 1 AND sequence = $3 RETURNING id) INSERT",
                    1,
                ),
            connection: HeldConnections::new(database.clone(), 1),
            database,
            head: std::sync::Mutex::default(),
        }
    }

    fn take_head(&self) -> Option<(i64, String)> {
        self.head
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    async fn append(&self, events: Vec<AuditEvent>) -> Result<Vec<i64>, Error> {
        if self.database.backend() == Backend::Postgres {
            let appended = self
                .connection
                .with(async |connection| self.append_optimistically(connection, &events).await)
                .await;
            if let Some(sequences) = appended? {
                return Ok(sequences);
            }
        }
        let mut transaction = self.database.begin_write().await?;
        let (sequences, head_hash) = append_in(&mut transaction, &events, self.keys.key()).await?;
        transaction.commit().await?;
        self.keys.committed(&sequences, &head_hash);
        Ok(sequences)
    }

    /// The sequence numbers, or `None` when the head kept moving under the writer.
    async fn append_optimistically(
        &self,
        connection: &mut AnyConnection,
        events: &[AuditEvent],
    ) -> Result<Option<Vec<i64>>, Error> {
        for _ in 0..OPTIMISTIC_TRIES {
            let (last, last_hash): (i64, String) = match self.take_head() {
                Some(head) => head,
                None => {
                    sqlx::query_as("SELECT sequence, hash FROM audit_head WHERE id = 1")
                        .fetch_one(&mut *connection)
                        .await?
                }
            };
            let (rows, sequences, head_hash) = chain(events, last, &last_hash, self.keys.key())?;
            let new_last = last + events.len() as i64;
            let inserted = sqlx::query(AssertSqlSafe(self.optimistic_append.as_str()))
                .bind(new_last)
                .bind(head_hash.clone())
                .bind(last)
                .bind(rows)
                .execute(&mut *connection)
                .await?
                .rows_affected();
            if inserted == events.len() as u64 {
                self.keys.committed(&sequences, &head_hash);
                *self.head.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
                    Some((new_last, head_hash));
                return Ok(Some(sequences));
            }
        }
        Ok(None)
    }
}

impl AuditTrail {
    pub fn new(database: Database, keys: ChainKeys) -> AuditTrail {
        AuditTrail::with_backlog(database, keys, MOST_UNCOMMITTED)
    }

    /// An audit trail whose backlog of uncommitted read events holds `most_uncommitted` (at
    /// least one); [`MOST_UNCOMMITTED`] in production.
    pub fn with_backlog(database: Database, keys: ChainKeys, most_uncommitted: u32) -> AuditTrail {
        let most_uncommitted = most_uncommitted.max(1);
        let group_writer = Arc::new(GroupWriter::new(database.clone(), keys.clone()));
        let writer = Batcher::new(
            1,
            256,
            Arc::new(move |events: Vec<AuditEvent>| {
                let group_writer = group_writer.clone();
                Box::pin(async move { group_writer.append(events).await })
            }),
        );
        AuditTrail {
            database,
            keys,
            writer,
            chaining: Arc::default(),
            uncommitted: Arc::new(Semaphore::new(most_uncommitted as usize)),
            most_uncommitted,
            observers: CommitObservers::default(),
        }
    }

    /// Has `observer` called with the outbox events of every write this process commits from
    /// now on, right after the commit and before the write answers: for state a replica derives
    /// from the database and must never serve stale once a change is committed (a cache of
    /// persons). It must be quick and must not block. Other processes' writes are not seen here;
    /// their events are in the outbox.
    pub fn on_commit(&self, observer: CommitObserver) {
        self.observers
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(observer);
    }

    pub(crate) fn announce(&self, events: &[OutboxEvent]) {
        if events.is_empty() {
            return;
        }
        for observer in self
            .observers
            .0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
        {
            observer(events);
        }
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

    /// Records a refusal (committed before this returns) and gives the error to answer with:
    /// `PERMISSION_DENIED` with the reason, or whatever stopped the recording.
    pub async fn refuse(&self, context: &RequestContext, subject: &crate::Subject, reason: String) -> Error {
        match self
            .record(subject.event(context, Outcome::Denied(reason.clone())))
            .await
        {
            Ok(_) => Error::PermissionDenied(reason),
            Err(error) => error,
        }
    }

    pub(crate) fn database(&self) -> &Database {
        &self.database
    }

    /// Appends the events of reads behind their answer: returns once they are queued for the
    /// group writer, which commits them within a batch or two. A failed append is retried until
    /// it succeeds, holding its place in the backlog, so that events are never dropped and reads
    /// stop when the backlog is full. Events queued and not yet committed are lost only if the
    /// process dies (a few milliseconds of reads); [`AuditTrail::flush`] waits for them.
    pub async fn record_behind(&self, events: Vec<AuditEvent>) -> Result<(), Error> {
        // More events than the whole backlog holds are committed before the answer instead.
        let n = match u32::try_from(events.len()) {
            Ok(n) if n <= self.most_uncommitted => n,
            _ => return self.record_all(events).await.map(drop),
        };
        let backlog = self
            .uncommitted
            .clone()
            .acquire_many_owned(n)
            .await
            .map_err(|_| Error::Unavailable("the audit trail is closed".into()))?;
        let writer = self.writer.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(50);
            while let Err(error) = writer.submit_all(events.clone()).await {
                tracing::error!(%error, "cannot commit audit events of answered reads; retrying (reads wait while the backlog is full)");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            drop(backlog);
        });
        Ok(())
    }

    /// Waits until every event recorded behind an answer so far is committed, and every staged
    /// event (of this process or another) is chained.
    pub async fn flush(&self) -> Result<(), Error> {
        let everything = self
            .uncommitted
            .acquire_many(self.most_uncommitted)
            .await
            .map_err(|_| Error::Unavailable("the audit trail is closed".into()))?;
        drop(everything);
        chain_staged(&self.database, &self.keys).await.map(drop)
    }

    /// Chains staged events in the background; call after committing a transaction that staged
    /// some ([`stage_in`]). One task at a time does it; a call while it runs makes it go round
    /// once more. Should chaining fail, the events stay staged for the next call or flush.
    pub fn chain_staged_soon(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        let (running, again) = (&self.chaining.0, &self.chaining.1);
        again.store(true, SeqCst);
        if running.swap(true, SeqCst) {
            return;
        }
        let (database, chaining, keys) = (self.database.clone(), self.chaining.clone(), self.keys.clone());
        tokio::spawn(async move {
            let (running, again) = (&chaining.0, &chaining.1);
            loop {
                // A moment's wait lets the writes of the next few milliseconds join the batch:
                // chaining one registration's event at a time cost the database as much as the
                // registration did.
                tokio::time::sleep(CHAINING_DELAY).await;
                again.store(false, SeqCst);
                match chain_staged(&database, &keys).await {
                    Ok(_) => {}
                    // A closed pool means the process is stopping, and its stop flushed.
                    Err(_) if database.pool().is_closed() => break,
                    // Another writer held the database (SQLite has one writer; a bulk load holds
                    // it for a batch): nothing is wrong, the events wait staged and go next round.
                    Err(Error::Unavailable(reason)) => {
                        tracing::debug!(%reason, "staged audit events wait for the database");
                        again.store(true, SeqCst);
                        tokio::time::sleep(CHAINING_DELAY * 5).await;
                    }
                    Err(error) => {
                        tracing::error!(%error, "cannot chain staged audit events; they stay staged and are retried");
                    }
                }
                if again.load(SeqCst) {
                    continue;
                }
                running.store(false, SeqCst);
                // Staged after the last look, while still marked running: go round again,
                // unless another task has already started.
                if !again.load(SeqCst) || running.swap(true, SeqCst) {
                    break;
                }
            }
        });
    }

    /// Stored events matching `filter`, newest first by when they occurred (then by sequence),
    /// after the position `before` (occurred-at microseconds and sequence of the last event of
    /// the previous page; `AuditPosition::START` for the first). A write's event is chained
    /// moments after its commit, possibly after events that occurred later, so the chain's order
    /// is not the order of events.
    pub async fn events(
        &self,
        filter: &AuditFilter,
        before: AuditPosition,
        limit: u32,
    ) -> Result<Vec<(AuditPosition, AuditEvent)>, Error> {
        self.flush().await?;
        let rows: Vec<StoredEvent> = sqlx::query_as(
            "SELECT * FROM audit_events WHERE ($1 = '' OR person_id = $1) AND ($2 = '' OR organisation_code = $2) \
             AND ($3 = '' OR user_id = $3) AND ($4 = '' OR outcome = $4) AND occurred_at >= $5 AND occurred_at < $6 \
             AND (occurred_at < $7 OR (occurred_at = $7 AND sequence < $8)) \
             ORDER BY occurred_at DESC, sequence DESC LIMIT $9",
        )
        .bind(filter.person_id.clone().unwrap_or_default())
        .bind(filter.organisation.clone().unwrap_or_default())
        .bind(filter.user_id.clone().unwrap_or_default())
        .bind(filter.outcome.clone().unwrap_or_default())
        .bind(filter.from.map_or(i64::MIN, time::to_micros))
        .bind(filter.to.map_or(i64::MAX, time::to_micros))
        .bind(before.occurred_at)
        .bind(before.sequence)
        .bind(i64::from(limit))
        .fetch_all(self.database.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let position = AuditPosition {
                    occurred_at: row.columns.occurred_at,
                    sequence: row.sequence,
                };
                (position, row.columns.event())
            })
            .collect())
    }

    /// Walks the whole chain; `Ok(Ok(n))` when all `n` events are intact. The head and every
    /// event are read in one snapshot (a repeatable-read transaction on PostgreSQL, a read
    /// transaction on SQLite), so that appends meanwhile cannot look like a break; each event's
    /// raw columns are checked, its link recomputed under the key it names, the head compared
    /// with the last event, and the trail's end with this process's anchor file.
    pub async fn verify(&self) -> Result<Result<i64, ChainBreak>, Error> {
        self.flush().await?;
        let anchor = match &self.keys.anchor {
            Some(file) => file.read()?,
            None => None,
        };
        let mut snapshot = self.database.pool().begin().await?;
        if self.database.backend() == Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *snapshot)
                .await?;
        }
        let (head, head_hash): (i64, String) =
            sqlx::query_as("SELECT sequence, hash FROM audit_head WHERE id = 1")
                .fetch_one(&mut *snapshot)
                .await?;
        let mut verifier = ChainVerifier::new(&self.keys.keys, anchor);
        let mut after = 0i64;
        loop {
            let page: Vec<StoredEvent> =
                sqlx::query_as("SELECT * FROM audit_events WHERE sequence > $1 ORDER BY sequence LIMIT 1000")
                    .bind(after)
                    .fetch_all(&mut *snapshot)
                    .await?;
            let Some(last) = page.last() else { break };
            after = last.sequence;
            for stored in &page {
                // The raw columns first: a value the exchange never writes (an unknown outcome, an
                // emergency flag of 2, a reason on a permitted event) decodes to something that
                // re-encodes to the stored hash, so it must be caught as stored.
                if !stored.columns.is_well_formed() {
                    return Ok(Err(ChainBreak::Edited {
                        sequence: stored.sequence,
                    }));
                }
                if let Err(broken) = verifier.check(
                    stored.sequence,
                    &stored.columns.event(),
                    stored.key_id.as_deref(),
                    &stored.previous_hash,
                    &stored.hash,
                ) {
                    return Ok(Err(broken));
                }
            }
        }
        snapshot.rollback().await?;
        Ok(verifier.finish(head, &head_hash))
    }
}
