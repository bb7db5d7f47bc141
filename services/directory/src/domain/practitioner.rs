use chrono::{DateTime, Utc};
use hie_core::domain::{BoundedText, OrganisationCode};

use super::organisation::text_codes;

/// What a practitioner does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PractitionerRole {
    Physician,
    Nurse,
    Pharmacist,
    MedicalTechnician,
    VillageDoctor,
    PublicHealthOfficer,
    RegistrationClerk,
    Administrator,
}

text_codes!(PractitionerRole {
    Physician => "physician",
    Nurse => "nurse",
    Pharmacist => "pharmacist",
    MedicalTechnician => "medical_technician",
    VillageDoctor => "village_doctor",
    PublicHealthOfficer => "public_health_officer",
    RegistrationClerk => "registration_clerk",
    Administrator => "administrator",
});

hie_core::id_type!(
    /// The exchange's id of a practitioner: `pr-` and a UUID (version 7, so ids sort by creation).
    PractitionerId,
    "practitioner",
    prefix "pr-"
);

/// A practitioner's content: everything but the id and the timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PractitionerDraft {
    pub name: BoundedText,
    pub organisation_code: OrganisationCode,
    pub role: PractitionerRole,
    pub specialty: BoundedText,
    pub active: bool,
}

impl PractitionerDraft {
    pub const MAX_NAME_CHARS: usize = 50;
    pub const MAX_SPECIALTY_CHARS: usize = 100;
}

/// A practitioner as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Practitioner {
    pub id: PractitionerId,
    pub draft: PractitionerDraft,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_id_parses_and_a_foreign_one_does_not() {
        let id = PractitionerId::generate();
        assert_eq!(PractitionerId::parse(id.as_str()).unwrap(), id);
        assert!(PractitionerId::parse("12345").is_err());
        assert!(PractitionerId::parse("pr-nope").is_err());
    }
}
