//! ADT: the PID segment to a source record, PV1 (and DG1) to a visit step, MRG to the prior
//! patient number of a merge.

use hie_core::domain::{Icd10Code, IdentifierSystem, ResidentId};
use hie_proto::emr as emr_proto;
use hie_proto::population as population_proto;

use hie_adapter_relay::submission::patient_selector;

use super::{Hospital, Submission, first_time, located, required_segment};
use crate::hl7::{ErrorCode, Field, Location, Message, Problem};

/// Identifier type codes (HL7 table 0203) of the hospital's own patient number.
const LOCAL_NUMBER_TYPES: &[&str] = &["MR", "PI", "PT", "PN"];
/// Identifier type codes a resident identity number travels under.
const RESIDENT_ID_TYPES: &[&str] = &["NI", "NNCHN", "NN", "CID", "ID"];
const PASSPORT_TYPES: &[&str] = &["PPN"];

pub fn adt(message: &Message, hospital: &Hospital, trigger: &str) -> Result<(String, Submission), Problem> {
    let (record, origins) = source_record(message, hospital)?;
    check_record(&record, &origins)?;
    let patient_key = record.local_patient_number.clone();
    if trigger == "A40" {
        let prior = prior_patient_number(message)?;
        if prior == patient_key {
            return Err(Problem::at(
                ErrorCode::DataType,
                Location::component("MRG", 1, 1),
                "the prior patient number is the surviving one (PID-3)",
            ));
        }
        return Ok((
            patient_key,
            Submission::MergePatients {
                record,
                prior_local_patient_number: prior,
            },
        ));
    }
    let kind = match trigger {
        "A01" if patient_class(message) == "E" => Some(emr_proto::EncounterKind::Emergency),
        "A01" | "A13" => Some(emr_proto::EncounterKind::Admission),
        "A04" if patient_class(message) == "E" => Some(emr_proto::EncounterKind::Emergency),
        "A04" => Some(emr_proto::EncounterKind::Outpatient),
        "A02" => Some(emr_proto::EncounterKind::Transfer),
        "A03" => Some(emr_proto::EncounterKind::Discharge),
        "A11" => Some(emr_proto::EncounterKind::Cancelled),
        // A05 (pre-admission), A08, A28 and A31 (patient information) carry no visit step.
        _ => None,
    };
    let visit = match kind {
        Some(kind) => Some(Box::new(visit(message, hospital, &patient_key, kind)?)),
        None => None,
    };
    Ok((patient_key, Submission::Patient { record, visit }))
}

/// The exchange's call field names, and the HL7 fields their values came from.
type Origins = Vec<(String, Location)>;

