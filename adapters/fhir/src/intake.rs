//! What the FHIR endpoint does with a body: parse, check every resource, journal, answer. A
//! transaction bundle is all or nothing (one journal transaction, or an OperationOutcome naming
//! every problem and nothing kept); a batch answers entry by entry. Each resource is journaled on
//! its own, self-contained: references to a Patient of the same bundle by `urn:uuid:` are
//! rewritten to `Patient/<id>` first.

use std::collections::HashMap;

use hie_adapter_relay::journal::{Appended, Journal, NewMessage};
use hie_adapter_relay::submission::{Hospital, Translated, Translator};
use serde_json::{Value, json};

use crate::outcome::{Issue, errors, information};
use crate::resources::{At, patient_number, translate};

/// An HTTP answer: status and FHIR JSON body.
pub type Answer = (u16, Value);

/// The resources to the exchange's calls, for the forwarder.
#[derive(Debug)]
pub struct FhirTranslator {
    pub hospital: Hospital,
}

impl Translator for FhirTranslator {
    fn translate(&self, raw: &[u8]) -> Result<Translated, String> {
        let resource: Value = serde_json::from_slice(raw).map_err(|e| format!("not JSON: {e}"))?;
        translate(&resource, &self.hospital)
            .map_err(|issues| issues.iter().map(Issue::to_string).collect::<Vec<_>>().join("; "))
    }
}

#[derive(Debug, Clone)]
pub struct Intake {
    pub journal: Journal,
    pub hospital: Hospital,
}

fn bad(issues: &[Issue]) -> Answer {
    (400, errors(issues))
}

impl Intake {
    /// A resource sent to `[base]/Type` (create) or `[base]/Type/id` (update).
    pub async fn resource(&self, body: &[u8], kind: &str, id: Option<&str>) -> Answer {
        let resource = match parse(body) {
            Ok(resource) => resource,
            Err(issue) => return bad(&[issue]),
        };
        let stated = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if stated != kind {
            return bad(&[Issue::value(
                "resourceType",
                format!("the body is a {stated:?}, sent to the {kind} endpoint"),
            )]);
        }
        if let Some(id) = id
            && resource.get("id").and_then(Value::as_str) != Some(id)
        {
            return bad(&[Issue::value(format!("{kind}.id"), "must equal the id in the URL")]);
        }
        let message = match self.check(&resource) {
            Ok(message) => message,
            Err(issues) => return bad(&issues),
        };
        match self.journal.append(message).await {
            Ok(Appended::New(_)) => (201, information("accepted; it is forwarded to the exchange")),
            Ok(Appended::Duplicate) => (
                200,
                information("this version was accepted before; not forwarded again"),
            ),
            Ok(Appended::Conflict) => (
                409,
                errors(&[Issue::new(
                    "conflict",
                    format!("{kind}.meta.versionId"),
                    "this version of the resource was accepted before with other content",
                )]),
            ),
            Err(e) => unavailable(&e),
        }
    }

