use super::text::fold_full_width;
use crate::error::FieldError;

/// A person's name as a source states it. Chinese (王小明), Latin-script (Ayi Wang) and mixed
/// names (阿依·Wang) are all accepted, as are the interpuncts of transliterated minority names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonName(String);

impl PersonName {
    /// The longest name accepted, in characters. Chinese names are short; transliterated names
    /// with several parts can run long, but 50 is ample for either.
    pub const MAX_CHARS: usize = 50;

    pub fn parse(raw: &str) -> Result<PersonName, FieldError> {
        let folded = fold_full_width(raw);
        if let Some(c) = folded.chars().find(|c| c.is_control()) {
            return Err(FieldError(format!(
                "contains the control character U+{:04X}",
                c as u32
            )));
        }
        // Runs of white space inside a name carry no meaning; one space keeps the parts apart.
        let name = folded.split_whitespace().collect::<Vec<_>>().join(" ");
        if name.is_empty() {
            return Err(FieldError::new("must not be empty"));
        }
        let n_chars = name.chars().count();
        if n_chars > Self::MAX_CHARS {
            return Err(FieldError(format!(
                "is {n_chars} characters long, at most {} are allowed",
                Self::MAX_CHARS
            )));
        }
        if !name.chars().any(char::is_alphabetic) {
            return Err(FieldError::new(
                "must contain at least one letter or Chinese character",
            ));
        }
        Ok(PersonName(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form names are searched by: lower case, so that "WANG Ayi" and "Wang Ayi" meet.
    pub fn search_key(&self) -> String {
        self.0.to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_latin_and_mixed_names_are_accepted() {
        assert_eq!(PersonName::parse("王小明").unwrap().as_str(), "王小明");
        assert_eq!(PersonName::parse("  Ayi   Wang ").unwrap().as_str(), "Ayi Wang");
        assert_eq!(PersonName::parse("阿依·Wang").unwrap().as_str(), "阿依·Wang");
    }

    #[test]
    fn a_full_width_name_folds_to_half_width() {
        assert_eq!(PersonName::parse("ＬＩ　Ｍｉｎｇ").unwrap().as_str(), "LI Ming");
    }

    #[test]
    fn an_empty_or_over_long_name_is_refused() {
        assert!(PersonName::parse("  ").is_err());
        assert!(PersonName::parse(&"王".repeat(51)).is_err());
        assert!(PersonName::parse(&"王".repeat(50)).is_ok());
    }

    #[test]
    fn a_name_without_letters_or_with_control_characters_is_refused() {
        assert!(PersonName::parse("12345").is_err());
        assert!(PersonName::parse("王\u{7}明").is_err());
    }

    #[test]
    fn the_search_key_ignores_case() {
        assert_eq!(PersonName::parse("WANG Ayi").unwrap().search_key(), "wang ayi");
    }
}
