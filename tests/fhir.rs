//! The FHIR adapter end to end: a client nobody here wrote (Python's urllib) pushes a
//! transaction bundle, single resources and bad input to the adapter's FHIR endpoint; the
//! adapter forwards to the real exchange over mutual TLS with the hospital's certificate; the
//! registries are checked.

use std::time::Duration;

use hie_adapter_fhir::poll::PollSettings;
use hie_adapter_fhir::run::{FhirSettings, RunningAdapter};
use serde_json::{Value, json};

use crate::harness::{TestDb, count, on_every_backend, woman};
use crate::trust::{Fixture, fixture};

on_every_backend!(
    a_fhir_transaction_fills_both_registries_once_and_bad_resources_are_named,
    the_hospitals_fhir_server_is_polled_since_a_cursor_and_nothing_is_taken_twice,
);

async fn adapter(fixture: &Fixture, data: &std::path::Path, poll: Option<PollSettings>) -> RunningAdapter {
    hie_adapter_fhir::run::start(FhirSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        plaintext_on_network: false,
        max_body_bytes: 1 << 20,
        relay: crate::adapters::relay_settings(fixture, fixture.server.address(), data),
        poll,
    })
    .await
    .unwrap()
}

/// The Python of the venv `.ci/run` makes (beside `mllp_send`), or the system's: urllib is in
/// the standard library.
fn python() -> std::path::PathBuf {
    std::env::var_os("HIE_TEST_MLLP_SEND")
        .map(std::path::PathBuf::from)
        .and_then(|p| p.parent().map(|bin| bin.join("python")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| "python3".into())
}

/// Sends each (method, path, content type, body) with urllib; the (status, body) of each answer.
async fn exchange_http(
    base: String,
    requests: Vec<(&'static str, String, &'static str, Value)>,
) -> Vec<(u16, Value)> {
    let script = r#"
import json, sys, urllib.request, urllib.error
base = sys.argv[1]
answers = []
for method, path, content_type, body in json.load(sys.stdin):
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method=method,
                                     headers={"Content-Type": content_type, "Accept": "application/fhir+json"})
    try:
        with urllib.request.urlopen(request) as response:
            answers.append([response.status, json.loads(response.read())])
    except urllib.error.HTTPError as error:
        answers.append([error.code, json.loads(error.read())])
print(json.dumps(answers))
"#;
    let input = serde_json::to_vec(
        &requests
            .iter()
            .map(|(m, p, c, b)| json!([m, p, c, b]))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let python = python();
    let output = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new(python)
            .args(["-c", script, &base])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&input).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answers: Vec<(u16, Value)> = serde_json::from_slice(&output.stdout).unwrap();
    answers
}

fn transaction() -> Value {
    let subject = json!({"reference": "urn:uuid:6f1c-patient"});
    json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:6f1c-patient", "request": {"method": "PUT", "url": "Patient/F100"}, "resource": {
            "resourceType": "Patient", "id": "F100",
            "identifier": [{"type": {"coding": [{"code": "NI"}]}, "value": woman(800)}],
            "name": [{"text": "杨秀英"}], "gender": "female", "birthDate": "1985-03-14",
            "telecom": [{"system": "phone", "value": "13985550800"}],
            "address": [{"line": ["凯里市营盘东路8号"], "district": "522601"}]}},
        {"request": {"method": "POST", "url": "Encounter"}, "resource": {
            "resourceType": "Encounter", "id": "E1", "status": "finished", "class": {"code": "IMP"}, "subject": subject,
            "identifier": [{"value": "ZY-800"}], "serviceType": {"text": "心内科"},
            "period": {"start": "2026-12-01T09:00:00+08:00", "end": "2026-12-04T10:00:00+08:00"},
            "reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10"}]}]}},
        {"request": {"method": "POST", "url": "Observation"}, "resource": {
            "resourceType": "Observation", "id": "O1", "meta": {"versionId": "1"}, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "血糖"}]},
            "subject": subject, "effectiveDateTime": "2026-12-02T08:00:00+08:00",
            "valueQuantity": {"value": 6.1, "unit": "mmol/L"}}},
        {"request": {"method": "POST", "url": "Condition"}, "resource": {
            "resourceType": "Condition", "id": "C1", "subject": subject, "recordedDate": "2026-12-01",
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10", "display": "高血压"}]}}},
        {"request": {"method": "POST", "url": "AllergyIntolerance"}, "resource": {
            "resourceType": "AllergyIntolerance", "id": "A1", "patient": subject, "recordedDate": "2026-12-01",
            "code": {"text": "青霉素"}}},
        {"request": {"method": "POST", "url": "MedicationRequest"}, "resource": {
            "resourceType": "MedicationRequest", "id": "M1", "status": "active", "intent": "order", "subject": subject,
            "authoredOn": "2026-12-04", "medicationCodeableConcept": {"text": "硝苯地平缓释片 30mg"}}},
        {"request": {"method": "POST", "url": "DocumentReference"}, "resource": {
            "resourceType": "DocumentReference", "status": "current", "subject": subject, "date": "2026-12-04T10:00:00+08:00",
            "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5", "display": "出院小结"}]},
            "content": [{"attachment": {"contentType": "text/plain", "data": "5Ye66Zmi5bCP57uT"}}]}}
    ]})
}

