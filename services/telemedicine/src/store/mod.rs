//! SQL of the catalogue and the consults, written once for both backends.

use hie_access::UnitOfWork;
use hie_core::db::Database;
use hie_core::domain::{Identifier, OrganisationCode};
use hie_core::id::PersonId;
use hie_core::{Error, time};

use crate::domain::{Consult, ConsultId, ConsultStatus, ConsultStep, ServiceItem};

#[derive(Clone, Debug)]
pub struct TelemedicineStore {
    database: Database,
}

type ItemRow = (String, String, i64, i16, i64, i64, Option<i64>);

const CONSULT_COLUMNS: &str = "id, person_id, patient_system, patient_value, requesting_organisation, \
     consulting_organisation, specialty, reason, service_item_code, price_fen, attachments, status, \
     consultant, access_expires_at, report_unique_id, requested_at";

fn unreadable() -> Error {
    Error::Internal("a stored consult is unreadable".into())
}

impl TelemedicineStore {
    pub fn new(database: Database) -> TelemedicineStore {
        TelemedicineStore { database }
    }

    pub async fn put_item(&self, unit: &mut UnitOfWork, item: &ServiceItem, user: &str) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO service_items (code, name, price_fen, reimbursable, reimbursable_ratio_permille, \
             active_from, active_until, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (code) DO UPDATE SET name = excluded.name, price_fen = excluded.price_fen, \
             reimbursable = excluded.reimbursable, reimbursable_ratio_permille = excluded.reimbursable_ratio_permille, \
             active_from = excluded.active_from, active_until = excluded.active_until, \
             updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        )
        .bind(item.code.clone())
        .bind(item.name.clone())
        .bind(item.price_fen)
        .bind(i16::from(item.reimbursable))
        .bind(item.reimbursable_ratio_permille)
        .bind(time::to_micros(item.active_from))
        .bind(item.active_until.map(time::to_micros))
        .bind(time::to_micros(time::now()))
        .bind(user.to_owned())
        .execute(unit.connection().await?)
        .await?;
        Ok(())
    }

    fn item_of((code, name, price_fen, reimbursable, ratio, from, until): ItemRow) -> ServiceItem {
        ServiceItem {
            code,
            name,
            price_fen,
            reimbursable: reimbursable != 0,
            reimbursable_ratio_permille: ratio,
            active_from: time::from_micros(from),
            active_until: until.map(time::from_micros),
        }
    }

    pub async fn items(&self) -> Result<Vec<ServiceItem>, Error> {
        let rows: Vec<ItemRow> = sqlx::query_as(
            "SELECT code, name, price_fen, reimbursable, reimbursable_ratio_permille, active_from, active_until \
             FROM service_items ORDER BY code",
        )
        .fetch_all(self.database.pool())
        .await?;
        Ok(rows.into_iter().map(Self::item_of).collect())
    }

    pub async fn item(&self, code: &str) -> Result<Option<ServiceItem>, Error> {
        let row: Option<ItemRow> = sqlx::query_as(
            "SELECT code, name, price_fen, reimbursable, reimbursable_ratio_permille, active_from, active_until \
             FROM service_items WHERE code = $1",
        )
        .bind(code.to_owned())
        .fetch_optional(self.database.pool())
        .await?;
        Ok(row.map(Self::item_of))
    }

    pub async fn insert_consult(&self, unit: &mut UnitOfWork, consult: &Consult) -> Result<(), Error> {
        let attachments = serde_json::to_string(&consult.attachments)
            .map_err(|e| Error::internal("encoding attachments", e))?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO consults ({CONSULT_COLUMNS}, updated_at) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16)"
        )))
        .bind(consult.id.as_str().to_owned())
        .bind(consult.person_id.as_str().to_owned())
        .bind(consult.patient.system_uri())
        .bind(consult.patient.value().to_owned())
        .bind(consult.requesting.as_str().to_owned())
        .bind(consult.consulting.as_str().to_owned())
        .bind(consult.specialty.clone())
        .bind(consult.reason.clone())
        .bind(consult.service_item_code.clone())
        .bind(consult.price_fen)
        .bind(attachments)
        .bind(consult.status.code())
        .bind(consult.consultant.clone())
        .bind(consult.access_expires_at.map(time::to_micros))
        .bind(consult.report_unique_id.clone())
        .bind(time::to_micros(consult.requested_at))
        .execute(unit.connection().await?)
        .await?;
        Ok(())
    }

    /// Writes the consult's status and what came with it, if it is still in status `from`;
    /// false when it is not (another step got there first).
    pub async fn update_consult(
        &self,
        unit: &mut UnitOfWork,
        consult: &Consult,
        from: ConsultStatus,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, Error> {
        let changed = sqlx::query(
            "UPDATE consults SET status = $2, consultant = $3, access_expires_at = $4, report_unique_id = $5, \
             updated_at = $6 WHERE id = $1 AND status = $7",
        )
        .bind(consult.id.as_str().to_owned())
        .bind(consult.status.code())
        .bind(consult.consultant.clone())
        .bind(consult.access_expires_at.map(time::to_micros))
        .bind(consult.report_unique_id.clone())
        .bind(time::to_micros(at))
        .bind(from.code())
        .execute(unit.connection().await?)
        .await?
        .rows_affected();
        Ok(changed == 1)
    }

    pub async fn insert_step(
        &self,
        unit: &mut UnitOfWork,
        consult: &ConsultId,
        number: i64,
        step: &ConsultStep,
    ) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO consult_steps (consult_id, step_number, step, organisation_code, user_id, at, note) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(consult.as_str().to_owned())
        .bind(number)
        .bind(step.step.code())
        .bind(step.organisation.clone())
        .bind(step.user_id.clone())
        .bind(time::to_micros(step.at))
        .bind(step.note.clone())
        .execute(unit.connection().await?)
        .await?;
        Ok(())
    }

    pub async fn consult(&self, id: &str) -> Result<Option<Consult>, Error> {
        let mut found = self.consults_where("id = $1", &[id], None).await?;
        Ok(found.pop())
    }

    /// An organisation's consults (requested or asked for), newest first, before the id `before`.
    pub async fn consults_of(
        &self,
        organisation: &OrganisationCode,
        status: Option<ConsultStatus>,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Consult>, Error> {
        let organisation = organisation.as_str();
        let before = before.unwrap_or("\u{10FFFF}");
        match status {
            Some(status) => {
                self.consults_where(
                    "(requesting_organisation = $1 OR consulting_organisation = $1) AND id < $2 AND status = $3",
                    &[organisation, before, status.code()],
                    Some(limit),
                )
                .await
            }
            None => {
                self.consults_where(
                    "(requesting_organisation = $1 OR consulting_organisation = $1) AND id < $2",
                    &[organisation, before],
                    Some(limit),
                )
                .await
            }
        }
    }

    async fn consults_where(
        &self,
        condition: &str,
        binds: &[&str],
        limit: Option<i64>,
    ) -> Result<Vec<Consult>, Error> {
        let limit = limit.map_or(String::new(), |l| format!(" LIMIT {l}"));
        let sql = format!("SELECT {CONSULT_COLUMNS} FROM consults WHERE {condition} ORDER BY id DESC{limit}");
        let mut query = sqlx::query_as::<_, FlatConsultRow>(sqlx::AssertSqlSafe(sql));
        for bind in binds {
            query = query.bind((*bind).to_owned());
        }
        let rows = query.fetch_all(self.database.pool()).await?;
        let mut consults = Vec::with_capacity(rows.len());
        for row in rows {
            let mut consult = consult_of(row)?;
            consult.steps = self.steps(&consult.id).await?;
            consults.push(consult);
        }
        Ok(consults)
    }

    async fn steps(&self, consult: &ConsultId) -> Result<Vec<ConsultStep>, Error> {
        let rows: Vec<(String, String, String, i64, String)> = sqlx::query_as(
            "SELECT step, organisation_code, user_id, at, note FROM consult_steps WHERE consult_id = $1 \
             ORDER BY step_number",
        )
        .bind(consult.as_str().to_owned())
        .fetch_all(self.database.pool())
        .await?;
        rows.into_iter()
            .map(|(step, organisation, user_id, at, note)| {
                Ok(ConsultStep {
                    step: ConsultStatus::parse(&step).ok_or_else(unreadable)?,
                    organisation,
                    user_id,
                    at: time::from_micros(at),
                    note,
                })
            })
            .collect()
    }
}

