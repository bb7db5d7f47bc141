//! The demo's clinical data: for a sample of residents known to the first prefecture hospital,
//! the township centre's archive entries (a basic profile, hypertension follow-ups, a flu dose),
//! the hospital's visit and a discharge summary with laboratory results, so that a clinic's
//! look-up finds records, documents and a summary.

use chrono::{Datelike, NaiveDate};
use hie_core::context::RequestContext;
use hie_core::digest::sha256_hex;
use hie_core::domain::{Icd10Code, OrganisationCode};
use hie_emr::domain::{
    Author, Code, Confidentiality, DocumentMetadata, DocumentSubmission, EncounterDraft, EncounterKind,
    Observation, SubmissionSet,
};
use hie_population::domain::{PersonSelector, SourceRecordDraft};
use hie_records::domain::payload::{
    Allergy, BasicProfile, ControlStatus, HypertensionFollowUp, Immunisation, Medication, VitalSigns,
};
use hie_records::domain::{EntryDraft, EntryPayload};

use crate::Exchange;
use crate::demo::{Rng, SyntheticPrefecture};

/// The hospital whose patients get clinical data.
pub const CLINICAL_HOSPITAL: &str = "QDN-H01";

/// How many of its patients do.
pub const CLINICAL_SAMPLE: usize = 300;

/// The sample: each resident's township record and record at [`CLINICAL_HOSPITAL`].
pub fn sample(prefecture: &SyntheticPrefecture) -> Vec<(&SourceRecordDraft, &SourceRecordDraft)> {
    let n = prefecture.residents.len();
    let township: &[SourceRecordDraft] = &prefecture.records[..n.min(prefecture.records.len())];
    prefecture.records[n.min(prefecture.records.len())..]
        .iter()
        .filter(|r| r.organisation().as_str() == CLINICAL_HOSPITAL)
        .filter_map(|hospital| {
            let id = hospital.resident_id()?;
            township
                .iter()
                .find(|t| t.resident_id().as_ref() == Some(&id))
                .map(|t| (t, hospital))
        })
        .take(CLINICAL_SAMPLE)
        .collect()
}

fn code(scheme: &str, value: &str, display: &str) -> Code {
    Code {
        scheme: scheme.into(),
        code: value.into(),
        display: display.into(),
    }
}

fn icd(text: &str) -> Icd10Code {
    Icd10Code::parse(text).expect("the demo's codes are valid")
}

