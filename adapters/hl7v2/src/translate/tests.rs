use hie_proto::emr::EncounterKind;

use super::*;
use crate::hl7::Charset;
use hie_core::domain::OrganisationCode;

fn hospital() -> Hospital {
    Hospital::in_china(OrganisationCode::parse("QDN-H01").unwrap())
}

fn msh(kind: &str, version: &str) -> String {
    format!("MSH|^~\\&|HIS|QDN-H01|HIE|HIE|20261204101500||{kind}|C-1|P|{version}\r")
}

const PID: &str = "PID|1||000123^^^QDN-H01^MR~522601198001010016^^^CHN^NI||张^伟||19800101|M|||凯里市大十字街1号^^凯里市^贵州省^556000^CHN^H^^522601||13800001111|||||||||01\r";
const PV1: &str = "PV1|1|I|内科^301^02||||D001^李^医生||||||||||||V2026-001|||||||||||||||||||||||||20261204100000|20261206120000\r";

fn translate_text(text: &str) -> Result<Translated, Refusal> {
    let message = Message::parse(text.as_bytes(), Charset::Utf8).unwrap();
    translate(&message, &hospital())
}

fn error_at(text: &str) -> (ErrorCode, String) {
    match translate_text(text) {
        Err(Refusal::Error(p) | Refusal::Reject(p)) => {
            (p.code, p.location.map(|l| l.to_string()).unwrap_or_default())
        }
        Ok(t) => panic!("translated: {t:?}"),
    }
}

#[test]
fn an_admission_becomes_the_patients_record_and_an_admission_visit() {
    let t = translate_text(&format!(
        "{}EVN|A01|20261204101500\r{PID}{PV1}DG1|1||I10^高血压^I10\r",
        msh("ADT^A01^ADT_A01", "2.5.1")
    ))
    .unwrap();
    assert_eq!(t.message_type, "ADT^A01");
    assert_eq!(t.patient_key, "000123");
    let Submission::Patient {
        record,
        visit: Some(visit),
    } = t.submission
    else {
        panic!()
    };
    let d = record.demographics.unwrap();
    assert_eq!(
        (
            d.name.as_str(),
            d.sex.as_str(),
            d.birth_date.as_str(),
            d.ethnicity.as_str()
        ),
        ("张伟", "1", "1980-01-01", "01")
    );
    assert_eq!(d.phone, "13800001111");
    let address = d.address.unwrap();
    assert_eq!(
        (address.division_code.as_str(), address.line.as_str()),
        ("522601", "凯里市大十字街1号")
    );
    assert_eq!(record.identifiers[0].system, "urn:hie:id:resident");
    let encounter = visit.encounter.unwrap();
    assert_eq!(encounter.kind(), EncounterKind::Admission);
    assert_eq!(
        (encounter.visit_number.as_str(), encounter.department.as_str()),
        ("V2026-001", "内科")
    );
    assert_eq!(encounter.attending_practitioner, "D001");
    assert_eq!(encounter.diagnoses, vec!["I10"]);
    assert_eq!(encounter.started_at.unwrap().seconds, 1_796_349_600); // 2026-12-04 10:00 +08:00
}

#[test]
fn each_trigger_reports_its_visit_step() {
    let kinds = [
        ("ADT^A04", Some(EncounterKind::Outpatient)),
        ("ADT^A02", Some(EncounterKind::Transfer)),
        ("ADT^A03", Some(EncounterKind::Discharge)),
        ("ADT^A11", Some(EncounterKind::Cancelled)),
        ("ADT^A13", Some(EncounterKind::Admission)),
        ("ADT^A05", None),
        ("ADT^A08", None),
        ("ADT^A28", None),
        ("ADT^A31", None),
    ];
    for (kind, expected) in kinds {
        let t = translate_text(&format!("{}{PID}{PV1}", msh(kind, "2.4"))).unwrap();
        let Submission::Patient { visit, .. } = t.submission else {
            panic!()
        };
        assert_eq!(visit.map(|v| v.encounter.unwrap().kind()), expected, "{kind}");
    }
    let emergency = PV1.replace("PV1|1|I|", "PV1|1|E|");
    let t = translate_text(&format!("{}{PID}{emergency}", msh("ADT^A04", "2.3"))).unwrap();
    let Submission::Patient {
        visit: Some(visit), ..
    } = t.submission
    else {
        panic!()
    };
    assert_eq!(visit.encounter.unwrap().kind(), EncounterKind::Emergency);
}

#[test]
fn a_merge_names_the_prior_number_from_mrg() {
    let t = translate_text(&format!(
        "{}{PID}MRG|000099^^^QDN-H01^MR\r",
        msh("ADT^A40^ADT_A39", "2.5")
    ))
    .unwrap();
    assert_eq!(
        t.submission,
        Submission::MergePatients {
            record: match translate_text(&format!("{}{PID}", msh("ADT^A28", "2.5")))
                .unwrap()
                .submission
            {
                Submission::Patient { record, .. } => record,
                _ => unreachable!(),
            },
            prior_local_patient_number: "000099".to_owned(),
        }
    );
    assert_eq!(error_at(&format!("{}{PID}", msh("ADT^A40", "2.5"))).1, "MRG");
}

