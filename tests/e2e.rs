//! End to end: the real server, booted through the same builder as `hie serve` on
//! 127.0.0.1:0 with a fresh database, called over TCP by tonic clients.

use hie_proto::population::{
    GetPersonRequest, Identifier, RegistrationOutcome, ResolveIdentifierRequest, SearchPersonsRequest,
};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::harness::{TestDb, on_every_backend, register_organisations, request, woman};

on_every_backend!(
    each_hospitals_number_resolves_to_the_others_over_the_network,
    health_and_reflection_answer_for_every_service,
    a_subset_of_services_is_served_alone_and_an_unknown_name_is_refused,
    only_an_administrator_changes_the_directory_and_every_change_is_audited,
);

async fn only_an_administrator_changes_the_directory_and_every_change_is_audited(db: TestDb) {
    use hie_proto::directory::directory_client::DirectoryClient;
    use hie_proto::directory::{GetOrganisationRequest, Organisation, RegisterOrganisationRequest};

    let server = db.server().await;
    let organisation = || Organisation {
        code: "QDN-C07".into(),
        name: "凯里市社区卫生服务中心".into(),
        kind: hie_proto::directory::OrganisationKind::CommunityHealthCentre as i32,
        division_code: "522601".into(),
        active: true,
        ..Default::default()
    };
    let register = || RegisterOrganisationRequest {
        organisation: Some(organisation()),
    };

    // No context at all: the caller is told which header is missing.
    let mut bare = DirectoryClient::new(server.channel.clone());
    let status = bare.register_organisation(register()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("x-hie-"), "{}", status.message());
    let status = bare
        .get_organisation(GetOrganisationRequest {
            code: "QDN-C07".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    // A clinician may read the directory, not change it; the refusal is audited.
    let mut clinician = DirectoryClient::with_interceptor(
        server.channel.clone(),
        crate::harness::clinician_treating as crate::harness::ContextInterceptor,
    );
    let status = clinician.register_organisation(register()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("administrator"), "{}", status.message());

    server
        .directory()
        .register_organisation(register())
        .await
        .unwrap();
    let read = clinician
        .get_organisation(GetOrganisationRequest {
            code: "QDN-C07".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.organisation.unwrap().code, "QDN-C07");

    let events = server
        .exchange()
        .access
        .audit()
        .events(&Default::default(), hie_access::store::AuditPosition::START, 10)
        .await
        .unwrap();
    let outcomes: Vec<(&str, &str, Option<&str>)> = events
        .iter()
        .rev()
        .map(|(_, e)| (e.action.as_str(), e.outcome.code(), e.resource_id.as_deref()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("directory.register_organisation", "denied", Some("QDN-C07")),
            ("directory.register_organisation", "permitted", Some("QDN-C07")),
        ]
    );
}

async fn each_hospitals_number_resolves_to_the_others_over_the_network(db: TestDb) {
    let server = db.server().await;
    register_organisations(server.exchange()).await;
    let mut population = server.population();

    let at_h01 = population
        .register_source_record(request("QDN-H01", "MZ0001", "吴阿妹", Some(&woman(5))))
        .await
        .unwrap()
        .into_inner();
    let at_h02 = population
        .register_source_record(request("QDN-H02", "ZY-9", "吴阿妹", Some(&woman(5))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(at_h01.outcome(), RegistrationOutcome::CreatedPerson);
    assert_eq!(at_h02.outcome(), RegistrationOutcome::JoinedPerson);
    assert_eq!(at_h01.person_id, at_h02.person_id);

    for (asked, expected_other) in [
        (("QDN-H01", "MZ0001"), ("QDN-H02", "ZY-9")),
        (("QDN-H02", "ZY-9"), ("QDN-H01", "MZ0001")),
    ] {
        let identifier = Identifier {
            system: format!("urn:hie:org:{}:patient", asked.0),
            value: asked.1.into(),
        };
        let resolved = population
            .resolve_identifier(ResolveIdentifierRequest {
                identifier: Some(identifier),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resolved.person_id, at_h01.person_id);
        let other_system = format!("urn:hie:org:{}:patient", expected_other.0);
        let other = resolved
            .cross_references
            .iter()
            .find(|r| r.identifier.as_ref().is_some_and(|i| i.system == other_system))
            .expect("the other hospital's number is cross-referenced");
        assert_eq!(other.identifier.as_ref().unwrap().value, expected_other.1);
        assert_eq!(other.organisation_code, expected_other.0);
    }

    let person = population
        .get_person(GetPersonRequest {
            person_id: at_h01.person_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(person.source_records.len(), 2);
    assert_eq!(person.person.unwrap().demographics.unwrap().name, "吴阿妹");

    let found = population
        .search_persons(SearchPersonsRequest {
            name: "吴*".into(),
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.persons.len(), 1);
    assert!(found.next_page_token.is_empty());
    server.server.stop().await.unwrap();
}

async fn health_and_reflection_answer_for_every_service(db: TestDb) {
    let server = db.server().await;
    let mut health = HealthClient::new(server.channel.clone());
    for service in [
        "",
        "hie.population.v1.PopulationRegistry",
        "hie.directory.v1.Directory",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(status.status(), ServingStatus::Serving, "{service}");
    }

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(server.channel.clone());
    let asked = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([asked]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("reflection did not list services");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "hie.population.v1.PopulationRegistry",
        "hie.directory.v1.Directory",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
}

async fn a_subset_of_services_is_served_alone_and_an_unknown_name_is_refused(db: TestDb) {
    use hie_proto::access::GetConsentRequest;
    use hie_proto::access::access_service_client::AccessServiceClient;

    let mut settings = db.settings();
    settings.services = vec!["nosuchservice".into()];
    let refused = hie_server::Exchange::open(&settings).await.unwrap_err();
    assert!(
        matches!(&refused, hie_core::Error::InvalidArgument { field, .. } if field == "services"),
        "{refused:?}"
    );
    assert!(
        refused.to_string().contains("population, directory, access"),
        "{refused}"
    );

    settings.services = vec!["population".into()];
    let exchange = hie_server::Exchange::open(&settings).await.unwrap();
    // The names refused before anything opens are those of the modules the server mounts.
    let mounted: Vec<&str> = exchange.modules().iter().map(|module| module.name).collect();
    assert_eq!(mounted, hie_server::app::SERVICE_NAMES);
    drop(exchange);
    let server = hie_server::Exchange::open(&settings)
        .await
        .unwrap()
        .start(settings.listen)
        .await
        .unwrap();
    let channel = tonic::transport::Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    let population = health
        .check(HealthCheckRequest {
            service: "hie.population.v1.PopulationRegistry".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(population.status(), ServingStatus::Serving);
    let directory = health
        .check(HealthCheckRequest {
            service: "hie.directory.v1.Directory".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(directory.code(), tonic::Code::NotFound, "{directory:?}");
    let access = AccessServiceClient::new(channel)
        .get_consent(GetConsentRequest::default())
        .await
        .unwrap_err();
    assert_eq!(access.code(), tonic::Code::Unimplemented, "{access:?}");
    server.stop().await.unwrap();
}
