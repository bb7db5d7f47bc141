//! SQL of a person's links: moving records, the persons' rows under lock, survivorship's
//! statements, merges and their undoing, and the checkpoints of long jobs.

use chrono::{DateTime, Utc};
use hie_access::UnitOfWork;
use hie_core::db::Backend;
use hie_core::domain::OrganisationCode;
use hie_core::{Error, time};
use hie_directory::domain::OrganisationKind;
use sqlx::{AnyConnection, AssertSqlSafe, FromRow};

use super::{DEMOGRAPHIC_COLUMNS, PopulationStore, stored_id};
use crate::domain::decisions::{MergeId, MergeRecord};
use crate::domain::{PersonId, SourceRecordId};

/// A linked record as survivorship reads it: its statements, when, and the kind of organisation
/// keeping it.
#[derive(Debug, Clone)]
pub struct StoredStatement {
    pub record: SourceRecordId,
    pub demographics: crate::domain::Demographics,
    pub updated_at: DateTime<Utc>,
    pub kind: Option<OrganisationKind>,
}

/// A linked record as survivorship reads it, with its organisation's kind.
#[derive(FromRow)]
struct GoldenRow {
    id: String,
    #[sqlx(flatten)]
    demographics: super::DemographicsRow,
    updated_at: i64,
    kind: Option<String>,
}

impl PopulationStore {
    /// Moves a record to a person, saying whether a person did it.
    pub async fn move_record(
        &self,
        unit: &mut UnitOfWork,
        record: &SourceRecordId,
        person: &PersonId,
        linked_manually: bool,
    ) -> Result<(), Error> {
        sqlx::query("UPDATE source_records SET person_id = $2, linked_manually = $3 WHERE id = $1")
            .bind(record.as_str())
            .bind(person.as_str())
            .bind(i16::from(linked_manually))
            .execute(unit.connection().await?)
            .await?;
        sqlx::query("UPDATE person_identifiers SET person_id = $2 WHERE source_record_id = $1")
            .bind(record.as_str())
            .bind(person.as_str())
            .execute(unit.connection().await?)
            .await?;
        Ok(())
    }

