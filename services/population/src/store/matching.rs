//! SQL of matching: blocking keys, candidates, the review queue, trained models, manual link
//! changes and merges.

use chrono::{DateTime, Utc};
use hie_core::db::Backend;

use super::DemographicColumns;
use hie_core::domain::{IdentifierSystem, OrganisationCode, ResidentId};
use hie_core::{Error, time};
use sqlx::{AnyConnection, AssertSqlSafe, FromRow};

use super::{
    DEMOGRAPHIC_COLUMNS, PopulationStore, SourceRecordRow, placeholders, stored_id, stored_identifier,
};
use crate::domain::golden::{Statement, golden_record, trust_of};
use crate::domain::{BlockingKey, Candidate, PersonId, PossibleMatch, SourceRecordId};
use hie_directory::domain::OrganisationKind;

/// At most this many records are compared with a new one; blocks are small by design, and a
/// key shared by thousands (a placeholder phone) must not make one registration slow.
pub const MAX_CANDIDATES: usize = 500;

/// The record an organisation holds under a local number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingRecord {
    pub id: SourceRecordId,
    pub person_id: PersonId,
    pub linked_manually: bool,
}

/// What a new record does to its person's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonWrite {
    /// A new person, with the record's demographics.
    Create,
    /// The record joins the person and, outranking every earlier one, wins each field it
    /// states (a hospital's record: see `golden::MOST_TRUSTED`).
    ApplyNewest,
    /// The record joins the person; the caller recomputes the golden record.
    Leave,
}

impl PersonWrite {
    fn code(self) -> i16 {
        match self {
            PersonWrite::ApplyNewest => 0,
            PersonWrite::Create => 1,
            PersonWrite::Leave => 2,
        }
    }
}

/// What registering a new record writes (see [`PopulationStore::write_new_record`]).
#[derive(Debug)]
pub struct NewRecordWrite<'a> {
    pub record: &'a SourceRecordId,
    pub person: &'a PersonId,
    pub person_write: PersonWrite,
    pub draft: &'a crate::domain::SourceRecordDraft,
    pub keys: &'a [BlockingKey],
    pub link_event: hie_core::outbox::OutboxRow,
    /// The staged audit row (id, events), when the caller stages it with the write.
    pub audit: Option<(String, String)>,
    pub now: DateTime<Utc>,
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

