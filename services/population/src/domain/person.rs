use chrono::{DateTime, Utc};
use hie_access::domain::consent::DataCategory;
use hie_core::domain::{Identifier, OrganisationCode};

use super::Demographics;

pub use hie_core::id::PersonId;

hie_core::id_type!(
    /// The exchange's id of a source record.
    SourceRecordId,
    "source record"
);

/// A person as the registry knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id: PersonId,
    /// The golden record, assembled from the linked source records (see [`super::golden`]).
    pub demographics: Demographics,
    /// Every identifier of every linked record, once each, sorted by system and value.
    pub identifiers: Vec<Identifier>,
    /// Where each field of the demographics came from (see [`super::golden`]); filled by
    /// `PopulationService::person`, empty elsewhere.
    pub demographics_sources: Vec<super::golden::FieldSource>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One organisation's record of a patient, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    pub id: SourceRecordId,
    pub organisation: OrganisationCode,
    pub local_patient_number: String,
    pub person_id: PersonId,
    pub demographics: Demographics,
    /// Every identifier the record asserts, its local patient number included.
    pub identifiers: Vec<Identifier>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An identifier of a person, with the record that asserts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrossReference {
    pub identifier: Identifier,
    pub organisation: OrganisationCode,
    pub source_record_id: SourceRecordId,
    /// The sensitive category the keeping organisation's records reveal, if any (see
    /// [`super::visibility`]).
    pub sensitive_category: Option<DataCategory>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back_and_sort_by_creation() {
        let first = PersonId::generate();
        let second = PersonId::generate();
        assert_eq!(PersonId::parse(first.as_str()).unwrap(), first);
        assert!(first < second);
        assert!(PersonId::parse("not-a-uuid").is_err());
    }
}
