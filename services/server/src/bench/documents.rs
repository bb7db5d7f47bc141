//! `hie bench documents`: the EMR registry on PostgreSQL. Registration of document sets over
//! loopback gRPC; the stored query by person against a registry of many documents; retrieve of
//! the same content from the exchange and through a hospital's gateway; the patient summary. Each
//! beside the empty call measured in the same run.
//!
//! The registry's bulk (`--persons` persons with `--documents-per-person` documents each) is
//! written with one set-based INSERT per table, not through the API: it is the table size the
//! stored query is measured against, not a measurement. What is measured goes through the API.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use hie_core::context::RequestContext;
use hie_core::digest::sha256_hex;
use hie_core::domain::OrganisationCode;
use hie_emr::grpc::gateway_client::{GatewayEndpoint, GrpcGateways};
use hie_proto::emr::emr_registry_client::EmrRegistryClient;
use hie_proto::emr::{
    Author, Code, DocumentEntry, DocumentSubmission, FindDocumentsRequest, GetPatientSummaryRequest,
    RegisterDocumentSetRequest, RetrieveDocumentRequest,
};
use hie_proto::population::Identifier;
use hie_proto::records::{PersonSelector, person_selector};
use serde::Serialize;
use tonic::transport::Channel;

use super::{
    CallFigures, CallFuture, PostgresServer, as_clerk, connect, health_call, loopback, measure,
    on_scratch_postgres, ratio, scratch_settings,
};
use crate::Exchange;
use crate::demo::{Rng, SyntheticPrefecture, load};

#[derive(Debug, Args)]
pub struct DocumentsArgs {
    /// Print compact JSON (the default is indented).
    #[arg(long)]
    pub json: bool,
    /// Persons whose documents fill the registry before the stored query is measured.
    #[arg(long, default_value_t = 100_000)]
    pub persons: usize,
    /// Documents per person in that fill.
    #[arg(long, default_value_t = 10)]
    pub documents_per_person: usize,
    /// Residents registered through the registry (the patients of registration and summary).
    #[arg(long, default_value_t = 2_000)]
    pub residents: usize,
    #[command(flatten)]
    pub postgres: PostgresServer,
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Calls in flight at once for the reads.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Document sets in flight at once for registration.
    #[arg(long, default_value_t = 4)]
    pub registering: usize,
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
}

#[derive(Debug, Serialize)]
struct DocumentsFigures {
    benchmark: &'static str,
    backend: &'static str,
    cores: usize,
    documents_in_registry: i64,
    persons_in_registry: i64,
    fill_seconds: f64,
    empty_call: CallFigures,
    /// RegisterDocumentSet calls of 100 documents each (content 1 KiB, kept in the exchange).
    register_sets_of_100: CallFigures,
    documents_registered_per_second: f64,
    /// FindDocuments by person id, a person with `documents_per_person` documents, one call at
    /// a time (the latency a clinic sees on an idle exchange)...
    find_by_person_one_at_a_time: CallFigures,
    /// ...and `concurrency` calls at a time.
    find_by_person: CallFigures,
    find_p99_to_empty_p99: f64,
    /// RetrieveDocument of 4 KiB kept in the exchange.
    retrieve_direct: CallFigures,
    /// The same content kept at a hospital, through its gateway (a local gRPC server), hash-checked.
    retrieve_federated: CallFigures,
    federated_to_direct_p50: f64,
    /// GetPatientSummary of persons with 10 archive entries and 10 documents.
    summary: CallFigures,
    summary_p99_to_empty_p99: f64,
}

fn code(scheme: &str, value: &str) -> Option<Code> {
    Some(Code {
        scheme: scheme.into(),
        code: value.into(),
        display: String::new(),
    })
}

