//! The audit trail: every read and write of a person's data leaves one event, and the hash chain
//! finds an edited event and a deleted one.

use hie_access::ChainBreak;
use hie_core::domain::{Identifier, PersonName};
use hie_core::page::PageSize;
use hie_population::domain::{NameQuery, SearchCriteria};

use crate::harness::{TestDb, count, ctx, draft, on_every_backend, register_organisations, request, woman};

on_every_backend!(
    reads_wait_while_the_trail_cannot_be_written_and_no_event_is_lost,
    reads_and_writes_leave_one_event_each_and_the_chain_verifies,
    concurrent_audited_reads_keep_one_unbroken_chain,
    an_edited_event_is_named_and_a_deleted_one_is_a_gap,
    writes_stage_their_events_with_the_write_and_the_trail_chains_them,
);

/// A write's event is staged in the write's own transaction: a refused write leaves no staged
/// event, a committed one leaves exactly one, and the trail chains it (in the background, and
/// at the latest when flushed) into an intact chain.
async fn writes_stage_their_events_with_the_write_and_the_trail_chains_them(db: TestDb) {
    let exchange = db.exchange().await;
    register_organisations(&exchange).await;
    let population = &exchange.population;
    let many = 20;
    for n in 0..many {
        population
            .register(
                &ctx(),
                &draft(request("QDN-H01", &format!("MZ{n}"), "吴阿妹", Some(&woman(n)))),
            )
            .await
            .unwrap();
    }
    let refused = population
        .register(
            &ctx(),
            &draft(request("QDN-H09", "MZ1", "吴阿妹", Some(&woman(1)))),
        )
        .await;
    assert!(refused.is_err(), "QDN-H09 is inactive");
    let staged_or_chained = |staged: i64, chained: i64| staged + chained;
    let (staged,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_staged")
        .fetch_one(exchange.database.pool())
        .await
        .unwrap();
    let (chained,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE action = 'population.register'")
            .fetch_one(exchange.database.pool())
            .await
            .unwrap();
    assert!(
        staged_or_chained(staged, chained) >= i64::from(many),
        "{staged} staged, {chained} chained"
    );
    exchange.access.audit().flush().await.unwrap();
    let (staged,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_staged")
        .fetch_one(exchange.database.pool())
        .await
        .unwrap();
    assert_eq!(staged, 0, "a flush chains every staged event");
    let (registered,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM audit_events WHERE action = 'population.register' AND outcome = 'permitted'",
    )
    .fetch_one(exchange.database.pool())
    .await
    .unwrap();
    assert_eq!(
        registered,
        i64::from(many),
        "exactly one event per committed registration"
    );
    assert_eq!(
        exchange.access.audit().verify().await.unwrap(),
        Ok(count(&exchange, "audit_events").await)
    );
}

async fn reads_and_writes_leave_one_event_each_and_the_chain_verifies(db: TestDb) {
    let exchange = db.exchange().await;
    register_organisations(&exchange).await;
    // The directory's changes that set up the region are audited too; counted from here.
    let base = count(&exchange, "audit_events").await;
    let population = &exchange.population;
    let first = population
        .register(
            &ctx(),
            &draft(request("QDN-H01", "MZ1", "吴阿妹", Some(&woman(1)))),
        )
        .await
        .unwrap();
    population
        .register(
            &ctx(),
            &draft(request("QDN-H02", "ZY1", "吴阿妹", Some(&woman(1)))),
        )
        .await
        .unwrap();
    assert_eq!(
        count(&exchange, "audit_events").await - base,
        2,
        "one event per registration, in its transaction"
    );

    let local = Identifier::parse("urn:hie:org:QDN-H01:patient", "MZ1").unwrap();
    population.resolve(&ctx(), &local).await.unwrap();
    population.person(&ctx(), &first.person_id).await.unwrap();
    let by_name = SearchCriteria {
        name: Some(NameQuery::Exact(PersonName::parse("吴阿妹").unwrap())),
        ..Default::default()
    };
    population
        .search(&ctx(), &by_name, PageSize::parse(10).unwrap(), None)
        .await
        .unwrap();
    assert_eq!(count(&exchange, "audit_events").await - base, 5);

    // A refused registration leaves an event too, and nothing else.
    assert!(
        population
            .register(&ctx(), &draft(request("QDN-H09", "X1", "吴阿妹", None)))
            .await
            .is_err()
    );
    assert_eq!(count(&exchange, "audit_events").await - base, 6);
    let (failed,): (String,) = sqlx::query_as("SELECT outcome FROM audit_events WHERE sequence = $1")
        .bind(base + 6)
        .fetch_one(exchange.database.pool())
        .await
        .unwrap();
    assert_eq!(failed, "failed");

    assert_eq!(exchange.access.audit().verify().await.unwrap(), Ok(base + 6));
}

async fn concurrent_audited_reads_keep_one_unbroken_chain(db: TestDb) {
    let exchange = db.exchange().await;
    register_organisations(&exchange).await;
    let base = count(&exchange, "audit_events").await;
    exchange
        .population
        .register(
            &ctx(),
            &draft(request("QDN-H01", "MZ1", "吴阿妹", Some(&woman(1)))),
        )
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let population = exchange.population.clone();
        tasks.spawn(async move {
            let local = Identifier::parse("urn:hie:org:QDN-H01:patient", "MZ1").unwrap();
            population.resolve(&ctx(), &local).await.map(drop)
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    assert_eq!(exchange.access.audit().verify().await.unwrap(), Ok(base + 41));
}

async fn an_edited_event_is_named_and_a_deleted_one_is_a_gap(db: TestDb) {
    let exchange = db.exchange().await;
    register_organisations(&exchange).await;
    let base = count(&exchange, "audit_events").await;
    for n in 0..4 {
        let local = format!("MZ{n}");
        exchange
            .population
            .register(
                &ctx(),
                &draft(request("QDN-H01", &local, "吴阿妹", Some(&woman(n)))),
            )
            .await
            .unwrap();
    }
    assert_eq!(exchange.access.audit().verify().await.unwrap(), Ok(base + 4));
    let pool = exchange.database.pool();

    sqlx::query("UPDATE audit_events SET user_id = 'someone-else' WHERE sequence = $1")
        .bind(base + 2)
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(
        exchange.access.audit().verify().await.unwrap(),
        Err(ChainBreak::Edited { sequence: base + 2 })
    );

    sqlx::query("DELETE FROM audit_events WHERE sequence = $1")
        .bind(base + 2)
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(
        exchange.access.audit().verify().await.unwrap(),
        Err(ChainBreak::Gap {
            expected: base + 2,
            found: base + 3
        })
    );

    sqlx::query("DELETE FROM audit_events WHERE sequence >= $1")
        .bind(base + 2)
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(
        exchange.access.audit().verify().await.unwrap(),
        Err(ChainBreak::Truncated {
            head: base + 4,
            last: base + 1
        })
    );
}

mod over_the_network {
    use hie_proto::access::access_service_client::AccessServiceClient;
    use hie_proto::access::{PatientAccessLogRequest, QueryAuditRequest};
    use hie_proto::population::{Identifier, ResolveIdentifierRequest};
    use tonic::Code;

    use crate::harness::{TestDb, register_organisations, request, woman};

    fn as_role<T>(message: T, role: &str) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("x-hie-user", "officer-1".parse().unwrap());
        request.metadata_mut().insert("x-hie-role", role.parse().unwrap());
        request
            .metadata_mut()
            .insert("x-hie-purpose", "patient_request".parse().unwrap());
        request
    }

    #[tokio::test]
    async fn a_patient_sees_who_looked_and_a_privacy_officer_queries_the_trail() {
        let db = TestDb::sqlite().await;
        let server = db.server().await;
        register_organisations(server.exchange()).await;
        let mut population = server.population();
        let registered = population
            .register_source_record(request("QDN-H01", "MZ1", "吴阿妹", Some(&woman(1))))
            .await
            .unwrap()
            .into_inner();
        let identifier = Identifier {
            system: "urn:hie:org:QDN-H01:patient".into(),
            value: "MZ1".into(),
        };
        population
            .resolve_identifier(ResolveIdentifierRequest {
                identifier: Some(identifier),
            })
            .await
            .unwrap();

        let mut access = AccessServiceClient::new(server.channel.clone());
        let log = PatientAccessLogRequest {
            person_id: registered.person_id.clone(),
            page_size: 10,
            page_token: String::new(),
        };
        let mut as_patient = as_role(log.clone(), "patient");
        as_patient
            .metadata_mut()
            .insert("x-hie-patient", registered.person_id.parse().unwrap());
        let events = access
            .patient_access_log(as_patient)
            .await
            .unwrap()
            .into_inner()
            .events;
        let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            ["population.resolve", "population.register"],
            "newest first"
        );
        assert!(
            events
                .iter()
                .all(|e| e.user_id == "dr-wu" && e.purpose == "treatment" && !e.emergency)
        );

        let status = access
            .patient_access_log(as_role(log, "insurer"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);

        let query = QueryAuditRequest {
            outcome: "denied".into(),
            page_size: 10,
            ..Default::default()
        };
        let status = access
            .query_audit(as_role(query.clone(), "clinician"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        let denied = access
            .query_audit(as_role(query, "administrator"))
            .await
            .unwrap()
            .into_inner()
            .events;
        // Newest first: the clinician's refused query of the trail (itself audited), then the
        // insurer's refused look at the access log.
        assert_eq!(denied.len(), 2, "{denied:?}");
        assert_eq!(
            (denied[0].role.as_str(), denied[0].action.as_str()),
            ("clinician", "access.query_audit")
        );
        assert_eq!(denied[1].role, "insurer");
    }
}

async fn reads_wait_while_the_trail_cannot_be_written_and_no_event_is_lost(db: TestDb) {
    use std::time::Duration;

    use hie_access::{AuditEvent, AuditTrail, Outcome};

    let exchange = db.exchange().await;
    let pool = exchange.database.pool();
    // A backlog of two read events, so that the third read meets a full one.
    let audit = AuditTrail::with_backlog(
        exchange.database.clone(),
        hie_access::store::ChainKeys::ephemeral(),
        2,
    );
    let read = || {
        let person = hie_core::id::PersonId::generate();
        vec![AuditEvent::new(
            &ctx(),
            hie_core::vocabulary::AuditAction::ResolveIdentifier,
            Some(&person),
            "person",
            Some(person.as_str().to_owned()),
            Outcome::Permitted,
        )]
    };

    sqlx::query("ALTER TABLE audit_events RENAME TO audit_events_away")
        .execute(pool)
        .await
        .unwrap();
    audit.record_behind(read()).await.unwrap();
    audit.record_behind(read()).await.unwrap();
    let third = tokio::time::timeout(Duration::from_millis(500), audit.record_behind(read())).await;
    assert!(
        third.is_err(),
        "with the trail unwritable and the backlog full, a read must wait, not answer unrecorded"
    );

    sqlx::query("ALTER TABLE audit_events_away RENAME TO audit_events")
        .execute(pool)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), audit.record_behind(read()))
        .await
        .expect("once the trail is writable again, the waiting read goes on")
        .unwrap();
    assert_eq!(
        audit.verify().await.unwrap(),
        Ok(3),
        "every queued event was committed, in one unbroken chain"
    );
}
