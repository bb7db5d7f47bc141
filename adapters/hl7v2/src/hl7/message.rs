//! A parsed message: its delimiters (MSH-1 and MSH-2), its charset, and its segments, each
//! field kept as written and split into repetitions, components and subcomponents on demand.

use super::escape::unescape;
use super::{Charset, ErrorCode, Problem};

/// The delimiters a message declares in MSH-1 and MSH-2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delimiters {
    pub field: char,
    pub component: char,
    pub repetition: char,
    /// Absent when MSH-2 declares none (then nothing is unescaped).
    pub escape: Option<char>,
    pub subcomponent: char,
    /// v2.7's truncation character, when declared.
    pub truncation: Option<char>,
}

impl Default for Delimiters {
    fn default() -> Delimiters {
        Delimiters {
            field: '|',
            component: '^',
            repetition: '~',
            escape: Some('\\'),
            subcomponent: '&',
            truncation: None,
        }
    }
}

impl Delimiters {
    /// MSH-2 as this message writes it.
    pub fn encoding_characters(&self) -> String {
        let mut text = String::new();
        text.push(self.component);
        text.push(self.repetition);
        if let Some(escape) = self.escape {
            text.push(escape);
        }
        text.push(self.subcomponent);
        if let Some(truncation) = self.truncation {
            text.push(truncation);
        }
        text
    }

    fn parse(field: u8, encoding: &[u8]) -> Result<Delimiters, Problem> {
        if !field.is_ascii_graphic() || field.is_ascii_alphanumeric() {
            return Err(Problem::at(
                ErrorCode::DataType,
                Location::field("MSH", 1),
                "the field separator must be a printable character that is not a letter or digit",
            ));
        }
        let bad =
            |reason: &str| Problem::at(ErrorCode::DataType, Location::field("MSH", 2), reason.to_owned());
        if !(3..=5).contains(&encoding.len()) {
            return Err(bad(
                "expected 4 encoding characters (component, repetition, escape, subcomponent)",
            ));
        }
        let mut seen = vec![field];
        for &c in encoding {
            if !c.is_ascii_graphic() || c.is_ascii_alphanumeric() || seen.contains(&c) {
                return Err(bad(
                    "each encoding character must be a distinct printable character that is not a letter, digit or the field separator",
                ));
            }
            seen.push(c);
        }
        let char_at = |i: usize| encoding.get(i).map(|&b| char::from(b));
        // Three characters: an old sender with no escape character (component, repetition,
        // subcomponent).
        let (escape, subcomponent, truncation) = if encoding.len() == 3 {
            (None, char::from(encoding[2]), None)
        } else {
            (char_at(2), char::from(encoding[3]), char_at(4))
        };
        Ok(Delimiters {
            field: char::from(field),
            component: char::from(encoding[0]),
            repetition: char::from(encoding[1]),
            escape,
            subcomponent,
            truncation,
        })
    }
}

/// Where something is in a message: `PID-3`, `PID-3.1`, or the second OBX's `OBX-5`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub segment: String,
    /// Which occurrence of the segment, from 1.
    pub occurrence: usize,
    /// The field's sequence number, from 1; 0 for the segment as a whole.
    pub field: usize,
    /// Which repetition of the field, from 1, when it matters.
    pub repetition: Option<usize>,
    pub component: Option<usize>,
}

impl Location {
    pub fn segment(segment: &str) -> Location {
        Location {
            segment: segment.to_owned(),
            occurrence: 1,
            field: 0,
            repetition: None,
            component: None,
        }
    }

    pub fn field(segment: &str, field: usize) -> Location {
        Location {
            segment: segment.to_owned(),
            occurrence: 1,
            field,
            repetition: None,
            component: None,
        }
    }

    pub fn component(segment: &str, field: usize, component: usize) -> Location {
        Location {
            segment: segment.to_owned(),
            occurrence: 1,
            field,
            repetition: None,
            component: Some(component),
        }
    }

    pub fn nth(mut self, occurrence: usize) -> Location {
        self.occurrence = occurrence;
        self
    }

