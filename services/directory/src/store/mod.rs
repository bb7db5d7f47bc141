//! SQL for organisations and practitioners; written once for SQLite and PostgreSQL.

use hie_access::UnitOfWork;
use hie_access::domain::consent::DataCategory;
use hie_core::context::{Entitlements, Purpose, Role};
use hie_core::db::Database;
use hie_core::domain::{BoundedText, DivisionCode, OrganisationCode};
use hie_core::{Error, time};
use sqlx::FromRow;

use crate::domain::{
    HospitalGrade, Organisation, OrganisationDraft, OrganisationFilter, OrganisationKind, Practitioner,
    PractitionerDraft, PractitionerId, PractitionerRole,
};

#[derive(Clone, Debug)]
pub struct DirectoryStore {
    database: Database,
}

#[derive(FromRow)]
struct OrganisationRow {
    code: String,
    name: String,
    kind: String,
    hospital_grade: Option<String>,
    division_code: String,
    active: i64,
    created_at: i64,
    updated_at: i64,
    sensitive_category: Option<String>,
    assertable_roles: Option<String>,
    assertable_purposes: Option<String>,
}

#[derive(FromRow)]
struct PractitionerRow {
    id: String,
    name: String,
    organisation_code: String,
    role: String,
    specialty: String,
    active: i64,
    created_at: i64,
    updated_at: i64,
}

const ORGANISATION_COLUMNS: &str = "code, name, kind, hospital_grade, division_code, active, created_at, updated_at, sensitive_category, \
     assertable_roles, assertable_purposes";
const PRACTITIONER_COLUMNS: &str =
    "id, name, organisation_code, role, specialty, active, created_at, updated_at";

impl DirectoryStore {
    pub fn database(&self) -> &Database {
        &self.database
    }

    pub fn new(database: Database) -> DirectoryStore {
        DirectoryStore { database }
    }

