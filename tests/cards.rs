//! Cards end to end: the real server over TCP, tonic clients, a simulated card and reader, on
//! every backend. Linking with the holder check, one active card per type, chip challenges
//! (replay, expiry, another card's challenge, a forged answer), check-in with each card type,
//! the life cycle (lost, replaced, revoked) taking effect at once, on this replica and on another,
//! and no card number anywhere in the database.

use hie_proto::cards::card_service_client::CardServiceClient;
use hie_proto::cards::{
    BeginCardAuthenticationRequest, CardNumber, CardPresentation, CardStatus, CardType, CheckInRequest,
    ChipResponse, ExpireCardRequest, GetCardHistoryRequest, LinkCardRequest, ListCardsRequest,
    ReplaceCardRequest, ReportCardLostRequest, ResolveCardRequest, RevokeCardRequest, UnlinkCardRequest,
};
use hie_proto::records::{PersonSelector, person_selector};
use hie_server::card_cli::{SimulatedCard, with_context};
use hie_server::demo_cards::cards_of;
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::{TestDb, TestServer, count, on_every_backend, register_organisations, request, woman};

on_every_backend!(
    each_card_type_checks_its_holder_in_and_a_lost_card_stops_at_once,
    a_card_is_trusted_only_after_its_chip_answers_a_fresh_challenge_for_it,
    linking_refuses_a_holder_mismatch_a_second_active_card_and_bad_numbers_changing_nothing,
    another_replica_refuses_a_revoked_card_within_its_refresh,
    over_mutual_tls_the_desk_checks_in_at_its_own_hospital_and_a_patient_reports_only_their_own_card_lost,
    a_resolve_follows_a_merge_and_a_consent_change_at_once,
    a_token_key_rotation_keeps_every_card_and_a_lost_key_stops_the_start,
    a_card_linked_by_mistake_is_unlinked_and_linked_again_and_an_expired_card_stops,
);

type Cards = CardServiceClient<Channel>;

/// The issuer's staff at the health authority: card administration is operations.
fn administrator() -> Vec<(&'static str, String)> {
    vec![
        ("x-hie-user", "admin-yang".to_owned()),
        ("x-hie-role", "administrator".to_owned()),
        ("x-hie-purpose", "operations".to_owned()),
    ]
}

fn clerk() -> Vec<(&'static str, String)> {
    context("clerk-7", "registration_clerk")
}

fn context(user: &str, role: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-hie-user", user.to_owned()),
        ("x-hie-role", role.to_owned()),
        ("x-hie-purpose", "treatment".to_owned()),
    ]
}

fn proto_type(card_type: hie_cards::domain::CardType) -> CardType {
    hie_cards::grpc::card_type_to_proto(card_type)
}

fn number(card_type: CardType, number: &str) -> CardNumber {
    CardNumber {
        r#type: card_type.into(),
        number: number.to_owned(),
    }
}

/// Registers the woman `n` at QDN-H01 (number `MZ{n}`); her person id.
async fn holder(server: &TestServer, n: u32) -> String {
    server
        .population()
        .register_source_record(request("QDN-H01", &format!("MZ{n}"), "吴阿妹", Some(&woman(n))))
        .await
        .unwrap()
        .into_inner()
        .person_id
}

async fn link(cards: &mut Cards, card: CardNumber, holder_number: &str) -> Result<String, tonic::Status> {
    cards
        .link_card(with_context(
            LinkCardRequest {
                card: Some(card),
                holder_identity_number: holder_number.to_owned(),
                person_id: String::new(),
                expires_on: String::new(),
                chip: None,
            },
            &administrator(),
        ))
        .await
        .map(|r| r.into_inner().card.unwrap().card_id)
}

/// The card as a reader presents it: a fresh challenge, answered by its chip.
async fn present(db: &TestDb, cards: &mut Cards, card_type: CardType, number: &str) -> CardPresentation {
    let card = simulated(db, card_type, number);
    card.present(cards, number, &clerk()).await.unwrap()
}

fn simulated(db: &TestDb, card_type: CardType, number: &str) -> SimulatedCard {
    let domain_type = hie_cards::grpc::card_type_of(card_type.into()).unwrap();
    SimulatedCard::issued(&db.settings(), domain_type, number).unwrap()
}

async fn resolve(cards: &mut Cards, presented: CardPresentation) -> Result<String, tonic::Status> {
    cards
        .resolve_card(with_context(
            ResolveCardRequest {
                card: Some(presented),
            },
            &clerk(),
        ))
        .await
        .map(|r| r.into_inner().person_id)
}

