//! Observation, Condition, AllergyIntolerance and MedicationRequest become documents of the EMR
//! registry holding the resource itself (application/fhir+json), with what the registry indexes:
//! an Observation's numeric value as an observation, a Condition's ICD-10 codes as event codes.
//! DocumentReference becomes the document it describes, its content from the attachment.

use base64::Engine;
use hie_adapter_relay::submission::{
    Hospital, Submission, Translated, code, derived_id, local_patient, sha256_hex,
};
use hie_core::domain::Icd10Code;
use hie_proto::emr as emr_proto;

use super::{At, first_instant};
use crate::outcome::Issue;

/// The registry's class code of each resource type: (code, display).
fn class_of(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "Observation" => ("laboratory-report", "检验检查结果"),
        "Condition" => ("problem", "诊断"),
        "AllergyIntolerance" => ("allergy", "过敏"),
        "MedicationRequest" => ("medication-order", "用药医嘱"),
        _ => ("clinical-document", "临床文书"),
    }
}

/// The element each type's subject, time and code are read from.
fn fields_of(kind: &str) -> (&'static str, &'static [&'static str], &'static str) {
    match kind {
        "Observation" => (
            "subject",
            &["effectiveDateTime", "issued", "meta.lastUpdated"],
            "code",
        ),
        "Condition" => (
            "subject",
            &["recordedDate", "onsetDateTime", "meta.lastUpdated"],
            "code",
        ),
        "AllergyIntolerance" => (
            "patient",
            &["recordedDate", "onsetDateTime", "meta.lastUpdated"],
            "code",
        ),
        _ => (
            "subject",
            &["authoredOn", "meta.lastUpdated"],
            "medicationCodeableConcept",
        ),
    }
}

pub fn entry(at: &At<'_>, hospital: &Hospital, kind: &str) -> Result<Translated, Vec<Issue>> {
    let (subject, times, concept) = fields_of(kind);
    let mut issues = Vec::new();
    let patient = at.patient_in(subject, &mut issues);
    let created = times_of(at, times, hospital)
        .map_err(|issue| issues.push(issue))
        .ok();
    let coded = at.get(concept);
    let title = coded.concept_text();
    if title.is_none() {
        issues.push(Issue::required(
            coded.path.clone(),
            "what the resource is about (a code or its text) is required",
        ));
    }
    let mut observations = Vec::new();
    if kind == "Observation" {
        let quantity = at.get("valueQuantity");
        if quantity.is_present() {
            match (
                quantity.get("value").value.and_then(serde_json::Value::as_f64),
                coded.codings().into_iter().next(),
            ) {
                (Some(value), Some((_, code, display))) => observations.push(emr_proto::Observation {
                    name: if display.is_empty() { code.clone() } else { display },
                    code,
                    value,
                    unit: quantity
                        .str("unit")
                        .or_else(|| quantity.str("code"))
                        .unwrap_or_else(|| "1".to_owned()),
                }),
                (None, _) => issues.push(Issue::value(
                    "Observation.valueQuantity.value",
                    "expected a number",
                )),
                (_, None) => issues.push(Issue::required(
                    "Observation.code.coding",
                    "a numeric result needs its code",
                )),
            }
        }
    }
    let event_codes: Vec<String> = if kind == "Condition" {
        coded
            .codings()
            .into_iter()
            .map(|(_, c, _)| c)
            .filter(|c| Icd10Code::parse(c).is_ok())
            .take(20)
            .collect()
    } else {
        Vec::new()
    };
    let (Some(patient), Some(created), Some(title), true) = (patient, created, title, issues.is_empty())
    else {
        return Err(issues);
    };
    let content = at
        .value
        .map(serde_json::Value::to_string)
        .unwrap_or_default()
        .into_bytes();
    let (class, class_display) = class_of(kind);
    let entry = emr_proto::DocumentEntry {
        class_code: Some(code("hie-class", class, class_display)),
        type_code: Some(match coded.codings().into_iter().next() {
            Some((system, code_value, display)) => code(
                if system.is_empty() { "local" } else { &system },
                &code_value,
                if display.is_empty() { &title } else { &display },
            ),
            None => code("local", kind, &title),
        }),
        format_code: Some(code("hie-format", "fhir-json", "FHIR R4 JSON")),
        observations,
        event_codes,
        title: title.chars().take(200).collect(),
        ..base_entry(at, hospital, &patient, created)
    };
    Ok(document(
        at,
        hospital,
        kind,
        patient,
        entry,
        content,
        "application/fhir+json",
    ))
}

pub fn document_reference(at: &At<'_>, hospital: &Hospital) -> Result<Translated, Vec<Issue>> {
    let mut issues = Vec::new();
    let patient = at.patient_in("subject", &mut issues);
    let created = times_of(at, &["date", "meta.lastUpdated"], hospital)
        .map_err(|issue| issues.push(issue))
        .ok();
    let attachment = at.first("content").get("attachment");
    let content = match attachment.str("data") {
        Some(data) => base64::engine::general_purpose::STANDARD
            .decode(data.split_whitespace().collect::<String>())
            .map_err(|_| {
                issues.push(Issue::value(
                    format!("{}.data", attachment.path),
                    "expected base64",
                ))
            })
            .ok(),
        None => {
            issues.push(Issue::required(
                format!("{}.data", attachment.path),
                "the content is required inline (this adapter keeps documents at the exchange; documents the hospital keeps are served by its gateway)",
            ));
            None
        }
    };
    let doc_type = at.get("type");
    let title = attachment
        .str("title")
        .or_else(|| at.str("description"))
        .or_else(|| doc_type.concept_text());
    if title.is_none() {
        issues.push(Issue::required(
            "DocumentReference.type",
            "the document's type (or a title) is required",
        ));
    }
    let (Some(patient), Some(created), Some(content), Some(title), true) =
        (patient, created, content, title, issues.is_empty())
    else {
        return Err(issues);
    };
    let confidentiality = at
        .array("securityLabel")
        .iter()
        .flat_map(|label| label.codings())
        .find_map(|(_, c, _)| match c.as_str() {
            "V" => Some("V"),
            "R" => Some("R"),
            _ => None,
        })
        .unwrap_or("N");
    let mime = attachment
        .str("contentType")
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let entry = emr_proto::DocumentEntry {
        class_code: Some(match at.first("category").codings().into_iter().next() {
            Some((_, c, d)) => code("hie-class", &c, if d.is_empty() { &c } else { &d }),
            None => code("hie-class", "clinical-document", "临床文书"),
        }),
        type_code: Some(match doc_type.codings().into_iter().next() {
            Some((system, c, d)) => code(
                if system.is_empty() { "local" } else { &system },
                &c,
                if d.is_empty() { &title } else { &d },
            ),
            None => code("local", "document", &title),
        }),
        format_code: Some(code("hie-format", &mime, &mime)),
        confidentiality_code: confidentiality.to_owned(),
        title: title.chars().take(200).collect(),
        ..base_entry(at, hospital, &patient, created)
    };
    Ok(document(
        at,
        hospital,
        "DocumentReference",
        patient,
        entry,
        content,
        &mime,
    ))
}

fn times_of(
    at: &At<'_>,
    candidates: &[&str],
    hospital: &Hospital,
) -> Result<chrono::DateTime<chrono::Utc>, Issue> {
    // meta.lastUpdated is one level down.
    let meta = at.get("meta");
    match first_instant(
        at,
        &candidates
            .iter()
            .copied()
            .filter(|c| !c.contains('.'))
            .collect::<Vec<_>>(),
        hospital.utc_offset,
    ) {
        Ok(instant) => Ok(instant),
        Err(issue) => meta.instant("lastUpdated", hospital.utc_offset)?.ok_or(issue),
    }
}

fn base_entry(
    at: &At<'_>,
    hospital: &Hospital,
    patient: &str,
    created: chrono::DateTime<chrono::Utc>,
) -> emr_proto::DocumentEntry {
    let author = at
        .first("performer")
        .str("display")
        .or_else(|| at.get("recorder").str("display"))
        .or_else(|| at.get("requester").str("display"))
        .or_else(|| at.first("author").str("display"))
        .unwrap_or_default();
    emr_proto::DocumentEntry {
        source_patient_id: Some(local_patient(hospital, patient)),
        confidentiality_code: "N".to_owned(),
        healthcare_facility_type_code: Some(code("hie-facility", "hospital", "医院")),
        practice_setting_code: Some(code("hie-practice", "general", "综合")),
        creation_time: Some(hie_proto::timestamp(created)),
        author: Some(emr_proto::Author {
            person: author.chars().take(100).collect(),
            institution: hospital.organisation.to_string(),
            ..Default::default()
        }),
        language_code: "zh-CN".to_owned(),
        ..Default::default()
    }
}

/// The submission of one document, its ids derived from the resource's identity (type, id,
/// version): the same resource version sent again is the same submission.
fn document(
    at: &At<'_>,
    hospital: &Hospital,
    kind: &str,
    patient: String,
    mut entry: emr_proto::DocumentEntry,
    content: Vec<u8>,
    mime_type: &str,
) -> Translated {
    let identity = resource_identity(at, &content);
    entry.unique_id = derived_id("fhir:doc", &hospital.organisation.to_string(), &identity);
    entry.mime_type = mime_type.to_owned();
    entry.hash = sha256_hex(&content);
    entry.size = content.len() as i64;
    Translated {
        message_type: format!("FHIR {kind}"),
        patient_key: patient,
        submission: Submission::Document(emr_proto::RegisterDocumentSetRequest {
            submission_set_unique_id: derived_id("fhir:set", &hospital.organisation.to_string(), &identity),
            source_organisation_code: hospital.organisation.to_string(),
            documents: vec![emr_proto::DocumentSubmission {
                entry: Some(entry),
                content,
            }],
            associations: Vec::new(),
        }),
    }
}

/// `Type/id/_history/version` when the resource says, else its type and the hash of its content.
pub fn resource_identity(at: &At<'_>, content: &[u8]) -> String {
    let kind = at.str("resourceType").unwrap_or_default();
    match (at.str("id"), at.get("meta").str("versionId")) {
        (Some(id), Some(version)) => format!("{kind}/{id}/_history/{version}"),
        _ => format!("{kind}#{}", sha256_hex(content)),
    }
}
