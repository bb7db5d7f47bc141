//! SQL for persons, source records and identifiers; written once for SQLite and PostgreSQL.
//! Write functions take the caller's unit of work ([`UnitOfWork`]), so that a registration is
//! all or nothing and commits with its audit and outbox events. The store returns rows; what
//! they mean (survivorship, visibility, matching) is decided in `domain`.

mod columns;
mod links;
mod lookups;
mod matching;
mod reviews;

pub use links::StoredStatement;
pub use lookups::ResolvedIdentifier;
pub use matching::{ExistingRecord, MAX_CANDIDATES, NewRecordWrite, PersonWrite};
pub use reviews::ReviewRow;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use hie_access::UnitOfWork;
use hie_access::domain::consent::{ConsentDirectives, DataCategory};
use hie_access::store::consent::{StoredDirectives, directive_columns};
use hie_core::db::{Database, HeldConnections, placeholders};
use hie_core::domain::{
    BirthDate, BoundedText, DivisionCode, Ethnicity, Identifier, OrganisationCode, PersonName, Phone, Sex,
};
use hie_core::{Error, FieldError, time};
use sqlx::{Any, AnyConnection, AssertSqlSafe, FromRow};

use crate::domain::{
    CrossReference, Demographics, NameQuery, Person, PersonId, SearchCriteria, SourceRecord,
    SourceRecordDraft, SourceRecordId,
};

#[derive(Clone, Debug)]
pub struct PopulationStore {
    database: Database,
    /// Connections held for resolve batches (see [`HeldConnections`]).
    resolving: std::sync::Arc<HeldConnections>,
}

/// The demographic columns shared by `persons` and `source_records`.
#[derive(FromRow)]
struct DemographicsRow {
    name: String,
    sex: Option<String>,
    birth_date: Option<String>,
    ethnicity: Option<String>,
    phone: Option<String>,
    division_code: Option<String>,
    address_line: Option<String>,
}

use columns::DEMOGRAPHIC_COLUMNS;

#[derive(FromRow)]
struct PersonRow {
    id: String,
    #[sqlx(flatten)]
    demographics: DemographicsRow,
    created_at: i64,
    updated_at: i64,
}

#[derive(FromRow)]
struct SourceRecordRow {
    id: String,
    organisation_code: String,
    local_patient_number: String,
    person_id: String,
    #[sqlx(flatten)]
    demographics: DemographicsRow,
    created_at: i64,
    updated_at: i64,
}

#[derive(FromRow)]
struct IdentifierRow {
    source_record_id: String,
    system: String,
    value: String,
}

impl PopulationStore {
    pub fn database(&self) -> &Database {
        &self.database
    }

    pub fn new(database: Database) -> PopulationStore {
        PopulationStore {
            resolving: std::sync::Arc::new(HeldConnections::new(
                database.clone(),
                crate::domain::resolve::QUERY_SLOTS,
            )),
            database,
        }
    }

    async fn identifiers_of_records(
        &self,
        conn: &mut AnyConnection,
        record_ids: &[String],
    ) -> Result<BTreeMap<String, Vec<Identifier>>, Error> {
        let mut by_record: BTreeMap<String, Vec<Identifier>> = BTreeMap::new();
        if record_ids.is_empty() {
            return Ok(by_record);
        }
        let sql = format!(
            "SELECT source_record_id, system, value FROM person_identifiers WHERE source_record_id IN ({}) ORDER BY system, value",
            placeholders(1, record_ids.len())
        );
        let mut query = sqlx::query_as::<_, IdentifierRow>(AssertSqlSafe(sql));
        for id in record_ids {
            query = query.bind(id.as_str());
        }
        for row in query.fetch_all(&mut *conn).await? {
            let identifier = stored_identifier(&row.system, &row.value)?;
            by_record
                .entry(row.source_record_id)
                .or_default()
                .push(identifier);
        }
        Ok(by_record)
    }

