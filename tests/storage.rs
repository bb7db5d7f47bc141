//! The storage conformance suite: written once, run on SQLite and on PostgreSQL, each test on a
//! fresh database. It drives the services directly, below the gRPC layer.

use hie_core::Error;
use hie_core::domain::{BoundedText, DivisionCode, Identifier, OrganisationCode, PersonName};
use hie_core::page::{PageSize, PageToken};
use hie_directory::domain::{
    HospitalGrade, OrganisationDraft, OrganisationFilter, OrganisationKind, PractitionerDraft,
    PractitionerRole,
};
use hie_population::domain::{NameQuery, RegistrationOutcome, SearchCriteria};

use crate::harness::{
    TestDb, count, ctx, draft, on_every_backend, register_organisations, request, steward, woman,
};

on_every_backend!(
    migrations_apply_twice_without_harm,
    organisations_are_registered_updated_and_listed_in_pages,
    a_duplicate_organisation_code_is_refused_and_the_first_is_kept,
    registering_a_practitioner_twice_with_one_request_id_makes_one,
    the_same_resident_id_from_two_hospitals_joins_one_person,
    the_same_local_number_again_updates_its_record_and_never_adds_one,
    a_record_whose_resident_id_changes_leaves_for_its_own_person,
    a_record_from_an_unknown_or_inactive_organisation_writes_nothing,
    a_failed_batch_writes_nothing,
    search_combines_criteria_and_pages_in_a_stable_order,
    concurrent_registrations_of_one_new_resident_make_one_person,
    concurrent_resolves_each_get_their_own_answer,
    no_statement_or_lock_wait_holds_a_connection_past_its_limit,
    a_unit_of_work_commits_its_change_audit_and_events_together_or_none_of_them,
);

async fn migrations_apply_twice_without_harm(db: TestDb) {
    let exchange = db.exchange().await;
    register_organisations(&exchange).await;
    exchange.database.migrate().await.unwrap();
    assert_eq!(count(&exchange, "organisations").await, 4);
}

fn organisation(code: &str, kind: OrganisationKind, division: &str) -> OrganisationDraft {
    OrganisationDraft::new(
        "organisation",
        OrganisationCode::parse(code).unwrap(),
        BoundedText::parse_required("某卫生机构", 100).unwrap(),
        kind,
        (kind == OrganisationKind::Hospital).then_some(HospitalGrade::Ungraded),
        DivisionCode::parse(division).unwrap(),
        true,
    )
    .unwrap()
}

async fn organisations_are_registered_updated_and_listed_in_pages(db: TestDb) {
    let exchange = db.exchange().await;
    let directory = &exchange.directory;
    for i in 0..5 {
        directory
            .register_organisation(
                &steward(),
                organisation(&format!("H{i}"), OrganisationKind::Hospital, "522601"),
            )
            .await
            .unwrap();
    }
    directory
        .register_organisation(
            &steward(),
            organisation("T1", OrganisationKind::VillageClinic, "522631"),
        )
        .await
        .unwrap();
    directory
        .register_organisation(
            &steward(),
            organisation("GY1", OrganisationKind::Hospital, "520102"),
        )
        .await
        .unwrap();

    let mut changed = organisation("H3", OrganisationKind::Hospital, "522601");
    changed.active = false;
    let updated = directory.update_organisation(&steward(), changed).await.unwrap();
    assert!(!updated.is_active());
    let stored = directory
        .get_organisation(&OrganisationCode::parse("H3").unwrap())
        .await
        .unwrap();
    assert_eq!(stored, updated);

    let filter = OrganisationFilter {
        kind: Some(OrganisationKind::Hospital),
        division: Some(DivisionCode::parse("522600").unwrap()),
        include_inactive: false,
    };
    let size = PageSize::parse(2).unwrap();
    let (first, token) = directory.list_organisations(&filter, size, None).await.unwrap();
    let (second, token) = directory.list_organisations(&filter, size, token).await.unwrap();
    assert!(
        token.is_none(),
        "four active Qiandongnan hospitals make two pages"
    );
    let codes: Vec<&str> = first.iter().chain(&second).map(|o| o.code().as_str()).collect();
    assert_eq!(codes, ["H0", "H1", "H2", "H4"]);

    let everything = OrganisationFilter {
        include_inactive: true,
        ..OrganisationFilter::default()
    };
    let (all, _) = directory
        .list_organisations(&everything, PageSize::parse(200).unwrap(), None)
        .await
        .unwrap();
    assert_eq!(all.len(), 7);
}

