use super::{OrganisationCode, ResidentId};
use crate::error::FieldError;

/// The identifier systems the exchange accepts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IdentifierSystem {
    /// `urn:hie:id:resident`: the resident identity number of GB 11643.
    ResidentId,
    /// `urn:hie:id:passport`: a passport number.
    Passport,
    /// `urn:hie:org:<CODE>:patient`: an organisation's local patient number.
    LocalPatientNumber(OrganisationCode),
}

impl IdentifierSystem {
    pub const RESIDENT_ID: &'static str = "urn:hie:id:resident";
    pub const PASSPORT: &'static str = "urn:hie:id:passport";

    pub fn parse(text: &str) -> Result<IdentifierSystem, FieldError> {
        match text.trim() {
            Self::RESIDENT_ID => Ok(IdentifierSystem::ResidentId),
            Self::PASSPORT => Ok(IdentifierSystem::Passport),
            other => {
                let code = other
                    .strip_prefix("urn:hie:org:")
                    .and_then(|rest| rest.strip_suffix(":patient"))
                    .ok_or_else(|| {
                        FieldError(format!(
                            "'{}' is not a known identifier system, expected {}, {} or urn:hie:org:<CODE>:patient",
                            other.chars().take(60).collect::<String>(),
                            Self::RESIDENT_ID,
                            Self::PASSPORT
                        ))
                    })?;
                let code = OrganisationCode::parse(code)
                    .map_err(|e| FieldError(format!("organisation code in the system {}", e.0)))?;
                Ok(IdentifierSystem::LocalPatientNumber(code))
            }
        }
    }

    pub fn uri(&self) -> String {
        match self {
            IdentifierSystem::ResidentId => Self::RESIDENT_ID.to_owned(),
            IdentifierSystem::Passport => Self::PASSPORT.to_owned(),
            IdentifierSystem::LocalPatientNumber(code) => format!("urn:hie:org:{code}:patient"),
        }
    }
}

/// An identifier whose value has been checked for its system.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identifier {
    system: IdentifierSystem,
    value: String,
}

/// Which part of an identifier was wrong, so the caller can name `.system` or `.value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentifierError {
    System(FieldError),
    Value(FieldError),
}

impl IdentifierError {
    /// The error as an invalid-argument error on `prefix.system` or `prefix.value`.
    pub fn at(self, prefix: &str) -> crate::Error {
        match self {
            IdentifierError::System(e) => crate::Error::invalid(format!("{prefix}.system"), e.0),
            IdentifierError::Value(e) => crate::Error::invalid(format!("{prefix}.value"), e.0),
        }
    }
}

impl Identifier {
    pub fn parse(system: &str, value: &str) -> Result<Identifier, IdentifierError> {
        let system = IdentifierSystem::parse(system).map_err(IdentifierError::System)?;
        let value = Self::parse_value(&system, value).map_err(IdentifierError::Value)?;
        Ok(Identifier { system, value })
    }

    /// An organisation's local patient number as an identifier.
    pub fn local_patient_number(
        organisation: &OrganisationCode,
        number: &str,
    ) -> Result<Identifier, FieldError> {
        let system = IdentifierSystem::LocalPatientNumber(organisation.clone());
        let value = Self::parse_value(&system, number)?;
        Ok(Identifier { system, value })
    }

    /// A checked resident identity number as an identifier.
    pub fn resident(id: &ResidentId) -> Identifier {
        Identifier {
            system: IdentifierSystem::ResidentId,
            value: id.as_str().to_owned(),
        }
    }

    fn parse_value(system: &IdentifierSystem, value: &str) -> Result<String, FieldError> {
        let value = value.trim();
        match system {
            IdentifierSystem::ResidentId => ResidentId::parse(value).map(|id| id.as_str().to_owned()),
            IdentifierSystem::Passport => {
                let upper = value.to_ascii_uppercase();
                if (5..=20).contains(&upper.len()) && upper.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    Ok(upper)
                } else {
                    Err(FieldError::new(
                        "is not a passport number, expected 5 to 20 letters and digits",
                    ))
                }
            }
            IdentifierSystem::LocalPatientNumber(_) => {
                if value.is_empty() {
                    Err(FieldError::new("must not be empty"))
                } else if value.len() > 40 {
                    Err(FieldError(format!(
                        "is {} characters long, at most 40 are allowed",
                        value.chars().count()
                    )))
                } else if !value.bytes().all(|b| b.is_ascii_graphic()) {
                    Err(FieldError::new("must be printable ASCII without spaces"))
                } else {
                    Ok(value.to_owned())
                }
            }
        }
    }

    pub fn system(&self) -> &IdentifierSystem {
        &self.system
    }

    pub fn system_uri(&self) -> String {
        self.system.uri()
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    /// The resident identity number, if this identifier is one.
    pub fn as_resident_id(&self) -> Option<ResidentId> {
        match self.system {
            IdentifierSystem::ResidentId => Some(ResidentId::from_checked(self.value.clone())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_systems_parse() {
        let id = Identifier::parse("urn:hie:id:resident", "11010519491231002x").unwrap();
        assert_eq!(id.value(), "11010519491231002X");
        let local = Identifier::parse("urn:hie:org:qdn-h01:patient", "MZ-0001").unwrap();
        assert_eq!(local.system_uri(), "urn:hie:org:QDN-H01:patient");
        assert!(Identifier::parse("urn:hie:id:passport", "e12345678").is_ok());
    }

    #[test]
    fn an_identifier_with_an_unknown_system_is_refused() {
        assert!(matches!(
            Identifier::parse("urn:oid:1.2.3", "x"),
            Err(IdentifierError::System(_))
        ));
        assert!(matches!(
            Identifier::parse("urn:hie:org::patient", "x"),
            Err(IdentifierError::System(_))
        ));
    }

    #[test]
    fn a_value_that_does_not_fit_its_system_is_refused() {
        assert!(matches!(
            Identifier::parse("urn:hie:id:resident", "110105194912310021"),
            Err(IdentifierError::Value(_))
        ));
        assert!(matches!(
            Identifier::parse("urn:hie:org:H1:patient", "a b"),
            Err(IdentifierError::Value(_))
        ));
        assert!(matches!(
            Identifier::parse("urn:hie:id:passport", "E1"),
            Err(IdentifierError::Value(_))
        ));
    }
}
