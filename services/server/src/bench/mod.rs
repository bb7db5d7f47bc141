//! `hie bench …`: measurements that print JSON. Every figure is measured beside a baseline taken
//! in the same run (the empty gRPC health check), because this kind of machine is shared and
//! noisy: the ratio travels between machines better than the absolute figure.

mod baseline;
mod checkin;
mod documents;
mod events;
mod hl7;
pub mod linkage_quality;
mod registration;
mod search;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use hie_core::db::{self, Database};
use hie_proto::population::population_registry_client::PopulationRegistryClient;
use hie_proto::population::{Identifier as ProtoIdentifier, ResolveIdentifierRequest};
use serde::Serialize;
use tonic::transport::{Channel, ClientTlsConfig};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::Exchange;
use crate::demo::{Rng, SyntheticPrefecture, load};
use crate::settings::{SecretUrl, Settings, TlsSettings};
use hie_transport::pki::{self, PkiFolder};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// ResolveIdentifier (PIX query) over loopback against the empty health check, on SQLite and
    /// on PostgreSQL.
    Resolve(ResolveArgs),
    /// Linkage quality (precision, recall, F1) and speed on generated population files, with
    /// identity numbers in 80 % of records and with none.
    Match(linkage_quality::MatchArgs),
    /// RegisterSourceRecord with probabilistic matching against a registry of many persons on
    /// PostgreSQL (default a million), beside the empty call.
    Register(registration::RegisterArgs),
    /// The EMR registry on PostgreSQL: document-set registration, the stored query by person
    /// against a filled registry, direct and federated retrieve, and the patient summary, beside
    /// the empty call.
    Documents(documents::DocumentsArgs),
    /// The reception desk on PostgreSQL (default a million persons, three million cards):
    /// ResolveCard and CheckIn with 64 readers at once, beside the empty call.
    Checkin(checkin::CheckinArgs),
    /// The HL7 v2 adapter end to end on PostgreSQL: ADT messages over MLLP, journaled, forwarded
    /// and registered with matching; the journal's share of the cost; beside the empty call.
    Hl7(hl7::Hl7Args),
    /// SearchPersons at the reception desk on PostgreSQL (default a million persons): a name in
    /// characters, in pinyin, in pinyin with spaces, and initials with a birth date, beside the
    /// empty call.
    Search(search::SearchArgs),
    /// The event log on PostgreSQL: commit-to-subscriber latency at a steady rate (default 1,000
    /// events a second) with 10 subscribers, over gRPC streams and through the NATS JetStream
    /// relay, beside the empty call.
    Events(events::EventsArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// Print the results as JSON (the default prints them as JSON too, indented for reading).
    #[arg(long)]
    pub json: bool,
    /// How many residents to load before measuring.
    #[arg(long, default_value_t = 100_000)]
    pub persons: usize,
    /// Which backends to measure.
    #[arg(long, value_enum, default_value = "both")]
    pub backend: BackendChoice,
    #[command(flatten)]
    pub postgres: PostgresServer,
    /// How long each measurement runs, in seconds.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// How many calls are in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Over how many HTTP/2 connections the calls are spread (connections are reused).
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Serve the registry with mutual TLS (a scratch development CA; the calling hospital's
    /// certificate registered in the directory), as production does.
    #[arg(long)]
    pub tls: bool,
}

/// The PostgreSQL server a benchmark works on, the same option for every benchmark.
#[derive(Debug, Args)]
pub struct PostgresServer {
    /// A PostgreSQL server where the benchmark may create (and drop) a scratch database.
    #[arg(
        long = "postgres-url",
        env = "HIE_BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub url: String,
}

/// Throughput and latency of one kind of call.
#[derive(Debug, Serialize)]
pub struct CallFigures {
    pub calls: usize,
    pub errors: usize,
    /// The first error, so that a run full of errors says why.
    pub first_error: Option<String>,
    pub throughput_per_second: f64,
    pub p50_microseconds: u64,
    pub p99_microseconds: u64,
}

#[derive(Debug, Serialize)]
pub struct ResolveFigures {
    pub backend: &'static str,
    pub persons: i64,
    pub source_records: usize,
    pub load_seconds: f64,
    /// The empty call (health check), plaintext loopback: the floor of any call.
    pub empty_call: CallFigures,
    /// ResolveIdentifier's look-up alone, plaintext, no request context, consent or audit.
    pub resolve_unguarded: CallFigures,
    /// ResolveIdentifier as the exchange serves it: request context, consent decision and an
    /// audit event committed before the answer; over mutual TLS with `--tls`.
    pub resolve: CallFigures,
    /// The empty call over the same transport as `resolve` (mutual TLS with `--tls`).
    pub empty_call_same_transport: CallFigures,
    /// Unguarded resolve throughput as a share of the empty call's (the Foundation target: ≥ 0.5).
    pub unguarded_resolve_to_empty_throughput: f64,
    /// What the trust layer costs per call: guarded / unguarded p50 latency (target ≤ 1.5).
    pub trust_cost_p50_latency: f64,
    /// The same at steady state as throughput: unguarded / guarded calls per second (target ≤ 1.5).
    pub trust_cost_per_call: f64,
}

pub async fn run(command: BenchCommand) -> Result<(), String> {
    match command {
        BenchCommand::Resolve(args) => resolve(args).await,
        BenchCommand::Match(args) => linkage_quality::run_match(args),
        BenchCommand::Register(args) => registration::run_register(args).await,
        BenchCommand::Documents(args) => documents::run_documents(args).await,
        BenchCommand::Checkin(args) => checkin::run_checkin(args).await,
        BenchCommand::Hl7(args) => hl7::run_hl7(args).await,
        BenchCommand::Events(args) => events::run_events(args).await,
        BenchCommand::Search(args) => search::run_search(args).await,
    }
}

async fn resolve(args: ResolveArgs) -> Result<(), String> {
    eprintln!("hie bench: generating {} residents", args.persons);
    let prefecture = SyntheticPrefecture::generate(args.persons, 2026);
    let mut results = Vec::new();
    if matches!(args.backend, BackendChoice::Sqlite | BackendChoice::Both) {
        let folder = std::env::temp_dir().join(format!("hie-bench-{}", uuid::Uuid::now_v7()));
        let url = format!("sqlite://{}/hie.db", folder.display());
        let figures = resolve_on("sqlite", &url, &args, &prefecture, 1).await;
        let _ = std::fs::remove_dir_all(&folder);
        results.push(figures?);
    }
    if matches!(args.backend, BackendChoice::Postgres | BackendChoice::Both) {
        let name = format!("hie_bench_{}", uuid::Uuid::now_v7().simple());
        let url = db::create_postgres_database(&args.postgres.url, &name)
            .await
            .map_err(|e| {
                format!("cannot create a scratch database on the PostgreSQL server of --postgres-url: {e}")
            })?;
        let figures = resolve_on("postgres", &url, &args, &prefecture, 4).await;
        let _ = db::drop_postgres_database(&args.postgres.url, &name).await;
        results.push(figures?);
    }
    let report = serde_json::json!({
        "benchmark": "resolve",
        "residents_generated": args.persons,
        "seconds_per_measurement": args.seconds,
        "concurrency": args.concurrency,
        "connections": args.connections,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "results": results,
    });
    let text = if args.json {
        serde_json::to_string(&report)
    } else {
        serde_json::to_string_pretty(&report)
    };
    println!("{}", text.map_err(|e| e.to_string())?);
    Ok(())
}

async fn resolve_on(
    backend: &'static str,
    url: &str,
    args: &ResolveArgs,
    prefecture: &SyntheticPrefecture,
    n_loaders: usize,
) -> Result<ResolveFigures, String> {
    let mut settings = Settings::default();
    settings.database.url = SecretUrl::new(url);
    settings.database.max_connections = 16;
    // The scratch database's audit key lives as long as the measurement.
    let key_folder = tempfile::tempdir().map_err(|e| e.to_string())?;
    settings.audit.key_file = Some(key_folder.path().join("audit.key"));
    // The loader's parallel batches of 500 wait for each other's key locks for seconds: longer
    // than an online call should, which the served limits are for.
    settings.limits.lock_timeout_ms = 120_000;
    let exchange = Exchange::open(&settings).await.map_err(|e| e.to_string())?;
    eprintln!(
        "hie bench: loading {} source records into {backend}",
        prefecture.records.len()
    );
    let started = Instant::now();
    load_in_parallel(&exchange, prefecture, n_loaders).await?;
    let load_seconds = started.elapsed().as_secs_f64();
    let persons = count_persons(&exchange.database).await?;
    let folder = tempfile::tempdir().map_err(|e| format!("cannot make a scratch folder: {e}"))?;
    let (trusted_channels, server) = if args.tls {
        let tls = scratch_pki(&exchange, prefecture, folder.path()).await?;
        let server = exchange
            .clone()
            .start_with(loopback(), Some(&tls.server), false)
            .await
            .map_err(|e| e.to_string())?;
        let url = format!("https://localhost:{}", server.address().port());
        (connect(&url, args.connections, Some(&tls.client)).await?, server)
    } else {
        let server = exchange
            .clone()
            .start(loopback())
            .await
            .map_err(|e| e.to_string())?;
        (connect(&server.url(), args.connections, None).await?, server)
    };
    let unguarded = baseline::serve(exchange.database.clone()).await?;
    let plain_channels = connect(&unguarded.url, args.connections, None).await?;

    // What to resolve: local patient numbers and identity numbers of random records.
    let mut rng = Rng::new(7);
    let targets: Vec<ProtoIdentifier> = (0..10_000)
        .map(|_| {
            let record = rng.pick(&prefecture.records);
            let identifier = match record.resident_id() {
                Some(id) if rng.chance(0.5) => hie_core::domain::Identifier::resident(&id),
                _ => record.local_patient_number().clone(),
            };
            ProtoIdentifier {
                system: identifier.system_uri(),
                value: identifier.value().to_owned(),
            }
        })
        .collect();

    let duration = Duration::from_secs(args.seconds);
    eprintln!(
        "hie bench: {backend}: measuring the empty call, unguarded and guarded resolve, {} s each",
        args.seconds
    );
    let warm_up = Duration::from_secs(1);
    let c = args.concurrency;
    // A short warm-up of each, so that none pays for connection set-up or cold caches.
    measure(&plain_channels, c, warm_up, health_call).await;
    measure(&trusted_channels, c, warm_up, health_call).await;
    measure(&plain_channels, c, warm_up, resolve_call(&targets)).await;
    measure(&trusted_channels, c, warm_up, resolve_call(&targets)).await;
    let empty_call = measure(&plain_channels, c, duration, health_call).await;
    let resolve_unguarded = measure(&plain_channels, c, duration, resolve_call(&targets)).await;
    let resolve = measure(&trusted_channels, c, duration, resolve_call(&targets)).await;
    let empty_call_same_transport = measure(&trusted_channels, c, duration, health_call).await;
    server.stop().await.map_err(|e| e.to_string())?;
    unguarded.stop().await;
    Ok(ResolveFigures {
        backend,
        persons,
        source_records: prefecture.records.len(),
        load_seconds,
        unguarded_resolve_to_empty_throughput: ratio(
            resolve_unguarded.throughput_per_second,
            empty_call.throughput_per_second,
        ),
        trust_cost_p50_latency: ratio(
            resolve.p50_microseconds as f64,
            resolve_unguarded.p50_microseconds as f64,
        ),
        trust_cost_per_call: ratio(
            resolve_unguarded.throughput_per_second,
            resolve.throughput_per_second,
        ),
        empty_call,
        resolve_unguarded,
        resolve,
        empty_call_same_transport,
    })
}

/// Runs `measure` on a scratch PostgreSQL database made on the server of `postgres_url` (and
/// dropped after, whatever happened), then prints its figures as JSON: one line with `json`,
/// indented otherwise.
async fn on_scratch_postgres<T, F>(
    postgres_url: &str,
    json: bool,
    measure: impl FnOnce(String) -> F,
) -> Result<(), String>
where
    T: Serialize,
    F: std::future::Future<Output = Result<T, String>>,
{
    let name = format!("hie_bench_{}", uuid::Uuid::now_v7().simple());
    let url = db::create_postgres_database(postgres_url, &name)
        .await
        .map_err(|e| {
            format!("cannot create a scratch database on the PostgreSQL server of --postgres-url: {e}")
        })?;
    let figures = measure(url).await;
    let _ = db::drop_postgres_database(postgres_url, &name).await;
    let figures = figures?;
    let text = if json {
        serde_json::to_string(&figures)
    } else {
        serde_json::to_string_pretty(&figures)
    };
    println!("{}", text.map_err(|e| e.to_string())?);
    Ok(())
}

/// The settings of a benchmark's exchange over `url`, with its audit and card keys in a
/// temporary folder (kept as long as the returned guard), and room for bulk statements.
fn scratch_settings(url: &str) -> Result<(Settings, tempfile::TempDir), String> {
    let mut settings = Settings::default();
    settings.database.url = SecretUrl::new(url);
    settings.database.max_connections = 16;
    let key_folder = tempfile::tempdir().map_err(|e| e.to_string())?;
    settings.audit.key_file = Some(key_folder.path().join("audit.key"));
    settings.limits.statement_timeout_ms = 3_600_000;
    Ok((settings, key_folder))
}

fn ratio(numerator: f64, denominator: f64) -> f64 {
    numerator / denominator.max(1e-9)
}

/// Registers the synthetic prefecture's organisations in a benchmark's exchange.
async fn register_prefecture_organisations(exchange: &Exchange) -> Result<(), String> {
    for organisation in SyntheticPrefecture::generate(1, 2026).organisations {
        exchange
            .directory
            .register_organisation(&bench_context(), organisation)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The context of the benchmark's own set-up (directory, loads), as an operator's.
fn bench_context() -> hie_core::context::RequestContext {
    hie_core::context::RequestContext::bulk_load("hie-bench", "benchmark set-up")
}

fn loopback() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}

struct ScratchTls {
    server: TlsSettings,
    client: ClientTlsConfig,
}

/// A development CA in `folder`, and a certificate for the prefecture's first hospital,
/// registered in the directory as production registers it.
async fn scratch_pki(
    exchange: &Exchange,
    prefecture: &SyntheticPrefecture,
    folder: &std::path::Path,
) -> Result<ScratchTls, String> {
    let pki_folder = PkiFolder::new(folder.join("pki"));
    pki::init(&pki_folder, &[])?;
    let organisation = prefecture
        .organisations
        .first()
        .ok_or("the synthetic prefecture has no organisation")?
        .code
        .clone();
    let fingerprint = pki::issue_organisation(&pki_folder, organisation.as_str())?;
    exchange
        .directory
        .register_certificate(&bench_context(), &organisation, &fingerprint)
        .await
        .map_err(|e| e.to_string())?;
    let client = hie_transport::tls::client_config(
        &pki_folder.ca_cert(),
        "localhost",
        Some((
            &pki_folder.organisation_cert(organisation.as_str()),
            &pki_folder.organisation_key(organisation.as_str()),
        )),
    )
    .map_err(|e| e.to_string())?;
    Ok(ScratchTls {
        server: TlsSettings {
            cert: pki_folder.server_cert(),
            key: pki_folder.server_key(),
            client_ca: pki_folder.ca_cert(),
        },
        client,
    })
}

/// Loads the prefecture with `n_loaders` concurrent batches. Records are split by resident, so
/// that two loaders never lock the same matching keys and never wait on each other.
async fn load_in_parallel(
    exchange: &Exchange,
    prefecture: &SyntheticPrefecture,
    n_loaders: usize,
) -> Result<(), String> {
    if n_loaders <= 1 {
        return load(exchange, prefecture).await;
    }
    for organisation in &prefecture.organisations {
        exchange
            .directory
            .register_organisation(&bench_context(), organisation.clone())
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut partitions = vec![Vec::new(); n_loaders];
    for record in &prefecture.records {
        let key = record.resident_id().map_or_else(
            || record.local_patient_number().value().to_owned(),
            |id| id.as_str().to_owned(),
        );
        let hash = key
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        partitions[(hash % n_loaders as u64) as usize].push(record.clone());
    }
    let mut tasks = tokio::task::JoinSet::new();
    // The planner's statistics are refreshed each time the tables double, as an operator would
    // after each stage of a bulk load: plans chosen for tables of a thousand rows (hash joins,
    // scans) are ruinous at a million, and autovacuum may be off or behind.
    let loaded = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let next_analyze = Arc::new(std::sync::atomic::AtomicUsize::new(5_000));
    for partition in partitions {
        let population = exchange.population.clone();
        let database = exchange.database.clone();
        let (loaded, next_analyze) = (loaded.clone(), next_analyze.clone());
        tasks.spawn(async move {
            use std::sync::atomic::Ordering::SeqCst;
            for batch in partition.chunks(500) {
                population
                    .register_batch(
                        &hie_core::context::RequestContext::bulk_load(
                            "hie-bench",
                            "synthetic population load",
                        ),
                        batch,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let now = loaded.fetch_add(batch.len(), SeqCst) + batch.len();
                let threshold = next_analyze.load(SeqCst);
                if now >= threshold
                    && next_analyze
                        .compare_exchange(threshold, threshold * 2, SeqCst, SeqCst)
                        .is_ok()
                {
                    database.analyze().await.map_err(|e| e.to_string())?;
                }
            }
            Ok::<(), String>(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.map_err(|e| e.to_string())??;
    }
    exchange.database.analyze().await.map_err(|e| e.to_string())
}

async fn count_persons(database: &Database) -> Result<i64, String> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM persons")
        .fetch_one(database.pool())
        .await
        .map_err(|e| e.to_string())?;
    Ok(n)
}

async fn connect(url: &str, n: usize, tls: Option<&ClientTlsConfig>) -> Result<Vec<Channel>, String> {
    let mut channels = Vec::new();
    for _ in 0..n.max(1) {
        let mut endpoint = Channel::from_shared(url.to_owned()).map_err(|e| e.to_string())?;
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls.clone()).map_err(|e| e.to_string())?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("cannot connect to the benchmark server: {e}"))?;
        channels.push(channel);
    }
    Ok(channels)
}

type CallFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;

fn health_call(channel: Channel, _call: usize) -> CallFuture {
    Box::pin(async move {
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(drop)
            .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
    })
}

fn resolve_call(
    targets: &[ProtoIdentifier],
) -> impl Fn(Channel, usize) -> CallFuture + Clone + Send + 'static {
    let targets = std::sync::Arc::new(targets.to_vec());
    move |channel, call| {
        let identifier = targets[call % targets.len()].clone();
        Box::pin(async move {
            // A registration clerk looking a patient up for treatment: the ordinary reception call.
            let request = as_clerk(ResolveIdentifierRequest {
                identifier: Some(identifier),
            });
            PopulationRegistryClient::new(channel)
                .resolve_identifier(request)
                .await
                .map(drop)
                .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
        })
    }
}

/// A request as a registration clerk's, for treatment: the ordinary reception context.
fn as_clerk<T>(message: T) -> tonic::Request<T> {
    with_context(message, "bench-clerk", "registration_clerk", "treatment")
}

/// A request carrying the request context of `user` in `role` for `purpose`.
fn with_context<T>(
    message: T,
    user: &'static str,
    role: &'static str,
    purpose: &'static str,
) -> tonic::Request<T> {
    use tonic::metadata::MetadataValue;
    let mut request = tonic::Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert("x-hie-user", MetadataValue::from_static(user));
    metadata.insert("x-hie-role", MetadataValue::from_static(role));
    metadata.insert("x-hie-purpose", MetadataValue::from_static(purpose));
    request
}

/// Runs `concurrency` workers calling `call` in a loop for `duration`; returns throughput and
/// latency percentiles over the calls that completed.
async fn measure<F>(channels: &[Channel], concurrency: usize, duration: Duration, call: F) -> CallFigures
where
    F: Fn(Channel, usize) -> CallFuture + Clone + Send + 'static,
{
    measure_timed(channels, concurrency, duration, move |channel, n| {
        let call = call(channel, n);
        Box::pin(async move {
            let sent = Instant::now();
            call.await.map(|()| sent.elapsed().as_micros() as u64)
        })
    })
    .await
}

/// A call that times its own measured part (in microseconds): what it does first, such as a
/// card reader asking for a challenge, is not counted in the latency.
type TimedCallFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, String>> + Send>>;

/// `concurrency` workers calling `call` until `duration` is over; latencies as the calls time them.
async fn measure_timed<F>(
    channels: &[Channel],
    concurrency: usize,
    duration: Duration,
    call: F,
) -> CallFigures
where
    F: Fn(Channel, usize) -> TimedCallFuture + Clone + Send + 'static,
{
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency.max(1) {
        let channel = channels[worker % channels.len()].clone();
        let call = call.clone();
        workers.spawn(async move {
            let mut outcomes = Vec::new();
            let mut n = worker * 7919;
            while Instant::now() < deadline {
                outcomes.push(call(channel.clone(), n).await);
                n += 1;
            }
            outcomes
        });
    }
    let mut outcomes = Vec::new();
    while let Some(Ok(mut worker_outcomes)) = workers.join_next().await {
        outcomes.append(&mut worker_outcomes);
    }
    figures(outcomes, started.elapsed())
}

/// Throughput and latency percentiles of calls that took `elapsed` in all.
fn figures(outcomes: Vec<Result<u64, String>>, elapsed: Duration) -> CallFigures {
    let mut latencies = Vec::with_capacity(outcomes.len());
    let mut errors = 0;
    let mut first_error = None;
    for outcome in outcomes {
        match outcome {
            Ok(latency) => latencies.push(latency),
            Err(error) => {
                errors += 1;
                first_error.get_or_insert(error);
            }
        }
    }
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    CallFigures {
        calls: latencies.len(),
        errors,
        first_error,
        throughput_per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_microseconds: percentile(0.50),
        p99_microseconds: percentile(0.99),
    }
}
