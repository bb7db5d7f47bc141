//! SQL for persons, source records and identifiers; written once for SQLite and PostgreSQL.
//! Write functions take the caller's unit of work ([`UnitOfWork`]), so that a registration is
//! all or nothing and commits with its audit and outbox events. The store returns rows; what
//! they mean (survivorship, visibility, matching) is decided in `domain`.

mod columns;
mod links;
mod matching;
mod reviews;

pub use links::StoredStatement;
pub use matching::{ExistingRecord, MAX_CANDIDATES, NewRecordWrite, PersonWrite};
pub use reviews::ReviewRow;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use hie_access::UnitOfWork;
use hie_access::domain::consent::{ConsentDirectives, DataCategory};
use hie_access::store::consent::{StoredDirectives, directive_columns};
use hie_core::db::{Database, HeldConnections};
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
struct ResolvedRow {
    asked_system: String,
    asked_value: String,
    person_id: String,
    system: String,
    value: String,
    organisation_code: String,
    source_record_id: String,
    #[sqlx(flatten)]
    consent: StoredDirectives,
    sensitive_category: Option<String>,
}

/// A resolved identifier: its person, every identifier of that person, and (when asked for) the
/// person's consent directives.
pub type ResolvedIdentifier = (PersonId, Vec<CrossReference>, ConsentDirectives);

#[derive(FromRow)]
struct IdentifierRow {
    source_record_id: String,
    system: String,
    value: String,
}

