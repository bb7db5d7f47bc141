//! The master patient index on both backends: probabilistic matching on registration, the review
//! queue, manual link decisions, merge and unmerge, the golden record and the outbox events.

use hie_core::Error;
use hie_core::page::PageSize;
use hie_population::domain::decisions::ReviewDecision;
use hie_population::domain::{PersonId, RegistrationOutcome};
use hie_server::Exchange;

use crate::harness::{
    TestDb, count, ctx, draft, on_every_backend, register_organisations, request, steward, woman,
};

on_every_backend!(
    a_homophone_without_an_identity_number_joins_its_person,
    a_possible_match_waits_for_review_and_a_rejected_pair_is_never_proposed_again,
    an_accepted_review_links_and_matching_never_undoes_it,
    a_review_settled_by_a_merge_is_no_longer_listed,
    merge_and_unmerge_restore_exactly_what_was,
    link_and_unlink_by_hand_refuse_what_makes_no_sense,
    the_golden_record_takes_each_field_from_the_newest_record_that_states_it,
    a_hospitals_statement_outranks_a_township_centres_newer_one,
    thresholds_out_of_order_keep_the_exchange_from_starting,
    a_blocking_rule_that_does_not_parse_keeps_the_exchange_from_starting,
    rematching_after_a_threshold_change_moves_records_and_a_dry_run_changes_nothing,
    a_model_trained_on_the_registry_is_stored_with_a_version_and_used,
    records_get_keys_under_rules_chosen_from_them_and_are_found_by_them,
    consent_follows_merge_unmerge_link_and_unlink,
    two_opposite_merges_of_one_pair_take_turns,
    a_registration_never_joins_a_person_a_concurrent_merge_emptied,
    a_registration_never_overwrites_a_concurrent_stewards_link,
);

/// An exchange whose link threshold nothing short of identical records reaches, so that
/// ordinary matches land in the review queue.
async fn cautious_exchange(db: &TestDb) -> Exchange {
    let mut settings = db.settings();
    settings.matching.link_threshold = 0.999_999_999_9;
    settings.matching.review_threshold = 0.000_1;
    Exchange::open(&settings).await.expect("the exchange opens")
}

async fn outbox_topics(exchange: &Exchange) -> Vec<String> {
    let mut conn = exchange.database.pool().acquire().await.unwrap();
    hie_core::outbox::events(&mut conn, &[])
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.event_type)
        .filter(|event_type| event_type.starts_with("population."))
        .collect()
}

async fn a_homophone_without_an_identity_number_joins_its_person(db: TestDb) {
    let exchange = db.exchange().await;
    register_organisations(&exchange).await;
    let population = &exchange.population;
    let first = population
        .register(
            &ctx(),
            &draft(request("QDN-H01", "MZ001", "吴阿妹", Some(&woman(1)))),
        )
        .await
        .unwrap();
    // Another hospital's clerk heard the name and wrote 美 for 妹; no identity card at hand.
    let mut heard = request("QDN-H02", "ZY-77", "吴阿美", None);
    let same = request("QDN-H01", "MZ001", "吴阿妹", Some(&woman(1)));
    heard.demographics = same.demographics.clone().map(|mut d| {
        d.name = "吴阿美".into();
        d
    });
    let second = population.register(&ctx(), &draft(heard)).await.unwrap();
    assert_eq!(second.outcome, RegistrationOutcome::JoinedPerson);
    assert_eq!(second.person_id, first.person_id);
    // A namesake born the same day elsewhere, with her own number, phone and house, is not her.
    let namesake = population
        .register(
            &ctx(),
            &draft(request("QDN-H02", "ZY-78", "吴阿妹", Some(&woman(2)))),
        )
        .await
        .unwrap();
    assert_eq!(namesake.outcome, RegistrationOutcome::CreatedPerson);
    assert_eq!(
        outbox_topics(&exchange).await,
        vec!["population.record.linked"; 3],
        "every link change has its event"
    );
    // Each event says why: the joined record with every field's agreement and weight, the new
    // person with the closest candidate it was not linked to.
    let mut conn = exchange.database.pool().acquire().await.unwrap();
    let events = hie_core::outbox::events(&mut conn, &[hie_core::vocabulary::EventType::RecordLinked])
        .await
        .unwrap();
    // Each says whose it is and which organisation's record, in columns of its own.
    assert_eq!(events[1].person_id.as_deref(), Some(first.person_id.as_str()));
    assert_eq!(events[1].organisation_code.as_deref(), Some("QDN-H02"));
    let joined = &events[1].payload["how"]["linked_to"];
    assert_eq!(joined["person_id"], first.person_id.as_str());
    assert_eq!(joined["fields"][0]["agreement"], "sounds alike", "{joined}");
    let not_linked = &events[2].payload["how"]["closest"];
    assert_eq!(not_linked["person_id"], first.person_id.as_str());
    assert_eq!(
        not_linked["fields"][3]["agreement"], "different",
        "another identity number: {not_linked}"
    );
}

