//! Organisations and practitioners, and the rules for registering and changing them.

mod organisation;
mod practitioner;
mod service;

pub use organisation::{
    HospitalGrade, Organisation, OrganisationDraft, OrganisationFilter, OrganisationKind,
};
pub use practitioner::{Practitioner, PractitionerDraft, PractitionerId, PractitionerRole};
pub use service::DirectoryService;
