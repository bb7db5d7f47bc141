//! Events and telemedicine end to end, over mutual TLS with tonic clients: what each kind of
//! organisation hears, resuming from a cursor, a restart, the NATS relay (against the real NATS
//! server), and a consult's time-boxed grant.

use std::time::Duration;

use hie_directory::domain::OrganisationKind;
use hie_proto::access::access_service_client::AccessServiceClient;
use hie_proto::access::{ConsentDirectives, PatientAccessLogRequest, SetConsentRequest};
use hie_proto::emr::emr_registry_client::EmrRegistryClient;
use hie_proto::emr::{Encounter, EncounterKind, FindDocumentsRequest, RegisterEncounterRequest};
use hie_proto::events::event_service_client::EventServiceClient;
use hie_proto::events::subscribe_response::Delivery;
use hie_proto::events::{
    AcknowledgeRequest, CreateSubscriptionRequest, DeliveryChannel, Event, EventFilter, SubscribeRequest,
};
use hie_proto::population::Identifier;
use hie_proto::records::{PersonSelector, person_selector};
use hie_proto::telemedicine::telemedicine_client::TelemedicineClient;
use hie_proto::telemedicine::{
    AcceptConsultRequest, CancelConsultRequest, CompleteConsultRequest, GetConsultRecordsRequest,
    GetConsultRequest, PutServiceItemRequest, RequestConsultRequest, ServiceItem,
};
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::{TestDb, on_every_backend, population_client, request, woman};
use crate::trust::{Fixture, as_patient, as_user, channel_of, fixture, fixture_configured};

on_every_backend!(
    a_public_health_agency_hears_a_notifiable_diagnosis_and_not_a_mental_health_note,
    a_subscriber_resuming_from_its_cursor_misses_nothing_and_bad_cursors_are_refused,
    a_restart_of_the_exchange_loses_no_undelivered_event,
    events_are_relayed_to_nats_jetstream,
    a_consultant_reads_the_records_during_the_grant_and_is_refused_after_it_expires,
);

type Events = EventServiceClient<Channel>;

fn as_officer<T>(message: T) -> tonic::Request<T> {
    as_user(message, "officer-yang", "public_health_officer", "public_health")
}

fn as_clinician<T>(message: T, user: &str) -> tonic::Request<T> {
    as_user(message, user, "clinician", "treatment")
}

fn as_administrator<T>(message: T) -> tonic::Request<T> {
    as_user(message, "steward-li", "administrator", "operations")
}

fn local(organisation: &str, number: &str) -> Identifier {
    Identifier {
        system: format!("urn:hie:org:{organisation}:patient"),
        value: number.into(),
    }
}

/// A visit at QDN-H01 for its patient `number`, with these diagnoses.
fn encounter(number: &str, visit: &str, diagnoses: &[&str]) -> RegisterEncounterRequest {
    RegisterEncounterRequest {
        organisation_code: String::new(),
        person: Some(PersonSelector {
            selector: Some(person_selector::Selector::Identifier(local("QDN-H01", number))),
        }),
        encounter: Some(Encounter {
            visit_number: visit.into(),
            kind: EncounterKind::Outpatient as i32,
            department: "感染科".into(),
            attending_practitioner: "dr-wu".into(),
            diagnoses: diagnoses.iter().map(|d| (*d).to_owned()).collect(),
            started_at: Some(prost_types::Timestamp {
                seconds: 1_780_000_000,
                nanos: 0,
            }),
            ..Default::default()
        }),
    }
}

/// Registers a visit at QDN-H01 for its patient `number`, with these diagnoses.
async fn visit(fixture: &Fixture, number: &str, visit: &str, diagnoses: &[&str]) {
    let mut emr = EmrRegistryClient::new(channel_of(fixture, "QDN-H01").await);
    emr.register_encounter(as_clinician(encounter(number, visit, diagnoses), "dr-wu"))
        .await
        .unwrap();
}

