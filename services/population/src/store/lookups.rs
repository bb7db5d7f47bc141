//! SQL of the registry's look-ups: resolving identifiers in batches (with what the read gate
//! needs joined in) and searching by demographics.

use super::*;
use crate::domain::name_search::{NameSearch, name_search_keys};

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

impl PopulationStore {
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
        let mut conditions = vec!["r.person_id > $1".to_owned()];
        conditions.extend(search_conditions(criteria, &mut binds));
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

    /// Up to `limit` records whose name is found by `search`'s keys (or is the same name) and
    /// that meet the other criteria, as `(person, the record's name, the key that found it)`,
    /// the key empty for the same name: what a ranked search scores, without working out any
    /// name's keys again.
    pub async fn search_names(
        &self,
        criteria: &SearchCriteria,
        search: &NameSearch,
        limit: u32,
    ) -> Result<Vec<(PersonId, String, String)>, Error> {
        let others = SearchCriteria {
            name: None,
            ..criteria.clone()
        };
        let mut binds: Vec<String> = Vec::new();
        let mut conditions = search_conditions(&others, &mut binds);
        conditions.insert(0, "1 = 1".to_owned());
        let conditions = conditions.join(" AND ");
        let keys: Vec<String> = search
            .keys()
            .map(|k| {
                binds.push(k.to_owned());
                format!("${}", binds.len())
            })
            .collect();
        let mut sql = format!(
            "SELECT r.person_id, r.name, k.key FROM name_search_keys k \
             JOIN source_records r ON r.id = k.source_record_id \
             WHERE k.key IN ({}) AND {conditions}",
            keys.join(", ")
        );
        // The same name is found by its own column too (records registered before the name
        // keys were).
        if !search.is_initials_only() {
            binds.push(search.exact().to_owned());
            sql.push_str(&format!(
                " UNION ALL SELECT r.person_id, r.name, '' FROM source_records r \
                 WHERE r.name_key = ${} AND {conditions}",
                binds.len()
            ));
        }
        sql.push_str(&format!(" LIMIT {limit}"));
        let mut query = sqlx::query_as::<_, (String, String, String)>(AssertSqlSafe(sql));
        for value in binds {
            query = query.bind(value);
        }
        query
            .fetch_all(self.database.pool())
            .await?
            .into_iter()
            .map(|(id, name, key)| Ok((stored_id(PersonId::parse(&id))?, name, key)))
            .collect()
    }

    /// Replaces the keys a record's name is searched by.
    pub async fn set_name_keys(
        &self,
        unit: &mut UnitOfWork,
        record: &crate::domain::SourceRecordId,
        name: &str,
        replacing: bool,
    ) -> Result<(), Error> {
        if replacing {
            sqlx::query("DELETE FROM name_search_keys WHERE source_record_id = $1")
                .bind(record.as_str())
                .execute(unit.connection().await?)
                .await?;
        }
        let keys = name_search_keys(name);
        if keys.is_empty() {
            return Ok(());
        }
        let rows: Vec<String> = (0..keys.len()).map(|i| format!("(${}, $1)", i + 2)).collect();
        let sql = format!(
            "INSERT INTO name_search_keys (key, source_record_id) VALUES {}",
            rows.join(", ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(record.as_str());
        for key in keys {
            query = query.bind(key);
        }
        query.execute(unit.connection().await?).await?;
        Ok(())
    }
}

/// The SQL conditions on `source_records r` of a search's criteria, their values pushed onto
/// `binds` (so that `$n` is the n-th value).
fn search_conditions(criteria: &SearchCriteria, binds: &mut Vec<String>) -> Vec<String> {
    // Adds a bound value and returns its placeholder.
    let mut placeholder = |value: String| {
        binds.push(value);
        format!("${}", binds.len())
    };
    let mut conditions = Vec::new();
    match &criteria.name {
        Some(NameQuery::Exact(name)) => {
            conditions.push(format!("r.name_key = {}", placeholder(name.search_key())))
        }
        Some(NameQuery::Prefix(name)) => {
            let pattern = format!("{}%", escape_like(&name.search_key()));
            conditions.push(format!("r.name_key LIKE {} ESCAPE '\\'", placeholder(pattern)));
        }
        // A name searched by its sound is looked up by its keys (`search_names`).
        Some(NameQuery::Sounds(_)) => {}
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
    conditions
}

/// Escapes the LIKE wildcards so that a name containing `%` or `_` matches literally.
fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

#[derive(FromRow)]
struct LineageRow {
    id: String,
    /// The survivor's consent directives, on the survivor's row (the first) only.
    #[sqlx(flatten)]
    consent: StoredDirectives,
}

impl PopulationStore {
    /// The person `id` stands for now, then every person merged into them (directly or through
    /// another merge): the survivor first, with the survivor's consent directives (joined in, as
    /// the resolve query joins them, so that a registry's read costs no second round trip for
    /// the read gate). `None` when no such person exists. One statement: up the merges to the
    /// survivor, then down to everyone merged into it.
    pub async fn lineage(&self, id: &PersonId) -> Result<Option<(Vec<PersonId>, ConsentDirectives)>, Error> {
        let sql = format!(
            include_str!("queries/lineage.sql"),
            directives = directive_columns(Some("c"))
        );
        let rows: Vec<LineageRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(id.as_str())
            .bind(MAX_MERGE_DEPTH)
            .fetch_all(self.database.pool())
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let directives = first.consent.directives();
        let members = rows
            .iter()
            .map(|row| stored_id(PersonId::parse(&row.id)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some((members, directives)))
    }
}

/// How many merges deep a lineage is followed: far beyond any real chain, and a stop should a
/// cycle ever be written.
const MAX_MERGE_DEPTH: i64 = 64;
