//! The acknowledgement a receiver answers every message with (original acknowledgement mode):
//! MSA-1 AA when the message was accepted (journaled), AE when it was understood but its content
//! is wrong, AR when it was refused (unsupported type, version or processing id, a bad header, or
//! the receiver cannot take messages right now: the sender should send it again later). A
//! problem goes in an ERR segment written for the message's version: ERR-1 up to v2.4, ERR-2,
//! ERR-3, ERR-4 and ERR-8 from v2.5.

use chrono::{DateTime, FixedOffset};

use super::escape::escape;
use super::{Charset, Delimiters, Message, Problem};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    Accept,
    Error,
    Reject,
}

impl AckCode {
    pub fn code(self) -> &'static str {
        match self {
            AckCode::Accept => "AA",
            AckCode::Error => "AE",
            AckCode::Reject => "AR",
        }
    }
}

/// What the acknowledgement answers: the message's header, or as much as could be read of it.
#[derive(Debug, Clone, Default)]
pub struct Answering {
    pub delimiters: Delimiters,
    pub charset: Option<Charset>,
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
    pub trigger_event: String,
    pub control_id: String,
    pub processing_id: String,
    pub version: String,
}

impl Answering {
    pub fn message(message: &Message) -> Answering {
        let msh = |n| message.value("MSH", n);
        Answering {
            delimiters: message.delimiters().clone(),
            charset: Some(message.charset()),
            sending_application: msh(3),
            sending_facility: msh(4),
            receiving_application: msh(5),
            receiving_facility: msh(6),
            trigger_event: message.field("MSH", 9).component(2),
            control_id: msh(10),
            processing_id: msh(11),
            version: msh(12),
        }
    }

    /// Whether the message's version puts its error in ERR-1 (v2.3, v2.4). An acknowledgement
    /// of a message whose version could not be read is written as v2.5.1.
    fn before_v2_5(&self) -> bool {
        if self.version.is_empty() {
            return false;
        }
        let mut parts = self.version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(2), parts.next().unwrap_or(5));
        (major, minor) < (2, 5)
    }
}

