//! Mutual TLS, for real: a development CA from `hie certs`, TLS handshakes over TCP, the caller's
//! organisation taken from its certificate.

use hie_proto::population::{Identifier, ResolveIdentifierRequest};
use hie_server::RunningServer;
use hie_server::pki::{self, PkiFolder};
use hie_server::settings::TlsSettings;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::harness::{PopulationClient, TestDb, population_client, register_organisations, request, woman};

struct Fixture {
    _db: TestDb,
    folder: PkiFolder,
    server: RunningServer,
    _dir: tempfile::TempDir,
}

/// A server with mutual TLS; QDN-H01 and QDN-H02 have registered certificates.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let folder = PkiFolder::new(dir.path().join("pki"));
    pki::init(&folder, &[]).unwrap();
    let db = TestDb::sqlite().await;
    let exchange = db.exchange().await;
    register_organisations(&exchange).await;
    for code in ["QDN-H01", "QDN-H02"] {
        let fingerprint = pki::issue_organisation(&folder, code).unwrap();
        let code = hie_core::domain::OrganisationCode::parse(code).unwrap();
        exchange
            .directory
            .register_certificate(&code, &fingerprint)
            .await
            .unwrap();
    }
    let tls = TlsSettings {
        cert: folder.server_cert(),
        key: folder.server_key(),
        client_ca: folder.ca_cert(),
    };
    let server = exchange
        .start_with("127.0.0.1:0".parse().unwrap(), Some(&tls))
        .await
        .unwrap();
    Fixture {
        _db: db,
        folder,
        server,
        _dir: dir,
    }
}

/// A client trusting the fixture's CA, presenting `identity` (certificate and key files), if any.
async fn client(
    fixture: &Fixture,
    identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
) -> Result<PopulationClient, tonic::transport::Error> {
    Ok(population_client(channel(fixture, identity).await?))
}

/// A mutual-TLS channel to the fixture's server.
async fn channel(
    fixture: &Fixture,
    identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
) -> Result<Channel, tonic::transport::Error> {
    let ca = std::fs::read(fixture.folder.ca_cert()).unwrap();
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(cert).unwrap(),
            std::fs::read(key).unwrap(),
        ));
    }
    let url = format!("https://localhost:{}", fixture.server.address().port());
    Channel::from_shared(url)
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

fn identity_of(folder: &PkiFolder, code: &str) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    Some((folder.organisation_cert(code), folder.organisation_key(code)))
}

/// Either the handshake or the first call must fail: rustls refuses during or right after it.
async fn assert_refused(client: Result<PopulationClient, tonic::transport::Error>) -> Option<Code> {
    let Ok(mut client) = client else { return None };
    let status = client
        .register_source_record(request("QDN-H01", "MZ1", "吴阿妹", Some(&woman(1))))
        .await
        .unwrap_err();
    assert_ne!(status.code(), Code::Ok);
    Some(status.code())
}

#[tokio::test]
async fn a_call_without_a_client_certificate_is_refused() {
    let fixture = fixture().await;
    assert_refused(client(&fixture, None).await).await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let fixture = fixture().await;
    let other = tempfile::tempdir().unwrap();
    let other_folder = PkiFolder::new(other.path());
    pki::init(&other_folder, &[]).unwrap();
    pki::issue_organisation(&other_folder, "QDN-H01").unwrap();
    assert_refused(client(&fixture, identity_of(&other_folder, "QDN-H01")).await).await;
}