/// A document entry for `patient` (a local patient number of QDN-H01) with `content`.
fn entry(unique_id: String, patient: &str, content: &[u8], repository: &str) -> DocumentEntry {
    DocumentEntry {
        unique_id,
        source_patient_id: Some(Identifier {
            system: "urn:hie:org:QDN-H01:patient".into(),
            value: patient.into(),
        }),
        class_code: code("hie-class", "outpatient-record"),
        type_code: code("LOINC", "11488-4"),
        format_code: code("hie-format", "text"),
        confidentiality_code: "N".into(),
        event_codes: vec!["I10".into()],
        healthcare_facility_type_code: code("hie-facility", "hospital"),
        practice_setting_code: code("hie-practice", "internal-medicine"),
        creation_time: Some(hie_proto::timestamp(hie_core::time::now())),
        author: Some(Author {
            person: "bench".into(),
            institution: "QDN-H01".into(),
            role: "attending".into(),
            specialty: "internal medicine".into(),
        }),
        language_code: "zh-CN".into(),
        mime_type: "text/plain".into(),
        hash: sha256_hex(content),
        size: content.len() as i64,
        repository_organisation_code: repository.into(),
        title: "门诊病历".into(),
        ..Default::default()
    }
}

pub async fn run_documents(args: DocumentsArgs) -> Result<(), String> {
    on_scratch_postgres(&args.postgres.url, args.json, async |url| {
        documents_on(&url, &args).await
    })
    .await
}

/// The hospital's gateway of the benchmark: serves the content it was given, by unique id.
#[derive(Clone)]
struct BenchGateway(Arc<HashMap<String, Vec<u8>>>);

#[tonic::async_trait]
impl hie_proto::hospital::hospital_gateway_server::HospitalGateway for BenchGateway {
    async fn retrieve_document(
        &self,
        request: tonic::Request<hie_proto::hospital::RetrieveDocumentRequest>,
    ) -> Result<tonic::Response<hie_proto::hospital::RetrieveDocumentResponse>, tonic::Status> {
        match self.0.get(&request.into_inner().unique_id) {
            Some(content) => Ok(tonic::Response::new(
                hie_proto::hospital::RetrieveDocumentResponse {
                    content: content.clone(),
                    mime_type: "text/plain".into(),
                },
            )),
            None => Err(tonic::Status::not_found("no such document")),
        }
    }
}

