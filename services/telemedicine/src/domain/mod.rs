//! The consult's rules and the catalogue's.

pub mod catalogue;
pub mod consults;

use chrono::{DateTime, Utc};
use hie_access::AccessGate;
use hie_core::db::Database;
use hie_core::domain::{Identifier, OrganisationCode};
use hie_core::id::PersonId;
use hie_directory::DirectoryService;
use hie_emr::EmrService;
use hie_population::PopulationService;

use crate::store::TelemedicineStore;

hie_core::id_type!(
    /// A consult's id.
    ConsultId,
    "consult",
    prefix "consult-"
);

/// A billable item of the telemedicine price list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceItem {
    pub code: String,
    pub name: String,
    pub price_fen: i64,
    pub reimbursable: bool,
    /// The share insurance pays, in thousandths.
    pub reimbursable_ratio_permille: i64,
    pub active_from: DateTime<Utc>,
    pub active_until: Option<DateTime<Utc>>,
}

impl ServiceItem {
    pub fn is_active_at(&self, at: DateTime<Utc>) -> bool {
        self.active_from <= at && self.active_until.is_none_or(|until| at < until)
    }
}

/// Where a consult stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsultStatus {
    Requested,
    Accepted,
    Declined,
    Completed,
    Cancelled,
}

impl ConsultStatus {
    pub fn code(self) -> &'static str {
        match self {
            ConsultStatus::Requested => "requested",
            ConsultStatus::Accepted => "accepted",
            ConsultStatus::Declined => "declined",
            ConsultStatus::Completed => "completed",
            ConsultStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(code: &str) -> Option<ConsultStatus> {
        [
            ConsultStatus::Requested,
            ConsultStatus::Accepted,
            ConsultStatus::Declined,
            ConsultStatus::Completed,
            ConsultStatus::Cancelled,
        ]
        .into_iter()
        .find(|s| s.code() == code)
    }
}

/// One step: who did what, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsultStep {
    pub step: ConsultStatus,
    pub organisation: String,
    pub user_id: String,
    pub at: DateTime<Utc>,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consult {
    pub id: ConsultId,
    pub person_id: PersonId,
    pub patient: Identifier,
    pub requesting: OrganisationCode,
    pub consulting: OrganisationCode,
    pub specialty: String,
    pub reason: String,
    pub service_item_code: String,
    pub price_fen: i64,
    pub attachments: Vec<String>,
    pub status: ConsultStatus,
    pub consultant: Option<String>,
    pub access_expires_at: Option<DateTime<Utc>>,
    pub report_unique_id: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub steps: Vec<ConsultStep>,
}

#[derive(Clone, Debug)]
pub struct TelemedicineService {
    pub(crate) store: TelemedicineStore,
    pub(crate) access: AccessGate,
    pub(crate) directory: DirectoryService,
    pub(crate) population: PopulationService,
    pub(crate) emr: EmrService,
}

impl TelemedicineService {
    pub fn new(
        database: Database,
        access: AccessGate,
        directory: DirectoryService,
        population: PopulationService,
        emr: EmrService,
    ) -> TelemedicineService {
        TelemedicineService {
            store: TelemedicineStore::new(database),
            access,
            directory,
            population,
            emr,
        }
    }

    /// The service reading documents and summaries through `emr` (the exchange replaces its EMR
    /// registry once hospital gateways are configured).
    pub fn with_emr(mut self, emr: EmrService) -> TelemedicineService {
        self.emr = emr;
        self
    }
}