async fn a_fhir_transaction_fills_both_registries_once_and_bad_resources_are_named(db: TestDb) {
    let fixture = fixture(db).await;
    let data = tempfile::tempdir().unwrap();
    let adapter = adapter(&fixture, data.path(), None).await;
    let base = format!("http://{}/fhir", adapter.intake_address());
    let mut bad_bundle = transaction();
    bad_bundle["entry"][0]["resource"]["birthDate"] = json!("1985-02-30");
    bad_bundle["entry"][2]["resource"]["valueQuantity"]["value"] = json!("six");
    let fhir = "application/fhir+json";
    let answers = exchange_http(
        base,
        vec![
            ("POST", String::new(), fhir, bad_bundle),
            ("POST", String::new(), fhir, transaction()),
            ("POST", String::new(), fhir, transaction()),
            (
                "PUT",
                "/Patient/F999".into(),
                fhir,
                transaction()["entry"][0]["resource"].clone(),
            ),
            (
                "POST",
                "/Patient".into(),
                "text/plain",
                transaction()["entry"][0]["resource"].clone(),
            ),
            (
                "POST",
                "/Practitioner".into(),
                fhir,
                json!({"resourceType": "Practitioner"}),
            ),
            (
                "PUT",
                "/Patient/F100".into(),
                fhir,
                transaction()["entry"][0]["resource"].clone(),
            ),
        ],
    )
    .await;
    // A transaction with two bad resources: both named, nothing kept.
    let (status, outcome) = &answers[0];
    assert_eq!(*status, 400);
    let expressions: Vec<&str> = outcome["issue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["expression"][0].as_str().unwrap())
        .collect();
    assert_eq!(
        expressions,
        [
            "Bundle.entry[0].resource.birthDate",
            "Bundle.entry[2].resource.valueQuantity.value"
        ]
    );
    // The good transaction, then the same again: accepted once.
    assert_eq!(answers[1].0, 200);
    let statuses = |answer: &Value| -> Vec<String> {
        answer["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["response"]["status"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(statuses(&answers[1].1), vec!["201 Created"; 7]);
    assert_eq!(statuses(&answers[2].1), vec!["200 OK"; 7]);
    assert_eq!(answers[3].0, 400, "an update whose id differs from the URL's");
    assert_eq!(answers[4].0, 415);
    assert_eq!(answers[5].0, 404);
    assert_eq!(
        answers[6].0, 200,
        "the same Patient again is a duplicate: {}",
        answers[6].1
    );

    let status = crate::adapters::settled(&adapter).await;
    assert_eq!((status.delivered, status.dead_letters), (7, 0), "{status:?}");
    let exchange = fixture.server.exchange();
    assert_eq!(
        count(exchange, "source_records WHERE local_patient_number = 'F100'").await,
        1
    );
    assert_eq!(
        count(
            exchange,
            "encounters WHERE visit_number = 'ZY-800' AND kind = 'discharge'"
        )
        .await,
        1
    );
    assert_eq!(count(exchange, "documents").await, 5);
    assert_eq!(
        count(exchange, "documents WHERE class_code = 'laboratory-report'").await,
        1
    );
    adapter.stop().await;
}

/// A hospital's FHIR server in Python's http.server: searches by type and `_lastUpdated=ge…`
/// over the resources in a JSON file (read on every request, so the test can add to it).
const HOSPITAL_SERVER: &str = r#"
import json, sys, urllib.parse
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
path = sys.argv[1]
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        kind = url.path.rstrip("/").split("/")[-1]
        query = urllib.parse.parse_qs(url.query)
        since = query.get("_lastUpdated", [""])[0]
        resources = [r for r in json.load(open(path)) if r["resourceType"] == kind]
        if since.startswith("ge"):
            floor = datetime.fromisoformat(since[2:])
            resources = [r for r in resources if datetime.fromisoformat(r["meta"]["lastUpdated"]) >= floor]
        resources.sort(key=lambda r: datetime.fromisoformat(r["meta"]["lastUpdated"]))
        body = json.dumps({"resourceType": "Bundle", "type": "searchset",
                           "entry": [{"resource": r} for r in resources]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

async fn the_hospitals_fhir_server_is_polled_since_a_cursor_and_nothing_is_taken_twice(db: TestDb) {
    use std::io::BufRead;
    let fixture = fixture(db).await;
    let data = tempfile::tempdir().unwrap();
    let published = data.path().join("published.json");
    let patient = json!({"resourceType": "Patient", "id": "F200", "meta": {"versionId": "1", "lastUpdated": "2026-12-04T09:00:00+08:00"},
        "identifier": [{"type": {"coding": [{"code": "NI"}]}, "value": woman(801)}],
        "name": [{"text": "吴桂兰"}], "gender": "female", "birthDate": "1985-03-14"});
    let encounter = json!({"resourceType": "Encounter", "id": "E200", "meta": {"versionId": "1", "lastUpdated": "2026-12-04T09:05:00+08:00"},
        "status": "arrived", "class": {"code": "AMB"}, "subject": {"reference": "Patient/F200"},
        "identifier": [{"value": "MZ-200"}], "serviceType": {"text": "妇科"}, "period": {"start": "2026-12-04T09:05:00+08:00"}});
    std::fs::write(
        &published,
        serde_json::to_vec(&json!([patient, encounter])).unwrap(),
    )
    .unwrap();
    let mut server = HospitalServer(
        std::process::Command::new(python())
            .args(["-c", HOSPITAL_SERVER])
            .arg(&published)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let port: u16 = {
        let mut line = String::new();
        std::io::BufReader::new(server.0.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        line.trim().parse().unwrap()
    };
    let poll = PollSettings {
        base: format!("http://127.0.0.1:{port}/fhir"),
        interval: Duration::from_millis(100),
    };
    let adapter = adapter(&fixture, data.path(), Some(poll)).await;
    let delivered = |n: i64| {
        let journal = adapter.journal().clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let status = journal.status().await.unwrap();
                if status.delivered >= n && status.pending == 0 {
                    return status;
                }
                assert!(tokio::time::Instant::now() < deadline, "{status:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    delivered(2).await;
    // The hospital publishes a result later; the next rounds take it, and only it.
    let observation = json!({"resourceType": "Observation", "id": "O200", "meta": {"versionId": "1", "lastUpdated": "2026-12-04T10:00:00+08:00"},
        "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "血糖"}]},
        "subject": {"reference": "Patient/F200"}, "effectiveDateTime": "2026-12-04T09:30:00+08:00",
        "valueQuantity": {"value": 5.2, "unit": "mmol/L"}});
    let mut all: Vec<Value> = serde_json::from_slice(&std::fs::read(&published).unwrap()).unwrap();
    all.push(observation);
    std::fs::write(&published, serde_json::to_vec(&all).unwrap()).unwrap();
    delivered(3).await;
    // Several more rounds: the cursor holds, what was taken is not taken again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = adapter.journal().status().await.unwrap();
    assert_eq!((status.delivered, status.dead_letters), (3, 0), "{status:?}");
    let cursors: Value =
        serde_json::from_slice(&std::fs::read(data.path().join("fhir-poll-cursors.json")).unwrap()).unwrap();
    assert_eq!(cursors["Observation"], "2026-12-04T10:00:00+08:00");
    let exchange = fixture.server.exchange();
    assert_eq!(
        count(exchange, "source_records WHERE local_patient_number = 'F200'").await,
        1
    );
    assert_eq!(
        count(exchange, "encounters WHERE visit_number = 'MZ-200'").await,
        1
    );
    assert_eq!(count(exchange, "documents").await, 1);
    adapter.stop().await;
}

/// The hospital's server process, stopped when the test ends, whether it passed or not.
struct HospitalServer(std::process::Child);

impl Drop for HospitalServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
