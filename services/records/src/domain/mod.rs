//! The archive's rules: what an entry is, what makes a resubmission a new version, and who may
//! see what (the service, through the kit's unit of work and read gate).

pub mod payload;
mod service;

use chrono::{DateTime, NaiveDate, Utc};
use hie_access::domain::consent::DataCategory;
use hie_core::domain::OrganisationCode;
use hie_core::id::PersonId;
use hie_core::{Error, time};
use hie_population::domain::PersonSelector;

pub use payload::{EntryPayload, EntryType};
pub use service::{EntryQuery, Item, RecordsService, read_items};

hie_core::id_type!(EntryId, "health record entry");

/// The most versions of an entry `GetEntry` answers.
pub const MAX_VERSIONS: usize = 100;

/// A submission, checked: who submits, the entry's key at its source, whose it is, when, and what.
#[derive(Debug, Clone)]
pub struct EntryDraft {
    pub source_organisation: OrganisationCode,
    pub source_entry_id: String,
    pub person: PersonSelector,
    pub recorded_on: NaiveDate,
    pub payload: EntryPayload,
}

impl EntryDraft {
    /// Checks a submission; `today` bounds the visit's date (no entry is recorded in the future).
    pub fn new(
        source_organisation: OrganisationCode,
        source_entry_id: &str,
        person: PersonSelector,
        recorded_on: NaiveDate,
        payload: EntryPayload,
        today: NaiveDate,
    ) -> Result<EntryDraft, Error> {
        let source_entry_id = source_entry_id.trim();
        if source_entry_id.is_empty() || source_entry_id.len() > 64 {
            return Err(Error::invalid(
                "source_entry_id",
                "expected 1 to 64 printable ASCII characters",
            ));
        }
        if !source_entry_id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::invalid(
                "source_entry_id",
                "contains a character that is not printable ASCII",
            ));
        }
        if recorded_on > today {
            return Err(Error::invalid(
                "recorded_on",
                format!("{recorded_on} is in the future"),
            ));
        }
        payload.check("payload", recorded_on)?;
        Ok(EntryDraft {
            source_organisation,
            source_entry_id: source_entry_id.to_owned(),
            person,
            recorded_on,
            payload,
        })
    }

    /// The hash that tells a changed resubmission from a retry: SHA-256 of the date and the
    /// payload as stored.
    pub fn content_hash(&self) -> Result<String, Error> {
        let stored = serde_json::to_string(&(self.recorded_on, &self.payload))
            .map_err(|e| Error::internal("encoding an entry", e))?;
        Ok(hie_core::digest::sha256_hex(stored.as_bytes()))
    }
}

/// One entry in one version, as kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: EntryId,
    pub person_id: PersonId,
    pub source_organisation: OrganisationCode,
    pub source_entry_id: String,
    pub recorded_on: NaiveDate,
    pub version: i64,
    pub content_hash: String,
    pub payload: EntryPayload,
    pub sensitive_category: Option<DataCategory>,
    pub submitted_at: DateTime<Utc>,
}

impl Entry {
    pub fn entry_type(&self) -> EntryType {
        self.payload.entry_type()
    }

    /// The instant of the visit, for ordering with other records (noon in China, as the archive
    /// records dates, not times).
    pub fn recorded_at(&self) -> DateTime<Utc> {
        time::noon_in_china(self.recorded_on)
    }
}