async fn documents_on(url: &str, args: &DocumentsArgs) -> Result<DocumentsFigures, String> {
    let (mut settings, _keys) = scratch_settings(url)?;
    settings.limits.lock_timeout_ms = 120_000;
    let mut exchange = Exchange::open(&settings).await.map_err(|e| e.to_string())?;

    eprintln!("hie bench: registering {} residents", args.residents);
    let prefecture = SyntheticPrefecture::generate(args.residents, 2026);
    load(&exchange, &prefecture).await?;
    let patients: Vec<String> = prefecture
        .records
        .iter()
        .filter(|r| r.organisation().as_str() == "QDN-H01")
        .map(|r| r.local_patient_number().value().to_owned())
        .collect();
    if patients.len() < 200 {
        return Err("too few patients of QDN-H01; raise --residents".into());
    }

    eprintln!(
        "hie bench: filling the registry with {} persons × {} documents",
        args.persons, args.documents_per_person
    );
    let started = Instant::now();
    fill(&exchange, args.persons, args.documents_per_person).await?;
    let fill_seconds = started.elapsed().as_secs_f64();
    // What an operator does after a bulk load, so that the measurement does not run beside
    // autovacuum's first pass over millions of new rows and the checkpoint that writes them out.
    eprintln!("hie bench: vacuuming and checkpointing after the fill");
    for statement in [
        "VACUUM (ANALYZE) documents",
        "VACUUM (ANALYZE) persons",
        "CHECKPOINT",
    ] {
        sqlx::query(statement)
            .execute(exchange.database.pool())
            .await
            .map_err(|e| e.to_string())?;
    }

    // The hospital's gateway, serving the federated copy of the retrieve's content.
    let retrieve_content = vec![b'r'; 4096];
    let gateway_listener = tokio::net::TcpListener::bind(loopback())
        .await
        .map_err(|e| e.to_string())?;
    let gateway_url = format!(
        "http://{}",
        gateway_listener.local_addr().map_err(|e| e.to_string())?
    );
    let gateway = BenchGateway(Arc::new(HashMap::from([(
        "bench.federated".to_owned(),
        retrieve_content.clone(),
    )])));
    let gateway_server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(hie_proto::hospital::hospital_gateway_server::HospitalGatewayServer::new(gateway))
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(gateway_listener).with_nodelay(Some(true)),
            ),
    );
    let gateways = GrpcGateways::new(
        vec![GatewayEndpoint {
            organisation: OrganisationCode::parse("QDN-H01").map_err(|e| e.0)?,
            url: gateway_url,
            tls: None,
        }],
        Duration::from_secs(10),
        settings.limits.document_max_bytes as usize,
    )
    .map_err(|e| e.to_string())?;
    exchange.use_gateways(Arc::new(gateways), settings.limits.document_max_bytes);
    let server = exchange
        .clone()
        .start(loopback())
        .await
        .map_err(|e| e.to_string())?;
    let channels = connect(&server.url(), args.connections, None).await?;
    let mut emr = EmrRegistryClient::new(channels[0].clone());

    // The retrieve's two documents, and the summary's persons with 10 entries and 10 documents.
    let set = |id: &str, documents: Vec<DocumentSubmission>| {
        as_clerk_submitting(RegisterDocumentSetRequest {
            submission_set_unique_id: id.into(),
            source_organisation_code: "QDN-H01".into(),
            documents,
            associations: Vec::new(),
        })
    };
    emr.register_document_set(set(
        "bench.retrieve",
        vec![
            DocumentSubmission {
                entry: Some(entry("bench.direct".into(), &patients[0], &retrieve_content, "")),
                content: retrieve_content.clone(),
            },
            DocumentSubmission {
                entry: Some(entry(
                    "bench.federated".into(),
                    &patients[0],
                    &retrieve_content,
                    "QDN-H01",
                )),
                content: Vec::new(),
            },
        ],
    ))
    .await
    .map_err(|e| e.to_string())?;
    let summarised: Vec<String> = patients.iter().skip(1).take(100).cloned().collect();
    summary_data(&exchange, &mut emr, &summarised).await?;
    exchange.database.analyze().await.map_err(|e| e.to_string())?;

    let duration = Duration::from_secs(args.seconds);
    let warm_up = Duration::from_secs(1);
    let c = args.concurrency;
    eprintln!("hie bench: measuring, {} s each", args.seconds);
    measure(&channels, c, warm_up, health_call).await;
    let empty_call = measure(&channels, c, duration, health_call).await;

    let next_set = Arc::new(AtomicUsize::new(0));
    let patients = Arc::new(patients);
    let register = {
        let (next_set, patients) = (next_set.clone(), patients.clone());
        move |channel: Channel, _call: usize| -> CallFuture {
            let n = next_set.fetch_add(1, Ordering::Relaxed);
            let content = format!("{n:01024}").into_bytes();
            let documents = (0..100)
                .map(|d| {
                    let patient = &patients[(n * 10 + d / 10) % patients.len()];
                    DocumentSubmission {
                        entry: Some(entry(format!("bench.{n}.{d}"), patient, &content, "")),
                        content: content.clone(),
                    }
                })
                .collect();
            Box::pin(async move {
                EmrRegistryClient::new(channel)
                    .register_document_set(as_clerk_submitting(RegisterDocumentSetRequest {
                        submission_set_unique_id: format!("bench.set.{n}"),
                        source_organisation_code: "QDN-H01".into(),
                        documents,
                        associations: Vec::new(),
                    }))
                    .await
                    .map(drop)
                    .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
            })
        }
    };
    let register_sets_of_100 = measure(&channels, args.registering, duration, register).await;

    let n_persons = args.persons.max(1);
    let find = move |channel: Channel, call: usize| -> CallFuture {
        let person = filled_person((call.wrapping_mul(2_654_435_761)) % n_persons);
        Box::pin(async move {
            EmrRegistryClient::new(channel)
                .find_documents(as_clerk(FindDocumentsRequest {
                    person: Some(PersonSelector {
                        selector: Some(person_selector::Selector::PersonId(person)),
                    }),
                    ..Default::default()
                }))
                .await
                .map(drop)
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
        })
    };
    measure(&channels, c, warm_up, find).await;
    let find_by_person_one_at_a_time = measure(&channels, 1, duration, find).await;
    let find_by_person = measure(&channels, c, duration, find).await;

    let retrieve = |unique_id: &'static str| {
        move |channel: Channel, _call: usize| -> CallFuture {
            Box::pin(async move {
                EmrRegistryClient::new(channel)
                    .retrieve_document(as_clerk(RetrieveDocumentRequest {
                        unique_id: unique_id.into(),
                    }))
                    .await
                    .map(drop)
                    .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
            })
        }
    };
    measure(&channels, c, warm_up, retrieve("bench.federated")).await;
    let retrieve_direct = measure(&channels, c, duration, retrieve("bench.direct")).await;
    let retrieve_federated = measure(&channels, c, duration, retrieve("bench.federated")).await;

    let summarised = Arc::new(summarised);
    let summary_call = move |channel: Channel, call: usize| -> CallFuture {
        let patient = summarised[call % summarised.len()].clone();
        Box::pin(async move {
            EmrRegistryClient::new(channel)
                .get_patient_summary(as_clerk(GetPatientSummaryRequest {
                    person: Some(PersonSelector {
                        selector: Some(person_selector::Selector::Identifier(Identifier {
                            system: "urn:hie:org:QDN-H01:patient".into(),
                            value: patient,
                        })),
                    }),
                }))
                .await
                .map(drop)
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
        })
    };
    measure(&channels, c, warm_up, summary_call.clone()).await;
    let summary = measure(&channels, c, duration, summary_call).await;

    let (documents_in_registry,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM documents")
        .fetch_one(exchange.database.pool())
        .await
        .map_err(|e| e.to_string())?;
    let (persons_in_registry,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM persons")
        .fetch_one(exchange.database.pool())
        .await
        .map_err(|e| e.to_string())?;
    server.stop().await.map_err(|e| e.to_string())?;
    gateway_server.abort();
    Ok(DocumentsFigures {
        benchmark: "documents",
        backend: "postgres",
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        documents_in_registry,
        persons_in_registry,
        fill_seconds,
        documents_registered_per_second: register_sets_of_100.throughput_per_second * 100.0,
        find_p99_to_empty_p99: ratio(
            find_by_person.p99_microseconds as f64,
            empty_call.p99_microseconds as f64,
        ),
        federated_to_direct_p50: ratio(
            retrieve_federated.p50_microseconds as f64,
            retrieve_direct.p50_microseconds as f64,
        ),
        summary_p99_to_empty_p99: ratio(
            summary.p99_microseconds as f64,
            empty_call.p99_microseconds as f64,
        ),
        empty_call,
        register_sets_of_100,
        find_by_person_one_at_a_time,
        find_by_person,
        retrieve_direct,
        retrieve_federated,
        summary,
    })
}

/// A clinician's request (registration of documents is a clinical system's call).
fn as_clerk_submitting<T>(message: T) -> tonic::Request<T> {
    let mut request = as_clerk(message);
    request.metadata_mut().insert(
        "x-hie-role",
        tonic::metadata::MetadataValue::from_static("clinician"),
    );
    request
}

/// The id of the `n`th person of the fill: the first 128 bits of SHA-256 of
/// `bench-person-<n>`, written as a UUID, as [`PERSON_ID`] makes it in SQL.
pub(super) fn filled_person(n: usize) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("bench-person-{n}").as_bytes());
    let hex: String = digest.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The fill's person id of row `i`, in PostgreSQL (see [`filled_person`]).
