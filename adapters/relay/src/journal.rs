//! The journal: a SQLite database in the adapter's data folder holding every accepted message
//! until the exchange has taken it. A message is acknowledged only after its transaction has
//! committed with `synchronous = FULL`, so neither a crash of the adapter nor a power cut loses
//! an acknowledged message. Appends from every connection are committed together (group
//! commit): one fsync serves every message that arrived while the previous one was written.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ring::digest;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row};
use tokio::sync::{Notify, mpsc, oneshot};

/// Why the journal could not do something: the database failed (disk full, permissions, a
/// corrupt file). The listener answers AR, so the sender keeps the message and sends it again.
#[derive(Debug, thiserror::Error)]
#[error("journal: {0}")]
pub struct JournalError(String);

impl From<sqlx::Error> for JournalError {
    fn from(e: sqlx::Error) -> JournalError {
        JournalError(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for JournalError {
    fn from(e: sqlx::migrate::MigrateError) -> JournalError {
        JournalError(e.to_string())
    }
}

/// A message to journal.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub idempotency_key: String,
    pub message_type: String,
    pub patient_key: String,
    pub raw: Vec<u8>,
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Journaled under this sequence number.
    New(i64),
    /// The same message (same identity, same bytes) was journaled before: nothing was written.
    Duplicate,
    /// Another message was journaled before under the same identity.
    Conflict,
}

/// A message waiting for the exchange.
#[derive(Debug, Clone)]
pub struct Pending {
    pub sequence: i64,
    pub patient_key: String,
    pub raw: Vec<u8>,
    pub attempts: i64,
}

/// A message the exchange refused, for the operator.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetter {
    pub sequence: i64,
    pub idempotency_key: String,
    pub message_type: String,
    pub received_at_ms: i64,
    pub attempts: i64,
    pub last_error: String,
}

/// The journal's state, for `hie adapter status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub pending: i64,
    pub oldest_pending_age_seconds: Option<f64>,
    pub dead_letters: i64,
    pub delivered: i64,
    pub last_delivered_at_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<i64>,
}

/// Messages that are journaled together (one, or a FHIR transaction's entries), and where their
/// outcome goes.
type AppendRequest = (Vec<NewMessage>, oneshot::Sender<Result<Vec<Appended>, String>>);

/// How many appends one commit takes at most.
const MOST_PER_COMMIT: usize = 1024;

#[derive(Clone)]
pub struct Journal {
    pool: SqlitePool,
    appends: mpsc::Sender<AppendRequest>,
    /// Woken after every commit that journaled a new message.
    appended: Arc<Notify>,
    path: PathBuf,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Journal {
    /// Opens (creating it when missing) the journal in `folder`.
    pub async fn open(folder: &Path) -> Result<Journal, JournalError> {
        std::fs::create_dir_all(folder)
            .map_err(|e| JournalError(format!("cannot create the data folder {}: {e}", folder.display())))?;
        let path = folder.join("journal.sqlite");
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let (appends, requests) = mpsc::channel(4 * MOST_PER_COMMIT);
        let appended = Arc::new(Notify::new());
        tokio::spawn(commit_appends(pool.clone(), requests, appended.clone()));
        Ok(Journal {
            pool,
            appends,
            appended,
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Journals `message`; returns once it is durable (or known).
    pub async fn append(&self, message: NewMessage) -> Result<Appended, JournalError> {
        let appended = self.append_together(vec![message]).await?;
        appended
            .first()
            .copied()
            .ok_or_else(|| JournalError("the journal's writer answered nothing".to_owned()))
    }

    /// Journals `messages` in one transaction: all of them, or (on an error) none.
    pub async fn append_together(&self, messages: Vec<NewMessage>) -> Result<Vec<Appended>, JournalError> {
        let (answer, answered) = oneshot::channel();
        self.appends
            .send((messages, answer))
            .await
            .map_err(|_| JournalError("the journal's writer has stopped".to_owned()))?;
        answered
            .await
            .map_err(|_| JournalError("the journal's writer has stopped".to_owned()))?
            .map_err(JournalError)
    }

    /// Resolves once a commit after this call journaled something new.
    pub fn appended(&self) -> Arc<Notify> {
        self.appended.clone()
    }

    /// Pending messages after `after`, in arrival order.
    pub async fn pending_after(&self, after: i64, limit: i64) -> Result<Vec<Pending>, JournalError> {
        let rows = sqlx::query(
            "SELECT sequence, patient_key, raw, attempts FROM messages \
             WHERE state = 'pending' AND sequence > $1 ORDER BY sequence LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| Pending {
                sequence: row.get(0),
                patient_key: row.get(1),
                raw: row.get(2),
                attempts: row.get(3),
            })
            .collect())
    }

    pub async fn mark_delivered(&self, sequences: &[i64]) -> Result<(), JournalError> {
        if sequences.is_empty() {
            return Ok(());
        }
        let mut query = QueryBuilder::new("UPDATE messages SET state = 'delivered', delivered_at_ms = ");
        query.push_bind(now_ms());
        query.push(", attempts = attempts + 1, last_attempt_ms = ");
        query.push_bind(now_ms());
        query.push(" WHERE state = 'pending' AND sequence IN (");
        let mut separated = query.separated(", ");
        for sequence in sequences {
            separated.push_bind(*sequence);
        }
        query.push(")");
        query.build().execute(&self.pool).await?;
        Ok(())
    }

    /// Notes a failed attempt that will be retried (the exchange was unreachable or busy).
    pub async fn record_failure(&self, sequence: i64, error: &str) -> Result<(), JournalError> {
        sqlx::query("UPDATE messages SET attempts = attempts + 1, last_error = $1, last_attempt_ms = $2 WHERE sequence = $3")
            .bind(error)
            .bind(now_ms())
            .bind(sequence)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Moves a message the exchange refused to the dead letters.
    pub async fn mark_dead(&self, sequence: i64, error: &str) -> Result<(), JournalError> {
        sqlx::query(
            "UPDATE messages SET state = 'dead', attempts = attempts + 1, last_error = $1, last_attempt_ms = $2 \
             WHERE sequence = $3",
        )
        .bind(error)
        .bind(now_ms())
        .bind(sequence)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn dead_letters(&self, limit: i64) -> Result<Vec<DeadLetter>, JournalError> {
        let rows = sqlx::query(
            "SELECT sequence, idempotency_key, message_type, received_at_ms, attempts, COALESCE(last_error, '') \
             FROM messages WHERE state = 'dead' ORDER BY sequence LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| DeadLetter {
                sequence: row.get(0),
                idempotency_key: row.get(1),
                message_type: row.get(2),
                received_at_ms: row.get(3),
                attempts: row.get(4),
                last_error: row.get(5),
            })
            .collect())
    }

    /// One message as received, with its state: for an operator inspecting a dead letter.
    pub async fn message(&self, sequence: i64) -> Result<Option<(String, Vec<u8>)>, JournalError> {
        let row = sqlx::query("SELECT state, raw FROM messages WHERE sequence = $1")
            .bind(sequence)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| (row.get(0), row.get(1))))
    }

