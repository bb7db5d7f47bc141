//! Consent directives: one row per person, read through a batcher on the hot path.

use std::collections::BTreeMap;
use std::sync::Arc;

use hie_core::batch::Batcher;
use hie_core::db::Database;
use hie_core::{Error, time};
use sqlx::{AnyConnection, AssertSqlSafe, FromRow};

use crate::domain::consent::{ConsentDirectives, DataCategory, Grant};

#[derive(FromRow)]
struct DirectivesRow {
    person_id: String,
    sharing: Option<i64>,
    allowed_organisations: String,
    denied_organisations: String,
    consented_categories: String,
    grants: String,
}

fn split(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').filter(|part| !part.is_empty())
}

impl DirectivesRow {
    fn directives(&self) -> ConsentDirectives {
        ConsentDirectives {
            sharing: self.sharing.map(|s| s != 0),
            allowed_organisations: split(&self.allowed_organisations).map(str::to_owned).collect(),
            denied_organisations: split(&self.denied_organisations).map(str::to_owned).collect(),
            consented_categories: split(&self.consented_categories)
                .filter_map(DataCategory::from_code)
                .collect(),
            grants: self
                .grants
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

/// The consent directives store.
#[derive(Clone, Debug)]
pub struct ConsentStore {
    database: Database,
    reader: Batcher<String, ConsentDirectives>,
}

impl ConsentStore {
    pub fn new(database: Database) -> ConsentStore {
        let for_reader = database.clone();
        let reader = Batcher::new(
            2,
            64,
            Arc::new(move |persons: Vec<String>| {
                let database = for_reader.clone();
                Box::pin(async move { directives_of(&database, &persons).await })
            }),
        );
        ConsentStore { database, reader }
    }

    /// A person's directives (the empty directive when they never set any).
    pub async fn directives(&self, person_id: &str) -> Result<ConsentDirectives, Error> {
        self.reader.submit(person_id.to_owned()).await
    }

    /// Replaces a person's directives inside the caller's transaction.
    pub async fn set_in(
        &self,
        conn: &mut AnyConnection,
        person_id: &str,
        directives: &ConsentDirectives,
        updated_by: &str,
    ) -> Result<(), Error> {
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
        sqlx::query(
            "INSERT INTO consent_directives (person_id, sharing, allowed_organisations, denied_organisations, \
             consented_categories, grants, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (person_id) DO UPDATE SET sharing = excluded.sharing, \
             allowed_organisations = excluded.allowed_organisations, denied_organisations = excluded.denied_organisations, \
             consented_categories = excluded.consented_categories, grants = excluded.grants, \
             updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        )
        .bind(person_id.to_owned())
        .bind(directives.sharing.map(i64::from))
        .bind(join(directives.allowed_organisations.iter().map(String::as_str).collect()))
        .bind(join(directives.denied_organisations.iter().map(String::as_str).collect()))
        .bind(join(directives.consented_categories.iter().map(|c| c.code()).collect()))
        .bind(grants.join(";"))
        .bind(time::to_micros(time::now()))
        .bind(updated_by.to_owned())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    pub fn database(&self) -> &Database {
        &self.database
    }
}

async fn directives_of(database: &Database, persons: &[String]) -> Result<Vec<ConsentDirectives>, Error> {
    let list = (1..=persons.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("SELECT * FROM consent_directives WHERE person_id IN ({list})");
    let mut query = sqlx::query_as::<_, DirectivesRow>(AssertSqlSafe(sql));
    for person in persons {
        query = query.bind(person.clone());
    }
    let found: BTreeMap<String, ConsentDirectives> = query
        .fetch_all(database.pool())
        .await?
        .iter()
        .map(|row| (row.person_id.clone(), row.directives()))
        .collect();
    Ok(persons
        .iter()
        .map(|p| found.get(p).cloned().unwrap_or_default())
        .collect())
}