async fn a_possible_match_waits_for_review_and_a_rejected_pair_is_never_proposed_again(db: TestDb) {
    let exchange = cautious_exchange(&db).await;
    register_organisations(&exchange).await;
    let population = &exchange.population;
    let first = population
        .register(
            &ctx(),
            &draft(request("QDN-H01", "MZ001", "吴阿妹", Some(&woman(1)))),
        )
        .await
        .unwrap();
    let without_id = request("QDN-H02", "ZY-77", "吴阿妹", None);
    let second = population
        .register(&ctx(), &draft(without_id.clone()))
        .await
        .unwrap();
    assert_eq!(second.outcome, RegistrationOutcome::CreatedPerson);
    assert_eq!(second.pending_reviews, 1);

    let denied = population
        .pending_reviews(&ctx(), PageSize::parse(10).unwrap(), None)
        .await;
    assert!(matches!(denied, Err(Error::PermissionDenied(_))), "{denied:?}");
    let (reviews, next) = population
        .pending_reviews(&steward(), PageSize::parse(10).unwrap(), None)
        .await
        .unwrap();
    assert!(next.is_none());
    assert_eq!(reviews.len(), 1);
    let review = &reviews[0];
    assert_eq!(review.source_record_id, second.source_record_id);
    assert_eq!(review.candidate_person_id, first.person_id);
    let name = &review.explanation.fields[0];
    assert_eq!(
        (name.field.as_str(), name.agreement),
        ("name", Some("same characters"))
    );
    assert!(name.weight > 0.0);
    assert_eq!(
        review.explanation.fields[3].agreement, None,
        "one record has no identity number"
    );

    let no_reason = population
        .decide_review(&steward(), &review.id, ReviewDecision::Reject, " ")
        .await;
    assert!(
        matches!(&no_reason, Err(Error::InvalidArgument { field, .. }) if field == "reason"),
        "{no_reason:?}"
    );
    population
        .decide_review(
            &steward(),
            &review.id,
            ReviewDecision::Reject,
            "different mothers' names on file",
        )
        .await
        .unwrap();
    let again = population
        .decide_review(&steward(), &review.id, ReviewDecision::Link, "changed my mind")
        .await;
    assert!(
        matches!(again, Err(Error::FailedPrecondition { .. })),
        "{again:?}"
    );
    let unknown = population
        .decide_review(
            &steward(),
            &hie_population::domain::decisions::ReviewId::parse("0190a0a0-0000-7000-8000-000000000000")
                .unwrap(),
            ReviewDecision::Link,
            "x",
        )
        .await;
    assert!(matches!(unknown, Err(Error::NotFound(_))), "{unknown:?}");

    // The hospital sends the record again: the rejected pair is not proposed again.
    let resent = population.register(&ctx(), &draft(without_id)).await.unwrap();
    assert_eq!(resent.pending_reviews, 0);
    assert_eq!(resent.person_id, second.person_id);
    let (reviews, _) = population
        .pending_reviews(&steward(), PageSize::parse(10).unwrap(), None)
        .await
        .unwrap();
    assert!(reviews.is_empty());
}

async fn an_accepted_review_links_and_matching_never_undoes_it(db: TestDb) {
    let exchange = cautious_exchange(&db).await;
    register_organisations(&exchange).await;
    let population = &exchange.population;
    let first = population
        .register(
            &ctx(),
            &draft(request("QDN-H01", "MZ001", "吴阿妹", Some(&woman(1)))),
        )
        .await
        .unwrap();
    let without_id = request("QDN-H02", "ZY-77", "吴阿妹", None);
    let second = population
        .register(&ctx(), &draft(without_id.clone()))
        .await
        .unwrap();
    let (reviews, _) = population
        .pending_reviews(&steward(), PageSize::parse(10).unwrap(), None)
        .await
        .unwrap();
    let (decided, person) = population
        .decide_review(
            &steward(),
            &reviews[0].id,
            ReviewDecision::Link,
            "same mother, same village",
        )
        .await
        .unwrap();
    assert_eq!(person, first.person_id);
    assert_eq!(decided.status.code(), "linked");
    let resent = population.register(&ctx(), &draft(without_id)).await.unwrap();
    assert_eq!(resent.person_id, first.person_id, "a person's decision stands");
    let (_, records) = population.person(&ctx(), &first.person_id).await.unwrap();
    assert_eq!(records.len(), 2);
    let left_behind = population.person(&ctx(), &second.person_id).await;
    assert!(
        matches!(&left_behind, Err(Error::NotFound(m)) if m.contains(first.person_id.as_str())),
        "the emptied person points to where its record went: {left_behind:?}"
    );
    assert!(count(&exchange, "audit_events").await >= 4);
}

