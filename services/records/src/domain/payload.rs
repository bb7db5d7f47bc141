//! The structured content of each archive entry type (WS 365), with the checks a value must pass
//! before it is kept: coded values (ICD-10, the programme's vaccine codes), measurements in their
//! field's unit and within what a living body can show. Each payload is stored as JSON in this
//! shape, so a field added here is added with a default.

use chrono::NaiveDate;
use hie_access::domain::consent::DataCategory;
use hie_core::domain::Icd10Code;
use hie_core::{Error, ResultExt};
use serde::{Deserialize, Serialize};

/// The entry types of the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryType {
    BasicProfile,
    PhysicalExamination,
    HypertensionFollowUp,
    DiabetesFollowUp,
    MentalIllnessFollowUp,
    Immunisation,
    MaternalHealth,
    ChildHealth,
    ElderlyCare,
}

impl EntryType {
    pub const ALL: [EntryType; 9] = [
        EntryType::BasicProfile,
        EntryType::PhysicalExamination,
        EntryType::HypertensionFollowUp,
        EntryType::DiabetesFollowUp,
        EntryType::MentalIllnessFollowUp,
        EntryType::Immunisation,
        EntryType::MaternalHealth,
        EntryType::ChildHealth,
        EntryType::ElderlyCare,
    ];

    /// The code stored in the database.
    pub fn code(self) -> &'static str {
        match self {
            EntryType::BasicProfile => "basic_profile",
            EntryType::PhysicalExamination => "physical_examination",
            EntryType::HypertensionFollowUp => "hypertension_follow_up",
            EntryType::DiabetesFollowUp => "diabetes_follow_up",
            EntryType::MentalIllnessFollowUp => "mental_illness_follow_up",
            EntryType::Immunisation => "immunisation",
            EntryType::MaternalHealth => "maternal_health",
            EntryType::ChildHealth => "child_health",
            EntryType::ElderlyCare => "elderly_care",
        }
    }

    pub fn parse(code: &str) -> Option<EntryType> {
        Self::ALL.into_iter().find(|t| t.code() == code)
    }
}

/// Measurements taken at a visit; each optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VitalSigns {
    pub systolic_mmhg: Option<i32>,
    pub diastolic_mmhg: Option<i32>,
    pub heart_rate_bpm: Option<i32>,
    pub height_cm: Option<f64>,
    pub weight_kg: Option<f64>,
    pub temperature_celsius: Option<f64>,
}

/// The plausible range of a body measurement, for whom it is taken.
struct Ranges {
    height_cm: (f64, f64),
    weight_kg: (f64, f64),
}

const ADULT: Ranges = Ranges {
    height_cm: (20.0, 260.0),
    weight_kg: (0.3, 400.0),
};

const CHILD: Ranges = Ranges {
    height_cm: (20.0, 160.0),
    weight_kg: (0.3, 60.0),
};

fn within<T: PartialOrd + std::fmt::Display + Copy>(
    field: &str,
    value: T,
    (low, high): (T, T),
    unit: &str,
) -> Result<(), Error> {
    // NaN is within no range: both comparisons fail.
    if value >= low && value <= high {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("{value} {unit} is not plausible, expected {low} to {high} {unit}"),
        ))
    }
}

fn within_if<T: PartialOrd + std::fmt::Display + Copy>(
    field: &str,
    value: Option<T>,
    range: (T, T),
    unit: &str,
) -> Result<(), Error> {
    value.map_or(Ok(()), |value| within(field, value, range, unit))
}

