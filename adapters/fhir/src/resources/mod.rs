//! From a FHIR R4 resource to the exchange's calls. Each resource stands alone here: a
//! reference to its patient is `Patient/<id>` (the intake rewrote a transaction's `urn:uuid:`
//! references before journaling), and the patient's number at the hospital is the Patient's
//! logical id, or, for a Patient without one, its identifier of type MR.

mod clinical;
mod patient;
mod visit;

pub use clinical::resource_identity;

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};
use hie_adapter_relay::submission::{Hospital, Translated};
use serde_json::Value;

use crate::outcome::Issue;

/// The resource types this adapter takes.
pub const SUPPORTED: [&str; 7] = [
    "Patient",
    "Encounter",
    "Observation",
    "Condition",
    "AllergyIntolerance",
    "MedicationRequest",
    "DocumentReference",
];

/// The calls `resource` stands for, or every problem found in it.
pub fn translate(resource: &Value, hospital: &Hospital) -> Result<Translated, Vec<Issue>> {
    let kind = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let at = At::root(resource, kind);
    match kind {
        "Patient" => patient::patient(&at, hospital),
        "Encounter" => visit::encounter(&at, hospital),
        "Observation" | "Condition" | "AllergyIntolerance" | "MedicationRequest" => {
            clinical::entry(&at, hospital, kind)
        }
        "DocumentReference" => clinical::document_reference(&at, hospital),
        "" => Err(vec![Issue::required(
            "resourceType",
            "every resource names its resourceType",
        )]),
        other => Err(vec![Issue::new(
            "not-supported",
            other,
            format!(
                "resource type {other} is not taken here; expected one of {}",
                SUPPORTED.join(", ")
            ),
        )]),
    }
}

/// The hospital's number of a Patient: its logical id, else its identifier of type MR.
pub fn patient_number(resource: &Value) -> Option<String> {
    let at = At::root(resource, "Patient");
    at.str("id").or_else(|| {
        at.array("identifier")
            .into_iter()
            .find(|identifier| identifier.has_code("type", "MR"))
            .and_then(|identifier| identifier.str("value"))
    })
}

/// A place in a resource: its value (absent when the resource leaves it out) and its
/// FHIRPath, for the issue that names it.
#[derive(Debug, Clone)]
pub struct At<'v> {
    pub value: Option<&'v Value>,
    pub path: String,
}

impl<'v> At<'v> {
    /// The resource itself, its path the resource type.
    pub fn root(value: &'v Value, kind: &str) -> At<'v> {
        At {
            value: Some(value),
            path: kind.to_owned(),
        }
    }
}

impl<'v> At<'v> {
    /// A child element.
    pub fn get(&self, name: &str) -> At<'v> {
        At {
            value: self.value.and_then(|v| v.get(name)),
            path: format!("{}.{name}", self.path),
        }
    }

    /// The items of an array element (or the element itself, when it is not an array).
    pub fn array(&self, name: &str) -> Vec<At<'v>> {
        let child = self.get(name);
        match child.value {
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| At {
                    value: Some(item),
                    path: format!("{}[{i}]", child.path),
                })
                .collect(),
            Some(_) => vec![child],
            None => Vec::new(),
        }
    }

    /// The first item of an array element.
    pub fn first(&self, name: &str) -> At<'v> {
        self.array(name).into_iter().next().unwrap_or(At {
            value: None,
            path: format!("{}.{name}[0]", self.path),
        })
    }

    /// A string child, trimmed; `None` when absent or empty.
    pub fn str(&self, name: &str) -> Option<String> {
        self.get(name).text()
    }

    pub fn text(&self) -> Option<String> {
        self.value
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }

    pub fn is_present(&self) -> bool {
        self.value.is_some_and(|v| !v.is_null())
    }

    /// Whether a CodeableConcept child has a coding (or text) with `code`.
    pub fn has_code(&self, name: &str, code: &str) -> bool {
        self.get(name)
            .codings()
            .iter()
            .any(|(_, c, _)| c.eq_ignore_ascii_case(code))
    }

    /// The codings of a CodeableConcept: (system, code, display).
    pub fn codings(&self) -> Vec<(String, String, String)> {
        self.array("coding")
            .into_iter()
            .filter_map(|coding| {
                let code = coding.str("code")?;
                Some((
                    coding.str("system").unwrap_or_default(),
                    code,
                    coding.str("display").unwrap_or_default(),
                ))
            })
            .collect()
    }

    /// A CodeableConcept's text: its `text`, else its first coding's display, else its code.
    pub fn concept_text(&self) -> Option<String> {
        self.str("text").or_else(|| {
            self.codings()
                .into_iter()
                .map(|(_, code, display)| if display.is_empty() { code } else { display })
                .next()
        })
    }

    /// The id a `Patient/<id>` reference (or an identifier reference) names.
    pub fn patient_reference(&self) -> Result<String, Issue> {
        if let Some(reference) = self.str("reference") {
            return match reference.rsplit_once('/') {
                Some((kind, id)) if kind.ends_with("Patient") && !id.is_empty() => Ok(id.to_owned()),
                _ => Err(Issue::value(
                    format!("{}.reference", self.path),
                    "expected a reference Patient/<id>",
                )),
            };
        }
        if let Some(value) = self.get("identifier").str("value") {
            return Ok(value);
        }
        Err(Issue::required(
            self.path.clone(),
            "the patient is required (a reference Patient/<id>)",
        ))
    }

    /// The patient a reference child names; the issue joins `issues` when it names none.
    pub fn patient_in(&self, name: &str, issues: &mut Vec<Issue>) -> Option<String> {
        self.get(name)
            .patient_reference()
            .map_err(|issue| issues.push(issue))
            .ok()
    }

    /// A dateTime or instant child as an instant; a date alone is its midnight at `offset`.
    pub fn instant(&self, name: &str, offset: FixedOffset) -> Result<Option<DateTime<Utc>>, Issue> {
        let child = self.get(name);
        let Some(text) = child.text() else { return Ok(None) };
        if let Ok(instant) = DateTime::parse_from_rfc3339(&text) {
            return Ok(Some(instant.with_timezone(&Utc)));
        }
        let date = NaiveDate::parse_from_str(&text, "%Y-%m-%d").map_err(|_| {
            Issue::value(
                child.path.clone(),
                "expected a FHIR dateTime (YYYY-MM-DD, or with a time and zone)",
            )
        })?;
        let midnight = date
            .and_hms_opt(0, 0, 0)
            .and_then(|t| offset.from_local_datetime(&t).single());
        Ok(midnight.map(|t| t.with_timezone(&Utc)))
    }
}

/// The first of `candidates` present, as an instant; the issue names the first when none is.
fn first_instant(at: &At<'_>, candidates: &[&str], offset: FixedOffset) -> Result<DateTime<Utc>, Issue> {
    for name in candidates {
        if let Some(instant) = at.instant(name, offset)? {
            return Ok(instant);
        }
    }
    Err(Issue::required(
        format!("{}.{}", at.path, candidates[0]),
        format!("the time is required ({})", candidates.join(", ")),
    ))
}

#[cfg(test)]
mod tests;
