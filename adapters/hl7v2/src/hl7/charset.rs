//! The character set of a message (MSH-18). The delimiters are ASCII, but a GBK or GB18030 byte
//! pair can contain the bytes of `|`, `^` or `\`, so a message is decoded to text as a whole
//! before it is split, and MSH-18 is read from the MSH segment's bytes first (the fields before
//! it are ASCII in every feed we know of).

use encoding_rs::Encoding;

use super::{ErrorCode, Location, Problem};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    Ascii,
    Latin1,
    Utf8,
    /// GB 18030, which contains GBK and GB 2312: one decoder serves all three.
    Gb18030,
}

impl Charset {
    /// The charset an MSH-18 value names; `None` for a name this adapter does not know.
    pub fn from_msh18(name: &str) -> Option<Charset> {
        let folded: String = name
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-' && *c != '_')
            .flat_map(char::to_uppercase)
            .collect();
        match folded.as_str() {
            "ASCII" | "USASCII" => Some(Charset::Ascii),
            "8859/1" | "ISO88591" | "ISOIR100" | "LATIN1" => Some(Charset::Latin1),
            "UNICODEUTF8" | "UTF8" => Some(Charset::Utf8),
            "GB18030" | "GB180302000" | "GB180302005" | "GB180302022" | "GBK" | "GB2312" | "GB231280"
            | "CP936" => Some(Charset::Gb18030),
            _ => None,
        }
    }

    /// The name an acknowledgement declares in its own MSH-18.
    pub fn msh18(self) -> &'static str {
        match self {
            Charset::Ascii => "ASCII",
            Charset::Latin1 => "8859/1",
            Charset::Utf8 => "UNICODE UTF-8",
            Charset::Gb18030 => "GB 18030-2000",
        }
    }

    /// The name to declare in a message with these delimiters: the usual one, unless one of its
    /// characters is a delimiter there (a `/` or `-` separator), then a name of letters and
    /// digits that still reads as the same charset.
    pub fn msh18_within(self, delimiters: &super::Delimiters) -> &'static str {
        let usual = self.msh18();
        let clashes = usual.chars().any(|c| {
            [
                delimiters.field,
                delimiters.component,
                delimiters.repetition,
                delimiters.subcomponent,
            ]
            .contains(&c)
                || Some(c) == delimiters.escape
                || Some(c) == delimiters.truncation
        });
        match (clashes, self) {
            (false, _) | (true, Charset::Ascii) => usual,
            (true, Charset::Latin1) => "LATIN1",
            (true, Charset::Utf8) => "UTF8",
            (true, Charset::Gb18030) => "GB18030",
        }
    }

    fn encoding(self) -> &'static Encoding {
        match self {
            // WHATWG maps the ISO-8859-1 label to windows-1252, a superset for printable text.
            Charset::Ascii | Charset::Latin1 => encoding_rs::WINDOWS_1252,
            Charset::Utf8 => encoding_rs::UTF_8,
            Charset::Gb18030 => encoding_rs::GB18030,
        }
    }

    /// `bytes` as text; a problem naming MSH-18 when they are not valid in this charset.
    pub fn decode(self, bytes: &[u8]) -> Result<String, Problem> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(bytes);
        if self == Charset::Ascii
            && let Some(at) = bytes.iter().position(|b| !b.is_ascii())
        {
            return Err(declared_but(self, at));
        }
        match self
            .encoding()
            .decode_without_bom_handling_and_without_replacement(bytes)
        {
            Some(text) => Ok(text.into_owned()),
            None => {
                let valid = valid_prefix(self, bytes);
                Err(declared_but(self, valid))
            }
        }
    }

    /// `text` in this charset, for the acknowledgement (characters it cannot hold become `?`:
    /// the adapter's own messages are ASCII, and echoed values come from a message in it).
    pub fn encode(self, text: &str) -> Vec<u8> {
        match self {
            Charset::Utf8 => text.as_bytes().to_vec(),
            Charset::Ascii => text
                .chars()
                .map(|c| if c.is_ascii() { c as u8 } else { b'?' })
                .collect(),
            _ => self.encoding().encode(text).0.into_owned(),
        }
    }
}

fn declared_but(charset: Charset, at: usize) -> Problem {
    Problem::at(
        ErrorCode::DataType,
        Location::field("MSH", 18),
        format!(
            "the message is declared {} but byte {at} is not valid in it",
            charset.msh18()
        ),
    )
}

/// How many leading bytes decode cleanly: where the first bad byte is, for the refusal.
fn valid_prefix(charset: Charset, bytes: &[u8]) -> usize {
    let mut decoder = charset.encoding().new_decoder_without_bom_handling();
    let mut out = String::with_capacity(bytes.len() * 3);
    let (result, read) = decoder.decode_to_string_without_replacement(bytes, &mut out, true);
    match result {
        encoding_rs::DecoderResult::Malformed(bad, _) => read.saturating_sub(bad as usize),
        _ => read,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_hospitals_send_in_msh18_are_recognised() {
        assert_eq!(Charset::from_msh18("UNICODE UTF-8"), Some(Charset::Utf8));
        assert_eq!(Charset::from_msh18("GB 18030-2000"), Some(Charset::Gb18030));
        assert_eq!(Charset::from_msh18("gbk"), Some(Charset::Gb18030));
        assert_eq!(Charset::from_msh18("8859/1"), Some(Charset::Latin1));
        assert_eq!(Charset::from_msh18("EBCDIC"), None);
    }

    #[test]
    fn gbk_text_decodes_even_where_its_bytes_look_like_delimiters() {
        // 亅 in GBK is 0x81 0x7C: its second byte is '|'.
        let (bytes, _, _) = encoding_rs::GBK.encode("亅首");
        assert!(bytes.contains(&b'|'));
        assert_eq!(Charset::Gb18030.decode(&bytes).unwrap(), "亅首");
    }

    #[test]
    fn bytes_that_are_not_the_declared_charset_are_refused_at_msh18() {
        let problem = Charset::Utf8.decode(b"MSH|ok\xFF\xFE").unwrap_err();
        assert_eq!(problem.location, Some(Location::field("MSH", 18)));
        assert!(problem.reason.contains("byte 6"), "{}", problem.reason);
        assert!(Charset::Ascii.decode("张".as_bytes()).is_err());
    }
}
