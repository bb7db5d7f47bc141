//! SQL of the EMR registry (documents, their sets, associations and content; visits), written
//! once for SQLite and PostgreSQL. Writes take the caller's unit of work; reads return rows and
//! leave what the caller may see to the domain.

use chrono::{DateTime, Utc};
use hie_access::UnitOfWork;
use hie_access::domain::consent::DataCategory;
use hie_core::db::{Database, placeholders};
use hie_core::domain::{Icd10Code, Identifier, OrganisationCode};
use hie_core::id::PersonId;
use hie_core::{Error, time};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, AssertSqlSafe, FromRow};

use crate::domain::encounters::Encounter;
use crate::domain::{
    AssociationKind, Author, AvailabilityStatus, Code, Confidentiality, Document, DocumentId,
    DocumentMetadata, DocumentQuery, EncounterDraft, EncounterId, EncounterKind, Observation,
};

mod encounters;

pub use encounters::encounter_page_key;

#[derive(Clone, Debug)]
pub struct EmrStore {
    database: Database,
}

fn corrupt(what: &str) -> Error {
    Error::Internal(format!("a stored {what} is unreadable").into())
}

/// A duplicate key written by a concurrent registration: tried again, it then finds the first.
fn concurrent(error: sqlx::Error) -> Error {
    match Error::from(error) {
        Error::AlreadyExists(_) => Error::Conflict("a concurrent registration of the same key; retry".into()),
        other => other,
    }
}

fn micros(instant: Option<DateTime<Utc>>) -> Option<i64> {
    instant.map(time::to_micros)
}

/// The key a page of documents ends at: newest first by creation, then id.
pub fn document_page_key(document: &Document) -> String {
    format!(
        "{}|{}",
        time::to_micros(document.metadata.creation_time),
        document.id.as_str()
    )
}

/// A page key's instant and id.
fn page_key(key: &str) -> Option<(i64, &str)> {
    let (micros, id) = key.split_once('|')?;
    Some((micros.parse().ok()?, id))
}

/// Every coded attribute of a document in full.
#[derive(Serialize, Deserialize)]
struct StoredCodes {
    class: Code,
    #[serde(rename = "type")]
    type_code: Code,
    format: Code,
    facility_type: Code,
    practice_setting: Code,
}

#[derive(FromRow)]
struct DocumentRow {
    id: String,
    unique_id: String,
    source_organisation_code: String,
    person_id: String,
    source_patient_system: String,
    source_patient_value: String,
    codes: String,
    confidentiality_code: String,
    sensitive_category_named: Option<String>,
    event_codes: String,
    creation_time: i64,
    service_start_time: Option<i64>,
    service_stop_time: Option<i64>,
    author_person: String,
    author_institution: String,
    author_role: String,
    author_specialty: String,
    language_code: String,
    mime_type: String,
    content_hash: String,
    content_size: i64,
    repository_organisation_code: String,
    status: String,
    title: String,
    legal_authenticator: String,
    observations: String,
    registered_at: i64,
}

const DOCUMENT_COLUMNS: &str = "id, unique_id, source_organisation_code, person_id, source_patient_system, source_patient_value, codes, \
     confidentiality_code, sensitive_category_named, event_codes, creation_time, service_start_time, service_stop_time, \
     author_person, author_institution, author_role, author_specialty, language_code, mime_type, content_hash, \
     content_size, repository_organisation_code, status, title, legal_authenticator, observations, registered_at";

impl TryFrom<DocumentRow> for Document {
    type Error = Error;

