//! Bad input over the network: each case answers the right code with a field violation naming
//! the field, and writes nothing.

use hie_proto::directory::{ListOrganisationsRequest, Organisation, RegisterOrganisationRequest};
use hie_proto::population::{Identifier, RegisterSourceRecordRequest, SearchPersonsRequest};
use tonic::Code;
use tonic_types::StatusExt;

use crate::harness::{
    TestDb, TestServer, count, on_every_backend, register_organisations, request, resident_id, woman,
};

on_every_backend!(
    a_wrong_check_character_names_the_identifier,
    a_birth_date_in_the_future_or_on_the_31st_of_february_is_refused,
    a_sex_digit_contradicting_the_stated_sex_is_refused,
    an_unknown_or_inactive_organisation_is_a_failed_precondition,
    an_empty_or_over_long_name_is_refused,
    over_long_or_control_character_fields_are_refused,
    a_duplicate_organisation_code_already_exists,
    an_identifier_with_an_unknown_system_is_refused,
    a_page_size_of_zero_or_a_million_is_refused,
    a_search_without_criteria_is_refused,
    link_decisions_refuse_nonsense_over_the_wire,
);

/// Checks the status code and the field the status names (in its message and in its details).
fn assert_refused(status: &tonic::Status, code: Code, field: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().starts_with(&format!("{field}: ")),
        "message {:?} should name {field}",
        status.message()
    );
    let details = status.get_error_details();
    let named = match code {
        Code::InvalidArgument => details
            .bad_request()
            .map(|b| b.field_violations.iter().any(|v| v.field == field)),
        Code::FailedPrecondition => details
            .precondition_failure()
            .map(|p| p.violations.iter().any(|v| v.subject == field)),
        _ => Some(true),
    };
    assert_eq!(named, Some(true), "the details should name {field}: {details:?}");
}

async fn started(db: &TestDb) -> TestServer {
    let server = db.server().await;
    register_organisations(server.exchange()).await;
    server
}

/// Registers `request`, expects a refusal naming `field`, and checks that nothing was written.
async fn refused(server: &TestServer, request: RegisterSourceRecordRequest, code: Code, field: &str) {
    let status = server
        .population()
        .register_source_record(request)
        .await
        .unwrap_err();
    assert_refused(&status, code, field);
    assert_eq!(count(server.exchange(), "source_records").await, 0);
    assert_eq!(count(server.exchange(), "persons").await, 0);
    assert_eq!(count(server.exchange(), "person_identifiers").await, 0);
}

async fn a_wrong_check_character_names_the_identifier(db: TestDb) {
    let server = started(&db).await;
    let good = woman(1);
    let wrong = format!("{}{}", &good[..17], if good.ends_with('0') { '1' } else { '0' });
    let status = server
        .population()
        .register_source_record(request("QDN-H01", "MZ1", "吴阿妹", Some(&wrong)))
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "identifiers[0].value");
    assert!(
        status.message().contains("check character"),
        "{}",
        status.message()
    );
    assert_eq!(count(server.exchange(), "source_records").await, 0);
}

async fn a_birth_date_in_the_future_or_on_the_31st_of_february_is_refused(db: TestDb) {
    let server = started(&db).await;
    for date in ["2999-01-01", "1985-02-31"] {
        let mut r = request("QDN-H01", "MZ1", "吴阿妹", None);
        r.demographics.as_mut().unwrap().birth_date = date.into();
        refused(&server, r, Code::InvalidArgument, "demographics.birth_date").await;
    }
    // The same, embedded in the identity number.
    let future = resident_id("52260129990101002");
    refused(
        &server,
        request("QDN-H01", "MZ1", "吴阿妹", Some(&future)),
        Code::InvalidArgument,
        "identifiers[0].value",
    )
    .await;
}

async fn a_sex_digit_contradicting_the_stated_sex_is_refused(db: TestDb) {
    let server = started(&db).await;
    let man = resident_id("52260119850314001");
    refused(
        &server,
        request("QDN-H01", "MZ1", "吴阿妹", Some(&man)),
        Code::InvalidArgument,
        "identifiers[0].value",
    )
    .await;
}

async fn an_unknown_or_inactive_organisation_is_a_failed_precondition(db: TestDb) {
    let server = started(&db).await;
    for organisation in ["QDN-NOPE", "QDN-H09"] {
        refused(
            &server,
            request(organisation, "MZ1", "吴阿妹", Some(&woman(1))),
            Code::FailedPrecondition,
            "organisation_code",
        )
        .await;
    }
}

async fn an_empty_or_over_long_name_is_refused(db: TestDb) {
    let server = started(&db).await;
    for name in ["", "   ", &"吴".repeat(51)] {
        refused(
            &server,
            request("QDN-H01", "MZ1", name, None),
            Code::InvalidArgument,
            "demographics.name",
        )
        .await;
    }
}

async fn over_long_or_control_character_fields_are_refused(db: TestDb) {
    let server = started(&db).await;
    let mut long_address = request("QDN-H01", "MZ1", "吴阿妹", None);
    long_address
        .demographics
        .as_mut()
        .unwrap()
        .address
        .as_mut()
        .unwrap()
        .line = "村".repeat(201);
    refused(
        &server,
        long_address,
        Code::InvalidArgument,
        "demographics.address.line",
    )
    .await;

    let mut control = request("QDN-H01", "MZ1", "吴阿妹", None);
    control
        .demographics
        .as_mut()
        .unwrap()
        .address
        .as_mut()
        .unwrap()
        .line = "炉山镇\u{1b}[2J".into();
    refused(
        &server,
        control,
        Code::InvalidArgument,
        "demographics.address.line",
    )
    .await;

    refused(
        &server,
        request("QDN-H01", "MZ1", "吴\u{7}阿妹", None),
        Code::InvalidArgument,
        "demographics.name",
    )
    .await;
    refused(
        &server,
        request("QDN-H01", &"9".repeat(41), "吴阿妹", None),
        Code::InvalidArgument,
        "local_patient_number",
    )
    .await;
    refused(
        &server,
        request("QDN-H01", "MZ\n1", "吴阿妹", None),
        Code::InvalidArgument,
        "local_patient_number",
    )
    .await;
}