impl VitalSigns {
    fn check(&self, field: &str, ranges: &Ranges) -> Result<(), Error> {
        let at = |name: &str| format!("{field}.{name}");
        match (self.systolic_mmhg, self.diastolic_mmhg) {
            (Some(systolic), Some(diastolic)) => {
                within(&at("systolic_mmhg"), systolic, (50, 300), "mmHg")?;
                within(&at("diastolic_mmhg"), diastolic, (20, 200), "mmHg")?;
                if systolic <= diastolic {
                    return Err(Error::invalid(
                        at("systolic_mmhg"),
                        format!("{systolic} mmHg is not above the diastolic {diastolic} mmHg"),
                    ));
                }
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(Error::invalid(
                    at("diastolic_mmhg"),
                    "is required with the systolic",
                ));
            }
            (None, Some(_)) => {
                return Err(Error::invalid(
                    at("systolic_mmhg"),
                    "is required with the diastolic",
                ));
            }
        }
        within_if(&at("heart_rate_bpm"), self.heart_rate_bpm, (20, 250), "/min")?;
        within_if(&at("height_cm"), self.height_cm, ranges.height_cm, "cm")?;
        within_if(&at("weight_kg"), self.weight_kg, ranges.weight_kg, "kg")?;
        within_if(
            &at("temperature_celsius"),
            self.temperature_celsius,
            (30.0, 45.0),
            "°C",
        )
    }

    pub fn has_blood_pressure(&self) -> bool {
        self.systolic_mmhg.is_some()
    }

    pub fn is_empty(&self) -> bool {
        *self == VitalSigns::default()
    }
}

/// A laboratory result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabResult {
    pub code: String,
    pub name: String,
    pub value: f64,
    pub unit: String,
}

/// A medicine the person takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Medication {
    pub name: String,
    pub dose: String,
    pub frequency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allergy {
    pub substance: String,
    pub reaction: String,
}

