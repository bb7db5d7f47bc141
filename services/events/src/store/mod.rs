//! SQL of the event log and the subscriptions, written once for both backends.

use hie_access::UnitOfWork;
use hie_core::db::{Backend, Database};
use hie_core::{Error, time};

use crate::domain::log::LoggedEvent;
use crate::domain::subscriptions::{Channel, StoredSubscription};

/// The most events one sequencing transaction numbers.
pub const SEQUENCE_BATCH: i64 = 2_000;

/// The advisory lock that makes one replica at a time number events (PostgreSQL).
const SEQUENCER_LOCK: i64 = 0x0068_6965_5f6c_6f67; // "hie_log"

const EVENT_COLUMNS: &str =
    "log_position, id, topic, person_id, organisation_code, schema_version, payload, created_at";

type EventRow = (
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    String,
    i64,
);

fn logged(
    (position, id, topic, person, organisation, schema_version, payload, created_at): EventRow,
) -> LoggedEvent {
    LoggedEvent::from_row(
        position,
        id,
        topic,
        person,
        organisation,
        schema_version,
        payload,
        created_at,
    )
}

#[derive(Clone, Debug)]
pub struct EventStore {
    database: Database,
}

impl EventStore {
    pub fn new(database: Database) -> EventStore {
        EventStore { database }
    }

    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Numbers the committed events that have no position yet, oldest first, after the highest
    /// position given; answers how many it numbered. One replica at a time: the numbering is a
    /// transaction holding the sequencer's lock (PostgreSQL) or the write lock (SQLite), so the
    /// positions are contiguous and every event below the head was committed before it moved.
    pub async fn sequence_pending(&self) -> Result<u64, Error> {
        let mut transaction = self.database.begin_write().await?;
        if self.database.backend() == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(SEQUENCER_LOCK)
                .execute(&mut *transaction)
                .await?;
        }
        let (head,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(log_position), 0) FROM outbox_events")
            .fetch_one(&mut *transaction)
            .await?;
        let numbered = sqlx::query(
            "UPDATE outbox_events SET log_position = pending.position FROM \
             (SELECT id, $1 + ROW_NUMBER() OVER (ORDER BY created_at, id) AS position FROM outbox_events \
              WHERE log_position IS NULL ORDER BY created_at, id LIMIT $2) AS pending \
             WHERE outbox_events.id = pending.id",
        )
        .bind(head)
        .bind(SEQUENCE_BATCH)
        .execute(&mut *transaction)
        .await?
        .rows_affected();
        transaction.commit().await?;
        Ok(numbered)
    }

    /// The highest position given.
    pub async fn head(&self) -> Result<i64, Error> {
        let (head,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(log_position), 0) FROM outbox_events")
            .fetch_one(self.database.pool())
            .await?;
        Ok(head)
    }

    /// The events after `position`, in log order, at most `limit`.
    pub async fn events_after(&self, position: i64, limit: i64) -> Result<Vec<LoggedEvent>, Error> {
        let rows: Vec<EventRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM outbox_events WHERE log_position > $1 \
             ORDER BY log_position LIMIT $2"
        )))
        .bind(position)
        .bind(limit)
        .fetch_all(self.database.pool())
        .await?;
        Ok(rows.into_iter().map(logged).collect())
    }

    pub async fn insert_subscription(
        &self,
        unit: &mut UnitOfWork,
        subscription: &StoredSubscription,
    ) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO event_subscriptions (id, organisation_code, filter, channel, start_position, \
             acknowledged_position, created_at, created_by, role, purpose, cancelled_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL)",
        )
        .bind(subscription.id.clone())
        .bind(subscription.organisation.clone())
        .bind(subscription.filter_json.clone())
        .bind(subscription.channel.code())
        .bind(subscription.start_position)
        .bind(subscription.acknowledged_position)
        .bind(subscription.created_at)
        .bind(subscription.created_by.clone())
        .bind(subscription.role.clone())
        .bind(subscription.purpose.clone())
        .execute(unit.connection().await?)
        .await?;
        Ok(())
    }

    pub async fn subscription(&self, id: &str) -> Result<Option<StoredSubscription>, Error> {
        let rows = self.subscriptions_where("id = $1", &[id]).await?;
        Ok(rows.into_iter().next())
    }

    /// An organisation's subscriptions (every organisation's when `None`), oldest first.
    pub async fn subscriptions_of(
        &self,
        organisation: Option<&str>,
    ) -> Result<Vec<StoredSubscription>, Error> {
        match organisation {
            Some(organisation) => {
                self.subscriptions_where("organisation_code = $1", &[organisation])
                    .await
            }
            None => self.subscriptions_where("cancelled_at IS NULL", &[]).await,
        }
    }

    async fn subscriptions_where(
        &self,
        condition: &str,
        binds: &[&str],
    ) -> Result<Vec<StoredSubscription>, Error> {
        type Row = (
            String,
            String,
            String,
            String,
            i64,
            i64,
            i64,
            String,
            String,
            String,
            Option<i64>,
        );
        let sql = format!(
            "SELECT id, organisation_code, filter, channel, start_position, acknowledged_position, \
             created_at, created_by, role, purpose, cancelled_at FROM event_subscriptions \
             WHERE {condition} ORDER BY id"
        );
        let mut query = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql));
        for bind in binds {
            query = query.bind((*bind).to_owned());
        }
        let rows = query.fetch_all(self.database.pool()).await?;
        rows.into_iter()
            .map(|row| {
                Ok(StoredSubscription {
                    id: row.0,
                    organisation: row.1,
                    filter_json: row.2,
                    channel: Channel::parse(&row.3).ok_or_else(|| {
                        Error::Internal("a stored subscription has an unknown channel".into())
                    })?,
                    start_position: row.4,
                    acknowledged_position: row.5,
                    created_at: row.6,
                    created_by: row.7,
                    role: row.8,
                    purpose: row.9,
                    cancelled_at: row.10,
                })
            })
            .collect()
    }

    /// Records the acknowledged position, never moving it back.
    pub async fn acknowledge(&self, unit: &mut UnitOfWork, id: &str, position: i64) -> Result<(), Error> {
        sqlx::query(
            "UPDATE event_subscriptions SET acknowledged_position = $2 \
             WHERE id = $1 AND acknowledged_position < $2",
        )
        .bind(id.to_owned())
        .bind(position)
        .execute(unit.connection().await?)
        .await?;
        Ok(())
    }

    /// Cancels a subscription; false when it was cancelled already.
    pub async fn cancel(&self, unit: &mut UnitOfWork, id: &str) -> Result<bool, Error> {
        let changed = sqlx::query(
            "UPDATE event_subscriptions SET cancelled_at = $2 WHERE id = $1 AND cancelled_at IS NULL",
        )
        .bind(id.to_owned())
        .bind(time::to_micros(time::now()))
        .execute(unit.connection().await?)
        .await?
        .rows_affected();
        Ok(changed > 0)
    }
}
