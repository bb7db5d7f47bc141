//! What a subscription asks for (its filter) and what its organisation's kind is entitled to
//! receive (its entitlement). Both are pure: the delivery loop hands them the facts (whether the
//! organisation keeps a record of the person, where the event happened).

use hie_core::domain::{DivisionCode, OrganisationCode};
use hie_core::vocabulary::EventType;
use hie_core::{Error, ResultExt};
use hie_directory::domain::OrganisationKind;
use serde::{Deserialize, Serialize};

use super::log::LoggedEvent;

/// The notifiable infectious diseases of the People's Republic of China (classes A, B and C of
/// the Law on the Prevention and Treatment of Infectious Diseases), as ICD-10 ranges of
/// three-character categories, or one code where only a subcategory is notifiable.
const NOTIFIABLE: &[(&str, &str)] = &[
    ("A00", "A00"), // cholera (class A)
    ("A20", "A20"), // plague (class A)
    ("A01", "A01"), // typhoid and paratyphoid
    ("A02", "A09"), // other intestinal infections: bacillary and amoebic dysentery, infectious diarrhoea
    ("A15", "A19"), // tuberculosis
    ("A22", "A23"), // anthrax, brucellosis
    ("A27", "A27"), // leptospirosis
    ("A30", "A30"), // leprosy
    ("A33", "A37"), // neonatal tetanus, diphtheria, pertussis
    ("A38", "A39"), // scarlet fever, meningococcal infection
    ("A50", "A54"), // syphilis, gonorrhoea
    ("A75", "A75"), // epidemic typhus
    ("A80", "A80"), // poliomyelitis
    ("A82", "A83"), // rabies, Japanese encephalitis
    ("A90", "A91"), // dengue
    ("A98", "A98"), // haemorrhagic fever with renal syndrome
    ("B05", "B06"), // measles, rubella
    ("B08", "B08"), // hand, foot and mouth disease (B08.4) and mpox-like orthopoxviruses
    ("B15", "B19"), // viral hepatitis
    ("B20", "B24"), // HIV disease
    ("B26", "B26"), // mumps
    ("B50", "B54"), // malaria
    ("B65", "B65"), // schistosomiasis
    ("B67", "B67"), // echinococcosis
    ("B74", "B74"), // filariasis
    ("J09", "J11"), // influenza, including avian influenza
    ("U04", "U04"), // SARS
    ("U07", "U07"), // COVID-19
];

/// Pregnancy, childbirth, the perinatal period, births and reproduction (family planning).
const MATERNAL_AND_NEWBORN: &[(&str, &str)] = &[("O00", "O99"), ("P00", "P96"), ("Z30", "Z39")];

fn category_in(code: &str, ranges: &[(&str, &str)]) -> bool {
    let category = code.get(..3).unwrap_or(code);
    ranges.iter().any(|(from, to)| (*from..=*to).contains(&category))
}

/// Whether an ICD-10 code is of a notifiable infectious disease.
pub fn is_notifiable(code: &str) -> bool {
    category_in(code, NOTIFIABLE)
}

/// The event types that concern a patient's care, which the organisations treating them may hear.
const PATIENT_EVENTS: &[EventType] = &[
    EventType::RecordLinked,
    EventType::PersonMerged,
    EventType::PersonUnmerged,
    EventType::HealthRecordSubmitted,
    EventType::EncounterRegistered,
    EventType::DocumentRegistered,
    EventType::DocumentReplaced,
    EventType::CardLinked,
    EventType::CardLost,
    EventType::CardRevoked,
];

const CONSULT_EVENTS: &[EventType] = &[
    EventType::ConsultRequested,
    EventType::ConsultAccepted,
    EventType::ConsultDeclined,
    EventType::ConsultCompleted,
    EventType::ConsultCancelled,
];

/// What an organisation's kind is entitled to receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entitlement {
    /// A public-health agency: notifiable diagnoses and immunisations.
    NotifiableDiseases,
    /// A family-planning agency: maternal and child health, births.
    MaternalAndChildHealth,
    /// An insurer: the visits of persons it keeps a record of (its insured).
    VisitsOfInsured,
    /// A hospital or clinic: events about its own patients, and its consults.
    OwnPatients,
    /// The regional health authority (and an operator on loopback): every event.
    Everything,
    /// Anyone else (a patient portal).
    Nothing,
}