/// Loads the sample's clinical data.
pub async fn load(exchange: &Exchange, prefecture: &SyntheticPrefecture) -> Result<usize, String> {
    let context = RequestContext::bulk_load("hie-demo", "synthetic clinical records");
    let today = NaiveDate::from_ymd_opt(2026, 1, 1).expect("a valid date");
    let hospital = OrganisationCode::parse(CLINICAL_HOSPITAL).expect("a valid code");
    let mut rng = Rng::new(7);
    let mut loaded = 0;
    let mut documents = Vec::new();
    for (i, (township, at_hospital)) in sample(prefecture).into_iter().enumerate() {
        let at_township = PersonSelector::Identifier(township.local_patient_number().clone());
        let born = township
            .demographics()
            .birth_date
            .map_or(1970, |b| b.date().year());
        let mut entries = vec![(
            "BP",
            today - chrono::Days::new(300),
            EntryPayload::BasicProfile(BasicProfile {
                blood_type: rng.pick(&["A", "B", "AB", "O"]).to_string(),
                allergies: if rng.chance(0.2) {
                    vec![Allergy {
                        substance: rng.pick(&["青霉素", "磺胺类", "海鲜"]).to_string(),
                        reaction: "皮疹".into(),
                    }]
                } else {
                    Vec::new()
                },
                past_diagnoses: Vec::new(),
                family_history: Vec::new(),
            }),
        )];
        let hypertensive = today.year() - born >= 40 && rng.chance(0.4);
        if hypertensive {
            for (n, days_ago) in [(1, 120_u64), (2, 30)] {
                let systolic = 135 + rng.below(30) as i32;
                entries.push((
                    if n == 1 { "HT1" } else { "HT2" },
                    today - chrono::Days::new(days_ago),
                    EntryPayload::HypertensionFollowUp(HypertensionFollowUp {
                        vital_signs: VitalSigns {
                            systolic_mmhg: Some(systolic),
                            diastolic_mmhg: Some(systolic - 50),
                            heart_rate_bpm: Some(60 + rng.below(30) as i32),
                            weight_kg: Some(50.0 + rng.below(30) as f64),
                            ..VitalSigns::default()
                        },
                        medications: vec![Medication {
                            name: rng.pick(&["氨氯地平", "缬沙坦", "硝苯地平缓释片"]).to_string(),
                            dose: "5 mg".into(),
                            frequency: "qd".into(),
                        }],
                        control: if systolic < 140 {
                            ControlStatus::Controlled
                        } else {
                            ControlStatus::Uncontrolled
                        },
                        next_follow_up_on: Some(today + chrono::Days::new(60)),
                    }),
                ));
            }
        }
        if rng.chance(0.5) {
            entries.push((
                "FLU",
                today - chrono::Days::new(80),
                EntryPayload::Immunisation(Immunisation {
                    vaccine_code: "2201".into(),
                    dose_number: 1,
                    lot_number: format!("FLU2025-{:02}", rng.below(40)),
                    site: "左上臂".into(),
                }),
            ));
        }
        for (key, on, payload) in entries {
            let draft = EntryDraft::new(
                township.organisation().clone(),
                &format!("{}-{key}", township.local_patient_number().value()),
                at_township.clone(),
                on,
                payload,
                today,
            )
            .map_err(|e| e.to_string())?;
            exchange
                .records
                .submit(&context, draft)
                .await
                .map_err(|e| e.to_string())?;
            loaded += 1;
        }

        // The hospital: a visit and its discharge summary with the laboratory's results.
        let at_h01 = at_hospital.local_patient_number().clone();
        let started = hie_core::time::noon_in_china(today - chrono::Days::new(20 + rng.below(60) as u64));
        let diagnosis = if hypertensive {
            "I10"
        } else {
            *rng.pick(&["J06.9", "K29.7", "M54.5"])
        };
        let department = *rng.pick(&["心内科", "消化内科", "呼吸内科", "骨科"]);
        let visit = EncounterDraft::new(
            hospital.clone(),
            &format!("V{i:06}"),
            EncounterKind::Outpatient,
            department,
            "dr-demo",
            vec![icd(diagnosis)],
            started,
            None,
        )
        .map_err(|e| e.to_string())?;
        exchange
            .emr
            .register_encounter(&context, &PersonSelector::Identifier(at_h01.clone()), visit)
            .await
            .map_err(|e| e.to_string())?;
        let glucose = 4.5 + rng.below(40) as f64 / 10.0;
        let content = format!(
            "门诊病历\n诊断: {diagnosis}\n空腹血糖 {glucose:.1} mmol/L\n医嘱: 按时服药, 定期复诊。\n"
        )
        .into_bytes();
        documents.push(DocumentSubmission {
            metadata: DocumentMetadata {
                unique_id: format!("2.16.156.10011.1.{}.{i}", 1_000_000 + i),
                source_patient: at_h01.clone(),
                class_code: code("hie-class", "outpatient-record", "门诊病历"),
                type_code: code("LOINC", "11488-4", "Consult note"),
                format_code: code("hie-format", "text", "plain text"),
                confidentiality: Confidentiality::Normal,
                sensitive_category: None,
                event_codes: vec![icd(diagnosis)],
                facility_type_code: code("hie-facility", "hospital", "综合医院"),
                practice_setting_code: code("hie-practice", "internal-medicine", "内科"),
                creation_time: started,
                service_start_time: Some(started),
                service_stop_time: Some(started),
                author: Author {
                    person: "dr-demo".into(),
                    institution: hospital.clone(),
                    role: "attending".into(),
                    specialty: "internal medicine".into(),
                },
                language_code: "zh-CN".into(),
                mime_type: "text/plain".into(),
                hash: sha256_hex(&content),
                size: content.len() as i64,
                repository: None,
                title: "门诊病历".into(),
                legal_authenticator: "dr-demo".into(),
                observations: vec![Observation {
                    code: "1558-6".into(),
                    name: "空腹血糖".into(),
                    value: (glucose * 10.0).round() / 10.0,
                    unit: "mmol/L".into(),
                }],
            },
            content: Some(content),
        });
    }
    // Submission sets of up to 100 documents, as a hospital's adapter sends a day's documents.
    for (n, chunk) in documents.chunks(100).enumerate() {
        let set = SubmissionSet {
            unique_id: format!("2.16.156.10011.2.{n}"),
            source_organisation: hospital.clone(),
            documents: chunk.to_vec(),
            associations: Vec::new(),
        };
        exchange
            .emr
            .register_set(&context, set)
            .await
            .map_err(|e| e.to_string())?;
        loaded += chunk.len();
    }
    Ok(loaded)
}

/// The telemedicine price list of the demo: two consult items (prices in fen, as the provincial
/// price list has them) and one no longer offered.
pub async fn load_catalogue(exchange: &Exchange) -> Result<usize, String> {
    use hie_telemedicine::domain::ServiceItem;
    let context = RequestContext::bulk_load("hie-demo", "telemedicine price list");
    let at = |y, m, d| {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|date| date.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc())
            .ok_or("a valid date")
    };
    let items = [
        (
            "311000024",
            "远程会诊（单学科）",
            20_000,
            true,
            700,
            at(2024, 1, 1)?,
            None,
        ),
        (
            "311000025",
            "远程会诊（多学科）",
            50_000,
            true,
            600,
            at(2024, 1, 1)?,
            None,
        ),
        (
            "311000020",
            "远程会诊（旧价）",
            15_000,
            true,
            700,
            at(2020, 1, 1)?,
            Some(at(2024, 1, 1)?),
        ),
    ];
    for (code, name, price_fen, reimbursable, permille, from, until) in items {
        let item = ServiceItem {
            code: code.into(),
            name: name.into(),
            price_fen,
            reimbursable,
            reimbursable_ratio_permille: permille,
            active_from: from,
            active_until: until,
        };
        exchange
            .telemedicine
            .put_item(&context, item)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(items.len())
}