    fn try_from(row: DocumentRow) -> Result<Document, Error> {
        let codes: StoredCodes = serde_json::from_str(&row.codes).map_err(|_| corrupt("document's codes"))?;
        let observations: Vec<Observation> =
            serde_json::from_str(&row.observations).map_err(|_| corrupt("document's observations"))?;
        let event_codes = row
            .event_codes
            .split_whitespace()
            .map(|code| Icd10Code::parse(code).map_err(|_| corrupt("document's event code")))
            .collect::<Result<Vec<_>, _>>()?;
        let repository = match row.repository_organisation_code.as_str() {
            "" => None,
            code => Some(OrganisationCode::parse(code).map_err(|_| corrupt("document's repository"))?),
        };
        Ok(Document {
            id: DocumentId::parse(&row.id).map_err(|_| corrupt("document id"))?,
            person_id: PersonId::parse(&row.person_id).map_err(|_| corrupt("document's person"))?,
            source_organisation: OrganisationCode::parse(&row.source_organisation_code)
                .map_err(|_| corrupt("document's source"))?,
            metadata: DocumentMetadata {
                unique_id: row.unique_id,
                source_patient: Identifier::parse(&row.source_patient_system, &row.source_patient_value)
                    .map_err(|_| corrupt("document's source patient"))?,
                class_code: codes.class,
                type_code: codes.type_code,
                format_code: codes.format,
                confidentiality: Confidentiality::parse(&row.confidentiality_code)
                    .ok_or_else(|| corrupt("document's confidentiality"))?,
                sensitive_category: row
                    .sensitive_category_named
                    .as_deref()
                    .and_then(DataCategory::from_code),
                event_codes,
                facility_type_code: codes.facility_type,
                practice_setting_code: codes.practice_setting,
                creation_time: time::from_micros(row.creation_time),
                service_start_time: row.service_start_time.map(time::from_micros),
                service_stop_time: row.service_stop_time.map(time::from_micros),
                author: Author {
                    person: row.author_person,
                    institution: OrganisationCode::parse(&row.author_institution)
                        .map_err(|_| corrupt("document's author institution"))?,
                    role: row.author_role,
                    specialty: row.author_specialty,
                },
                language_code: row.language_code,
                mime_type: row.mime_type,
                hash: row.content_hash,
                size: row.content_size,
                repository,
                title: row.title,
                legal_authenticator: row.legal_authenticator,
                observations,
            },
            status: AvailabilityStatus::parse(&row.status).ok_or_else(|| corrupt("document's status"))?,
            registered_at: time::from_micros(row.registered_at),
        })
    }
}

fn documents(rows: Vec<DocumentRow>) -> Result<Vec<Document>, Error> {
    rows.into_iter().map(Document::try_from).collect()
}

impl EmrStore {
    pub fn new(database: Database) -> EmrStore {
        EmrStore { database }
    }

    /// The documents of a registered submission set, in the order they were given; `None` when
    /// no set has this id.
    pub async fn documents_of_set(
        &self,
        unit: &mut UnitOfWork,
        set: &str,
    ) -> Result<Option<Vec<Document>>, Error> {
        let connection = unit.connection().await?;
        let exists: Option<(String,)> =
            sqlx::query_as("SELECT id FROM document_submission_sets WHERE unique_id = $1")
                .bind(set)
                .fetch_optional(&mut *connection)
                .await?;
        if exists.is_none() {
            return Ok(None);
        }
        // Ids are UUID v7 made in the order given, so id order is the submission's order.
        let sql =
            format!("SELECT {DOCUMENT_COLUMNS} FROM documents WHERE submission_set_id = $1 ORDER BY id");
        let rows: Vec<DocumentRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(set)
            .fetch_all(&mut *connection)
            .await?;
        documents(rows).map(Some)
    }

    /// The document with this unique id: in the unit when given, else on any connection.
    pub async fn document_by_unique_id(
        &self,
        unit: Option<&mut UnitOfWork>,
        unique_id: &str,
    ) -> Result<Option<Document>, Error> {
        let sql = format!("SELECT {DOCUMENT_COLUMNS} FROM documents WHERE unique_id = $1");
        let statement = sqlx::query_as::<_, DocumentRow>(AssertSqlSafe(sql)).bind(unique_id);
        let row = match unit {
            Some(unit) => statement.fetch_optional(&mut *unit.connection().await?).await?,
            None => statement.fetch_optional(self.database.pool()).await?,
        };
        row.map(Document::try_from).transpose()
    }