    pub async fn insert_organisation(
        &self,
        unit: &mut UnitOfWork,
        organisation: &Organisation,
    ) -> Result<(), Error> {
        let d = &organisation.draft;
        let result = sqlx::query(
            "INSERT INTO organisations (code, name, kind, hospital_grade, division_code, active, created_at, updated_at, \
             sensitive_category, assertable_roles, assertable_purposes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(d.code.as_str())
        .bind(d.name.as_str())
        .bind(d.kind.code())
        .bind(d.hospital_grade.map(HospitalGrade::code))
        .bind(d.division_code.as_str())
        .bind(i64::from(d.active))
        .bind(time::to_micros(organisation.created_at))
        .bind(time::to_micros(organisation.updated_at))
        .bind(d.sensitive_category.map(DataCategory::code))
        .bind(d.entitlements.role_codes(","))
        .bind(d.entitlements.purpose_codes(","))
        .execute(unit.connection().await?)
        .await;
        match result.map_err(Error::from) {
            Err(Error::AlreadyExists(_)) => Err(Error::AlreadyExists(format!(
                "organisation {} is already registered",
                d.code
            ))),
            other => other.map(drop),
        }
    }

    pub async fn update_organisation(
        &self,
        unit: &mut UnitOfWork,
        organisation: &Organisation,
    ) -> Result<(), Error> {
        let d = &organisation.draft;
        let result = sqlx::query(
            "UPDATE organisations SET name = $2, kind = $3, hospital_grade = $4, division_code = $5, \
             active = $6, updated_at = $7, sensitive_category = $8, assertable_roles = $9, \
             assertable_purposes = $10 WHERE code = $1",
        )
        .bind(d.code.as_str())
        .bind(d.name.as_str())
        .bind(d.kind.code())
        .bind(d.hospital_grade.map(HospitalGrade::code))
        .bind(d.division_code.as_str())
        .bind(i64::from(d.active))
        .bind(time::to_micros(organisation.updated_at))
        .bind(d.sensitive_category.map(DataCategory::code))
        .bind(d.entitlements.role_codes(","))
        .bind(d.entitlements.purpose_codes(","))
        .execute(unit.connection().await?)
        .await?;
        if result.rows_affected() == 0 {
            return Err(Error::NotFound(format!(
                "organisation {} is not registered",
                d.code
            )));
        }
        Ok(())
    }

    pub async fn organisation(&self, code: &OrganisationCode) -> Result<Option<Organisation>, Error> {
        let sql = format!("SELECT {ORGANISATION_COLUMNS} FROM organisations WHERE code = $1");
        let row: Option<OrganisationRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(code.as_str())
            .fetch_optional(self.database.pool())
            .await?;
        row.map(Organisation::try_from).transpose()
    }

    /// Up to `limit` organisations after the code `after`, in code order.
    pub async fn organisations(
        &self,
        filter: &OrganisationFilter,
        after: &str,
        limit: u32,
    ) -> Result<Vec<Organisation>, Error> {
        let sql = format!(
            "SELECT {ORGANISATION_COLUMNS} FROM organisations \
             WHERE ($1 = '' OR kind = $1) AND division_code LIKE $2 AND (active = 1 OR $3 = 1) AND code > $4 \
             ORDER BY code LIMIT $5"
        );
        let division_prefix = filter.division.as_ref().map_or("", DivisionCode::region_prefix);
        let rows: Vec<OrganisationRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(filter.kind.map_or("", OrganisationKind::code))
            .bind(format!("{division_prefix}%"))
            .bind(i64::from(filter.include_inactive))
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(self.database.pool())
            .await?;
        rows.into_iter().map(Organisation::try_from).collect()
    }

    /// Inserts the practitioner unless `request_id` was used before; returns what is stored under
    /// `request_id` either way.
    pub async fn insert_practitioner(
        &self,
        unit: &mut UnitOfWork,
        request_id: &str,
        practitioner: &Practitioner,
    ) -> Result<Practitioner, Error> {
        let d = &practitioner.draft;
        sqlx::query(
            "INSERT INTO practitioners (id, request_id, name, organisation_code, role, specialty, active, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (request_id) DO NOTHING",
        )
        .bind(practitioner.id.as_str())
        .bind(request_id)
        .bind(d.name.as_str())
        .bind(d.organisation_code.as_str())
        .bind(d.role.code())
        .bind(d.specialty.as_str())
        .bind(i64::from(d.active))
        .bind(time::to_micros(practitioner.created_at))
        .bind(time::to_micros(practitioner.updated_at))
        .execute(unit.connection().await?)
        .await?;
        let row: PractitionerRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PRACTITIONER_COLUMNS} FROM practitioners WHERE request_id = $1"
        )))
        .bind(request_id)
        .fetch_one(unit.connection().await?)
        .await?;
        Practitioner::try_from(row)
    }

    pub async fn update_practitioner(
        &self,
        unit: &mut UnitOfWork,
        practitioner: &Practitioner,
    ) -> Result<(), Error> {
        let d = &practitioner.draft;
        let result = sqlx::query(
            "UPDATE practitioners SET name = $2, organisation_code = $3, role = $4, specialty = $5, active = $6, \
             updated_at = $7 WHERE id = $1",
        )
        .bind(practitioner.id.as_str())
        .bind(d.name.as_str())
        .bind(d.organisation_code.as_str())
        .bind(d.role.code())
        .bind(d.specialty.as_str())
        .bind(i64::from(d.active))
        .bind(time::to_micros(practitioner.updated_at))
        .execute(unit.connection().await?)
        .await?;
        if result.rows_affected() == 0 {
            return Err(Error::NotFound(format!(
                "practitioner {} is not registered",
                practitioner.id.as_str()
            )));
        }
        Ok(())
    }

    pub async fn practitioner(&self, id: &PractitionerId) -> Result<Option<Practitioner>, Error> {
        let row: Option<PractitionerRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PRACTITIONER_COLUMNS} FROM practitioners WHERE id = $1"
        )))
        .bind(id.as_str())
        .fetch_optional(self.database.pool())
        .await?;
        row.map(Practitioner::try_from).transpose()
    }

    pub async fn practitioners(
        &self,
        organisation: Option<&OrganisationCode>,
        after: &str,
        limit: u32,
    ) -> Result<Vec<Practitioner>, Error> {
        let rows: Vec<PractitionerRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PRACTITIONER_COLUMNS} FROM practitioners WHERE ($1 = '' OR organisation_code = $1) AND id > $2 ORDER BY id LIMIT $3"
        )))
        .bind(organisation.map_or("", OrganisationCode::as_str))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.database.pool())
        .await?;
        rows.into_iter().map(Practitioner::try_from).collect()
    }
}

/// What a stored organisation may assert: its stored lists, or its kind's defaults for a row
/// written before the directory kept them. A code that no longer parses is corruption.
fn stored_entitlements(
    kind: OrganisationKind,
    roles: Option<&str>,
    purposes: Option<&str>,
) -> Option<Entitlements> {
    let defaults = kind.entitlement_ceiling();
    fn parsed<T>(stored: Option<&str>, default: Vec<T>, parse: fn(&str) -> Option<T>) -> Option<Vec<T>> {
        match stored {
            None => Some(default),
            Some(codes) => codes.split(',').filter(|c| !c.is_empty()).map(parse).collect(),
        }
    }
    let roles = parsed(roles, defaults.roles(), Role::from_code)?;
    let purposes = parsed(purposes, defaults.purposes(), Purpose::from_code)?;
    // A row widened behind the exchange's back gets no more than its kind allows.
    let entitlements = Entitlements::new(&roles, &purposes);
    entitlements.within(&defaults).then_some(entitlements)
}