impl Entitlement {
    pub fn of_kind(kind: OrganisationKind) -> Entitlement {
        match kind {
            OrganisationKind::PublicHealthAgency => Entitlement::NotifiableDiseases,
            OrganisationKind::FamilyPlanningAgency => Entitlement::MaternalAndChildHealth,
            OrganisationKind::Insurer => Entitlement::VisitsOfInsured,
            OrganisationKind::RegionalHealthAuthority => Entitlement::Everything,
            OrganisationKind::PatientPortal => Entitlement::Nothing,
            kind if kind.is_care_giving() => Entitlement::OwnPatients,
            _ => Entitlement::Nothing,
        }
    }

    /// The event types it may subscribe to.
    pub fn event_types(self) -> Vec<EventType> {
        let clinical = [
            EventType::HealthRecordSubmitted,
            EventType::EncounterRegistered,
            EventType::DocumentRegistered,
        ];
        match self {
            Entitlement::NotifiableDiseases | Entitlement::MaternalAndChildHealth => clinical.to_vec(),
            Entitlement::VisitsOfInsured => vec![EventType::EncounterRegistered],
            Entitlement::OwnPatients => PATIENT_EVENTS.iter().chain(CONSULT_EVENTS).copied().collect(),
            Entitlement::Everything => EventType::ALL.to_vec(),
            Entitlement::Nothing => Vec::new(),
        }
    }

    /// Whether it needs to know if the subscriber keeps a record of the event's person.
    pub fn asks_whose_patient(self) -> bool {
        matches!(self, Entitlement::VisitsOfInsured | Entitlement::OwnPatients)
    }

    /// Whether `subscriber` may receive the event; `keeps_record` says whether it keeps a record
    /// of the event's person (asked only where [`Self::asks_whose_patient`]).
    pub fn permits(
        self,
        event: &LoggedEvent,
        subscriber: Option<&OrganisationCode>,
        keeps_record: bool,
    ) -> bool {
        let Some(event_type) = event.event_type else {
            return false;
        };
        if !self.event_types().contains(&event_type) {
            return false;
        }
        let facts = &event.facts;
        match self {
            Entitlement::NotifiableDiseases => {
                facts.codes.iter().any(|code| is_notifiable(code))
                    || facts.entry_type.as_deref() == Some("immunisation")
            }
            Entitlement::MaternalAndChildHealth => {
                facts
                    .codes
                    .iter()
                    .any(|code| category_in(code, MATERNAL_AND_NEWBORN))
                    || matches!(
                        facts.entry_type.as_deref(),
                        Some("maternal_health" | "child_health")
                    )
            }
            Entitlement::VisitsOfInsured => keeps_record,
            Entitlement::OwnPatients if CONSULT_EVENTS.contains(&event_type) => {
                subscriber.is_some_and(|s| facts.parties.iter().any(|p| p == s.as_str()))
            }
            Entitlement::OwnPatients => keeps_record,
            Entitlement::Everything => true,
            Entitlement::Nothing => false,
        }
    }
}

/// A subscription's filter as given (and stored, as JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFilter {
    pub event_types: Vec<String>,
    pub class_codes: Vec<String>,
    pub icd10_prefixes: Vec<String>,
    pub organisations: Vec<String>,
    pub divisions: Vec<String>,
}

/// A filter whose every value was checked, ready to match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedFilter {
    pub event_types: Vec<EventType>,
    pub class_codes: Vec<String>,
    /// Upper case, without the dot.
    pub icd10_prefixes: Vec<String>,
    pub organisations: Vec<OrganisationCode>,
    /// Region prefixes of the divisions.
    pub division_prefixes: Vec<String>,
}

fn without_dot(code: &str) -> String {
    code.chars()
        .filter(|c| *c != '.')
        .collect::<String>()
        .to_uppercase()
}

