//! ORU^R01 (results) and MDM^T02 (a document with its content) to a document submission: the
//! content kept by the exchange, with the numeric observations the patient summary shows.

use base64::Engine;
use hie_core::domain::Icd10Code;
use hie_proto::emr as emr_proto;

use super::patient::source_record;
use hie_adapter_relay::submission::{code, derived_id, local_patient, sha256_hex};

use super::{Hospital, Submission, first_time, required_segment};
use crate::hl7::{ErrorCode, Field, Location, Message, Problem};

/// At most this many observations go with a document (the registry's limit).
const MOST_OBSERVATIONS: usize = 200;

pub fn oru(message: &Message, hospital: &Hospital) -> Result<(String, Submission), Problem> {
    let patient = patient_number(message, hospital)?;
    let obr = required_segment(message, "OBR", "an ORU^R01 needs an OBR segment")?;
    let d = message.delimiters();
    let service = obr.field(4, d);
    let title = [service.component(2), service.component(1)]
        .into_iter()
        .find(|t| !t.is_empty())
        .unwrap_or_else(|| "Laboratory report".to_owned());
    let mut observations = Vec::new();
    let mut lines = vec![title.clone()];
    for (i, obx) in message.all("OBX").enumerate() {
        let observed = obx.field(3, d);
        let (code, name) = (observed.component(1), observed.component(2));
        let name = if name.is_empty() { code.clone() } else { name };
        let value = obx.field(5, d).text();
        let unit = obx.field(6, d).component(1);
        let range = obx.field(7, d).value();
        let flag = obx.field(8, d).value();
        let mut line = format!("{name}: {value}");
        for (label, part) in [("", &unit), (" reference ", &range), (" flag ", &flag)] {
            if !part.is_empty() {
                line.push_str(&format!(" {label}{part}").replace("  ", " "));
            }
        }
        lines.push(line);
        if matches!(obx.field(2, d).value().as_str(), "NM" | "SN") && !code.is_empty() {
            let number = obx
                .field(5, d)
                .component(if obx.field(2, d).value() == "SN" { 2 } else { 1 });
            let number: f64 = number.parse().map_err(|_| {
                Problem::at(
                    ErrorCode::DataType,
                    Location::field("OBX", 5).nth(i + 1),
                    "a numeric result (OBX-2 NM) must be a number",
                )
            })?;
            if observations.len() < MOST_OBSERVATIONS {
                observations.push(emr_proto::Observation {
                    code,
                    name,
                    value: number,
                    unit: if unit.is_empty() { "1".to_owned() } else { unit },
                });
            }
        }
    }
    for nte in message.all("NTE") {
        lines.push(nte.field(3, d).text());
    }
    let created = first_time(message, hospital, &[("OBR", 22), ("OBR", 7), ("MSH", 7)])?;
    let observed = first_time(message, hospital, &[("OBR", 7)]).ok();
    let author = practitioner(obr.field(32, d)).or_else(|| practitioner(obr.field(16, d)));
    let entry = emr_proto::DocumentEntry {
        class_code: Some(code("hie-class", "laboratory-report", "检验检查报告")),
        type_code: Some(coded_or(service, "Laboratory report")),
        observations,
        creation_time: Some(created),
        service_start_time: observed,
        author: Some(emr_proto::Author {
            person: author.unwrap_or_default(),
            institution: hospital.organisation.to_string(),
            role: "result interpreter".to_owned(),
            specialty: String::new(),
        }),
        title,
        ..base_entry(message, hospital, &patient)
    };
    let content = lines.join("\n").into_bytes();
    Ok((
        patient,
        Submission::Document(submission(message, hospital, entry, content, "text/plain")),
    ))
}

pub fn mdm(message: &Message, hospital: &Hospital) -> Result<(String, Submission), Problem> {
    let patient = patient_number(message, hospital)?;
    let txa = required_segment(message, "TXA", "an MDM^T02 needs a TXA segment")?;
    let d = message.delimiters();
    let document_type = txa.field(2, d);
    if document_type.value().is_empty() {
        return Err(Problem::at(
            ErrorCode::RequiredFieldMissing,
            Location::field("TXA", 2),
            "the document type is required",
        ));
    }
    let (content, mime_type) = content_of(message)?;
    let confidentiality = match txa.field(18, d).value().to_uppercase().as_str() {
        "V" | "VR" => "V",
        "R" | "RE" => "R",
        _ => "N",
    };
    let created = first_time(
        message,
        hospital,
        &[("TXA", 4), ("TXA", 6), ("EVN", 2), ("MSH", 7)],
    )?;
    let mut entry = emr_proto::DocumentEntry {
        class_code: Some(code("hie-class", "clinical-document", "临床文书")),
        type_code: Some(coded_or(document_type, "Clinical document")),
        confidentiality_code: confidentiality.to_owned(),
        event_codes: message
            .all("DG1")
            .map(|dg1| dg1.field(3, d).component(1))
            .filter(|c| Icd10Code::parse(c).is_ok())
            .take(20)
            .collect(),
        creation_time: Some(created),
        author: Some(emr_proto::Author {
            person: practitioner(txa.field(9, d))
                .or_else(|| practitioner(txa.field(5, d)))
                .unwrap_or_default(),
            institution: hospital.organisation.to_string(),
            role: "author".to_owned(),
            specialty: String::new(),
        }),
        legal_authenticator: practitioner(txa.field(22, d)).unwrap_or_default(),
        title: [document_type.component(2), document_type.component(1)]
            .into_iter()
            .find(|t| !t.is_empty())
            .unwrap_or_default(),
        ..base_entry(message, hospital, &patient)
    };
    // TXA-12, the unique document number, names the document across messages (an addendum or
    // a correction of it keeps it); without one, the message names it.
    let unique = txa.field(12, d).value();
    if !unique.is_empty() {
        entry.unique_id = derived_id("hl7:doc", &hospital.organisation.to_string(), &unique);
    }
    Ok((
        patient,
        Submission::Document(submission(message, hospital, entry, content, &mime_type)),
    ))
}

