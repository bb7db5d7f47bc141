use chrono::{DateTime, Utc};
use hie_access::domain::consent::DataCategory;
use hie_core::Error;
use hie_core::domain::{BoundedText, DivisionCode, OrganisationCode};

/// What an organisation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrganisationKind {
    Hospital,
    TownshipHealthCentre,
    CommunityHealthCentre,
    VillageClinic,
    PublicHealthAgency,
    Insurer,
}

/// Declares an enum's stable text codes, stored in the database, in one table.
macro_rules! text_codes {
    ($kind:ty { $($variant:ident => $code:literal),+ $(,)? }) => {
        impl $kind {
            pub fn code(self) -> &'static str {
                match self { $(Self::$variant => $code),+ }
            }
            pub fn from_code(code: &str) -> Option<Self> {
                match code { $($code => Some(Self::$variant),)+ _ => None }
            }
        }
    };
}
pub(crate) use text_codes;

text_codes!(OrganisationKind {
    Hospital => "hospital",
    TownshipHealthCentre => "township_health_centre",
    CommunityHealthCentre => "community_health_centre",
    VillageClinic => "village_clinic",
    PublicHealthAgency => "public_health_agency",
    Insurer => "insurer",
});

/// The national hospital grade: level (tertiary, secondary, primary) and class (A, B, C).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HospitalGrade {
    Ungraded,
    TertiaryA,
    TertiaryB,
    TertiaryC,
    SecondaryA,
    SecondaryB,
    SecondaryC,
    PrimaryA,
    PrimaryB,
    PrimaryC,
}

text_codes!(HospitalGrade {
    Ungraded => "ungraded",
    TertiaryA => "tertiary_a",
    TertiaryB => "tertiary_b",
    TertiaryC => "tertiary_c",
    SecondaryA => "secondary_a",
    SecondaryB => "secondary_b",
    SecondaryC => "secondary_c",
    PrimaryA => "primary_a",
    PrimaryB => "primary_b",
    PrimaryC => "primary_c",
});

/// An organisation's registrable content: everything but the timestamps. Built only through
/// [`OrganisationDraft::new`], which enforces the rules that span fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganisationDraft {
    pub code: OrganisationCode,
    pub name: BoundedText,
    pub kind: OrganisationKind,
    pub hospital_grade: Option<HospitalGrade>,
    pub division_code: DivisionCode,
    pub active: bool,
    /// Set where the organisation's very records reveal a sensitive category (a psychiatric
    /// hospital, an HIV/STI clinic, a family-planning station, a methadone clinic): they are shared
    /// only where the person consented to that category.
    pub sensitive_category: Option<DataCategory>,
}

impl OrganisationDraft {
    pub const MAX_NAME_CHARS: usize = 100;

    /// `field_prefix` is the request path of the organisation message, for error messages.
    pub fn new(
        field_prefix: &str,
        code: OrganisationCode,
        name: BoundedText,
        kind: OrganisationKind,
        hospital_grade: Option<HospitalGrade>,
        division_code: DivisionCode,
        active: bool,
    ) -> Result<OrganisationDraft, Error> {
        match (kind, hospital_grade) {
            (OrganisationKind::Hospital, None) => {
                return Err(Error::invalid(
                    format!("{field_prefix}.hospital_grade"),
                    "is required for a hospital (HOSPITAL_GRADE_UNGRADED if it has none)",
                ));
            }
            (OrganisationKind::Hospital, Some(_)) | (_, None) => {}
            (_, Some(_)) => {
                return Err(Error::invalid(
                    format!("{field_prefix}.hospital_grade"),
                    "applies to hospitals only; leave it unspecified for this kind",
                ));
            }
        }
        Ok(OrganisationDraft {
            code,
            name,
            kind,
            hospital_grade,
            division_code,
            active,
            sensitive_category: None,
        })
    }

    /// Marks the organisation's records as revealing `category`, which must be sensitive.
    pub fn with_sensitive_category(
        mut self,
        field: &str,
        category: Option<DataCategory>,
    ) -> Result<OrganisationDraft, Error> {
        if let Some(category) = category.filter(|c| !c.is_sensitive()) {
            return Err(Error::invalid(
                field,
                format!(
                    "{} is not a sensitive category; use one of {}",
                    category.code(),
                    DataCategory::SENSITIVE.map(DataCategory::code).join(", ")
                ),
            ));
        }
        self.sensitive_category = category;
        Ok(self)
    }
}

/// An organisation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organisation {
    pub draft: OrganisationDraft,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Organisation {
    pub fn code(&self) -> &OrganisationCode {
        &self.draft.code
    }

    pub fn is_active(&self) -> bool {
        self.draft.active
    }
}

/// Which organisations a listing returns.
#[derive(Debug, Clone, Default)]
pub struct OrganisationFilter {
    pub kind: Option<OrganisationKind>,
    pub division: Option<DivisionCode>,
    pub include_inactive: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(kind: OrganisationKind, grade: Option<HospitalGrade>) -> Result<OrganisationDraft, Error> {
        OrganisationDraft::new(
            "organisation",
            OrganisationCode::parse("QDN-H01").unwrap(),
            BoundedText::parse_required("黔东南州人民医院", 100).unwrap(),
            kind,
            grade,
            DivisionCode::parse("522601").unwrap(),
            true,
        )
    }

    #[test]
    fn a_hospital_needs_a_grade_and_nothing_else_may_have_one() {
        assert!(draft(OrganisationKind::Hospital, Some(HospitalGrade::TertiaryA)).is_ok());
        let error = draft(OrganisationKind::Hospital, None).unwrap_err();
        assert!(
            matches!(error, Error::InvalidArgument { ref field, .. } if field == "organisation.hospital_grade")
        );
        assert!(draft(OrganisationKind::VillageClinic, Some(HospitalGrade::PrimaryA)).is_err());
        assert!(draft(OrganisationKind::VillageClinic, None).is_ok());
    }

    #[test]
    fn text_codes_round_trip() {
        for kind in [
            OrganisationKind::Hospital,
            OrganisationKind::Insurer,
            OrganisationKind::VillageClinic,
        ] {
            assert_eq!(OrganisationKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(
            HospitalGrade::from_code("secondary_b"),
            Some(HospitalGrade::SecondaryB)
        );
        assert_eq!(HospitalGrade::from_code("fourth"), None);
    }
}
