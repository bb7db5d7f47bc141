use crate::error::FieldError;

/// An ICD-10 code as the national editions write it (GB/T 14396, and the clinical edition's
/// extension codes): a chapter letter, two digits, and optionally a dot and one to eight further
/// letters and digits (`I10`, `E11.9`, `F20.001`, `I63.900x001`, `U07.1`). Stored in upper case
/// (`I63.900X001`), so that a code compares equal however a system wrote it; a code without its
/// dot (`E119`) is accepted and written with one. Stored as its text; only codes that passed
/// `parse` are ever written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Icd10Code(String);

/// The longest subdivision: the clinical edition's extension codes (`900x001`) have seven.
const MAX_SUBDIVISION: usize = 8;

impl Icd10Code {
    pub fn parse(text: &str) -> Result<Icd10Code, FieldError> {
        let code = text.trim().to_ascii_uppercase();
        if code.is_empty() {
            return Err(FieldError::new("must not be empty"));
        }
        let bytes = code.as_bytes();
        let valid_category = bytes.len() >= 3
            && bytes[0].is_ascii_uppercase()
            && bytes[1].is_ascii_digit()
            && bytes[2].is_ascii_alphanumeric();
        if !valid_category {
            return Err(FieldError(format!(
                "{} is not an ICD-10 code: expected a letter and two digits, then optionally a dot and a subdivision (for example E11.9)",
                Self::shown(&code)
            )));
        }
        let rest = &code[3..];
        let subdivision = rest.strip_prefix('.').unwrap_or(rest);
        if (rest.starts_with('.') && subdivision.is_empty()) || subdivision.len() > MAX_SUBDIVISION {
            return Err(FieldError(format!(
                "{} is not an ICD-10 code: the subdivision after the dot has 1 to {MAX_SUBDIVISION} characters",
                Self::shown(&code)
            )));
        }
        if !subdivision.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(FieldError(format!(
                "{} is not an ICD-10 code: only letters and digits may follow the category",
                Self::shown(&code)
            )));
        }
        let normalised = if subdivision.is_empty() {
            code[..3].to_owned()
        } else {
            format!("{}.{subdivision}", &code[..3])
        };
        Ok(Icd10Code(normalised))
    }

    /// A short, printable rendering of what was given, for an error message.
    fn shown(code: &str) -> String {
        let short: String = code.chars().take(16).collect();
        format!("'{}'", short.escape_default())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The three-character category (`E11` of `E11.9`).
    pub fn category(&self) -> &str {
        &self.0[..3]
    }

    /// Whether the category falls in `from..=to` (both three-character categories).
    pub fn in_range(&self, from: &str, to: &str) -> bool {
        (from..=to).contains(&self.category())
    }
}

impl std::fmt::Display for Icd10Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_normalised_with_their_dot() {
        assert_eq!(Icd10Code::parse("e119").unwrap().as_str(), "E11.9");
        assert_eq!(Icd10Code::parse(" I10 ").unwrap().as_str(), "I10");
        assert_eq!(Icd10Code::parse("F20.001").unwrap().as_str(), "F20.001");
        assert_eq!(Icd10Code::parse("F20.001").unwrap().category(), "F20");
        assert_eq!(Icd10Code::parse("i63.900x001").unwrap().as_str(), "I63.900X001");
        assert_eq!(Icd10Code::parse("U07.1").unwrap().as_str(), "U07.1");
    }

    #[test]
    fn what_is_not_a_code_is_refused_with_the_reason() {
        for bad in [
            "",
            "I",
            "10I",
            "I1",
            "E11.",
            "E11.123456789",
            "E11-9",
            "E11.9 1",
            "日本",
        ] {
            assert!(Icd10Code::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_compare_categories() {
        let code = Icd10Code::parse("F15.2").unwrap();
        assert!(code.in_range("F10", "F19"));
        assert!(!code.in_range("F20", "F99"));
    }
}
