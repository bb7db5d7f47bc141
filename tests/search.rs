//! Search at the reception desk, over the network: a name typed in characters, pinyin with or
//! without tones and spaces, initials with another criterion, a Latin transliteration; ranked,
//! with the score in the response, paged without repeats, audited; bad input refused.

use hie_proto::population::{Identifier, SearchPersonsRequest, SearchPersonsResponse};

use crate::harness::{PopulationClient, TestDb, on_every_backend, register_organisations, request, woman};

on_every_backend!(a_clerk_finds_a_person_however_the_name_is_typed);

/// The names registered, each a different woman (her own identity number, phone and house).
const NAMES: [&str; 8] = [
    "张伟",
    "张伟",
    "章伟",
    "張偉",
    "周文",
    "单丽",
    "买买提·艾力",
    "王芳",
];

async fn search(
    client: &mut PopulationClient,
    request: SearchPersonsRequest,
) -> Result<SearchPersonsResponse, tonic::Status> {
    client.search_persons(request).await.map(|r| r.into_inner())
}

fn by_name(name: &str) -> SearchPersonsRequest {
    SearchPersonsRequest {
        name: name.into(),
        page_size: 50,
        ..Default::default()
    }
}

/// The names found, in order, with their scores.
fn names(found: &SearchPersonsResponse) -> Vec<(String, f64)> {
    assert_eq!(found.persons.len(), found.matches.len());
    found
        .persons
        .iter()
        .zip(&found.matches)
        .map(|(person, m)| {
            assert_eq!(person.id, m.person_id);
            (person.demographics.as_ref().unwrap().name.clone(), m.score)
        })
        .collect()
}

async fn a_clerk_finds_a_person_however_the_name_is_typed(db: TestDb) {
    let server = db.server().await;
    register_organisations(server.exchange()).await;
    let mut client = server.population();
    for (n, name) in NAMES.iter().enumerate() {
        client
            .register_source_record(request(
                "QDN-H01",
                &format!("MZ{n}"),
                name,
                Some(&woman(n as u32)),
            ))
            .await
            .unwrap();
    }

    // Pinyin, however typed: every Zhang Wei, whatever the characters.
    for typed in ["zhangwei", "zhang wei", "Zhāng Wěi", "ZHANG  WEI"] {
        let found = names(&search(&mut client, by_name(typed)).await.unwrap());
        let mut found_names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        found_names.sort();
        assert_eq!(found_names, ["张伟", "张伟", "張偉", "章伟"], "{typed}");
        assert!(found.iter().all(|(_, score)| *score == 0.9), "{typed}: {found:?}");
    }

    // Characters: the same name first, then the homophone and the traditional form.
    let found = search(&mut client, by_name("张伟")).await.unwrap();
    let ranked = names(&found);
    assert_eq!(ranked.len(), 4);
    assert_eq!((ranked[0].1, ranked[1].1), (1.0, 1.0), "{ranked:?}");
    assert_eq!(&ranked[0].0, "张伟");
    assert!(ranked[2..].iter().all(|(_, s)| *s == 0.9), "{ranked:?}");
    assert_eq!(found.matches[0].matched_by, "same name");
    assert_eq!(found.matches[3].matched_by, "same pinyin");

    // A polyphonic surname either way; a minority name in Latin letters.
    for typed in ["shan li", "danli"] {
        let found = names(&search(&mut client, by_name(typed)).await.unwrap());
        assert_eq!(found, [("单丽".to_owned(), 0.9)], "{typed}");
    }
    let found = search(&mut client, by_name("Memet Eli")).await.unwrap();
    assert_eq!(names(&found), [("买买提·艾力".to_owned(), 0.75)]);
    assert_eq!(found.matches[0].matched_by, "sounds alike");

    // Pages follow the ranking, each person once.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = search(
            &mut client,
            SearchPersonsRequest {
                name: "张伟".into(),
                page_size: 3,
                page_token: token.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        seen.extend(page.matches.iter().map(|m| (m.person_id.clone(), m.score)));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 4);
    assert_eq!(seen.iter().filter(|(_, s)| *s == 1.0).count(), 2);
    assert!(seen.windows(2).all(|w| w[0].1 >= w[1].1), "{seen:?}");
    let distinct: std::collections::BTreeSet<&String> = seen.iter().map(|(id, _)| id).collect();
    assert_eq!(distinct.len(), 4);

    // Initials need another criterion; with one they find the names with those initials.
    let alone = search(&mut client, by_name("zw")).await.unwrap_err();
    assert_eq!(alone.code(), tonic::Code::InvalidArgument);
    assert!(
        alone.message().contains("name") && alone.message().contains("initials"),
        "{alone:?}"
    );
    let with_date = SearchPersonsRequest {
        birth_date: "1985-03-14".into(),
        ..by_name("zw")
    };
    let mut found: Vec<String> = names(&search(&mut client, with_date).await.unwrap())
        .into_iter()
        .map(|(n, score)| {
            assert_eq!(score, 0.5);
            n
        })
        .collect();
    found.sort();
    assert_eq!(found, ["周文", "张伟", "张伟", "張偉", "章伟"]);
    let with_identifier = SearchPersonsRequest {
        identifier: Some(Identifier {
            system: "urn:hie:id:resident".into(),
            value: woman(4),
        }),
        ..by_name("z w")
    };
    let found = names(&search(&mut client, with_identifier).await.unwrap());
    assert_eq!(found, [("周文".to_owned(), 0.5)]);
    let another_day = SearchPersonsRequest {
        birth_date: "1990-01-01".into(),
        ..by_name("zw")
    };
    assert!(search(&mut client, another_day).await.unwrap().persons.is_empty());

    // Bad input: nothing to search by is refused, naming the field; non-pinyin finds no one.
    for nothing in ["   ", ""] {
        let refused = search(&mut client, by_name(nothing)).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{nothing:?}");
    }
    let digits = search(&mut client, by_name("12345")).await.unwrap_err();
    assert_eq!(digits.code(), tonic::Code::InvalidArgument);
    assert!(digits.message().contains("name"), "{digits:?}");
    assert!(
        search(&mut client, by_name("xqzrtplk"))
            .await
            .unwrap()
            .persons
            .is_empty()
    );

    // Every search is in the audit trail, once per person found.
    server.exchange().access.audit().flush().await.unwrap();
    let (searches,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE action = 'population.search'")
            .fetch_one(server.exchange().database.pool())
            .await
            .unwrap();
    assert!(searches >= 20, "{searches}");
    server.server.stop().await.unwrap();
}
