//! Mutual TLS, for real: a development CA from `hie certs`, TLS handshakes over TCP, the caller's
//! organisation taken from its certificate.

use hie_proto::population::{Identifier, ResolveIdentifierRequest};
use hie_server::RunningServer;
use hie_server::settings::TlsSettings;
use hie_transport::pki::{self, PkiFolder};
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::{
    PopulationClient, TestDb, on_every_backend, population_client, register_organisation,
    register_organisations, request, steward, woman,
};

on_every_backend!(
    a_call_without_a_client_certificate_is_refused,
    a_certificate_from_another_ca_is_refused,
    a_certificate_the_directory_does_not_know_is_unauthenticated,
    a_certificate_for_one_organisation_acts_as_it_whatever_the_request_claims,
    a_revoked_certificate_is_refused_from_the_next_call_on,
    a_certificate_revoked_by_another_process_is_refused_within_the_recheck_interval,
    an_opted_out_hospital_is_refused_unless_it_breaks_the_glass_which_the_patient_sees,
    a_psychiatric_hospitals_record_shows_elsewhere_only_with_consent_to_share_mental_health,
    a_hospital_cannot_act_as_the_administrator_and_the_attempt_is_audited,
    only_a_patient_portal_acts_as_a_patient_and_only_for_that_patient,
    only_clinicians_of_care_giving_organisations_break_the_glass,
    a_grant_to_a_practitioner_holds_only_for_their_organisation,
    a_page_token_of_any_bytes_is_invalid_argument_over_the_wire,
    a_clerk_sets_consent_only_for_patients_of_their_organisation,
);

pub(crate) struct Fixture {
    pub(crate) db: TestDb,
    pub(crate) folder: PkiFolder,
    pub(crate) server: RunningServer,
    _dir: tempfile::TempDir,
}

/// A server with mutual TLS over `db`; hospitals QDN-H01 and QDN-H02, the health authority
/// QDN-WJW, the patient portal QDN-APP and the insurer QDN-YB have registered certificates.
pub(crate) async fn fixture(db: TestDb) -> Fixture {
    fixture_on(db, "127.0.0.1:0".parse().unwrap()).await
}

/// The same fixture, its server listening on `listen`.
pub(crate) async fn fixture_on(db: TestDb, listen: std::net::SocketAddr) -> Fixture {
    fixture_configured(db, listen, |_, _| {}).await
}

/// The same fixture, with `configure` given the exchange and the PKI before the server starts.
pub(crate) async fn fixture_configured(
    db: TestDb,
    listen: std::net::SocketAddr,
    configure: impl FnOnce(&mut hie_server::Exchange, &PkiFolder),
) -> Fixture {
    use hie_directory::domain::OrganisationKind;
    let dir = tempfile::tempdir().unwrap();
    let folder = PkiFolder::new(dir.path().join("pki"));
    pki::init(&folder, &[]).unwrap();
    let mut exchange = db.exchange().await;
    register_organisations(&exchange).await;
    for (code, name, kind) in [
        (
            "QDN-WJW",
            "黔东南州卫生健康局",
            OrganisationKind::RegionalHealthAuthority,
        ),
        (
            "QDN-APP",
            "健康黔东南居民服务平台",
            OrganisationKind::PatientPortal,
        ),
        ("QDN-YB", "黔东南州医疗保障局", OrganisationKind::Insurer),
    ] {
        register_organisation(&exchange, code, name, kind, "522600", true).await;
    }
    for code in ["QDN-H01", "QDN-H02", "QDN-WJW", "QDN-APP", "QDN-YB"] {
        let fingerprint = pki::issue_organisation(&folder, code).unwrap();
        let code = hie_core::domain::OrganisationCode::parse(code).unwrap();
        exchange
            .directory
            .register_certificate(&steward(), &code, &fingerprint)
            .await
            .unwrap();
    }
    configure(&mut exchange, &folder);
    let tls = TlsSettings {
        cert: folder.server_cert(),
        key: folder.server_key(),
        client_ca: folder.ca_cert(),
    };
    let server = exchange.start_with(listen, Some(&tls), false).await.unwrap();
    Fixture {
        db,
        folder,
        server,
        _dir: dir,
    }
}

