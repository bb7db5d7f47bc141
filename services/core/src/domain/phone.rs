use crate::error::FieldError;

/// A mainland China phone number: a mobile number (11 digits, starting 13 to 19) or a landline
/// with its area code (0 then 9 to 11 more digits). Stored as digits only, without +86.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    pub fn parse(text: &str) -> Result<Phone, FieldError> {
        let mut digits = String::with_capacity(text.len());
        for c in super::fold_full_width(text).chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '(' | ')' | '+' => {}
                _ => {
                    return Err(FieldError(format!(
                        "contains '{c}', expected digits, spaces, '-', '(', ')' or '+'"
                    )));
                }
            }
        }
        let national = if text.trim_start().starts_with('+') || digits.starts_with("0086") {
            digits
                .strip_prefix("0086")
                .or_else(|| digits.strip_prefix("86"))
                .unwrap_or(&digits)
                .to_owned()
        } else {
            digits
        };
        let is_mobile = national.len() == 11
            && national.starts_with('1')
            && matches!(national.as_bytes()[1], b'3'..=b'9');
        let is_landline = national.starts_with('0') && (10..=12).contains(&national.len());
        if is_mobile || is_landline {
            Ok(Phone(national))
        } else {
            Err(FieldError::new(
                "is not a mainland phone number, expected an 11-digit mobile number starting 13 to 19 or a landline with its area code",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mobiles_and_landlines_in_common_spellings_parse() {
        assert_eq!(Phone::parse("13885501234").unwrap().as_str(), "13885501234");
        assert_eq!(Phone::parse("+86 138-8550-1234").unwrap().as_str(), "13885501234");
        assert_eq!(Phone::parse("0086 13885501234").unwrap().as_str(), "13885501234");
        assert_eq!(Phone::parse("(0855) 822-1234").unwrap().as_str(), "08558221234");
        assert_eq!(
            Phone::parse("１３８８５５０１２３４").unwrap().as_str(),
            "13885501234"
        );
    }

    #[test]
    fn numbers_that_are_not_mainland_phones_are_refused() {
        for text in [
            "12885501234",
            "1388550123",
            "138855012345",
            "8221234",
            "abc",
            "13885501234x",
            "",
        ] {
            assert!(Phone::parse(text).is_err(), "{text}");
        }
    }
}
