//! The `hie.records.v1.HealthRecordRegistry` gRPC service: maps proto messages to domain types,
//! with every malformed field answered as `INVALID_ARGUMENT` naming it, and domain results back.
//! The mappings of the shared pieces (a person selector, vital signs, medications) serve the EMR
//! registry's summary too.

use chrono::NaiveDate;
use hie_core::context::RequestContext;
use hie_core::id::PersonId;
use hie_core::page::{PageSize, PageToken};
use hie_core::service::ServiceModule;
use hie_core::{Error, ResultExt, time};
use hie_population::domain::PersonSelector;
use hie_population::grpc::parse_identifier;
use hie_proto::records as proto;
use hie_proto::records::health_record_registry_server::HealthRecordRegistry;
use tonic::{Request, Response, Status};

use crate::domain::payload::{
    self, Allergy, BasicProfile, ChildHealth, ControlStatus, DiabetesFollowUp, ElderlyCare,
    HypertensionFollowUp, Immunisation, LabResult, MaternalHealth, MaternalVisitKind, Medication,
    MentalIllnessFollowUp, PhysicalExamination, VitalSigns,
};
use crate::domain::{Entry, EntryDraft, EntryId, EntryPayload, EntryQuery, EntryType, RecordsService};

/// The name `--services` knows the archive by.
pub const SERVICE_NAME: &str = "records";

/// The archive as the server mounts it.
pub fn module(records: RecordsService) -> ServiceModule {
    ServiceModule::new(
        SERVICE_NAME,
        proto::health_record_registry_server::HealthRecordRegistryServer::new(RecordsGrpc { records }),
    )
}

#[derive(Clone, Debug)]
struct RecordsGrpc {
    records: RecordsService,
}

