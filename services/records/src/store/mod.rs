//! SQL of the archive, written once for SQLite and PostgreSQL. Writes take the caller's unit of
//! work; reads return entries and leave what the caller may see to the domain.

use chrono::NaiveDate;
use hie_access::UnitOfWork;
use hie_access::domain::consent::DataCategory;
use hie_core::db::{Database, placeholders};
use hie_core::domain::OrganisationCode;
use hie_core::id::PersonId;
use hie_core::{Error, time};
use sqlx::{AssertSqlSafe, FromRow};

use crate::domain::{Entry, EntryId, EntryPayload, EntryQuery, MAX_VERSIONS};

#[derive(Clone, Debug)]
pub struct RecordsStore {
    database: Database,
}

#[derive(FromRow)]
struct EntryRow {
    id: String,
    person_id: String,
    source_organisation_code: String,
    source_entry_id: String,
    recorded_on: String,
    version: i64,
    content_hash: String,
    payload: String,
    sensitive_category: Option<String>,
    submitted_at: i64,
}

const ENTRY_COLUMNS: &str = "id, person_id, source_organisation_code, source_entry_id, recorded_on, version, \
     content_hash, payload, sensitive_category, submitted_at";

/// What a stored value should have been, for the error of one that is not.
fn corrupt(what: &str) -> Error {
    Error::Internal(format!("a stored health record entry has an unreadable {what}").into())
}

impl TryFrom<EntryRow> for Entry {
    type Error = Error;

    fn try_from(row: EntryRow) -> Result<Entry, Error> {
        Ok(Entry {
            id: EntryId::parse(&row.id).map_err(|_| corrupt("id"))?,
            person_id: PersonId::parse(&row.person_id).map_err(|_| corrupt("person id"))?,
            source_organisation: OrganisationCode::parse(&row.source_organisation_code)
                .map_err(|_| corrupt("organisation"))?,
            source_entry_id: row.source_entry_id,
            recorded_on: NaiveDate::parse_from_str(&row.recorded_on, "%Y-%m-%d")
                .map_err(|_| corrupt("date"))?,
            version: row.version,
            content_hash: row.content_hash,
            payload: serde_json::from_str::<EntryPayload>(&row.payload).map_err(|_| corrupt("payload"))?,
            sensitive_category: row
                .sensitive_category
                .as_deref()
                .and_then(DataCategory::from_code),
            submitted_at: time::from_micros(row.submitted_at),
        })
    }
}

fn entries(rows: Vec<EntryRow>) -> Result<Vec<Entry>, Error> {
    rows.into_iter().map(Entry::try_from).collect()
}

/// The key a page of a query ends at: newest first by date, then id.
pub fn entry_page_key(entry: &Entry) -> String {
    format!("{}|{}", entry.recorded_on, entry.id.as_str())
}

/// A duplicate key written by a concurrent submission of the same entry: the submission is tried
/// again, and then finds it.
fn concurrent(error: Error) -> Error {
    match error {
        Error::AlreadyExists(_) => Error::Conflict("a concurrent submission of the same entry; retry".into()),
        other => other,
    }
}

impl RecordsStore {
    pub fn new(database: Database) -> RecordsStore {
        RecordsStore { database }
    }