async fn register_person(
    exchange: &Exchange,
    organisation: &str,
    local: &str,
    name: &str,
    n: u32,
) -> PersonId {
    exchange
        .population
        .register(
            &ctx(),
            &draft(request(organisation, local, name, Some(&woman(n)))),
        )
        .await
        .unwrap()
        .person_id
}

async fn merge_and_unmerge_restore_exactly_what_was(db: TestDb) {
    let exchange = db.exchange().await;
    register_organisations(&exchange).await;
    let population = &exchange.population;
    let a = register_person(&exchange, "QDN-H01", "MZ001", "吴阿妹", 1).await;
    assert_eq!(
        register_person(&exchange, "QDN-H02", "ZY-01", "吴阿妹", 1).await,
        a
    );
    let b = register_person(&exchange, "QDN-H01", "MZ002", "杨秀英", 2).await;
    assert_ne!(a, b);

    let itself = population.merge_persons(&steward(), &a, &a, "duplicate").await;
    assert!(
        matches!(&itself, Err(Error::InvalidArgument { field, .. }) if field == "into_person_id"),
        "{itself:?}"
    );
    let by_clinician = population.merge_persons(&ctx(), &a, &b, "duplicate").await;
    assert!(matches!(by_clinician, Err(Error::PermissionDenied(_))));

    let merge = population
        .merge_persons(&steward(), &a, &b, "the same woman: maiden and married name")
        .await
        .unwrap();
    assert_eq!(merge.moved.len(), 2);
    let gone = population.person(&ctx(), &a).await;
    assert!(
        matches!(&gone, Err(Error::NotFound(m)) if m.contains("merged into")),
        "{gone:?}"
    );
    let (_, records) = population.person(&ctx(), &b).await.unwrap();
    assert_eq!(records.len(), 3);
    let twice = population.merge_persons(&steward(), &a, &b, "again").await;
    assert!(
        matches!(twice, Err(Error::FailedPrecondition { .. })),
        "{twice:?}"
    );

    // One of the moved records changes after the merge; the unmerge still takes it back.
    let mut changed = request("QDN-H02", "ZY-01", "吴阿妹", Some(&woman(1)));
    changed.demographics.as_mut().unwrap().phone = "13900000000".into();
    assert_eq!(
        population
            .register(&ctx(), &draft(changed))
            .await
            .unwrap()
            .person_id,
        b
    );

    let never = population
        .unmerge_persons(
            &steward(),
            &hie_population::domain::decisions::MergeId::parse("0190a0a0-0000-7000-8000-000000000000")
                .unwrap(),
            "oops",
        )
        .await;
    assert!(matches!(never, Err(Error::NotFound(_))), "{never:?}");
    let restored = population
        .unmerge_persons(&steward(), &merge.id, "two women after all")
        .await
        .unwrap();
    assert_eq!(restored.len(), 2);
    let (_, records_a) = population.person(&ctx(), &a).await.unwrap();
    let (_, records_b) = population.person(&ctx(), &b).await.unwrap();
    assert_eq!((records_a.len(), records_b.len()), (2, 1));
    assert!(
        records_a
            .iter()
            .any(|r| r.demographics.phone.as_ref().unwrap().as_str() == "13900000000")
    );
    let again = population.unmerge_persons(&steward(), &merge.id, "again").await;
    assert!(
        matches!(again, Err(Error::FailedPrecondition { .. })),
        "{again:?}"
    );
    let topics = outbox_topics(&exchange).await;
    assert!(topics.contains(&"population.person.merged".to_owned()));
    assert!(topics.contains(&"population.person.unmerged".to_owned()));
}

async fn link_and_unlink_by_hand_refuse_what_makes_no_sense(db: TestDb) {
    let exchange = db.exchange().await;
    register_organisations(&exchange).await;
    let population = &exchange.population;
    let a = population
        .register(
            &ctx(),
            &draft(request("QDN-H01", "MZ001", "吴阿妹", Some(&woman(1)))),
        )
        .await
        .unwrap();
    let only = population
        .unlink_record(&steward(), &a.source_record_id, "test")
        .await;
    assert!(matches!(only, Err(Error::FailedPrecondition { .. })), "{only:?}");
    let nobody = population
        .link_record(&steward(), &a.source_record_id, &PersonId::generate(), "test")
        .await;
    assert!(matches!(nobody, Err(Error::NotFound(_))), "{nobody:?}");
    let already = population
        .link_record(&steward(), &a.source_record_id, &a.person_id, "test")
        .await;
    assert!(
        matches!(already, Err(Error::FailedPrecondition { .. })),
        "{already:?}"
    );

    let b = population
        .register(
            &ctx(),
            &draft(request("QDN-H02", "ZY-01", "吴阿妹", Some(&woman(1)))),
        )
        .await
        .unwrap();
    assert_eq!(b.person_id, a.person_id);
    let own = population
        .unlink_record(
            &steward(),
            &b.source_record_id,
            "a different woman with a borrowed card",
        )
        .await
        .unwrap();
    assert_ne!(own, a.person_id);
    // The hospital sends the record again: matching leaves it where the steward put it.
    let resent = population
        .register(
            &ctx(),
            &draft(request("QDN-H02", "ZY-01", "吴阿妹", Some(&woman(1)))),
        )
        .await
        .unwrap();
    assert_eq!(resent.person_id, own);
    population
        .link_record(
            &steward(),
            &b.source_record_id,
            &a.person_id,
            "it was her after all",
        )
        .await
        .unwrap();
    let (_, records) = population.person(&ctx(), &a.person_id).await.unwrap();
    assert_eq!(records.len(), 2);
}

