//! `hie bench hl7`: ADT messages end to end — an MLLP sender, the adapter's listener and
//! journal, its forwarder, the exchange's registries with matching — on a scratch PostgreSQL
//! database, beside the empty gRPC call; and the parts on their own: the adapter's intake
//! (listener and journal, with the exchange down) and its forwarding of a full journal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use hie_adapter_hl7v2::forwarder::Backoff;
use hie_adapter_hl7v2::journal::{Journal, NewMessage};
use hie_adapter_hl7v2::listener::ListenerSettings;
use hie_adapter_hl7v2::mllp::{END_BLOCK, frame};
use hie_adapter_hl7v2::run::{AdapterSettings, RunningAdapter};
use hie_adapter_hl7v2::translate::Hospital;
use hie_adapter_relay::run::RelaySettings;
use hie_core::domain::OrganisationCode;
use hie_population::domain::SourceRecordDraft;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{
    CallFigures, PostgresServer, connect, count_persons, figures, health_call, load_in_parallel, loopback,
    measure, on_scratch_postgres, ratio, scratch_settings,
};
use crate::Exchange;
use crate::demo::SyntheticPrefecture;

#[derive(Debug, Args)]
pub struct Hl7Args {
    #[arg(long)]
    pub json: bool,
    /// Residents in the registry before the feed starts (one township-centre record each); the
    /// messages are their hospitals' records, first registrations matched against them.
    #[arg(long, default_value_t = 100_000)]
    pub residents: usize,
    /// ADT^A04 messages in each phase (intake and forwarding; end to end).
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// MLLP connections sending at once (each waits for its acknowledgement, as MLLP senders do).
    #[arg(long, default_value_t = 16)]
    pub senders: usize,
    /// The adapter's forwarding lanes.
    #[arg(long, default_value_t = 32)]
    pub lanes: usize,
    #[command(flatten)]
    pub postgres: PostgresServer,
}

#[derive(Debug, Serialize)]
struct Hl7Figures {
    benchmark: &'static str,
    backend: &'static str,
    cores: usize,
    persons_before: i64,
    load_seconds: f64,
    message: &'static str,
    senders: usize,
    lanes: usize,
    empty_call: CallFigures,
    /// Appends straight into the journal (group commit, fsync), `senders` at once.
    journal_appends: CallFigures,
    /// MLLP → parse → check → journal → acknowledgement, the exchange down.
    intake: CallFigures,
    /// The journal filled by the intake phase, forwarded to the exchange.
    forwarding_messages_per_second: f64,
    /// Both at once, the way a hospital feed runs.
    end_to_end: EndToEnd,
    /// The intake's time per message over intake plus forwarding time per message.
    journal_share_of_cost: f64,
    end_to_end_to_empty_call_throughput: f64,
    target_messages_per_second: f64,
}

#[derive(Debug, Serialize)]
struct EndToEnd {
    messages: usize,
    seconds: f64,
    messages_per_second: f64,
    acknowledgement: CallFigures,
    dead_letters: i64,
}

pub async fn run_hl7(args: Hl7Args) -> Result<(), String> {
    let postgres = args.postgres.url.clone();
    let json = args.json;
    on_scratch_postgres(&postgres, json, |url| measure_hl7(args, url)).await
}