async fn check_in(
    cards: &mut Cards,
    presented: CardPresentation,
    visit: &str,
) -> Result<hie_proto::cards::CheckInResponse, tonic::Status> {
    cards
        .check_in(with_context(
            CheckInRequest {
                card: Some(presented),
                organisation_code: "QDN-H01".into(),
                department: "内科".into(),
                visit_number: visit.into(),
                attending_practitioner: String::new(),
                emergency: false,
            },
            &clerk(),
        ))
        .await
        .map(|r| r.into_inner())
}

/// Every stored text of the card tables, the audit trail and the outbox: what must not hold a
/// card number.
async fn everything_stored(server: &TestServer) -> String {
    let exchange = server.exchange();
    exchange.access.audit().flush().await.unwrap();
    let mut text = String::new();
    for sql in [
        "SELECT id || card_type || token || token_key_id || last_four || person_id || status FROM cards",
        "SELECT card_id || change || status || COALESCE(reason, '') FROM card_changes",
        "SELECT action || COALESCE(resource_id, '') || COALESCE(reason, '') || outcome FROM audit_events",
        "SELECT topic || payload FROM outbox_events",
    ] {
        let rows: Vec<(String,)> = sqlx::query_as(sql)
            .fetch_all(exchange.database.pool())
            .await
            .unwrap();
        for (row,) in rows {
            text.push_str(&row);
            text.push('\n');
        }
    }
    text
}