pub fn source_record(
    message: &Message,
    hospital: &Hospital,
) -> Result<(population_proto::RegisterSourceRecordRequest, Origins), Problem> {
    required_segment(message, "PID", "the PID segment is required")?;
    let local = local_patient_number(message.field("PID", 3), Location::field("PID", 3))
        .or_else(|| Some(message.value("PID", 2)).filter(|v| !v.is_empty()))
        .ok_or_else(|| {
            Problem::at(
                ErrorCode::RequiredFieldMissing,
                Location::field("PID", 3),
                "the hospital's patient number is required (an identifier of type MR, PI or PT, or one without a type)",
            )
        })?;
    let mut origins: Origins = vec![
        ("local_patient_number".into(), Location::field("PID", 3)),
        ("demographics.name".into(), Location::field("PID", 5)),
        ("demographics.birth_date".into(), Location::field("PID", 7)),
        ("demographics.sex".into(), Location::field("PID", 8)),
        ("demographics.address".into(), Location::field("PID", 11)),
        ("demographics.phone".into(), Location::field("PID", 13)),
        ("demographics.ethnicity".into(), Location::field("PID", 22)),
    ];
    let mut identifiers = Vec::new();
    let mut add = |system: &str, value: String, location: Location, origins: &mut Origins| {
        if identifiers
            .iter()
            .any(|i: &population_proto::Identifier| i.system == system && i.value == value)
        {
            return;
        }
        origins.push((format!("identifiers[{}]", identifiers.len()), location));
        identifiers.push(population_proto::Identifier {
            system: system.to_owned(),
            value,
        });
    };
    for (i, repetition) in message.field("PID", 3).repetitions().enumerate() {
        let (value, kind) = (repetition.component(1), repetition.component(5).to_uppercase());
        let location = Location::component("PID", 3, 1).repetition(i + 1);
        if value.is_empty() {
            continue;
        }
        if RESIDENT_ID_TYPES.contains(&kind.as_str())
            || (kind.is_empty() && ResidentId::parse(&value).is_ok())
        {
            add(IdentifierSystem::RESIDENT_ID, value, location, &mut origins);
        } else if PASSPORT_TYPES.contains(&kind.as_str()) {
            add(IdentifierSystem::PASSPORT, value, location, &mut origins);
        }
    }
    let ssn = message.value("PID", 19);
    if ResidentId::parse(&ssn).is_ok() {
        add(
            IdentifierSystem::RESIDENT_ID,
            ssn,
            Location::field("PID", 19),
            &mut origins,
        );
    }
    let address = message.field("PID", 11);
    let division = address.component(9);
    let line: Vec<String> = [address.component(1), address.component(2)]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect();
    let record = population_proto::RegisterSourceRecordRequest {
        organisation_code: hospital.organisation.to_string(),
        local_patient_number: local,
        demographics: Some(population_proto::Demographics {
            name: person_name(message.field("PID", 5)),
            sex: sex(&message.value("PID", 8))?,
            birth_date: birth_date(&message.value("PID", 7))?,
            ethnicity: [message.value("PID", 22), message.value("PID", 10)]
                .into_iter()
                .find(|code| code.len() == 2 && code.bytes().all(|b| b.is_ascii_digit()))
                .unwrap_or_default(),
            phone: phone(message.field("PID", 13))
                .or_else(|| phone(message.field("PID", 14)))
                .unwrap_or_default(),
            address: Some(population_proto::Address {
                division_code: if division.len() == 6 && division.bytes().all(|b| b.is_ascii_digit()) {
                    division
                } else {
                    String::new()
                },
                line: line.join(" "),
            }),
        }),
        identifiers,
    };
    Ok((record, origins))
}

/// Checks the record with the exchange's own parser: a value the exchange would refuse is
/// refused here, named by its HL7 field.
pub fn check_record(
    record: &population_proto::RegisterSourceRecordRequest,
    origins: &Origins,
) -> Result<(), Problem> {
    let origins: Vec<(&str, Location)> = origins.iter().map(|(f, l)| (f.as_str(), l.clone())).collect();
    hie_population::grpc::source_record_draft(record.clone())
        .map(|_| ())
        .map_err(|e| located(e, &origins, Location::segment("PID")))
}

/// The hospital's own number among a list of identifiers (PID-3, MRG-1): the first of a local
/// type, else the first without a type.
fn local_patient_number(field: Field<'_>, _location: Location) -> Option<String> {
    let repetitions: Vec<(String, String)> = field
        .repetitions()
        .map(|r| (r.component(1), r.component(5).to_uppercase()))
        .filter(|(value, _)| !value.is_empty())
        .collect();
    repetitions
        .iter()
        .find(|(_, kind)| LOCAL_NUMBER_TYPES.contains(&kind.as_str()))
        .or_else(|| repetitions.iter().find(|(_, kind)| kind.is_empty()))
        .map(|(value, _)| value.clone())
}

fn prior_patient_number(message: &Message) -> Result<String, Problem> {
    required_segment(
        message,
        "MRG",
        "an A40 needs the MRG segment naming the prior patient number",
    )?;
    local_patient_number(message.field("MRG", 1), Location::field("MRG", 1)).ok_or_else(|| {
        Problem::at(
            ErrorCode::RequiredFieldMissing,
            Location::component("MRG", 1, 1),
            "the prior patient number is required",
        )
    })
}

/// PID-5: family name then given name, as Chinese names are written; a space between them
/// when either is in Latin letters.
fn person_name(field: Field<'_>) -> String {
    let (family, given) = (field.component(1), field.component(2));
    let latin = |s: &str| s.chars().any(|c| c.is_ascii_alphabetic());
    if family.is_empty() || given.is_empty() {
        return format!("{family}{given}");
    }
    if latin(&family) || latin(&given) {
        format!("{family} {given}")
    } else {
        format!("{family}{given}")
    }
}

