//! SQL of visits: one row per (organisation, visit number), updated as the visit moves on.

use super::*;

#[derive(FromRow)]
struct EncounterRow {
    id: String,
    person_id: String,
    organisation_code: String,
    visit_number: String,
    kind: String,
    department: String,
    attending_practitioner: Option<String>,
    diagnoses: String,
    started_at: i64,
    ended_at: Option<i64>,
    updated_at: i64,
}

const ENCOUNTER_COLUMNS: &str = "id, person_id, organisation_code, visit_number, kind, department, attending_practitioner, \
     diagnoses, started_at, ended_at, updated_at";

impl TryFrom<EncounterRow> for Encounter {
    type Error = Error;

    fn try_from(row: EncounterRow) -> Result<Encounter, Error> {
        let diagnoses: Vec<Icd10Code> =
            serde_json::from_str(&row.diagnoses).map_err(|_| corrupt("visit's diagnoses"))?;
        Ok(Encounter {
            id: EncounterId::parse(&row.id).map_err(|_| corrupt("visit id"))?,
            person_id: PersonId::parse(&row.person_id).map_err(|_| corrupt("visit's person"))?,
            draft: EncounterDraft {
                organisation: OrganisationCode::parse(&row.organisation_code)
                    .map_err(|_| corrupt("visit's organisation"))?,
                visit_number: row.visit_number,
                kind: EncounterKind::parse(&row.kind).ok_or_else(|| corrupt("visit's kind"))?,
                department: row.department,
                attending_practitioner: row.attending_practitioner.unwrap_or_default(),
                diagnoses,
                started_at: time::from_micros(row.started_at),
                ended_at: row.ended_at.map(time::from_micros),
            },
            updated_at: time::from_micros(row.updated_at),
        })
    }
}

/// The key a page of visits ends at: newest first by start, then id.
pub fn encounter_page_key(encounter: &Encounter) -> String {
    format!(
        "{}|{}",
        time::to_micros(encounter.draft.started_at),
        encounter.id.as_str()
    )
}

impl EmrStore {
    pub async fn encounter_by_visit(
        &self,
        unit: &mut UnitOfWork,
        organisation: &OrganisationCode,
        visit_number: &str,
    ) -> Result<Option<Encounter>, Error> {
        let sql = format!(
            "SELECT {ENCOUNTER_COLUMNS} FROM encounters WHERE organisation_code = $1 AND visit_number = $2"
        );
        let row: Option<EncounterRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(organisation.as_str())
            .bind(visit_number)
            .fetch_optional(&mut *unit.connection().await?)
            .await?;
        row.map(Encounter::try_from).transpose()
    }

    pub async fn write_encounter(
        &self,
        unit: &mut UnitOfWork,
        encounter: &Encounter,
        new: bool,
    ) -> Result<(), Error> {
        let draft = &encounter.draft;
        let diagnoses =
            serde_json::to_string(&draft.diagnoses).map_err(|e| Error::internal("encoding diagnoses", e))?;
        let sql = if new {
            "INSERT INTO encounters (id, person_id, organisation_code, visit_number, kind, department, \
             attending_practitioner, diagnoses, sensitive_category, started_at, ended_at, registered_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)"
        } else {
            "UPDATE encounters SET person_id = $2, organisation_code = $3, visit_number = $4, kind = $5, \
             department = $6, attending_practitioner = $7, diagnoses = $8, sensitive_category = $9, started_at = $10, \
             ended_at = $11, updated_at = $12 WHERE id = $1"
        };
        sqlx::query(sql)
            .bind(encounter.id.as_str())
            .bind(encounter.person_id.as_str())
            .bind(draft.organisation.as_str())
            .bind(&draft.visit_number)
            .bind(draft.kind.code())
            .bind(&draft.department)
            .bind(Some(draft.attending_practitioner.as_str()).filter(|p| !p.is_empty()))
            .bind(diagnoses)
            .bind(draft.reveals().map(DataCategory::code))
            .bind(time::to_micros(draft.started_at))
            .bind(micros(draft.ended_at))
            .bind(time::to_micros(encounter.updated_at))
            .execute(&mut *unit.connection().await?)
            .await
            .map_err(concurrent)?;
        Ok(())
    }

    /// A page of these persons' visits, newest first, after the page key `after`.
    pub async fn encounters(
        &self,
        persons: &[PersonId],
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Encounter>, Error> {
        let n = persons.len();
        let after = after.and_then(page_key);
        let mut sql = format!(
            "SELECT {ENCOUNTER_COLUMNS} FROM encounters WHERE person_id IN ({})",
            placeholders(1, n)
        );
        if after.is_some() {
            sql.push_str(&format!(
                " AND (started_at < ${a} OR (started_at = ${a} AND id < ${b}))",
                a = n + 1,
                b = n + 2
            ));
        }
        sql.push_str(&format!(" ORDER BY started_at DESC, id DESC LIMIT {limit}"));
        let mut statement = sqlx::query_as::<_, EncounterRow>(AssertSqlSafe(sql));
        for person in persons {
            statement = statement.bind(person.as_str());
        }
        if let Some((micros, id)) = after {
            statement = statement.bind(micros).bind(id.to_owned());
        }
        statement
            .fetch_all(self.database.pool())
            .await?
            .into_iter()
            .map(Encounter::try_from)
            .collect()
    }
}