#[tokio::test]
async fn a_certificate_the_directory_does_not_know_is_unauthenticated() {
    let fixture = fixture().await;
    // Issued by the right CA, but never registered for any organisation.
    pki::issue_organisation(&fixture.folder, "QDN-T01").unwrap();
    let mut client = client(&fixture, identity_of(&fixture.folder, "QDN-T01"))
        .await
        .unwrap();
    let status = client
        .register_source_record(request("", "MZ1", "吴阿妹", None))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

#[tokio::test]
async fn a_certificate_for_one_organisation_acts_as_it_whatever_the_request_claims() {
    let fixture = fixture().await;
    let mut h01 = client(&fixture, identity_of(&fixture.folder, "QDN-H01"))
        .await
        .unwrap();

    // A header claiming another organisation is not read; an empty code means the caller's.
    let mut claiming = tonic::Request::new(request("", "MZ1", "吴阿妹", Some(&woman(1))));
    claiming
        .metadata_mut()
        .insert("x-hie-organisation", "QDN-H02".parse().unwrap());
    h01.register_source_record(claiming).await.unwrap();
    let resolved = h01
        .resolve_identifier(ResolveIdentifierRequest {
            identifier: Some(Identifier {
                system: "urn:hie:org:QDN-H01:patient".into(),
                value: "MZ1".into(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resolved.cross_references.len(),
        2,
        "filed under QDN-H01, the certificate's organisation"
    );

    // Naming another organisation in the request is refused.
    let status = h01
        .register_source_record(request("QDN-H02", "MZ2", "吴阿妹", None))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().starts_with("organisation_code:"),
        "{}",
        status.message()
    );
}

/// QDN-H02's client, after one call that passed (so that the server has seen its certificate),
/// and the certificate's fingerprint.
async fn h02_after_one_call(fixture: &Fixture) -> (PopulationClient, String) {
    let mut h02 = client(fixture, identity_of(&fixture.folder, "QDN-H02"))
        .await
        .unwrap();
    h02.register_source_record(request("", "ZY1", "吴阿妹", Some(&woman(1))))
        .await
        .unwrap();
    let pem = std::fs::read_to_string(fixture.folder.organisation_cert("QDN-H02")).unwrap();
    (h02, pki::fingerprint_of_pem(&pem).unwrap())
}

async fn assert_refused_as_revoked(h02: &mut PopulationClient) {
    let status = h02
        .register_source_record(request("", "ZY2", "吴阿妹", None))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("revoked"), "{}", status.message());
}

#[tokio::test]
async fn a_revoked_certificate_is_refused_from_the_next_call_on() {
    let fixture = fixture().await;
    let (mut h02, fingerprint) = h02_after_one_call(&fixture).await;
    fixture
        .server
        .exchange()
        .directory
        .revoke_certificate(&fingerprint)
        .await
        .unwrap();
    assert_refused_as_revoked(&mut h02).await;
}

#[tokio::test]
async fn a_certificate_revoked_by_another_process_is_refused_within_the_recheck_interval() {
    let fixture = fixture().await;
    let (mut h02, fingerprint) = h02_after_one_call(&fixture).await;
    // As `hie certs revoke` does: another directory over the same database, which this server's
    // directory hears nothing from.
    hie_directory::DirectoryService::new(fixture.server.exchange().database.clone())
        .revoke_certificate(&fingerprint)
        .await
        .unwrap();
    tokio::time::sleep(hie_server::authn::RECHECK_AFTER + std::time::Duration::from_millis(200)).await;
    assert_refused_as_revoked(&mut h02).await;
}

/// A request with the given role and purpose (and reason, for emergencies).
fn with_context<T>(message: T, role: &str, purpose: &str, reason: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert("x-hie-user", "dr-long".parse().unwrap());
    metadata.insert("x-hie-role", role.parse().unwrap());
    metadata.insert("x-hie-purpose", purpose.parse().unwrap());
    if let Some(reason) = reason {
        metadata.insert("x-hie-reason", reason.parse().unwrap());
    }
    request
}

#[tokio::test]
async fn an_opted_out_hospital_is_refused_unless_it_breaks_the_glass_which_the_patient_sees() {
    use hie_proto::access::access_service_client::AccessServiceClient;
    use hie_proto::access::{ConsentDirectives, PatientAccessLogRequest, SetConsentRequest};
    use hie_proto::population::population_registry_client::PopulationRegistryClient;

    let fixture = fixture().await;
    let h01_channel = channel(&fixture, identity_of(&fixture.folder, "QDN-H01"))
        .await
        .unwrap();
    let h02_channel = channel(&fixture, identity_of(&fixture.folder, "QDN-H02"))
        .await
        .unwrap();
    let registered = population_client(h01_channel.clone())
        .register_source_record(request("", "MZ1", "吴阿妹", Some(&woman(1))))
        .await
        .unwrap()
        .into_inner();
    population_client(h02_channel.clone())
        .register_source_record(request("", "ZY1", "吴阿妹", Some(&woman(1))))
        .await
        .unwrap();

    // The patient, at QDN-H01's desk, withholds consent from QDN-H02.
    let mut access = AccessServiceClient::new(h01_channel.clone());
    let directives = ConsentDirectives {
        denied_organisations: vec!["QDN-H02".into()],
        ..Default::default()
    };
    let set = SetConsentRequest {
        person_id: registered.person_id.clone(),
        directives: Some(directives),
    };
    access
        .set_consent(with_context(set, "patient", "patient_request", None))
        .await
        .unwrap();

    let own_number = || ResolveIdentifierRequest {
        identifier: Some(Identifier {
            system: "urn:hie:org:QDN-H02:patient".into(),
            value: "ZY1".into(),
        }),
    };
    let mut h02 = PopulationRegistryClient::new(h02_channel.clone());
    let refused = h02
        .resolve_identifier(with_context(own_number(), "clinician", "treatment", None))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("withheld consent from organisation QDN-H02"),
        "{}",
        refused.message()
    );

    // Break-the-glass: purpose emergency with a reason is permitted, and flagged.
    let reason = "%E6%98%8F%E8%BF%B7%E9%80%81%E8%AF%8A"; // 昏迷送诊, percent-encoded
    let resolved = h02
        .resolve_identifier(with_context(own_number(), "clinician", "emergency", Some(reason)))
        .await
        .unwrap();
    assert_eq!(resolved.into_inner().person_id, registered.person_id);

    let log = PatientAccessLogRequest {
        person_id: registered.person_id.clone(),
        page_size: 20,
        page_token: String::new(),
    };
    let events = access
        .patient_access_log(with_context(log, "patient", "patient_request", None))
        .await
        .unwrap()
        .into_inner()
        .events;
    let h02_resolves: Vec<_> = events
        .iter()
        .filter(|e| e.organisation_code == "QDN-H02" && e.action == "population.resolve")
        .collect();
    assert_eq!(h02_resolves.len(), 2);
    assert!(
        h02_resolves[0].emergency
            && h02_resolves[0].outcome == "permitted"
            && h02_resolves[0].reason == "昏迷送诊"
    );
    assert!(!h02_resolves[1].emergency && h02_resolves[1].outcome == "denied");
    assert_eq!(
        fixture
            .server
            .exchange()
            .access
            .audit()
            .verify()
            .await
            .unwrap()
            .map(|n| n > 0),
        Ok(true)
    );
}

#[tokio::test]
async fn a_psychiatric_hospitals_record_shows_elsewhere_only_with_consent_to_share_mental_health() {
    use hie_access::domain::consent::DataCategory;
    use hie_core::domain::{BoundedText, DivisionCode, OrganisationCode};
    use hie_directory::domain::{HospitalGrade, OrganisationDraft, OrganisationKind};
    use hie_proto::access::access_service_client::AccessServiceClient;
    use hie_proto::access::{ConsentDirectives, SetConsentRequest};
    use hie_proto::population::GetPersonRequest;
    use hie_proto::population::population_registry_client::PopulationRegistryClient;

    let fixture = fixture().await;
    let exchange = fixture.server.exchange();
    let psychiatric = OrganisationDraft::new(
        "organisation",
        OrganisationCode::parse("QDN-JSB").unwrap(),
        BoundedText::parse_required("黔东南州第二人民医院（精神专科）", 100).unwrap(),
        OrganisationKind::Hospital,
        Some(HospitalGrade::SecondaryA),
        DivisionCode::parse("522601").unwrap(),
        true,
    )
    .unwrap()
    .with_sensitive_category(
        "organisation.sensitive_category",
        Some(DataCategory::MentalHealth),
    )
    .unwrap();
    exchange
        .directory
        .register_organisation(psychiatric)
        .await
        .unwrap();
    exchange
        .population
        .register(
            &crate::harness::ctx(),
            &crate::harness::draft(request("QDN-JSB", "JSB-7", "吴阿妹", Some(&woman(1)))),
        )
        .await
        .unwrap();

    let h01_channel = channel(&fixture, identity_of(&fixture.folder, "QDN-H01"))
        .await
        .unwrap();
    let registered = population_client(h01_channel.clone())
        .register_source_record(request("", "MZ1", "吴阿妹", Some(&woman(1))))
        .await
        .unwrap()
        .into_inner();
    let mut h01 = PopulationRegistryClient::new(h01_channel.clone());
    let resolve = |system: &str, value: &str| {
        with_context(
            ResolveIdentifierRequest {
                identifier: Some(Identifier {
                    system: system.into(),
                    value: value.into(),
                }),
            },
            "clinician",
            "treatment",
            None,
        )
    };
    let organisations_seen = |references: &[hie_proto::population::CrossReference]| {
        let mut seen: Vec<String> = references.iter().map(|r| r.organisation_code.clone()).collect();
        seen.sort();
        seen.dedup();
        seen
    };

    // Without consent to mental health: the psychiatric record does not show, by any road.
    let resolved = h01
        .resolve_identifier(resolve("urn:hie:org:QDN-H01:patient", "MZ1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved.person_id, registered.person_id);
    assert_eq!(organisations_seen(&resolved.cross_references), ["QDN-H01"]);
    let person = h01
        .get_person(with_context(
            GetPersonRequest {
                person_id: registered.person_id.clone(),
            },
            "clinician",
            "treatment",
            None,
        ))
        .await
        .unwrap()
        .into_inner();
    let record_keepers: Vec<&str> = person
        .source_records
        .iter()
        .map(|r| r.organisation_code.as_str())
        .collect();
    assert_eq!(record_keepers, ["QDN-H01"]);
    let person_identifiers = person.person.unwrap().identifiers;
    assert!(
        person_identifiers.iter().all(|i| !i.system.contains("QDN-JSB")),
        "{person_identifiers:?}"
    );
    let refused = h01
        .resolve_identifier(resolve("urn:hie:org:QDN-JSB:patient", "JSB-7"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("mental_health"),
        "{}",
        refused.message()
    );

    // The patient consents to share mental health: now it shows.
    AccessServiceClient::new(h01_channel.clone())
        .set_consent(with_context(
            SetConsentRequest {
                person_id: registered.person_id.clone(),
                directives: Some(ConsentDirectives {
                    consented_categories: vec!["mental_health".into()],
                    ..Default::default()
                }),
            },
            "patient",
            "patient_request",
            None,
        ))
        .await
        .unwrap();
    let resolved = h01
        .resolve_identifier(resolve("urn:hie:org:QDN-H01:patient", "MZ1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        organisations_seen(&resolved.cross_references),
        ["QDN-H01", "QDN-JSB"]
    );
}
