//! Patient → the hospital's source record of the patient.

use hie_adapter_relay::submission::{Hospital, Submission, Translated, refused_at};
use hie_core::domain::{IdentifierSystem, ResidentId};
use hie_proto::population as population_proto;

use super::{At, patient_number};
use crate::outcome::Issue;

/// Identifier type codes (v2-0203) a resident identity number travels under.
const RESIDENT_ID_TYPES: [&str; 3] = ["NI", "NNCHN", "CID"];

pub fn patient(at: &At<'_>, hospital: &Hospital) -> Result<Translated, Vec<Issue>> {
    let resource = at
        .value
        .ok_or_else(|| vec![Issue::required("Patient", "the resource is empty")])?;
    let number = patient_number(resource).ok_or_else(|| {
        vec![Issue::required(
            "Patient.id",
            "the Patient needs its logical id (or an identifier of type MR)",
        )]
    })?;
    let mut identifiers = Vec::new();
    let mut origins: Vec<(String, String)> = Vec::new();
    for identifier in at.array("identifier") {
        let Some(value) = identifier.str("value") else {
            continue;
        };
        let system = identifier.str("system").unwrap_or_default().to_lowercase();
        let resident = identifier
            .get("type")
            .codings()
            .iter()
            .any(|(_, c, _)| RESIDENT_ID_TYPES.contains(&c.as_str()))
            || system.contains("resident")
            || system.contains("2.16.156.10011.1.12")
            || (system.is_empty() && ResidentId::parse(&value).is_ok());
        let passport = identifier.has_code("type", "PPN") || system.contains("passport");
        let system = if resident {
            IdentifierSystem::RESIDENT_ID
        } else if passport {
            IdentifierSystem::PASSPORT
        } else {
            continue;
        };
        origins.push((
            format!("identifiers[{}]", identifiers.len()),
            format!("{}.value", identifier.path),
        ));
        identifiers.push(population_proto::Identifier {
            system: system.to_owned(),
            value,
        });
    }
    let name = at.first("name");
    let name_text = name.str("text").unwrap_or_else(|| {
        let family = name.str("family").unwrap_or_default();
        let given: Vec<String> = name.array("given").iter().filter_map(At::text).collect();
        let given = given.join(" ");
        let latin = |s: &str| s.chars().any(|c| c.is_ascii_alphabetic());
        if !family.is_empty() && !given.is_empty() && (latin(&family) || latin(&given)) {
            format!("{family} {given}")
        } else {
            format!("{family}{given}")
        }
    });
    let sex = match at.str("gender").as_deref() {
        None => "",
        Some("male") => "1",
        Some("female") => "2",
        Some("other") => "9",
        Some("unknown") => "0",
        Some(_) => {
            return Err(vec![Issue::value(
                "Patient.gender",
                "expected male, female, other or unknown",
            )]);
        }
    };
    let phone = at
        .array("telecom")
        .into_iter()
        .find(|t| t.str("system").as_deref() == Some("phone"))
        .and_then(|t| t.str("value"))
        .unwrap_or_default();
    let address = at.first("address");
    // The county's GB/T 2260 code, where Chinese profiles put it (a postal code is also six
    // digits, and is not one).
    let division = address
        .str("district")
        .filter(|code| is_division(code))
        .unwrap_or_default();
    let line: Vec<String> = address.array("line").iter().filter_map(At::text).collect();
    let ethnicity = at
        .array("extension")
        .into_iter()
        .find(|e| {
            e.str("url")
                .is_some_and(|url| url.to_lowercase().contains("ethnic"))
        })
        .and_then(|e| {
            e.get("valueCoding").str("code").or_else(|| {
                e.get("valueCodeableConcept")
                    .codings()
                    .into_iter()
                    .next()
                    .map(|c| c.1)
            })
        })
        .unwrap_or_default();
    let record = population_proto::RegisterSourceRecordRequest {
        organisation_code: hospital.organisation.to_string(),
        local_patient_number: number.clone(),
        demographics: Some(population_proto::Demographics {
            name: name_text,
            sex: sex.to_owned(),
            birth_date: at.str("birthDate").unwrap_or_default(),
            ethnicity,
            phone,
            address: Some(population_proto::Address {
                division_code: division,
                line: line.join(" "),
            }),
        }),
        identifiers,
    };
    hie_population::grpc::source_record_draft(record.clone()).map_err(|error| {
        let fixed = [
            ("local_patient_number", "Patient.id"),
            ("demographics.name", "Patient.name"),
            ("demographics.sex", "Patient.gender"),
            ("demographics.birth_date", "Patient.birthDate"),
            ("demographics.ethnicity", "Patient.extension"),
            ("demographics.phone", "Patient.telecom"),
            ("demographics.address", "Patient.address"),
        ];
        let origins: Vec<(&str, &str)> = origins
            .iter()
            .map(|(field, path)| (field.as_str(), path.as_str()))
            .chain(fixed)
            .collect();
        let (path, reason) = refused_at(error, &origins);
        vec![Issue::value(path.copied().unwrap_or("Patient"), reason)]
    })?;
    Ok(Translated {
        message_type: "FHIR Patient".to_owned(),
        patient_key: number,
        submission: Submission::Patient { record, visit: None },
    })
}

/// A GB/T 2260 county code: six digits, a province from 11 to 82.
fn is_division(code: &str) -> bool {
    code.len() == 6
        && code.bytes().all(|b| b.is_ascii_digit())
        && (11..=82).contains(&code[..2].parse::<u32>().unwrap_or(0))
}