async fn the_golden_record_takes_each_field_from_the_newest_record_that_states_it(db: TestDb) {
    let exchange = db.exchange().await;
    register_organisations(&exchange).await;
    let population = &exchange.population;
    let first = population
        .register(
            &ctx(),
            &draft(request("QDN-H01", "MZ001", "吴阿妹", Some(&woman(1)))),
        )
        .await
        .unwrap();
    let mut newer = request("QDN-H02", "ZY-01", "吴阿妹", Some(&woman(1)));
    newer.demographics.as_mut().unwrap().phone = String::new();
    let second = population.register(&ctx(), &draft(newer)).await.unwrap();
    assert_eq!(second.person_id, first.person_id);
    let (person, _) = population.person(&ctx(), &first.person_id).await.unwrap();
    assert!(
        person.demographics.phone.is_some(),
        "the older record's phone survives"
    );
    let source_of = |field: &str| {
        person
            .demographics_sources
            .iter()
            .find(|s| s.field == field)
            .map(|s| s.source_record_id.clone())
    };
    assert_eq!(source_of("phone"), Some(first.source_record_id));
    assert_eq!(source_of("name"), Some(second.source_record_id));
}

async fn thresholds_out_of_order_keep_the_exchange_from_starting(db: TestDb) {
    let mut settings = db.settings();
    settings.matching.link_threshold = 0.5;
    settings.matching.review_threshold = 0.9;
    let Err(error) = Exchange::open(&settings).await else {
        panic!("the exchange started")
    };
    let message = error.to_string();
    assert!(
        message.contains("review_threshold") && message.contains("out of order"),
        "{message}"
    );
}

async fn rematching_after_a_threshold_change_moves_records_and_a_dry_run_changes_nothing(db: TestDb) {
    let cautious = cautious_exchange(&db).await;
    register_organisations(&cautious).await;
    let first = cautious
        .population
        .register(
            &ctx(),
            &draft(request("QDN-H01", "MZ001", "吴阿妹", Some(&woman(1)))),
        )
        .await
        .unwrap();
    let second = cautious
        .population
        .register(&ctx(), &draft(request("QDN-H02", "ZY-77", "吴阿妹", None)))
        .await
        .unwrap();
    assert_ne!(
        first.person_id, second.person_id,
        "below the cautious link threshold"
    );

    // The region lowers the link threshold back to the default, and re-matches.
    let exchange = db.exchange().await;
    let operator = hie_core::context::RequestContext::bulk_load("ops", "threshold change");
    let dry = exchange
        .population
        .rematch_batch(&operator, None, 100, true)
        .await
        .unwrap();
    assert_eq!((dry.processed, dry.moved), (2, 1));
    let (_, records) = exchange
        .population
        .person(&ctx(), &first.person_id)
        .await
        .unwrap();
    assert_eq!(records.len(), 1, "a dry run changes nothing");

    let done = exchange
        .population
        .rematch_batch(&operator, None, 1, false)
        .await
        .unwrap();
    assert_eq!(done.processed, 1);
    let rest = exchange
        .population
        .rematch_batch(&operator, done.last.as_ref(), 1, false)
        .await
        .unwrap();
    assert_eq!(rest.processed, 1);
    let end = exchange
        .population
        .rematch_batch(&operator, rest.last.as_ref(), 1, false)
        .await
        .unwrap();
    assert_eq!((end.processed, end.last), (0, None));
    assert_eq!(done.moved + rest.moved, 1);
    let local = |org: &str, n: &str| {
        hie_core::domain::Identifier::parse(&format!("urn:hie:org:{org}:patient"), n).unwrap()
    };
    let (one, _) = exchange
        .population
        .resolve(&ctx(), &local("QDN-H01", "MZ001"))
        .await
        .unwrap();
    let (other, _) = exchange
        .population
        .resolve(&ctx(), &local("QDN-H02", "ZY-77"))
        .await
        .unwrap();
    assert_eq!(one, other, "the records are one person now");
}

