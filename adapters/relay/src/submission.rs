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

impl Hospital {
    /// A hospital whose timestamps without an offset are China Standard Time (+08:00).
    pub fn in_china(organisation: OrganisationCode) -> Hospital {
        Hospital {
            organisation,
            utc_offset: china_standard_time(),
        }
    }
}

/// The offset of China Standard Time, the default for timestamps without one.
pub fn china_standard_time() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset")
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
    /// A visit step alone, for a patient registered before (a FHIR Encounter).
    Visit(Box<emr_proto::RegisterEncounterRequest>),
    /// A document (ORU^R01 results, MDM^T02 or a FHIR resource) for a registered patient.
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

/// A stable id for what a message names: the same message sent again names the same document
/// and submission set, so that the exchange takes the retry as the same submission.
pub fn derived_id(kind: &str, a: &str, b: &str) -> String {
    let hashed = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{kind}\u{1f}{a}\u{1f}{b}").as_bytes(),
    );
    format!("urn:hie:{kind}:{}", &sha256_hex_of(hashed.as_ref())[..40])
}

/// SHA-256 of `bytes`, as the registry takes a document's hash: 64 lower-case hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    sha256_hex_of(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

fn sha256_hex_of(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn code(scheme: &str, code: &str, display: &str) -> emr_proto::Code {
    emr_proto::Code {
        scheme: scheme.to_owned(),
        code: code.to_owned(),
        display: display.to_owned(),
    }
}

/// The identifier of a patient by the hospital's own number, as the registries take it.
pub fn local_patient(hospital: &Hospital, number: &str) -> population_proto::Identifier {
    population_proto::Identifier {
        system: format!("urn:hie:org:{}:patient", hospital.organisation),
        value: number.to_owned(),
    }
}

/// The person a visit is filed under: the patient by the hospital's own number.
pub fn patient_selector(hospital: &Hospital, number: &str) -> hie_proto::records::PersonSelector {
    hie_proto::records::PersonSelector {
        selector: Some(hie_proto::records::person_selector::Selector::Identifier(
            local_patient(hospital, number),
        )),
    }
}

/// Where a refusal by one of the exchange's own parsers points in the message: its reason, and
/// of `origins` (a call field's name → where its value came from) the one whose name is the
/// longest prefix of the refused field, if any.
pub fn refused_at<'o, T>(error: hie_core::Error, origins: &'o [(&str, T)]) -> (Option<&'o T>, String) {
    let (field, reason) = match error {
        hie_core::Error::InvalidArgument { field, reason } => (field, reason),
        other => (String::new(), other.to_string()),
    };
    let origin = origins
        .iter()
        .filter(|(prefix, _)| field.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, origin)| origin);
    (origin, reason)
}