async fn measure_hl7(args: Hl7Args, url: String) -> Result<Hl7Figures, String> {
    eprintln!("hie bench: generating {} residents", args.residents);
    let mut prefecture = SyntheticPrefecture::generate(args.residents, 2026);
    let hospital_records = prefecture
        .records
        .split_off(args.residents.min(prefecture.records.len()));
    if hospital_records.len() < 2 * args.messages {
        return Err(format!(
            "{} residents give {} hospital records; --messages {} needs {} (raise --residents)",
            args.residents,
            hospital_records.len(),
            args.messages,
            2 * args.messages
        ));
    }
    let (settings, _keys) = scratch_settings(&url)?;
    let exchange = Exchange::open(&settings).await.map_err(|e| e.to_string())?;
    eprintln!("hie bench: loading {} township records", prefecture.records.len());
    let started = Instant::now();
    load_in_parallel(&exchange, &prefecture, 4).await?;
    let load_seconds = started.elapsed().as_secs_f64();
    let persons_before = count_persons(&exchange.database).await?;
    let server = exchange
        .clone()
        .start(loopback())
        .await
        .map_err(|e| e.to_string())?;
    let channels = connect(&server.url(), 4, None).await?;
    let organisation = hospital_records[0].organisation().clone();
    let messages: Vec<Vec<u8>> = hospital_records
        .iter()
        .take(2 * args.messages)
        .enumerate()
        .map(|(n, draft)| a04(draft, &organisation, n))
        .collect();
    let (first_half, second_half) = messages.split_at(args.messages);

    eprintln!("hie bench: the empty call");
    let empty_call = measure(&channels, args.senders, Duration::from_secs(3), health_call).await;

    eprintln!("hie bench: journal appends");
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let journal_appends =
        journal_appends(&scratch.path().join("journal-only"), first_half, args.senders).await?;

    eprintln!("hie bench: intake with the exchange down");
    let unreachable = {
        let reserved = std::net::TcpListener::bind(loopback()).map_err(|e| e.to_string())?;
        reserved.local_addr().map_err(|e| e.to_string())?
    };
    let folder = scratch.path().join("adapter");
    let adapter = start(&args, &organisation, &folder, unreachable).await?;
    let (intake, _) = send_all(adapter.intake_address(), first_half, args.senders).await?;
    adapter.stop().await;

    eprintln!("hie bench: forwarding the journal");
    let adapter = start(&args, &organisation, &folder, server.address()).await?;
    let started = Instant::now();
    let forwarded = drained(&adapter, Duration::from_secs(3600)).await?;
    let forwarding_messages_per_second = first_half.len() as f64 / started.elapsed().as_secs_f64();
    adapter.stop().await;
    if forwarded.dead_letters > 0 {
        return Err(format!(
            "{} messages became dead letters: {:?}",
            forwarded.dead_letters, forwarded.last_error
        ));
    }

    eprintln!("hie bench: end to end");
    let adapter = start(
        &args,
        &organisation,
        &scratch.path().join("end-to-end"),
        server.address(),
    )
    .await?;
    let started = Instant::now();
    let (acknowledgement, _) = send_all(adapter.intake_address(), second_half, args.senders).await?;
    let status = drained(&adapter, Duration::from_secs(3600)).await?;
    let seconds = started.elapsed().as_secs_f64();
    adapter.stop().await;
    server.stop().await.map_err(|e| e.to_string())?;
    exchange.database.close().await;

    let per_intake = 1.0 / intake.throughput_per_second.max(1e-9);
    let per_forward = 1.0 / forwarding_messages_per_second.max(1e-9);
    let messages_per_second = second_half.len() as f64 / seconds;
    Ok(Hl7Figures {
        benchmark: "hl7",
        backend: "postgres",
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        persons_before,
        load_seconds,
        message: "ADT^A04: a first registration with matching, and an outpatient visit",
        senders: args.senders,
        lanes: args.lanes,
        end_to_end_to_empty_call_throughput: ratio(messages_per_second, empty_call.throughput_per_second),
        empty_call,
        journal_appends,
        intake,
        forwarding_messages_per_second,
        journal_share_of_cost: per_intake / (per_intake + per_forward),
        end_to_end: EndToEnd {
            messages: second_half.len(),
            seconds,
            messages_per_second,
            acknowledgement,
            dead_letters: status.dead_letters,
        },
        target_messages_per_second: 5_000.0,
    })
}

async fn start(
    args: &Hl7Args,
    organisation: &OrganisationCode,
    folder: &std::path::Path,
    exchange: SocketAddr,
) -> Result<RunningAdapter, String> {
    hie_adapter_hl7v2::run::start(AdapterSettings {
        listen: loopback(),
        listener: ListenerSettings::default(),
        relay: RelaySettings {
            exchange_url: format!("http://{exchange}"),
            tls: None,
            hospital: Hospital::in_china(organisation.clone()),
            data_folder: folder.to_path_buf(),
            user: "hie-bench".to_owned(),
            lanes: args.lanes,
            backoff: Backoff {
                first: Duration::from_millis(50),
                most: Duration::from_millis(500),
            },
            keep_delivered: Duration::from_secs(86_400),
            gateway: None,
        },
    })
    .await
}

