//! The health-record and EMR registries end to end: the real server over TCP, tonic clients, on
//! every backend. Submission and versioning, the stored query, retrieve (from the exchange and
//! through a hospital's gateway, hash-checked), visits, the summary, consent and merges.

use std::collections::HashMap;

use hie_proto::emr::emr_registry_client::EmrRegistryClient;
use hie_proto::emr::{
    Association, AssociationKind, Author, AvailabilityStatus, Code, DocumentEntry, DocumentSubmission,
    Encounter, EncounterKind, FindDocumentsRequest, GetPatientSummaryRequest, ListEncountersRequest,
    Observation, RegisterDocumentSetRequest, RegisterEncounterRequest, RetrieveDocumentRequest,
};
use hie_proto::population::Identifier;
use hie_proto::records::health_record_registry_client::HealthRecordRegistryClient;
use hie_proto::records::{
    Allergy, BasicProfile, EntryPayload, EntryType, GetEntryRequest, HypertensionFollowUp, Immunisation,
    Medication, MentalIllnessFollowUp, PersonSelector, QueryEntriesRequest, SubmitEntryRequest, VitalSigns,
    entry_payload, person_selector,
};
use tonic::Code as Status;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

use crate::harness::{
    ContextInterceptor, TestDb, TestServer, clinician_treating, count, on_every_backend,
    register_organisations, request, steward, woman,
};

on_every_backend!(
    the_archive_keeps_each_changed_resubmission_as_a_version_and_ignores_a_retry,
    documents_are_registered_all_or_nothing_found_replaced_and_never_deleted,
    a_document_kept_at_the_hospital_is_fetched_through_its_gateway_and_checked,
    visits_and_the_summary_follow_consent_and_merges,
);

type Records = HealthRecordRegistryClient<InterceptedService<Channel, ContextInterceptor>>;
type Emr = EmrRegistryClient<InterceptedService<Channel, ContextInterceptor>>;

fn clients(server: &TestServer) -> (Records, Emr) {
    (
        HealthRecordRegistryClient::with_interceptor(
            server.channel.clone(),
            clinician_treating as ContextInterceptor,
        ),
        EmrRegistryClient::with_interceptor(server.channel.clone(), clinician_treating as ContextInterceptor),
    )
}

/// A registration clerk at reception, for treatment.
fn registration_clerk(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    let metadata = request.metadata_mut();
    metadata.insert("x-hie-user", "clerk-7".parse().expect("ASCII"));
    metadata.insert("x-hie-role", "registration_clerk".parse().expect("ASCII"));
    metadata.insert("x-hie-purpose", "treatment".parse().expect("ASCII"));
    Ok(request)
}

fn local(organisation: &str, number: &str) -> PersonSelector {
    PersonSelector {
        selector: Some(person_selector::Selector::Identifier(Identifier {
            system: format!("urn:hie:org:{organisation}:patient"),
            value: number.into(),
        })),
    }
}

fn person(id: &str) -> PersonSelector {
    PersonSelector {
        selector: Some(person_selector::Selector::PersonId(id.into())),
    }
}

/// Registers a woman at an organisation; her person id.
async fn patient(server: &TestServer, organisation: &str, number: &str, name: &str, n: u32) -> String {
    server
        .population()
        .register_source_record(request(organisation, number, name, Some(&woman(n))))
        .await
        .unwrap()
        .into_inner()
        .person_id
}

fn hypertension(systolic: i32, diastolic: i32) -> EntryPayload {
    EntryPayload {
        payload: Some(entry_payload::Payload::HypertensionFollowUp(
            HypertensionFollowUp {
                vital_signs: Some(VitalSigns {
                    systolic_mmhg: Some(systolic),
                    diastolic_mmhg: Some(diastolic),
                    heart_rate_bpm: Some(76),
                    ..Default::default()
                }),
                medications: vec![Medication {
                    name: "氨氯地平".into(),
                    dose: "5 mg".into(),
                    frequency: "qd".into(),
                }],
                control: 1,
                next_follow_up_on: String::new(),
            },
        )),
    }
}