/// A stored value that no longer parses means the table was changed behind the exchange's back.
fn corrupt(what: &str, key: &str) -> Error {
    Error::Internal(format!("stored {what} {key} does not parse").into())
}

impl TryFrom<OrganisationRow> for Organisation {
    type Error = Error;

    fn try_from(row: OrganisationRow) -> Result<Organisation, Error> {
        let bad = || corrupt("organisation", &row.code);
        let grade = match &row.hospital_grade {
            Some(code) => Some(HospitalGrade::from_code(code).ok_or_else(bad)?),
            None => None,
        };
        let kind = OrganisationKind::from_code(&row.kind).ok_or_else(bad)?;
        let draft = OrganisationDraft {
            code: OrganisationCode::parse(&row.code).map_err(|_| bad())?,
            name: BoundedText::parse(&row.name, usize::MAX).map_err(|_| bad())?,
            kind,
            hospital_grade: grade,
            division_code: DivisionCode::parse(&row.division_code).map_err(|_| bad())?,
            active: row.active != 0,
            sensitive_category: match &row.sensitive_category {
                Some(code) => Some(DataCategory::sensitive_from_code(code).ok_or_else(bad)?),
                None => None,
            },
            entitlements: stored_entitlements(
                kind,
                row.assertable_roles.as_deref(),
                row.assertable_purposes.as_deref(),
            )
            .ok_or_else(bad)?,
        };
        Ok(Organisation {
            draft,
            created_at: time::from_micros(row.created_at),
            updated_at: time::from_micros(row.updated_at),
        })
    }
}

impl TryFrom<PractitionerRow> for Practitioner {
    type Error = Error;

    fn try_from(row: PractitionerRow) -> Result<Practitioner, Error> {
        let bad = || corrupt("practitioner", &row.id);
        let draft = PractitionerDraft {
            name: BoundedText::parse(&row.name, usize::MAX).map_err(|_| bad())?,
            organisation_code: OrganisationCode::parse(&row.organisation_code).map_err(|_| bad())?,
            role: PractitionerRole::from_code(&row.role).ok_or_else(bad)?,
            specialty: BoundedText::parse(&row.specialty, usize::MAX).map_err(|_| bad())?,
            active: row.active != 0,
        };
        Ok(Practitioner {
            id: PractitionerId::parse(&row.id).map_err(|_| bad())?,
            draft,
            created_at: time::from_micros(row.created_at),
            updated_at: time::from_micros(row.updated_at),
        })
    }
}

/// Whether a certificate fingerprint is registered, for which organisation, and whether revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRegistration {
    pub organisation: OrganisationCode,
    pub revoked: bool,
}

impl DirectoryStore {
    pub async fn insert_certificate(
        &self,
        unit: &mut UnitOfWork,
        fingerprint: &str,
        organisation: &OrganisationCode,
    ) -> Result<(), Error> {
        let result = sqlx::query(
            "INSERT INTO organisation_certificates (fingerprint, organisation_code, registered_at) VALUES ($1, $2, $3)",
        )
        .bind(fingerprint)
        .bind(organisation.as_str())
        .bind(time::to_micros(time::now()))
        .execute(unit.connection().await?)
        .await;
        match result.map_err(Error::from) {
            Err(Error::AlreadyExists(_)) => Err(Error::AlreadyExists(format!(
                "certificate {fingerprint} is already registered"
            ))),
            other => other.map(drop),
        }
    }

    /// Marks a certificate revoked; returns false when no such certificate is registered.
    pub async fn revoke_certificate(&self, unit: &mut UnitOfWork, fingerprint: &str) -> Result<bool, Error> {
        let result = sqlx::query(
            "UPDATE organisation_certificates SET revoked_at = $2 WHERE fingerprint = $1 AND revoked_at IS NULL",
        )
        .bind(fingerprint)
        .bind(time::to_micros(time::now()))
        .execute(unit.connection().await?)
        .await?;
        Ok(result.rows_affected() > 0)
    }

    pub async fn certificate(&self, fingerprint: &str) -> Result<Option<CertificateRegistration>, Error> {
        let row: Option<(String, Option<i64>)> = sqlx::query_as(
            "SELECT organisation_code, revoked_at FROM organisation_certificates WHERE fingerprint = $1",
        )
        .bind(fingerprint)
        .fetch_optional(self.database.pool())
        .await?;
        row.map(|(code, revoked_at)| {
            Ok(CertificateRegistration {
                organisation: OrganisationCode::parse(&code)
                    .map_err(|_| corrupt("certificate", fingerprint))?,
                revoked: revoked_at.is_some(),
            })
        })
        .transpose()
    }
}
