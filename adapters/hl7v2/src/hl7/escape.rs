//! Escape sequences (HL7 v2.5.1 chapter 2.7): a delimiter inside a value travels as `\F\`,
//! `\S\`, `\T\`, `\R\` or `\E\`; `\Xhh…\` carries bytes in hex; `\.br\` is a line break. Values
//! are split on delimiters first and unescaped after, so an escaped delimiter never splits.

use super::Delimiters;

/// The value `raw` stands for. Formatting and highlighting sequences are dropped; an escape
/// character with no closing one is kept as it is.
pub fn unescape(raw: &str, delimiters: &Delimiters) -> String {
    let Some(escape) = delimiters.escape else {
        return raw.to_owned();
    };
    if !raw.contains(escape) {
        return raw.to_owned();
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(start) = rest.find(escape) {
        out.push_str(&rest[..start]);
        let after = &rest[start + escape.len_utf8()..];
        let Some(end) = after.find(escape) else {
            out.push_str(&rest[start..]);
            return out;
        };
        let sequence = &after[..end];
        match sequence {
            "F" => out.push(delimiters.field),
            "S" => out.push(delimiters.component),
            "T" => out.push(delimiters.subcomponent),
            "R" => out.push(delimiters.repetition),
            "E" => out.push(escape),
            "P" => out.push(delimiters.truncation.unwrap_or('#')),
            ".br" => out.push('\n'),
            s if s.starts_with(".sp") => out.push('\n'),
            s if s.starts_with('X') => out.push_str(&hex_text(&s[1..])),
            // Highlighting (H, N), character-set switches (C, M), locally defined (Z) and the
            // other formatting commands (.in, .ti, .sk, .ce, .fi, .nf) carry no value.
            _ => {}
        }
        rest = &after[end + escape.len_utf8()..];
    }
    out.push_str(rest);
    out
}

/// Hex-encoded data as text: UTF-8 when it is, else one character per byte.
fn hex_text(hex: &str) -> String {
    let bytes: Vec<u8> = hex
        .as_bytes()
        .chunks(2)
        .filter_map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
        })
        .collect();
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => e.into_bytes().into_iter().map(char::from).collect(),
    }
}

/// `value` with every delimiter escaped, so that it can be placed in a field; line breaks
/// become `\.br\` and other control characters are dropped (they would end a segment).
pub fn escape(value: &str, delimiters: &Delimiters) -> String {
    // A message that declares no escape character cannot carry a delimiter inside a value: it
    // becomes a space.
    let Some(escape) = delimiters.escape else {
        let delimiter = |c: char| {
            [
                delimiters.field,
                delimiters.component,
                delimiters.repetition,
                delimiters.subcomponent,
            ]
            .contains(&c)
        };
        return value
            .chars()
            .filter(|c| !c.is_control() || *c == '\n')
            .map(|c| if delimiter(c) || c == '\n' { ' ' } else { c })
            .collect();
    };
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        let code = if c == escape {
            Some("E")
        } else if c == delimiters.field {
            Some("F")
        } else if c == delimiters.component {
            Some("S")
        } else if c == delimiters.subcomponent {
            Some("T")
        } else if c == delimiters.repetition {
            Some("R")
        } else if c == '\n' {
            Some(".br")
        } else {
            None
        };
        match code {
            Some(code) => {
                out.push(escape);
                out.push_str(code);
                out.push(escape);
            }
            None if c.is_control() => {}
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_delimiter_escape_becomes_its_character() {
        let d = Delimiters::default();
        assert_eq!(unescape(r"A\F\B\S\C\T\D\R\E\E\F", &d), r"A|B^C&D~E\F");
        assert_eq!(unescape(r"line one\.br\line two", &d), "line one\nline two");
        assert_eq!(unescape(r"\H\bold\N\", &d), "bold");
        assert_eq!(unescape(r"\XE5BCA0\", &d), "张");
    }

    #[test]
    fn an_unclosed_escape_is_kept_as_written() {
        assert_eq!(unescape(r"C:\temp", &Delimiters::default()), r"C:\temp");
    }

    #[test]
    fn escaping_then_unescaping_gives_the_value_back() {
        let d = Delimiters::default();
        let value = "a|b^c&d~e\\f\ng";
        assert_eq!(unescape(&escape(value, &d), &d), value);
        assert!(!escape("x\ry", &d).contains('\r'));
    }
}
