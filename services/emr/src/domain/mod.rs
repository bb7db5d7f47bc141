//! The EMR registry's rules: a document's metadata (XDS.b DocumentEntry) and what makes it valid,
//! submission sets and their associations, visits, and the patient summary.

mod documents;
pub mod encounters;
pub mod gateway;
mod service;
mod summary;

use chrono::{DateTime, Utc};
use hie_access::domain::consent::DataCategory;
use hie_core::Error;
use hie_core::domain::{Icd10Code, Identifier, OrganisationCode};
use hie_core::id::PersonId;
use hie_records::domain::payload::text;
use serde::{Deserialize, Serialize};

pub use documents::{DocumentQuery, Registered, Retrieved};
pub use encounters::{EncounterDraft, EncounterKind, Whose};
pub use gateway::HospitalGateways;
pub use service::EmrService;
pub use summary::{PatientSummary, Timed};

hie_core::id_type!(DocumentId, "document entry");
hie_core::id_type!(EncounterId, "encounter");

/// A code of a coding system.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Code {
    pub scheme: String,
    pub code: String,
    pub display: String,
}

impl Code {
    pub fn checked(field: &str, scheme: &str, code: &str, display: &str) -> Result<Code, Error> {
        Ok(Code {
            scheme: text(&format!("{field}.scheme"), scheme, 64, true)?,
            code: text(&format!("{field}.code"), code, 64, true)?,
            display: text(&format!("{field}.display"), display, 200, false)?,
        })
    }
}

/// HL7 confidentiality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confidentiality {
    Normal,
    Restricted,
    VeryRestricted,
}

impl Confidentiality {
    pub fn parse(code: &str) -> Option<Confidentiality> {
        match code.trim() {
            "N" => Some(Confidentiality::Normal),
            "R" => Some(Confidentiality::Restricted),
            "V" => Some(Confidentiality::VeryRestricted),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Confidentiality::Normal => "N",
            Confidentiality::Restricted => "R",
            Confidentiality::VeryRestricted => "V",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub person: String,
    pub institution: OrganisationCode,
    pub role: String,
    pub specialty: String,
}

/// A result a document reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub code: String,
    pub name: String,
    pub value: f64,
    pub unit: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvailabilityStatus {
    Approved,
    Deprecated,
}

impl AvailabilityStatus {
    pub fn code(self) -> &'static str {
        match self {
            AvailabilityStatus::Approved => "approved",
            AvailabilityStatus::Deprecated => "deprecated",
        }
    }

    pub fn parse(code: &str) -> Option<AvailabilityStatus> {
        match code {
            "approved" => Some(AvailabilityStatus::Approved),
            "deprecated" => Some(AvailabilityStatus::Deprecated),
            _ => None,
        }
    }
}

/// The metadata of a document as its source states it (before the registry gives it an id and
/// a person).
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentMetadata {
    pub unique_id: String,
    pub source_patient: Identifier,
    pub class_code: Code,
    pub type_code: Code,
    pub format_code: Code,
    pub confidentiality: Confidentiality,
    pub sensitive_category: Option<DataCategory>,
    pub event_codes: Vec<Icd10Code>,
    pub facility_type_code: Code,
    pub practice_setting_code: Code,
    pub creation_time: DateTime<Utc>,
    pub service_start_time: Option<DateTime<Utc>>,
    pub service_stop_time: Option<DateTime<Utc>>,
    pub author: Author,
    pub language_code: String,
    pub mime_type: String,
    /// SHA-256, lower-case hex.
    pub hash: String,
    pub size: i64,
    /// `None` when the exchange keeps the content.
    pub repository: Option<OrganisationCode>,
    pub title: String,
    pub legal_authenticator: String,
    pub observations: Vec<Observation>,
}

impl DocumentMetadata {
    /// Checks what the types alone do not; `field` is the request path of the entry.
    pub fn check(&self, field: &str) -> Result<(), Error> {
        let at = |name: &str| format!("{field}.{name}");
        let id = &self.unique_id;
        if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::invalid(
                at("unique_id"),
                "expected 1 to 128 printable ASCII characters",
            ));
        }
        if let (Some(start), Some(stop)) = (self.service_start_time, self.service_stop_time)
            && stop < start
        {
            return Err(Error::invalid(
                at("service_stop_time"),
                format!("{stop} is before the service start {start}"),
            ));
        }
        if self.hash.len() != 64 || !self.hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(Error::invalid(
                at("hash"),
                "expected the SHA-256 as 64 lower-case hex digits",
            ));
        }
        if self.size < 0 {
            return Err(Error::invalid(at("size"), "must not be negative"));
        }
        if self.event_codes.len() > 20 {
            return Err(Error::invalid(at("event_codes"), "at most 20 codes"));
        }
        if self.observations.len() > 200 {
            return Err(Error::invalid(at("observations"), "at most 200 observations"));
        }
        if self.confidentiality != Confidentiality::Normal && self.category().is_none() {
            return Err(Error::invalid(
                at("sensitive_category"),
                format!(
                    "confidentiality {} needs the sensitive category the document reveals (mental_health, hiv_sti, \
                     reproductive_health or substance_use), or an event code that reveals one",
                    self.confidentiality.code()
                ),
            ));
        }
        Ok(())
    }

    /// The sensitive category the document reveals: named, or revealed by an event code.
    pub fn category(&self) -> Option<DataCategory> {
        self.sensitive_category
            .or_else(|| self.event_codes.iter().find_map(DataCategory::revealed_by))
    }
}

/// A registered document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub id: DocumentId,
    pub person_id: PersonId,
    /// The organisation that registered it (its certificate's, over mutual TLS).
    pub source_organisation: OrganisationCode,
    pub metadata: DocumentMetadata,
    pub status: AvailabilityStatus,
    pub registered_at: DateTime<Utc>,
}

impl Document {
    /// Who keeps the document, for the read gate: the organisation that registered it, which
    /// its certificate proved (the author's institution is only what the metadata claims).
    pub fn kept_by(&self) -> &OrganisationCode {
        &self.source_organisation
    }
}

/// A document of a submission set, with its content when the exchange is to keep it.
#[derive(Debug, Clone)]
pub struct DocumentSubmission {
    pub metadata: DocumentMetadata,
    pub content: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssociationKind {
    Replace,
    Append,
    Transform,
}

impl AssociationKind {
    pub fn code(self) -> &'static str {
        match self {
            AssociationKind::Replace => "RPLC",
            AssociationKind::Append => "APND",
            AssociationKind::Transform => "XFRM",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Association {
    pub kind: AssociationKind,
    pub source_unique_id: String,
    pub target_unique_id: String,
}

/// A submission set: all of it is registered, or none.
#[derive(Debug, Clone)]
pub struct SubmissionSet {
    pub unique_id: String,
    pub source_organisation: OrganisationCode,
    pub documents: Vec<DocumentSubmission>,
    pub associations: Vec<Association>,
}

/// The most documents a submission set holds.
pub const MAX_DOCUMENTS_PER_SET: usize = 100;