async fn a_duplicate_organisation_code_already_exists(db: TestDb) {
    let server = started(&db).await;
    let organisation = Organisation {
        code: "QDN-H01".into(),
        name: "另一家医院".into(),
        kind: hie_proto::directory::OrganisationKind::Insurer.into(),
        division_code: "522631".into(),
        active: true,
        ..Default::default()
    };
    let status = server
        .directory()
        .register_organisation(RegisterOrganisationRequest {
            organisation: Some(organisation),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(status.message().contains("QDN-H01"));
    assert_eq!(count(server.exchange(), "organisations").await, 4);
}

async fn an_identifier_with_an_unknown_system_is_refused(db: TestDb) {
    let server = started(&db).await;
    let mut r = request("QDN-H01", "MZ1", "吴阿妹", None);
    r.identifiers.push(Identifier {
        system: "urn:oid:2.16.156.10011.1.1".into(),
        value: "X".into(),
    });
    refused(&server, r, Code::InvalidArgument, "identifiers[0].system").await;
}

async fn a_page_size_of_zero_or_a_million_is_refused(db: TestDb) {
    let server = started(&db).await;
    for page_size in [0, 1_000_000] {
        let search = SearchPersonsRequest {
            name: "吴*".into(),
            page_size,
            ..Default::default()
        };
        let status = server.population().search_persons(search).await.unwrap_err();
        assert_refused(&status, Code::InvalidArgument, "page_size");
        let list = ListOrganisationsRequest {
            page_size,
            ..Default::default()
        };
        let status = server.directory().list_organisations(list).await.unwrap_err();
        assert_refused(&status, Code::InvalidArgument, "page_size");
    }
}

async fn a_search_without_criteria_is_refused(db: TestDb) {
    let server = started(&db).await;
    let status = server
        .population()
        .search_persons(SearchPersonsRequest {
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_call_without_its_request_context_names_the_missing_metadata() {
    let db = TestDb::sqlite().await;
    let server = started(&db).await;
    let mut bare = hie_proto::population::population_registry_client::PopulationRegistryClient::new(
        server.channel.clone(),
    );
    let status = bare
        .register_source_record(request("QDN-H01", "MZ1", "吴阿妹", None))
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "x-hie-user");

    let mut unknown_purpose = tonic::Request::new(request("QDN-H01", "MZ1", "吴阿妹", None));
    unknown_purpose
        .metadata_mut()
        .insert("x-hie-user", "dr-wu".parse().unwrap());
    unknown_purpose
        .metadata_mut()
        .insert("x-hie-role", "clinician".parse().unwrap());
    unknown_purpose
        .metadata_mut()
        .insert("x-hie-purpose", "curiosity".parse().unwrap());
    let status = bare.register_source_record(unknown_purpose).await.unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "x-hie-purpose");
    assert_eq!(count(server.exchange(), "source_records").await, 0);
}

async fn link_decisions_refuse_nonsense_over_the_wire(db: TestDb) {
    use hie_proto::population::{
        DecideMatchReviewRequest, ListMatchReviewsRequest, MergePersonsRequest, UnmergePersonsRequest,
    };
    let server = started(&db).await;
    let registered = server
        .population()
        .register_source_record(request("QDN-H01", "MZ001", "吴阿妹", Some(&woman(1))))
        .await
        .unwrap()
        .into_inner();
    let steward = server.population_as_steward();

    let clinician = server
        .population()
        .list_match_reviews(ListMatchReviewsRequest {
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(clinician.code(), Code::PermissionDenied, "{clinician:?}");
    let listed = steward
        .clone()
        .list_match_reviews(ListMatchReviewsRequest {
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(listed.into_inner().reviews.is_empty());

    let itself = steward
        .clone()
        .merge_persons(MergePersonsRequest {
            from_person_id: registered.person_id.clone(),
            into_person_id: registered.person_id.clone(),
            reason: "duplicate".into(),
        })
        .await
        .unwrap_err();
    assert_refused(&itself, Code::InvalidArgument, "into_person_id");
    let never = steward
        .clone()
        .unmerge_persons(UnmergePersonsRequest {
            merge_id: "0190a0a0-0000-7000-8000-000000000000".into(),
            reason: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(never.code(), Code::NotFound, "{never:?}");
    let undecided = steward
        .clone()
        .decide_match_review(DecideMatchReviewRequest {
            review_id: "r1".into(),
            decision: 0,
            reason: "x".into(),
        })
        .await
        .unwrap_err();
    assert_refused(&undecided, Code::InvalidArgument, "decision");
    let no_reason = steward
        .clone()
        .decide_match_review(DecideMatchReviewRequest {
            review_id: "r1".into(),
            decision: 2,
            reason: "".into(),
        })
        .await
        .unwrap_err();
    assert_refused(&no_reason, Code::InvalidArgument, "reason");
    assert_eq!(count(server.exchange(), "person_merges").await, 0);
}
