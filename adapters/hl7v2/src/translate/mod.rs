//! From an HL7 v2 message to the exchange's calls. A message is checked here, before it is
//! journaled and acknowledged: what cannot be translated is answered AE (or AR for a message
//! type or version this adapter does not take) with the HL7 location of the problem, and the
//! calls it translates to are checked with the exchange's own parsers, so that a value the
//! exchange would refuse is refused here, at the sender, while it can still be corrected.

mod documents;
mod patient;
mod time;

use crate::hl7::{ErrorCode, Location, Message, Problem};

pub use time::parse_timestamp;

pub use hie_adapter_relay::submission::{Hospital, Submission, Translated};

/// The message types and trigger events this adapter takes.
pub const SUPPORTED: &[(&str, &[&str])] = &[
    (
        "ADT",
        &[
            "A01", "A02", "A03", "A04", "A05", "A08", "A11", "A13", "A28", "A31", "A40",
        ],
    ),
    ("ORU", &["R01"]),
    ("MDM", &["T02"]),
];

/// The identity of a message for idempotency: sending facility and message control id (MSH-4,
/// MSH-10). A message sent again with the same identity is the same message.
pub fn idempotency_key(message: &Message) -> String {
    format!("{}|{}", message.value("MSH", 4), message.value("MSH", 10))
}

/// Checks the header (MSH-9 to MSH-12) and translates the message. `Err` carries whether the
/// message is refused (AR: not a message this adapter takes) or in error (AE: its content).
pub fn translate(message: &Message, hospital: &Hospital) -> Result<Translated, Refusal> {
    let (message_type, trigger) = check_header(message).map_err(Refusal::Reject)?;
    let translated = match message_type.as_str() {
        "ADT" => patient::adt(message, hospital, &trigger),
        "ORU" => documents::oru(message, hospital),
        _ => documents::mdm(message, hospital),
    };
    translated
        .map(|(patient_key, submission)| Translated {
            message_type: format!("{message_type}^{trigger}"),
            patient_key,
            submission,
        })
        .map_err(Refusal::Error)
}

/// Why a message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// AR: the header says this is not a message this adapter takes.
    Reject(Problem),
    /// AE: the message is understood, but its content is wrong or missing.
    Error(Problem),
}

fn check_header(message: &Message) -> Result<(String, String), Problem> {
    let msh9 = message.field("MSH", 9);
    let (message_type, trigger) = (msh9.component(1), msh9.component(2));
    if message_type.is_empty() {
        return Err(Problem::at(
            ErrorCode::RequiredFieldMissing,
            Location::component("MSH", 9, 1),
            "the message type is required",
        ));
    }
    let Some((_, triggers)) = SUPPORTED.iter().find(|(t, _)| *t == message_type) else {
        return Err(Problem::at(
            ErrorCode::UnsupportedMessageType,
            Location::component("MSH", 9, 1),
            format!("message type {message_type} is not taken here; expected ADT, ORU or MDM"),
        ));
    };
    if !triggers.contains(&trigger.as_str()) {
        return Err(Problem::at(
            ErrorCode::UnsupportedEventCode,
            Location::component("MSH", 9, 2),
            format!(
                "trigger event {message_type}^{trigger} is not taken here; expected one of {}",
                triggers.join(", ")
            ),
        ));
    }
    let control_id = message.value("MSH", 10);
    if control_id.is_empty() || control_id.chars().count() > 199 {
        return Err(Problem::at(
            ErrorCode::RequiredFieldMissing,
            Location::field("MSH", 10),
            "the message control id is required (1 to 199 characters)",
        ));
    }
    let processing = message.value("MSH", 11);
    if !matches!(processing.as_str(), "P" | "T" | "D") {
        return Err(Problem::at(
            ErrorCode::UnsupportedProcessingId,
            Location::field("MSH", 11),
            "expected the processing id P, T or D",
        ));
    }
    let version = message.value("MSH", 12);
    if !supported_version(&version) {
        return Err(Problem::at(
            ErrorCode::UnsupportedVersionId,
            Location::field("MSH", 12),
            "expected an HL7 version from 2.3 to 2.8",
        ));
    }
    Ok((message_type, trigger))
}

fn supported_version(version: &str) -> bool {
    let mut parts = version.split('.');
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    parts.all(|p| p.parse::<u32>().is_ok()) && major == Some(2) && minor.is_some_and(|m| (3..=8).contains(&m))
}

/// A problem the exchange's own parser found in a call, located in the message: `origins`
/// maps the call's field names (a prefix each) to the HL7 field they were taken from.
fn located(error: hie_core::Error, origins: &[(&str, Location)], fallback: Location) -> Problem {
    let (origin, reason) = hie_adapter_relay::submission::refused_at(error, origins);
    Problem::at(ErrorCode::DataType, origin.cloned().unwrap_or(fallback), reason)
}

/// The segment `id` the message must carry for this event; the refusal says why it is needed.
fn required_segment<'m>(
    message: &'m Message,
    id: &str,
    why: &str,
) -> Result<&'m crate::hl7::Segment, Problem> {
    message
        .segment(id)
        .ok_or_else(|| Problem::at(ErrorCode::SegmentSequence, Location::segment(id), why))
}

/// The first of `candidates` (segment, field) the message fills in, as an instant: the time of
/// an event, from the most specific field that states it.
fn first_time(
    message: &Message,
    hospital: &Hospital,
    candidates: &[(&str, usize)],
) -> Result<prost_types::Timestamp, Problem> {
    for &(segment, field) in candidates {
        let text = message.value(segment, field);
        if text.is_empty() {
            continue;
        }
        return parse_timestamp(&text, hospital.utc_offset)
            .map(hie_proto::timestamp)
            .map_err(|reason| Problem::at(ErrorCode::DataType, Location::field(segment, field), reason));
    }
    Err(Problem::at(
        ErrorCode::RequiredFieldMissing,
        Location::field(candidates[0].0, candidates[0].1),
        "the time of the event is required",
    ))
}

#[cfg(test)]
mod tests;