    /// Puts dead letters back in the queue (one, or every one when `sequence` is `None`), after
    /// the operator fixed what made the exchange refuse them; returns how many.
    pub async fn replay(&self, sequence: Option<i64>) -> Result<u64, JournalError> {
        let done = sqlx::query(
            "UPDATE messages SET state = 'pending', attempts = 0 WHERE state = 'dead' AND ($1 IS NULL OR sequence = $1)",
        )
        .bind(sequence)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn status(&self) -> Result<Status, JournalError> {
        let row = sqlx::query(
            "SELECT \
               (SELECT COUNT(*) FROM messages WHERE state = 'pending'), \
               (SELECT MIN(received_at_ms) FROM messages WHERE state = 'pending'), \
               (SELECT COUNT(*) FROM messages WHERE state = 'dead'), \
               (SELECT COUNT(*) FROM messages WHERE state = 'delivered'), \
               (SELECT MAX(delivered_at_ms) FROM messages WHERE state = 'delivered')",
        )
        .fetch_one(&self.pool)
        .await?;
        let last_error = sqlx::query(
            "SELECT last_error, last_attempt_ms FROM messages WHERE last_error IS NOT NULL \
             ORDER BY last_attempt_ms DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        let oldest: Option<i64> = row.get(1);
        Ok(Status {
            pending: row.get(0),
            oldest_pending_age_seconds: oldest.map(|t| (now_ms() - t).max(0) as f64 / 1000.0),
            dead_letters: row.get(2),
            delivered: row.get(3),
            last_delivered_at_ms: row.get(4),
            last_error: last_error.as_ref().map(|r| r.get(0)),
            last_error_at_ms: last_error.as_ref().map(|r| r.get(1)),
        })
    }

    /// Forgets delivered messages received before `before_ms` (a resend of one after that is
    /// taken as new, and is harmless: the exchange's calls are idempotent).
    pub async fn prune_delivered(&self, before_ms: i64) -> Result<u64, JournalError> {
        let done = sqlx::query("DELETE FROM messages WHERE state = 'delivered' AND received_at_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

fn content_hash(raw: &[u8]) -> String {
    digest::digest(&digest::SHA256, raw)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The writer: takes every append waiting and commits them in one transaction.
async fn commit_appends(
    pool: SqlitePool,
    mut requests: mpsc::Receiver<AppendRequest>,
    appended: Arc<Notify>,
) {
    let mut batch: Vec<AppendRequest> = Vec::with_capacity(MOST_PER_COMMIT);
    while requests.recv_many(&mut batch, MOST_PER_COMMIT).await > 0 {
        let messages: Vec<&NewMessage> = batch.iter().flat_map(|(messages, _)| messages).collect();
        match append_all(&pool, &messages).await {
            Ok(results) => {
                if results.iter().any(|r| matches!(r, Appended::New(_))) {
                    appended.notify_one();
                }
                let mut results = results.into_iter();
                for (messages, answer) in batch.drain(..) {
                    let _ = answer.send(Ok(results.by_ref().take(messages.len()).collect()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, messages = batch.len(), "the journal could not store messages");
                for (_, answer) in batch.drain(..) {
                    let _ = answer.send(Err(e.to_string()));
                }
            }
        }
    }
}

async fn append_all(pool: &SqlitePool, batch: &[&NewMessage]) -> Result<Vec<Appended>, sqlx::Error> {
    let mut transaction = pool.begin().await?;
    let mut results = Vec::with_capacity(batch.len());
    let received = now_ms();
    for message in batch {
        let hash = content_hash(&message.raw);
        let inserted = sqlx::query(
            "INSERT INTO messages (idempotency_key, content_hash, message_type, patient_key, received_at_ms, raw) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (idempotency_key) DO NOTHING RETURNING sequence",
        )
        .bind(&message.idempotency_key)
        .bind(&hash)
        .bind(&message.message_type)
        .bind(&message.patient_key)
        .bind(received)
        .bind(&message.raw)
        .fetch_optional(&mut *transaction)
        .await?;
        let result = match inserted {
            Some(row) => Appended::New(row.get(0)),
            None => {
                let earlier: String =
                    sqlx::query_scalar("SELECT content_hash FROM messages WHERE idempotency_key = $1")
                        .bind(&message.idempotency_key)
                        .fetch_one(&mut *transaction)
                        .await?;
                if earlier == hash {
                    Appended::Duplicate
                } else {
                    Appended::Conflict
                }
            }
        };
        results.push(result);
    }
    transaction.commit().await?;
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(key: &str, raw: &str) -> NewMessage {
        NewMessage {
            idempotency_key: key.to_owned(),
            message_type: "ADT^A01".to_owned(),
            patient_key: "P1".to_owned(),
            raw: raw.as_bytes().to_vec(),
        }
    }

    #[tokio::test]
    async fn a_message_is_kept_until_delivered_and_a_resend_is_recognised() {
        let folder = tempfile::tempdir().unwrap();
        let journal = Journal::open(folder.path()).await.unwrap();
        let Appended::New(first) = journal.append(message("H1|1", "MSH|a")).await.unwrap() else {
            panic!()
        };
        assert_eq!(
            journal.append(message("H1|1", "MSH|a")).await.unwrap(),
            Appended::Duplicate
        );
        assert_eq!(
            journal.append(message("H1|1", "MSH|b")).await.unwrap(),
            Appended::Conflict
        );
        let pending = journal.pending_after(0, 10).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].sequence, first);
        journal.mark_delivered(&[first]).await.unwrap();
        assert!(journal.pending_after(0, 10).await.unwrap().is_empty());
        let status = journal.status().await.unwrap();
        assert_eq!((status.pending, status.delivered, status.dead_letters), (0, 1, 0));
    }

    #[tokio::test]
    async fn a_dead_letter_is_listed_with_its_reason_and_replayed_on_request() {
        let folder = tempfile::tempdir().unwrap();
        let journal = Journal::open(folder.path()).await.unwrap();
        let Appended::New(sequence) = journal.append(message("H1|2", "MSH|c")).await.unwrap() else {
            panic!()
        };
        journal
            .record_failure(sequence, "exchange unreachable")
            .await
            .unwrap();
        journal
            .mark_dead(sequence, "NOT_FOUND: no such patient")
            .await
            .unwrap();
        let dead = journal.dead_letters(10).await.unwrap();
        assert_eq!((dead[0].sequence, dead[0].attempts), (sequence, 2));
        assert_eq!(dead[0].last_error, "NOT_FOUND: no such patient");
        assert_eq!(
            journal.status().await.unwrap().last_error.as_deref(),
            Some("NOT_FOUND: no such patient")
        );
        assert_eq!(journal.replay(None).await.unwrap(), 1);
        assert_eq!(journal.pending_after(0, 10).await.unwrap().len(), 1);
        assert_eq!(journal.replay(Some(sequence)).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn appends_survive_reopening_the_journal() {
        let folder = tempfile::tempdir().unwrap();
        {
            let journal = Journal::open(folder.path()).await.unwrap();
            for i in 0..50 {
                journal
                    .append(message(&format!("H1|{i}"), "MSH|x"))
                    .await
                    .unwrap();
            }
        }
        let journal = Journal::open(folder.path()).await.unwrap();
        assert_eq!(journal.pending_after(0, 100).await.unwrap().len(), 50);
    }
}
