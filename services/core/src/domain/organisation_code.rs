use crate::error::FieldError;

/// An organisation's code in the directory: 2 to 40 characters from A–Z, 0–9 and '-', stored in
/// upper case (lower-case input is accepted and folded).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrganisationCode(String);

impl OrganisationCode {
    pub fn parse(text: &str) -> Result<OrganisationCode, FieldError> {
        let code = text.trim().to_ascii_uppercase();
        if code.is_empty() {
            return Err(FieldError::new("must not be empty"));
        }
        if !(2..=40).contains(&code.len()) {
            return Err(FieldError(format!(
                "is {} characters long, expected 2 to 40",
                code.chars().count()
            )));
        }
        if let Some(c) = code
            .chars()
            .find(|c| !(c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(FieldError(format!(
                "contains '{}', expected only A-Z, 0-9 and '-'",
                c.escape_default()
            )));
        }
        Ok(OrganisationCode(code))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for OrganisationCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_folded_to_upper_case() {
        assert_eq!(OrganisationCode::parse(" qdn-h01 ").unwrap().as_str(), "QDN-H01");
    }

    #[test]
    fn empty_long_or_odd_codes_are_refused() {
        for code in ["", "A", &"A".repeat(41), "QDN H01", "QDN_H01", "医院"] {
            assert!(OrganisationCode::parse(code).is_err(), "{code}");
        }
    }
}
