//! HL7 version 2 messages: the encoding rules (segments, fields, repetitions, components,
//! subcomponents, escape sequences), the character set a message declares in MSH-18, and the
//! acknowledgement the receiver answers with. No I/O here: bytes in, values out.

pub mod ack;
mod charset;
mod escape;
mod message;

pub use charset::Charset;
pub use message::{Delimiters, Field, Location, Message, Segment};

/// Why a message was refused or could not be processed, as HL7 table 0357 codes it: the ERR
/// segment of the acknowledgement carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    SegmentSequence,
    RequiredFieldMissing,
    DataType,
    TableValueNotFound,
    UnsupportedMessageType,
    UnsupportedEventCode,
    UnsupportedProcessingId,
    UnsupportedVersionId,
    UnknownKeyIdentifier,
    DuplicateKeyIdentifier,
    ApplicationInternal,
}

impl ErrorCode {
    pub fn code(self) -> &'static str {
        match self {
            ErrorCode::SegmentSequence => "100",
            ErrorCode::RequiredFieldMissing => "101",
            ErrorCode::DataType => "102",
            ErrorCode::TableValueNotFound => "103",
            ErrorCode::UnsupportedMessageType => "200",
            ErrorCode::UnsupportedEventCode => "201",
            ErrorCode::UnsupportedProcessingId => "202",
            ErrorCode::UnsupportedVersionId => "203",
            ErrorCode::UnknownKeyIdentifier => "204",
            ErrorCode::DuplicateKeyIdentifier => "205",
            ErrorCode::ApplicationInternal => "207",
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            ErrorCode::SegmentSequence => "Segment sequence error",
            ErrorCode::RequiredFieldMissing => "Required field missing",
            ErrorCode::DataType => "Data type error",
            ErrorCode::TableValueNotFound => "Table value not found",
            ErrorCode::UnsupportedMessageType => "Unsupported message type",
            ErrorCode::UnsupportedEventCode => "Unsupported event code",
            ErrorCode::UnsupportedProcessingId => "Unsupported processing id",
            ErrorCode::UnsupportedVersionId => "Unsupported version id",
            ErrorCode::UnknownKeyIdentifier => "Unknown key identifier",
            ErrorCode::DuplicateKeyIdentifier => "Duplicate key identifier",
            ErrorCode::ApplicationInternal => "Application internal error",
        }
    }
}

/// A problem with a message: what HL7 calls it, where it is, and what was expected. The reason
/// names the HL7 location and never repeats patient data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub code: ErrorCode,
    pub location: Option<Location>,
    pub reason: String,
}

impl Problem {
    pub fn new(code: ErrorCode, location: Option<Location>, reason: impl Into<String>) -> Problem {
        Problem {
            code,
            location,
            reason: reason.into(),
        }
    }

    pub fn at(code: ErrorCode, location: Location, reason: impl Into<String>) -> Problem {
        Problem::new(code, Some(location), reason)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{location}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}