const PERSON_ID: &str = "(SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-' || substr(h, 13, 4) || '-' || \
     substr(h, 17, 4) || '-' || substr(h, 21, 12) \
     FROM (SELECT encode(sha256(convert_to('bench-person-' || i, 'UTF8')), 'hex') AS h) hashed)";

/// Persons `start` to `last` (inclusive) of the fill, set-based, with the ids [`filled_person`]
/// gives them.
pub(super) async fn fill_persons(exchange: &Exchange, start: usize, last: usize) -> Result<(), String> {
    let persons_sql = format!(
        "INSERT INTO persons (id, name, created_at, updated_at) \
         SELECT {PERSON_ID}, '填充' || i, 0, 0 FROM generate_series({start}, {last}) AS i"
    );
    sqlx::query(sqlx::AssertSqlSafe(persons_sql))
        .execute(exchange.database.pool())
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Fills the registry with `persons` persons and `per_person` documents each, set-based, in
/// chunks of 100,000 persons.
async fn fill(exchange: &Exchange, persons: usize, per_person: usize) -> Result<(), String> {
    let pool = exchange.database.pool();
    let codes = serde_json::json!({
        "class": {"scheme": "hie-class", "code": "outpatient-record", "display": ""},
        "type": {"scheme": "LOINC", "code": "11488-4", "display": ""},
        "format": {"scheme": "hie-format", "code": "text", "display": ""},
        "facility_type": {"scheme": "hie-facility", "code": "hospital", "display": ""},
        "practice_setting": {"scheme": "hie-practice", "code": "internal-medicine", "display": ""},
    })
    .to_string();
    let chunk = 100_000usize;
    let mut start = 0usize;
    while start < persons {
        let last = (start + chunk).min(persons) - 1;
        fill_persons(exchange, start, last).await?;
        let documents_sql = format!(
            "INSERT INTO documents (id, unique_id, submission_set_id, source_organisation_code, person_id, \
             source_patient_system, source_patient_value, class_code, type_code, codes, confidentiality_code, \
             event_codes, creation_time, author_person, author_institution, author_role, author_specialty, \
             language_code, mime_type, content_hash, content_size, repository_organisation_code, status, title, \
             legal_authenticator, observations, registered_at) \
             SELECT gen_random_uuid()::text, 'fill.' || i || '.' || d, 'fill', 'QDN-H01', {PERSON_ID}, \
             'urn:hie:org:QDN-H01:patient', 'F' || i, 'outpatient-record', '11488-4', $1, 'N', ' I10 ', \
             1700000000000000 + d * 86400000000, 'bench', 'QDN-H01', 'attending', '', 'zh-CN', 'text/plain', \
             repeat('0', 64), 0, 'QDN-H01', 'approved', '门诊病历', '', '[]', 1700000000000000 \
             FROM generate_series({start}, {last}) AS i, generate_series(1, {per_person}) AS d"
        );
        sqlx::query(sqlx::AssertSqlSafe(documents_sql))
            .bind(&codes)
            .execute(pool)
            .await
            .map_err(|e| e.to_string())?;
        start = last + 1;
        eprintln!("hie bench: {start} of {persons} persons filled");
    }
    Ok(())
}

/// Ten archive entries and ten documents for each of `patients` (QDN-H01 numbers), through the
/// services.
async fn summary_data(
    exchange: &Exchange,
    emr: &mut EmrRegistryClient<Channel>,
    patients: &[String],
) -> Result<(), String> {
    use hie_population::domain::PersonSelector as Selector;
    use hie_records::domain::payload::{ControlStatus, HypertensionFollowUp, Medication, VitalSigns};
    use hie_records::domain::{EntryDraft, EntryPayload};
    let context = RequestContext::bulk_load("hie-bench", "summary data");
    let today = hie_core::time::today_in_china();
    let organisation = OrganisationCode::parse("QDN-H01").map_err(|e| e.0)?;
    let mut rng = Rng::new(11);
    for (p, patient) in patients.iter().enumerate() {
        let identifier = hie_core::domain::Identifier::parse("urn:hie:org:QDN-H01:patient", patient)
            .map_err(|_| "a bench patient number is invalid".to_owned())?;
        for visit in 0..10u64 {
            let systolic = 130 + rng.below(30) as i32;
            let draft = EntryDraft::new(
                organisation.clone(),
                &format!("bench-{p}-{visit}"),
                Selector::Identifier(identifier.clone()),
                today - chrono::Days::new(30 * visit),
                EntryPayload::HypertensionFollowUp(HypertensionFollowUp {
                    vital_signs: VitalSigns {
                        systolic_mmhg: Some(systolic),
                        diastolic_mmhg: Some(systolic - 50),
                        ..VitalSigns::default()
                    },
                    medications: vec![Medication {
                        name: "氨氯地平".into(),
                        dose: "5 mg".into(),
                        frequency: "qd".into(),
                    }],
                    control: ControlStatus::Controlled,
                    next_follow_up_on: None,
                }),
                today,
            )
            .map_err(|e| e.to_string())?;
            exchange
                .records
                .submit(&context, draft)
                .await
                .map_err(|e| e.to_string())?;
        }
        let content = format!("summary document of {p}").into_bytes();
        let documents = (0..10)
            .map(|d| DocumentSubmission {
                entry: Some(entry(format!("bench.summary.{p}.{d}"), patient, &content, "")),
                content: content.clone(),
            })
            .collect();
        emr.register_document_set(as_clerk_submitting(RegisterDocumentSetRequest {
            submission_set_unique_id: format!("bench.summary.{p}"),
            source_organisation_code: "QDN-H01".into(),
            documents,
            associations: Vec::new(),
        }))
        .await
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}