async fn a_model_trained_on_the_registry_is_stored_with_a_version_and_used(db: TestDb) {
    let exchange = db.exchange().await;
    register_organisations(&exchange).await;
    for n in 0..30 {
        let name = ["吴阿妹", "杨秀英", "龙榜", "石金花", "潘老当"][n as usize % 5];
        for (organisation, local) in [("QDN-H01", format!("MZ{n}")), ("QDN-H02", format!("ZY{n}"))] {
            exchange
                .population
                .register(
                    &ctx(),
                    &draft(request(organisation, &local, name, Some(&woman(n)))),
                )
                .await
                .unwrap();
        }
    }
    let (version, trained) = exchange
        .population
        .train_model(&steward(), &hie_population::domain::linkage::run::Quiet)
        .await
        .unwrap();
    assert_eq!(version, 1);
    assert_eq!(trained.model.trained_on_records, 60);
    assert!(trained.candidate_pairs >= 30, "{}", trained.candidate_pairs);
    // The rules are chosen from the registry's records and travel with the model.
    assert!(!trained.model.blocking_rules.is_empty());
    assert!(trained.choice.is_some());
    // The records have their keys under the new rules too, before any server takes them up.
    let built_in = hie_population::domain::linkage::blocking::DEFAULT_RULES;
    let expected = if trained
        .model
        .blocking_rules
        .iter()
        .all(|rule| built_in.contains(&rule.as_str()))
    {
        0
    } else {
        60
    };
    assert_eq!(
        trained.records_rekeyed, expected,
        "{:?}",
        trained.model.blocking_rules
    );
    let (again, _) = exchange
        .population
        .train_model(&steward(), &hie_population::domain::linkage::run::Quiet)
        .await
        .unwrap();
    assert_eq!(again, 2, "each training is a new version");
    // Each stored model is in the audit trail; a clinician may not train one, and that is there too.
    let refused = exchange
        .population
        .train_model(&ctx(), &hie_population::domain::linkage::run::Quiet)
        .await;
    assert!(matches!(refused, Err(Error::PermissionDenied(_))), "{refused:?}");
    exchange.access.audit().flush().await.unwrap();
    let (permitted, denied): (i64, i64) = sqlx::query_as(
        "SELECT SUM(CASE WHEN outcome = 'permitted' THEN 1 ELSE 0 END), SUM(CASE WHEN outcome = 'denied' THEN 1 ELSE 0 END) \
         FROM audit_events WHERE action = 'population.model.train'",
    )
    .fetch_one(exchange.database.pool())
    .await
    .unwrap();
    assert_eq!((permitted, denied), (2, 1));
    use hie_population::domain::Matcher;
    assert_eq!(
        exchange.population.matcher().model_version(),
        0,
        "the built-in model until reloaded"
    );
    assert_eq!(exchange.population.reload_matcher().await.unwrap(), Some(2));
    assert_eq!(
        exchange.population.matcher().model_version(),
        2,
        "a running registry takes up the newest"
    );
    assert_eq!(
        exchange.population.reload_matcher().await.unwrap(),
        None,
        "nothing newer"
    );
    // Blocking by the trained model's rules, a third hospital's record of a registered woman
    // still finds her.
    let known = exchange
        .population
        .resolve(
            &ctx(),
            &hie_core::domain::Identifier::parse("urn:hie:org:QDN-H01:patient", "MZ7").unwrap(),
        )
        .await
        .unwrap()
        .0;
    let again = exchange
        .population
        .register(&ctx(), &draft(request("QDN-T01", "T7", "龙榜", Some(&woman(7)))))
        .await
        .unwrap();
    assert_eq!(
        again.person_id,
        known,
        "{:?}",
        exchange.population.matcher().blocking_rules()
    );
    let thresholds = hie_population::domain::MatchThresholds::default();
    let matcher = hie_population::load_matcher(&exchange.database, thresholds)
        .await
        .unwrap();
    assert_eq!(matcher.model_version(), 2);
}

async fn a_blocking_rule_that_does_not_parse_keeps_the_exchange_from_starting(db: TestDb) {
    let mut settings = db.settings();
    settings.matching.blocking_rules = vec!["phone".into(), "birth_date+nickname".into()];
    let Err(error) = Exchange::open(&settings).await else {
        panic!("the exchange started")
    };
    let message = error.to_string();
    assert!(
        message.contains("blocking_rules[1]") && message.contains("'nickname'"),
        "{message}"
    );
}