/// Registers a patient at QDN-H01 under `number`; their person id.
async fn patient_at_h01(fixture: &Fixture, number: &str, n: u32) -> String {
    population_client(channel_of(fixture, "QDN-H01").await)
        .register_source_record(request("", number, "吴阿妹", Some(&woman(n))))
        .await
        .unwrap()
        .into_inner()
        .person_id
}

/// The call was refused with `code`, and its message says `mentions`.
fn assert_refused(status: &tonic::Status, code: Code, mentions: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(mentions), "{}", status.message());
}

/// The mutual-TLS fixture with a public-health agency, QDN-CDC, and its events client.
async fn with_agency(db: TestDb) -> (Fixture, Events) {
    let fixture = fixture(db).await;
    fixture
        .add_organisation("QDN-CDC", OrganisationKind::PublicHealthAgency)
        .await;
    let events = EventServiceClient::new(channel_of(&fixture, "QDN-CDC").await);
    (fixture, events)
}

/// The person opts out of sharing, through the patient portal.
async fn opt_out(fixture: &Fixture, person: &str) {
    AccessServiceClient::new(channel_of(fixture, "QDN-APP").await)
        .set_consent(as_patient(
            SetConsentRequest {
                person_id: person.into(),
                directives: Some(ConsentDirectives {
                    sharing: hie_proto::access::Sharing::Withhold as i32,
                    ..Default::default()
                }),
            },
            person,
        ))
        .await
        .unwrap();
}

async fn subscribe_as(
    events: &mut Events,
    filter: EventFilter,
    channel: DeliveryChannel,
    officer: bool,
) -> String {
    let message = CreateSubscriptionRequest {
        filter: Some(filter),
        channel: channel as i32,
    };
    let request = if officer {
        as_officer(message)
    } else {
        as_administrator(message)
    };
    events
        .create_subscription(request)
        .await
        .unwrap()
        .into_inner()
        .subscription
        .unwrap()
        .subscription_id
}

/// Reads the stream until `wanted` events arrived (heartbeats skipped), or fails after 20 s.
async fn next_events(
    stream: &mut tonic::Streaming<hie_proto::events::SubscribeResponse>,
    wanted: usize,
) -> Vec<Event> {
    let mut events = Vec::new();
    while events.len() < wanted {
        let message = tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .expect("an event within 20 s")
            .unwrap()
            .expect("the stream stays open");
        if let Some(Delivery::Event(event)) = message.delivery {
            events.push(event);
        }
    }
    events
}

/// Whether anything but heartbeats arrives within `wait`.
async fn nothing_more(
    stream: &mut tonic::Streaming<hie_proto::events::SubscribeResponse>,
    wait: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Err(_) => return true,
            Ok(Ok(Some(message))) => {
                if let Some(Delivery::Event(event)) = message.delivery {
                    panic!("an unexpected event: {} {}", event.event_type, event.payload_json);
                }
            }
            Ok(other) => panic!("the stream ended: {other:?}"),
        }
    }
}

fn stream_request(subscription: &str, cursor: &str) -> tonic::Request<SubscribeRequest> {
    as_officer(SubscribeRequest {
        subscription_id: subscription.into(),
        cursor: cursor.into(),
    })
}

async fn deliveries_audited(fixture: &Fixture, person: &str, outcome: &str) -> i64 {
    // Audit events are chained behind the answer: wait for the trail to commit them.
    fixture.server.exchange().access.audit().flush().await.unwrap();
    let (count,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM audit_events WHERE action = 'events.deliver' AND person_id = $1 AND outcome = $2",
    )
    .bind(person.to_owned())
    .bind(outcome.to_owned())
    .fetch_one(fixture.server.exchange().database.pool())
    .await
    .unwrap();
    count
}

