use chrono::{DateTime, Utc};
use hie_access::domain::consent::DataCategory;
use hie_core::Error;
use hie_core::context::{Entitlements, Purpose, Role};
use hie_core::domain::{BoundedText, DivisionCode, OrganisationCode};

/// What an organisation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrganisationKind {
    Hospital,
    TownshipHealthCentre,
    CommunityHealthCentre,
    VillageClinic,
    PublicHealthAgency,
    /// Maternal and child health and family planning (妇幼保健计划生育).
    FamilyPlanningAgency,
    Insurer,
    /// The regional health authority: the only kind whose systems may assert `administrator`.
    RegionalHealthAuthority,
    /// The residents' app back end: the only kind whose systems may assert `patient`.
    PatientPortal,
}

impl OrganisationKind {
    /// Kinds that treat patients: their clinicians may break the glass.
    pub fn is_care_giving(self) -> bool {
        matches!(
            self,
            OrganisationKind::Hospital
                | OrganisationKind::TownshipHealthCentre
                | OrganisationKind::CommunityHealthCentre
                | OrganisationKind::VillageClinic
        )
    }

    /// The most an organisation of this kind may be entitled to assert, and what it is entitled
    /// to unless the directory says less. Administrator belongs to the regional health authority
    /// alone, patient to patient portals alone, emergency to care-giving kinds alone.
    pub fn entitlement_ceiling(self) -> Entitlements {
        use Purpose::*;
        match self {
            kind if kind.is_care_giving() => Entitlements::new(
                &[Role::Clinician, Role::Nurse, Role::RegistrationClerk],
                &[Treatment, Emergency, Payment, PublicHealth],
            ),
            OrganisationKind::PublicHealthAgency | OrganisationKind::FamilyPlanningAgency => {
                Entitlements::new(&[Role::PublicHealthOfficer], &[PublicHealth, Research])
            }
            OrganisationKind::Insurer => Entitlements::new(&[Role::Insurer], &[Payment]),
            OrganisationKind::RegionalHealthAuthority => Entitlements::new(
                &[Role::Administrator, Role::PublicHealthOfficer],
                &[Operations, PublicHealth, Research],
            ),
            OrganisationKind::PatientPortal => Entitlements::new(&[Role::Patient], &[PatientRequest]),
            _ => Entitlements::new(&[], &[]),
        }
    }
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
    FamilyPlanningAgency => "family_planning_agency",
    Insurer => "insurer",
    RegionalHealthAuthority => "regional_health_authority",
    PatientPortal => "patient_portal",
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
    /// The roles and purposes its systems may assert; within its kind's ceiling.
    pub entitlements: Entitlements,
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
            entitlements: kind.entitlement_ceiling(),
        })
    }

    /// Narrows what the organisation may assert; `None` keeps its kind's defaults. Anything beyond
    /// the kind's ceiling is refused, naming the field and the first entry too many.
    pub fn with_entitlements(
        mut self,
        field_prefix: &str,
        roles: Option<Vec<Role>>,
        purposes: Option<Vec<Purpose>>,
    ) -> Result<OrganisationDraft, Error> {
        let ceiling = self.kind.entitlement_ceiling();
        let beyond = |field: &str, what: &str, code: &str, allowed: String| {
            Error::invalid(
                format!("{field_prefix}.{field}"),
                format!(
                    "an organisation of kind {} may not assert {what} {code}; its kind allows {allowed}",
                    self.kind.code()
                ),
            )
        };
        if let Some(role) = roles.iter().flatten().find(|r| !ceiling.allows_role(**r)) {
            return Err(beyond(
                "assertable_roles",
                "role",
                role.code(),
                ceiling.role_codes(", "),
            ));
        }
        if let Some(purpose) = purposes.iter().flatten().find(|p| !ceiling.allows_purpose(**p)) {
            return Err(beyond(
                "assertable_purposes",
                "purpose",
                purpose.code(),
                ceiling.purpose_codes(", "),
            ));
        }
        self.entitlements = Entitlements::new(
            &roles.unwrap_or_else(|| ceiling.roles()),
            &purposes.unwrap_or_else(|| ceiling.purposes()),
        );
        Ok(self)
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
    fn administrator_is_the_authoritys_alone_and_patient_the_portals_alone() {
        for kind in [
            OrganisationKind::Hospital,
            OrganisationKind::TownshipHealthCentre,
            OrganisationKind::CommunityHealthCentre,
            OrganisationKind::VillageClinic,
            OrganisationKind::PublicHealthAgency,
            OrganisationKind::FamilyPlanningAgency,
            OrganisationKind::Insurer,
            OrganisationKind::RegionalHealthAuthority,
            OrganisationKind::PatientPortal,
        ] {
            let ceiling = kind.entitlement_ceiling();
            assert_eq!(
                ceiling.allows_role(Role::Administrator),
                kind == OrganisationKind::RegionalHealthAuthority
            );
            assert_eq!(
                ceiling.allows_role(Role::Patient),
                kind == OrganisationKind::PatientPortal
            );
            assert_eq!(ceiling.allows_purpose(Purpose::Emergency), kind.is_care_giving());
        }
    }

    #[test]
    fn entitlements_narrow_within_the_kinds_ceiling_and_never_beyond() {
        let hospital = draft(OrganisationKind::Hospital, Some(HospitalGrade::TertiaryA)).unwrap();
        let narrowed = hospital
            .clone()
            .with_entitlements("organisation", Some(vec![Role::RegistrationClerk]), None)
            .unwrap();
        assert_eq!(narrowed.entitlements.roles(), vec![Role::RegistrationClerk]);
        assert!(narrowed.entitlements.allows_purpose(Purpose::Emergency));
        let widened = hospital
            .with_entitlements("organisation", Some(vec![Role::Administrator]), None)
            .unwrap_err();
        assert!(
            matches!(widened, Error::InvalidArgument { ref field, .. } if field == "organisation.assertable_roles")
        );
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