async fn a_hospitals_statement_outranks_a_township_centres_newer_one(db: TestDb) {
    let exchange = db.exchange().await;
    register_organisations(&exchange).await;
    let population = &exchange.population;
    let hospital = population
        .register(
            &ctx(),
            &draft(request("QDN-H01", "MZ001", "吴阿妹", Some(&woman(1)))),
        )
        .await
        .unwrap();
    // The township centre registers her later, with a phone of its own.
    let mut centre = request("QDN-T01", "JK001", "吴阿妹", Some(&woman(1)));
    centre.demographics.as_mut().unwrap().phone = "13900000000".into();
    let joined = population.register(&ctx(), &draft(centre)).await.unwrap();
    assert_eq!(joined.person_id, hospital.person_id);
    let stored_phone = async || -> String {
        let (phone,): (String,) = sqlx::query_as("SELECT phone FROM persons WHERE id = $1")
            .bind(hospital.person_id.as_str())
            .fetch_one(exchange.database.pool())
            .await
            .unwrap();
        phone
    };
    let hospital_phone = request("QDN-H01", "MZ001", "吴阿妹", Some(&woman(1)))
        .demographics
        .unwrap()
        .phone;
    assert_eq!(
        stored_phone().await,
        hospital_phone,
        "the stored golden record keeps the hospital's phone"
    );
    let (person, _) = population.person(&ctx(), &hospital.person_id).await.unwrap();
    assert_eq!(person.demographics.phone.unwrap().as_str(), hospital_phone);
    let source = person
        .demographics_sources
        .iter()
        .find(|s| s.field == "phone")
        .unwrap();
    assert_eq!(source.source_record_id, hospital.source_record_id);

    // The hospital updates its record with a new phone: a hospital's newest statement wins.
    let mut moved = request("QDN-H01", "MZ001", "吴阿妹", Some(&woman(1)));
    moved.demographics.as_mut().unwrap().phone = "13700000000".into();
    population.register(&ctx(), &draft(moved)).await.unwrap();
    assert_eq!(stored_phone().await, "13700000000");
}

async fn a_review_settled_by_a_merge_is_no_longer_listed(db: TestDb) {
    let exchange = cautious_exchange(&db).await;
    register_organisations(&exchange).await;
    let population = &exchange.population;
    let first = population
        .register(
            &ctx(),
            &draft(request("QDN-H01", "MZ001", "吴阿妹", Some(&woman(1)))),
        )
        .await
        .unwrap();
    let second = population
        .register(&ctx(), &draft(request("QDN-H02", "ZY-77", "吴阿妹", None)))
        .await
        .unwrap();
    assert_eq!(second.pending_reviews, 1);
    population
        .merge_persons(
            &steward(),
            &second.person_id,
            &first.person_id,
            "same woman, found by search",
        )
        .await
        .unwrap();
    let (reviews, _) = population
        .pending_reviews(&steward(), PageSize::parse(10).unwrap(), None)
        .await
        .unwrap();
    assert!(reviews.is_empty(), "the merge settled it: {reviews:?}");
}

/// Sets a person's directives as SetConsent would.
async fn set_consent(
    exchange: &Exchange,
    person: &PersonId,
    directives: &hie_access::domain::consent::ConsentDirectives,
) {
    let consent = exchange.access.consent();
    let subject =
        hie_access::Subject::new(hie_core::vocabulary::AuditAction::SetConsent, "consent").person(person);
    exchange
        .access
        .audit()
        .write(&steward(), subject, Ok(()), async |unit| {
            consent.set_in(unit, person, directives, "test").await
        })
        .await
        .unwrap();
}

async fn consent_follows_merge_unmerge_link_and_unlink(db: TestDb) {
    use hie_access::domain::consent::{ConsentDirectives, DataCategory};

    let exchange = db.exchange().await;
    register_organisations(&exchange).await;
    let population = &exchange.population;
    let consent = exchange.access.consent();
    let opted_out = register_person(&exchange, "QDN-H01", "MZ001", "吴阿妹", 1).await;
    let sharing = register_person(&exchange, "QDN-H01", "MZ002", "杨秀英", 2).await;
    let opt_out = ConsentDirectives {
        sharing: Some(false),
        denied_organisations: ["QDN-H02".to_owned()].into(),
        ..Default::default()
    };
    let share = ConsentDirectives {
        sharing: Some(true),
        consented_categories: [DataCategory::MentalHealth].into(),
        ..Default::default()
    };
    set_consent(&exchange, &opted_out, &opt_out).await;
    set_consent(&exchange, &sharing, &share).await;

    // Merging the opted-out person into the sharing one keeps the opt-out.
    let merge = population
        .merge_persons(&steward(), &opted_out, &sharing, "one woman")
        .await
        .unwrap();
    let merged = consent.directives(sharing.as_str()).await.unwrap();
    assert_eq!(merged.sharing, Some(false));
    assert_eq!(merged.denied_organisations, opt_out.denied_organisations);
    assert!(merged.consented_categories.is_empty());

    // Unmerged, each has its own again.
    population
        .unmerge_persons(&steward(), &merge.id, "two women")
        .await
        .unwrap();
    assert_eq!(consent.directives(sharing.as_str()).await.unwrap(), share);
    assert_eq!(consent.directives(opted_out.as_str()).await.unwrap(), opt_out);

    // Unlinked, a record's new person starts with the directives of the one it left.
    let second = population
        .register(
            &ctx(),
            &draft(request("QDN-H02", "ZY-01", "吴阿妹", Some(&woman(1)))),
        )
        .await
        .unwrap();
    assert_eq!(second.person_id, opted_out);
    let alone = population
        .unlink_record(&steward(), &second.source_record_id, "not her")
        .await
        .unwrap();
    assert_eq!(consent.directives(alone.as_str()).await.unwrap(), opt_out);

    // Linking a person's only record elsewhere merges that person: the directives combine.
    population
        .link_record(&steward(), &second.source_record_id, &sharing, "her after all")
        .await
        .unwrap();
    assert_eq!(
        consent.directives(sharing.as_str()).await.unwrap().sharing,
        Some(false)
    );
}