    /// The current version of the entry with this source key, as the unit sees it.
    pub async fn entry_by_source(
        &self,
        unit: &mut UnitOfWork,
        organisation: &OrganisationCode,
        source_entry_id: &str,
    ) -> Result<Option<Entry>, Error> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM health_record_entries \
             WHERE source_organisation_code = $1 AND source_entry_id = $2"
        );
        let row: Option<EntryRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(organisation.as_str())
            .bind(source_entry_id)
            .fetch_optional(&mut *unit.connection().await?)
            .await?;
        row.map(Entry::try_from).transpose()
    }

    /// Writes a version: the entry's current row (inserted when `new`, else replaced) and the
    /// version's own row.
    pub async fn write_version(
        &self,
        unit: &mut UnitOfWork,
        entry: &Entry,
        new: bool,
        submitted_by: &str,
    ) -> Result<(), Error> {
        let payload =
            serde_json::to_string(&entry.payload).map_err(|e| Error::internal("encoding an entry", e))?;
        let recorded_on = entry.recorded_on.to_string();
        let category = entry.sensitive_category.map(DataCategory::code);
        let connection = unit.connection().await?;
        let current = if new {
            "INSERT INTO health_record_entries (id, person_id, source_organisation_code, source_entry_id, entry_type, \
             recorded_on, version, content_hash, payload, sensitive_category, submitted_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        } else {
            "UPDATE health_record_entries SET person_id = $2, source_organisation_code = $3, source_entry_id = $4, \
             entry_type = $5, recorded_on = $6, version = $7, content_hash = $8, payload = $9, \
             sensitive_category = $10, submitted_at = $11 WHERE id = $1"
        };
        sqlx::query(current)
            .bind(entry.id.as_str())
            .bind(entry.person_id.as_str())
            .bind(entry.source_organisation.as_str())
            .bind(&entry.source_entry_id)
            .bind(entry.entry_type().code())
            .bind(&recorded_on)
            .bind(entry.version)
            .bind(&entry.content_hash)
            .bind(&payload)
            .bind(category)
            .bind(time::to_micros(entry.submitted_at))
            .execute(&mut *connection)
            .await
            .map_err(|e| concurrent(e.into()))?;
        sqlx::query(
            "INSERT INTO health_record_versions (entry_id, version, recorded_on, content_hash, payload, \
             sensitive_category, submitted_at, submitted_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(entry.id.as_str())
        .bind(entry.version)
        .bind(&recorded_on)
        .bind(&entry.content_hash)
        .bind(&payload)
        .bind(category)
        .bind(time::to_micros(entry.submitted_at))
        .bind(submitted_by)
        .execute(&mut *connection)
        .await
        .map_err(|e| concurrent(e.into()))?;
        Ok(())
    }

    /// A page of the current entries of these persons, newest first, after the page key `after`.
    pub async fn query(
        &self,
        persons: &[PersonId],
        query: &EntryQuery,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>, Error> {
        let mut sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM health_record_entries WHERE person_id IN ({})",
            placeholders(1, persons.len())
        );
        let mut last = persons.len();
        let mut number = || {
            last += 1;
            format!("${last}")
        };
        if !query.types.is_empty() {
            let list: Vec<String> = query.types.iter().map(|_| number()).collect();
            sql.push_str(&format!(" AND entry_type IN ({})", list.join(", ")));
        }
        if query.recorded_from.is_some() {
            sql.push_str(&format!(" AND recorded_on >= {}", number()));
        }
        if query.recorded_to.is_some() {
            sql.push_str(&format!(" AND recorded_on <= {}", number()));
        }
        let after = after.and_then(|key| key.split_once('|'));
        if after.is_some() {
            let (date, id) = (number(), number());
            sql.push_str(&format!(
                " AND (recorded_on < {date} OR (recorded_on = {date} AND id < {id}))"
            ));
        }
        sql.push_str(&format!(" ORDER BY recorded_on DESC, id DESC LIMIT {limit}"));
        let mut statement = sqlx::query_as::<_, EntryRow>(AssertSqlSafe(sql));
        for person in persons {
            statement = statement.bind(person.as_str());
        }
        for entry_type in &query.types {
            statement = statement.bind(entry_type.code());
        }
        for date in [query.recorded_from, query.recorded_to].into_iter().flatten() {
            statement = statement.bind(date.to_string());
        }
        if let Some((date, id)) = after {
            statement = statement.bind(date.to_owned()).bind(id.to_owned());
        }
        entries(statement.fetch_all(self.database.pool()).await?)
    }

    /// Every current entry of these persons, newest first (for the patient summary).
    pub async fn all_current(&self, persons: &[PersonId]) -> Result<Vec<Entry>, Error> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM health_record_entries WHERE person_id IN ({}) \
             ORDER BY recorded_on DESC, id DESC",
            placeholders(1, persons.len())
        );
        let mut statement = sqlx::query_as::<_, EntryRow>(AssertSqlSafe(sql));
        for person in persons {
            statement = statement.bind(person.as_str());
        }
        entries(statement.fetch_all(self.database.pool()).await?)
    }

    /// Every version of an entry, newest first (at most [`MAX_VERSIONS`]).
    pub async fn versions(&self, id: &EntryId) -> Result<Vec<Entry>, Error> {
        let sql = format!(
            "SELECT v.entry_id AS id, e.person_id, e.source_organisation_code, e.source_entry_id, v.recorded_on, \
             v.version, v.content_hash, v.payload, v.sensitive_category, v.submitted_at \
             FROM health_record_versions v JOIN health_record_entries e ON e.id = v.entry_id \
             WHERE v.entry_id = $1 ORDER BY v.version DESC LIMIT {MAX_VERSIONS}"
        );
        let rows: Vec<EntryRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_all(self.database.pool())
            .await?;
        entries(rows)
    }
}