/// Waits until nothing is pending.
async fn drained(
    adapter: &RunningAdapter,
    limit: Duration,
) -> Result<hie_adapter_hl7v2::journal::Status, String> {
    let deadline = Instant::now() + limit;
    loop {
        let status = adapter.journal().status().await.map_err(|e| e.to_string())?;
        if status.pending == 0 {
            return Ok(status);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "still {} pending after {limit:?}: {:?}",
                status.pending, status.last_error
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends every message over `senders` connections, each waiting for its acknowledgement;
/// figures over the acknowledgements (an answer other than AA counts as an error).
async fn send_all(
    at: SocketAddr,
    messages: &[Vec<u8>],
    senders: usize,
) -> Result<(CallFigures, Duration), String> {
    let messages = Arc::new(messages.to_vec());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..senders.max(1) {
        let (messages, next) = (messages.clone(), next.clone());
        tasks.spawn(async move {
            let mut connection = TcpStream::connect(at).await.map_err(|e| e.to_string())?;
            connection.set_nodelay(true).map_err(|e| e.to_string())?;
            let mut outcomes = Vec::new();
            let mut buffer = vec![0u8; 4096];
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(message) = messages.get(n) else { break };
                let sent = Instant::now();
                connection
                    .write_all(&frame(message))
                    .await
                    .map_err(|e| e.to_string())?;
                let mut answer = Vec::new();
                while !answer.contains(&END_BLOCK) {
                    let read = connection.read(&mut buffer).await.map_err(|e| e.to_string())?;
                    if read == 0 {
                        return Err("the adapter closed the connection".to_owned());
                    }
                    answer.extend_from_slice(&buffer[..read]);
                }
                let accepted = answer.windows(7).any(|w| w == b"\rMSA|AA");
                outcomes.push(if accepted {
                    Ok(sent.elapsed().as_micros() as u64)
                } else {
                    Err(String::from_utf8_lossy(&answer).replace('\r', "\n"))
                });
            }
            Ok::<_, String>(outcomes)
        });
    }
    let mut outcomes = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        outcomes.extend(joined.map_err(|e| e.to_string())??);
    }
    let elapsed = started.elapsed();
    Ok((figures(outcomes, elapsed), elapsed))
}

async fn journal_appends(
    folder: &std::path::Path,
    messages: &[Vec<u8>],
    writers: usize,
) -> Result<CallFigures, String> {
    let journal = Journal::open(folder).await.map_err(|e| e.to_string())?;
    let messages = Arc::new(messages.to_vec());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..writers.max(1) {
        let (journal, messages, next) = (journal.clone(), messages.clone(), next.clone());
        tasks.spawn(async move {
            let mut outcomes = Vec::new();
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(raw) = messages.get(n) else { break };
                let sent = Instant::now();
                let appended = journal
                    .append(NewMessage {
                        idempotency_key: format!("bench|{n}"),
                        message_type: "ADT^A04".to_owned(),
                        patient_key: n.to_string(),
                        raw: raw.clone(),
                    })
                    .await;
                outcomes.push(
                    appended
                        .map(|_| sent.elapsed().as_micros() as u64)
                        .map_err(|e| e.to_string()),
                );
            }
            outcomes
        });
    }
    let mut outcomes = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        outcomes.extend(joined.map_err(|e| e.to_string())?);
    }
    Ok(figures(outcomes, started.elapsed()))
}

/// The ADT^A04 a hospital's HIS sends when it registers this record's patient for an
/// outpatient visit.
fn a04(draft: &SourceRecordDraft, organisation: &OrganisationCode, n: usize) -> Vec<u8> {
    let d = hie_population::grpc::demographics_to_proto(draft.demographics());
    let address = d.address.unwrap_or_default();
    let sex = match d.sex.as_str() {
        "1" => "M",
        "2" => "F",
        _ => "U",
    };
    let resident_id = draft
        .resident_id()
        .map(|id| format!("~{}^^^CHN^NI", id.as_str()))
        .unwrap_or_default();
    // Numbers stay unique when the records of several hospitals are sent as one hospital's.
    let number = format!(
        "{}-{}",
        draft.organisation(),
        draft.local_patient_number().value()
    );
    format!(
        "MSH|^~\\&|HIS|{organisation}|HIE|HIE|20261204101500||ADT^A04^ADT_A01|BENCH{n}|P|2.5.1|||||CHN|UNICODE UTF-8\r\
         EVN|A04|20261204101500\r\
         PID|1||{number}^^^{organisation}^MR{resident_id}||{name}||{birth}|{sex}|||{line}^^^^^CHN^H^^{division}||{phone}|||||||||{ethnicity}\r\
         PV1|1|O|内科^1^1||||D001^李^医生||||||||||||V{n}|||||||||||||||||||||||||20261204100000\r",
        name = d.name,
        birth = d.birth_date.replace('-', ""),
        line = address.line,
        division = address.division_code,
        phone = d.phone,
        ethnicity = d.ethnicity,
    )
    .into_bytes()
}