/// Source records linked to a person that was merged away: there must never be any.
async fn records_under_merged_persons(exchange: &Exchange) -> i64 {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM source_records s JOIN persons p ON p.id = s.person_id WHERE p.merged_into IS NOT NULL",
    )
    .fetch_one(exchange.database.pool())
    .await
    .unwrap();
    n
}

async fn two_opposite_merges_of_one_pair_take_turns(db: TestDb) {
    let exchange = db.exchange().await;
    register_organisations(&exchange).await;
    for round in 0..5 {
        let a = register_person(&exchange, "QDN-H01", &format!("A{round}"), "吴阿妹", 10 + round).await;
        let b = register_person(&exchange, "QDN-H01", &format!("B{round}"), "杨秀英", 30 + round).await;
        let population = &exchange.population;
        let (steward_1, steward_2) = (steward(), steward());
        let (ab, ba) = tokio::join!(
            population.merge_persons(&steward_1, &a, &b, "duplicate"),
            population.merge_persons(&steward_2, &b, &a, "duplicate"),
        );
        assert_eq!(
            usize::from(ab.is_ok()) + usize::from(ba.is_ok()),
            1,
            "exactly one merge wins: {ab:?} {ba:?}"
        );
        let loser = if ab.is_ok() { ba } else { ab };
        assert!(
            matches!(loser, Err(Error::FailedPrecondition { .. } | Error::Conflict(_))),
            "{loser:?}"
        );
        let merged =
            usize::from(is_merged(&exchange, &a).await) + usize::from(is_merged(&exchange, &b).await);
        assert_eq!(merged, 1, "one of the pair is merged into the other, not both");
        assert_eq!(records_under_merged_persons(&exchange).await, 0);
    }
}

/// Whether `person` was merged into someone.
async fn is_merged(exchange: &Exchange, person: &PersonId) -> bool {
    let (into,): (Option<String>,) = sqlx::query_as("SELECT merged_into FROM persons WHERE id = $1")
        .bind(person.as_str())
        .fetch_one(exchange.database.pool())
        .await
        .unwrap();
    into.is_some()
}

async fn a_registration_never_joins_a_person_a_concurrent_merge_emptied(db: TestDb) {
    let exchange = db.exchange().await;
    register_organisations(&exchange).await;
    for round in 0..4u32 {
        let a = register_person(&exchange, "QDN-H01", &format!("A{round}"), "吴阿妹", 50 + round).await;
        let b = register_person(&exchange, "QDN-H01", &format!("B{round}"), "杨秀英", 70 + round).await;
        let population = exchange.population.clone();
        let merge = {
            let (population, a, b) = (population.clone(), a.clone(), b.clone());
            tokio::spawn(async move { population.merge_persons(&steward(), &a, &b, "duplicate").await })
        };
        // The same woman as `a`, at other organisations, registering while the merge runs.
        let registrations: Vec<_> = (0..6)
            .map(|i| {
                let population = population.clone();
                let organisation = ["QDN-H02", "QDN-T01"][i % 2];
                let local = format!("R{round}-{i}");
                tokio::spawn(async move {
                    population
                        .register(
                            &ctx(),
                            &draft(request(organisation, &local, "吴阿妹", Some(&woman(50 + round)))),
                        )
                        .await
                })
            })
            .collect();
        merge.await.unwrap().unwrap();
        for registration in registrations {
            // Registered before the merge, it joined `a` and the merge moved it; after, it joined
            // `b`; never does it stay with a person merged away.
            let record = registration.await.unwrap().unwrap().source_record_id;
            let (now_with,): (String,) = sqlx::query_as("SELECT person_id FROM source_records WHERE id = $1")
                .bind(record.as_str())
                .fetch_one(exchange.database.pool())
                .await
                .unwrap();
            assert_eq!(
                now_with,
                b.as_str(),
                "every record of her ends with the surviving person"
            );
        }
        assert_eq!(records_under_merged_persons(&exchange).await, 0);
    }
}