    pub fn repetition(mut self, repetition: usize) -> Location {
        self.repetition = Some(repetition);
        self
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.segment)?;
        if self.occurrence > 1 {
            write!(f, "[{}]", self.occurrence)?;
        }
        if self.field > 0 {
            write!(f, "-{}", self.field)?;
        }
        if let Some(repetition) = self.repetition.filter(|&r| r > 1) {
            write!(f, "({repetition})")?;
        }
        if let Some(component) = self.component {
            write!(f, ".{component}")?;
        }
        Ok(())
    }
}

/// One segment: its id and its fields as written (still escaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    id: String,
    /// For MSH, `fields[0]` is MSH-1 (the field separator) and `fields[1]` MSH-2; for every
    /// other segment `fields[0]` is field 1.
    fields: Vec<String>,
}

impl Segment {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Field `sequence` (from 1); empty when the segment is shorter.
    pub fn field<'m>(&'m self, sequence: usize, delimiters: &'m Delimiters) -> Field<'m> {
        let raw = sequence
            .checked_sub(1)
            .and_then(|i| self.fields.get(i))
            .map(String::as_str)
            .unwrap_or("");
        Field { raw, delimiters }
    }
}

/// One field as written: its repetitions, components and subcomponents.
#[derive(Debug, Clone, Copy)]
pub struct Field<'m> {
    raw: &'m str,
    delimiters: &'m Delimiters,
}

impl<'m> Field<'m> {
    /// Every repetition (at least one, possibly empty).
    pub fn repetitions(&self) -> impl Iterator<Item = Field<'m>> + 'm {
        let delimiters = self.delimiters;
        self.raw
            .split(delimiters.repetition)
            .map(move |raw| Field { raw, delimiters })
    }

    /// Component `n` (from 1) of the first repetition, as a field of its own (for its
    /// subcomponents).
    pub fn component_field(&self, n: usize) -> Field<'m> {
        let first = self.raw.split(self.delimiters.repetition).next().unwrap_or("");
        let raw = n
            .checked_sub(1)
            .and_then(|i| first.split(self.delimiters.component).nth(i))
            .unwrap_or("");
        Field {
            raw,
            delimiters: self.delimiters,
        }
    }

    /// Component `n` (from 1) of the first repetition, first subcomponent, unescaped and
    /// trimmed. HL7's explicit null `""` reads as empty.
    pub fn component(&self, n: usize) -> String {
        self.component_field(n).subcomponent(1)
    }

    /// Subcomponent `n` (from 1) of this value, unescaped and trimmed.
    pub fn subcomponent(&self, n: usize) -> String {
        let raw = n
            .checked_sub(1)
            .and_then(|i| self.raw.split(self.delimiters.subcomponent).nth(i))
            .unwrap_or("");
        if raw == "\"\"" {
            return String::new();
        }
        unescape(raw, self.delimiters).trim().to_owned()
    }

    /// The first component of the first repetition: a field's plain value.
    pub fn value(&self) -> String {
        self.component(1)
    }

    /// The whole first repetition unescaped, delimiters and all (for a text field like OBX-5
    /// of type FT or TX, where `^` may be part of the text).
    pub fn text(&self) -> String {
        let first = self.raw.split(self.delimiters.repetition).next().unwrap_or("");
        unescape(first, self.delimiters)
    }
}

/// A parsed message.
#[derive(Debug, Clone)]
pub struct Message {
    delimiters: Delimiters,
    charset: Charset,
    segments: Vec<Segment>,
}

impl Message {
    /// Parses `bytes` (one message, without MLLP framing). `default_charset` applies when MSH-18
    /// is empty.
    pub fn parse(bytes: &[u8], default_charset: Charset) -> Result<Message, Problem> {
        let (delimiters, charset) = read_msh_header(bytes, default_charset)?;
        let text = charset.decode(bytes)?;
        let mut segments = Vec::new();
        for (index, line) in text.split(['\r', '\n']).enumerate() {
            let line = line.trim_end_matches(' ');
            if line.is_empty() {
                continue;
            }
            segments.push(parse_segment(line, index + 1, &delimiters)?);
        }
        Ok(Message {
            delimiters,
            charset,
            segments,
        })
    }

    pub fn delimiters(&self) -> &Delimiters {
        &self.delimiters
    }

    pub fn charset(&self) -> Charset {
        self.charset
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The first segment with this id.
    pub fn segment(&self, id: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.id == id)
    }

