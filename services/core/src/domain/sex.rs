use crate::error::FieldError;

/// Sex as coded by GB/T 2261.1: 0 unknown, 1 male, 2 female, 9 not stated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    Unknown,
    Male,
    Female,
    NotStated,
}

impl Sex {
    pub fn parse(code: &str) -> Result<Sex, FieldError> {
        match code.trim() {
            "0" => Ok(Sex::Unknown),
            "1" => Ok(Sex::Male),
            "2" => Ok(Sex::Female),
            "9" => Ok(Sex::NotStated),
            other => Err(FieldError(format!(
                "'{}' is not a GB/T 2261.1 sex code, expected 0, 1, 2 or 9",
                other.chars().take(8).collect::<String>()
            ))),
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Sex::Unknown => "0",
            Sex::Male => "1",
            Sex::Female => "2",
            Sex::NotStated => "9",
        }
    }

    /// Whether the code says male or female, as opposed to unknown or not stated.
    pub fn is_known(self) -> bool {
        matches!(self, Sex::Male | Sex::Female)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_gb_codes_parse_and_others_are_refused() {
        for code in ["0", "1", "2", "9"] {
            assert_eq!(Sex::parse(code).unwrap().code(), code);
        }
        assert!(Sex::parse("3").is_err());
        assert!(Sex::parse("M").is_err());
        assert!(Sex::parse("").is_err());
    }
}