impl Fixture {
    /// Stops the server and starts a new exchange over the same database and PKI, as a restart
    /// of the process does (on another port).
    pub(crate) async fn restart(self, configure: impl FnOnce(&mut hie_server::Exchange)) -> Fixture {
        let Fixture {
            db,
            folder,
            server,
            _dir,
        } = self;
        server.stop().await.unwrap();
        let mut exchange = db.exchange().await;
        configure(&mut exchange);
        let tls = TlsSettings {
            cert: folder.server_cert(),
            key: folder.server_key(),
            client_ca: folder.ca_cert(),
        };
        let server = exchange
            .start_with("127.0.0.1:0".parse().unwrap(), Some(&tls), false)
            .await
            .unwrap();
        Fixture {
            db,
            folder,
            server,
            _dir,
        }
    }

    /// Registers an organisation of `kind` in division 522601 with a certificate of its own.
    pub(crate) async fn add_organisation(&self, code: &str, kind: hie_directory::domain::OrganisationKind) {
        let exchange = self.server.exchange();
        let organisation = hie_core::domain::OrganisationCode::parse(code).unwrap();
        if exchange.directory.get_organisation(&organisation).await.is_err() {
            register_organisation(exchange, code, code, kind, "522601", true).await;
        }
        let fingerprint = pki::issue_organisation(&self.folder, code).unwrap();
        exchange
            .directory
            .register_certificate(&steward(), &organisation, &fingerprint)
            .await
            .unwrap();
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
    // The client side of mutual TLS as an adapter builds it.
    let identity = identity
        .as_ref()
        .map(|(cert, key)| (cert.as_path(), key.as_path()));
    let tls = hie_transport::tls::client_config(&fixture.folder.ca_cert(), "localhost", identity).unwrap();
    let url = format!("https://localhost:{}", fixture.server.address().port());
    Channel::from_shared(url)
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

/// A mutual-TLS channel presenting the certificate of organisation `code`.
pub(crate) async fn channel_of(fixture: &Fixture, code: &str) -> Channel {
    channel(fixture, identity_of(&fixture.folder, code))
        .await
        .unwrap()
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

async fn a_call_without_a_client_certificate_is_refused(db: TestDb) {
    let fixture = fixture(db).await;
    assert_refused(client(&fixture, None).await).await;
}

async fn a_certificate_from_another_ca_is_refused(db: TestDb) {
    let fixture = fixture(db).await;
    let other = tempfile::tempdir().unwrap();
    let other_folder = PkiFolder::new(other.path());
    pki::init(&other_folder, &[]).unwrap();
    pki::issue_organisation(&other_folder, "QDN-H01").unwrap();
    assert_refused(client(&fixture, identity_of(&other_folder, "QDN-H01")).await).await;
}

async fn a_certificate_the_directory_does_not_know_is_unauthenticated(db: TestDb) {
    let fixture = fixture(db).await;
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

async fn a_certificate_for_one_organisation_acts_as_it_whatever_the_request_claims(db: TestDb) {
    let fixture = fixture(db).await;
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

async fn a_revoked_certificate_is_refused_from_the_next_call_on(db: TestDb) {
    let fixture = fixture(db).await;
    let (mut h02, fingerprint) = h02_after_one_call(&fixture).await;
    fixture
        .server
        .exchange()
        .directory
        .revoke_certificate(&steward(), &fingerprint)
        .await
        .unwrap();
    assert_refused_as_revoked(&mut h02).await;
}

async fn a_certificate_revoked_by_another_process_is_refused_within_the_recheck_interval(db: TestDb) {
    let fixture = fixture(db).await;
    let (mut h02, fingerprint) = h02_after_one_call(&fixture).await;
    // As `hie certs revoke` does: another directory over the same database, which this server's
    // directory hears nothing from.
    let exchange = fixture.server.exchange();
    hie_directory::DirectoryService::new(exchange.database.clone(), exchange.access.audit().clone())
        .revoke_certificate(&steward(), &fingerprint)
        .await
        .unwrap();
    tokio::time::sleep(hie_transport::authn::RECHECK_AFTER + std::time::Duration::from_millis(200)).await;
    assert_refused_as_revoked(&mut h02).await;
}

/// A request from a clinician treating the patient.
fn treating<T>(message: T) -> tonic::Request<T> {
    with_context(message, "clinician", "treatment", None)
}

/// A request with the given role and purpose (and reason, for emergencies).
pub(crate) fn with_context<T>(
    message: T,
    role: &str,
    purpose: &str,
    reason: Option<&str>,
) -> tonic::Request<T> {
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

async fn an_opted_out_hospital_is_refused_unless_it_breaks_the_glass_which_the_patient_sees(db: TestDb) {
    use hie_proto::access::access_service_client::AccessServiceClient;
    use hie_proto::access::{ConsentDirectives, PatientAccessLogRequest, SetConsentRequest};
    use hie_proto::population::population_registry_client::PopulationRegistryClient;

    let fixture = fixture(db).await;
    let h01_channel = channel_of(&fixture, "QDN-H01").await;
    let h02_channel = channel_of(&fixture, "QDN-H02").await;
    let registered = population_client(h01_channel.clone())
        .register_source_record(request("", "MZ1", "吴阿妹", Some(&woman(1))))
        .await
        .unwrap()
        .into_inner();
    population_client(h02_channel.clone())
        .register_source_record(request("", "ZY1", "吴阿妹", Some(&woman(1))))
        .await
        .unwrap();

    // The patient, in the residents' app, withholds consent from QDN-H02.
    let portal = channel_of(&fixture, "QDN-APP").await;
    let mut access = AccessServiceClient::new(portal);
    let directives = ConsentDirectives {
        denied_organisations: vec!["QDN-H02".into()],
        ..Default::default()
    };
    let set = SetConsentRequest {
        person_id: registered.person_id.clone(),
        directives: Some(directives),
    };
    access
        .set_consent(as_patient(set, &registered.person_id))
        .await
        .unwrap();

    let own_number = || ResolveIdentifierRequest {
        identifier: Some(Identifier {
            system: "urn:hie:org:QDN-H02:patient".into(),
            value: "ZY1".into(),
        }),
    };
    let mut h02 = PopulationRegistryClient::new(h02_channel.clone());
    let refused = h02.resolve_identifier(treating(own_number())).await.unwrap_err();
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
        .patient_access_log(as_patient(log, &registered.person_id))
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
    // The privacy officer hears of the override through the outbox.
    let mut conn = fixture.server.exchange().database.pool().acquire().await.unwrap();
    let overrides =
        hie_core::outbox::events(&mut conn, &[hie_core::vocabulary::EventType::EmergencyOverride])
            .await
            .unwrap();
    assert_eq!(overrides.len(), 1, "{overrides:?}");
    assert_eq!(overrides[0].payload["person_id"], registered.person_id.as_str());
    assert_eq!(overrides[0].payload["organisation_code"], "QDN-H02");
    // The typed outbox says whose event it is and where, without opening the payload.
    assert_eq!(
        overrides[0].person_id.as_deref(),
        Some(registered.person_id.as_str())
    );
    assert_eq!(overrides[0].organisation_code.as_deref(), Some("QDN-H02"));
    assert_eq!(overrides[0].schema_version, 1);
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

async fn a_psychiatric_hospitals_record_shows_elsewhere_only_with_consent_to_share_mental_health(db: TestDb) {
    use hie_access::domain::consent::DataCategory;
    use hie_core::domain::{BoundedText, DivisionCode, OrganisationCode};
    use hie_directory::domain::{HospitalGrade, OrganisationDraft, OrganisationKind};
    use hie_proto::access::access_service_client::AccessServiceClient;
    use hie_proto::access::{ConsentDirectives, SetConsentRequest};
    use hie_proto::population::GetPersonRequest;
    use hie_proto::population::population_registry_client::PopulationRegistryClient;

    let fixture = fixture(db).await;
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
        .register_organisation(&steward(), psychiatric)
        .await
        .unwrap();
    let h01_channel = channel_of(&fixture, "QDN-H01").await;
    let registered = population_client(h01_channel.clone())
        .register_source_record(request("", "MZ1", "吴阿妹", Some(&woman(1))))
        .await
        .unwrap()
        .into_inner();
    // The psychiatric hospital's record is the newest and states another phone: the person's
    // stored golden record takes it, which is what must not leak to QDN-H01.
    let mut psychiatric_record = request("QDN-JSB", "JSB-7", "吴阿妹", Some(&woman(1)));
    psychiatric_record.demographics.as_mut().unwrap().phone = "13985550000".into();
    let joined = exchange
        .population
        .register(&crate::harness::ctx(), &crate::harness::draft(psychiatric_record))
        .await
        .unwrap();
    assert_eq!(joined.person_id.as_str(), registered.person_id, "the same woman");
    let mut h01 = PopulationRegistryClient::new(h01_channel.clone());
    let resolve = |system: &str, value: &str| {
        treating(ResolveIdentifierRequest {
            identifier: Some(Identifier {
                system: system.into(),
                value: value.into(),
            }),
        })
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
        .get_person(treating(GetPersonRequest {
            person_id: registered.person_id.clone(),
        }))
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
    // Resolving by the psychiatric hospital's own number answers as a number nobody holds does:
    // the refusal must not reveal that the person has a record there.
    let hidden = h01
        .resolve_identifier(resolve("urn:hie:org:QDN-JSB:patient", "JSB-7"))
        .await
        .unwrap_err();
    let unknown = h01
        .resolve_identifier(resolve("urn:hie:org:QDN-JSB:patient", "JSB-8"))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound, "{hidden:?}");
    assert_eq!(hidden.code(), unknown.code());
    assert_eq!(
        hidden.message().replace("JSB-7", "JSB-8"),
        unknown.message(),
        "the refusal is worded as for an unknown number"
    );
    assert!(!hidden.message().contains("mental"), "{}", hidden.message());

    // A search's demographics come from the records the caller may see: the psychiatric
    // hospital's record (another name, another phone) does not leak through the person's.
    let search = |name: &str| {
        treating(hie_proto::population::SearchPersonsRequest {
            name: name.into(),
            page_size: 10,
            ..Default::default()
        })
    };
    let found = h01
        .search_persons(search("吴阿妹"))
        .await
        .unwrap()
        .into_inner()
        .persons;
    assert_eq!(found.len(), 1);
    let shown = found[0].demographics.clone().unwrap();
    assert_ne!(
        shown.phone, "13985550000",
        "the psychiatric record's phone must not show"
    );
    let by_hidden_number = h01
        .search_persons(treating(hie_proto::population::SearchPersonsRequest {
            identifier: Some(Identifier {
                system: "urn:hie:org:QDN-JSB:patient".into(),
                value: "JSB-7".into(),
            }),
            page_size: 10,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .persons;
    assert!(
        by_hidden_number.is_empty(),
        "searching by a hidden sensitive number finds nothing"
    );

    // The patient consents to share mental health: now it shows.
    let portal = channel_of(&fixture, "QDN-APP").await;
    AccessServiceClient::new(portal)
        .set_consent(as_patient(
            SetConsentRequest {
                person_id: registered.person_id.clone(),
                directives: Some(ConsentDirectives {
                    consented_categories: vec!["mental_health".into()],
                    ..Default::default()
                }),
            },
            &registered.person_id,
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

/// A request from the residents' app acting for `person_id`.
pub(crate) fn as_patient<T>(message: T, person_id: &str) -> tonic::Request<T> {
    let mut request = with_context(message, "patient", "patient_request", None);
    request
        .metadata_mut()
        .insert("x-hie-patient", person_id.parse().unwrap());
    request
}

/// A request from user `user` in the given role and purpose.
pub(crate) fn as_user<T>(message: T, user: &str, role: &str, purpose: &str) -> tonic::Request<T> {
    let mut request = with_context(message, role, purpose, None);
    request.metadata_mut().insert("x-hie-user", user.parse().unwrap());
    request
}

/// Registers the woman at QDN-H01 (MZ1) and QDN-H02 (ZY1) over their own certificates; her person id.
pub(crate) async fn woman_at_both_hospitals(fixture: &Fixture) -> String {
    let h01 = channel_of(fixture, "QDN-H01").await;
    let h02 = channel_of(fixture, "QDN-H02").await;
    let person = population_client(h01)
        .register_source_record(request("", "MZ1", "吴阿妹", Some(&woman(1))))
        .await
        .unwrap()
        .into_inner()
        .person_id;
    population_client(h02)
        .register_source_record(request("", "ZY1", "吴阿妹", Some(&woman(1))))
        .await
        .unwrap();
    person
}

fn local_number(organisation: &str, value: &str) -> ResolveIdentifierRequest {
    ResolveIdentifierRequest {
        identifier: Some(Identifier {
            system: format!("urn:hie:org:{organisation}:patient"),
            value: value.into(),
        }),
    }
}

async fn a_hospital_cannot_act_as_the_administrator_and_the_attempt_is_audited(db: TestDb) {
    use hie_proto::access::QueryAuditRequest;
    use hie_proto::access::access_service_client::AccessServiceClient;
    use hie_proto::directory::directory_client::DirectoryClient;
    use hie_proto::directory::{GetOrganisationRequest, UpdateOrganisationRequest};

    let fixture = fixture(db).await;
    let h01 = channel_of(&fixture, "QDN-H01").await;
    let mut directory = DirectoryClient::new(h01.clone());
    let mut h02_record = directory
        .get_organisation(treating(GetOrganisationRequest {
            code: "QDN-H02".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .organisation
        .unwrap();
    h02_record.active = false;
    let refused = directory
        .update_organisation(with_context(
            UpdateOrganisationRequest {
                organisation: Some(h02_record),
            },
            "administrator",
            "operations",
            None,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("role administrator"),
        "{}",
        refused.message()
    );

    // QDN-H02 still works: nothing was changed.
    let mut h02 = client(&fixture, identity_of(&fixture.folder, "QDN-H02"))
        .await
        .unwrap();
    h02.register_source_record(request("", "ZY1", "吴阿妹", Some(&woman(1))))
        .await
        .unwrap();

    // A hospital cannot read the audit trail as a privacy officer either; the authority can, and
    // sees both attempts.
    let query = || QueryAuditRequest {
        organisation_code: "QDN-H01".into(),
        outcome: "denied".into(),
        page_size: 50,
        ..Default::default()
    };
    let refused = AccessServiceClient::new(h01)
        .query_audit(with_context(query(), "administrator", "operations", None))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let authority = channel_of(&fixture, "QDN-WJW").await;
    let events = AccessServiceClient::new(authority)
        .query_audit(with_context(query(), "administrator", "operations", None))
        .await
        .unwrap()
        .into_inner()
        .events;
    let claims: Vec<_> = events.iter().filter(|e| e.action == "context.claim").collect();
    assert_eq!(claims.len(), 2, "{events:?}");
    assert!(
        claims
            .iter()
            .all(|e| e.role == "administrator" && e.outcome == "denied")
    );
    assert!(
        claims
            .iter()
            .any(|e| e.resource_id.ends_with("/UpdateOrganisation"))
    );
}

async fn only_a_patient_portal_acts_as_a_patient_and_only_for_that_patient(db: TestDb) {
    use hie_proto::access::access_service_client::AccessServiceClient;
    use hie_proto::access::{ConsentDirectives, GetConsentRequest, SetConsentRequest};
    use hie_proto::population::population_registry_client::PopulationRegistryClient;

    let fixture = fixture(db).await;
    let woman_id = woman_at_both_hospitals(&fixture).await;
    let other_id = population_client(channel_of(&fixture, "QDN-H01").await)
        .register_source_record(request("", "MZ9", "龙金花", Some(&woman(9))))
        .await
        .unwrap()
        .into_inner()
        .person_id;
    let open_everything = |person_id: &str| SetConsentRequest {
        person_id: person_id.into(),
        directives: Some(ConsentDirectives {
            consented_categories: vec!["mental_health".into(), "hiv_sti".into()],
            ..Default::default()
        }),
    };

    // A hospital's certificate asserting role patient: refused, nothing changed.
    let h01 = channel_of(&fixture, "QDN-H01").await;
    let refused = AccessServiceClient::new(h01.clone())
        .set_consent(as_patient(open_everything(&woman_id), &woman_id))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    let portal = channel_of(&fixture, "QDN-APP").await;
    let mut app = AccessServiceClient::new(portal.clone());
    // Acting for one person, the app cannot touch another's consent or log.
    let refused = app
        .set_consent(as_patient(open_everything(&other_id), &woman_id))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let refused = app
        .get_consent(as_patient(
            GetConsentRequest {
                person_id: other_id.clone(),
            },
            &woman_id,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    // Without naming the person it acts for: INVALID_ARGUMENT naming the header.
    let missing = app
        .set_consent(with_context(
            open_everything(&woman_id),
            "patient",
            "patient_request",
            None,
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert!(
        missing.message().starts_with("x-hie-patient"),
        "{}",
        missing.message()
    );
    // The portal cannot assert a clinical role, nor read the registry as a patient.
    let refused = PopulationRegistryClient::new(portal.clone())
        .resolve_identifier(treating(local_number("QDN-H01", "MZ1")))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = PopulationRegistryClient::new(portal.clone())
        .resolve_identifier(as_patient(local_number("QDN-H01", "MZ1"), &woman_id))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    let untouched = fixture
        .server
        .exchange()
        .access
        .consent()
        .directives(&woman_id)
        .await
        .unwrap();
    assert!(untouched.consented_categories.is_empty(), "nothing was changed");

    // For herself, she may.
    app.set_consent(as_patient(open_everything(&woman_id), &woman_id))
        .await
        .unwrap();
    let set = fixture
        .server
        .exchange()
        .access
        .consent()
        .directives(&woman_id)
        .await
        .unwrap();
    assert_eq!(set.consented_categories.len(), 2);

    // A person who does not exist is NOT_FOUND; one merged away is FAILED_PRECONDITION naming the
    // person whose directives now govern.
    let nobody = "01900000-0000-7000-8000-000000000000";
    let missing = app
        .set_consent(as_patient(
            SetConsentRequest {
                person_id: nobody.into(),
                directives: Some(ConsentDirectives::default()),
            },
            nobody,
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    let from = hie_population::domain::PersonId::parse(&other_id).unwrap();
    let into = hie_population::domain::PersonId::parse(&woman_id).unwrap();
    fixture
        .server
        .exchange()
        .population
        .merge_persons(&crate::harness::steward(), &from, &into, "one woman")
        .await
        .unwrap();
    let merged = app
        .set_consent(as_patient(open_everything(&other_id), &other_id))
        .await
        .unwrap_err();
    assert_eq!(merged.code(), Code::FailedPrecondition, "{merged:?}");
    assert!(merged.message().contains(&woman_id), "{}", merged.message());
}

async fn only_clinicians_of_care_giving_organisations_break_the_glass(db: TestDb) {
    use hie_proto::population::population_registry_client::PopulationRegistryClient;

    let fixture = fixture(db).await;
    woman_at_both_hospitals(&fixture).await;
    let reason = Some("unconscious");
    let insurer = channel_of(&fixture, "QDN-YB").await;
    let refused = PopulationRegistryClient::new(insurer)
        .resolve_identifier(with_context(
            local_number("QDN-H01", "MZ1"),
            "insurer",
            "emergency",
            reason,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let h01 = channel_of(&fixture, "QDN-H01").await;
    let mut h01 = PopulationRegistryClient::new(h01);
    let refused = h01
        .resolve_identifier(with_context(
            local_number("QDN-H01", "MZ1"),
            "registration_clerk",
            "emergency",
            reason,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    h01.resolve_identifier(with_context(
        local_number("QDN-H01", "MZ1"),
        "clinician",
        "emergency",
        reason,
    ))
    .await
    .unwrap();
}

async fn a_grant_to_a_practitioner_holds_only_for_their_organisation(db: TestDb) {
    use hie_core::domain::{BoundedText, OrganisationCode};
    use hie_directory::domain::{PractitionerDraft, PractitionerRole};
    use hie_proto::access::access_service_client::AccessServiceClient;
    use hie_proto::access::{ConsentDirectives, ConsentGrant, SetConsentRequest, Sharing};
    use hie_proto::population::population_registry_client::PopulationRegistryClient;

    let fixture = fixture(db).await;
    let woman_id = woman_at_both_hospitals(&fixture).await;
    let doctor = fixture
        .server
        .exchange()
        .directory
        .register_practitioner(
            &steward(),
            "grant-test",
            PractitionerDraft {
                name: BoundedText::parse_required("龙医生", 50).unwrap(),
                organisation_code: OrganisationCode::parse("QDN-H01").unwrap(),
                role: PractitionerRole::Physician,
                specialty: BoundedText::parse("", 100).unwrap(),
                active: true,
            },
        )
        .await
        .unwrap();
    let doctor_id = doctor.id.as_str().to_owned();
    let in_an_hour = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    let portal = channel_of(&fixture, "QDN-APP").await;
    let mut app = AccessServiceClient::new(portal);
    let grant_to = |practitioner: &str| SetConsentRequest {
        person_id: woman_id.clone(),
        directives: Some(ConsentDirectives {
            sharing: Sharing::Withhold.into(),
            grants: vec![ConsentGrant {
                organisation_code: String::new(),
                practitioner_id: practitioner.into(),
                expire_time: Some(in_an_hour.into()),
            }],
            ..Default::default()
        }),
    };
    let unknown = app
        .set_consent(as_patient(
            grant_to("pr-0190aaaa-0000-7000-8000-000000000000"),
            &woman_id,
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert!(
        unknown.message().contains("practitioner_id"),
        "{}",
        unknown.message()
    );
    let set = app
        .set_consent(as_patient(grant_to(&doctor_id), &woman_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(set.directives.unwrap().grants[0].organisation_code, "QDN-H01");

    // QDN-H02 naming the practitioner as its user: the grant does not hold there.
    let h02 = channel_of(&fixture, "QDN-H02").await;
    let refused = PopulationRegistryClient::new(h02)
        .resolve_identifier(as_user(
            local_number("QDN-H02", "ZY1"),
            &doctor_id,
            "clinician",
            "treatment",
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    // At QDN-H01 it holds for the practitioner, and for nobody else there.
    let h01 = channel_of(&fixture, "QDN-H01").await;
    let mut h01 = PopulationRegistryClient::new(h01);
    h01.resolve_identifier(as_user(
        local_number("QDN-H01", "MZ1"),
        &doctor_id,
        "clinician",
        "treatment",
    ))
    .await
    .unwrap();
    let refused = h01
        .resolve_identifier(as_user(
            local_number("QDN-H01", "MZ1"),
            "dr-else",
            "clinician",
            "treatment",
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
}

async fn a_page_token_of_any_bytes_is_invalid_argument_over_the_wire(db: TestDb) {
    use hie_proto::directory::ListOrganisationsRequest;
    use hie_proto::directory::directory_client::DirectoryClient;

    let fixture = fixture(db).await;
    let h01 = channel_of(&fixture, "QDN-H01").await;
    let mut directory = DirectoryClient::new(h01);
    for token in ["aéa", "é", "日本語", "zz", "0"] {
        let refused = directory
            .list_organisations(treating(ListOrganisationsRequest {
                page_size: 10,
                page_token: token.into(),
                ..Default::default()
            }))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{token}: {refused:?}");
        assert!(
            refused.message().starts_with("page_token"),
            "{}",
            refused.message()
        );
    }
    // The server is still serving.
    directory
        .list_organisations(treating(ListOrganisationsRequest {
            page_size: 10,
            ..Default::default()
        }))
        .await
        .unwrap();
}

/// Plaintext is a loopback development mode wherever the server is built, not only in the CLI.
#[tokio::test]
async fn the_server_builder_refuses_plaintext_beyond_loopback() {
    let db = TestDb::sqlite().await;
    let refused = db
        .exchange()
        .await
        .start_with("0.0.0.0:0".parse().unwrap(), None, false)
        .await
        .unwrap_err();
    let message = refused.to_string();
    assert!(
        matches!(refused, hie_core::Error::FailedPrecondition { .. }),
        "{message}"
    );
    assert!(message.contains("--insecure-plaintext-on-network"), "{message}");
    assert!(!message.contains("proxy in front"), "{message}");
}

async fn a_clerk_sets_consent_only_for_patients_of_their_organisation(db: TestDb) {
    use hie_proto::access::access_service_client::AccessServiceClient;
    use hie_proto::access::{ConsentDirectives, SetConsentRequest};

    let fixture = fixture(db).await;
    let h01 = channel_of(&fixture, "QDN-H01").await;
    let only_at_h01 = population_client(h01.clone())
        .register_source_record(request("", "MZ9", "龙金花", Some(&woman(9))))
        .await
        .unwrap()
        .into_inner()
        .person_id;
    let open_mental_health = || SetConsentRequest {
        person_id: only_at_h01.clone(),
        directives: Some(ConsentDirectives {
            consented_categories: vec!["mental_health".into()],
            ..Default::default()
        }),
    };
    let as_clerk = |message| with_context(message, "registration_clerk", "treatment", None);
    let refused = AccessServiceClient::new(channel_of(&fixture, "QDN-H02").await)
        .set_consent(as_clerk(open_mental_health()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let consent = fixture.server.exchange().access.consent();
    assert!(
        consent
            .directives(&only_at_h01)
            .await
            .unwrap()
            .consented_categories
            .is_empty()
    );
    AccessServiceClient::new(h01)
        .set_consent(as_clerk(open_mental_health()))
        .await
        .unwrap();
    assert_eq!(
        consent
            .directives(&only_at_h01)
            .await
            .unwrap()
            .consented_categories
            .len(),
        1
    );
}
