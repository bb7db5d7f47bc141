//! Encounter → a visit step at the hospital.

use hie_adapter_relay::submission::{Hospital, Submission, Translated, patient_selector, refused_at};
use hie_core::domain::Icd10Code;
use hie_proto::emr as emr_proto;

use super::At;
use crate::outcome::Issue;

pub fn encounter(at: &At<'_>, hospital: &Hospital) -> Result<Translated, Vec<Issue>> {
    let mut issues = Vec::new();
    let patient = at.patient_in("subject", &mut issues);
    let status = at.str("status").unwrap_or_default();
    let class = at.get("class").str("code").unwrap_or_default().to_uppercase();
    let inpatient = matches!(class.as_str(), "IMP" | "ACUTE" | "NONAC" | "PRENC" | "SS");
    let kind = match (status.as_str(), class.as_str()) {
        ("cancelled" | "entered-in-error", _) => Some(emr_proto::EncounterKind::Cancelled),
        ("finished", _) if inpatient => Some(emr_proto::EncounterKind::Discharge),
        (_, "EMER") => Some(emr_proto::EncounterKind::Emergency),
        (_, "AMB" | "VR" | "HH" | "FLD") => Some(emr_proto::EncounterKind::Outpatient),
        _ if inpatient => Some(emr_proto::EncounterKind::Admission),
        _ => None,
    };
    let Some(kind) = kind else {
        issues.push(Issue::value(
            "Encounter.class",
            "expected the class AMB, EMER, IMP, ACUTE, NONAC, PRENC, SS, VR, HH or FLD (v3 ActEncounterCode)",
        ));
        return Err(issues);
    };
    let visit_number = at
        .array("identifier")
        .into_iter()
        .find_map(|identifier| identifier.str("value"))
        .or_else(|| at.str("id"))
        .unwrap_or_default();
    let department = at
        .first("serviceType")
        .concept_text()
        .or_else(|| at.first("type").concept_text())
        .or_else(|| at.first("location").get("location").str("display"))
        .unwrap_or_default();
    let attending = at
        .first("participant")
        .get("individual")
        .str("display")
        .or_else(|| at.first("participant").get("individual").str("reference"))
        .unwrap_or_default();
    let diagnoses: Vec<String> = at
        .array("reasonCode")
        .iter()
        .chain(
            at.array("diagnosis")
                .iter()
                .map(|d| d.get("condition"))
                .collect::<Vec<_>>()
                .iter(),
        )
        .flat_map(|concept| concept.codings())
        .map(|(_, code, _)| code)
        .filter(|code| Icd10Code::parse(code).is_ok())
        .take(20)
        .collect();
    let period = at.get("period");
    let started = period
        .instant("start", hospital.utc_offset)
        .map_err(|issue| issues.push(issue))
        .ok()
        .flatten();
    let ended = period
        .instant("end", hospital.utc_offset)
        .map_err(|issue| issues.push(issue))
        .ok()
        .flatten();
    if started.is_none() && !issues.iter().any(|i| i.expression == "Encounter.period.start") {
        issues.push(Issue::required(
            "Encounter.period.start",
            "the visit's start is required",
        ));
    }
    let (Some(patient), Some(started), true) = (patient, started, issues.is_empty()) else {
        return Err(issues);
    };
    let encounter = emr_proto::Encounter {
        visit_number,
        kind: kind.into(),
        department,
        attending_practitioner: attending,
        diagnoses,
        started_at: Some(hie_proto::timestamp(started)),
        ended_at: ended.map(hie_proto::timestamp),
        ..Default::default()
    };
    hie_emr::grpc::encounter_draft(hospital.organisation.clone(), Some(encounter.clone())).map_err(
        |error| {
            let origins = [
                ("encounter.visit_number", "Encounter.identifier"),
                ("encounter.department", "Encounter.serviceType"),
                ("encounter.attending_practitioner", "Encounter.participant"),
                ("encounter.started_at", "Encounter.period.start"),
                ("encounter.ended_at", "Encounter.period.end"),
                ("encounter.diagnoses", "Encounter.reasonCode"),
            ];
            let (path, reason) = refused_at(error, &origins);
            vec![Issue::value(path.copied().unwrap_or("Encounter"), reason)]
        },
    )?;
    Ok(Translated {
        message_type: "FHIR Encounter".to_owned(),
        patient_key: patient.clone(),
        submission: Submission::Visit(Box::new(emr_proto::RegisterEncounterRequest {
            organisation_code: hospital.organisation.to_string(),
            person: Some(patient_selector(hospital, &patient)),
            encounter: Some(encounter),
        })),
    })
}
