//! Consent directives: one row per person; a batch of reads looks its persons up in one query.

use std::collections::BTreeMap;

use hie_core::db::Database;
use hie_core::{Error, time};
use sqlx::{AssertSqlSafe, FromRow};

use crate::domain::consent::{ConsentDirectives, DataCategory, Grant};

#[derive(FromRow)]
struct DirectivesRow {
    person_id: String,
    #[sqlx(flatten)]
    stored: StoredDirectives,
}

/// A person's directives as stored, from a row that selected [`directive_columns`] (all NULL when
/// the person never set any). Other registries join the directives to their own look-up of the
/// person, so that a guarded read costs one round trip to the database, not two.
#[derive(FromRow, Debug, Default)]
pub struct StoredDirectives {
    sharing: Option<i64>,
    allowed_organisations: Option<String>,
    denied_organisations: Option<String>,
    consented_categories: Option<String>,
    grants: Option<String>,
}

const DIRECTIVE_COLUMNS: [(&str, &str); 5] = [
    ("sharing", "BIGINT"),
    ("allowed_organisations", "TEXT"),
    ("denied_organisations", "TEXT"),
    ("consented_categories", "TEXT"),
    ("grants", "TEXT"),
];

/// The select-list items that [`StoredDirectives`] reads, from the `consent_directives` table
/// aliased `alias` (joined with `LEFT JOIN consent_directives <alias> ON <alias>.person_id = …`),
/// or all NULL when `alias` is `None`.
pub fn directive_columns(alias: Option<&str>) -> String {
    DIRECTIVE_COLUMNS
        .iter()
        .map(|(column, sql_type)| match alias {
            Some(alias) => format!("{alias}.{column} AS {column}"),
            None => format!("CAST(NULL AS {sql_type}) AS {column}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn split(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').filter(|part| !part.is_empty())
}

impl StoredDirectives {
    pub fn directives(&self) -> ConsentDirectives {
        fn text(column: &Option<String>) -> &str {
            column.as_deref().unwrap_or("")
        }
        ConsentDirectives {
            sharing: self.sharing.map(|s| s != 0),
            allowed_organisations: split(text(&self.allowed_organisations))
                .map(str::to_owned)
                .collect(),
            denied_organisations: split(text(&self.denied_organisations))
                .map(str::to_owned)
                .collect(),
            consented_categories: split(text(&self.consented_categories))
                .filter_map(DataCategory::from_code)
                .collect(),
            grants: text(&self.grants)
                .split(';')
                .filter_map(|grant| {
                    let mut parts = grant.split('|');
                    let organisation = parts.next().filter(|p| !p.is_empty()).map(str::to_owned);
                    let practitioner = parts.next().filter(|p| !p.is_empty()).map(str::to_owned);
                    let expires_at = time::from_micros(parts.next()?.parse().ok()?);
                    Some(Grant {
                        organisation,
                        practitioner,
                        expires_at,
                    })
                })
                .collect(),
        }
    }
}

/// Directives in their stored text encoding: codes joined by commas, grants as
/// `organisation|practitioner|expiry-microseconds` joined by semicolons.
struct StoredColumns {
    sharing: Option<i64>,
    allowed_organisations: String,
    denied_organisations: String,
    consented_categories: String,
    grants: String,
}

impl StoredColumns {
    fn of(directives: &ConsentDirectives) -> StoredColumns {
        let join = |items: Vec<&str>| items.join(",");
        let grants: Vec<String> = directives
            .grants
            .iter()
            .map(|g| {
                format!(
                    "{}|{}|{}",
                    g.organisation.as_deref().unwrap_or(""),
                    g.practitioner.as_deref().unwrap_or(""),
                    time::to_micros(g.expires_at)
                )
            })
            .collect();
        StoredColumns {
            sharing: directives.sharing.map(i64::from),
            allowed_organisations: join(
                directives
                    .allowed_organisations
                    .iter()
                    .map(String::as_str)
                    .collect(),
            ),
            denied_organisations: join(
                directives
                    .denied_organisations
                    .iter()
                    .map(String::as_str)
                    .collect(),
            ),
            consented_categories: join(directives.consented_categories.iter().map(|c| c.code()).collect()),
            grants: grants.join(";"),
        }
    }
}

/// The consent directives store.
#[derive(Clone, Debug)]
pub struct ConsentStore {
    database: Database,
}

impl ConsentStore {
    pub fn new(database: Database) -> ConsentStore {
        ConsentStore { database }
    }

    /// A person's directives (the empty directive when they never set any).
    pub async fn directives(&self, person_id: &str) -> Result<ConsentDirectives, Error> {
        let mut directives = self.directives_of(&[person_id]).await?;
        Ok(directives.pop().unwrap_or_default())
    }

    /// The directives of each person, in order, in one query.
    pub async fn directives_of(&self, persons: &[&str]) -> Result<Vec<ConsentDirectives>, Error> {
        if persons.is_empty() {
            return Ok(Vec::new());
        }
        let list = (1..=persons.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT c.person_id, {} FROM consent_directives c WHERE c.person_id IN ({list})",
            directive_columns(Some("c"))
        );
        let mut query = sqlx::query_as::<_, DirectivesRow>(AssertSqlSafe(sql));
        for person in persons {
            query = query.bind(person.to_string());
        }
        let found: BTreeMap<String, ConsentDirectives> = query
            .fetch_all(self.database.pool())
            .await?
            .iter()
            .map(|row| (row.person_id.clone(), row.stored.directives()))
            .collect();
        Ok(persons
            .iter()
            .map(|p| found.get(*p).cloned().unwrap_or_default())
            .collect())
    }

    /// A person's directives inside the caller's transaction; `None` when they never set any.
    pub async fn directives_in(
        &self,
        unit: &mut crate::UnitOfWork,
        person_id: &hie_core::id::PersonId,
    ) -> Result<Option<ConsentDirectives>, Error> {
        let sql = format!(
            "SELECT c.person_id, {} FROM consent_directives c WHERE c.person_id = $1",
            directive_columns(Some("c"))
        );
        let row: Option<DirectivesRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(person_id.as_str().to_owned())
            .fetch_optional(unit.connection().await?)
            .await?;
        Ok(row.map(|row| row.stored.directives()))
    }

    /// Directives as JSON, in the stored columns' own encoding, for keeping beside a merge.
    pub fn to_json(directives: &ConsentDirectives) -> String {
        let stored = StoredColumns::of(directives);
        serde_json::json!({
            "sharing": stored.sharing,
            "allowed_organisations": stored.allowed_organisations,
            "denied_organisations": stored.denied_organisations,
            "consented_categories": stored.consented_categories,
            "grants": stored.grants,
        })
        .to_string()
    }

    /// Directives from [`ConsentStore::to_json`].
    pub fn from_json(json: &str) -> Result<ConsentDirectives, Error> {
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|_| Error::Internal("stored directives do not parse".into()))?;
        let text = |key: &str| value[key].as_str().map(str::to_owned);
        Ok(StoredDirectives {
            sharing: value["sharing"].as_i64(),
            allowed_organisations: text("allowed_organisations"),
            denied_organisations: text("denied_organisations"),
            consented_categories: text("consented_categories"),
            grants: text("grants"),
        }
        .directives())
    }

    /// Every person who has directives of their own (anyone else has the defaults).
    pub async fn persons_with_directives(&self) -> Result<Vec<hie_core::id::PersonId>, Error> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT person_id FROM consent_directives")
            .fetch_all(self.database.pool())
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id,)| hie_core::id::PersonId::parse(&id).ok())
            .collect())
    }

    /// Replaces a person's directives inside the caller's transaction.
    pub async fn set_in(
        &self,
        unit: &mut crate::UnitOfWork,
        person_id: &hie_core::id::PersonId,
        directives: &ConsentDirectives,
        updated_by: &str,
    ) -> Result<(), Error> {
        let stored = StoredColumns::of(directives);
        sqlx::query(
            "INSERT INTO consent_directives (person_id, sharing, allowed_organisations, denied_organisations, \
             consented_categories, grants, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (person_id) DO UPDATE SET sharing = excluded.sharing, \
             allowed_organisations = excluded.allowed_organisations, denied_organisations = excluded.denied_organisations, \
             consented_categories = excluded.consented_categories, grants = excluded.grants, \
             updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        )
        .bind(person_id.as_str().to_owned())
        .bind(stored.sharing)
        .bind(stored.allowed_organisations)
        .bind(stored.denied_organisations)
        .bind(stored.consented_categories)
        .bind(stored.grants)
        .bind(time::to_micros(time::now()))
        .bind(updated_by.to_owned())
        .execute(unit.connection().await?)
        .await?;
        // Emitted here, the one place directives are written, so that no path that changes them
        // (a patient's choice, a merge, an unmerge, an unlink) can leave a cache of them stale.
        let organisation = unit.organisation().cloned();
        unit.emit(hie_core::outbox::OutboxEvent::new(
            hie_core::vocabulary::EventType::ConsentChanged,
            Some(person_id),
            organisation.as_ref(),
            &serde_json::json!({ "person_id": person_id.as_str() }),
        ));
        Ok(())
    }

    pub fn database(&self) -> &Database {
        &self.database
    }
}