    /// Every segment with this id, in order.
    pub fn all<'m>(&'m self, id: &'m str) -> impl Iterator<Item = &'m Segment> + 'm {
        self.segments.iter().filter(move |s| s.id == id)
    }

    /// Field `sequence` of the first segment `id`; empty when there is none.
    pub fn field<'m>(&'m self, id: &str, sequence: usize) -> Field<'m> {
        match self.segment(id) {
            Some(segment) => segment.field(sequence, &self.delimiters),
            None => Field {
                raw: "",
                delimiters: &self.delimiters,
            },
        }
    }

    /// The plain value of `id-sequence` (first repetition, first component).
    pub fn value(&self, id: &str, sequence: usize) -> String {
        self.field(id, sequence).value()
    }
}

/// MSH-1, MSH-2 and MSH-18, read from the bytes before the message is decoded.
fn read_msh_header(bytes: &[u8], default_charset: Charset) -> Result<(Delimiters, Charset), Problem> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(bytes);
    if !bytes.starts_with(b"MSH") {
        return Err(Problem::at(
            ErrorCode::SegmentSequence,
            Location::segment("MSH"),
            "the message must begin with an MSH segment",
        ));
    }
    let header_end = bytes
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(bytes.len());
    let header = &bytes[..header_end];
    let Some(&field) = header.get(3) else {
        return Err(Problem::at(
            ErrorCode::RequiredFieldMissing,
            Location::field("MSH", 1),
            "missing",
        ));
    };
    let encoding_end = header[4..]
        .iter()
        .position(|&b| b == field)
        .map_or(header.len(), |i| i + 4);
    let delimiters = Delimiters::parse(field, &header[4..encoding_end])?;
    // Fields after MSH-2 hold ASCII in practice; read MSH-18 one byte per character.
    let msh18 = header
        .split(|&b| b == field)
        .nth(17)
        .map(|raw| {
            let text: String = raw.iter().map(|&b| char::from(b)).collect();
            // MSH-18 is a coded value without components; a delimiter inside it is escaped.
            let first = text.split(delimiters.repetition).next().unwrap_or("");
            unescape(first, &delimiters).trim().to_owned()
        })
        .unwrap_or_default();
    if msh18.is_empty() {
        return Ok((delimiters, default_charset));
    }
    let charset = Charset::from_msh18(&msh18).ok_or_else(|| {
        Problem::at(
            ErrorCode::TableValueNotFound,
            Location::field("MSH", 18),
            "unknown character set; expected UNICODE UTF-8, GB 18030-2000, GBK, ASCII or 8859/1",
        )
    })?;
    Ok((delimiters, charset))
}