    /// A person's linked records as survivorship reads them (see [`crate::domain::golden`]).
    pub async fn statements_of(
        &self,
        unit: &mut UnitOfWork,
        person: &PersonId,
    ) -> Result<Vec<StoredStatement>, Error> {
        // The kind of each keeping organisation ranks its statements (see golden::trust_of); it
        // is read from the directory's table in the same query, as the resolve query reads
        // sensitive categories.
        let sql = format!(
            "SELECT s.id, {columns}, s.updated_at, o.kind FROM source_records s \
             LEFT JOIN organisations o ON o.code = s.organisation_code \
             WHERE s.person_id = $1 AND s.retired_into IS NULL",
            columns = super::columns::columns_of("s"),
        );
        let rows: Vec<GoldenRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(person.as_str())
            .fetch_all(unit.connection().await?)
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(StoredStatement {
                    record: stored_id(SourceRecordId::parse(&row.id))?,
                    demographics: row.demographics.into_domain()?,
                    updated_at: time::from_micros(row.updated_at),
                    kind: row.kind.as_deref().and_then(OrganisationKind::from_code),
                })
            })
            .collect()
    }

    /// The record an organisation keeps under a local patient number: its id, its person, and
    /// the record it was retired into (A40), if it was.
    pub async fn record_of_local_number(
        &self,
        unit: &mut UnitOfWork,
        organisation: &OrganisationCode,
        local_patient_number: &str,
    ) -> Result<Option<(SourceRecordId, PersonId, Option<String>)>, Error> {
        let row: Option<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT id, person_id, retired_into FROM source_records \
             WHERE organisation_code = $1 AND local_patient_number = $2",
        )
        .bind(organisation.as_str())
        .bind(local_patient_number)
        .fetch_optional(unit.connection().await?)
        .await?;
        row.map(|(id, person, retired)| {
            Ok((
                stored_id(SourceRecordId::parse(&id))?,
                stored_id(PersonId::parse(&person))?,
                retired,
            ))
        })
        .transpose()
    }

    /// Marks `record` retired into `into` (A40).
    pub async fn set_retired_into(
        &self,
        unit: &mut UnitOfWork,
        record: &SourceRecordId,
        into: &SourceRecordId,
    ) -> Result<(), Error> {
        sqlx::query("UPDATE source_records SET retired_into = $1 WHERE id = $2")
            .bind(into.as_str())
            .bind(record.as_str())
            .execute(unit.connection().await?)
            .await?;
        Ok(())
    }

    /// A record's person and whether a person linked it by hand.
    pub async fn record_link(
        &self,
        unit: &mut UnitOfWork,
        record: &SourceRecordId,
    ) -> Result<Option<(PersonId, bool)>, Error> {
        let row: Option<(String, i16)> =
            sqlx::query_as("SELECT person_id, linked_manually FROM source_records WHERE id = $1")
                .bind(record.as_str())
                .fetch_optional(unit.connection().await?)
                .await?;
        row.map(|(person, manual)| Ok((stored_id(PersonId::parse(&person))?, manual != 0)))
            .transpose()
    }

    /// Locks persons' rows until the transaction ends, in id order (so that two writers never wait
    /// on each other in a cycle), and returns each one's state after the wait: `None` when it does
    /// not exist, else whom it was merged into, if anyone. On PostgreSQL a row lock (`FOR
    /// UPDATE`, which also reads the row as committed by whoever held it); SQLite's one writer
    /// serialises writes already. Registrations and manual decisions take these on the persons
    /// they touch, so that a join never lands on a person a concurrent merge emptied, and two
    /// merges of the same pair take turns.
    pub async fn lock_persons(
        &self,
        unit: &mut UnitOfWork,
        persons: &[&PersonId],
    ) -> Result<Vec<(PersonId, Option<Option<PersonId>>)>, Error> {
        let mut ids: Vec<&str> = persons.iter().map(|p| p.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let lock = if self.database.backend() == Backend::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        let sql = format!(
            "SELECT id, merged_into FROM persons WHERE id IN ({}) ORDER BY id{lock}",
            super::placeholders(1, ids.len())
        );
        let mut query = sqlx::query_as::<_, (String, Option<String>)>(AssertSqlSafe(sql));
        for id in &ids {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(unit.connection().await?).await?;
        ids.iter()
            .map(|id| {
                let person = stored_id(PersonId::parse(id))?;
                let state = match rows.iter().find(|(found, _)| found == id) {
                    None => None,
                    Some((_, into)) => Some(
                        into.as_deref()
                            .map(|i| stored_id(PersonId::parse(i)))
                            .transpose()?,
                    ),
                };
                Ok((person, state))
            })
            .collect()
    }

    /// Whether a person exists, and whom they were merged into if they were, as the unit sees it.
    pub async fn person_state(
        &self,
        unit: &mut UnitOfWork,
        person: &PersonId,
    ) -> Result<Option<Option<PersonId>>, Error> {
        person_state_on(unit.connection().await?, person).await
    }

    /// [`PopulationStore::person_state`] as committed now.
    pub async fn person_state_now(&self, person: &PersonId) -> Result<Option<Option<PersonId>>, Error> {
        let mut connection = self.database.pool().acquire().await?;
        person_state_on(&mut connection, person).await
    }

    /// A person's records with their manual flags, in id order.
    pub async fn record_links_of(
        &self,
        unit: &mut UnitOfWork,
        person: &PersonId,
    ) -> Result<Vec<(SourceRecordId, bool)>, Error> {
        let rows: Vec<(String, i16)> =
            sqlx::query_as("SELECT id, linked_manually FROM source_records WHERE person_id = $1 ORDER BY id")
                .bind(person.as_str())
                .fetch_all(unit.connection().await?)
                .await?;
        rows.into_iter()
            .map(|(id, manual)| Ok((stored_id(SourceRecordId::parse(&id))?, manual != 0)))
            .collect()
    }

    pub async fn set_merged_into(
        &self,
        unit: &mut UnitOfWork,
        person: &PersonId,
        into: Option<&PersonId>,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        sqlx::query("UPDATE persons SET merged_into = $2, updated_at = $3 WHERE id = $1")
            .bind(person.as_str())
            .bind(into.map(|p| p.as_str().to_owned()))
            .bind(time::to_micros(now))
            .execute(unit.connection().await?)
            .await?;
        Ok(())
    }

    /// Records a merge: the moved records as JSON `[{"record": id, "manual": bool}, …]`.
    pub async fn insert_merge(&self, unit: &mut UnitOfWork, merge: &MergeRecord) -> Result<(), Error> {
        let moved: Vec<serde_json::Value> = merge
            .moved
            .iter()
            .map(|(record, manual)| serde_json::json!({"record": record.as_str(), "manual": manual}))
            .collect();
        sqlx::query(
            "INSERT INTO person_merges (id, from_person_id, into_person_id, moved_records, merged_at, merged_by, reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(merge.id.as_str())
        .bind(merge.from.as_str())
        .bind(merge.into.as_str())
        .bind(serde_json::Value::Array(moved).to_string())
        .bind(time::to_micros(merge.merged_at))
        .bind(&merge.merged_by)
        .bind(&merge.reason)
        .execute(unit.connection().await?)
        .await?;
        Ok(())
    }

    pub async fn merge(&self, unit: &mut UnitOfWork, id: &str) -> Result<Option<MergeRecord>, Error> {
        let row = sqlx::query_as::<_, MergeRow>(
            "SELECT id, from_person_id, into_person_id, moved_records, merged_at, merged_by, reason, unmerged_at \
             FROM person_merges WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(unit.connection().await?)
        .await?;
        row.map(MergeRow::into_domain).transpose()
    }

    /// Keeps what the merge did to the surviving person's consent directives.
    pub async fn set_merge_consent(
        &self,
        unit: &mut UnitOfWork,
        id: &str,
        consent: &str,
    ) -> Result<(), Error> {
        sqlx::query("UPDATE person_merges SET into_consent = $2 WHERE id = $1")
            .bind(id)
            .bind(consent)
            .execute(unit.connection().await?)
            .await?;
        Ok(())
    }

    /// What the merge did to the surviving person's consent directives, if it kept it.
    pub async fn merge_consent(&self, unit: &mut UnitOfWork, id: &str) -> Result<Option<String>, Error> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT into_consent FROM person_merges WHERE id = $1")
                .bind(id)
                .fetch_optional(unit.connection().await?)
                .await?;
        Ok(row.and_then(|(consent,)| consent))
    }

    /// Marks a merge undone; false if it already was.
    pub async fn mark_unmerged(
        &self,
        unit: &mut UnitOfWork,
        id: &str,
        by: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let done = sqlx::query(
            "UPDATE person_merges SET unmerged_at = $2, unmerged_by = $3, unmerge_reason = $4 \
             WHERE id = $1 AND unmerged_at IS NULL",
        )
        .bind(id)
        .bind(time::to_micros(now))
        .bind(by)
        .bind(reason)
        .execute(unit.connection().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Where a job got to, if it was interrupted.
    pub async fn checkpoint(&self, job: &str) -> Result<Option<String>, Error> {
        let row: Option<(String,)> = sqlx::query_as("SELECT position FROM job_checkpoints WHERE job = $1")
            .bind(job)
            .fetch_optional(self.database.pool())
            .await?;
        Ok(row.map(|(p,)| p))
    }

    pub async fn set_checkpoint(&self, job: &str, position: Option<&str>) -> Result<(), Error> {
        match position {
            Some(position) => sqlx::query(
                "INSERT INTO job_checkpoints (job, position, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (job) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
            )
            .bind(job)
            .bind(position)
            .bind(time::to_micros(time::now())),
            None => sqlx::query("DELETE FROM job_checkpoints WHERE job = $1").bind(job),
        }
        .execute(self.database.pool())
        .await?;
        Ok(())
    }

    /// Every person merged into another, with the person they were merged into.
    pub async fn merged_persons(&self) -> Result<Vec<(PersonId, PersonId)>, Error> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, merged_into FROM persons WHERE merged_into IS NOT NULL")
                .fetch_all(self.database.pool())
                .await?;
        rows.into_iter()
            .map(|(id, into)| {
                let parse = |text: &str| {
                    PersonId::parse(text)
                        .map_err(|_| Error::Internal("a stored person id is unreadable".into()))
                };
                Ok((parse(&id)?, parse(&into)?))
            })
            .collect()
    }

    /// Whom a person was merged into, if they were.
    pub async fn merged_into(&self, person: &PersonId) -> Result<Option<PersonId>, Error> {
        Ok(self.person_state_now(person).await?.flatten())
    }

    /// The demographics a record last stated.
    pub async fn source_record_demographics(
        &self,
        unit: &mut UnitOfWork,
        record: &SourceRecordId,
    ) -> Result<Option<crate::domain::Demographics>, Error> {
        let sql = format!("SELECT {DEMOGRAPHIC_COLUMNS} FROM source_records WHERE id = $1");
        let row: Option<super::DemographicsRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(record.as_str())
            .fetch_optional(unit.connection().await?)
            .await?;
        row.map(super::DemographicsRow::into_domain).transpose()
    }
}

/// A merge as stored.
#[derive(FromRow)]
struct MergeRow {
    id: String,
    from_person_id: String,
    into_person_id: String,
    /// JSON: `[{"record": id, "manual": bool}, …]`.
    moved_records: String,
    merged_at: i64,
    merged_by: String,
    reason: String,
    unmerged_at: Option<i64>,
}

impl MergeRow {
    fn into_domain(self) -> Result<MergeRecord, Error> {
        let moved: Vec<serde_json::Value> = serde_json::from_str(&self.moved_records)
            .map_err(|e| Error::internal("a stored merge does not parse", e))?;
        let moved = moved
            .iter()
            .map(|entry| {
                let record = stored_id(SourceRecordId::parse(entry["record"].as_str().unwrap_or("")))?;
                Ok((record, entry["manual"].as_bool().unwrap_or(false)))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(MergeRecord {
            id: stored_id(MergeId::parse(&self.id))?,
            from: stored_id(PersonId::parse(&self.from_person_id))?,
            into: stored_id(PersonId::parse(&self.into_person_id))?,
            moved,
            merged_at: time::from_micros(self.merged_at),
            merged_by: self.merged_by,
            reason: self.reason,
            unmerged_at: self.unmerged_at.map(time::from_micros),
        })
    }
}

async fn person_state_on(
    connection: &mut AnyConnection,
    person: &PersonId,
) -> Result<Option<Option<PersonId>>, Error> {
    let row: Option<(Option<String>,)> = sqlx::query_as("SELECT merged_into FROM persons WHERE id = $1")
        .bind(person.as_str())
        .fetch_optional(&mut *connection)
        .await?;
    row.map(|(into,)| into.map(|i| stored_id(PersonId::parse(&i))).transpose())
        .transpose()
}
