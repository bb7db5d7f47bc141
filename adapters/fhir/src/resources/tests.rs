use hie_adapter_relay::submission::Submission;
use hie_core::domain::OrganisationCode;
use hie_proto::emr::EncounterKind;
use serde_json::{Value, json};

use super::*;

fn hospital() -> Hospital {
    Hospital::in_china(OrganisationCode::parse("QDN-H01").unwrap())
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient", "id": "P100",
        "identifier": [{"system": "http://hospital.example/mrn", "type": {"coding": [{"code": "MR"}]}, "value": "MR-1"},
                       {"type": {"coding": [{"code": "NI"}]}, "value": "522601198001010016"}],
        "name": [{"family": "张", "given": ["伟"]}], "gender": "male", "birthDate": "1980-01-01",
        "telecom": [{"system": "email", "value": "a@b.c"}, {"system": "phone", "value": "13800001111"}],
        "address": [{"line": ["凯里市大十字街1号"], "district": "522601", "postalCode": "556000"}]
    })
}

fn expressions(resource: &Value) -> Vec<String> {
    translate(resource, &hospital())
        .unwrap_err()
        .into_iter()
        .map(|i| i.expression)
        .collect()
}

#[test]
fn a_patient_becomes_the_hospitals_record_under_its_logical_id() {
    let t = translate(&patient(), &hospital()).unwrap();
    assert_eq!(t.patient_key, "P100");
    let Submission::Patient { record, visit: None } = t.submission else {
        panic!()
    };
    let d = record.demographics.unwrap();
    assert_eq!(
        (
            d.name.as_str(),
            d.sex.as_str(),
            d.birth_date.as_str(),
            d.phone.as_str()
        ),
        ("张伟", "1", "1980-01-01", "13800001111")
    );
    assert_eq!(d.address.unwrap().division_code, "522601");
    assert_eq!(record.identifiers[0].system, "urn:hie:id:resident");
}

#[test]
fn what_the_exchange_would_refuse_is_named_by_its_element() {
    let mut bad = patient();
    bad["birthDate"] = json!("1980-02-30");
    assert_eq!(expressions(&bad), vec!["Patient.birthDate"]);
    let mut bad = patient();
    bad["gender"] = json!("M");
    assert_eq!(expressions(&bad), vec!["Patient.gender"]);
    let mut bad = patient();
    bad["identifier"][1]["value"] = json!("522601198001010015");
    assert_eq!(expressions(&bad), vec!["Patient.identifier[1].value"]);
    assert_eq!(
        expressions(&json!({"resourceType": "Practitioner"})),
        vec!["Practitioner"]
    );
}

#[test]
fn an_encounter_reports_its_visit_step_from_class_and_status() {
    let encounter = |class: &str, status: &str| {
        json!({"resourceType": "Encounter", "id": "E1", "status": status, "class": {"code": class},
               "subject": {"reference": "Patient/P100"}, "serviceType": {"text": "内科"},
               "identifier": [{"value": "V9"}],
               "period": {"start": "2026-12-04T10:00:00+08:00", "end": "2026-12-06T10:00:00+08:00"},
               "reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10"}]}]})
    };
    for (class, status, kind) in [
        ("AMB", "in-progress", EncounterKind::Outpatient),
        ("EMER", "arrived", EncounterKind::Emergency),
        ("IMP", "in-progress", EncounterKind::Admission),
        ("IMP", "finished", EncounterKind::Discharge),
        ("AMB", "cancelled", EncounterKind::Cancelled),
    ] {
        let t = translate(&encounter(class, status), &hospital()).unwrap();
        let Submission::Visit(visit) = t.submission else {
            panic!()
        };
        let e = visit.encounter.unwrap();
        assert_eq!(e.kind(), kind, "{class} {status}");
        assert_eq!((e.visit_number.as_str(), e.diagnoses[0].as_str()), ("V9", "I10"));
    }
    let mut no_start = encounter("AMB", "arrived");
    no_start["period"] = json!({});
    assert_eq!(expressions(&no_start), vec!["Encounter.period.start"]);
    let mut no_subject = encounter("AMB", "arrived");
    no_subject["subject"] = json!({"reference": "Group/1"});
    assert_eq!(expressions(&no_subject), vec!["Encounter.subject.reference"]);
}

#[test]
fn an_observation_becomes_a_document_with_its_value_and_the_same_version_the_same_document() {
    let observation = json!({"resourceType": "Observation", "id": "O1", "meta": {"versionId": "1"}, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}]},
        "subject": {"reference": "Patient/P100"}, "effectiveDateTime": "2026-12-04T08:00:00+08:00",
        "valueQuantity": {"value": 6.1, "unit": "mmol/L"}});
    let t = translate(&observation, &hospital()).unwrap();
    let Submission::Document(set) = t.submission.clone() else {
        panic!()
    };
    let entry = set.documents[0].entry.clone().unwrap();
    assert_eq!(
        (entry.observations[0].code.as_str(), entry.observations[0].value),
        ("2345-7", 6.1)
    );
    assert_eq!(entry.mime_type, "application/fhir+json");
    assert_eq!(translate(&observation, &hospital()).unwrap(), t);
    let mut no_time = observation.clone();
    no_time.as_object_mut().unwrap().remove("effectiveDateTime");
    assert_eq!(expressions(&no_time), vec!["Observation.effectiveDateTime"]);
}

#[test]
fn a_document_reference_carries_its_content_and_refuses_one_without_it() {
    let reference = json!({"resourceType": "DocumentReference", "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5", "display": "Discharge summary"}]},
        "subject": {"reference": "Patient/P100"}, "date": "2026-12-04T10:00:00+08:00",
        "securityLabel": [{"coding": [{"code": "R"}]}],
        "content": [{"attachment": {"contentType": "application/pdf", "data": "JVBERi0xLjQ="}}]});
    let Submission::Document(set) = translate(&reference, &hospital()).unwrap().submission else {
        panic!()
    };
    assert_eq!(set.documents[0].content, b"%PDF-1.4");
    assert_eq!(set.documents[0].entry.as_ref().unwrap().confidentiality_code, "R");
    let mut no_data = reference.clone();
    no_data["content"][0]["attachment"]
        .as_object_mut()
        .unwrap()
        .remove("data");
    assert_eq!(
        expressions(&no_data),
        vec!["DocumentReference.content[0].attachment.data"]
    );
}