#[test]
fn results_become_a_document_with_numeric_observations() {
    let text = format!(
        "{}{PID}OBR|1||LAB-77|GLU^血糖^L|||20261204080000|||||||||D002^王^||||||20261204090000\rOBX|1|NM|GLU^血糖^L||6.1|mmol/L|3.9-6.1|N|||F\rOBX|2|ST|NOTE^备注^L||空腹\r",
        msh("ORU^R01^ORU_R01", "2.5.1")
    );
    let t = translate_text(&text).unwrap();
    let Submission::Document(set) = t.submission else {
        panic!()
    };
    let document = &set.documents[0];
    let entry = document.entry.as_ref().unwrap();
    assert_eq!(entry.title, "血糖");
    assert_eq!(entry.observations.len(), 1);
    assert_eq!(
        (entry.observations[0].value, entry.observations[0].unit.as_str()),
        (6.1, "mmol/L")
    );
    assert_eq!(entry.author.as_ref().unwrap().person, "D002");
    assert_eq!(entry.size as usize, document.content.len());
    // Ids an operator can tell apart by their source: this adapter's documents and sets.
    assert!(
        entry.unique_id.starts_with("urn:hie:hl7:doc:"),
        "{}",
        entry.unique_id
    );
    assert!(
        set.submission_set_unique_id.starts_with("urn:hie:hl7:set:"),
        "{}",
        set.submission_set_unique_id
    );
    assert!(String::from_utf8_lossy(&document.content).contains("备注: 空腹"));
    // The same message again names the same document: the exchange takes the retry as one.
    let again = translate_text(&text).unwrap();
    assert_eq!(again.submission, Submission::Document(set));
}

#[test]
fn an_mdm_document_carries_its_encapsulated_content() {
    let text = format!(
        "{}{PID}TXA|1|DS^出院小结^LOCAL|TX|20261204|D001|||20261204|D001||||DOC-9||||AU|R\rOBX|1|ED|DS||^application^pdf^Base64^JVBERi0xLjQ=\r",
        msh("MDM^T02^MDM_T02", "2.5")
    );
    let Submission::Document(set) = translate_text(&text).unwrap().submission else {
        panic!()
    };
    let entry = set.documents[0].entry.clone().unwrap();
    assert_eq!(set.documents[0].content, b"%PDF-1.4");
    assert_eq!(entry.mime_type, "application/pdf");
    assert_eq!(entry.confidentiality_code, "R");
    let bad = text.replace("JVBERi0xLjQ=", "!!!");
    assert_eq!(error_at(&bad).1, "OBX-5.5");
}

#[test]
fn what_is_missing_or_wrong_is_named_by_its_hl7_field() {
    let cases = [
        (
            format!("{}{PID}", msh("ADT^A99", "2.5")),
            ErrorCode::UnsupportedEventCode,
            "MSH-9.2",
        ),
        (
            format!("{}{PID}", msh("SIU^S12", "2.5")),
            ErrorCode::UnsupportedMessageType,
            "MSH-9.1",
        ),
        (
            format!("{}{PID}", msh("ADT^A01", "2.2")),
            ErrorCode::UnsupportedVersionId,
            "MSH-12",
        ),
        (
            format!("{}{PID}", msh("ADT^A08", "2.5")).replace("|P|", "|X|"),
            ErrorCode::UnsupportedProcessingId,
            "MSH-11",
        ),
        (
            format!("{}{PID}", msh("ADT^A08", "2.5")).replace("|C-1|", "||"),
            ErrorCode::RequiredFieldMissing,
            "MSH-10",
        ),
        (
            format!("{}EVN|A08\r", msh("ADT^A08", "2.5")),
            ErrorCode::SegmentSequence,
            "PID",
        ),
        (
            format!(
                "{}{}",
                msh("ADT^A08", "2.5"),
                PID.replace("000123^^^QDN-H01^MR~", "")
            ),
            ErrorCode::RequiredFieldMissing,
            "PID-3",
        ),
        (
            format!("{}{}", msh("ADT^A08", "2.5"), PID.replace("|M|", "|Q|")),
            ErrorCode::TableValueNotFound,
            "PID-8",
        ),
        (
            format!(
                "{}{}",
                msh("ADT^A08", "2.5"),
                PID.replace("|13800001111|", "|12|")
            ),
            ErrorCode::DataType,
            "PID-13",
        ),
        (
            format!(
                "{}{}",
                msh("ADT^A08", "2.5"),
                PID.replace("016^^^CHN^NI", "015^^^CHN^NI")
            ),
            ErrorCode::DataType,
            "PID-3(2).1",
        ),
        (
            format!("{}{PID}", msh("ADT^A01", "2.5")),
            ErrorCode::SegmentSequence,
            "PV1",
        ),
        (
            format!("{}{PID}{}", msh("ADT^A01", "2.5"), PV1.replace("V2026-001", "")),
            ErrorCode::RequiredFieldMissing,
            "PV1-19.1",
        ),
        (
            format!(
                "{}{PID}{}",
                msh("ADT^A01", "2.5"),
                PV1.replace("20261204100000", "2026")
            ),
            ErrorCode::DataType,
            "PV1-44",
        ),
    ];
    for (text, code, location) in cases {
        assert_eq!(error_at(&text), (code, location.to_owned()), "{text}");
    }
}

#[test]
fn a_refusal_is_ar_for_the_header_and_ae_for_the_content() {
    assert!(matches!(
        translate_text(&format!("{}{PID}", msh("SIU^S12", "2.5"))),
        Err(Refusal::Reject(_))
    ));
    assert!(matches!(
        translate_text(&format!("{}EVN|A08\r", msh("ADT^A08", "2.5"))),
        Err(Refusal::Error(_))
    ));
}
