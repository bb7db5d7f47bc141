//! SQL of matching: blocking keys, the matching context of a registration, a new record's rows,
//! and the possible matches it queues for review.

use chrono::{DateTime, Utc};
use hie_core::db::Backend;

use super::DemographicColumns;
use hie_access::UnitOfWork;
use hie_access::unit_of_work::Pending;
use hie_core::domain::{IdentifierSystem, OrganisationCode, ResidentId};
use hie_core::outbox::OutboxEvent;
use hie_core::{Error, time};
use sqlx::{AssertSqlSafe, FromRow};

use super::{PopulationStore, SourceRecordRow, placeholders, stored_id, stored_identifier};
use crate::domain::{BlockingKey, Candidate, PersonId, PossibleMatch, SourceRecordId};

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
    /// Whether the unit's audit event and outbox events so far go in the same statement (a
    /// single registration, whose subject is final by now); a bulk write leaves them to the
    /// commit.
    pub with_pending: bool,
    pub now: DateTime<Utc>,
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

impl PopulationStore {
    /// Takes transaction-scoped locks on `keys` (sorted, so that two registrations never wait on
    /// each other in a cycle). On PostgreSQL these are advisory locks, which write nothing; on
    /// SQLite a write transaction already holds the database's one write lock.
    pub async fn lock_keys(&self, unit: &mut UnitOfWork, keys: &[i64]) -> Result<(), Error> {
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
        .execute(unit.connection().await?)
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
        unit: &mut UnitOfWork,
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
            columns = super::columns::columns_of("s"),
        );
        let mut query = sqlx::query_as::<_, MatchContextRow>(AssertSqlSafe(sql))
            .bind(organisation.as_str())
            .bind(local_patient_number)
            .bind(IdentifierSystem::RESIDENT_ID);
        for key in keys {
            query = query.bind(key.0);
        }
        let rows = query.fetch_all(unit.connection().await?).await?;
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
    /// keys and, with `with_pending`, the unit's audit event and outbox events. On PostgreSQL one
    /// statement; on SQLite, whose writer holds the database anyway, one statement each (and the
    /// unit's commit writes the events).
    pub async fn write_new_record(
        &self,
        unit: &mut UnitOfWork,
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
            let Pending { audit, outbox } = if write.with_pending {
                unit.take_pending()?
            } else {
                Pending::default()
            };
            let outbox: Vec<serde_json::Value> = outbox.iter().map(OutboxEvent::to_json).collect();
            let query = sqlx::query(AssertSqlSafe(super::columns::WRITE_NEW_RECORD.as_str()))
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
                .bind(serde_json::Value::Array(outbox).to_string())
                .bind(audit.as_ref().map(|(id, _)| id.clone()))
                .bind(audit.as_ref().map(|(_, events)| events.clone()))
                .bind(
                    crate::domain::name_search::name_search_keys(write.draft.demographics().name.as_str())
                        .join(","),
                );
            query.execute(unit.connection().await?).await?;
            return Ok(());
        }
        match write.person_write {
            PersonWrite::Create => {
                self.insert_person(unit, write.person, write.draft.demographics(), write.now)
                    .await?
            }
            PersonWrite::ApplyNewest => {
                self.apply_newest_record(unit, write.person, write.draft.demographics(), write.now)
                    .await?
            }
            PersonWrite::Leave => {}
        }
        self.insert_source_record(unit, write.record, write.person, write.draft, write.now)
            .await?;
        self.insert_identifiers(unit, write.record, write.person, write.draft)
            .await?;
        self.set_match_keys(unit, write.record, write.keys, false).await?;
        Ok(())
    }

    /// Replaces a record's blocking keys.
    pub async fn set_match_keys(
        &self,
        unit: &mut UnitOfWork,
        record: &SourceRecordId,
        keys: &[BlockingKey],
        replacing: bool,
    ) -> Result<(), Error> {
        if replacing {
            sqlx::query("DELETE FROM match_keys WHERE source_record_id = $1")
                .bind(record.as_str())
                .execute(unit.connection().await?)
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
        query.execute(unit.connection().await?).await?;
        Ok(())
    }

    /// The persons a person has rejected as matches of this record: never proposed again.
    pub async fn rejected_persons(
        &self,
        unit: &mut UnitOfWork,
        record: &SourceRecordId,
    ) -> Result<Vec<PersonId>, Error> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT candidate_person_id FROM match_reviews WHERE source_record_id = $1 AND status = 'rejected'",
        )
        .bind(record.as_str())
        .fetch_all(unit.connection().await?)
        .await?;
        rows.into_iter()
            .map(|(id,)| stored_id(PersonId::parse(&id)))
            .collect()
    }

    /// Queues possible matches for review; a pair already queued gets the new score, a decided
    /// pair stays decided.
    pub async fn queue_reviews(
        &self,
        unit: &mut UnitOfWork,
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
            .bind(crate::domain::decisions::ReviewId::generate().as_str().to_owned())
            .bind(record.as_str())
            .bind(possible.person_id.as_str())
            .bind(possible.source_record_id.as_str())
            .bind(possible.probability)
            .bind(i64::from(possible.pattern))
            .bind(model_version)
            .bind(time::to_micros(now))
            .execute(unit.connection().await?)
            .await?;
        }
        Ok(())
    }
}