    pub async fn deprecate(
        &self,
        unit: &mut UnitOfWork,
        id: &DocumentId,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        sqlx::query("UPDATE documents SET status = $2, deprecated_at = $3 WHERE id = $1")
            .bind(id.as_str())
            .bind(AvailabilityStatus::Deprecated.code())
            .bind(time::to_micros(at))
            .execute(&mut *unit.connection().await?)
            .await?;
        Ok(())
    }

    pub async fn insert_set(
        &self,
        unit: &mut UnitOfWork,
        unique_id: &str,
        organisation: &OrganisationCode,
        at: DateTime<Utc>,
        by: &str,
    ) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO document_submission_sets (id, unique_id, source_organisation_code, submitted_at, submitted_by) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hie_core::id::Uuid::now_v7().to_string())
        .bind(unique_id)
        .bind(organisation.as_str())
        .bind(time::to_micros(at))
        .bind(by)
        .execute(&mut *unit.connection().await?)
        .await
        .map_err(concurrent)?;
        Ok(())
    }

    /// The registered documents among these unique ids, in one query.
    pub async fn documents_by_unique_ids(
        &self,
        unit: &mut UnitOfWork,
        unique_ids: &[&str],
    ) -> Result<Vec<Document>, Error> {
        if unique_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE unique_id IN ({})",
            placeholders(1, unique_ids.len())
        );
        let mut statement = sqlx::query_as::<_, DocumentRow>(AssertSqlSafe(sql));
        for id in unique_ids {
            statement = statement.bind(*id);
        }
        documents(statement.fetch_all(&mut *unit.connection().await?).await?)
    }

    /// Inserts the documents of a set and the content the exchange keeps (`contents`, one per
    /// document), many rows per statement.
    pub async fn insert_documents(
        &self,
        unit: &mut UnitOfWork,
        set: &str,
        documents: &[Document],
        contents: &[Option<&[u8]>],
    ) -> Result<(), Error> {
        const COLUMNS: usize = 31;
        // Rows per statement: well within either backend's limit on bound values.
        const ROWS: usize = 50;
        let connection: &mut AnyConnection = unit.connection().await?;
        for chunk in documents.chunks(ROWS) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|r| format!("({})", placeholders(r * COLUMNS + 1, COLUMNS)))
                .collect();
            let sql = format!(
                "INSERT INTO documents (id, unique_id, submission_set_id, source_organisation_code, person_id, \
                 source_patient_system, source_patient_value, class_code, type_code, codes, confidentiality_code, \
                 sensitive_category_named, event_codes, creation_time, service_start_time, service_stop_time, \
                 author_person, author_institution, author_role, author_specialty, language_code, mime_type, \
                 content_hash, content_size, repository_organisation_code, status, title, legal_authenticator, \
                 observations, sensitive_category, registered_at) VALUES {}",
                rows.join(", ")
            );
            let mut statement = sqlx::query(AssertSqlSafe(sql));
            for document in chunk {
                let m = &document.metadata;
                let codes = serde_json::to_string(&StoredCodes {
                    class: m.class_code.clone(),
                    type_code: m.type_code.clone(),
                    format: m.format_code.clone(),
                    facility_type: m.facility_type_code.clone(),
                    practice_setting: m.practice_setting_code.clone(),
                })
                .map_err(|e| Error::internal("encoding a document's codes", e))?;
                let observations = serde_json::to_string(&m.observations)
                    .map_err(|e| Error::internal("encoding observations", e))?;
                let event_codes = format!(
                    " {} ",
                    m.event_codes
                        .iter()
                        .map(Icd10Code::as_str)
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                statement = statement
                    .bind(document.id.as_str().to_owned())
                    .bind(m.unique_id.clone())
                    .bind(set.to_owned())
                    .bind(document.source_organisation.as_str().to_owned())
                    .bind(document.person_id.as_str().to_owned())
                    .bind(m.source_patient.system_uri())
                    .bind(m.source_patient.value().to_owned())
                    .bind(m.class_code.code.clone())
                    .bind(m.type_code.code.clone())
                    .bind(codes)
                    .bind(m.confidentiality.code())
                    .bind(m.sensitive_category.map(DataCategory::code))
                    .bind(event_codes)
                    .bind(time::to_micros(m.creation_time))
                    .bind(micros(m.service_start_time))
                    .bind(micros(m.service_stop_time))
                    .bind(m.author.person.clone())
                    .bind(m.author.institution.as_str().to_owned())
                    .bind(m.author.role.clone())
                    .bind(m.author.specialty.clone())
                    .bind(m.language_code.clone())
                    .bind(m.mime_type.clone())
                    .bind(m.hash.clone())
                    .bind(m.size)
                    .bind(
                        m.repository
                            .as_ref()
                            .map_or(String::new(), |r| r.as_str().to_owned()),
                    )
                    .bind(document.status.code())
                    .bind(m.title.clone())
                    .bind(m.legal_authenticator.clone())
                    .bind(observations)
                    .bind(m.category().map(DataCategory::code))
                    .bind(time::to_micros(document.registered_at));
            }
            statement.execute(&mut *connection).await.map_err(concurrent)?;
        }
        let kept: Vec<(&Document, &[u8])> = documents
            .iter()
            .zip(contents)
            .filter_map(|(document, content)| content.map(|c| (document, c)))
            .collect();
        for chunk in kept.chunks(ROWS) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|r| format!("(${}, ${})", 2 * r + 1, 2 * r + 2))
                .collect();
            let sql = format!(
                "INSERT INTO document_contents (document_id, content) VALUES {}",
                rows.join(", ")
            );
            let mut statement = sqlx::query(AssertSqlSafe(sql));
            for (document, content) in chunk {
                statement = statement
                    .bind(document.id.as_str().to_owned())
                    .bind(content.to_vec());
            }
            statement.execute(&mut *connection).await?;
        }
        Ok(())
    }

    pub async fn insert_association(
        &self,
        unit: &mut UnitOfWork,
        kind: AssociationKind,
        source: &DocumentId,
        target: &DocumentId,
        set: &str,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO document_associations (id, kind, source_document_id, target_document_id, submission_set_id, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(hie_core::id::Uuid::now_v7().to_string())
        .bind(kind.code())
        .bind(source.as_str())
        .bind(target.as_str())
        .bind(set)
        .bind(time::to_micros(at))
        .execute(&mut *unit.connection().await?)
        .await?;
        Ok(())
    }

    /// A page of the stored query over these persons' documents, newest first.
    pub async fn find(
        &self,
        persons: &[PersonId],
        query: &DocumentQuery,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Document>, Error> {
        let mut sql = format!(
            "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE person_id IN ({})",
            placeholders(1, persons.len())
        );
        let mut binds: Vec<Bind> = persons
            .iter()
            .map(|p| Bind::Text(p.as_str().to_owned()))
            .collect();
        let mut add = |sql: &mut String, clause: &str, values: Vec<Bind>| {
            let first = binds.len() + 1;
            let mut clause = clause.to_owned();
            // `?` marks each value's place, in order.
            for i in 0..values.len() {
                clause = clause.replacen('?', &format!("${}", first + i), 1);
            }
            sql.push_str(" AND ");
            sql.push_str(&clause);
            binds.extend(values);
        };
        let statuses: Vec<Bind> = if query.statuses.is_empty() {
            vec![Bind::Text(AvailabilityStatus::Approved.code().into())]
        } else {
            query
                .statuses
                .iter()
                .map(|s| Bind::Text(s.code().into()))
                .collect()
        };
        let list = |n: usize| vec!["?"; n].join(", ");
        add(
            &mut sql,
            &format!("status IN ({})", list(statuses.len())),
            statuses,
        );
        for (column, codes) in [
            ("class_code", &query.class_codes),
            ("type_code", &query.type_codes),
        ] {
            if !codes.is_empty() {
                add(
                    &mut sql,
                    &format!("{column} IN ({})", list(codes.len())),
                    codes.iter().map(|c| Bind::Text(c.clone())).collect(),
                );
            }
        }
        if !query.author_institutions.is_empty() {
            add(
                &mut sql,
                &format!(
                    "author_institution IN ({})",
                    list(query.author_institutions.len())
                ),
                query
                    .author_institutions
                    .iter()
                    .map(|o| Bind::Text(o.as_str().into()))
                    .collect(),
            );
        }
        if !query.confidentiality.is_empty() {
            add(
                &mut sql,
                &format!("confidentiality_code IN ({})", list(query.confidentiality.len())),
                query
                    .confidentiality
                    .iter()
                    .map(|c| Bind::Text(c.code().into()))
                    .collect(),
            );
        }
        if !query.event_codes.is_empty() {
            let any = vec!["event_codes LIKE ?"; query.event_codes.len()].join(" OR ");
            add(
                &mut sql,
                &format!("({any})"),
                query
                    .event_codes
                    .iter()
                    .map(|c| Bind::Text(format!("% {} %", c.as_str())))
                    .collect(),
            );
        }
        if let Some(from) = query.creation_from {
            add(
                &mut sql,
                "creation_time >= ?",
                vec![Bind::Int(time::to_micros(from))],
            );
        }
        if let Some(to) = query.creation_to {
            add(
                &mut sql,
                "creation_time < ?",
                vec![Bind::Int(time::to_micros(to))],
            );
        }
        // A service period overlaps [from, to) when it starts before `to` and ends at or after
        // `from` (a document without a stop is taken as a moment at its start).
        if let Some(from) = query.service_from {
            add(
                &mut sql,
                "COALESCE(service_stop_time, service_start_time) >= ?",
                vec![Bind::Int(time::to_micros(from))],
            );
        }
        if let Some(to) = query.service_to {
            add(
                &mut sql,
                "service_start_time < ?",
                vec![Bind::Int(time::to_micros(to))],
            );
        }
        if let Some((micros, id)) = after.and_then(page_key) {
            add(
                &mut sql,
                "(creation_time < ? OR (creation_time = ? AND id < ?))",
                vec![Bind::Int(micros), Bind::Int(micros), Bind::Text(id.to_owned())],
            );
        }
        sql.push_str(&format!(" ORDER BY creation_time DESC, id DESC LIMIT {limit}"));
        let mut statement = sqlx::query_as::<_, DocumentRow>(AssertSqlSafe(sql));
        for bind in binds {
            statement = match bind {
                Bind::Text(text) => statement.bind(text),
                Bind::Int(value) => statement.bind(value),
            };
        }
        documents(statement.fetch_all(self.database.pool()).await?)
    }

    /// The newest approved documents of these persons (for the summary).
    pub async fn recent_approved(&self, persons: &[PersonId], limit: usize) -> Result<Vec<Document>, Error> {
        let sql = format!(
            "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE person_id IN ({}) AND status = 'approved' \
             ORDER BY creation_time DESC, id DESC LIMIT {limit}",
            placeholders(1, persons.len())
        );
        let mut statement = sqlx::query_as::<_, DocumentRow>(AssertSqlSafe(sql));
        for person in persons {
            statement = statement.bind(person.as_str());
        }
        documents(statement.fetch_all(self.database.pool()).await?)
    }

    /// The content the exchange keeps for a document.
    pub async fn content(&self, id: &DocumentId) -> Result<Option<Vec<u8>>, Error> {
        let row: Option<(Vec<u8>,)> =
            sqlx::query_as("SELECT content FROM document_contents WHERE document_id = $1")
                .bind(id.as_str())
                .fetch_optional(self.database.pool())
                .await?;
        Ok(row.map(|(content,)| content))
    }
}

/// A value of a statement built at run time.
enum Bind {
    Text(String),
    Int(i64),
}