/// How well a chronic condition is controlled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlStatus {
    Unstated,
    Controlled,
    Uncontrolled,
    AdverseReaction,
    Complication,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasicProfile {
    pub blood_type: String,
    pub allergies: Vec<Allergy>,
    pub past_diagnoses: Vec<Icd10Code>,
    pub family_history: Vec<Icd10Code>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhysicalExamination {
    pub vital_signs: VitalSigns,
    pub lab_results: Vec<LabResult>,
    pub diagnoses: Vec<Icd10Code>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HypertensionFollowUp {
    pub vital_signs: VitalSigns,
    pub medications: Vec<Medication>,
    pub control: ControlStatus,
    pub next_follow_up_on: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiabetesFollowUp {
    pub vital_signs: VitalSigns,
    pub fasting_glucose_mmol_l: f64,
    pub hba1c_percent: Option<f64>,
    pub medications: Vec<Medication>,
    pub control: ControlStatus,
    pub next_follow_up_on: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MentalIllnessFollowUp {
    pub diagnosis: Icd10Code,
    pub risk_level: i32,
    pub medications: Vec<Medication>,
    pub control: ControlStatus,
    pub next_follow_up_on: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Immunisation {
    pub vaccine_code: String,
    pub dose_number: i32,
    pub lot_number: String,
    pub site: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaternalVisitKind {
    Prenatal,
    Postnatal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaternalHealth {
    pub visit_kind: MaternalVisitKind,
    pub gestational_weeks: Option<i32>,
    pub gravidity: i32,
    pub parity: i32,
    pub expected_delivery_on: Option<NaiveDate>,
    pub vital_signs: VitalSigns,
    pub diagnoses: Vec<Icd10Code>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildHealth {
    pub age_months: i32,
    pub birth_weight_kg: Option<f64>,
    pub vital_signs: VitalSigns,
    pub head_circumference_cm: Option<f64>,
    pub development_normal: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ElderlyCare {
    pub self_care_score: i32,
    pub cognitive_screen_positive: bool,
    pub vital_signs: VitalSigns,
    pub diagnoses: Vec<Icd10Code>,
}

/// The content of an entry, of exactly one type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EntryPayload {
    BasicProfile(BasicProfile),
    PhysicalExamination(PhysicalExamination),
    HypertensionFollowUp(HypertensionFollowUp),
    DiabetesFollowUp(DiabetesFollowUp),
    MentalIllnessFollowUp(MentalIllnessFollowUp),
    Immunisation(Immunisation),
    MaternalHealth(MaternalHealth),
    ChildHealth(ChildHealth),
    ElderlyCare(ElderlyCare),
}

/// The national immunisation programme's vaccines this exchange knows, by code.
pub const VACCINES: &[(&str, &str)] = &[
    ("0101", "卡介苗 BCG"),
    ("0201", "乙肝疫苗 HepB"),
    ("0301", "脊灰灭活疫苗 IPV"),
    ("0302", "二价脊灰减毒活疫苗 bOPV"),
    ("0601", "百白破疫苗 DTaP"),
    ("0701", "白破疫苗 DT"),
    ("1201", "麻腮风疫苗 MMR"),
    ("1301", "乙脑减毒活疫苗 JE-L"),
    ("1401", "A群流脑多糖疫苗 MPSV-A"),
    ("1501", "A群C群流脑多糖疫苗 MPSV-AC"),
    ("1601", "甲肝减毒活疫苗 HepA-L"),
    ("1801", "人乳头瘤病毒疫苗 HPV"),
    ("2201", "流感疫苗 influenza"),
    ("2301", "23价肺炎球菌多糖疫苗 PPV23"),
    ("2401", "狂犬病疫苗 rabies"),
    ("2801", "新冠病毒疫苗 COVID-19"),
];

/// A required text of 1 to `max` characters (after trimming), or an optional one of at most `max`.
pub fn text(field: &str, value: &str, max: usize, required: bool) -> Result<String, Error> {
    let value = value.trim();
    if required && value.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    let length = value.chars().count();
    if length > max {
        return Err(Error::invalid(
            field,
            format!("is {length} characters long, at most {max} allowed"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "contains a control character"));
    }
    Ok(value.to_owned())
}

/// ICD-10 codes, each checked and named by its position.
pub fn diagnoses(field: &str, codes: &[String]) -> Result<Vec<Icd10Code>, Error> {
    if codes.len() > 20 {
        return Err(Error::invalid(
            field,
            format!("has {} codes, at most 20 allowed", codes.len()),
        ));
    }
    codes
        .iter()
        .enumerate()
        .map(|(i, code)| Icd10Code::parse(code).field(&format!("{field}[{i}]")))
        .collect()
}

impl Medication {
    pub fn checked(field: &str, name: &str, dose: &str, frequency: &str) -> Result<Medication, Error> {
        Ok(Medication {
            name: text(&format!("{field}.name"), name, 100, true)?,
            dose: text(&format!("{field}.dose"), dose, 50, false)?,
            frequency: text(&format!("{field}.frequency"), frequency, 50, false)?,
        })
    }
}

impl Allergy {
    pub fn checked(field: &str, substance: &str, reaction: &str) -> Result<Allergy, Error> {
        Ok(Allergy {
            substance: text(&format!("{field}.substance"), substance, 100, true)?,
            reaction: text(&format!("{field}.reaction"), reaction, 200, false)?,
        })
    }
}

impl LabResult {
    pub fn checked(field: &str, code: &str, name: &str, value: f64, unit: &str) -> Result<LabResult, Error> {
        if !value.is_finite() {
            return Err(Error::invalid(
                format!("{field}.value"),
                "must be a finite number",
            ));
        }
        Ok(LabResult {
            code: text(&format!("{field}.code"), code, 40, true)?,
            name: text(&format!("{field}.name"), name, 100, true)?,
            value,
            unit: text(&format!("{field}.unit"), unit, 20, true)?,
        })
    }
}

impl EntryPayload {
    pub fn entry_type(&self) -> EntryType {
        match self {
            EntryPayload::BasicProfile(_) => EntryType::BasicProfile,
            EntryPayload::PhysicalExamination(_) => EntryType::PhysicalExamination,
            EntryPayload::HypertensionFollowUp(_) => EntryType::HypertensionFollowUp,
            EntryPayload::DiabetesFollowUp(_) => EntryType::DiabetesFollowUp,
            EntryPayload::MentalIllnessFollowUp(_) => EntryType::MentalIllnessFollowUp,
            EntryPayload::Immunisation(_) => EntryType::Immunisation,
            EntryPayload::MaternalHealth(_) => EntryType::MaternalHealth,
            EntryPayload::ChildHealth(_) => EntryType::ChildHealth,
            EntryPayload::ElderlyCare(_) => EntryType::ElderlyCare,
        }
    }

    /// Checks what the types alone do not: ranges, codes, and dates against the visit's date.
    /// `field` is the request path of the payload.
    pub fn check(&self, field: &str, recorded_on: NaiveDate) -> Result<(), Error> {
        let at = |name: &str| format!("{field}.{name}");
        let follow_up = |next: Option<NaiveDate>, name: &str| match next {
            Some(next) if next < recorded_on => Err(Error::invalid(
                at(name),
                format!("{next} is before the visit on {recorded_on}"),
            )),
            _ => Ok(()),
        };
        match self {
            EntryPayload::BasicProfile(profile) => {
                if !["", "A", "B", "AB", "O"].contains(&profile.blood_type.as_str()) {
                    return Err(Error::invalid(
                        at("basic_profile.blood_type"),
                        "expected A, B, AB, O or empty",
                    ));
                }
                Ok(())
            }
            EntryPayload::PhysicalExamination(exam) => exam
                .vital_signs
                .check(&at("physical_examination.vital_signs"), &ADULT),
            EntryPayload::HypertensionFollowUp(visit) => {
                let vitals = at("hypertension_follow_up.vital_signs");
                if !visit.vital_signs.has_blood_pressure() {
                    return Err(Error::invalid(
                        format!("{vitals}.systolic_mmhg"),
                        "a hypertension follow-up records the blood pressure",
                    ));
                }
                visit.vital_signs.check(&vitals, &ADULT)?;
                follow_up(
                    visit.next_follow_up_on,
                    "hypertension_follow_up.next_follow_up_on",
                )
            }
            EntryPayload::DiabetesFollowUp(visit) => {
                visit
                    .vital_signs
                    .check(&at("diabetes_follow_up.vital_signs"), &ADULT)?;
                within(
                    &at("diabetes_follow_up.fasting_glucose_mmol_l"),
                    visit.fasting_glucose_mmol_l,
                    (1.0, 40.0),
                    "mmol/L",
                )?;
                within_if(
                    &at("diabetes_follow_up.hba1c_percent"),
                    visit.hba1c_percent,
                    (3.0, 20.0),
                    "%",
                )?;
                follow_up(visit.next_follow_up_on, "diabetes_follow_up.next_follow_up_on")
            }
            EntryPayload::MentalIllnessFollowUp(visit) => {
                if !visit.diagnosis.in_range("F00", "F99") {
                    return Err(Error::invalid(
                        at("mental_illness_follow_up.diagnosis"),
                        format!(
                            "{} is not a mental disorder, expected chapter F (F00-F99)",
                            visit.diagnosis
                        ),
                    ));
                }
                within(
                    &at("mental_illness_follow_up.risk_level"),
                    visit.risk_level,
                    (0, 5),
                    "",
                )?;
                follow_up(
                    visit.next_follow_up_on,
                    "mental_illness_follow_up.next_follow_up_on",
                )
            }
            EntryPayload::Immunisation(dose) => {
                if !VACCINES.iter().any(|(code, _)| *code == dose.vaccine_code) {
                    return Err(Error::invalid(
                        at("immunisation.vaccine_code"),
                        format!(
                            "'{}' is not a vaccine code of the immunisation programme (for example 0101 BCG, 0201 HepB)",
                            dose.vaccine_code.escape_default()
                        ),
                    ));
                }
                within(&at("immunisation.dose_number"), dose.dose_number, (1, 10), "")
            }
            EntryPayload::MaternalHealth(visit) => {
                let name = |n: &str| at(&format!("maternal_health.{n}"));
                within(&name("gravidity"), visit.gravidity, (1, 30), "")?;
                within(&name("parity"), visit.parity, (0, 30), "")?;
                if visit.parity > visit.gravidity {
                    return Err(Error::invalid(
                        name("parity"),
                        format!(
                            "{} births is more than {} pregnancies",
                            visit.parity, visit.gravidity
                        ),
                    ));
                }
                match (visit.visit_kind, visit.gestational_weeks) {
                    (MaternalVisitKind::Prenatal, Some(weeks)) => {
                        within(&name("gestational_weeks"), weeks, (1, 45), "weeks")?
                    }
                    (MaternalVisitKind::Prenatal, None) => {
                        return Err(Error::invalid(
                            name("gestational_weeks"),
                            "is required for a prenatal visit",
                        ));
                    }
                    (MaternalVisitKind::Postnatal, _) => {}
                }
                if let Some(due) = visit.expected_delivery_on
                    && (due < recorded_on || due > recorded_on + chrono::Days::new(45 * 7))
                {
                    return Err(Error::invalid(
                        name("expected_delivery_on"),
                        format!("{due} is not within 45 weeks after the visit on {recorded_on}"),
                    ));
                }
                visit.vital_signs.check(&name("vital_signs"), &ADULT)
            }
            EntryPayload::ChildHealth(check) => {
                let name = |n: &str| at(&format!("child_health.{n}"));
                within(&name("age_months"), check.age_months, (0, 83), "months")?;
                within_if(&name("birth_weight_kg"), check.birth_weight_kg, (0.3, 7.0), "kg")?;
                within_if(
                    &name("head_circumference_cm"),
                    check.head_circumference_cm,
                    (20.0, 60.0),
                    "cm",
                )?;
                check.vital_signs.check(&name("vital_signs"), &CHILD)
            }
            EntryPayload::ElderlyCare(assessment) => {
                within(
                    &at("elderly_care.self_care_score"),
                    assessment.self_care_score,
                    (0, 19),
                    "",
                )?;
                assessment
                    .vital_signs
                    .check(&at("elderly_care.vital_signs"), &ADULT)
            }
        }
    }

    /// Every diagnosis the entry records.
    pub fn diagnoses(&self) -> Vec<&Icd10Code> {
        match self {
            EntryPayload::BasicProfile(profile) => profile.past_diagnoses.iter().collect(),
            EntryPayload::PhysicalExamination(exam) => exam.diagnoses.iter().collect(),
            EntryPayload::MentalIllnessFollowUp(visit) => vec![&visit.diagnosis],
            EntryPayload::MaternalHealth(visit) => visit.diagnoses.iter().collect(),
            EntryPayload::ElderlyCare(assessment) => assessment.diagnoses.iter().collect(),
            EntryPayload::HypertensionFollowUp(_)
            | EntryPayload::DiabetesFollowUp(_)
            | EntryPayload::Immunisation(_)
            | EntryPayload::ChildHealth(_) => Vec::new(),
        }
    }

    /// The sensitive category the entry reveals: a severe mental illness follow-up always, any
    /// other entry by its diagnoses (a family history reveals nothing of the person's own).
    pub fn sensitive_category(&self) -> Option<DataCategory> {
        if let EntryPayload::MentalIllnessFollowUp(visit) = self {
            return Some(DataCategory::revealed_by(&visit.diagnosis).unwrap_or(DataCategory::MentalHealth));
        }
        self.diagnoses().into_iter().find_map(DataCategory::revealed_by)
    }

    /// The vital signs the entry records, if it records any.
    pub fn vital_signs(&self) -> Option<&VitalSigns> {
        match self {
            EntryPayload::PhysicalExamination(exam) => Some(&exam.vital_signs),
            EntryPayload::HypertensionFollowUp(visit) => Some(&visit.vital_signs),
            EntryPayload::DiabetesFollowUp(visit) => Some(&visit.vital_signs),
            EntryPayload::MaternalHealth(visit) => Some(&visit.vital_signs),
            EntryPayload::ChildHealth(check) => Some(&check.vital_signs),
            EntryPayload::ElderlyCare(assessment) => Some(&assessment.vital_signs),
            EntryPayload::BasicProfile(_)
            | EntryPayload::MentalIllnessFollowUp(_)
            | EntryPayload::Immunisation(_) => None,
        }
        .filter(|vitals| !vitals.is_empty())
    }

    /// The medicines the entry lists as taken.
    pub fn medications(&self) -> &[Medication] {
        match self {
            EntryPayload::HypertensionFollowUp(visit) => &visit.medications,
            EntryPayload::DiabetesFollowUp(visit) => &visit.medications,
            EntryPayload::MentalIllnessFollowUp(visit) => &visit.medications,
            _ => &[],
        }
    }

    /// The problems a follow-up is about (the condition followed), besides recorded diagnoses.
    pub fn problems(&self) -> Vec<Icd10Code> {
        let followed = match self {
            EntryPayload::HypertensionFollowUp(_) => Some("I10"),
            EntryPayload::DiabetesFollowUp(_) => Some("E11"),
            _ => None,
        };
        followed
            .and_then(|code| Icd10Code::parse(code).ok())
            .into_iter()
            .chain(self.diagnoses().into_iter().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn hypertension(systolic: i32, diastolic: i32) -> EntryPayload {
        EntryPayload::HypertensionFollowUp(HypertensionFollowUp {
            vital_signs: VitalSigns {
                systolic_mmhg: Some(systolic),
                diastolic_mmhg: Some(diastolic),
                ..VitalSigns::default()
            },
            medications: Vec::new(),
            control: ControlStatus::Controlled,
            next_follow_up_on: None,
        })
    }

    #[test]
    fn a_blood_pressure_of_400_over_20_is_refused_naming_the_field() {
        let error = hypertension(400, 20)
            .check("payload", day("2026-01-05"))
            .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("payload.hypertension_follow_up.vital_signs.systolic_mmhg"),
            "{error}"
        );
        assert!(hypertension(142, 91).check("payload", day("2026-01-05")).is_ok());
        assert!(hypertension(80, 90).check("payload", day("2026-01-05")).is_err());
    }

    #[test]
    fn a_birth_weight_of_90_kg_is_refused() {
        let child = |birth_weight| {
            EntryPayload::ChildHealth(ChildHealth {
                age_months: 6,
                birth_weight_kg: Some(birth_weight),
                vital_signs: VitalSigns::default(),
                head_circumference_cm: None,
                development_normal: true,
            })
        };
        assert!(child(90.0).check("payload", day("2026-01-05")).is_err());
        assert!(child(f64::NAN).check("payload", day("2026-01-05")).is_err());
        assert!(child(3.2).check("payload", day("2026-01-05")).is_ok());
    }

    #[test]
    fn a_mental_illness_follow_up_is_always_of_the_mental_health_category() {
        let visit = EntryPayload::MentalIllnessFollowUp(MentalIllnessFollowUp {
            diagnosis: Icd10Code::parse("F20.0").unwrap(),
            risk_level: 1,
            medications: Vec::new(),
            control: ControlStatus::Controlled,
            next_follow_up_on: None,
        });
        assert_eq!(visit.sensitive_category(), Some(DataCategory::MentalHealth));
        assert_eq!(hypertension(140, 90).sensitive_category(), None);
    }

    #[test]
    fn an_unknown_vaccine_code_and_a_follow_up_before_the_visit_are_refused() {
        let dose = EntryPayload::Immunisation(Immunisation {
            vaccine_code: "9999".into(),
            dose_number: 1,
            lot_number: "L1".into(),
            site: String::new(),
        });
        assert!(dose.check("payload", day("2026-01-05")).is_err());
        let EntryPayload::HypertensionFollowUp(mut visit) = hypertension(140, 90) else {
            unreachable!()
        };
        visit.next_follow_up_on = Some(day("2026-01-01"));
        assert!(
            EntryPayload::HypertensionFollowUp(visit)
                .check("payload", day("2026-01-05"))
                .is_err()
        );
    }

    #[test]
    fn a_payload_survives_its_stored_json() {
        let payload = hypertension(150, 95);
        let json = serde_json::to_string(&payload).unwrap();
        assert_eq!(serde_json::from_str::<EntryPayload>(&json).unwrap(), payload);
    }
}