    pub async fn insert_person(
        &self,
        unit: &mut UnitOfWork,
        id: &PersonId,
        demographics: &Demographics,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let query = sqlx::query(AssertSqlSafe(columns::INSERT_PERSON.as_str())).bind(id.as_str());
        DemographicColumns::of(demographics)
            .bind(query)
            .bind(time::to_micros(now))
            .execute(unit.connection().await?)
            .await?;
        Ok(())
    }

    /// Applies the record just registered, the person's newest, to their golden record: each
    /// field it states replaces the person's value (survivorship: the newest record stating a
    /// field wins); the fields it leaves empty keep theirs.
    pub async fn apply_newest_record(
        &self,
        unit: &mut UnitOfWork,
        id: &PersonId,
        demographics: &Demographics,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let query = sqlx::query(AssertSqlSafe(columns::APPLY_NEWEST.as_str())).bind(id.as_str());
        DemographicColumns::of(demographics)
            .bind(query)
            .bind(time::to_micros(now))
            .execute(unit.connection().await?)
            .await?;
        Ok(())
    }

    /// Sets the person's demographics to those of the record just registered, the most recent.
    pub async fn set_person_demographics(
        &self,
        unit: &mut UnitOfWork,
        id: &PersonId,
        demographics: &Demographics,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let query = sqlx::query(AssertSqlSafe(columns::SET_PERSON_DEMOGRAPHICS.as_str())).bind(id.as_str());
        DemographicColumns::of(demographics)
            .bind(query)
            .bind(time::to_micros(now))
            .execute(unit.connection().await?)
            .await?;
        Ok(())
    }

    pub async fn insert_source_record(
        &self,
        unit: &mut UnitOfWork,
        id: &SourceRecordId,
        person: &PersonId,
        draft: &SourceRecordDraft,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let query = sqlx::query(AssertSqlSafe(columns::INSERT_SOURCE_RECORD.as_str()))
            .bind(id.as_str())
            .bind(draft.organisation().as_str())
            .bind(draft.local_patient_number().value())
            .bind(person.as_str());
        bind_record_content(query, draft, now)
            .execute(unit.connection().await?)
            .await?;
        self.set_name_keys(unit, id, draft.demographics().name.as_str(), false)
            .await
    }

    pub async fn update_source_record(
        &self,
        unit: &mut UnitOfWork,
        id: &SourceRecordId,
        person: &PersonId,
        draft: &SourceRecordDraft,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let query = sqlx::query(AssertSqlSafe(columns::UPDATE_SOURCE_RECORD.as_str()))
            .bind(id.as_str())
            .bind(person.as_str());
        bind_record_content(query, draft, now)
            .execute(unit.connection().await?)
            .await?;
        self.set_name_keys(unit, id, draft.demographics().name.as_str(), true)
            .await
    }

    /// Replaces the identifiers a record asserts with those of its latest submission.
    pub async fn replace_identifiers(
        &self,
        unit: &mut UnitOfWork,
        record: &SourceRecordId,
        person: &PersonId,
        draft: &SourceRecordDraft,
    ) -> Result<(), Error> {
        sqlx::query("DELETE FROM person_identifiers WHERE source_record_id = $1")
            .bind(record.as_str())
            .execute(unit.connection().await?)
            .await?;
        self.insert_identifiers(unit, record, person, draft).await
    }