#[tonic::async_trait]
impl HealthRecordRegistry for RecordsGrpc {
    #[tracing::instrument(skip_all)]
    async fn submit_entry(
        &self,
        request: Request<proto::SubmitEntryRequest>,
    ) -> Result<Response<proto::SubmitEntryResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let message = request.into_inner();
        let organisation =
            context.submitting_organisation("source_organisation_code", &message.source_organisation_code)?;
        let recorded_on = date("recorded_on", &message.recorded_on)?;
        let draft = EntryDraft::new(
            organisation,
            &message.source_entry_id,
            person_selector("person", message.person)?,
            recorded_on,
            entry_payload("payload", message.payload)?,
            time::today_in_china(),
        )?;
        let (entry, changed) = self.records.submit(&context, draft).await?;
        tracing::info!(
            entry_type = entry.entry_type().code(),
            version = entry.version,
            changed,
            "health record entry submitted"
        );
        Ok(Response::new(proto::SubmitEntryResponse {
            entry: Some(entry_to_proto(&entry)),
            changed,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn query_entries(
        &self,
        request: Request<proto::QueryEntriesRequest>,
    ) -> Result<Response<proto::QueryEntriesResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let message = request.into_inner();
        let types = message
            .entry_types
            .iter()
            .enumerate()
            .map(|(i, code)| {
                entry_type(*code)
                    .ok_or_else(|| Error::invalid(format!("entry_types[{i}]"), "is not an entry type"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let query = EntryQuery {
            person: person_selector("person", message.person)?,
            types,
            recorded_from: optional_date("recorded_from", &message.recorded_from)?,
            recorded_to: optional_date("recorded_to", &message.recorded_to)?,
            page_size: PageSize::parse_or_default(message.page_size).field("page_size")?,
            page_token: PageToken::parse(&message.page_token).field("page_token")?,
        };
        let (person, entries, next, withheld) = self.records.query(&context, &query).await?;
        Ok(Response::new(proto::QueryEntriesResponse {
            person_id: person.as_str().to_owned(),
            entries: entries.iter().map(entry_to_proto).collect(),
            next_page_token: next.map(|t| t.encode()).unwrap_or_default(),
            some_withheld: withheld,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_entry(
        &self,
        request: Request<proto::GetEntryRequest>,
    ) -> Result<Response<proto::GetEntryResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let id = EntryId::parse(&request.into_inner().entry_id).field("entry_id")?;
        let versions = self.records.entry(&context, &id).await?;
        Ok(Response::new(proto::GetEntryResponse {
            versions: versions.iter().map(entry_to_proto).collect(),
        }))
    }
}

/// A calendar date, YYYY-MM-DD.
pub fn date(field: &str, text: &str) -> Result<NaiveDate, Error> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| {
        Error::invalid(
            field,
            format!(
                "'{}' is not a date, expected YYYY-MM-DD",
                text.chars().take(20).collect::<String>().escape_default()
            ),
        )
    })
}

/// A calendar date, or none when the text is empty.
pub fn optional_date(field: &str, text: &str) -> Result<Option<NaiveDate>, Error> {
    if text.trim().is_empty() {
        Ok(None)
    } else {
        date(field, text).map(Some)
    }
}

/// Whom a request means: a person id, or an identifier the population registry knows.
pub fn person_selector(field: &str, message: Option<proto::PersonSelector>) -> Result<PersonSelector, Error> {
    use proto::person_selector::Selector;
    match message.and_then(|m| m.selector) {
        Some(Selector::PersonId(id)) => Ok(PersonSelector::Id(
            PersonId::parse(&id).field(&format!("{field}.person_id"))?,
        )),
        Some(Selector::Identifier(identifier)) => Ok(PersonSelector::Identifier(parse_identifier(
            Some(identifier),
            &format!("{field}.identifier"),
        )?)),
        None => Err(Error::invalid(field, "is required: a person_id or an identifier")),
    }
}

fn entry_type(code: i32) -> Option<EntryType> {
    use proto::EntryType as P;
    Some(match P::try_from(code).ok()? {
        P::Unspecified => return None,
        P::BasicProfile => EntryType::BasicProfile,
        P::PhysicalExamination => EntryType::PhysicalExamination,
        P::HypertensionFollowUp => EntryType::HypertensionFollowUp,
        P::DiabetesFollowUp => EntryType::DiabetesFollowUp,
        P::MentalIllnessFollowUp => EntryType::MentalIllnessFollowUp,
        P::Immunisation => EntryType::Immunisation,
        P::MaternalHealth => EntryType::MaternalHealth,
        P::ChildHealth => EntryType::ChildHealth,
        P::ElderlyCare => EntryType::ElderlyCare,
    })
}

fn entry_type_to_proto(entry_type: EntryType) -> proto::EntryType {
    use proto::EntryType as P;
    match entry_type {
        EntryType::BasicProfile => P::BasicProfile,
        EntryType::PhysicalExamination => P::PhysicalExamination,
        EntryType::HypertensionFollowUp => P::HypertensionFollowUp,
        EntryType::DiabetesFollowUp => P::DiabetesFollowUp,
        EntryType::MentalIllnessFollowUp => P::MentalIllnessFollowUp,
        EntryType::Immunisation => P::Immunisation,
        EntryType::MaternalHealth => P::MaternalHealth,
        EntryType::ChildHealth => P::ChildHealth,
        EntryType::ElderlyCare => P::ElderlyCare,
    }
}

pub fn vital_signs(message: Option<proto::VitalSigns>) -> VitalSigns {
    let message = message.unwrap_or_default();
    VitalSigns {
        systolic_mmhg: message.systolic_mmhg,
        diastolic_mmhg: message.diastolic_mmhg,
        heart_rate_bpm: message.heart_rate_bpm,
        height_cm: message.height_cm,
        weight_kg: message.weight_kg,
        temperature_celsius: message.temperature_celsius,
    }
}

pub fn vital_signs_to_proto(vitals: &VitalSigns) -> proto::VitalSigns {
    proto::VitalSigns {
        systolic_mmhg: vitals.systolic_mmhg,
        diastolic_mmhg: vitals.diastolic_mmhg,
        heart_rate_bpm: vitals.heart_rate_bpm,
        height_cm: vitals.height_cm,
        weight_kg: vitals.weight_kg,
        temperature_celsius: vitals.temperature_celsius,
    }
}

fn medications(field: &str, messages: Vec<proto::Medication>) -> Result<Vec<Medication>, Error> {
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| Medication::checked(&format!("{field}[{i}]"), &m.name, &m.dose, &m.frequency))
        .collect()
}

pub fn medication_to_proto(medication: &Medication) -> proto::Medication {
    proto::Medication {
        name: medication.name.clone(),
        dose: medication.dose.clone(),
        frequency: medication.frequency.clone(),
    }
}

pub fn allergy_to_proto(allergy: &Allergy) -> proto::Allergy {
    proto::Allergy {
        substance: allergy.substance.clone(),
        reaction: allergy.reaction.clone(),
    }
}

pub fn immunisation_to_proto(dose: &Immunisation) -> proto::Immunisation {
    proto::Immunisation {
        vaccine_code: dose.vaccine_code.clone(),
        dose_number: dose.dose_number,
        lot_number: dose.lot_number.clone(),
        site: dose.site.clone(),
    }
}

fn control(code: i32) -> ControlStatus {
    use proto::ControlStatus as P;
    match P::try_from(code).unwrap_or(P::Unspecified) {
        P::Unspecified => ControlStatus::Unstated,
        P::Controlled => ControlStatus::Controlled,
        P::Uncontrolled => ControlStatus::Uncontrolled,
        P::AdverseReaction => ControlStatus::AdverseReaction,
        P::Complication => ControlStatus::Complication,
    }
}

fn control_to_proto(status: ControlStatus) -> i32 {
    use proto::ControlStatus as P;
    match status {
        ControlStatus::Unstated => P::Unspecified,
        ControlStatus::Controlled => P::Controlled,
        ControlStatus::Uncontrolled => P::Uncontrolled,
        ControlStatus::AdverseReaction => P::AdverseReaction,
        ControlStatus::Complication => P::Complication,
    }
    .into()
}

fn codes(codes: &[impl std::fmt::Display]) -> Vec<String> {
    codes.iter().map(ToString::to_string).collect()
}

fn lab_results(field: &str, messages: Vec<proto::LabResult>) -> Result<Vec<LabResult>, Error> {
    messages
        .iter()
        .enumerate()
        .map(|(i, r)| LabResult::checked(&format!("{field}[{i}]"), &r.code, &r.name, r.value, &r.unit))
        .collect()
}

/// The payload of a submission, of the one type it holds.
fn entry_payload(field: &str, message: Option<proto::EntryPayload>) -> Result<EntryPayload, Error> {
    use proto::entry_payload::Payload as P;
    let at = |name: &str| format!("{field}.{name}");
    let payload = message
        .and_then(|m| m.payload)
        .ok_or_else(|| Error::invalid(field, "is required: one payload of the entry's type"))?;
    Ok(match payload {
        P::BasicProfile(m) => EntryPayload::BasicProfile(BasicProfile {
            blood_type: m.blood_type.trim().to_ascii_uppercase(),
            allergies: m
                .allergies
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    Allergy::checked(
                        &at(&format!("basic_profile.allergies[{i}]")),
                        &a.substance,
                        &a.reaction,
                    )
                })
                .collect::<Result<_, _>>()?,
            past_diagnoses: payload::diagnoses(&at("basic_profile.past_diagnoses"), &m.past_diagnoses)?,
            family_history: payload::diagnoses(&at("basic_profile.family_history"), &m.family_history)?,
        }),
        P::PhysicalExamination(m) => EntryPayload::PhysicalExamination(PhysicalExamination {
            vital_signs: vital_signs(m.vital_signs),
            lab_results: lab_results(&at("physical_examination.lab_results"), m.lab_results)?,
            diagnoses: payload::diagnoses(&at("physical_examination.diagnoses"), &m.diagnoses)?,
        }),
        P::HypertensionFollowUp(m) => EntryPayload::HypertensionFollowUp(HypertensionFollowUp {
            vital_signs: vital_signs(m.vital_signs),
            medications: medications(&at("hypertension_follow_up.medications"), m.medications)?,
            control: control(m.control),
            next_follow_up_on: optional_date(
                &at("hypertension_follow_up.next_follow_up_on"),
                &m.next_follow_up_on,
            )?,
        }),
        P::DiabetesFollowUp(m) => EntryPayload::DiabetesFollowUp(DiabetesFollowUp {
            vital_signs: vital_signs(m.vital_signs),
            fasting_glucose_mmol_l: m.fasting_glucose_mmol_l,
            hba1c_percent: m.hba1c_percent,
            medications: medications(&at("diabetes_follow_up.medications"), m.medications)?,
            control: control(m.control),
            next_follow_up_on: optional_date(
                &at("diabetes_follow_up.next_follow_up_on"),
                &m.next_follow_up_on,
            )?,
        }),
        P::MentalIllnessFollowUp(m) => EntryPayload::MentalIllnessFollowUp(MentalIllnessFollowUp {
            diagnosis: hie_core::domain::Icd10Code::parse(&m.diagnosis)
                .field(&at("mental_illness_follow_up.diagnosis"))?,
            risk_level: m.risk_level,
            medications: medications(&at("mental_illness_follow_up.medications"), m.medications)?,
            control: control(m.control),
            next_follow_up_on: optional_date(
                &at("mental_illness_follow_up.next_follow_up_on"),
                &m.next_follow_up_on,
            )?,
        }),
        P::Immunisation(m) => EntryPayload::Immunisation(Immunisation {
            vaccine_code: m.vaccine_code.trim().to_owned(),
            dose_number: m.dose_number,
            lot_number: payload::text(&at("immunisation.lot_number"), &m.lot_number, 40, true)?,
            site: payload::text(&at("immunisation.site"), &m.site, 50, false)?,
        }),
        P::MaternalHealth(m) => EntryPayload::MaternalHealth(MaternalHealth {
            visit_kind: match proto::MaternalVisitKind::try_from(m.visit_kind) {
                Ok(proto::MaternalVisitKind::Prenatal) => MaternalVisitKind::Prenatal,
                Ok(proto::MaternalVisitKind::Postnatal) => MaternalVisitKind::Postnatal,
                _ => {
                    return Err(Error::invalid(
                        at("maternal_health.visit_kind"),
                        "expected PRENATAL or POSTNATAL",
                    ));
                }
            },
            gestational_weeks: m.gestational_weeks,
            gravidity: m.gravidity,
            parity: m.parity,
            expected_delivery_on: optional_date(
                &at("maternal_health.expected_delivery_on"),
                &m.expected_delivery_on,
            )?,
            vital_signs: vital_signs(m.vital_signs),
            diagnoses: payload::diagnoses(&at("maternal_health.diagnoses"), &m.diagnoses)?,
        }),
        P::ChildHealth(m) => EntryPayload::ChildHealth(ChildHealth {
            age_months: m.age_months,
            birth_weight_kg: m.birth_weight_kg,
            vital_signs: vital_signs(m.vital_signs),
            head_circumference_cm: m.head_circumference_cm,
            development_normal: m.development_normal,
        }),
        P::ElderlyCare(m) => EntryPayload::ElderlyCare(ElderlyCare {
            self_care_score: m.self_care_score,
            cognitive_screen_positive: m.cognitive_screen_positive,
            vital_signs: vital_signs(m.vital_signs),
            diagnoses: payload::diagnoses(&at("elderly_care.diagnoses"), &m.diagnoses)?,
        }),
    })
}

fn payload_to_proto(payload: &EntryPayload) -> proto::EntryPayload {
    use proto::entry_payload::Payload as P;
    let meds = |list: &[Medication]| list.iter().map(medication_to_proto).collect();
    let next = |date: Option<NaiveDate>| date.map(|d| d.to_string()).unwrap_or_default();
    let payload = match payload {
        EntryPayload::BasicProfile(p) => P::BasicProfile(proto::BasicProfile {
            blood_type: p.blood_type.clone(),
            allergies: p.allergies.iter().map(allergy_to_proto).collect(),
            past_diagnoses: codes(&p.past_diagnoses),
            family_history: codes(&p.family_history),
        }),
        EntryPayload::PhysicalExamination(p) => P::PhysicalExamination(proto::PhysicalExamination {
            vital_signs: Some(vital_signs_to_proto(&p.vital_signs)),
            lab_results: p
                .lab_results
                .iter()
                .map(|r| proto::LabResult {
                    code: r.code.clone(),
                    name: r.name.clone(),
                    value: r.value,
                    unit: r.unit.clone(),
                })
                .collect(),
            diagnoses: codes(&p.diagnoses),
        }),
        EntryPayload::HypertensionFollowUp(p) => P::HypertensionFollowUp(proto::HypertensionFollowUp {
            vital_signs: Some(vital_signs_to_proto(&p.vital_signs)),
            medications: meds(&p.medications),
            control: control_to_proto(p.control),
            next_follow_up_on: next(p.next_follow_up_on),
        }),
        EntryPayload::DiabetesFollowUp(p) => P::DiabetesFollowUp(proto::DiabetesFollowUp {
            vital_signs: Some(vital_signs_to_proto(&p.vital_signs)),
            fasting_glucose_mmol_l: p.fasting_glucose_mmol_l,
            hba1c_percent: p.hba1c_percent,
            medications: meds(&p.medications),
            control: control_to_proto(p.control),
            next_follow_up_on: next(p.next_follow_up_on),
        }),
        EntryPayload::MentalIllnessFollowUp(p) => P::MentalIllnessFollowUp(proto::MentalIllnessFollowUp {
            diagnosis: p.diagnosis.to_string(),
            risk_level: p.risk_level,
            medications: meds(&p.medications),
            control: control_to_proto(p.control),
            next_follow_up_on: next(p.next_follow_up_on),
        }),
        EntryPayload::Immunisation(p) => P::Immunisation(immunisation_to_proto(p)),
        EntryPayload::MaternalHealth(p) => P::MaternalHealth(proto::MaternalHealth {
            visit_kind: match p.visit_kind {
                MaternalVisitKind::Prenatal => proto::MaternalVisitKind::Prenatal,
                MaternalVisitKind::Postnatal => proto::MaternalVisitKind::Postnatal,
            }
            .into(),
            gestational_weeks: p.gestational_weeks,
            gravidity: p.gravidity,
            parity: p.parity,
            expected_delivery_on: next(p.expected_delivery_on),
            vital_signs: Some(vital_signs_to_proto(&p.vital_signs)),
            diagnoses: codes(&p.diagnoses),
        }),
        EntryPayload::ChildHealth(p) => P::ChildHealth(proto::ChildHealth {
            age_months: p.age_months,
            birth_weight_kg: p.birth_weight_kg,
            vital_signs: Some(vital_signs_to_proto(&p.vital_signs)),
            head_circumference_cm: p.head_circumference_cm,
            development_normal: p.development_normal,
        }),
        EntryPayload::ElderlyCare(p) => P::ElderlyCare(proto::ElderlyCare {
            self_care_score: p.self_care_score,
            cognitive_screen_positive: p.cognitive_screen_positive,
            vital_signs: Some(vital_signs_to_proto(&p.vital_signs)),
            diagnoses: codes(&p.diagnoses),
        }),
    };
    proto::EntryPayload {
        payload: Some(payload),
    }
}

pub fn entry_to_proto(entry: &Entry) -> proto::HealthRecordEntry {
    proto::HealthRecordEntry {
        entry_id: entry.id.as_str().to_owned(),
        person_id: entry.person_id.as_str().to_owned(),
        source_organisation_code: entry.source_organisation.as_str().to_owned(),
        source_entry_id: entry.source_entry_id.clone(),
        entry_type: entry_type_to_proto(entry.entry_type()).into(),
        recorded_on: entry.recorded_on.to_string(),
        version: i32::try_from(entry.version).unwrap_or(i32::MAX),
        submitted_at: Some(hie_proto::timestamp(entry.submitted_at)),
        payload: Some(payload_to_proto(&entry.payload)),
    }
}