#[derive(sqlx::FromRow)]
struct FlatConsultRow {
    id: String,
    person_id: String,
    patient_system: String,
    patient_value: String,
    requesting_organisation: String,
    consulting_organisation: String,
    specialty: String,
    reason: String,
    service_item_code: String,
    price_fen: i64,
    attachments: String,
    status: String,
    consultant: Option<String>,
    access_expires_at: Option<i64>,
    report_unique_id: Option<String>,
    requested_at: i64,
}

fn consult_of(row: FlatConsultRow) -> Result<Consult, Error> {
    Ok(Consult {
        id: ConsultId::parse(&row.id).map_err(|_| unreadable())?,
        person_id: PersonId::parse(&row.person_id).map_err(|_| unreadable())?,
        patient: Identifier::parse(&row.patient_system, &row.patient_value).map_err(|_| unreadable())?,
        requesting: OrganisationCode::parse(&row.requesting_organisation).map_err(|_| unreadable())?,
        consulting: OrganisationCode::parse(&row.consulting_organisation).map_err(|_| unreadable())?,
        specialty: row.specialty,
        reason: row.reason,
        service_item_code: row.service_item_code,
        price_fen: row.price_fen,
        attachments: serde_json::from_str(&row.attachments).map_err(|_| unreadable())?,
        status: ConsultStatus::parse(&row.status).ok_or_else(unreadable)?,
        consultant: row.consultant,
        access_expires_at: row.access_expires_at.map(time::from_micros),
        report_unique_id: row.report_unique_id,
        requested_at: time::from_micros(row.requested_at),
        steps: Vec::new(),
    })
}