    /// A Bundle sent to `[base]`: a transaction or a batch.
    pub async fn bundle(&self, body: &[u8]) -> Answer {
        let bundle = match parse(body) {
            Ok(bundle) => bundle,
            Err(issue) => return bad(&[issue]),
        };
        if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return bad(&[Issue::value(
                "resourceType",
                "the base URL takes a Bundle (a single resource goes to [base]/Type)",
            )]);
        }
        let transaction = match bundle.get("type").and_then(Value::as_str) {
            Some("transaction") => true,
            Some("batch") => false,
            _ => return bad(&[Issue::value("Bundle.type", "expected transaction or batch")]),
        };
        let entries = bundle
            .get("entry")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if entries.is_empty() {
            return bad(&[Issue::required("Bundle.entry", "the bundle has no entries")]);
        }
        // Patients of this bundle by their fullUrl, so that the others can name them.
        let mut patients: HashMap<String, String> = HashMap::new();
        for entry in &entries {
            if let (Some(full_url), Some(resource)) = (
                entry.get("fullUrl").and_then(Value::as_str),
                entry.get("resource"),
            ) && resource.get("resourceType").and_then(Value::as_str) == Some("Patient")
                && let Some(number) = patient_number(resource)
            {
                patients.insert(full_url.to_owned(), format!("Patient/{number}"));
            }
        }
        let mut checked: Vec<Result<NewMessage, Vec<Issue>>> = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let prefix = format!("Bundle.entry[{i}].resource");
            let Some(resource) = entry.get("resource") else {
                checked.push(Err(vec![Issue::required(
                    prefix,
                    "every entry carries a resource",
                )]));
                continue;
            };
            let mut resource = resource.clone();
            rewrite_references(&mut resource, &patients);
            checked.push(
                self.check(&resource)
                    .map_err(|issues| issues.into_iter().map(|i| i.within(&prefix)).collect()),
            );
        }
        if transaction {
            let issues: Vec<Issue> = checked
                .iter()
                .filter_map(|c| c.as_ref().err())
                .flatten()
                .cloned()
                .collect();
            if !issues.is_empty() {
                return bad(&issues);
            }
            let messages: Vec<NewMessage> = checked.into_iter().filter_map(Result::ok).collect();
            return match self.journal.append_together(messages).await {
                Ok(appended) => (
                    200,
                    response_bundle("transaction-response", appended.iter().map(|a| Ok(*a))),
                ),
                Err(e) => unavailable(&e),
            };
        }
        let mut answers: Vec<Result<Appended, Vec<Issue>>> = Vec::with_capacity(checked.len());
        for entry in checked {
            answers.push(match entry {
                Ok(message) => match self.journal.append(message).await {
                    Ok(appended) => Ok(appended),
                    Err(e) => return unavailable(&e),
                },
                Err(issues) => Err(issues),
            });
        }
        (200, response_bundle("batch-response", answers.into_iter()))
    }

    /// The resource checked and ready to journal.
    pub fn check(&self, resource: &Value) -> Result<NewMessage, Vec<Issue>> {
        let translated = translate(resource, &self.hospital)?;
        let raw = resource.to_string().into_bytes();
        let identity = crate::resources::resource_identity(&At::root(resource, ""), &raw);
        Ok(NewMessage {
            idempotency_key: format!("FHIR|{identity}"),
            message_type: translated.message_type,
            patient_key: translated.patient_key,
            raw,
        })
    }
}

fn parse(body: &[u8]) -> Result<Value, Issue> {
    serde_json::from_slice(body).map_err(|e| {
        Issue::new(
            "structure",
            "",
            format!("the body is not JSON: line {}, column {}", e.line(), e.column()),
        )
    })
}

fn unavailable(error: &hie_adapter_relay::journal::JournalError) -> Answer {
    tracing::error!(error = %error, "cannot journal FHIR resources; answering 503 so that the sender keeps them");
    (
        503,
        errors(&[Issue::new(
            "transient",
            "",
            "the adapter cannot store resources right now; send them again later",
        )]),
    )
}

fn response_bundle(kind: &str, answers: impl Iterator<Item = Result<Appended, Vec<Issue>>>) -> Value {
    let entries: Vec<Value> = answers
        .map(|answer| match answer {
            Ok(Appended::New(_)) => json!({"response": {"status": "201 Created"}}),
            Ok(Appended::Duplicate) => json!({"response": {"status": "200 OK"}}),
            Ok(Appended::Conflict) => json!({"response": {"status": "409 Conflict", "outcome": errors(&[Issue::new(
                "conflict", "meta.versionId", "this version of the resource was accepted before with other content")])}}),
            Err(issues) => json!({"response": {"status": "400 Bad Request", "outcome": errors(&issues)}}),
        })
        .collect();
    json!({"resourceType": "Bundle", "type": kind, "entry": entries})
}

/// Every `{"reference": "urn:uuid:…"}` naming a Patient of the bundle becomes `Patient/<id>`.
fn rewrite_references(value: &mut Value, patients: &HashMap<String, String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get_mut("reference")
                && let Some(local) = patients.get(reference.as_str())
            {
                *reference = local.clone();
            }
            for child in map.values_mut() {
                rewrite_references(child, patients);
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| rewrite_references(item, patients)),
        _ => {}
    }
}
