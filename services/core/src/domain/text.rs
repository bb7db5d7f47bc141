use crate::error::FieldError;

/// Folds full-width ASCII forms (U+FF01–U+FF5E) to their half-width letters, digits and
/// punctuation, and the ideographic space (U+3000) to a plain space. Chinese input methods
/// produce full-width forms for Latin letters and digits; the same name typed two ways must
/// compare equal.
pub fn fold_full_width(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            _ => c,
        })
        .collect()
}

/// Free text with a length limit: trimmed, with no control characters, at most `max` characters.
/// May be empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BoundedText(String);

impl BoundedText {
    pub fn parse(text: &str, max_chars: usize) -> Result<BoundedText, FieldError> {
        let trimmed = text.trim();
        if let Some(c) = trimmed.chars().find(|c| c.is_control()) {
            return Err(FieldError(format!(
                "contains the control character U+{:04X}",
                c as u32
            )));
        }
        let n_chars = trimmed.chars().count();
        if n_chars > max_chars {
            return Err(FieldError(format!(
                "is {n_chars} characters long, at most {max_chars} are allowed"
            )));
        }
        Ok(BoundedText(trimmed.to_owned()))
    }

    /// Like [`BoundedText::parse`], but empty text is refused.
    pub fn parse_required(text: &str, max_chars: usize) -> Result<BoundedText, FieldError> {
        let parsed = Self::parse(text, max_chars)?;
        if parsed.0.is_empty() {
            return Err(FieldError::new("must not be empty"));
        }
        Ok(parsed)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_width_letters_digits_and_spaces_fold_to_half_width() {
        assert_eq!(fold_full_width("ＡＢＣ　１２３"), "ABC 123");
        assert_eq!(fold_full_width("王小明"), "王小明");
    }

    #[test]
    fn text_with_a_control_character_or_over_the_limit_is_refused() {
        assert!(BoundedText::parse("a\u{0}b", 10).is_err());
        assert!(BoundedText::parse("line\nbreak", 20).is_err());
        assert!(BoundedText::parse("abcdef", 5).is_err());
        assert_eq!(BoundedText::parse("  abc ", 5).unwrap().as_str(), "abc");
        assert!(BoundedText::parse_required("   ", 5).is_err());
    }
}
