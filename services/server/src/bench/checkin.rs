//! `hie bench checkin`: the reception desk on PostgreSQL with a million persons and three million
//! cards. Resolve (chip answer verified, the replica's look-up table, the person's lineage and
//! consent, an audit event) and check-in (the same, plus the visit registered with its event and
//! the summary), with 64 readers at once, beside the empty call measured in the same run.
//!
//! A reader asks for a challenge before each card; that call is not counted in the resolve's
//! latency. For the resolve's throughput every reader first collects its challenges and then
//! resolves them back to back, so that the figure is resolves a second; the reader's whole cycle
//! (challenge and resolve) is reported as well.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use hie_cards::domain::{CardNumber, CardType};
use hie_cards::grpc::card_type_to_proto;
use hie_proto::cards as proto;
use hie_proto::cards::card_service_client::CardServiceClient;
use serde::Serialize;
use tonic::transport::Channel;

use super::documents::{fill_persons, filled_person};
use super::{
    CallFigures, PostgresServer, as_clerk, connect, figures, health_call, loopback, measure, measure_timed,
    on_scratch_postgres, ratio, register_prefecture_organisations, scratch_settings,
};
use crate::Exchange;
use crate::demo_cards::cards_of;

#[derive(Debug, Args)]
pub struct CheckinArgs {
    /// Print the results as one line of JSON (the default indents them).
    #[arg(long)]
    pub json: bool,
    /// Persons in the registry.
    #[arg(long, default_value_t = 1_000_000)]
    pub persons: usize,
    /// Cards per person (1 to 3: a resident health card, a social-security card, a citizen card).
    #[arg(long, default_value_t = 3)]
    pub cards_per_person: usize,
    #[command(flatten)]
    pub postgres: PostgresServer,
    /// How long the empty call and check-in run, in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Readers at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Resolves each reader makes for the resolve's throughput (its challenges are collected
    /// first; a replica holds at most 200,000 unanswered challenges).
    #[arg(long, default_value_t = 2_000)]
    pub resolves_per_reader: usize,
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
}

#[derive(Debug, Serialize)]
struct CheckinFigures {
    benchmark: &'static str,
    backend: &'static str,
    cores: usize,
    persons: usize,
    cards: i64,
    readers: usize,
    fill_seconds: f64,
    /// The replica's card look-up table: how long its load took and the process's resident
    /// memory before and after it.
    table_load_seconds: f64,
    resident_mib_before_table: f64,
    resident_mib_with_table: f64,
    table_bytes_per_card: f64,
    empty_call: CallFigures,
    /// The empty call again, right after the resolves: this machine is shared and its speed
    /// drifts, so the resolve is compared with the mean of the two.
    empty_call_after_resolve: CallFigures,
    /// BeginCardAuthentication alone.
    challenge: CallFigures,
    /// ResolveCard with a challenge collected beforehand (target p99 ≤ 2 ms).
    resolve: CallFigures,
    /// Resolves a second as a share of empty calls a second, the mean of the two measurements
    /// around it (target ≥ 0.5).
    resolve_to_empty_throughput: f64,
    /// A reader's whole cycle: challenge, then resolve.
    reader_cycle: CallFigures,
    /// CheckIn, timed without its challenge (target p99 ≤ 5 ms).
    check_in: CallFigures,
}

pub async fn run_checkin(args: CheckinArgs) -> Result<(), String> {
    if !(1..=3).contains(&args.cards_per_person) {
        return Err(format!(
            "--cards-per-person {} must be 1, 2 or 3",
            args.cards_per_person
        ));
    }
    on_scratch_postgres(&args.postgres.url, args.json, async |url| {
        checkin_on(&url, &args).await
    })
    .await
}

/// The card the benchmark presents for call `n`: person and card type spread over the fill.
fn card_for(call: usize, persons: usize, per_person: usize) -> (CardType, String) {
    let person = call.wrapping_mul(2_654_435_761) % persons.max(1);
    cards_of(person, "522601")
        .into_iter()
        .filter(|(t, _)| *t != CardType::Bank)
        .nth(call % per_person)
        .unwrap_or((CardType::Citizen, String::new()))
}

fn resident_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

