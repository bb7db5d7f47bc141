//! The FHIR endpoint over HTTP: `POST [base]/Type`, `PUT [base]/Type/id`, `POST [base]` with a
//! transaction or batch Bundle, and `GET [base]/metadata`. Bodies are FHIR JSON.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use crate::intake::{Answer, Intake};
use crate::outcome::{Issue, errors};
use crate::resources::SUPPORTED;

pub fn router(intake: Intake, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/fhir/metadata", get(metadata))
        .route("/fhir", post(bundle))
        .route("/fhir/{kind}", post(create))
        .route("/fhir/{kind}/{id}", put(update))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(intake)
}

fn respond((status, body): Answer) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/fhir+json")],
        body.to_string(),
    )
        .into_response()
}

/// FHIR JSON only: `application/fhir+json` (or `application/json`).
fn json_body(headers: &HeaderMap) -> Result<(), Answer> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if media == "application/fhir+json" || media == "application/json" {
        Ok(())
    } else {
        Err((
            415,
            errors(&[Issue::new("not-supported", "", "send application/fhir+json")]),
        ))
    }
}

fn supported(kind: &str) -> Result<(), Answer> {
    if SUPPORTED.contains(&kind) {
        Ok(())
    } else {
        Err((
            404,
            errors(&[Issue::new(
                "not-supported",
                kind,
                format!(
                    "resource type {kind} is not taken here; expected one of {}",
                    SUPPORTED.join(", ")
                ),
            )]),
        ))
    }
}

async fn create(
    State(intake): State<Intake>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(answer) = json_body(&headers).and_then(|()| supported(&kind)) {
        return respond(answer);
    }
    respond(intake.resource(&body, &kind, None).await)
}

async fn update(
    State(intake): State<Intake>,
    Path((kind, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(answer) = json_body(&headers).and_then(|()| supported(&kind)) {
        return respond(answer);
    }
    respond(intake.resource(&body, &kind, Some(&id)).await)
}

async fn bundle(State(intake): State<Intake>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(answer) = json_body(&headers) {
        return respond(answer);
    }
    respond(intake.bundle(&body).await)
}

async fn metadata() -> Response {
    let resources: Vec<Value> = SUPPORTED
        .iter()
        .map(|kind| json!({"type": kind, "interaction": [{"code": "create"}, {"code": "update"}]}))
        .collect();
    respond((
        200,
        json!({
            "resourceType": "CapabilityStatement",
            "status": "active",
            "kind": "instance",
            "fhirVersion": "4.0.1",
            "format": ["application/fhir+json"],
            "software": {"name": "hie adapter fhir"},
            "rest": [{"mode": "server", "resource": resources, "interaction": [{"code": "transaction"}, {"code": "batch"}]}],
        }),
    ))
}

async fn not_found() -> Response {
    respond((
        404,
        errors(&[Issue::new(
            "not-supported",
            "",
            "not a FHIR interaction this adapter serves",
        )]),
    ))
}