    /// Inserts every identifier a new record asserts, in one statement.
    pub async fn insert_identifiers(
        &self,
        unit: &mut UnitOfWork,
        record: &SourceRecordId,
        person: &PersonId,
        draft: &SourceRecordDraft,
    ) -> Result<(), Error> {
        let identifiers: Vec<_> = draft.all_identifiers().collect();
        // $1 record, $2 person, $3 organisation; then a system and a value per identifier.
        let rows: Vec<String> = (0..identifiers.len())
            .map(|i| format!("($1, ${}, ${}, $2, $3)", 4 + 2 * i, 5 + 2 * i))
            .collect();
        let sql = format!(
            "INSERT INTO person_identifiers (source_record_id, system, value, person_id, organisation_code) VALUES {}",
            rows.join(", ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(record.as_str())
            .bind(person.as_str())
            .bind(draft.organisation().as_str());
        for identifier in identifiers {
            query = query
                .bind(identifier.system_uri())
                .bind(identifier.value().to_owned());
        }
        query.execute(unit.connection().await?).await?;
        Ok(())
    }

    /// The persons with these ids, in id order, each with its identifiers.
    pub async fn persons(&self, ids: &[PersonId]) -> Result<Vec<Person>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = placeholders(1, ids.len());
        let sql = format!(
            "SELECT id, {DEMOGRAPHIC_COLUMNS}, created_at, updated_at FROM persons WHERE id IN ({list}) ORDER BY id"
        );
        let mut query = sqlx::query_as::<_, PersonRow>(AssertSqlSafe(sql));
        for id in ids {
            query = query.bind(id.as_str());
        }
        let rows = query.fetch_all(self.database.pool()).await?;
        let sql = format!(
            "SELECT DISTINCT person_id, system, value FROM person_identifiers WHERE person_id IN ({list}) \
             ORDER BY person_id, system, value"
        );
        let mut query = sqlx::query_as::<_, (String, String, String)>(AssertSqlSafe(sql));
        for id in ids {
            query = query.bind(id.as_str());
        }
        let mut identifiers: BTreeMap<String, Vec<Identifier>> = BTreeMap::new();
        for (person, system, value) in query.fetch_all(self.database.pool()).await? {
            identifiers
                .entry(person)
                .or_default()
                .push(stored_identifier(&system, &value)?);
        }
        rows.into_iter()
            .map(|row| {
                Ok(Person {
                    id: stored_id(PersonId::parse(&row.id))?,
                    identifiers: identifiers.remove(&row.id).unwrap_or_default(),
                    demographics: row.demographics.into_domain()?,
                    created_at: time::from_micros(row.created_at),
                    updated_at: time::from_micros(row.updated_at),
                    demographics_sources: Vec::new(),
                })
            })
            .collect()
    }

    /// The source records linked to a person, in organisation and local-number order.
    /// Whether `organisation` keeps a record linked to `person`.
    pub async fn keeps_a_record(&self, organisation: &str, person: &str) -> Result<bool, Error> {
        let found: Option<(i64,)> = sqlx::query_as(
            "SELECT 1 FROM source_records WHERE person_id = $1 AND organisation_code = $2 LIMIT 1",
        )
        .bind(person)
        .bind(organisation)
        .fetch_optional(self.database.pool())
        .await?;
        Ok(found.is_some())
    }

    pub async fn source_records_of(&self, person: &PersonId) -> Result<Vec<SourceRecord>, Error> {
        let sql = format!(
            "SELECT id, organisation_code, local_patient_number, person_id, {DEMOGRAPHIC_COLUMNS}, created_at, updated_at \
             FROM source_records WHERE person_id = $1 ORDER BY organisation_code, local_patient_number"
        );
        let rows: Vec<SourceRecordRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(person.as_str())
            .fetch_all(self.database.pool())
            .await?;
        self.with_identifiers(rows).await
    }

    /// Up to `limit` source records after `after` in id order: for jobs that walk them all.
    pub async fn source_records_after(
        &self,
        after: Option<&SourceRecordId>,
        limit: usize,
    ) -> Result<Vec<SourceRecord>, Error> {
        let sql = format!(
            "SELECT id, organisation_code, local_patient_number, person_id, {DEMOGRAPHIC_COLUMNS}, created_at, updated_at \
             FROM source_records WHERE id > $1 ORDER BY id LIMIT {limit}"
        );
        let rows: Vec<SourceRecordRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(after.map_or("", SourceRecordId::as_str))
            .fetch_all(self.database.pool())
            .await?;
        self.with_identifiers(rows).await
    }

    pub async fn count_source_records(&self) -> Result<i64, Error> {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM source_records")
            .fetch_one(self.database.pool())
            .await?;
        Ok(n)
    }

    async fn with_identifiers(&self, rows: Vec<SourceRecordRow>) -> Result<Vec<SourceRecord>, Error> {
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let mut connection = self.database.pool().acquire().await?;
        let mut identifiers = BTreeMap::new();
        // In slices, to stay under every backend's limit on bound parameters.
        for slice in ids.chunks(1_000) {
            identifiers.extend(self.identifiers_of_records(&mut connection, slice).await?);
        }
        rows.into_iter()
            .map(|row| {
                Ok(SourceRecord {
                    id: stored_id(SourceRecordId::parse(&row.id))?,
                    organisation: stored_id(OrganisationCode::parse(&row.organisation_code))?,
                    person_id: stored_id(PersonId::parse(&row.person_id))?,
                    identifiers: identifiers.remove(&row.id).unwrap_or_default(),
                    local_patient_number: row.local_patient_number,
                    demographics: row.demographics.into_domain()?,
                    created_at: time::from_micros(row.created_at),
                    updated_at: time::from_micros(row.updated_at),
                })
            })
            .collect()
    }
}

/// Demographics as the text columns store them.
struct DemographicColumns {
    name: String,
    sex: Option<&'static str>,
    birth_date: Option<String>,
    ethnicity: Option<&'static str>,
    phone: Option<String>,
    division_code: Option<String>,
    address_line: Option<String>,
}

type AnyQuery<'q> = sqlx::query::Query<'q, Any, <Any as sqlx::Database>::Arguments>;

/// Binds what a record's submission sets, in the order both record statements list it: the
/// demographic columns, the name key, the time.
fn bind_record_content<'q>(
    query: AnyQuery<'q>,
    draft: &SourceRecordDraft,
    now: DateTime<Utc>,
) -> AnyQuery<'q> {
    DemographicColumns::of(draft.demographics())
        .bind(query)
        .bind(draft.demographics().name.search_key())
        .bind(time::to_micros(now))
}

