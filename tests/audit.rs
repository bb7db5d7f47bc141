//! The audit trail: every read and write of a person's data leaves one event, and the hash chain
//! finds an edited event and a deleted one.

use hie_access::ChainBreak;
use hie_core::domain::{Identifier, PersonName};
use hie_core::page::PageSize;
use hie_population::domain::{NameQuery, SearchCriteria};

use crate::harness::{TestDb, count, ctx, draft, on_every_backend, register_organisations, request, woman};

on_every_backend!(
    reads_and_writes_leave_one_event_each_and_the_chain_verifies,
    concurrent_audited_reads_keep_one_unbroken_chain,
    an_edited_event_is_named_and_a_deleted_one_is_a_gap,
);

async fn reads_and_writes_leave_one_event_each_and_the_chain_verifies(db: TestDb) {
    let exchange = db.exchange().await;
    register_organisations(&exchange).await;
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
        count(&exchange, "audit_events").await,
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
    assert_eq!(count(&exchange, "audit_events").await, 5);

    // A refused registration leaves an event too, and nothing else.
    assert!(
        population
            .register(&ctx(), &draft(request("QDN-H09", "X1", "吴阿妹", None)))
            .await
            .is_err()
    );
    assert_eq!(count(&exchange, "audit_events").await, 6);
    let (failed,): (String,) = sqlx::query_as("SELECT outcome FROM audit_events WHERE sequence = 6")
        .fetch_one(exchange.database.pool())
        .await
        .unwrap();
    assert_eq!(failed, "failed");

    assert_eq!(exchange.audit.verify().await.unwrap(), Ok(6));
}

async fn concurrent_audited_reads_keep_one_unbroken_chain(db: TestDb) {
    let exchange = db.exchange().await;
    register_organisations(&exchange).await;
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
    assert_eq!(exchange.audit.verify().await.unwrap(), Ok(41));
}

async fn an_edited_event_is_named_and_a_deleted_one_is_a_gap(db: TestDb) {
    let exchange = db.exchange().await;
    register_organisations(&exchange).await;
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
    assert_eq!(exchange.audit.verify().await.unwrap(), Ok(4));
    let pool = exchange.database.pool();

    sqlx::query("UPDATE audit_events SET user_id = 'someone-else' WHERE sequence = 2")
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(
        exchange.audit.verify().await.unwrap(),
        Err(ChainBreak::Edited { sequence: 2 })
    );

    sqlx::query("DELETE FROM audit_events WHERE sequence = 2")
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(
        exchange.audit.verify().await.unwrap(),
        Err(ChainBreak::Gap {
            expected: 2,
            found: 3
        })
    );

    sqlx::query("DELETE FROM audit_events WHERE sequence >= 2")
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(
        exchange.audit.verify().await.unwrap(),
        Err(ChainBreak::Truncated { head: 4, last: 1 })
    );
}