/// `$first, $first+1, …` for `n` values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
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

    /// [`PopulationStore::resolve_many`] on a connection held for resolving.
    pub async fn resolve_held(
        &self,
        identifiers: &[Identifier],
        with_consent: bool,
    ) -> Result<Vec<Option<ResolvedIdentifier>>, Error> {
        self.resolving
            .with(async |connection| self.resolve_many(connection, identifiers, with_consent).await)
            .await
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
        Ok(())
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
        Ok(())
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

    /// For each identifier, the person carrying it and all of that person's cross-references, in
    /// one query for the whole batch, with what the access decision needs joined in when
    /// `with_consent`: the person's consent directives and each keeping organisation's sensitive
    /// category (empty and none otherwise). When (against the matching rules) an identifier is
    /// carried by two persons, the one with the smallest id answers.
    pub async fn resolve_many(
        &self,
        connection: &mut AnyConnection,
        identifiers: &[Identifier],
        with_consent: bool,
    ) -> Result<Vec<Option<ResolvedIdentifier>>, Error> {
        if identifiers.is_empty() {
            return Ok(Vec::new());
        }
        // Batches are padded to a power of two by repeating the last identifier, so that the
        // statement cache holds a handful of shapes rather than one per batch size.
        let padded = identifiers.len().next_power_of_two();
        let asked: Vec<String> = (0..padded)
            .map(|i| format!("(i.system = ${} AND i.value = ${})", 2 * i + 1, 2 * i + 2))
            .collect();
        let sql = format!(
            "SELECT DISTINCT i.system AS asked_system, i.value AS asked_value, x.person_id, x.system, x.value, \
             x.organisation_code, x.source_record_id, {} \
             FROM person_identifiers i JOIN person_identifiers x ON x.person_id = i.person_id {} \
             WHERE {} \
             ORDER BY asked_system, asked_value, x.person_id, x.system, x.value, x.organisation_code, x.source_record_id",
            if with_consent {
                format!("{}, o.sensitive_category", directive_columns(Some("c")))
            } else {
                format!(
                    "{}, CAST(NULL AS TEXT) AS sensitive_category",
                    directive_columns(None)
                )
            },
            if with_consent {
                "LEFT JOIN consent_directives c ON c.person_id = x.person_id \
                 LEFT JOIN organisations o ON o.code = x.organisation_code"
            } else {
                ""
            },
            asked.join(" OR ")
        );
        let mut query = sqlx::query_as::<_, ResolvedRow>(AssertSqlSafe(sql));
        for i in 0..padded {
            let identifier = &identifiers[i.min(identifiers.len() - 1)];
            query = query
                .bind(identifier.system_uri())
                .bind(identifier.value().to_owned());
        }
        let mut by_identifier: BTreeMap<(String, String), ResolvedIdentifier> = BTreeMap::new();
        for row in query.fetch_all(&mut *connection).await? {
            let person = stored_id(PersonId::parse(&row.person_id))?;
            let reference = CrossReference {
                identifier: stored_identifier(&row.system, &row.value)?,
                organisation: stored_id(OrganisationCode::parse(&row.organisation_code))?,
                source_record_id: stored_id(SourceRecordId::parse(&row.source_record_id))?,
                sensitive_category: match &row.sensitive_category {
                    Some(code) => Some(DataCategory::sensitive_from_code(code).ok_or_else(|| {
                        Error::Internal(format!("stored sensitive category {code} does not parse").into())
                    })?),
                    None => None,
                },
            };
            let (first_person, references, _) = by_identifier
                .entry((row.asked_system, row.asked_value))
                .or_insert_with(|| (person.clone(), Vec::new(), row.consent.directives()));
            if *first_person == person {
                references.push(reference);
            }
        }
        Ok(identifiers
            .iter()
            .map(|identifier| {
                by_identifier
                    .get(&(identifier.system_uri(), identifier.value().to_owned()))
                    .cloned()
            })
            .collect())
    }

    /// Up to `limit` persons after the id `after` matching `criteria`, in id order.
    pub async fn search(
        &self,
        criteria: &SearchCriteria,
        after: &str,
        limit: u32,
    ) -> Result<Vec<Person>, Error> {
        let mut binds: Vec<String> = vec![after.to_owned()];
        // Adds a bound value and returns its placeholder.
        let mut placeholder = |value: String| {
            binds.push(value);
            format!("${}", binds.len())
        };
        let mut conditions = vec!["r.person_id > $1".to_owned()];
        match &criteria.name {
            Some(NameQuery::Exact(name)) => {
                conditions.push(format!("r.name_key = {}", placeholder(name.search_key())))
            }
            Some(NameQuery::Prefix(name)) => {
                let pattern = format!("{}%", escape_like(&name.search_key()));
                conditions.push(format!("r.name_key LIKE {} ESCAPE '\\'", placeholder(pattern)));
            }
            None => {}
        }
        if let Some(from) = criteria.born_from {
            conditions.push(format!("r.birth_date >= {}", placeholder(from.to_iso())));
        }
        if let Some(to) = criteria.born_to {
            conditions.push(format!("r.birth_date <= {}", placeholder(to.to_iso())));
        }
        if let Some(sex) = criteria.sex {
            conditions.push(format!("r.sex = {}", placeholder(sex.code().to_owned())));
        }
        if let Some(division) = &criteria.division {
            conditions.push(format!(
                "r.division_code LIKE {}",
                placeholder(format!("{}%", division.region_prefix()))
            ));
        }
        if let Some(identifier) = &criteria.identifier {
            let system = placeholder(identifier.system_uri());
            let value = placeholder(identifier.value().to_owned());
            conditions.push(format!(
                "r.person_id IN (SELECT i.person_id FROM person_identifiers i WHERE i.system = {system} AND i.value = {value})"
            ));
        }
        let sql = format!(
            "SELECT DISTINCT r.person_id FROM source_records r WHERE {} ORDER BY r.person_id LIMIT {}",
            conditions.join(" AND "),
            limit
        );
        let mut query = sqlx::query_as::<_, (String,)>(AssertSqlSafe(sql));
        for value in binds {
            query = query.bind(value);
        }
        let ids = query
            .fetch_all(self.database.pool())
            .await?
            .into_iter()
            .map(|(id,)| stored_id(PersonId::parse(&id)))
            .collect::<Result<Vec<_>, _>>()?;
        self.persons(&ids).await
    }
}

/// Escapes the LIKE wildcards so that a name containing `%` or `_` matches literally.
fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
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