async fn a_public_health_agency_hears_a_notifiable_diagnosis_and_not_a_mental_health_note(db: TestDb) {
    let (fixture, mut events) = with_agency(db).await;
    // A kind is held to what it is entitled to: the agency may not hear of lost cards.
    let refused = events
        .create_subscription(as_officer(CreateSubscriptionRequest {
            filter: Some(EventFilter {
                event_types: vec!["cards.card.lost".into()],
                ..Default::default()
            }),
            channel: 0,
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let malformed = events
        .create_subscription(as_officer(CreateSubscriptionRequest {
            filter: Some(EventFilter {
                icd10_prefixes: vec!["A00".into(), "cholera".into()],
                ..Default::default()
            }),
            channel: 0,
        }))
        .await
        .unwrap_err();
    assert_refused(&malformed, Code::InvalidArgument, "filter.icd10_prefixes[1]");

    let subscription = subscribe_as(&mut events, EventFilter::default(), DeliveryChannel::Stream, true).await;
    let person = patient_at_h01(&fixture, "MZ-1", 1).await;
    let opted_out = patient_at_h01(&fixture, "MZ-2", 2).await;
    visit(&fixture, "MZ-1", "V-depression", &["F32.1"]).await;
    visit(&fixture, "MZ-1", "V-hypertension", &["I10"]).await;
    visit(&fixture, "MZ-2", "V-cholera-opted-out", &["A00.1"]).await;
    visit(&fixture, "MZ-1", "V-cholera-and-depression", &["A00.1", "F32.1"]).await;
    visit(&fixture, "MZ-1", "V-cholera", &["A00.1"]).await;
    visit(&fixture, "MZ-1", "V-flu", &["J10.1"]).await;
    // She opts out after her visit was logged and before it is delivered: consent is decided at
    // delivery.
    opt_out(&fixture, &opted_out).await;
    let mut stream = events
        .subscribe(stream_request(&subscription, ""))
        .await
        .unwrap()
        .into_inner();
    let heard = next_events(&mut stream, 2).await;
    let visits: Vec<String> = heard
        .iter()
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.payload_json).unwrap()["visit_number"].to_string()
        })
        .collect();
    // Cholera and flu (notifiable): nothing about depression (a mental-health note is not
    // notifiable), nothing of the opted-out patient, and not the visit whose diagnoses also
    // reveal mental health, which she has not consented to share.
    assert_eq!(visits, vec!["\"V-cholera\"", "\"V-flu\""], "{heard:?}");
    assert!(nothing_more(&mut stream, Duration::from_millis(1500)).await);
    assert_eq!(heard[0].person_id, person);
    assert!(heard[0].position > 0 && heard[0].cursor.ends_with(&format!("@{}", heard[0].position)));
    // Each decision is audited: her two deliveries, and for the withheld visit her data
    // permitted but its mental-health category denied; the opted-out patient's refusal.
    assert_eq!(deliveries_audited(&fixture, &person, "permitted").await, 3);
    assert_eq!(deliveries_audited(&fixture, &person, "denied").await, 1);
    assert_eq!(deliveries_audited(&fixture, &opted_out, "permitted").await, 0);
    assert_eq!(deliveries_audited(&fixture, &opted_out, "denied").await, 1);
    fixture.server.stop().await.unwrap();
}