/// The acknowledgement's bytes (without MLLP framing), in the message's charset.
pub fn acknowledgement(
    answering: &Answering,
    code: AckCode,
    text: &str,
    problem: Option<&Problem>,
    control_id: &str,
    now: DateTime<FixedOffset>,
) -> Vec<u8> {
    let d = &answering.delimiters;
    let f = d.field;
    let e = |value: &str| escape(value, d);
    let version = if answering.version.is_empty() {
        "2.5.1"
    } else {
        answering.version.as_str()
    };
    let processing = if answering.processing_id.is_empty() {
        "P"
    } else {
        answering.processing_id.as_str()
    };
    let charset = answering.charset.unwrap_or(Charset::Utf8);
    let msh18 = answering.charset.map(|c| c.msh18_within(d)).unwrap_or("");
    let message_type = if answering.trigger_event.is_empty() {
        "ACK".to_owned()
    } else {
        format!("ACK{c}{}{c}ACK", e(&answering.trigger_event), c = d.component)
    };
    let mut text_out = format!(
        "MSH{f}{enc}{f}{}{f}{}{f}{}{f}{}{f}{}{f}{f}{message_type}{f}{}{f}{}{f}{}{f}{f}{f}{f}{f}{f}{msh18}\r",
        e(&answering.receiving_application),
        e(&answering.receiving_facility),
        e(&answering.sending_application),
        e(&answering.sending_facility),
        now.format("%Y%m%d%H%M%S%z"),
        e(control_id),
        e(processing),
        e(version),
        enc = d.encoding_characters(),
    );
    text_out.push_str(&format!(
        "MSA{f}{}{f}{}{f}{}\r",
        code.code(),
        e(&answering.control_id),
        e(text)
    ));
    if let Some(problem) = problem {
        let c = d.component;
        let (segment, occurrence, field, repetition, component) = match &problem.location {
            Some(l) => (
                l.segment.clone(),
                l.occurrence.to_string(),
                if l.field > 0 {
                    l.field.to_string()
                } else {
                    String::new()
                },
                l.repetition.map(|n| n.to_string()).unwrap_or_default(),
                l.component.map(|n| n.to_string()).unwrap_or_default(),
            ),
            None => Default::default(),
        };
        let location = format!("{segment}{c}{occurrence}{c}{field}{c}{repetition}{c}{component}");
        let reason = e(&problem.reason);
        let hl7_code = format!("{}{c}{}{c}HL70357", problem.code.code(), problem.code.text());
        if answering.before_v2_5() {
            let s = d.subcomponent;
            let err1 = format!(
                "{segment}{c}{occurrence}{c}{field}{c}{}{s}{}{s}HL70357{s}{s}{reason}",
                problem.code.code(),
                problem.code.text(),
            );
            text_out.push_str(&format!("ERR{f}{err1}\r"));
        } else {
            text_out.push_str(&format!(
                "ERR{f}{f}{location}{f}{hl7_code}{f}E{f}{f}{f}{f}{reason}\r"
            ));
        }
    }
    charset.encode(&text_out)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::hl7::{ErrorCode, Location};

    fn now() -> DateTime<FixedOffset> {
        FixedOffset::east_opt(8 * 3600)
            .unwrap()
            .with_ymd_and_hms(2026, 12, 4, 10, 0, 0)
            .unwrap()
    }

    fn answering(version: &str) -> Answering {
        let text = format!("MSH|^~\\&|HIS|QDN-H01|HIE|EXCH|20261204||ADT^A01|C42|P|{version}\r");
        Answering::message(&Message::parse(text.as_bytes(), Charset::Utf8).unwrap())
    }

    #[test]
    fn an_accepted_message_is_answered_aa_with_its_control_id_and_swapped_addresses() {
        let ack = acknowledgement(&answering("2.5.1"), AckCode::Accept, "", None, "A1", now());
        let ack = Message::parse(&ack, Charset::Utf8).unwrap();
        assert_eq!(ack.value("MSH", 3), "HIE");
        assert_eq!(ack.value("MSH", 5), "HIS");
        assert_eq!(ack.value("MSH", 6), "QDN-H01");
        assert_eq!(ack.field("MSH", 9).component(2), "A01");
        assert_eq!(ack.value("MSA", 1), "AA");
        assert_eq!(ack.value("MSA", 2), "C42");
        assert!(ack.segment("ERR").is_none());
    }

    #[test]
    fn an_error_names_the_field_in_err_for_the_messages_version() {
        let problem = Problem::at(
            ErrorCode::RequiredFieldMissing,
            Location::component("PID", 3, 1),
            "the patient identifier | is required",
        );
        let ack = acknowledgement(
            &answering("2.5.1"),
            AckCode::Error,
            "no",
            Some(&problem),
            "A2",
            now(),
        );
        let ack = Message::parse(&ack, Charset::Utf8).unwrap();
        assert_eq!(ack.value("MSA", 1), "AE");
        assert_eq!(ack.field("ERR", 2).component(1), "PID");
        assert_eq!(ack.field("ERR", 2).component(3), "3");
        assert_eq!(ack.field("ERR", 3).component(1), "101");
        assert_eq!(ack.value("ERR", 4), "E");
        assert_eq!(ack.value("ERR", 8), "the patient identifier | is required");

        let old = acknowledgement(
            &answering("2.3"),
            AckCode::Error,
            "no",
            Some(&problem),
            "A3",
            now(),
        );
        let old = Message::parse(&old, Charset::Utf8).unwrap();
        assert_eq!(old.field("ERR", 1).component(1), "PID");
        assert_eq!(old.field("ERR", 1).component_field(4).subcomponent(1), "101");
    }
}