/// Checks an ICD-10 prefix: a letter, up to two digits, then optionally a dot and 1 to 4
/// letters or digits (only after two digits).
fn icd10_prefix(text: &str) -> Result<String, String> {
    let text = text.trim();
    let (head, tail) = match text.split_once('.') {
        Some((head, tail)) => (head, Some(tail)),
        None => (text, None),
    };
    let mut chars = head.chars();
    let letter_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let digits: String = chars.collect();
    let digits_ok = digits.len() <= 2 && digits.bytes().all(|b| b.is_ascii_digit());
    let tail_ok = tail.is_none_or(|t| {
        digits.len() == 2 && (1..=4).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    if letter_ok && digits_ok && tail_ok {
        Ok(without_dot(text))
    } else {
        Err(format!(
            "'{}' is not an ICD-10 code prefix (a letter, up to two digits, optionally a dot and up to 4 more: A0, B20, U07.1)",
            text.chars().take(16).collect::<String>()
        ))
    }
}

impl EventFilter {
    /// Checks every value, naming the field (`filter.icd10_prefixes[2]`) of the first bad one, and
    /// that every event type is one `entitlement` allows.
    pub fn check(&self, entitlement: Entitlement) -> Result<CheckedFilter, Error> {
        let allowed = entitlement.event_types();
        let mut event_types = Vec::with_capacity(self.event_types.len());
        for (i, code) in self.event_types.iter().enumerate() {
            let field = format!("filter.event_types[{i}]");
            let event_type = EventType::parse(code.trim()).ok_or_else(|| {
                Error::invalid(
                    &field,
                    format!(
                        "'{}' is not an event type",
                        code.chars().take(64).collect::<String>()
                    ),
                )
            })?;
            if !allowed.contains(&event_type) {
                return Err(Error::PermissionDenied(format!(
                    "{field}: the calling organisation's kind is not entitled to {event_type} events"
                )));
            }
            event_types.push(event_type);
        }
        let mut class_codes = Vec::with_capacity(self.class_codes.len());
        for (i, code) in self.class_codes.iter().enumerate() {
            let code = code.trim();
            if code.is_empty() || code.len() > 64 || code.chars().any(char::is_whitespace) {
                return Err(Error::invalid(
                    format!("filter.class_codes[{i}]"),
                    "must be 1 to 64 characters without spaces",
                ));
            }
            class_codes.push(code.to_owned());
        }
        let icd10_prefixes = self
            .icd10_prefixes
            .iter()
            .enumerate()
            .map(|(i, prefix)| {
                icd10_prefix(prefix)
                    .map_err(|reason| Error::invalid(format!("filter.icd10_prefixes[{i}]"), reason))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let organisations = self
            .organisations
            .iter()
            .enumerate()
            .map(|(i, code)| OrganisationCode::parse(code).field(&format!("filter.organisations[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let division_prefixes = self
            .divisions
            .iter()
            .enumerate()
            .map(|(i, code)| {
                DivisionCode::parse(code)
                    .field(&format!("filter.divisions[{i}]"))
                    .map(|d| d.region_prefix().to_owned())
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (field, count) in [
            ("filter.event_types", self.event_types.len()),
            ("filter.class_codes", self.class_codes.len()),
            ("filter.icd10_prefixes", self.icd10_prefixes.len()),
            ("filter.organisations", self.organisations.len()),
            ("filter.divisions", self.divisions.len()),
        ] {
            if count > 200 {
                return Err(Error::invalid(field, "has more than 200 values"));
            }
        }
        Ok(CheckedFilter {
            event_types,
            class_codes,
            icd10_prefixes,
            organisations,
            division_prefixes,
        })
    }
}

impl CheckedFilter {
    /// Whether the event matches, given the division of the organisation where it happened
    /// (asked only when the filter names divisions).
    pub fn matches(&self, event: &LoggedEvent, division: Option<&str>) -> bool {
        let types_ok =
            self.event_types.is_empty() || event.event_type.is_some_and(|t| self.event_types.contains(&t));
        let class_ok = self.class_codes.is_empty()
            || event
                .facts
                .class_code
                .as_ref()
                .is_some_and(|c| self.class_codes.contains(c));
        let codes_ok = self.icd10_prefixes.is_empty()
            || event.facts.codes.iter().any(|code| {
                let code = without_dot(code);
                self.icd10_prefixes
                    .iter()
                    .any(|prefix| code.starts_with(prefix.as_str()))
            });
        let organisation_ok = self.organisations.is_empty()
            || event
                .organisation
                .as_ref()
                .is_some_and(|o| self.organisations.contains(o));
        let division_ok = self.division_prefixes.is_empty()
            || division.is_some_and(|d| self.division_prefixes.iter().any(|p| d.starts_with(p.as_str())));
        types_ok && class_ok && codes_ok && organisation_ok && division_ok
    }

    pub fn names_divisions(&self) -> bool {
        !self.division_prefixes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(topic: &str, payload: &str, organisation: &str) -> LoggedEvent {
        LoggedEvent::from_row(
            7,
            "id".into(),
            topic.into(),
            None,
            Some(organisation.into()),
            1,
            payload.into(),
            0,
        )
    }

    #[test]
    fn a_public_health_agency_hears_notifiable_diseases_and_immunisations_only() {
        let agency = Entitlement::of_kind(OrganisationKind::PublicHealthAgency);
        let cholera = event(
            EventType::EncounterRegistered.code(),
            r#"{"diagnoses":["A00.1"]}"#,
            "QDN-H01",
        );
        let depression = event(
            EventType::DocumentRegistered.code(),
            r#"{"event_codes":["F32.1"]}"#,
            "QDN-H01",
        );
        let vaccine = event(
            EventType::HealthRecordSubmitted.code(),
            r#"{"entry_type":"immunisation"}"#,
            "QDN-C01",
        );
        let hypertension = event(
            EventType::HealthRecordSubmitted.code(),
            r#"{"entry_type":"hypertension_follow_up","diagnoses":["I10"]}"#,
            "QDN-C01",
        );
        let card = event(EventType::CardLost.code(), "{}", "QDN-H01");
        assert!(agency.permits(&cholera, None, false));
        assert!(agency.permits(&vaccine, None, false));
        assert!(!agency.permits(&depression, None, false));
        assert!(!agency.permits(&hypertension, None, false));
        assert!(!agency.permits(&card, None, false));
        let family = Entitlement::of_kind(OrganisationKind::FamilyPlanningAgency);
        let birth = event(
            EventType::EncounterRegistered.code(),
            r#"{"diagnoses":["Z37.0","O80"]}"#,
            "QDN-H01",
        );
        assert!(family.permits(&birth, None, false));
        assert!(!family.permits(&cholera, None, false));
    }

    #[test]
    fn an_insurer_hears_visits_of_its_insured_and_a_hospital_its_own_consults() {
        let insurer = Entitlement::of_kind(OrganisationKind::Insurer);
        let visit = event(
            EventType::EncounterRegistered.code(),
            r#"{"diagnoses":[]}"#,
            "QDN-H01",
        );
        assert!(insurer.permits(&visit, None, true));
        assert!(!insurer.permits(&visit, None, false));
        let hospital = Entitlement::of_kind(OrganisationKind::Hospital);
        let consult = event(
            EventType::ConsultRequested.code(),
            r#"{"requesting_organisation_code":"QDN-C01","consulting_organisation_code":"QDN-H01"}"#,
            "QDN-C01",
        );
        let party = OrganisationCode::parse("QDN-H01").unwrap();
        let stranger = OrganisationCode::parse("QDN-H02").unwrap();
        assert!(hospital.permits(&consult, Some(&party), false));
        assert!(!hospital.permits(&consult, Some(&stranger), true));
        assert!(!Entitlement::of_kind(OrganisationKind::PatientPortal).permits(&visit, None, true));
    }

    #[test]
    fn filters_match_by_type_class_code_prefix_organisation_and_division() {
        let filter = EventFilter {
            icd10_prefixes: vec!["a0".into(), "U07.1".into()],
            divisions: vec!["522600".into()],
            ..Default::default()
        }
        .check(Entitlement::Everything)
        .unwrap();
        let covid = event(
            EventType::EncounterRegistered.code(),
            r#"{"diagnoses":["U07.1"]}"#,
            "QDN-H01",
        );
        let flu = event(
            EventType::EncounterRegistered.code(),
            r#"{"diagnoses":["J10.1"]}"#,
            "QDN-H01",
        );
        assert!(filter.matches(&covid, Some("522601")));
        assert!(!filter.matches(&covid, Some("520100")));
        assert!(!filter.matches(&covid, None));
        assert!(!filter.matches(&flu, Some("522601")));
        let documents = EventFilter {
            class_codes: vec!["11488-4".into()],
            ..Default::default()
        }
        .check(Entitlement::Everything)
        .unwrap();
        assert!(!documents.matches(&covid, None));
    }

    #[test]
    fn malformed_filters_name_the_field() {
        let bad = |filter: EventFilter| filter.check(Entitlement::Everything).unwrap_err().to_string();
        for prefix in ["", "1A", "A123", "A1.2", "U07.12345", "A0-"] {
            let message = bad(EventFilter {
                icd10_prefixes: vec!["A00".into(), prefix.into()],
                ..Default::default()
            });
            assert!(
                message.contains("filter.icd10_prefixes[1]"),
                "{prefix}: {message}"
            );
        }
        assert!(
            bad(EventFilter {
                event_types: vec!["emr.nothing".into()],
                ..Default::default()
            })
            .contains("filter.event_types[0]")
        );
        assert!(
            bad(EventFilter {
                divisions: vec!["99".into()],
                ..Default::default()
            })
            .contains("filter.divisions[0]")
        );
        let refused = EventFilter {
            event_types: vec![EventType::CardLost.code().into()],
            ..Default::default()
        }
        .check(Entitlement::NotifiableDiseases)
        .unwrap_err();
        assert!(matches!(refused, Error::PermissionDenied(_)));
    }
}