/// The document's content from the OBX segments: encapsulated data (OBX-2 ED, base64 or hex),
/// or the text of every OBX, one per line.
fn content_of(message: &Message) -> Result<(Vec<u8>, String), Problem> {
    let d = message.delimiters();
    let mut text = Vec::new();
    for (i, obx) in message.all("OBX").enumerate() {
        let value = obx.field(5, d);
        if obx.field(2, d).value() == "ED" {
            let (kind, subtype, encoding) = (value.component(2), value.component(3), value.component(4));
            let data = value.component(5);
            let bytes = match encoding.to_uppercase().as_str() {
                "BASE64" => base64::engine::general_purpose::STANDARD
                    .decode(data.split_whitespace().collect::<String>())
                    .ok(),
                "HEX" => decode_hex(&data),
                _ => Some(data.into_bytes()),
            }
            .ok_or_else(|| {
                Problem::at(
                    ErrorCode::DataType,
                    Location::component("OBX", 5, 5).nth(i + 1),
                    "the encapsulated data is not valid for its encoding (OBX-5.4)",
                )
            })?;
            let mime = match (kind.to_lowercase().as_str(), subtype.to_lowercase()) {
                ("", _) => "application/octet-stream".to_owned(),
                (kind, subtype) if !subtype.is_empty() => format!("{kind}/{subtype}"),
                ("text", _) => "text/plain".to_owned(),
                _ => "application/octet-stream".to_owned(),
            };
            return Ok((bytes, mime));
        }
        text.push(value.text());
    }
    if text.iter().all(|t| t.trim().is_empty()) {
        return Err(Problem::at(
            ErrorCode::RequiredFieldMissing,
            Location::field("OBX", 5),
            "the document's content is required (OBX-5 text, or OBX-2 ED with encapsulated data)",
        ));
    }
    Ok((text.join("\n").into_bytes(), "text/plain".to_owned()))
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let text: String = text.split_whitespace().collect();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect()
}

/// The patient's number at the hospital, from PID-3, checked as the ADT path checks it.
fn patient_number(message: &Message, hospital: &Hospital) -> Result<String, Problem> {
    let (record, _) = source_record(message, hospital)?;
    Ok(record.local_patient_number)
}

/// The fields every document from this adapter shares; the caller fills in the rest.
fn base_entry(message: &Message, hospital: &Hospital, patient: &str) -> emr_proto::DocumentEntry {
    let department = message.value("PV1", 3);
    emr_proto::DocumentEntry {
        unique_id: derived_id(
            "hl7:doc",
            &super::idempotency_key(message),
            &hospital.organisation.to_string(),
        ),
        source_patient_id: Some(local_patient(hospital, patient)),
        format_code: Some(code("hie-format", "text", "plain text")),
        confidentiality_code: "N".to_owned(),
        healthcare_facility_type_code: Some(code("hie-facility", "hospital", "医院")),
        practice_setting_code: Some(if department.is_empty() {
            code("hie-practice", "general", "综合")
        } else {
            code("hie-practice", &department, &department)
        }),
        language_code: "zh-CN".to_owned(),
        ..Default::default()
    }
}

fn submission(
    message: &Message,
    hospital: &Hospital,
    mut entry: emr_proto::DocumentEntry,
    content: Vec<u8>,
    mime_type: &str,
) -> emr_proto::RegisterDocumentSetRequest {
    entry.mime_type = mime_type.to_owned();
    if mime_type != "text/plain" {
        entry.format_code = Some(code("hie-format", mime_type, mime_type));
    }
    entry.hash = sha256_hex(&content);
    entry.size = content.len() as i64;
    emr_proto::RegisterDocumentSetRequest {
        submission_set_unique_id: derived_id(
            "hl7:set",
            &super::idempotency_key(message),
            &hospital.organisation.to_string(),
        ),
        source_organisation_code: hospital.organisation.to_string(),
        documents: vec![emr_proto::DocumentSubmission {
            entry: Some(entry),
            content,
        }],
        associations: Vec::new(),
    }
}

/// A CE/CWE field as a code: its coding system (component 3) or `local`.
fn coded_or(field: Field<'_>, display: &str) -> emr_proto::Code {
    let scheme = field.component(3);
    let name = field.component(2);
    code(
        if scheme.is_empty() { "local" } else { &scheme },
        &field.component(1),
        if name.is_empty() { display } else { &name },
    )
}

/// A practitioner (XCN or NDL): the id, else the name.
fn practitioner(field: Field<'_>) -> Option<String> {
    let first = field.component_field(1);
    let id = first.subcomponent(1);
    if !id.is_empty() {
        return Some(id);
    }
    let name = format!("{}{}", field.component(2), field.component(3));
    (!name.is_empty()).then_some(name)
}