/// PID-8: HL7's administrative sex (table 0001), or a GB/T 2261.1 code as many HIS send.
fn sex(code: &str) -> Result<String, Problem> {
    let mapped = match code.to_uppercase().as_str() {
        "" => "",
        "M" | "1" => "1",
        "F" | "2" => "2",
        "U" | "0" => "0",
        "O" | "A" | "N" | "9" => "9",
        _ => {
            return Err(Problem::at(
                ErrorCode::TableValueNotFound,
                Location::field("PID", 8),
                "expected M, F, U, O, A or N (or a GB/T 2261.1 code 0, 1, 2 or 9)",
            ));
        }
    };
    Ok(mapped.to_owned())
}

/// PID-7: the date part of a timestamp, as YYYY-MM-DD; empty when only a year or month is known.
fn birth_date(text: &str) -> Result<String, Problem> {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    match digits.len() {
        0 | 4 | 6 if text.len() == digits.len() => Ok(String::new()),
        n if n >= 8 => Ok(format!("{}-{}-{}", &digits[..4], &digits[4..6], &digits[6..8])),
        _ => Err(Problem::at(
            ErrorCode::DataType,
            Location::field("PID", 7),
            "expected a date YYYYMMDD",
        )),
    }
}

/// The first telephone number (not an e-mail address) of an XTN field.
fn phone(field: Field<'_>) -> Option<String> {
    field.repetitions().find_map(|r| {
        let number = [
            r.component(1),
            r.component(12),
            format!("{}{}", r.component(6), r.component(7)),
        ]
        .into_iter()
        .find(|n| !n.is_empty())?;
        let is_mail = r.component(3).eq_ignore_ascii_case("Internet") || number.contains('@');
        (!is_mail).then_some(number)
    })
}

fn patient_class(message: &Message) -> String {
    message.value("PV1", 2).to_uppercase()
}

fn visit(
    message: &Message,
    hospital: &Hospital,
    patient: &str,
    kind: emr_proto::EncounterKind,
) -> Result<emr_proto::RegisterEncounterRequest, Problem> {
    required_segment(message, "PV1", "this event needs the PV1 segment")?;
    let visit_number = message.value("PV1", 19);
    if visit_number.is_empty() {
        return Err(Problem::at(
            ErrorCode::RequiredFieldMissing,
            Location::component("PV1", 19, 1),
            "the visit number is required",
        ));
    }
    let department = [message.value("PV1", 3), message.value("PV1", 10)]
        .into_iter()
        .find(|d| !d.is_empty())
        .ok_or_else(|| {
            Problem::at(
                ErrorCode::RequiredFieldMissing,
                Location::component("PV1", 3, 1),
                "the department is required (PV1-3 point of care, or PV1-10 hospital service)",
            )
        })?;
    let attending = message.field("PV1", 7);
    let attending = match attending.component(1) {
        id if !id.is_empty() => id,
        _ => format!("{}{}", attending.component(2), attending.component(3)),
    };
    let diagnoses: Vec<String> = message
        .all("DG1")
        .map(|dg1| dg1.field(3, message.delimiters()).component(1))
        .filter(|code| Icd10Code::parse(code).is_ok())
        .collect();
    let started_at = first_time(
        message,
        hospital,
        &[("PV1", 44), ("EVN", 6), ("EVN", 2), ("MSH", 7)],
    )?;
    let ended_at = match kind {
        emr_proto::EncounterKind::Discharge => Some(first_time(
            message,
            hospital,
            &[("PV1", 45), ("EVN", 6), ("EVN", 2), ("MSH", 7)],
        )?),
        _ => None,
    };
    let request = emr_proto::RegisterEncounterRequest {
        organisation_code: hospital.organisation.to_string(),
        person: Some(patient_selector(hospital, patient)),
        encounter: Some(emr_proto::Encounter {
            visit_number,
            kind: kind.into(),
            department,
            attending_practitioner: attending,
            diagnoses,
            started_at: Some(started_at),
            ended_at,
            ..Default::default()
        }),
    };
    hie_emr::grpc::encounter_draft(hospital.organisation.clone(), request.encounter.clone()).map_err(
        |e| {
            located(
                e,
                &[
                    ("encounter.visit_number", Location::field("PV1", 19)),
                    ("encounter.department", Location::field("PV1", 3)),
                    ("encounter.attending_practitioner", Location::field("PV1", 7)),
                    ("encounter.started_at", Location::field("PV1", 44)),
                    ("encounter.ended_at", Location::field("PV1", 45)),
                    ("encounter.diagnoses", Location::field("DG1", 3)),
                ],
                Location::segment("PV1"),
            )
        },
    )?;
    Ok(request)
}