async fn a_subscriber_resuming_from_its_cursor_misses_nothing_and_bad_cursors_are_refused(db: TestDb) {
    let (fixture, mut events) = with_agency(db).await;
    let filter = EventFilter {
        icd10_prefixes: vec!["A0".into()],
        ..Default::default()
    };
    let subscription = subscribe_as(&mut events, filter.clone(), DeliveryChannel::Stream, true).await;
    let other = subscribe_as(&mut events, filter, DeliveryChannel::Stream, true).await;
    patient_at_h01(&fixture, "MZ-1", 1).await;
    // Visits are written while the subscriber reads, disconnects and comes back.
    let writer = {
        let channel = channel_of(&fixture, "QDN-H01").await;
        tokio::spawn(async move {
            let mut emr = EmrRegistryClient::new(channel);
            for i in 0..30 {
                let request = encounter("MZ-1", &format!("V-{i:02}"), &["A09"]);
                emr.register_encounter(as_clinician(request, "dr-wu"))
                    .await
                    .unwrap();
            }
        })
    };
    let mut stream = events
        .subscribe(stream_request(&subscription, ""))
        .await
        .unwrap()
        .into_inner();
    let first = next_events(&mut stream, 10).await;
    let acknowledged = first[9].cursor.clone();
    events
        .acknowledge(as_officer(AcknowledgeRequest {
            subscription_id: subscription.clone(),
            cursor: acknowledged.clone(),
        }))
        .await
        .unwrap();
    drop(stream);
    // A cursor of another subscription, or from the future, is refused.
    let foreign = events
        .subscribe(stream_request(&other, &acknowledged))
        .await
        .unwrap_err();
    assert_refused(&foreign, Code::InvalidArgument, "another subscription");
    let future = format!("{subscription}@{}", first[9].position + 1_000_000);
    let refused = events
        .subscribe(stream_request(&subscription, &future))
        .await
        .unwrap_err();
    assert_refused(&refused, Code::InvalidArgument, "future");
    let refused = events
        .acknowledge(as_officer(AcknowledgeRequest {
            subscription_id: subscription.clone(),
            cursor: future,
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    // Another organisation does not see the subscription at all.
    let mut h02 = EventServiceClient::new(channel_of(&fixture, "QDN-H02").await);
    let hidden = h02
        .subscribe(as_clinician(
            SubscribeRequest {
                subscription_id: subscription.clone(),
                cursor: String::new(),
            },
            "dr-wu",
        ))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);

    writer.await.unwrap();
    // Resuming after the acknowledged cursor: the other twenty, in order, none twice.
    let mut resumed = events
        .subscribe(stream_request(&subscription, ""))
        .await
        .unwrap()
        .into_inner();
    let rest = next_events(&mut resumed, 20).await;
    assert!(nothing_more(&mut resumed, Duration::from_millis(1500)).await);
    let all: Vec<Event> = first.into_iter().chain(rest).collect();
    let mut visits: Vec<String> = all
        .iter()
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.payload_json).unwrap()["visit_number"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        all.windows(2).all(|w| w[0].position < w[1].position),
        "positions increase"
    );
    visits.sort();
    visits.dedup();
    assert_eq!(visits.len(), 30, "every visit exactly once: {visits:?}");
    fixture.server.stop().await.unwrap();
}

async fn a_restart_of_the_exchange_loses_no_undelivered_event(db: TestDb) {
    let (fixture, mut events) = with_agency(db).await;
    let subscription = subscribe_as(&mut events, EventFilter::default(), DeliveryChannel::Stream, true).await;
    patient_at_h01(&fixture, "MZ-1", 1).await;
    for i in 0..5 {
        visit(&fixture, "MZ-1", &format!("V-{i}"), &["B05.9"]).await;
    }
    // Stopped before anyone subscribed: the five wait in the log.
    let fixture = fixture.restart(|_| {}).await;
    let mut events = EventServiceClient::new(channel_of(&fixture, "QDN-CDC").await);
    let mut stream = events
        .subscribe(stream_request(&subscription, ""))
        .await
        .unwrap()
        .into_inner();
    let heard = next_events(&mut stream, 5).await;
    assert!(nothing_more(&mut stream, Duration::from_millis(1000)).await);
    assert_eq!(heard.len(), 5);
    fixture.server.stop().await.unwrap();
}

/// The NATS server of the tests: `HIE_TEST_NATS_URL`, by default the local one. `None` when it
/// is unreachable outside CI; under `CI=true` that is a failure.
async fn nats_url() -> Option<String> {
    let url = std::env::var("HIE_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    match async_nats::connect(url.as_str()).await {
        Ok(_) => Some(url),
        Err(error) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("NATS at {url} is unreachable under CI=true: {error}")
        }
        Err(error) => {
            eprintln!("skipped: NATS at {url} is unreachable ({error})");
            None
        }
    }
}