fn parse_segment(line: &str, line_number: usize, delimiters: &Delimiters) -> Result<Segment, Problem> {
    let id: String = line.chars().take(3).collect();
    let well_formed = id.len() == 3
        && id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        && line[3..].chars().next().is_none_or(|c| c == delimiters.field);
    if !well_formed {
        return Err(Problem::new(
            ErrorCode::SegmentSequence,
            None,
            format!(
                "segment {line_number} does not begin with a three-character segment id and the field separator '{}'",
                delimiters.field
            ),
        ));
    }
    let rest = line.get(4..).unwrap_or("");
    let mut fields: Vec<String> = Vec::new();
    if id == "MSH" {
        fields.push(delimiters.field.to_string());
        let mut parts = rest.split(delimiters.field);
        fields.push(parts.next().unwrap_or("").to_owned());
        fields.extend(parts.map(str::to_owned));
    } else if line.len() > 3 {
        fields.extend(rest.split(delimiters.field).map(str::to_owned));
    }
    Ok(Segment { id, fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADT: &str = "MSH|^~\\&|HIS|QDN-H01|HIE|HIE|20261204101500+0800||ADT^A01^ADT_A01|MSG0001|P|2.5.1|||||CHN|UNICODE UTF-8\r\
EVN|A01|20261204101500\r\
PID|1||000123^^^QDN-H01^MR~522601198001010016^^^CHN^NI||张^伟||19800101|M|||凯里市大十字街1号^^凯里市^贵州省^556000^CHN^H^^522601||13800001111\r\
PV1|1|I|内科^301^02||||D001^李^医生||||||||||||V2026-001|||||||||||||||||||||||||20261204100000\r";

    fn parse(text: &str) -> Message {
        Message::parse(text.as_bytes(), Charset::Utf8).unwrap()
    }

    #[test]
    fn fields_components_and_repetitions_are_read_by_their_hl7_numbers() {
        let message = parse(ADT);
        assert_eq!(message.value("MSH", 9), "ADT");
        assert_eq!(message.field("MSH", 9).component(2), "A01");
        assert_eq!(message.value("MSH", 10), "MSG0001");
        assert_eq!(message.value("MSH", 12), "2.5.1");
        assert_eq!(message.value("MSH", 1), "|");
        let ids: Vec<(String, String)> = message
            .field("PID", 3)
            .repetitions()
            .map(|r| (r.component(1), r.component(5)))
            .collect();
        assert_eq!(ids[1], ("522601198001010016".to_owned(), "NI".to_owned()));
        assert_eq!(message.field("PID", 5).component(2), "伟");
        assert_eq!(message.field("PID", 11).component(9), "522601");
        assert_eq!(message.value("PV1", 19), "V2026-001");
        assert_eq!(message.charset(), Charset::Utf8);
    }

    #[test]
    fn a_message_in_gbk_is_decoded_before_it_is_split() {
        let text = ADT.replace("UNICODE UTF-8", "GBK").replace("张^伟", "匕^首");
        let (bytes, _, _) = encoding_rs::GBK.encode(&text);
        let message = Message::parse(&bytes, Charset::Utf8).unwrap();
        assert_eq!(message.field("PID", 5).component(1), "匕");
        assert_eq!(message.field("PID", 5).component(2), "首");
        assert_eq!(message.charset(), Charset::Gb18030);
    }

    #[test]
    fn other_delimiters_are_honoured() {
        let message = parse("MSH#:*!%#HIS#H1#HIE#HIE#20261204##ADT:A04#1#P#2.4\rPID#1##77:::H1:MR\r");
        assert_eq!(message.field("MSH", 9).component(2), "A04");
        assert_eq!(message.field("PID", 3).component(5), "MR");
    }

    #[test]
    fn segments_may_end_in_line_feeds_and_trailing_fields_may_be_missing() {
        let message = parse("MSH|^~\\&|HIS|H1\nPID|1\r\n");
        assert_eq!(message.segments().len(), 2);
        assert_eq!(message.value("PID", 30), "");
        assert_eq!(message.value("OBX", 5), "");
    }

    #[test]
    fn a_message_without_msh_or_with_bad_delimiters_is_refused_at_the_right_place() {
        let p = Message::parse(b"PID|1", Charset::Utf8).unwrap_err();
        assert_eq!(p.location, Some(Location::segment("MSH")));
        let p = Message::parse(b"MSHA^~\\&|x", Charset::Utf8).unwrap_err();
        assert_eq!(p.location, Some(Location::field("MSH", 1)));
        let p = Message::parse(b"MSH|^^\\&|x", Charset::Utf8).unwrap_err();
        assert_eq!(p.location, Some(Location::field("MSH", 2)));
        let p = Message::parse(b"MSH|^~\\&||||||||||||||||EBCDIC\r", Charset::Utf8).unwrap_err();
        assert_eq!(p.location, Some(Location::field("MSH", 18)));
        let p = Message::parse(b"MSH|^~\\&|x\rpid|1\r", Charset::Utf8).unwrap_err();
        assert!(p.reason.contains("segment 2"), "{}", p.reason);
    }

    #[test]
    fn an_explicit_null_reads_as_empty_and_escapes_are_decoded() {
        let message = parse("MSH|^~\\&|x\rNTE|1||\"\"\rOBX|1|TX|||a\\S\\b\\.br\\c\r");
        assert_eq!(message.value("NTE", 3), "");
        assert_eq!(message.field("OBX", 5).text(), "a^b\nc");
    }

    #[test]
    fn locations_print_the_way_interface_engineers_write_them() {
        assert_eq!(Location::component("PID", 3, 1).to_string(), "PID-3.1");
        assert_eq!(Location::field("OBX", 5).nth(2).to_string(), "OBX[2]-5");
        assert_eq!(
            Location::component("PID", 3, 1).repetition(2).to_string(),
            "PID-3(2).1"
        );
    }
}