/// One row of the matching context: a record, one of its identifiers, its person's number.
#[derive(FromRow)]
struct MatchContextRow {
    #[sqlx(flatten)]
    record: SourceRecordRow,
    linked_manually: i16,
    system: Option<String>,
    value: Option<String>,
    person_resident_id: Option<String>,
}

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
    /// Takes transaction-scoped locks on `keys` (sorted, so that two registrations never wait on
    /// each other in a cycle). On PostgreSQL these are advisory locks, which write nothing; on
    /// SQLite a write transaction already holds the database's one write lock.
    pub async fn lock_keys(&self, conn: &mut AnyConnection, keys: &[i64]) -> Result<(), Error> {
        if self.database.backend() == Backend::Sqlite || keys.is_empty() {
            return Ok(());
        }
        // One text parameter whatever the number of keys, so that one prepared statement serves.
        let list: Vec<String> = keys.iter().map(i64::to_string).collect();
        sqlx::query(
            "SELECT count(pg_advisory_xact_lock(k)) FROM \
             (SELECT unnest(string_to_array($1, ','))::bigint AS k ORDER BY 1) AS sorted",
        )
        .bind(list.join(","))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// What matching a record needs, in one round trip: the record the organisation already
    /// holds under this local number (if any), and the candidates: records sharing a blocking
    /// key, and the existing record's siblings (its person's other records, which must be
    /// compared again when it changes), each with its identifiers and its person's resident
    /// identity number.
    pub async fn match_context(
        &self,
        conn: &mut AnyConnection,
        organisation: &OrganisationCode,
        local_patient_number: &str,
        keys: &[BlockingKey],
    ) -> Result<(Option<ExistingRecord>, Vec<Candidate>), Error> {
        let key_list = if keys.is_empty() {
            "NULL".to_owned()
        } else {
            placeholders(4, keys.len())
        };
        // Each part is an indexed look-up; UNION, not OR, keeps PostgreSQL from scanning.
        let sql = format!(
            "WITH existing AS (SELECT id, person_id FROM source_records \
                 WHERE organisation_code = $1 AND local_patient_number = $2), \
             found AS (SELECT id FROM (SELECT source_record_id AS id FROM match_keys WHERE key IN ({key_list}) \
                     LIMIT {limit}) AS keyed \
                 UNION SELECT id FROM source_records WHERE person_id = (SELECT person_id FROM existing) \
                 UNION SELECT id FROM existing) \
             SELECT s.id, s.organisation_code, s.local_patient_number, s.person_id, s.linked_manually, \
                 {columns}, s.created_at, s.updated_at, i.system, i.value, \
                 (SELECT min(r.value) FROM person_identifiers r WHERE r.person_id = s.person_id AND r.system = $3) \
                 AS person_resident_id \
             FROM found JOIN source_records s ON s.id = found.id \
             LEFT JOIN person_identifiers i ON i.source_record_id = s.id ORDER BY s.id",
            limit = MAX_CANDIDATES,
            columns = DEMOGRAPHIC_COLUMNS
                .split(", ")
                .map(|c| format!("s.{c}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let mut query = sqlx::query_as::<_, MatchContextRow>(AssertSqlSafe(sql))
            .bind(organisation.as_str())
            .bind(local_patient_number)
            .bind(IdentifierSystem::RESIDENT_ID);
        for key in keys {
            query = query.bind(key.0);
        }
        let rows = query.fetch_all(&mut *conn).await?;
        let mut existing = None;
        let mut candidates: Vec<Candidate> = Vec::new();
        let mut last_id = String::new();
        for row in rows {
            if row.record.id != last_id {
                last_id = row.record.id.clone();
                let id = stored_id(SourceRecordId::parse(&row.record.id))?;
                let person_id = stored_id(PersonId::parse(&row.record.person_id))?;
                if row.record.organisation_code == organisation.as_str()
                    && row.record.local_patient_number == local_patient_number
                {
                    existing = Some(ExistingRecord {
                        id: id.clone(),
                        person_id: person_id.clone(),
                        linked_manually: row.linked_manually != 0,
                    });
                }
                let person_resident_id = row
                    .person_resident_id
                    .as_deref()
                    .map(|v| stored_id(ResidentId::parse(v)))
                    .transpose()?;
                candidates.push(Candidate {
                    person_id,
                    source_record_id: id,
                    demographics: row.record.demographics.into_domain()?,
                    identifiers: Vec::new(),
                    person_resident_id,
                });
            }
            if let (Some(system), Some(value), Some(candidate)) =
                (row.system, row.value, candidates.last_mut())
            {
                candidate.identifiers.push(stored_identifier(&system, &value)?);
            }
        }
        if let Some(existing) = &existing {
            candidates.retain(|c| c.source_record_id != existing.id);
        }
        Ok((existing, candidates))
    }

    /// Writes everything a new record's registration writes: the person (created, or its golden
    /// record updated with the new, newest record), the record, its identifiers and blocking
    /// keys, the link event and, when given, the staged audit row. On PostgreSQL one statement;
    /// on SQLite, whose writer holds the database anyway, one statement each.
    pub async fn write_new_record(
        &self,
        conn: &mut AnyConnection,
        write: &NewRecordWrite<'_>,
    ) -> Result<(), Error> {
        let now = time::to_micros(write.now);
        if self.database.backend() == Backend::Postgres {
            let identifiers: Vec<serde_json::Value> = write
                .draft
                .all_identifiers()
                .map(|i| serde_json::json!({"system": i.system_uri(), "value": i.value()}))
                .collect();
            let keys: Vec<String> = write.keys.iter().map(|k| k.0.to_string()).collect();
            let query = sqlx::query(include_str!("queries/write_new_record.pg.sql"))
                .bind(write.record.as_str())
                .bind(write.draft.organisation().as_str())
                .bind(write.draft.local_patient_number().value())
                .bind(write.person.as_str());
            let query = DemographicColumns::of(write.draft.demographics())
                .bind(query)
                .bind(write.draft.demographics().name.search_key())
                .bind(now)
                .bind(write.person_write.code())
                .bind(serde_json::Value::Array(identifiers).to_string())
                .bind(keys.join(","))
                .bind(&write.link_event.id)
                .bind(&write.link_event.payload)
                .bind(write.link_event.created_at)
                .bind(write.audit.as_ref().map(|(id, _)| id.clone()))
                .bind(write.audit.as_ref().map(|(_, events)| events.clone()));
            query.execute(&mut *conn).await?;
            return Ok(());
        }
        match write.person_write {
            PersonWrite::Create => {
                self.insert_person(conn, write.person, write.draft.demographics(), write.now)
                    .await?
            }
            PersonWrite::ApplyNewest => {
                self.apply_newest_record(conn, write.person, write.draft.demographics(), write.now)
                    .await?
            }
            PersonWrite::Leave => {}
        }
        self.insert_source_record(conn, write.record, write.person, write.draft, write.now)
            .await?;
        self.insert_identifiers(conn, write.record, write.person, write.draft)
            .await?;
        self.set_match_keys(conn, write.record, write.keys, false).await?;
        write.link_event.insert(conn).await?;
        if let Some(row) = &write.audit {
            hie_access::store::insert_staged_row(conn, row).await?;
        }
        Ok(())
    }

    /// Replaces a record's blocking keys.
    pub async fn set_match_keys(
        &self,
        conn: &mut AnyConnection,
        record: &SourceRecordId,
        keys: &[BlockingKey],
        replacing: bool,
    ) -> Result<(), Error> {
        if replacing {
            sqlx::query("DELETE FROM match_keys WHERE source_record_id = $1")
                .bind(record.as_str())
                .execute(&mut *conn)
                .await?;
        }
        if keys.is_empty() {
            return Ok(());
        }
        let rows: Vec<String> = (0..keys.len()).map(|i| format!("(${}, $1)", i + 2)).collect();
        let sql = format!(
            "INSERT INTO match_keys (key, source_record_id) VALUES {}",
            rows.join(", ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(record.as_str());
        for key in keys {
            query = query.bind(key.0);
        }
        query.execute(&mut *conn).await?;
        Ok(())
    }

    /// The persons a person has rejected as matches of this record: never proposed again.
    pub async fn rejected_persons(
        &self,
        conn: &mut AnyConnection,
        record: &SourceRecordId,
    ) -> Result<Vec<PersonId>, Error> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT candidate_person_id FROM match_reviews WHERE source_record_id = $1 AND status = 'rejected'",
        )
        .bind(record.as_str())
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter()
            .map(|(id,)| stored_id(PersonId::parse(&id)))
            .collect()
    }

    /// Queues possible matches for review; a pair already queued gets the new score, a decided
    /// pair stays decided.
    pub async fn queue_reviews(
        &self,
        conn: &mut AnyConnection,
        record: &SourceRecordId,
        matches: &[PossibleMatch],
        model_version: i64,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        for possible in matches {
            sqlx::query(
                "INSERT INTO match_reviews (id, source_record_id, candidate_person_id, candidate_record_id, probability, \
                 pattern, model_version, status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8) \
                 ON CONFLICT (source_record_id, candidate_person_id) DO UPDATE SET \
                 candidate_record_id = excluded.candidate_record_id, probability = excluded.probability, \
                 pattern = excluded.pattern, model_version = excluded.model_version \
                 WHERE match_reviews.status = 'pending'",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(record.as_str())
            .bind(possible.person_id.as_str())
            .bind(possible.source_record_id.as_str())
            .bind(possible.probability)
            .bind(i64::from(possible.pattern))
            .bind(model_version)
            .bind(time::to_micros(now))
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

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

    pub async fn review(&self, conn: &mut AnyConnection, id: &str) -> Result<Option<ReviewRow>, Error> {
        let sql = format!("SELECT {REVIEW_COLUMNS} FROM match_reviews WHERE id = $1");
        Ok(sqlx::query_as::<_, ReviewRow>(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?)
    }

    /// Records a decision on a pending review; false if it was no longer pending.
    pub async fn decide_review(
        &self,
        conn: &mut AnyConnection,
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
        .execute(&mut *conn)
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
        conn: &mut AnyConnection,
        model_json: &str,
        trained_on_records: u64,
    ) -> Result<i64, Error> {
        let (latest,): (Option<i64>,) = sqlx::query_as("SELECT max(version) FROM match_models")
            .fetch_one(&mut *conn)
            .await?;
        let version = latest.unwrap_or(0) + 1;
        sqlx::query(
            "INSERT INTO match_models (version, model, trained_at, trained_on_records) VALUES ($1, $2, $3, $4)",
        )
        .bind(version)
        .bind(model_json)
        .bind(time::to_micros(time::now()))
        .bind(i64::try_from(trained_on_records).unwrap_or(i64::MAX))
        .execute(&mut *conn)
        .await?;
        Ok(version)
    }

    /// Moves a record to a person, saying whether a person did it.
    pub async fn move_record(
        &self,
        conn: &mut AnyConnection,
        record: &SourceRecordId,
        person: &PersonId,
        linked_manually: bool,
    ) -> Result<(), Error> {
        sqlx::query("UPDATE source_records SET person_id = $2, linked_manually = $3 WHERE id = $1")
            .bind(record.as_str())
            .bind(person.as_str())
            .bind(i16::from(linked_manually))
            .execute(&mut *conn)
            .await?;
        sqlx::query("UPDATE person_identifiers SET person_id = $2 WHERE source_record_id = $1")
            .bind(record.as_str())
            .bind(person.as_str())
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Recomputes a person's golden record from their records (see [`crate::domain::golden`]);
    /// a person left without records keeps what they had.
    pub async fn refresh_golden_record(
        &self,
        conn: &mut AnyConnection,
        person: &PersonId,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        // The kind of each keeping organisation ranks its statements (see golden::trust_of); it
        // is read from the directory's table in the same query, as the resolve query reads
        // sensitive categories.
        let sql = format!(
            "SELECT s.id, {columns}, s.updated_at, o.kind FROM source_records s \
             LEFT JOIN organisations o ON o.code = s.organisation_code WHERE s.person_id = $1",
            columns = DEMOGRAPHIC_COLUMNS
                .split(", ")
                .map(|c| format!("s.{c}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let rows: Vec<GoldenRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(person.as_str())
            .fetch_all(&mut *conn)
            .await?;
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            let kind = row.kind.as_deref().and_then(OrganisationKind::from_code);
            records.push((
                stored_id(SourceRecordId::parse(&row.id))?,
                row.demographics.into_domain()?,
                time::from_micros(row.updated_at),
                trust_of(kind),
            ));
        }
        let statements: Vec<Statement<'_>> = records
            .iter()
            .map(|(record, demographics, updated_at, trust)| Statement {
                record,
                demographics,
                updated_at: *updated_at,
                trust: *trust,
            })
            .collect();
        if let Some((golden, _)) = golden_record(&statements) {
            self.set_person_demographics(conn, person, &golden, now).await?;
        }
        Ok(())
    }

    /// A record's person and whether a person linked it by hand.
    pub async fn record_link(
        &self,
        conn: &mut AnyConnection,
        record: &SourceRecordId,
    ) -> Result<Option<(PersonId, bool)>, Error> {
        let row: Option<(String, i16)> =
            sqlx::query_as("SELECT person_id, linked_manually FROM source_records WHERE id = $1")
                .bind(record.as_str())
                .fetch_optional(&mut *conn)
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
        conn: &mut AnyConnection,
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
        let rows = query.fetch_all(&mut *conn).await?;
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

    /// Whether a person exists, and whom they were merged into if they were.
    pub async fn person_state(
        &self,
        conn: &mut AnyConnection,
        person: &PersonId,
    ) -> Result<Option<Option<PersonId>>, Error> {
        let row: Option<(Option<String>,)> = sqlx::query_as("SELECT merged_into FROM persons WHERE id = $1")
            .bind(person.as_str())
            .fetch_optional(&mut *conn)
            .await?;
        row.map(|(into,)| into.map(|i| stored_id(PersonId::parse(&i))).transpose())
            .transpose()
    }

    /// A person's records with their manual flags, in id order.
    pub async fn record_links_of(
        &self,
        conn: &mut AnyConnection,
        person: &PersonId,
    ) -> Result<Vec<(SourceRecordId, bool)>, Error> {
        let rows: Vec<(String, i16)> =
            sqlx::query_as("SELECT id, linked_manually FROM source_records WHERE person_id = $1 ORDER BY id")
                .bind(person.as_str())
                .fetch_all(&mut *conn)
                .await?;
        rows.into_iter()
            .map(|(id, manual)| Ok((stored_id(SourceRecordId::parse(&id))?, manual != 0)))
            .collect()
    }

    pub async fn set_merged_into(
        &self,
        conn: &mut AnyConnection,
        person: &PersonId,
        into: Option<&PersonId>,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        sqlx::query("UPDATE persons SET merged_into = $2, updated_at = $3 WHERE id = $1")
            .bind(person.as_str())
            .bind(into.map(|p| p.as_str().to_owned()))
            .bind(time::to_micros(now))
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    pub async fn insert_merge(&self, conn: &mut AnyConnection, merge: &MergeRow) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO person_merges (id, from_person_id, into_person_id, moved_records, merged_at, merged_by, reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&merge.id)
        .bind(&merge.from_person_id)
        .bind(&merge.into_person_id)
        .bind(&merge.moved_records)
        .bind(merge.merged_at)
        .bind(&merge.merged_by)
        .bind(&merge.reason)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    pub async fn merge(&self, conn: &mut AnyConnection, id: &str) -> Result<Option<MergeRow>, Error> {
        Ok(sqlx::query_as::<_, MergeRow>(
            "SELECT id, from_person_id, into_person_id, moved_records, merged_at, merged_by, reason, unmerged_at \
             FROM person_merges WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?)
    }

    /// Keeps what the merge did to the surviving person's consent directives.
    pub async fn set_merge_consent(
        &self,
        conn: &mut AnyConnection,
        id: &str,
        consent: &str,
    ) -> Result<(), Error> {
        sqlx::query("UPDATE person_merges SET into_consent = $2 WHERE id = $1")
            .bind(id)
            .bind(consent)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// What the merge did to the surviving person's consent directives, if it kept it.
    pub async fn merge_consent(&self, conn: &mut AnyConnection, id: &str) -> Result<Option<String>, Error> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT into_consent FROM person_merges WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
        Ok(row.and_then(|(consent,)| consent))
    }

    /// Marks a merge undone; false if it already was.
    pub async fn mark_unmerged(
        &self,
        conn: &mut AnyConnection,
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
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// After a record left `person` for `to`: a person left without records is marked as merged
    /// into `to`, so that whoever still holds the old id is told where the records went;
    /// otherwise the person's golden record is recomputed from the records that stayed.
    pub async fn retire_if_empty(
        &self,
        conn: &mut AnyConnection,
        person: &PersonId,
        to: &PersonId,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        if self.record_links_of(conn, person).await?.is_empty() {
            self.set_merged_into(conn, person, Some(to), now).await
        } else {
            self.refresh_golden_record(conn, person, now).await
        }
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

    /// Whom a person was merged into, if they were.
    pub async fn merged_into(&self, person: &PersonId) -> Result<Option<PersonId>, Error> {
        let mut conn = self.database.pool().acquire().await?;
        Ok(self.person_state(&mut conn, person).await?.flatten())
    }

    /// The demographics a record last stated.
    pub async fn source_record_demographics(
        &self,
        conn: &mut AnyConnection,
        record: &SourceRecordId,
    ) -> Result<Option<crate::domain::Demographics>, Error> {
        let sql = format!("SELECT {DEMOGRAPHIC_COLUMNS} FROM source_records WHERE id = $1");
        let row: Option<super::DemographicsRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(record.as_str())
            .fetch_optional(&mut *conn)
            .await?;
        row.map(super::DemographicsRow::into_domain).transpose()
    }
}

/// A merge as stored.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct MergeRow {
    pub id: String,
    pub from_person_id: String,
    pub into_person_id: String,
    /// JSON: `[{"record": id, "manual": bool}, …]`.
    pub moved_records: String,
    pub merged_at: i64,
    pub merged_by: String,
    pub reason: String,
    pub unmerged_at: Option<i64>,
}