async fn checkin_on(url: &str, args: &CheckinArgs) -> Result<CheckinFigures, String> {
    let (settings, _keys) = scratch_settings(url)?;
    let exchange = Exchange::open(&settings).await.map_err(|e| e.to_string())?;
    register_prefecture_organisations(&exchange).await?;

    eprintln!(
        "hie bench: filling {} persons with {} cards each",
        args.persons, args.cards_per_person
    );
    let started = Instant::now();
    fill(&exchange, args.persons, args.cards_per_person).await?;
    for statement in ["VACUUM (ANALYZE) persons", "VACUUM (ANALYZE) cards", "CHECKPOINT"] {
        sqlx::query(statement)
            .execute(exchange.database.pool())
            .await
            .map_err(|e| e.to_string())?;
    }
    let fill_seconds = started.elapsed().as_secs_f64();
    let (cards,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM cards")
        .fetch_one(exchange.database.pool())
        .await
        .map_err(|e| e.to_string())?;

    let resident_before = resident_mib();
    let started = Instant::now();
    let server = exchange
        .clone()
        .start(loopback())
        .await
        .map_err(|e| e.to_string())?;
    while exchange.cards.indexed_cards().is_none() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let table_load_seconds = started.elapsed().as_secs_f64();
    let resident_with_table = resident_mib();
    eprintln!("hie bench: the card table of {cards} cards loaded in {table_load_seconds:.1} s");

    let channels = connect(&server.url(), args.connections, None).await?;
    let duration = Duration::from_secs(args.seconds);
    let concurrency = args.concurrency;
    let (persons, per_person) = (args.persons, args.cards_per_person);
    let chips = Arc::new(exchange.cards.chips().clone());

    eprintln!("hie bench: the empty call");
    let empty_call = measure(&channels, concurrency, duration, health_call).await;

    // Before the challenges alone, which leave theirs unanswered (a replica holds at most
    // 200,000 for 60 seconds).
    eprintln!("hie bench: resolve");
    let resolve = resolve_back_to_back(
        &channels,
        concurrency,
        args.resolves_per_reader,
        persons,
        per_person,
        &chips,
    )
    .await;

    let empty_call_after_resolve = measure(&channels, concurrency, duration, health_call).await;

    eprintln!("hie bench: challenges");
    let challenge = measure(
        &channels,
        concurrency,
        Duration::from_secs(3),
        move |channel, n| {
            let (card_type, number) = card_for(n, persons, per_person);
            Box::pin(async move {
                CardServiceClient::new(channel)
                    .begin_card_authentication(as_clerk(proto::BeginCardAuthenticationRequest {
                        card: Some(proto::CardNumber {
                            r#type: card_type_to_proto(card_type).into(),
                            number,
                        }),
                    }))
                    .await
                    .map(drop)
                    .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
            })
        },
    )
    .await;

    eprintln!("hie bench: the reader's cycle");
    let cycle_chips = chips.clone();
    let reader_cycle = measure_timed(&channels, concurrency, duration, move |channel, n| {
        let chips = cycle_chips.clone();
        Box::pin(async move {
            let started = Instant::now();
            let mut client = CardServiceClient::new(channel);
            let presented = presentation(&mut client, &chips, n, persons, per_person).await?;
            client
                .resolve_card(as_clerk(proto::ResolveCardRequest {
                    card: Some(presented),
                }))
                .await
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
            Ok(started.elapsed().as_micros() as u64)
        })
    })
    .await;

    eprintln!("hie bench: check-in");
    let check_in_chips = chips.clone();
    let check_in = measure_timed(&channels, concurrency, duration, move |channel, n| {
        let chips = check_in_chips.clone();
        Box::pin(async move {
            let mut client = CardServiceClient::new(channel);
            let presented = presentation(&mut client, &chips, n, persons, per_person).await?;
            let started = Instant::now();
            client
                .check_in(as_clerk(proto::CheckInRequest {
                    card: Some(presented),
                    organisation_code: "QDN-H01".into(),
                    department: "内科".into(),
                    visit_number: String::new(),
                    attending_practitioner: String::new(),
                    emergency: false,
                }))
                .await
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
            Ok(started.elapsed().as_micros() as u64)
        })
    })
    .await;

    server.stop().await.map_err(|e| e.to_string())?;
    Ok(CheckinFigures {
        benchmark: "checkin",
        backend: "postgres",
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        persons: args.persons,
        cards,
        readers: concurrency,
        fill_seconds,
        table_load_seconds,
        resident_mib_before_table: resident_before,
        resident_mib_with_table: resident_with_table,
        table_bytes_per_card: (resident_with_table - resident_before) * 1024.0 * 1024.0 / cards.max(1) as f64,
        resolve_to_empty_throughput: ratio(
            resolve.throughput_per_second,
            (empty_call.throughput_per_second + empty_call_after_resolve.throughput_per_second) / 2.0,
        ),
        empty_call_after_resolve,
        empty_call,
        challenge,
        resolve,
        reader_cycle,
        check_in,
    })
}

/// The card of call `n`, read in a reader: a challenge from the exchange answered by its chip.
async fn presentation(
    client: &mut CardServiceClient<Channel>,
    chips: &hie_cards::domain::keys::Chips,
    n: usize,
    persons: usize,
    per_person: usize,
) -> Result<proto::CardPresentation, String> {
    let (card_type, number) = card_for(n, persons, per_person);
    let card = CardNumber::parse(card_type, &number).map_err(|e| e.to_string())?;
    let card_message = proto::CardNumber {
        r#type: card_type_to_proto(card_type).into(),
        number,
    };
    let challenge = client
        .begin_card_authentication(as_clerk(proto::BeginCardAuthenticationRequest {
            card: Some(card_message.clone()),
        }))
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    let chip = chips.of(card_type).ok_or("no chip for the card type")?;
    Ok(proto::CardPresentation {
        card: Some(card_message),
        chip: Some(proto::ChipResponse {
            challenge_id: challenge.challenge_id,
            mac: chip.respond(&card, &challenge.challenge),
        }),
    })
}

/// Every reader collects `per_reader` answered challenges, then resolves them back to back; the
/// throughput is over the resolving alone.
async fn resolve_back_to_back(
    channels: &[Channel],
    readers: usize,
    per_reader: usize,
    persons: usize,
    per_person: usize,
    chips: &Arc<hie_cards::domain::keys::Chips>,
) -> CallFigures {
    let mut collecting = tokio::task::JoinSet::new();
    for reader in 0..readers.max(1) {
        let channel = channels[reader % channels.len()].clone();
        let chips = chips.clone();
        collecting.spawn(async move {
            let mut client = CardServiceClient::new(channel.clone());
            let mut presented = Vec::with_capacity(per_reader);
            for i in 0..per_reader {
                presented.push(
                    presentation(&mut client, &chips, reader * 1_000_003 + i, persons, per_person).await,
                );
            }
            (channel, presented)
        });
    }
    let mut prepared = Vec::new();
    while let Some(Ok(reader)) = collecting.join_next().await {
        prepared.push(reader);
    }
    let started = Instant::now();
    let mut resolving = tokio::task::JoinSet::new();
    for (channel, presented) in prepared {
        resolving.spawn(async move {
            let mut client = CardServiceClient::new(channel);
            let mut outcomes = Vec::with_capacity(presented.len());
            for card in presented {
                let Ok(card) = card else {
                    outcomes.push(Err("no challenge".to_owned()));
                    continue;
                };
                let sent = Instant::now();
                outcomes.push(
                    client
                        .resolve_card(as_clerk(proto::ResolveCardRequest { card: Some(card) }))
                        .await
                        .map(|_| sent.elapsed().as_micros() as u64)
                        .map_err(|s| format!("{:?}: {}", s.code(), s.message())),
                );
            }
            outcomes
        });
    }
    let mut outcomes = Vec::new();
    while let Some(Ok(mut reader)) = resolving.join_next().await {
        outcomes.append(&mut reader);
    }
    figures(outcomes, started.elapsed())
}

/// Persons `0..persons` and their cards, written set-based: persons by SQL, cards as JSON rows
/// of their tokens (computed here with the exchange's token key), 10,000 to a statement.
async fn fill(exchange: &Exchange, persons: usize, per_person: usize) -> Result<(), String> {
    const CHUNK: usize = 100_000;
    const ROWS_PER_STATEMENT: usize = 10_000;
    let mut start = 0;
    while start < persons {
        let last = (start + CHUNK).min(persons) - 1;
        fill_persons(exchange, start, last).await?;
        let mut rows = Vec::with_capacity(ROWS_PER_STATEMENT);
        for person in start..=last {
            let person_id = filled_person(person);
            for (card_type, number) in cards_of(person, "522601")
                .into_iter()
                .filter(|(t, _)| *t != CardType::Bank)
                .take(per_person)
            {
                let card = CardNumber::parse(card_type, &number).map_err(|e| e.to_string())?;
                let (token, key_id) = exchange.cards.stored_token(&card);
                rows.push(serde_json::json!({
                    "id": uuid::Uuid::now_v7().to_string(),
                    "card_type": card_type.code(),
                    "token": token,
                    "token_key_id": key_id,
                    "last_four": card.last_four(),
                    "person_id": person_id,
                }));
            }
            if rows.len() >= ROWS_PER_STATEMENT || person == last {
                sqlx::query(
                    "INSERT INTO cards (id, card_type, token, token_key_id, last_four, person_id, status, \
                     linked_at, status_changed_at, updated_at) \
                     SELECT id, card_type, token, token_key_id, last_four, person_id, 'active', 0, 0, 0 \
                     FROM json_to_recordset($1::json) AS r(id text, card_type text, token text, \
                     token_key_id text, last_four text, person_id text)",
                )
                .bind(serde_json::Value::Array(std::mem::take(&mut rows)).to_string())
                .execute(exchange.database.pool())
                .await
                .map_err(|e| e.to_string())?;
            }
        }
        start = last + 1;
        eprintln!("hie bench: {start} of {persons} persons filled with cards");
    }
    Ok(())
}