async fn a_registration_never_overwrites_a_concurrent_stewards_link(db: TestDb) {
    let exchange = db.exchange().await;
    register_organisations(&exchange).await;
    for round in 0..4u32 {
        let a = register_person(&exchange, "QDN-H01", &format!("A{round}"), "吴阿妹", 90 + round).await;
        let b = register_person(&exchange, "QDN-H01", &format!("B{round}"), "杨秀英", 110 + round).await;
        let local = format!("ZY{round}");
        let record = exchange
            .population
            .register(
                &ctx(),
                &draft(request("QDN-H02", &local, "吴阿妹", Some(&woman(90 + round)))),
            )
            .await
            .unwrap();
        assert_eq!(record.person_id, a);
        let population = exchange.population.clone();
        let (the_steward, clerk) = (steward(), ctx());
        let again = draft(request("QDN-H02", &local, "吴阿妹", Some(&woman(90 + round))));
        let (linked, registered) = tokio::join!(
            population.link_record(
                &the_steward,
                &record.source_record_id,
                &b,
                "the steward knows better"
            ),
            population.register(&clerk, &again),
        );
        linked.unwrap();
        registered.unwrap();
        let (person, _) = exchange.population.person(&ctx(), &b).await.unwrap();
        assert_eq!(person.id, b);
        let mut conn = exchange.database.pool().acquire().await.unwrap();
        let (now_with,): (String,) = sqlx::query_as("SELECT person_id FROM source_records WHERE id = $1")
            .bind(record.source_record_id.as_str())
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(now_with, b.as_str(), "the steward's link stands");
    }
}

/// Records with neither phone nor identity number: the built-in rules' phone and identity keys
/// find nothing, so training chooses other rules, gives every record its keys under them, and a
/// matcher blocking by them finds the records registered before. The passports half of them
/// carry are compared as an identifier system of their own.
async fn records_get_keys_under_rules_chosen_from_them_and_are_found_by_them(db: TestDb) {
    let exchange = db.exchange().await;
    register_organisations(&exchange).await;
    let bare = |organisation: &str, local: &str, name: &str, n: u32| {
        let mut request = request(organisation, local, name, None);
        let demographics = request.demographics.as_mut().unwrap();
        demographics.phone.clear();
        demographics.birth_date = format!("19{:02}-0{}-1{}", 40 + n, 1 + n % 9, n % 10);
        demographics.address.as_mut().unwrap().line = format!("凯里市北京东路{n}号");
        // Half carry a passport: an identifier system the model compares as a field of its own.
        if n.is_multiple_of(2) {
            request.identifiers.push(hie_proto::population::Identifier {
                system: "urn:hie:id:passport".into(),
                value: format!("E{:07}", 1_000 + n),
            });
        }
        request
    };
    let names = [
        "吴阿妹",
        "杨秀英",
        "龙榜",
        "石金花",
        "潘老当",
        "欧阳明",
        "王芳",
        "李强",
    ];
    for n in 0..40u32 {
        let name = names[n as usize % names.len()];
        for (organisation, local) in [("QDN-H01", format!("MZ{n}")), ("QDN-H02", format!("ZY{n}"))] {
            exchange
                .population
                .register(&ctx(), &draft(bare(organisation, &local, name, n)))
                .await
                .unwrap();
        }
    }
    let (_, trained) = exchange
        .population
        .train_model(&steward(), &hie_population::domain::linkage::run::Quiet)
        .await
        .unwrap();
    let rules = trained.model.blocking_rules.clone();
    assert!(
        rules
            .iter()
            .all(|r| !r.contains("phone") && !r.contains("resident_id")),
        "{rules:?}"
    );
    assert_eq!(trained.records_rekeyed, 80, "{rules:?}");
    assert_eq!(
        trained.model.schema.identifiers(),
        &["urn:hie:id:passport".into()],
        "the registry's passports are compared"
    );
    exchange.population.reload_matcher().await.unwrap();
    assert_eq!(
        exchange
            .population
            .matcher()
            .blocking_rules()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        rules
    );
    let known = exchange
        .population
        .resolve(
            &ctx(),
            &hie_core::domain::Identifier::parse("urn:hie:org:QDN-H01:patient", "MZ5").unwrap(),
        )
        .await
        .unwrap()
        .0;
    let third = exchange
        .population
        .register(&ctx(), &draft(bare("QDN-T01", "T5", names[5], 5)))
        .await
        .unwrap();
    assert_eq!(third.person_id, known);
}