impl DemographicColumns {
    /// Binds the seven columns in the order of [`DEMOGRAPHIC_COLUMNS`].
    fn bind(self, query: AnyQuery<'_>) -> AnyQuery<'_> {
        query
            .bind(self.name)
            .bind(self.sex)
            .bind(self.birth_date)
            .bind(self.ethnicity)
            .bind(self.phone)
            .bind(self.division_code)
            .bind(self.address_line)
    }

    fn of(d: &Demographics) -> DemographicColumns {
        DemographicColumns {
            name: d.name.as_str().to_owned(),
            sex: d.sex.map(Sex::code),
            birth_date: d.birth_date.map(BirthDate::to_iso),
            ethnicity: d.ethnicity.map(Ethnicity::code),
            phone: d.phone.as_ref().map(|p| p.as_str().to_owned()),
            division_code: d.division.as_ref().map(|c| c.as_str().to_owned()),
            address_line: Some(d.address_line.as_str().to_owned()).filter(|l| !l.is_empty()),
        }
    }
}

impl DemographicsRow {
    fn into_domain(self) -> Result<Demographics, Error> {
        fn optional<T>(
            value: Option<String>,
            parse: impl Fn(&str) -> Result<T, FieldError>,
        ) -> Result<Option<T>, Error> {
            value.as_deref().map(|v| stored_id(parse(v))).transpose()
        }
        Ok(Demographics {
            name: stored_id(PersonName::parse(&self.name))?,
            sex: optional(self.sex, Sex::parse)?,
            birth_date: optional(self.birth_date, BirthDate::parse)?,
            ethnicity: optional(self.ethnicity, Ethnicity::parse)?,
            phone: optional(self.phone, Phone::parse)?,
            division: optional(self.division_code, DivisionCode::parse)?,
            address_line: stored_id(BoundedText::parse(
                self.address_line.as_deref().unwrap_or(""),
                usize::MAX,
            ))?,
        })
    }
}

/// A stored value that no longer parses means the table was changed behind the exchange's back;
/// the value itself stays out of the message, which reaches the log.
fn stored_id<T>(parsed: Result<T, FieldError>) -> Result<T, Error> {
    parsed.map_err(|_| Error::Internal("a stored population value does not parse".into()))
}

fn stored_identifier(system: &str, value: &str) -> Result<Identifier, Error> {
    Identifier::parse(system, value)
        .map_err(|_| Error::Internal(format!("a stored identifier of {system} does not parse").into()))
}
