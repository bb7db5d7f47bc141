use hie_core::Error;
use hie_core::domain::{
    BirthDate, BoundedText, DivisionCode, Ethnicity, Identifier, IdentifierSystem, OrganisationCode,
    PersonName, Phone, ResidentId, Sex,
};

/// Demographics as one source states them. Every field but the name may be missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demographics {
    pub name: PersonName,
    pub sex: Option<Sex>,
    pub birth_date: Option<BirthDate>,
    pub ethnicity: Option<Ethnicity>,
    pub phone: Option<Phone>,
    pub division: Option<DivisionCode>,
    pub address_line: BoundedText,
}

impl Demographics {
    pub const MAX_ADDRESS_LINE_CHARS: usize = 200;
}

/// An organisation's record of one patient, checked and ready to register. Built only through
/// [`SourceRecordDraft::new`], which enforces the rules that span fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecordDraft {
    organisation: OrganisationCode,
    local_patient_number: Identifier,
    demographics: Demographics,
    identifiers: Vec<Identifier>,
}

impl SourceRecordDraft {
    /// The most identifiers one record may carry besides its local patient number.
    pub const MAX_IDENTIFIERS: usize = 20;

    /// `identifiers` are the request's, in request order, for error messages that name
    /// `identifiers[i]`. Duplicates are dropped.
    pub fn new(
        organisation: OrganisationCode,
        local_patient_number: &str,
        demographics: Demographics,
        identifiers: Vec<Identifier>,
    ) -> Result<SourceRecordDraft, Error> {
        let local = Identifier::local_patient_number(&organisation, local_patient_number)
            .map_err(|e| Error::invalid("local_patient_number", e.0))?;
        if identifiers.len() > Self::MAX_IDENTIFIERS {
            return Err(Error::invalid(
                "identifiers",
                format!(
                    "has {} entries, at most {} are allowed",
                    identifiers.len(),
                    Self::MAX_IDENTIFIERS
                ),
            ));
        }
        let mut resident_id: Option<ResidentId> = None;
        let mut kept: Vec<Identifier> = Vec::with_capacity(identifiers.len());
        for (i, identifier) in identifiers.into_iter().enumerate() {
            let field = format!("identifiers[{i}]");
            if let IdentifierSystem::LocalPatientNumber(_) = identifier.system() {
                return Err(Error::invalid(
                    format!("{field}.system"),
                    "local patient numbers are submitted only by their own organisation, as local_patient_number",
                ));
            }
            if let Some(id) = identifier.as_resident_id() {
                if resident_id.as_ref().is_some_and(|earlier| *earlier != id) {
                    return Err(Error::invalid(
                        format!("{field}.value"),
                        "a record carries at most one resident identity number",
                    ));
                }
                id.check_agrees_with(demographics.birth_date, demographics.sex)
                    .map_err(|e| Error::invalid(format!("{field}.value"), e.0))?;
                resident_id = Some(id);
            }
            if !kept.contains(&identifier) {
                kept.push(identifier);
            }
        }
        Ok(SourceRecordDraft {
            organisation,
            local_patient_number: local,
            demographics,
            identifiers: kept,
        })
    }

    pub fn organisation(&self) -> &OrganisationCode {
        &self.organisation
    }

    /// The organisation's local patient number, as the identifier `urn:hie:org:<CODE>:patient`.
    pub fn local_patient_number(&self) -> &Identifier {
        &self.local_patient_number
    }

    pub fn demographics(&self) -> &Demographics {
        &self.demographics
    }

    /// The identifiers the record asserts, without its local patient number.
    pub fn identifiers(&self) -> &[Identifier] {
        &self.identifiers
    }

    /// Every identifier the record asserts: the local patient number first, then the others.
    pub fn all_identifiers(&self) -> impl Iterator<Item = &Identifier> {
        std::iter::once(&self.local_patient_number).chain(&self.identifiers)
    }

    pub fn resident_id(&self) -> Option<ResidentId> {
        self.identifiers.iter().find_map(Identifier::as_resident_id)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn demographics(name: &str, sex: &str, birth_date: &str) -> Demographics {
        Demographics {
            name: PersonName::parse(name).unwrap(),
            sex: Some(Sex::parse(sex).unwrap()),
            birth_date: Some(BirthDate::parse(birth_date).unwrap()),
            ethnicity: None,
            phone: None,
            division: None,
            address_line: BoundedText::default(),
        }
    }

    pub fn resident(id: &str) -> Identifier {
        Identifier::parse(IdentifierSystem::RESIDENT_ID, id).unwrap()
    }

    pub fn with_check(first_17: &str) -> String {
        format!(
            "{first_17}{}",
            ResidentId::check_character(first_17.as_bytes()) as char
        )
    }

    fn organisation() -> OrganisationCode {
        OrganisationCode::parse("QDN-H01").unwrap()
    }

    #[test]
    fn a_record_keeps_its_local_number_as_an_identifier_of_its_organisation() {
        let draft = SourceRecordDraft::new(
            organisation(),
            "MZ001",
            demographics("王芳", "2", "1949-12-31"),
            vec![],
        )
        .unwrap();
        assert_eq!(
            draft.local_patient_number().system_uri(),
            "urn:hie:org:QDN-H01:patient"
        );
        assert_eq!(draft.all_identifiers().count(), 1);
    }

    #[test]
    fn a_sex_digit_contradicting_the_stated_sex_is_refused_naming_the_identifier() {
        let error = SourceRecordDraft::new(
            organisation(),
            "MZ001",
            demographics("王芳", "1", "1949-12-31"),
            vec![resident("11010519491231002X")],
        )
        .unwrap_err();
        assert!(matches!(error, Error::InvalidArgument { ref field, .. } if field == "identifiers[0].value"));
    }

    #[test]
    fn two_different_resident_ids_on_one_record_are_refused() {
        let error = SourceRecordDraft::new(
            organisation(),
            "MZ001",
            demographics("王芳", "2", "1949-12-31"),
            vec![
                resident("11010519491231002X"),
                resident(&with_check("11010519491231004")),
            ],
        );
        assert!(error.is_err());
    }

    #[test]
    fn another_organisations_local_number_cannot_be_asserted() {
        let other = Identifier::parse("urn:hie:org:QDN-H02:patient", "123").unwrap();
        let error = SourceRecordDraft::new(
            organisation(),
            "MZ001",
            demographics("王芳", "2", "1949-12-31"),
            vec![other],
        )
        .unwrap_err();
        assert!(
            matches!(error, Error::InvalidArgument { ref field, .. } if field == "identifiers[0].system")
        );
    }

    #[test]
    fn duplicate_identifiers_are_kept_once() {
        let draft = SourceRecordDraft::new(
            organisation(),
            "MZ001",
            demographics("王芳", "2", "1949-12-31"),
            vec![resident("11010519491231002X"), resident("11010519491231002x")],
        )
        .unwrap();
        assert_eq!(draft.identifiers().len(), 1);
    }
}