async fn each_card_type_checks_its_holder_in_and_a_lost_card_stops_at_once(db: TestDb) {
    let server = db.server().await;
    register_organisations(server.exchange()).await;
    let person = holder(&server, 1).await;
    let mut cards = CardServiceClient::new(server.channel.clone());
    let issued = cards_of(0, "522601");
    let mut ids = Vec::new();
    for (card_type, card_number) in &issued {
        ids.push(
            link(&mut cards, number(proto_type(*card_type), card_number), &woman(1))
                .await
                .unwrap(),
        );
    }
    // The same card linked again to the same person changes nothing.
    let again = cards
        .link_card(with_context(
            LinkCardRequest {
                card: Some(number(proto_type(issued[0].0), &issued[0].1)),
                holder_identity_number: woman(1),
                person_id: person.clone(),
                expires_on: String::new(),
                chip: None,
            },
            &clerk(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.changed);
    assert_eq!(again.card.unwrap().card_id, ids[0]);

    // Any one card checks her in: the visit is registered at the desk's hospital, the summary is hers.
    for (i, (card_type, card_number)) in issued.iter().enumerate() {
        let presented = present(&db, &mut cards, proto_type(*card_type), card_number).await;
        let checked_in = check_in(&mut cards, presented, &format!("V{i}")).await.unwrap();
        assert_eq!(checked_in.person_id, person);
        assert_eq!(checked_in.card_id, ids[i]);
        let encounter = checked_in.encounter.unwrap();
        assert_eq!(encounter.organisation_code, "QDN-H01");
        assert_eq!(encounter.visit_number, format!("V{i}"));
        assert_eq!(checked_in.summary.unwrap().person_id, person);
    }
    assert_eq!(count(server.exchange(), "encounters").await, issued.len() as i64);
    // Checking in again with the same visit number registers nothing new.
    let presented = present(&db, &mut cards, proto_type(issued[0].0), &issued[0].1).await;
    check_in(&mut cards, presented, "V0").await.unwrap();
    assert_eq!(count(server.exchange(), "encounters").await, issued.len() as i64);

    // Lost: refused at once, and the use is audited.
    let health = (proto_type(issued[0].0), issued[0].1.clone());
    cards
        .report_card_lost(with_context(
            ReportCardLostRequest {
                card_id: ids[0].clone(),
                reason: "lost at the market".into(),
            },
            &clerk(),
        ))
        .await
        .unwrap();
    let presented = present(&db, &mut cards, health.0, &health.1).await;
    let refused = resolve(&mut cards, presented).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("lost"), "{refused:?}");
    let audited: (i64,) = {
        server.exchange().access.audit().flush().await.unwrap();
        sqlx::query_as(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'cards.lost_card_used' AND resource_id = $1",
        )
        .bind(&ids[0])
        .fetch_one(server.exchange().database.pool())
        .await
        .unwrap()
    };
    assert_eq!(audited.0, 1);

    // Replaced: the new card works at once and inherits the holder; the old one stays refused.
    let new_number = hie_cards::domain::number::with_luhn_digit("522601999999999");
    let replaced = cards
        .replace_card(with_context(
            ReplaceCardRequest {
                card_id: ids[0].clone(),
                new_card: Some(number(health.0, &new_number)),
                expires_on: String::new(),
            },
            &clerk(),
        ))
        .await
        .unwrap()
        .into_inner();
    let new_card = replaced.new_card.unwrap();
    assert_eq!(new_card.replaces_card_id, ids[0]);
    assert_eq!(replaced.old_card.unwrap().status, CardStatus::Replaced as i32);
    let presented = present(&db, &mut cards, health.0, &new_number).await;
    assert_eq!(resolve(&mut cards, presented).await.unwrap(), person);
    let presented = present(&db, &mut cards, health.0, &health.1).await;
    assert_eq!(
        resolve(&mut cards, presented).await.unwrap_err().code(),
        Code::FailedPrecondition
    );

    // Revoked: refused; a revoked card is not replaced, and the refusal changes nothing.
    cards
        .revoke_card(with_context(
            RevokeCardRequest {
                card_id: new_card.card_id.clone(),
                reason: "issued in error".into(),
            },
            &administrator(),
        ))
        .await
        .unwrap();
    let presented = present(&db, &mut cards, health.0, &new_number).await;
    let refused = resolve(&mut cards, presented).await.unwrap_err();
    assert!(refused.message().contains("revoked"), "{refused:?}");
    let before = count(server.exchange(), "cards").await;
    let refused = cards
        .replace_card(with_context(
            ReplaceCardRequest {
                card_id: new_card.card_id.clone(),
                new_card: Some(number(
                    health.0,
                    &hie_cards::domain::number::with_luhn_digit("522601999999998"),
                )),
                expires_on: String::new(),
            },
            &administrator(),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(count(server.exchange(), "cards").await, before);
    // A clerk may not revoke.
    let refused = cards
        .revoke_card(with_context(
            RevokeCardRequest {
                card_id: ids[1].clone(),
                reason: "no".into(),
            },
            &clerk(),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // The history of the first card, and the person's cards.
    let history = cards
        .get_card_history(with_context(
            GetCardHistoryRequest {
                card_id: ids[0].clone(),
            },
            &clerk(),
        ))
        .await
        .unwrap()
        .into_inner();
    let changes: Vec<&str> = history.changes.iter().map(|c| c.change.as_str()).collect();
    assert_eq!(changes, ["linked", "lost", "replaced"]);
    assert_eq!(history.changes[1].reason, "lost at the market");
    let listed = cards
        .list_cards(with_context(
            ListCardsRequest {
                person: Some(PersonSelector {
                    selector: Some(person_selector::Selector::PersonId(person.clone())),
                }),
            },
            &clerk(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.cards.len(), issued.len() + 1);
    assert!(listed.cards.iter().all(|c| c.last_four.len() == 4));

    // No number, whole, anywhere.
    let stored = everything_stored(&server).await;
    for (_, card_number) in issued.iter().chain([&(issued[0].0, new_number.clone())]) {
        assert!(
            !stored.contains(card_number.as_str()),
            "a card number is stored in plain text"
        );
    }
    server.server.stop().await.unwrap();
}

async fn a_card_is_trusted_only_after_its_chip_answers_a_fresh_challenge_for_it(db: TestDb) {
    let server = db.server().await;
    register_organisations(server.exchange()).await;
    let person = holder(&server, 2).await;
    let mut cards = CardServiceClient::new(server.channel.clone());
    let bank = hie_cards::domain::number::with_luhn_digit("622202123456789");
    let other_bank = hie_cards::domain::number::with_luhn_digit("622202123456780");
    link(&mut cards, number(CardType::Bank, &bank), &woman(2))
        .await
        .unwrap();

    // Genuine, once.
    let presented = present(&db, &mut cards, CardType::Bank, &bank).await;
    assert_eq!(resolve(&mut cards, presented.clone()).await.unwrap(), person);
    // The same answer again: refused.
    let replayed = resolve(&mut cards, presented).await.unwrap_err();
    assert_eq!(replayed.code(), Code::FailedPrecondition, "{replayed:?}");

    // A challenge answered for another card (the answer of a card the caller holds, sent with
    // the number of the card it wants): refused.
    let mine = present(&db, &mut cards, CardType::Bank, &other_bank).await;
    let mut stolen = mine.clone();
    stolen.card = Some(number(CardType::Bank, &bank));
    let refused = resolve(&mut cards, stolen).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("another card"), "{refused:?}");

    // A forged answer is refused alike for a linked number and an unknown one: the caller learns nothing.
    let mut forged_answers = Vec::new();
    for card_number in [&bank, &other_bank] {
        let challenge = cards
            .begin_card_authentication(with_context(
                BeginCardAuthenticationRequest {
                    card: Some(number(CardType::Bank, card_number)),
                },
                &clerk(),
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(challenge.algorithm, "hmac-sha256");
        assert_eq!(challenge.challenge.len(), 16);
        let forged = CardPresentation {
            card: Some(number(CardType::Bank, card_number)),
            chip: Some(ChipResponse {
                challenge_id: challenge.challenge_id,
                mac: vec![7; 32],
            }),
        };
        let refused = resolve(&mut cards, forged).await.unwrap_err();
        forged_answers.push((refused.code(), refused.message().to_owned()));
    }
    assert_eq!(forged_answers[0], forged_answers[1]);
    assert_eq!(forged_answers[0].0, Code::PermissionDenied);
    // Without a chip answer: refused before any look-up.
    let bare = CardPresentation {
        card: Some(number(CardType::Bank, &bank)),
        chip: None,
    };
    assert_eq!(
        resolve(&mut cards, bare).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    // The genuine card that nobody linked: NOT_FOUND, to the holder of that card only.
    let presented = present(&db, &mut cards, CardType::Bank, &other_bank).await;
    assert_eq!(
        resolve(&mut cards, presented).await.unwrap_err().code(),
        Code::NotFound
    );
    // A nurse may read cards; a patient-portal role may not (and plaintext has no portal).
    let presented = present(&db, &mut cards, CardType::Bank, &bank).await;
    let refused = cards
        .resolve_card(with_context(
            ResolveCardRequest {
                card: Some(presented),
            },
            &context("analyst", "public_health_officer"),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    // Nor may it ask for challenges (a bounded resource of the replica).
    let refused = cards
        .begin_card_authentication(with_context(
            BeginCardAuthenticationRequest {
                card: Some(number(CardType::Bank, &bank)),
            },
            &context("analyst", "public_health_officer"),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    server.server.stop().await.unwrap();
}

async fn linking_refuses_a_holder_mismatch_a_second_active_card_and_bad_numbers_changing_nothing(db: TestDb) {
    let server = db.server().await;
    register_organisations(server.exchange()).await;
    let first = holder(&server, 3).await;
    let second = holder(&server, 4).await;
    let mut cards = CardServiceClient::new(server.channel.clone());
    let health = hie_cards::domain::number::with_luhn_digit("522601000000003");
    link(&mut cards, number(CardType::ResidentHealth, &health), &woman(3))
        .await
        .unwrap();
    let (cards_before, changes_before, outbox_before) = (
        count(server.exchange(), "cards").await,
        count(server.exchange(), "card_changes").await,
        count(server.exchange(), "outbox_events").await,
    );

    let attempt = |card: CardNumber, holder_number: String, person: String| LinkCardRequest {
        card: Some(card),
        holder_identity_number: holder_number,
        person_id: person,
        expires_on: String::new(),
        chip: None,
    };
    let refusals = [
        // A second active resident health card.
        (
            attempt(
                number(
                    CardType::ResidentHealth,
                    &hie_cards::domain::number::with_luhn_digit("522601000000004"),
                ),
                woman(3),
                String::new(),
            ),
            Code::FailedPrecondition,
            "card.type",
        ),
        // The application's identity number is not the named person's.
        (
            attempt(
                number(
                    CardType::Citizen,
                    &hie_cards::domain::number::with_luhn_digit("52260100004"),
                ),
                woman(3),
                second.clone(),
            ),
            Code::FailedPrecondition,
            "holder_identity_number",
        ),
        // Nobody has that identity number.
        (
            attempt(
                number(
                    CardType::Citizen,
                    &hie_cards::domain::number::with_luhn_digit("52260100004"),
                ),
                woman(77),
                String::new(),
            ),
            Code::NotFound,
            "holder_identity_number",
        ),
        // The card is another person's.
        (
            attempt(number(CardType::ResidentHealth, &health), woman(4), String::new()),
            Code::FailedPrecondition,
            "another person",
        ),
        // Malformed numbers of each type, and a Luhn failure.
        (
            attempt(
                number(CardType::Bank, "4111111111111112"),
                woman(3),
                String::new(),
            ),
            Code::InvalidArgument,
            "card.number",
        ),
        (
            attempt(number(CardType::Bank, "41111111"), woman(3), String::new()),
            Code::InvalidArgument,
            "card.number",
        ),
        (
            attempt(
                number(CardType::ResidentHealth, "99260100000000X1"),
                woman(3),
                String::new(),
            ),
            Code::InvalidArgument,
            "card.number",
        ),
        (
            attempt(
                number(CardType::SocialSecurity, "123456789"),
                woman(3),
                String::new(),
            ),
            Code::InvalidArgument,
            "card.number",
        ),
        (
            attempt(number(CardType::Citizen, "52260100004"), woman(3), String::new()),
            Code::InvalidArgument,
            "card.number",
        ),
        (
            attempt(
                number(CardType::Unspecified, "A12345678"),
                woman(3),
                String::new(),
            ),
            Code::InvalidArgument,
            "card.type",
        ),
        (
            attempt(
                number(CardType::SocialSecurity, "A12345678"),
                "52260119850314000".into(),
                String::new(),
            ),
            Code::InvalidArgument,
            "holder_identity_number",
        ),
        (
            attempt(
                number(CardType::SocialSecurity, "A12345678"),
                woman(3),
                "not-a-person".into(),
            ),
            Code::InvalidArgument,
            "person_id",
        ),
    ];
    for (request, code, says) in refusals {
        let refused = cards
            .link_card(with_context(request, &administrator()))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), code, "{refused:?}");
        assert!(refused.message().contains(says), "{refused:?}");
        assert!(!refused.message().contains("4111111111111112"), "{refused:?}");
    }
    assert_eq!(count(server.exchange(), "cards").await, cards_before);
    assert_eq!(count(server.exchange(), "card_changes").await, changes_before);
    assert_eq!(count(server.exchange(), "outbox_events").await, outbox_before);
    // An expiry date in the past; a card linked with a date that has passed works no more.
    let refused = cards
        .link_card(with_context(
            LinkCardRequest {
                card: Some(number(CardType::SocialSecurity, "A12345678")),
                holder_identity_number: woman(3),
                person_id: first.clone(),
                expires_on: "2001-01-01".into(),
                chip: None,
            },
            &administrator(),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    server.server.stop().await.unwrap();
}

async fn another_replica_refuses_a_revoked_card_within_its_refresh(db: TestDb) {
    let first = db.server().await;
    register_organisations(first.exchange()).await;
    let person = holder(&first, 5).await;
    let second = db.server().await;
    let citizen = hie_cards::domain::number::with_luhn_digit("52260100005");
    let mut at_first = CardServiceClient::new(first.channel.clone());
    let mut at_second = CardServiceClient::new(second.channel.clone());
    let id = link(&mut at_first, number(CardType::Citizen, &citizen), &woman(5))
        .await
        .unwrap();
    // The second replica learns of the new card from its refresh.
    let mut resolved = None;
    for _ in 0..40 {
        let presented = present(&db, &mut at_second, CardType::Citizen, &citizen).await;
        match resolve(&mut at_second, presented).await {
            Ok(found) => {
                resolved = Some(found);
                break;
            }
            Err(status) => assert_eq!(status.code(), Code::NotFound, "{status:?}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(resolved, Some(person));
    at_first
        .revoke_card(with_context(
            RevokeCardRequest {
                card_id: id,
                reason: "stolen".into(),
            },
            &administrator(),
        ))
        .await
        .unwrap();
    // At once on the replica that revoked it; within a refresh on the other.
    let presented = present(&db, &mut at_first, CardType::Citizen, &citizen).await;
    assert_eq!(
        resolve(&mut at_first, presented).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    let mut refused = false;
    let revoked_at = std::time::Instant::now();
    for _ in 0..40 {
        let presented = present(&db, &mut at_second, CardType::Citizen, &citizen).await;
        if resolve(&mut at_second, presented)
            .await
            .is_err_and(|s| s.code() == Code::FailedPrecondition)
        {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        refused,
        "the second replica still accepts a revoked card after 4 s"
    );
    eprintln!(
        "the second replica refused the revoked card after {:?}",
        revoked_at.elapsed()
    );
    second.server.stop().await.unwrap();
    first.server.stop().await.unwrap();
}

async fn over_mutual_tls_the_desk_checks_in_at_its_own_hospital_and_a_patient_reports_only_their_own_card_lost(
    db: TestDb,
) {
    use crate::trust::{as_patient, channel_of, fixture, woman_at_both_hospitals};
    let fixture = fixture(db).await;
    let woman_id = woman_at_both_hospitals(&fixture).await;
    crate::harness::population_client(channel_of(&fixture, "QDN-H01").await)
        .register_source_record(request("", "MZ9", "龙金花", Some(&woman(9))))
        .await
        .unwrap();
    let mut authority = CardServiceClient::new(channel_of(&fixture, "QDN-WJW").await);
    let health = hie_cards::domain::number::with_luhn_digit("522601000000011");
    let others = hie_cards::domain::number::with_luhn_digit("522601000000019");
    let health_id = link(
        &mut authority,
        number(CardType::ResidentHealth, &health),
        &woman(1),
    )
    .await
    .unwrap();
    let others_id = link(
        &mut authority,
        number(CardType::ResidentHealth, &others),
        &woman(9),
    )
    .await
    .unwrap();

    // The hospital's desk: the visit is registered at the hospital its certificate names.
    let mut desk = CardServiceClient::new(channel_of(&fixture, "QDN-H01").await);
    let card = SimulatedCard::issued(
        &fixture.db.settings(),
        hie_cards::domain::CardType::ResidentHealth,
        &health,
    )
    .unwrap();
    let presented = card.present(&mut desk, &health, &clerk()).await.unwrap();
    let mut at_desk = CheckInRequest {
        card: Some(presented),
        organisation_code: String::new(),
        department: "儿科".into(),
        visit_number: "MZ-2026-1".into(),
        attending_practitioner: String::new(),
        emergency: false,
    };
    let checked_in = desk
        .check_in(with_context(at_desk.clone(), &clerk()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(checked_in.person_id, woman_id);
    assert_eq!(checked_in.encounter.unwrap().organisation_code, "QDN-H01");
    // Checking in at another hospital than its own: refused.
    at_desk.card = Some(card.present(&mut desk, &health, &clerk()).await.unwrap());
    at_desk.organisation_code = "QDN-H02".into();
    let refused = desk.check_in(with_context(at_desk, &clerk())).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    // The hospital cannot act as the issuer.
    let refused = desk
        .revoke_card(with_context(
            RevokeCardRequest {
                card_id: health_id.clone(),
                reason: "x".into(),
            },
            &administrator(),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // The residents' app, acting for the woman: her own card, not another's (answered as unknown).
    let mut app = CardServiceClient::new(channel_of(&fixture, "QDN-APP").await);
    let lost = |card_id: &str| ReportCardLostRequest {
        card_id: card_id.to_owned(),
        reason: String::new(),
    };
    let refused = app
        .report_card_lost(as_patient(lost(&others_id), &woman_id))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    let reported = app
        .report_card_lost(as_patient(lost(&health_id), &woman_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reported.card.unwrap().status, CardStatus::Lost as i32);
    // She links her own bank card, proving with its chip that she holds it (a number alone is
    // refused); not one for someone else.
    let bank = hie_cards::domain::number::with_luhn_digit("622202000000000011");
    let portal_context = vec![
        ("x-hie-user", "app".to_owned()),
        ("x-hie-role", "patient".to_owned()),
        ("x-hie-purpose", "patient_request".to_owned()),
        ("x-hie-patient", woman_id.clone()),
    ];
    let held = |number: &str| {
        SimulatedCard::issued(&fixture.db.settings(), hie_cards::domain::CardType::Bank, number).unwrap()
    };
    let own = LinkCardRequest {
        card: Some(number(CardType::Bank, &bank)),
        holder_identity_number: woman(1),
        person_id: String::new(),
        expires_on: String::new(),
        chip: None,
    };
    let refused = app
        .link_card(as_patient(own.clone(), &woman_id))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().starts_with("chip"), "{refused:?}");
    let proof = held(&bank)
        .present(&mut app, &bank, &portal_context)
        .await
        .unwrap()
        .chip;
    app.link_card(as_patient(
        LinkCardRequest {
            chip: proof,
            ..own.clone()
        },
        &woman_id,
    ))
    .await
    .unwrap();
    let other_bank = hie_cards::domain::number::with_luhn_digit("622202000000000012");
    let proof = held(&other_bank)
        .present(&mut app, &other_bank, &portal_context)
        .await
        .unwrap()
        .chip;
    let for_another = LinkCardRequest {
        holder_identity_number: woman(9),
        card: Some(number(CardType::Bank, &other_bank)),
        chip: proof,
        ..own
    };
    let refused = app
        .link_card(as_patient(for_another, &woman_id))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    // The lost card at the desk: refused, and the attempt is in the trail.
    let presented = card.present(&mut desk, &health, &clerk()).await.unwrap();
    let refused = desk
        .resolve_card(with_context(
            ResolveCardRequest {
                card: Some(presented),
            },
            &clerk(),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    fixture.server.stop().await.unwrap();
}

async fn a_resolve_follows_a_merge_and_a_consent_change_at_once(db: TestDb) {
    use hie_proto::access::access_service_client::AccessServiceClient;
    use hie_proto::access::{ConsentDirectives, SetConsentRequest, Sharing};
    let server = db.server().await;
    register_organisations(server.exchange()).await;
    let merged = holder(&server, 6).await;
    let survivor = holder(&server, 7).await;
    let mut cards = CardServiceClient::new(server.channel.clone());
    let citizen = hie_cards::domain::number::with_luhn_digit("52260100006");
    link(&mut cards, number(CardType::Citizen, &citizen), &woman(6))
        .await
        .unwrap();
    // Wait for the replica's view of persons, so that what follows runs on it, not the database.
    while server.exchange().cards.indexed_cards().is_none() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for _ in 0..2 {
        let presented = present(&db, &mut cards, CardType::Citizen, &citizen).await;
        assert_eq!(resolve(&mut cards, presented).await.unwrap(), merged);
    }
    server
        .exchange()
        .population
        .merge_persons(
            &crate::harness::steward(),
            &hie_core::id::PersonId::parse(&merged).unwrap(),
            &hie_core::id::PersonId::parse(&survivor).unwrap(),
            "the same woman registered twice",
        )
        .await
        .unwrap();
    // The very next read answers the survivor (the merge's event reached the view as it committed).
    let presented = present(&db, &mut cards, CardType::Citizen, &citizen).await;
    assert_eq!(resolve(&mut cards, presented).await.unwrap(), survivor);

    // The survivor withholds sharing: the next resolve is refused; sharing again, it is answered.
    let set = |sharing: Sharing| SetConsentRequest {
        person_id: survivor.clone(),
        directives: Some(ConsentDirectives {
            sharing: sharing.into(),
            ..Default::default()
        }),
    };
    let mut access = AccessServiceClient::new(server.channel.clone());
    access
        .set_consent(with_context(set(Sharing::Withhold), &administrator()))
        .await
        .unwrap();
    let presented = present(&db, &mut cards, CardType::Citizen, &citizen).await;
    let refused = resolve(&mut cards, presented).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    // A check-in is refused as the resolve is, and writes no visit.
    let visits = count(server.exchange(), "encounters").await;
    let presented = present(&db, &mut cards, CardType::Citizen, &citizen).await;
    let refused = check_in(&mut cards, presented, "WITHHELD-1").await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(count(server.exchange(), "encounters").await, visits);
    access
        .set_consent(with_context(set(Sharing::Share), &administrator()))
        .await
        .unwrap();
    let presented = present(&db, &mut cards, CardType::Citizen, &citizen).await;
    assert_eq!(resolve(&mut cards, presented).await.unwrap(), survivor);
    server.server.stop().await.unwrap();
}

async fn a_token_key_rotation_keeps_every_card_and_a_lost_key_stops_the_start(db: TestDb) {
    use hie_server::Exchange;
    let server = db.server().await;
    register_organisations(server.exchange()).await;
    let person = holder(&server, 8).await;
    let mut cards = CardServiceClient::new(server.channel.clone());
    let bank = hie_cards::domain::number::with_luhn_digit("622202000000000088");
    link(&mut cards, number(CardType::Bank, &bank), &woman(8))
        .await
        .unwrap();
    server.server.stop().await.unwrap();

    // The key file is gone: the exchange refuses to start rather than lose every card.
    let settings = db.settings();
    let key = settings.card_token_key_file();
    let retired = key.with_file_name("card-token-2026.key");
    std::fs::rename(&key, &retired).unwrap();
    let refused = Exchange::open(&settings).await.unwrap_err();
    assert!(refused.to_string().contains("token_key_file"), "{refused}");

    // A new key, the old one retired: the card is still found, and a new card goes under the new key.
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    let mut rotated = settings.clone();
    rotated.cards.retired_token_key_files = vec![retired];
    let server = Exchange::open(&rotated)
        .await
        .unwrap()
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let channel = tonic::transport::Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut cards = CardServiceClient::new(channel);
    let presented = present(&db, &mut cards, CardType::Bank, &bank).await;
    assert_eq!(resolve(&mut cards, presented).await.unwrap(), person);
    let second = hie_cards::domain::number::with_luhn_digit("622202000000000089");
    link(&mut cards, number(CardType::Bank, &second), &woman(8))
        .await
        .unwrap();
    let (keys,): (i64,) = sqlx::query_as("SELECT COUNT(DISTINCT token_key_id) FROM cards")
        .fetch_one(server.exchange().database.pool())
        .await
        .unwrap();
    assert_eq!(keys, 2);
    server.stop().await.unwrap();
}

async fn a_card_linked_by_mistake_is_unlinked_and_linked_again_and_an_expired_card_stops(db: TestDb) {
    let server = db.server().await;
    register_organisations(server.exchange()).await;
    let wrong = holder(&server, 10).await;
    let right = holder(&server, 11).await;
    let mut cards = CardServiceClient::new(server.channel.clone());
    let citizen = hie_cards::domain::number::with_luhn_digit("52260100010");
    let id = link(&mut cards, number(CardType::Citizen, &citizen), &woman(10))
        .await
        .unwrap();
    let presented = present(&db, &mut cards, CardType::Citizen, &citizen).await;
    assert_eq!(resolve(&mut cards, presented).await.unwrap(), wrong);

    // Unlinking needs a reason and an administrator; afterwards the card finds nobody.
    let unlink = |reason: &str| UnlinkCardRequest {
        card_id: id.clone(),
        reason: reason.into(),
    };
    let refused = cards
        .unlink_card(with_context(unlink(" "), &administrator()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let refused = cards
        .unlink_card(with_context(unlink("linked to the wrong woman"), &clerk()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let unlinked = cards
        .unlink_card(with_context(
            unlink("linked to the wrong woman"),
            &administrator(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unlinked.card.unwrap().status, CardStatus::Unlinked as i32);
    let presented = present(&db, &mut cards, CardType::Citizen, &citizen).await;
    assert_eq!(
        resolve(&mut cards, presented).await.unwrap_err().code(),
        Code::NotFound
    );

    // Linked again, to the right woman: the same card, its history whole.
    let relinked = link(&mut cards, number(CardType::Citizen, &citizen), &woman(11))
        .await
        .unwrap();
    assert_eq!(relinked, id);
    let presented = present(&db, &mut cards, CardType::Citizen, &citizen).await;
    assert_eq!(resolve(&mut cards, presented).await.unwrap(), right);
    let history = cards
        .get_card_history(with_context(
            GetCardHistoryRequest { card_id: id.clone() },
            &clerk(),
        ))
        .await
        .unwrap()
        .into_inner();
    let changes: Vec<(&str, &str)> = history
        .changes
        .iter()
        .map(|c| (c.change.as_str(), c.person_id.as_str()))
        .collect();
    assert_eq!(
        changes,
        [
            ("linked", wrong.as_str()),
            ("unlinked", wrong.as_str()),
            ("linked", right.as_str())
        ]
    );

    // Expired by the issuer: refused at the desk, listed as expired; expiring again changes nothing.
    let expire = || ExpireCardRequest { card_id: id.clone() };
    cards
        .expire_card(with_context(expire(), &administrator()))
        .await
        .unwrap();
    let again = cards
        .expire_card(with_context(expire(), &administrator()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.card.unwrap().status, CardStatus::Expired as i32);
    let presented = present(&db, &mut cards, CardType::Citizen, &citizen).await;
    let refused = resolve(&mut cards, presented).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("expired"), "{refused:?}");
    assert_eq!(count(server.exchange(), "card_changes").await, 4);
    // An expired card is replaced by a new one, which works.
    let renewed = hie_cards::domain::number::with_luhn_digit("52260100011");
    cards
        .replace_card(with_context(
            ReplaceCardRequest {
                card_id: id.clone(),
                new_card: Some(number(CardType::Citizen, &renewed)),
                expires_on: "2099-12-31".into(),
            },
            &clerk(),
        ))
        .await
        .unwrap();
    let presented = present(&db, &mut cards, CardType::Citizen, &renewed).await;
    assert_eq!(resolve(&mut cards, presented).await.unwrap(), right);
    // A replacement must be of the same type.
    let refused = cards
        .replace_card(with_context(
            ReplaceCardRequest {
                card_id: id.clone(),
                new_card: Some(number(CardType::Bank, "4111111111111111")),
                expires_on: String::new(),
            },
            &clerk(),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    server.server.stop().await.unwrap();
}
