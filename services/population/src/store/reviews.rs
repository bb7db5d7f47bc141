//! SQL of the review queue (possible matches waiting for a steward) and of trained models.

use chrono::{DateTime, Utc};
use hie_access::UnitOfWork;
use hie_core::{Error, time};
use sqlx::{AssertSqlSafe, FromRow};

use super::PopulationStore;

/// A review of a possible match, as stored.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct ReviewRow {
    pub id: String,
    pub source_record_id: String,
    pub candidate_person_id: String,
    pub candidate_record_id: String,
    pub probability: f64,
    pub pattern: i64,
    pub model_version: i64,
    pub status: String,
    pub created_at: i64,
    pub decided_at: Option<i64>,
    pub decided_by: Option<String>,
    pub reason: Option<String>,
}

const REVIEW_COLUMNS: &str = "id, source_record_id, candidate_person_id, candidate_record_id, probability, pattern, \
     model_version, status, created_at, decided_at, decided_by, reason";

impl PopulationStore {
    /// Pending reviews, oldest first, after `after` (a review id) for paging.
    /// Reviews a later change has settled are left out: the record already belongs to the
    /// candidate person (a merge or a manual link brought them together), or the candidate
    /// person was merged away.
    pub async fn pending_reviews(&self, after: Option<&str>, limit: usize) -> Result<Vec<ReviewRow>, Error> {
        let sql = format!(
            "SELECT {REVIEW_COLUMNS} FROM match_reviews r WHERE r.status = 'pending' AND r.id > $1 \
             AND NOT EXISTS (SELECT 1 FROM source_records s \
                 WHERE s.id = r.source_record_id AND s.person_id = r.candidate_person_id) \
             AND NOT EXISTS (SELECT 1 FROM persons p \
                 WHERE p.id = r.candidate_person_id AND p.merged_into IS NOT NULL) \
             ORDER BY r.id LIMIT {limit}"
        );
        Ok(sqlx::query_as::<_, ReviewRow>(AssertSqlSafe(sql))
            .bind(after.unwrap_or(""))
            .fetch_all(self.database.pool())
            .await?)
    }

    pub async fn review(&self, unit: &mut UnitOfWork, id: &str) -> Result<Option<ReviewRow>, Error> {
        let sql = format!("SELECT {REVIEW_COLUMNS} FROM match_reviews WHERE id = $1");
        Ok(sqlx::query_as::<_, ReviewRow>(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(unit.connection().await?)
            .await?)
    }

    /// Records a decision on a pending review; false if it was no longer pending.
    pub async fn decide_review(
        &self,
        unit: &mut UnitOfWork,
        id: &str,
        status: &str,
        by: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let done = sqlx::query(
            "UPDATE match_reviews SET status = $2, decided_by = $3, reason = $4, decided_at = $5 \
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(id)
        .bind(status)
        .bind(by)
        .bind(reason)
        .bind(time::to_micros(now))
        .execute(unit.connection().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The model in use: the highest version, with its JSON.
    pub async fn latest_model(&self) -> Result<Option<(i64, String)>, Error> {
        Ok(
            sqlx::query_as("SELECT version, model FROM match_models ORDER BY version DESC LIMIT 1")
                .fetch_optional(self.database.pool())
                .await?,
        )
    }

    /// Stores a newly trained model as the next version and returns the version.
    pub async fn save_model(
        &self,
        unit: &mut UnitOfWork,
        model_json: &str,
        trained_on_records: u64,
    ) -> Result<i64, Error> {
        let (latest,): (Option<i64>,) = sqlx::query_as("SELECT max(version) FROM match_models")
            .fetch_one(unit.connection().await?)
            .await?;
        let version = latest.unwrap_or(0) + 1;
        sqlx::query(
            "INSERT INTO match_models (version, model, trained_at, trained_on_records) VALUES ($1, $2, $3, $4)",
        )
        .bind(version)
        .bind(model_json)
        .bind(time::to_micros(time::now()))
        .bind(i64::try_from(trained_on_records).unwrap_or(i64::MAX))
        .execute(unit.connection().await?)
        .await?;
        Ok(version)
    }
}
