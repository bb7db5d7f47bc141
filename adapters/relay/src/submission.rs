//! What a hospital's message asks of the exchange, whatever it arrived as (an HL7 v2 message, a
//! FHIR resource): the calls the forwarder makes, and the translator each kind of adapter
//! provides from the journaled bytes to them.

use chrono::FixedOffset;
use hie_core::domain::OrganisationCode;
use hie_proto::emr as emr_proto;
use hie_proto::population as population_proto;

/// The hospital an adapter runs for.
#[derive(Debug, Clone)]
pub struct Hospital {
    /// Its code in the exchange's directory (the organisation its certificate names).
    pub organisation: OrganisationCode,
    /// The offset of timestamps that do not state one (China Standard Time, +08:00, unless
    /// configured otherwise).
    pub utc_offset: FixedOffset,
}

/// What one message asks of the exchange.
#[derive(Debug, Clone, PartialEq)]
pub enum Submission {
    /// A patient's record, and the visit step the event reports (admission, transfer,
    /// discharge, registration, a cancellation), when it reports one.
    Patient {
        record: population_proto::RegisterSourceRecordRequest,
        visit: Option<Box<emr_proto::RegisterEncounterRequest>>,
    },
    /// A40: the hospital merged two of its own patient numbers; the prior number's record is
    /// retired into the surviving one.
    MergePatients {
        record: population_proto::RegisterSourceRecordRequest,
        prior_local_patient_number: String,
    },
    /// A document (ORU^R01 results, MDM^T02 a clinical document) for a registered patient.
    Document(emr_proto::RegisterDocumentSetRequest),
}

/// A message, understood.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    /// `ADT^A01`, `ORU^R01`, …
    pub message_type: String,
    /// The hospital's patient number the message is about: messages about one patient are
    /// forwarded in the order they arrived.
    pub patient_key: String,
    pub submission: Submission,
}

/// Turns journaled bytes into the calls they stand for. The forwarder translates again when it
/// delivers (not only when the message arrived), so that a replay after a fix of the mapping
/// uses the fixed mapping.
pub trait Translator: Send + Sync + 'static {
    /// The calls, or why the bytes cannot be translated (they become a dead letter).
    fn translate(&self, raw: &[u8]) -> Result<Translated, String>;
}