fn submission(
    organisation: &str,
    source_id: &str,
    who: PersonSelector,
    on: &str,
    payload: EntryPayload,
) -> SubmitEntryRequest {
    SubmitEntryRequest {
        source_organisation_code: organisation.into(),
        source_entry_id: source_id.into(),
        person: Some(who),
        recorded_on: on.into(),
        payload: Some(payload),
    }
}

async fn the_archive_keeps_each_changed_resubmission_as_a_version_and_ignores_a_retry(db: TestDb) {
    let server = db.server().await;
    register_organisations(server.exchange()).await;
    let (mut records, _) = clients(&server);
    let person_id = patient(&server, "QDN-T01", "T-100", "吴阿妹", 1).await;

    let first = records
        .submit_entry(submission(
            "QDN-T01",
            "FU-1",
            local("QDN-T01", "T-100"),
            "2026-03-02",
            hypertension(152, 96),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(first.changed);
    let entry = first.entry.unwrap();
    assert_eq!((entry.version, entry.person_id.as_str()), (1, person_id.as_str()));
    // The same content again is a retry: nothing changes.
    let retry = records
        .submit_entry(submission(
            "QDN-T01",
            "FU-1",
            person(&person_id),
            "2026-03-02",
            hypertension(152, 96),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!retry.changed);
    assert_eq!(retry.entry.unwrap().version, 1);
    // Changed content makes version 2 and keeps version 1.
    let second = records
        .submit_entry(submission(
            "QDN-T01",
            "FU-1",
            person(&person_id),
            "2026-03-02",
            hypertension(138, 88),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(second.changed);
    assert_eq!(second.entry.as_ref().unwrap().version, 2);
    let versions = records
        .get_entry(GetEntryRequest {
            entry_id: entry.entry_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .versions;
    assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), [2, 1]);

    // Query by type and period, through the hospital's number.
    records
        .submit_entry(submission(
            "QDN-T01",
            "IM-1",
            person(&person_id),
            "2025-10-01",
            EntryPayload {
                payload: Some(entry_payload::Payload::Immunisation(Immunisation {
                    vaccine_code: "2201".into(),
                    dose_number: 1,
                    lot_number: "FLU2025-18".into(),
                    site: "左上臂".into(),
                })),
            },
        ))
        .await
        .unwrap();
    let query = |types: Vec<i32>, from: &str| QueryEntriesRequest {
        person: Some(local("QDN-T01", "T-100")),
        entry_types: types,
        recorded_from: from.into(),
        ..Default::default()
    };
    let all = records
        .query_entries(query(vec![], ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.person_id, person_id);
    assert_eq!(all.entries.len(), 2);
    assert_eq!(all.entries[0].source_entry_id, "FU-1", "newest first");
    let recent = records
        .query_entries(query(vec![], "2026-01-01"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(recent.entries.len(), 1);
    let doses = records
        .query_entries(query(vec![EntryType::Immunisation as i32], ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(doses.entries.len(), 1);
    assert_eq!(doses.entries[0].source_entry_id, "IM-1");

    // Bad input names the field; an unknown person is NOT_FOUND; nothing was written by either.
    let implausible = records
        .submit_entry(submission(
            "QDN-T01",
            "FU-2",
            person(&person_id),
            "2026-03-02",
            hypertension(400, 20),
        ))
        .await
        .unwrap_err();
    assert_eq!(implausible.code(), Status::InvalidArgument);
    assert!(
        implausible
            .message()
            .starts_with("payload.hypertension_follow_up.vital_signs.systolic_mmhg"),
        "{}",
        implausible.message()
    );
    let future = records
        .submit_entry(submission(
            "QDN-T01",
            "FU-3",
            person(&person_id),
            "2999-01-01",
            hypertension(140, 90),
        ))
        .await
        .unwrap_err();
    assert!(
        future.message().starts_with("recorded_on"),
        "{}",
        future.message()
    );
    let nobody = records
        .submit_entry(submission(
            "QDN-T01",
            "FU-4",
            local("QDN-T01", "NOBODY"),
            "2026-03-02",
            hypertension(140, 90),
        ))
        .await
        .unwrap_err();
    assert_eq!(nobody.code(), Status::NotFound, "{nobody:?}");
    let inactive = records
        .submit_entry(submission(
            "QDN-H09",
            "FU-5",
            person(&person_id),
            "2026-03-02",
            hypertension(140, 90),
        ))
        .await
        .unwrap_err();
    assert_eq!(inactive.code(), Status::FailedPrecondition, "{inactive:?}");
    // A reception clerk's system may not write to the archive, and is told so before the
    // patient is even looked up (an unknown patient is refused the same way).
    let mut clerk = HealthRecordRegistryClient::with_interceptor(
        server.channel.clone(),
        registration_clerk as ContextInterceptor,
    );
    for who in [person(&person_id), local("QDN-T01", "NOBODY")] {
        let refused = clerk
            .submit_entry(submission(
                "QDN-T01",
                "FU-6",
                who,
                "2026-03-02",
                hypertension(140, 90),
            ))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Status::PermissionDenied, "{refused:?}");
    }
    assert_eq!(count(server.exchange(), "health_record_entries").await, 2);
    assert_eq!(count(server.exchange(), "health_record_versions").await, 3);
    // Each change announced itself once; the retry announced nothing.
    let (events,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM outbox_events WHERE topic = 'records.entry.submitted'")
            .fetch_one(server.exchange().database.pool())
            .await
            .unwrap();
    assert_eq!(events, 3);
    server.server.stop().await.unwrap();
}

fn code(scheme: &str, value: &str) -> Option<Code> {
    Some(Code {
        scheme: scheme.into(),
        code: value.into(),
        display: String::new(),
    })
}

fn sha256(content: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, content)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A discharge summary written at `organisation` for its patient `number`, with its content.
fn document(
    organisation: &str,
    number: &str,
    unique_id: &str,
    content: &[u8],
    created: i64,
) -> DocumentSubmission {
    DocumentSubmission {
        entry: Some(DocumentEntry {
            unique_id: unique_id.into(),
            source_patient_id: Some(Identifier {
                system: format!("urn:hie:org:{organisation}:patient"),
                value: number.into(),
            }),
            class_code: code("hie-class", "discharge-summary"),
            type_code: code("LOINC", "18842-5"),
            format_code: code("hie-format", "text"),
            confidentiality_code: "N".into(),
            event_codes: vec!["I10".into()],
            healthcare_facility_type_code: code("hie-facility", "hospital"),
            practice_setting_code: code("hie-practice", "cardiology"),
            creation_time: Some(prost_types::Timestamp {
                seconds: created,
                nanos: 0,
            }),
            author: Some(Author {
                person: "dr-wu".into(),
                institution: organisation.into(),
                role: "attending".into(),
                specialty: "cardiology".into(),
            }),
            language_code: "zh-CN".into(),
            mime_type: "text/plain".into(),
            hash: sha256(content),
            size: content.len() as i64,
            title: "出院小结".into(),
            observations: vec![Observation {
                code: "2345-7".into(),
                name: "血糖".into(),
                value: 6.1,
                unit: "mmol/L".into(),
            }],
            ..Default::default()
        }),
        content: content.to_vec(),
    }
}

fn set(
    unique_id: &str,
    documents: Vec<DocumentSubmission>,
    associations: Vec<Association>,
) -> RegisterDocumentSetRequest {
    RegisterDocumentSetRequest {
        submission_set_unique_id: unique_id.into(),
        source_organisation_code: "QDN-H01".into(),
        documents,
        associations,
    }
}

async fn documents_are_registered_all_or_nothing_found_replaced_and_never_deleted(db: TestDb) {
    let server = db.server().await;
    register_organisations(server.exchange()).await;
    let (_, mut emr) = clients(&server);
    let person_id = patient(&server, "QDN-H01", "ZY-1", "王芳", 2).await;

    let registered = emr
        .register_document_set(set(
            "SS-1",
            vec![document("QDN-H01", "ZY-1", "DOC-1", b"v1", 1_780_000_000)],
            vec![],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(registered.changed);
    assert_eq!(registered.documents[0].person_id, person_id);
    // The same set again is a retry.
    let again = emr
        .register_document_set(set(
            "SS-1",
            vec![document("QDN-H01", "ZY-1", "DOC-1", b"v1", 1_780_000_000)],
            vec![],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.changed);
    // The same unique id with other content, in another set: ALREADY_EXISTS.
    let clash = emr
        .register_document_set(set(
            "SS-2",
            vec![document("QDN-H01", "ZY-1", "DOC-1", b"other", 1_780_000_000)],
            vec![],
        ))
        .await
        .unwrap_err();
    assert_eq!(clash.code(), Status::AlreadyExists, "{clash:?}");
    // Content that does not match its hash, or is over the limit.
    let mut tampered = document("QDN-H01", "ZY-1", "DOC-X", b"v1", 1_780_000_000);
    tampered.content = b"v2".to_vec();
    let mismatch = emr
        .register_document_set(set("SS-3", vec![tampered], vec![]))
        .await
        .unwrap_err();
    assert_eq!(mismatch.code(), Status::InvalidArgument);
    assert!(
        mismatch.message().starts_with("documents[0].entry.hash"),
        "{}",
        mismatch.message()
    );
    let mut backwards = document("QDN-H01", "ZY-1", "DOC-Y", b"v1", 1_780_000_000);
    let entry = backwards.entry.as_mut().unwrap();
    entry.service_start_time = Some(prost_types::Timestamp {
        seconds: 1_780_000_000,
        nanos: 0,
    });
    entry.service_stop_time = Some(prost_types::Timestamp {
        seconds: 1_770_000_000,
        nanos: 0,
    });
    let stop = emr
        .register_document_set(set("SS-4", vec![backwards], vec![]))
        .await
        .unwrap_err();
    assert!(
        stop.message().starts_with("documents[0].entry.service_stop_time"),
        "{}",
        stop.message()
    );

    // An unknown patient is NOT_FOUND, naming the document.
    let stranger = emr
        .register_document_set(set(
            "SS-4b",
            vec![
                document("QDN-H01", "ZY-1", "DOC-Z1", b"z1", 1_780_000_000),
                document("QDN-H01", "NOBODY", "DOC-Z2", b"z2", 1_780_000_000),
            ],
            vec![],
        ))
        .await
        .unwrap_err();
    assert_eq!(stranger.code(), Status::NotFound);
    assert!(
        stranger
            .message()
            .starts_with("documents[1].entry.source_patient_id"),
        "{}",
        stranger.message()
    );

    // A set whose association targets a missing document leaves nothing behind.
    let replace = |target: &str| Association {
        kind: AssociationKind::Replace as i32,
        source_unique_id: "DOC-2".into(),
        target_unique_id: target.into(),
    };
    let missing = emr
        .register_document_set(set(
            "SS-5",
            vec![document("QDN-H01", "ZY-1", "DOC-2", b"v2", 1_780_100_000)],
            vec![replace("DOC-NONE")],
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Status::FailedPrecondition, "{missing:?}");
    assert_eq!(count(server.exchange(), "documents").await, 1);
    assert_eq!(count(server.exchange(), "document_submission_sets").await, 1);

    // A replace deprecates the old document; both are kept.
    let replaced = emr
        .register_document_set(set(
            "SS-6",
            vec![document("QDN-H01", "ZY-1", "DOC-2", b"v2", 1_780_100_000)],
            vec![replace("DOC-1")],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replaced.deprecated_unique_ids, ["DOC-1"]);
    let find = |statuses: Vec<i32>| FindDocumentsRequest {
        person: Some(local("QDN-H01", "ZY-1")),
        statuses,
        ..Default::default()
    };
    let approved = emr.find_documents(find(vec![])).await.unwrap().into_inner();
    assert_eq!(
        approved
            .documents
            .iter()
            .map(|d| d.unique_id.as_str())
            .collect::<Vec<_>>(),
        ["DOC-2"]
    );
    let deprecated = emr
        .find_documents(find(vec![AvailabilityStatus::Deprecated as i32]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deprecated.documents[0].unique_id, "DOC-1");
    // A second replace of the deprecated document is refused, saying why.
    let twice = emr
        .register_document_set(set(
            "SS-7",
            vec![document("QDN-H01", "ZY-1", "DOC-3", b"v3", 1_780_200_000)],
            vec![Association {
                kind: AssociationKind::Replace as i32,
                source_unique_id: "DOC-3".into(),
                target_unique_id: "DOC-1".into(),
            }],
        ))
        .await
        .unwrap_err();
    assert_eq!(twice.code(), Status::FailedPrecondition);
    assert!(twice.message().contains("deprecated"), "{}", twice.message());

    // Filters and paging.
    emr.register_document_set(set(
        "SS-8",
        vec![
            document("QDN-H01", "ZY-1", "DOC-4", b"v4", 1_780_300_000),
            document("QDN-H01", "ZY-1", "DOC-5", b"v5", 1_780_400_000),
        ],
        vec![],
    ))
    .await
    .unwrap();
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = emr
            .find_documents(FindDocumentsRequest {
                person: Some(person(&person_id)),
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages.extend(page.documents.into_iter().map(|d| d.unique_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, ["DOC-5", "DOC-4", "DOC-2"]);
    let by_code = |event_codes: Vec<String>| FindDocumentsRequest {
        person: Some(person(&person_id)),
        event_codes,
        creation_from: Some(prost_types::Timestamp {
            seconds: 1_780_300_000,
            nanos: 0,
        }),
        ..Default::default()
    };
    let hypertensive = emr
        .find_documents(by_code(vec!["I10".into()]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hypertensive.documents.len(), 2);
    let diabetic = emr
        .find_documents(by_code(vec!["E11.9".into()]))
        .await
        .unwrap()
        .into_inner();
    assert!(diabetic.documents.is_empty());

    // A document whose event code reveals mental health is withheld from a caller without that
    // consent: the page says something was withheld, never what; a retrieve answers NOT_FOUND.
    let mut psychiatric = document("QDN-H01", "ZY-1", "DOC-MH", b"mh", 1_780_500_000);
    psychiatric.entry.as_mut().unwrap().event_codes = vec!["F32.1".into()];
    emr.register_document_set(set("SS-9", vec![psychiatric], vec![]))
        .await
        .unwrap();
    let page = emr.find_documents(find(vec![])).await.unwrap().into_inner();
    assert!(page.some_withheld);
    assert!(page.documents.iter().all(|d| d.unique_id != "DOC-MH"));
    let hidden = emr
        .retrieve_document(RetrieveDocumentRequest {
            unique_id: "DOC-MH".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Status::NotFound);
    // A hospital registers only documents it keeps itself.
    let mut elsewhere = document("QDN-H01", "ZY-1", "DOC-EL", b"el", 1_780_000_000);
    elsewhere.content = Vec::new();
    elsewhere.entry.as_mut().unwrap().repository_organisation_code = "QDN-H02".into();
    let refused = emr
        .register_document_set(set("SS-10", vec![elsewhere], vec![]))
        .await
        .unwrap_err();
    assert!(
        refused
            .message()
            .starts_with("documents[0].entry.repository_organisation_code"),
        "{}",
        refused.message()
    );

    let retrieved = emr
        .retrieve_document(RetrieveDocumentRequest {
            unique_id: "DOC-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        retrieved.content, b"v1",
        "a deprecated document is still retrievable"
    );
    assert!(retrieved.retrieved_from.is_empty());
    let unknown = emr
        .retrieve_document(RetrieveDocumentRequest {
            unique_id: "DOC-NONE".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Status::NotFound);
    server.server.stop().await.unwrap();
}

/// A hospital's gateway for tests: documents by unique id, as the hospital keeps them.
#[derive(Clone)]
struct TestGateway {
    documents: HashMap<String, Vec<u8>>,
}

#[tonic::async_trait]
impl hie_proto::hospital::hospital_gateway_server::HospitalGateway for TestGateway {
    async fn retrieve_document(
        &self,
        request: tonic::Request<hie_proto::hospital::RetrieveDocumentRequest>,
    ) -> Result<tonic::Response<hie_proto::hospital::RetrieveDocumentResponse>, tonic::Status> {
        let unique_id = request.into_inner().unique_id;
        match self.documents.get(&unique_id) {
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

async fn a_document_kept_at_the_hospital_is_fetched_through_its_gateway_and_checked(db: TestDb) {
    use hie_emr::grpc::gateway_client::{GatewayEndpoint, GrpcGateways};

    // The hospital keeps two documents; one of them changed after it was registered.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway_url = format!("http://{}", listener.local_addr().unwrap());
    let gateway = TestGateway {
        documents: HashMap::from([
            ("KEPT-1".to_owned(), b"kept at the hospital".to_vec()),
            ("KEPT-2".to_owned(), b"edited after registration".to_vec()),
        ]),
    };
    let serving = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(hie_proto::hospital::hospital_gateway_server::HospitalGatewayServer::new(gateway))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let mut exchange = db.exchange().await;
    let gateways = GrpcGateways::new(
        vec![GatewayEndpoint {
            organisation: hie_core::domain::OrganisationCode::parse("QDN-H02").unwrap(),
            url: gateway_url,
            tls: None,
        }],
        std::time::Duration::from_secs(5),
        1024,
    )
    .unwrap();
    exchange.use_gateways(std::sync::Arc::new(gateways), 1024);
    let running = exchange.start(db.settings().listen).await.unwrap();
    let channel = Channel::from_shared(running.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let server = TestServer {
        server: running,
        channel,
    };
    register_organisations(server.exchange()).await;
    let (_, mut emr) = clients(&server);
    patient(&server, "QDN-H02", "H2-7", "杨秀英", 3).await;

    let at_hospital = |unique_id: &str, registered: &[u8]| {
        let mut submission = document("QDN-H02", "H2-7", unique_id, registered, 1_780_000_000);
        submission.content = Vec::new();
        submission.entry.as_mut().unwrap().repository_organisation_code = "QDN-H02".into();
        submission
    };
    emr.register_document_set(RegisterDocumentSetRequest {
        submission_set_unique_id: "SS-H2".into(),
        source_organisation_code: "QDN-H02".into(),
        documents: vec![
            at_hospital("KEPT-1", b"kept at the hospital"),
            at_hospital("KEPT-2", b"as registered"),
            at_hospital("KEPT-3", b"lost by the hospital"),
        ],
        associations: vec![],
    })
    .await
    .unwrap();

    let fetched = emr
        .retrieve_document(RetrieveDocumentRequest {
            unique_id: "KEPT-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.content, b"kept at the hospital");
    assert_eq!(fetched.retrieved_from, "QDN-H02");
    let changed = emr
        .retrieve_document(RetrieveDocumentRequest {
            unique_id: "KEPT-2".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(changed.code(), Status::FailedPrecondition, "{changed:?}");
    assert!(
        changed.message().contains("does not match"),
        "{}",
        changed.message()
    );
    let lost = emr
        .retrieve_document(RetrieveDocumentRequest {
            unique_id: "KEPT-3".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(lost.code(), Status::NotFound, "{lost:?}");
    // The refused mismatch is in the audit trail as a failed retrieve.
    server.exchange().access.audit().flush().await.unwrap();
    let (failed,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM audit_events WHERE action = 'emr.document.retrieve' AND outcome = 'failed'",
    )
    .fetch_one(server.exchange().database.pool())
    .await
    .unwrap();
    assert_eq!(failed, 1);

    // Content over the exchange's limit (1 KiB here) is refused, naming the limit.
    let big = vec![b'x'; 2048];
    let over = emr
        .register_document_set(RegisterDocumentSetRequest {
            submission_set_unique_id: "SS-BIG".into(),
            source_organisation_code: "QDN-H02".into(),
            documents: vec![document("QDN-H02", "H2-7", "BIG-1", &big, 1_780_000_000)],
            associations: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(over.code(), Status::InvalidArgument);
    assert!(over.message().contains("1024 bytes"), "{}", over.message());
    server.server.stop().await.unwrap();
    serving.abort();
}

fn at(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

fn visit(
    number: &str,
    kind: EncounterKind,
    started: i64,
    ended: Option<i64>,
    diagnoses: &[&str],
) -> Encounter {
    Encounter {
        visit_number: number.into(),
        kind: kind as i32,
        department: "心内科".into(),
        attending_practitioner: "dr-wu".into(),
        diagnoses: diagnoses.iter().map(|d| (*d).to_owned()).collect(),
        started_at: at(started),
        ended_at: ended.and_then(at),
        ..Default::default()
    }
}

async fn visits_and_the_summary_follow_consent_and_merges(db: TestDb) {
    let server = db.server().await;
    register_organisations(server.exchange()).await;
    let (mut records, mut emr) = clients(&server);
    // The same woman, not yet known to be one: two persons (different identity numbers typed).
    let at_h01 = patient(&server, "QDN-H01", "ZY-20", "龙秀英", 20).await;
    let at_t01 = patient(&server, "QDN-T01", "T-20", "龙秀英", 21).await;
    assert_ne!(at_h01, at_t01);

    // An admission, then the same visit's discharge: one visit, updated.
    let register = |encounter: Encounter| RegisterEncounterRequest {
        organisation_code: "QDN-H01".into(),
        person: Some(local("QDN-H01", "ZY-20")),
        encounter: Some(encounter),
    };
    let admitted = emr
        .register_encounter(register(visit(
            "V-1",
            EncounterKind::Admission,
            1_780_000_000,
            None,
            &["I10"],
        )))
        .await
        .unwrap()
        .into_inner();
    let discharged = emr
        .register_encounter(register(visit(
            "V-1",
            EncounterKind::Discharge,
            1_780_000_000,
            Some(1_780_300_000),
            &["I10", "E11.9"],
        )))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        admitted.encounter.unwrap().encounter_id,
        discharged.encounter.as_ref().unwrap().encounter_id
    );
    let backwards = emr
        .register_encounter(register(visit(
            "V-2",
            EncounterKind::Discharge,
            1_780_000_000,
            Some(1_770_000_000),
            &[],
        )))
        .await
        .unwrap_err();
    assert!(
        backwards.message().starts_with("encounter.ended_at"),
        "{}",
        backwards.message()
    );
    let bad_code = emr
        .register_encounter(register(visit(
            "V-3",
            EncounterKind::Outpatient,
            1_780_000_000,
            None,
            &["hypertension"],
        )))
        .await
        .unwrap_err();
    assert!(
        bad_code.message().starts_with("encounter.diagnoses[0]"),
        "{}",
        bad_code.message()
    );

    // The township centre's archive: a profile with an allergy, a follow-up, a dose, and a
    // severe mental illness follow-up that only consent to mental health opens.
    let t01 = |id: &str, on: &str, payload| submission("QDN-T01", id, local("QDN-T01", "T-20"), on, payload);
    for request in [
        t01(
            "BP-1",
            "2026-01-10",
            EntryPayload {
                payload: Some(entry_payload::Payload::BasicProfile(BasicProfile {
                    blood_type: "O".into(),
                    allergies: vec![Allergy {
                        substance: "青霉素".into(),
                        reaction: "皮疹".into(),
                    }],
                    ..Default::default()
                })),
            },
        ),
        t01("FU-1", "2026-05-10", hypertension(146, 92)),
        t01(
            "IM-1",
            "2026-02-01",
            EntryPayload {
                payload: Some(entry_payload::Payload::Immunisation(Immunisation {
                    vaccine_code: "2201".into(),
                    dose_number: 1,
                    lot_number: "FLU-7".into(),
                    site: String::new(),
                })),
            },
        ),
        t01(
            "MH-1",
            "2026-04-01",
            EntryPayload {
                payload: Some(entry_payload::Payload::MentalIllnessFollowUp(
                    MentalIllnessFollowUp {
                        diagnosis: "F20.0".into(),
                        risk_level: 1,
                        medications: vec![Medication {
                            name: "利培酮".into(),
                            dose: "2 mg".into(),
                            frequency: "bid".into(),
                        }],
                        control: 1,
                        next_follow_up_on: String::new(),
                    },
                )),
            },
        ),
    ] {
        records.submit_entry(request).await.unwrap();
    }

    // Before the merge each person has only their own data.
    let summary = |who: PersonSelector| GetPatientSummaryRequest { person: Some(who) };
    let h01_only = emr
        .get_patient_summary(summary(local("QDN-H01", "ZY-20")))
        .await
        .unwrap()
        .into_inner();
    let h01_only = h01_only.summary.unwrap();
    assert!(h01_only.allergies.is_empty());
    assert_eq!(h01_only.latest_encounters.len(), 1);

    // The steward merges them: either former identifier now answers the survivor's whole set.
    let merge = server
        .exchange()
        .population
        .merge_persons(
            &steward(),
            &hie_core::id::PersonId::parse(&at_t01).unwrap(),
            &hie_core::id::PersonId::parse(&at_h01).unwrap(),
            "the same woman: the township typed one digit wrong",
        )
        .await
        .unwrap();
    let merged = emr
        .get_patient_summary(summary(person(&at_t01)))
        .await
        .unwrap()
        .into_inner()
        .summary
        .unwrap();
    assert_eq!(merged.person_id, at_h01);
    assert_eq!(merged.demographics.unwrap().name, "龙秀英");
    assert_eq!(
        merged
            .allergies
            .iter()
            .map(|a| a.substance.as_str())
            .collect::<Vec<_>>(),
        ["青霉素"]
    );
    let problems: Vec<&str> = merged.active_problems.iter().map(|p| p.code.as_str()).collect();
    assert!(
        problems.contains(&"I10") && problems.contains(&"E11.9"),
        "{problems:?}"
    );
    assert!(
        !problems.iter().any(|p| p.starts_with('F')),
        "the withheld diagnosis shows: {problems:?}"
    );
    let medicines: Vec<&str> = merged
        .current_medications
        .iter()
        .map(|m| m.medication.as_ref().unwrap().name.as_str())
        .collect();
    assert_eq!(medicines, ["氨氯地平"]);
    assert_eq!(merged.latest_encounters.len(), 1);
    assert_eq!(merged.latest_encounters[0].kind, EncounterKind::Discharge as i32);
    assert_eq!(merged.immunisations.len(), 1);
    assert_eq!(merged.immunisations[0].given_on, "2026-02-01");
    let vitals = merged.latest_vital_signs.unwrap().vital_signs.unwrap();
    assert_eq!(
        (vitals.systolic_mmhg, vitals.diastolic_mmhg),
        (Some(146), Some(92))
    );
    assert!(
        merged.some_withheld,
        "the mental-health follow-up was withheld, and the summary says so"
    );
    let entries = records
        .query_entries(QueryEntriesRequest {
            person: Some(local("QDN-H01", "ZY-20")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(entries.entries.len(), 3);
    assert!(entries.some_withheld);
    assert!(
        entries
            .entries
            .iter()
            .all(|e| e.entry_type != EntryType::MentalIllnessFollowUp as i32)
    );

    // Undone: each set goes back where it came from.
    server
        .exchange()
        .population
        .unmerge_persons(&steward(), &merge.id, "not the same woman after all")
        .await
        .unwrap();
    let h01_again = emr
        .get_patient_summary(summary(person(&at_h01)))
        .await
        .unwrap()
        .into_inner()
        .summary
        .unwrap();
    assert!(h01_again.allergies.is_empty());
    let t01_again = records
        .query_entries(QueryEntriesRequest {
            person: Some(person(&at_t01)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t01_again.person_id, at_t01);
    assert_eq!(t01_again.entries.len(), 3);

    let visits = emr
        .list_encounters(ListEncountersRequest {
            person: Some(person(&at_t01)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(visits.encounters.is_empty());

    // Her consent decides: the mental-health category opened shows the follow-up; withholding
    // sharing refuses the read.
    let set_consent = |directives: hie_access::domain::consent::ConsentDirectives| {
        let exchange = server.exchange().clone();
        let person = hie_core::id::PersonId::parse(&at_t01).unwrap();
        async move {
            let consent = exchange.access.consent();
            let subject = hie_access::Subject::new(hie_core::vocabulary::AuditAction::SetConsent, "consent")
                .person(&person);
            exchange
                .access
                .audit()
                .write(&steward(), subject, Ok(()), async |unit| {
                    consent.set_in(unit, &person, &directives, "test").await
                })
                .await
                .unwrap();
        }
    };
    set_consent(hie_access::domain::consent::ConsentDirectives {
        sharing: Some(true),
        consented_categories: [hie_access::domain::consent::DataCategory::MentalHealth].into(),
        ..Default::default()
    })
    .await;
    let opened = records
        .query_entries(QueryEntriesRequest {
            person: Some(person(&at_t01)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(opened.entries.len(), 4);
    assert!(!opened.some_withheld);
    set_consent(hie_access::domain::consent::ConsentDirectives {
        sharing: Some(false),
        ..Default::default()
    })
    .await;
    let refused = records
        .query_entries(QueryEntriesRequest {
            person: Some(person(&at_t01)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Status::PermissionDenied, "{refused:?}");
    server.server.stop().await.unwrap();
}