async fn a_duplicate_organisation_code_is_refused_and_the_first_is_kept(db: TestDb) {
    let exchange = db.exchange().await;
    exchange
        .directory
        .register_organisation(
            &steward(),
            organisation("QDN-H01", OrganisationKind::Hospital, "522601"),
        )
        .await
        .unwrap();
    let again = exchange
        .directory
        .register_organisation(
            &steward(),
            organisation("QDN-H01", OrganisationKind::Insurer, "522631"),
        )
        .await;
    assert!(matches!(again, Err(Error::AlreadyExists(_))));
    let kept = exchange
        .directory
        .get_organisation(&OrganisationCode::parse("QDN-H01").unwrap())
        .await
        .unwrap();
    assert_eq!(kept.draft.kind, OrganisationKind::Hospital);
}

async fn registering_a_practitioner_twice_with_one_request_id_makes_one(db: TestDb) {
    let exchange = db.exchange().await;
    register_organisations(&exchange).await;
    let practitioner = PractitionerDraft {
        name: BoundedText::parse_required("吴医生", 50).unwrap(),
        organisation_code: OrganisationCode::parse("QDN-H01").unwrap(),
        role: PractitionerRole::Physician,
        specialty: BoundedText::parse("心血管内科", 100).unwrap(),
        active: true,
    };
    let first = exchange
        .directory
        .register_practitioner(&steward(), "req-1", practitioner.clone())
        .await
        .unwrap();
    let retry = exchange
        .directory
        .register_practitioner(&steward(), "req-1", practitioner.clone())
        .await
        .unwrap();
    assert_eq!(first, retry);
    let other = exchange
        .directory
        .register_practitioner(&steward(), "req-2", practitioner)
        .await
        .unwrap();
    assert_ne!(first.id, other.id);
    assert_eq!(count(&exchange, "practitioners").await, 2);
    let (listed, _) = exchange
        .directory
        .list_practitioners(
            Some(&OrganisationCode::parse("QDN-H01").unwrap()),
            PageSize::parse(10).unwrap(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
}

async fn the_same_resident_id_from_two_hospitals_joins_one_person(db: TestDb) {
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
    let second = population
        .register(
            &ctx(),
            &draft(request("QDN-H02", "ZY-77", "吴阿妹", Some(&woman(1)))),
        )
        .await
        .unwrap();
    let stranger = population
        .register(
            &ctx(),
            &draft(request("QDN-H02", "ZY-78", "吴阿妹", Some(&woman(2)))),
        )
        .await
        .unwrap();
    assert_eq!(first.outcome, RegistrationOutcome::CreatedPerson);
    assert_eq!(second.outcome, RegistrationOutcome::JoinedPerson);
    assert_eq!(first.person_id, second.person_id);
    assert_eq!(stranger.outcome, RegistrationOutcome::CreatedPerson);
    assert_ne!(stranger.person_id, first.person_id);

    let local = Identifier::parse("urn:hie:org:QDN-H02:patient", "ZY-77").unwrap();
    let (person, references) = population.resolve(&ctx(), &local).await.unwrap();
    assert_eq!(person, first.person_id);
    let pairs: Vec<(String, String, &str)> = references
        .iter()
        .map(|r| {
            (
                r.identifier.system_uri(),
                r.identifier.value().to_owned(),
                r.organisation.as_str(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            ("urn:hie:id:resident".to_owned(), woman(1), "QDN-H01"),
            ("urn:hie:id:resident".to_owned(), woman(1), "QDN-H02"),
            (
                "urn:hie:org:QDN-H01:patient".to_owned(),
                "MZ001".to_owned(),
                "QDN-H01"
            ),
            (
                "urn:hie:org:QDN-H02:patient".to_owned(),
                "ZY-77".to_owned(),
                "QDN-H02"
            ),
        ]
    );
    let (person, records) = population.person(&ctx(), &first.person_id).await.unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(
        person.identifiers.len(),
        3,
        "the identity number once, and two local numbers"
    );
}

async fn the_same_local_number_again_updates_its_record_and_never_adds_one(db: TestDb) {
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
    let again = population
        .register(
            &ctx(),
            &draft(request("QDN-H01", "MZ001", "吴阿美", Some(&woman(1)))),
        )
        .await
        .unwrap();
    assert_eq!(again.outcome, RegistrationOutcome::UpdatedRecord);
    assert_eq!(again.source_record_id, first.source_record_id);
    assert_eq!(again.person_id, first.person_id);
    assert_eq!(count(&exchange, "source_records").await, 1);
    assert_eq!(count(&exchange, "persons").await, 1);
    let (person, records) = population.person(&ctx(), &first.person_id).await.unwrap();
    assert_eq!(person.demographics.name.as_str(), "吴阿美");
    assert_eq!(records[0].demographics.name.as_str(), "吴阿美");
}

async fn a_record_whose_resident_id_changes_leaves_for_its_own_person(db: TestDb) {
    let exchange = db.exchange().await;
    register_organisations(&exchange).await;
    let population = &exchange.population;
    let h1 = population
        .register(
            &ctx(),
            &draft(request("QDN-H01", "MZ001", "吴阿妹", Some(&woman(1)))),
        )
        .await
        .unwrap();
    let h2 = population
        .register(
            &ctx(),
            &draft(request("QDN-H02", "ZY-77", "吴阿妹", Some(&woman(1)))),
        )
        .await
        .unwrap();
    assert_eq!(h1.person_id, h2.person_id);
    // QDN-H02 corrects a mistyped identity number: its record now describes someone else.
    let corrected = population
        .register(
            &ctx(),
            &draft(request("QDN-H02", "ZY-77", "吴阿妹", Some(&woman(3)))),
        )
        .await
        .unwrap();
    assert_ne!(corrected.person_id, h1.person_id);
    assert_eq!(corrected.source_record_id, h2.source_record_id);
    let (_, records) = population.person(&ctx(), &h1.person_id).await.unwrap();
    assert_eq!(records.len(), 1);
    let by_new_id = Identifier::parse("urn:hie:id:resident", &woman(3)).unwrap();
    assert_eq!(
        population.resolve(&ctx(), &by_new_id).await.unwrap().0,
        corrected.person_id
    );
    assert_eq!(
        count(&exchange, "source_records").await,
        2,
        "no record is ever deleted"
    );
}

async fn a_record_from_an_unknown_or_inactive_organisation_writes_nothing(db: TestDb) {
    let exchange = db.exchange().await;
    register_organisations(&exchange).await;
    for organisation in ["QDN-H77", "QDN-H09"] {
        let refused = exchange
            .population
            .register(
                &ctx(),
                &draft(request(organisation, "MZ001", "吴阿妹", Some(&woman(1)))),
            )
            .await;
        assert!(
            matches!(refused, Err(Error::FailedPrecondition { ref field, .. }) if field == "organisation_code"),
            "{refused:?}"
        );
    }
    assert_eq!(count(&exchange, "source_records").await, 0);
    assert_eq!(count(&exchange, "persons").await, 0);
}

async fn a_failed_batch_writes_nothing(db: TestDb) {
    let exchange = db.exchange().await;
    register_organisations(&exchange).await;
    let batch = [
        draft(request("QDN-H01", "MZ001", "吴阿妹", Some(&woman(1)))),
        draft(request("QDN-H09", "MZ002", "吴阿妹", Some(&woman(2)))),
    ];
    assert!(exchange.population.register_batch(&ctx(), &batch).await.is_err());
    assert_eq!(count(&exchange, "source_records").await, 0);
    assert_eq!(count(&exchange, "person_identifiers").await, 0);
}

async fn search_combines_criteria_and_pages_in_a_stable_order(db: TestDb) {
    let exchange = db.exchange().await;
    register_organisations(&exchange).await;
    let population = &exchange.population;
    let mut expected = Vec::new();
    for n in 0..7 {
        let name = if n % 2 == 0 { "杨秀英" } else { "杨秀" };
        let registration = population
            .register(
                &ctx(),
                &draft(request("QDN-H01", &format!("MZ{n}"), name, Some(&woman(n)))),
            )
            .await
            .unwrap();
        expected.push(registration.person_id);
    }
    let mut elsewhere = request("QDN-H01", "MZ-X", "杨秀英", Some(&woman(100)));
    elsewhere
        .demographics
        .as_mut()
        .unwrap()
        .address
        .as_mut()
        .unwrap()
        .division_code = "522631".into();
    population.register(&ctx(), &draft(elsewhere)).await.unwrap();
    population
        .register(
            &ctx(),
            &draft(request("QDN-H01", "MZ-W", "王芳", Some(&woman(101)))),
        )
        .await
        .unwrap();

    let criteria = SearchCriteria {
        name: Some(NameQuery::Prefix(PersonName::parse("杨").unwrap())),
        division: Some(DivisionCode::parse("522601").unwrap()),
        ..SearchCriteria::default()
    };
    let mut found = Vec::new();
    let mut token: Option<PageToken> = None;
    loop {
        let (page, next) = population
            .search(&ctx(), &criteria, PageSize::parse(3).unwrap(), token)
            .await
            .unwrap();
        found.extend(page.into_iter().map(|p| p.person.id));
        match next {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    expected.sort();
    assert_eq!(
        found, expected,
        "every Yang in Kaili once, in id order, across pages"
    );

    let exact = SearchCriteria {
        name: Some(NameQuery::Exact(PersonName::parse("杨秀英").unwrap())),
        ..SearchCriteria::default()
    };
    let (page, _) = population
        .search(&ctx(), &exact, PageSize::parse(200).unwrap(), None)
        .await
        .unwrap();
    assert_eq!(page.len(), 5, "four in Kaili and one in Liping");

    let by_identifier = SearchCriteria {
        identifier: Some(Identifier::parse("urn:hie:id:resident", &woman(101)).unwrap()),
        ..SearchCriteria::default()
    };
    let (page, _) = population
        .search(&ctx(), &by_identifier, PageSize::parse(10).unwrap(), None)
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].person.demographics.name.as_str(), "王芳");

    let born = hie_core::domain::BirthDate::parse("1985-03-14").unwrap();
    let later = hie_core::domain::BirthDate::parse("1990-01-01").unwrap();
    let in_range = SearchCriteria {
        born_from: Some(born),
        born_to: Some(born),
        ..SearchCriteria::default()
    };
    assert_eq!(
        population
            .search(&ctx(), &in_range, PageSize::parse(200).unwrap(), None)
            .await
            .unwrap()
            .0
            .len(),
        9
    );
    let out_of_range = SearchCriteria {
        born_from: Some(later),
        ..SearchCriteria::default()
    };
    assert!(
        population
            .search(&ctx(), &out_of_range, PageSize::parse(200).unwrap(), None)
            .await
            .unwrap()
            .0
            .is_empty()
    );
}

async fn concurrent_registrations_of_one_new_resident_make_one_person(db: TestDb) {
    let exchange = db.exchange().await;
    register_organisations(&exchange).await;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, organisation) in ["QDN-H01", "QDN-H02", "QDN-T01"]
        .into_iter()
        .cycle()
        .take(12)
        .enumerate()
    {
        let population = exchange.population.clone();
        tasks.spawn(async move {
            let request = request(organisation, &format!("N{i}"), "龙榜", Some(&woman(9)));
            population.register(&ctx(), &draft(request)).await
        });
    }
    let mut persons = std::collections::BTreeSet::new();
    while let Some(result) = tasks.join_next().await {
        persons.insert(result.unwrap().unwrap().person_id);
    }
    assert_eq!(persons.len(), 1);
    assert_eq!(count(&exchange, "persons").await, 1);
    assert_eq!(count(&exchange, "source_records").await, 12);
}

async fn concurrent_resolves_each_get_their_own_answer(db: TestDb) {
    let exchange = db.exchange().await;
    register_organisations(&exchange).await;
    let mut expected = Vec::new();
    for n in 0..20 {
        let registration = exchange
            .population
            .register(
                &ctx(),
                &draft(request("QDN-H01", &format!("MZ{n}"), "龙榜", Some(&woman(n)))),
            )
            .await
            .unwrap();
        expected.push(registration.person_id);
    }
    // Many resolves at once are answered in shared batches; each must still get its own person,
    // and an unknown identifier in the same batch its own NOT_FOUND.
    let mut tasks = tokio::task::JoinSet::new();
    for round in 0..5 {
        for n in 0..21u32 {
            let population = exchange.population.clone();
            tasks.spawn(async move {
                let by_local = round % 2 == 0;
                let identifier = if by_local {
                    Identifier::parse("urn:hie:org:QDN-H01:patient", &format!("MZ{n}")).unwrap()
                } else {
                    Identifier::parse("urn:hie:id:resident", &woman(n)).unwrap()
                };
                (n, population.resolve(&ctx(), &identifier).await)
            });
        }
    }
    while let Some(joined) = tasks.join_next().await {
        let (n, result) = joined.unwrap();
        match expected.get(n as usize) {
            Some(person) => {
                let (resolved, references) = result.unwrap();
                assert_eq!(&resolved, person);
                assert_eq!(references.len(), 2, "the identity number and the local number");
            }
            None => assert!(matches!(result, Err(Error::NotFound(_))), "{result:?}"),
        }
    }
}

/// On PostgreSQL every pooled connection carries the limits' statement and lock timeouts, so that
/// a lock wait (a registration's, a merge's) ends in UNAVAILABLE instead of holding the connection.
async fn no_statement_or_lock_wait_holds_a_connection_past_its_limit(db: TestDb) {
    let mut settings = db.settings();
    settings.limits.lock_timeout_ms = 300;
    let exchange = hie_server::Exchange::open(&settings).await.unwrap();
    if exchange.database.backend() != hie_core::db::Backend::Postgres {
        return; // SQLite has one writer and its busy timeout; there is nothing else to bound.
    }
    let (lock_timeout,): (String,) = sqlx::query_as("SHOW lock_timeout")
        .fetch_one(exchange.database.pool())
        .await
        .unwrap();
    assert_eq!(lock_timeout, "300ms");
    // A lock held elsewhere: the wait ends after the timeout, as UNAVAILABLE.
    let mut holder = exchange.database.pool().begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(77)")
        .execute(&mut *holder)
        .await
        .unwrap();
    let waited = sqlx::query("SELECT pg_advisory_xact_lock(77)")
        .execute(exchange.database.pool())
        .await
        .map_err(Error::from);
    assert!(matches!(waited, Err(Error::Unavailable(_))), "{waited:?}");
    holder.rollback().await.unwrap();
}

/// The kit's write path: what a unit of work wrote, its audit event and its outbox events commit
/// together; a failed one leaves only the record of its failure, a refused one only the refusal.
async fn a_unit_of_work_commits_its_change_audit_and_events_together_or_none_of_them(db: TestDb) {
    use hie_access::{Subject, UnitOfWork};
    use hie_core::outbox::OutboxEvent;
    use hie_core::vocabulary::{AuditAction, EventType};

    let exchange = db.exchange().await;
    let audit = exchange.access.audit();
    let person = hie_core::id::PersonId::generate();
    let subject = || Subject::new(AuditAction::MergePersons, "person").person(&person);
    let announce = |unit: &mut UnitOfWork| {
        unit.emit(OutboxEvent::new(
            EventType::PersonMerged,
            Some(&person),
            None,
            &serde_json::json!({"person_id": person.as_str()}),
        ))
    };
    let write_row = async |unit: &mut UnitOfWork, id: &str| {
        sqlx::query("INSERT INTO job_checkpoints (job, position, updated_at) VALUES ($1, 'x', 0)")
            .bind(id.to_owned())
            .execute(unit.connection().await?)
            .await
            .map(drop)
            .map_err(Error::from)
    };

    let failed = audit
        .write(&steward(), subject(), Ok(()), async |unit| {
            write_row(unit, "failed").await?;
            announce(unit);
            Err::<(), _>(Error::Conflict("something got in the way".into()))
        })
        .await;
    assert!(matches!(failed, Err(Error::Conflict(_))), "{failed:?}");
    let refused = audit
        .write(&steward(), subject(), Err("not today".into()), async |unit| {
            write_row(unit, "refused").await
        })
        .await;
    assert!(matches!(refused, Err(Error::PermissionDenied(_))), "{refused:?}");
    assert_eq!(count(&exchange, "job_checkpoints").await, 0);
    assert_eq!(count(&exchange, "outbox_events").await, 0);

    audit
        .write(&steward(), subject(), Ok(()), async |unit| {
            write_row(unit, "written").await?;
            announce(unit);
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(count(&exchange, "job_checkpoints").await, 1);
    let mut conn = exchange.database.pool().acquire().await.unwrap();
    let events = hie_core::outbox::events(&mut conn, &[EventType::PersonMerged])
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].person_id.as_deref(), Some(person.as_str()));
    let outcomes: Vec<(String, String)> =
        sqlx::query_as("SELECT action, outcome FROM audit_events WHERE person_id = $1 ORDER BY sequence")
            .bind(person.as_str())
            .fetch_all(exchange.database.pool())
            .await
            .unwrap();
    let merge = AuditAction::MergePersons.code().to_owned();
    assert_eq!(
        outcomes,
        [
            (merge.clone(), "failed".to_owned()),
            (merge.clone(), "denied".to_owned()),
            (merge, "permitted".to_owned()),
        ]
    );
}