async fn events_are_relayed_to_nats_jetstream(db: TestDb) {
    use futures_util::StreamExt;
    let Some(url) = nats_url().await else { return };
    let relay_to = url.clone();
    let fixture = fixture_configured(db, "127.0.0.1:0".parse().unwrap(), move |exchange, _| {
        exchange.events = exchange.events.clone().with_nats();
        exchange.events_nats = Some(relay_to);
    })
    .await;
    let mut events = EventServiceClient::new(channel_of(&fixture, "QDN-WJW").await);
    let created = events
        .create_subscription(as_administrator(CreateSubscriptionRequest {
            filter: Some(EventFilter {
                event_types: vec!["emr.encounter.registered".into()],
                ..Default::default()
            }),
            channel: DeliveryChannel::Nats as i32,
        }))
        .await
        .unwrap()
        .into_inner()
        .subscription
        .unwrap();
    assert!(
        created.nats_subject.starts_with("hie.events.QDN-WJW.sub-"),
        "{}",
        created.nats_subject
    );
    patient_at_h01(&fixture, "MZ-1", 1).await;
    for i in 0..3 {
        visit(&fixture, "MZ-1", &format!("V-{i}"), &["I10"]).await;
    }
    let client = async_nats::connect(url.as_str()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let stream = jetstream.get_stream(hie_events::nats::STREAM_NAME).await.unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            filter_subject: created.nats_subject.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut visits = Vec::new();
    while visits.len() < 3 {
        let message = tokio::time::timeout(Duration::from_secs(20), messages.next())
            .await
            .expect("a message within 20 s")
            .unwrap()
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(body["event_type"], "emr.encounter.registered");
        visits.push(body["payload"]["visit_number"].as_str().unwrap().to_owned());
        message.ack().await.unwrap();
    }
    assert_eq!(visits, vec!["V-0", "V-1", "V-2"]);
    // The exchange records the relay's progress: a restart resumes after it.
    let mut acknowledged = String::new();
    for _ in 0..50 {
        acknowledged = events
            .get_subscription(as_administrator(hie_proto::events::GetSubscriptionRequest {
                subscription_id: created.subscription_id.clone(),
            }))
            .await
            .unwrap()
            .into_inner()
            .subscription
            .unwrap()
            .acknowledged_cursor;
        if acknowledged != created.acknowledged_cursor {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(
        acknowledged, created.acknowledged_cursor,
        "the relay acknowledged what JetStream stored"
    );
    fixture.server.stop().await.unwrap();
}

fn item(code: &str, from: i64, until: Option<i64>) -> PutServiceItemRequest {
    PutServiceItemRequest {
        item: Some(ServiceItem {
            code: code.into(),
            name: "远程会诊（单学科）".into(),
            price_fen: 20_000,
            reimbursable: true,
            reimbursable_ratio_permille: 700,
            active_from: Some(prost_types::Timestamp {
                seconds: from,
                nanos: 0,
            }),
            active_until: until.map(|seconds| prost_types::Timestamp { seconds, nanos: 0 }),
        }),
    }
}

fn consult_request(item: &str) -> RequestConsultRequest {
    RequestConsultRequest {
        patient: Some(local("QDN-T01", "T-1")),
        consulting_organisation_code: "QDN-H01".into(),
        specialty: "心内科".into(),
        reason: "胸痛待查，请上级医院会诊".into(),
        service_item_code: item.into(),
        attachment_unique_ids: Vec::new(),
    }
}

async fn a_consultant_reads_the_records_during_the_grant_and_is_refused_after_it_expires(db: TestDb) {
    let fixture = fixture(db).await;
    fixture
        .add_organisation("QDN-T01", OrganisationKind::TownshipHealthCentre)
        .await;
    let mut authority = TelemedicineClient::new(channel_of(&fixture, "QDN-WJW").await);
    let mut clinic = TelemedicineClient::new(channel_of(&fixture, "QDN-T01").await);
    let mut hospital = TelemedicineClient::new(channel_of(&fixture, "QDN-H01").await);
    // Only the authority keeps the price list; a hospital cannot.
    let refused = hospital
        .put_service_item(as_clinician(item("TM-001", 1_700_000_000, None), "dr-li"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    authority
        .put_service_item(as_administrator(item("TM-001", 1_700_000_000, None)))
        .await
        .unwrap();
    authority
        .put_service_item(as_administrator(item(
            "TM-OLD",
            1_600_000_000,
            Some(1_700_000_000),
        )))
        .await
        .unwrap();
    let bad = authority
        .put_service_item(as_administrator(item("TM 002", 1_700_000_000, None)))
        .await
        .unwrap_err();
    assert_refused(&bad, Code::InvalidArgument, "item.code");

    let person = population_client(channel_of(&fixture, "QDN-T01").await)
        .register_source_record(request("", "T-1", "吴阿妹", Some(&woman(7))))
        .await
        .unwrap()
        .into_inner()
        .person_id;
    // A hospital that keeps no record of her cannot ask for her records to be opened.
    let stranger = TelemedicineClient::new(channel_of(&fixture, "QDN-H02").await)
        .request_consult(as_clinician(consult_request("TM-001"), "dr-x"))
        .await
        .unwrap_err();
    assert_eq!(stranger.code(), Code::PermissionDenied, "{stranger:?}");
    let inactive = clinic
        .request_consult(as_clinician(consult_request("TM-OLD"), "dr-zhao"))
        .await
        .unwrap_err();
    assert_refused(&inactive, Code::FailedPrecondition, "service_item_code");
    let request = || async {
        clinic
            .clone()
            .request_consult(as_clinician(consult_request("TM-001"), "dr-zhao"))
            .await
            .unwrap()
            .into_inner()
            .consult
            .unwrap()
    };
    let consult = request().await;
    assert_eq!(consult.price_fen, 20_000);
    assert_eq!(consult.person_id, person);
    let id = consult.consult_id.clone();
    let reported = request().await.consult_id;
    // Then she opts out of sharing: only a consult's grant opens her records to the hospital.
    opt_out(&fixture, &person).await;
    // Another hospital does not see the consult; the clinic cannot accept its own request.
    let mut h02 = TelemedicineClient::new(channel_of(&fixture, "QDN-H02").await);
    let hidden = h02
        .get_consult(as_clinician(
            GetConsultRequest {
                consult_id: id.clone(),
            },
            "dr-x",
        ))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    let accept = |consult: &str, user: &str, seconds: i64| {
        as_clinician(
            AcceptConsultRequest {
                consult_id: consult.into(),
                consultant: String::new(),
                access_duration: Some(prost_types::Duration { seconds, nanos: 0 }),
            },
            user,
        )
    };
    let not_the_clinics = clinic
        .accept_consult(accept(&id, "dr-zhao", 3))
        .await
        .unwrap_err();
    assert_eq!(not_the_clinics.code(), Code::PermissionDenied);
    assert_eq!(
        not_the_clinics.message(),
        "only the consulting hospital may accept"
    );
    let records = |consult: &str, user: &str| {
        as_clinician(
            GetConsultRecordsRequest {
                consult_id: consult.into(),
            },
            user,
        )
    };
    assert_eq!(
        hospital
            .get_consult_records(records(&id, "dr-li"))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );

    let accepted = hospital
        .accept_consult(accept(&id, "dr-li", 3))
        .await
        .unwrap()
        .into_inner()
        .consult
        .unwrap();
    assert_eq!(accepted.consultant, "dr-li");
    let twice = hospital
        .accept_consult(accept(&id, "dr-li", 3))
        .await
        .unwrap_err();
    assert_eq!(twice.code(), Code::FailedPrecondition, "{twice:?}");
    // During the grant: the consultant reads the summary and documents, through the consult and
    // through the EMR registry itself; a colleague does not.
    let seen = hospital
        .get_consult_records(records(&id, "dr-li"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.person_id, person);
    assert!(seen.summary.is_some());
    assert_eq!(
        hospital
            .get_consult_records(records(&id, "dr-chen"))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let mut emr = EmrRegistryClient::new(channel_of(&fixture, "QDN-H01").await);
    let find = |user: &str| {
        as_clinician(
            FindDocumentsRequest {
                person: Some(PersonSelector {
                    selector: Some(person_selector::Selector::PersonId(person.clone())),
                }),
                ..Default::default()
            },
            user,
        )
    };
    emr.find_documents(find("dr-li")).await.unwrap();
    assert_eq!(
        emr.find_documents(find("dr-chen")).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    // After the grant expires, on its own: refused both ways.
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    assert_eq!(
        hospital
            .get_consult_records(records(&id, "dr-li"))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        emr.find_documents(find("dr-li")).await.unwrap_err().code(),
        Code::PermissionDenied
    );

    // The other consult is completed within its grant: the report becomes the hospital's
    // document, and the access ends with it.
    hospital
        .accept_consult(accept(&reported, "dr-li", 600))
        .await
        .unwrap();
    let report = |consult: &str| {
        as_clinician(
            CompleteConsultRequest {
                consult_id: consult.into(),
                title: "会诊意见".into(),
                content: "考虑稳定型心绞痛，建议冠脉CTA。".as_bytes().to_vec(),
                mime_type: "text/plain".into(),
                diagnoses: vec!["I20.8".into()],
            },
            "dr-li",
        )
    };
    let completed = hospital
        .complete_consult(report(&reported))
        .await
        .unwrap()
        .into_inner()
        .consult
        .unwrap();
    assert_eq!(
        completed.report_unique_id,
        format!("urn:hie:consult:{reported}:report")
    );
    assert_eq!(
        completed
            .steps
            .iter()
            .map(|s| s.step.as_str())
            .collect::<Vec<_>>(),
        vec!["requested", "accepted", "completed"]
    );
    assert_eq!(
        hospital
            .get_consult_records(records(&reported, "dr-li"))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let cancel = |consult_id: &str| {
        as_clinician(
            CancelConsultRequest {
                consult_id: consult_id.into(),
                reason: "患者已转诊".into(),
            },
            "dr-zhao",
        )
    };
    assert_eq!(
        clinic.cancel_consult(cancel(&reported)).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    // The expired one is cancelled; completing it then is refused and changes nothing.
    clinic.cancel_consult(cancel(&id)).await.unwrap();
    let late = hospital.complete_consult(report(&id)).await.unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition, "{late:?}");

    // Every step is in the audit trail, and the patient sees the grant in her access log.
    let exchange = fixture.server.exchange();
    exchange.access.audit().flush().await.unwrap();
    let (steps,): (i64,) = sqlx::query_as(
        "SELECT COUNT(DISTINCT action) FROM audit_events WHERE person_id = $1 AND action LIKE 'telemedicine.consult.%'",
    )
    .bind(person.clone())
    .fetch_one(exchange.database.pool())
    .await
    .unwrap();
    assert!(
        steps >= 4,
        "request, accept, complete, cancel and the refused reads: {steps}"
    );
    let log = AccessServiceClient::new(channel_of(&fixture, "QDN-APP").await)
        .patient_access_log(as_patient(
            PatientAccessLogRequest {
                person_id: person.clone(),
                page_size: 200,
                page_token: String::new(),
            },
            &person,
        ))
        .await
        .unwrap()
        .into_inner();
    let shown = format!("{log:?}");
    assert!(shown.contains("telemedicine.consult.accept"), "{shown}");
    // Each step emitted its event.
    let mut connection = exchange.database.pool().acquire().await.unwrap();
    let topics = hie_core::outbox::events(
        &mut connection,
        &[
            hie_core::vocabulary::EventType::ConsultRequested,
            hie_core::vocabulary::EventType::ConsultAccepted,
            hie_core::vocabulary::EventType::ConsultCompleted,
            hie_core::vocabulary::EventType::ConsultCancelled,
        ],
    )
    .await
    .unwrap();
    drop(connection);
    assert_eq!(
        topics.len(),
        6,
        "two requests, two acceptances, a completion, a cancellation"
    );
    fixture.server.stop().await.unwrap();
}
