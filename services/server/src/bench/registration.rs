//! `hie bench register`: RegisterSourceRecord (the PIX feed, with probabilistic matching) over
//! loopback gRPC against a registry of many persons on PostgreSQL, beside the empty call.

use std::time::{Duration, Instant};

use clap::Args;
use hie_core::db;
use hie_population::domain::SourceRecordDraft;
use hie_proto::population::population_registry_client::PopulationRegistryClient;
use hie_proto::population::{Identifier, RegisterSourceRecordRequest};
use serde::Serialize;
use tonic::transport::Channel;

use super::{
    CallFigures, CallFuture, PostgresServer, as_clerk, connect, count_persons, health_call, load_in_parallel,
    loopback, measure, ratio,
};
use crate::Exchange;
use crate::demo::SyntheticPrefecture;
use crate::settings::{SecretUrl, Settings};

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Print compact JSON (the default is indented).
    #[arg(long)]
    pub json: bool,
    /// How many persons the registry holds before measuring (one township-centre record each).
    #[arg(long, default_value_t = 1_000_000)]
    pub persons: usize,
    #[command(flatten)]
    pub postgres: PostgresServer,
    /// Keep the loaded database (named after --persons) and reuse it on the next run.
    #[arg(long)]
    pub keep: bool,
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Start at this hospital record, so that a rerun on a kept database registers records it
    /// has not seen (first registrations, not updates).
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
}

#[derive(Debug, Serialize)]
struct RegisterFigures {
    benchmark: &'static str,
    backend: &'static str,
    persons: i64,
    load_seconds: Option<f64>,
    cores: usize,
    concurrency: usize,
    empty_call: CallFigures,
    register: CallFigures,
    /// Empty calls per second over registrations per second: what matching and writing cost
    /// beside the call itself.
    empty_to_register_throughput: f64,
    target_registrations_per_second: f64,
    target_p99_microseconds: u64,
}

/// The request a hospital's interface engine sends for one of its records.
fn request_of(draft: &SourceRecordDraft) -> RegisterSourceRecordRequest {
    RegisterSourceRecordRequest {
        organisation_code: draft.organisation().to_string(),
        local_patient_number: draft.local_patient_number().value().to_owned(),
        demographics: Some(hie_population::grpc::demographics_to_proto(draft.demographics())),
        identifiers: draft
            .identifiers()
            .iter()
            .map(|i| Identifier {
                system: i.system_uri(),
                value: i.value().to_owned(),
            })
            .collect(),
    }
}

fn register_call(
    requests: Vec<RegisterSourceRecordRequest>,
) -> impl Fn(Channel, usize) -> CallFuture + Clone + Send + 'static {
    let requests = std::sync::Arc::new(requests);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    move |channel, _| {
        // Each call takes the next record, so that every registration is a first one until the
        // list runs out (then they are updates).
        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let message = requests[n % requests.len()].clone();
        Box::pin(async move {
            PopulationRegistryClient::new(channel)
                .register_source_record(as_clerk(message))
                .await
                .map(drop)
                .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
        })
    }
}

async fn count_source_records(exchange: &Exchange) -> Result<i64, String> {
    exchange
        .population
        .store()
        .count_source_records()
        .await
        .map_err(|e| e.to_string())
}

pub async fn run_register(args: RegisterArgs) -> Result<(), String> {
    eprintln!("hie bench: generating {} residents", args.persons);
    let mut prefecture = SyntheticPrefecture::generate(args.persons, 2026);
    // The township centres' records come first, one per resident: they make the registry. The
    // hospitals' records of the same residents are what is registered while measuring.
    let hospital_records = prefecture
        .records
        .split_off(args.persons.min(prefecture.records.len()));
    let name = format!("hie_bench_register_{}", args.persons);
    let url = db::with_database_name(&args.postgres.url, &name);
    let mut settings = Settings::default();
    settings.database.url = SecretUrl::new(&url);
    settings.database.max_connections = 16;
    // Kept with the database it keys (--keep reuses both).
    let bench_folder = std::env::temp_dir().join("hie-bench");
    settings.audit.key_file = Some(bench_folder.join(format!("{name}.audit.key")));
    settings.audit.anchor_file = Some(bench_folder.join(format!("{name}.audit.anchor")));
    // The loader's parallel batches of 500 wait for each other's key locks for seconds: longer
    // than an online call should, which the served limits are for.
    settings.limits.lock_timeout_ms = 120_000;
    let reused = if args.keep {
        Exchange::open(&settings).await.ok()
    } else {
        None
    };
    let (exchange, load_seconds) = match reused {
        // Matching merges the odd pair of generated residents, so the registry is complete when
        // it holds every township record, not necessarily as many persons.
        Some(exchange) if count_source_records(&exchange).await? >= args.persons as i64 => {
            eprintln!("hie bench: reusing the loaded database {name}");
            (exchange, None)
        }
        _ => {
            let _ = db::drop_postgres_database(&args.postgres.url, &name).await;
            for file in [&settings.audit.key_file, &settings.audit.anchor_file]
                .into_iter()
                .flatten()
            {
                let _ = std::fs::remove_file(file);
            }
            db::create_postgres_database(&args.postgres.url, &name)
                .await
                .map_err(|e| format!("cannot create a scratch database on --postgres-url: {e}"))?;
            let exchange = Exchange::open(&settings).await.map_err(|e| e.to_string())?;
            eprintln!(
                "hie bench: loading {} persons into postgres",
                prefecture.records.len()
            );
            let started = Instant::now();
            load_in_parallel(&exchange, &prefecture, 4).await?;
            (exchange, Some(started.elapsed().as_secs_f64()))
        }
    };
    let persons = count_persons(&exchange.database).await?;
    let server = exchange
        .clone()
        .start(loopback())
        .await
        .map_err(|e| e.to_string())?;
    let channels = connect(&server.url(), args.connections, None).await?;
    let requests: Vec<RegisterSourceRecordRequest> = hospital_records
        .iter()
        .skip(args.offset)
        .map(request_of)
        .collect();
    if requests.is_empty() {
        return Err(format!(
            "--offset {} is past the {} hospital records",
            args.offset,
            hospital_records.len()
        ));
    }
    let (warm_up, rest) = requests.split_at(requests.len().min(2_000));
    let c = args.concurrency;
    measure(&channels, c, Duration::from_secs(1), health_call).await;
    measure(
        &channels,
        c,
        Duration::from_secs(2),
        register_call(warm_up.to_vec()),
    )
    .await;
    let duration = Duration::from_secs(args.seconds);
    eprintln!(
        "hie bench: measuring the empty call and registration, {} s each",
        args.seconds
    );
    let empty_call = measure(&channels, c, duration, health_call).await;
    let register = measure(&channels, c, duration, register_call(rest.to_vec())).await;
    server.stop().await.map_err(|e| e.to_string())?;
    if !args.keep {
        exchange.database.close().await;
        let _ = db::drop_postgres_database(&args.postgres.url, &name).await;
    }
    let figures = RegisterFigures {
        benchmark: "register",
        backend: "postgres",
        persons,
        load_seconds,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        concurrency: c,
        empty_to_register_throughput: ratio(empty_call.throughput_per_second, register.throughput_per_second),
        empty_call,
        register,
        target_registrations_per_second: 1_000.0,
        target_p99_microseconds: 10_000,
    };
    let text = if args.json {
        serde_json::to_string(&figures)
    } else {
        serde_json::to_string_pretty(&figures)
    };
    println!("{}", text.map_err(|e| e.to_string())?);
    Ok(())
}
