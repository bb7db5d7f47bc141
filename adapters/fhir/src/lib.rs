//! The hospital adapter for FHIR R4 (`hie adapter fhir`): a FHIR endpoint the hospital's systems
//! push resources and transaction bundles to (Patient, Encounter, Observation, Condition,
//! AllergyIntolerance, MedicationRequest, DocumentReference). Each resource is checked, answered
//! with an OperationOutcome naming the element when it is invalid, journaled before the answer,
//! and forwarded to the exchange through the same relay as the HL7 v2 adapter.
//!
//! It must never answer success for a resource it has not journaled, and never log patient data.

pub mod intake;
pub mod outcome;
pub mod poll;
pub mod resources;
pub mod run;
pub mod server;
