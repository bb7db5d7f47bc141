//! The command line of `hie`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use hie_core::db::Database;

use crate::settings::SecretUrl;
use crate::{
    Exchange, Settings, adapter_cli, bench, card_cli, demo, linkage_cli, population_file, population_jobs,
};

/// hie: a regional health-information exchange.
#[derive(Debug, Parser)]
#[command(name = "hie", version, about)]
pub struct Cli {
    /// A TOML settings file; by default ./hie.toml when it exists. HIE_* environment variables
    /// override it (HIE_LISTEN, HIE_DATABASE__URL, HIE_DATABASE__MAX_CONNECTIONS, HIE_LOG).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve every service over gRPC (with health and reflection) until interrupted.
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Serve on the embedded database with a synthetic prefecture loaded, and print grpcurl
    /// commands to try.
    Demo(DemoArgs),
    /// Measure the exchange; prints JSON.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// A development certificate authority for mutual TLS.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// The audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Link two population files: one row per matched pair (left_id,right_id,probability).
    Link(linkage_cli::LinkArgs),
    /// Find the records of one person within a population file (id_1,id_2,probability).
    Dedupe(linkage_cli::DedupeArgs),
    /// Write synthetic data.
    #[command(subcommand)]
    Generate(GenerateCommand),
    /// Operator jobs on the population registry: train the matching model, re-match.
    #[command(subcommand)]
    Population(population_jobs::PopulationCommand),
    /// Cards at a reception desk: `hie card simulate check-in --type bank --number … --organisation
    /// QDN-H01 --department 内科`.
    #[command(subcommand)]
    Card(card_cli::CardCommand),
    /// Hospital adapters: `hie adapter hl7v2 --exchange https://… --organisation QDN-H01 …`, and
    /// `hie adapter status` / `hie adapter dead-letters …` on an adapter's data folder.
    #[command(subcommand)]
    Adapter(adapter_cli::AdapterCommand),
}

#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// A population file with realistic corruption, and its truth (record_id,person_id), for
    /// `hie dedupe`; read it with the --map arguments this prints.
    PopulationFile {
        /// chinese (names in characters, divisions, phones, resident identity numbers) or latin
        /// (given name and surname, street, suburb, postcode, state, an id number).
        #[arg(long, value_enum, default_value = "chinese")]
        script: population_file::Script,
        #[arg(long, default_value_t = 100_000)]
        records: usize,
        /// The share of records carrying the identity number (resident identity number or id
        /// number).
        #[arg(long, alias = "resident-id-share", default_value_t = 0.8)]
        id_share: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, value_name = "CSV")]
        out: PathBuf,
        #[arg(long, value_name = "CSV")]
        truth: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain of the audit trail; name the first edited event, or the gap where
    /// events were deleted. Exits 1 when the chain is broken.
    Verify(DatabaseArgs),
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create the CA and the server's certificate (for localhost, 127.0.0.1 and --server-name).
    Init {
        /// Where the files go.
        #[arg(long, default_value = "hie-data/pki")]
        dir: PathBuf,
        /// A further DNS name or IP address the server is reached at; repeatable.
        #[arg(long = "server-name")]
        server_names: Vec<String>,
    },
    /// Issue an organisation's client certificate and register its fingerprint in the directory
    /// of the configured database. The organisation must be registered.
    Issue {
        /// The organisation's code.
        #[arg(long)]
        org: String,
        #[arg(long, default_value = "hie-data/pki")]
        dir: PathBuf,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revoke a client certificate: connections presenting it are refused from now on.
    Revoke {
        /// The certificate file (PEM) to revoke.
        #[arg(long, conflicts_with = "fingerprint", required_unless_present = "fingerprint")]
        cert: Option<PathBuf>,
        /// Or its SHA-256 fingerprint, in hex.
        #[arg(long)]
        fingerprint: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// The database: sqlite://path (the embedded default) or postgres://user@host/db.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on [default: 127.0.0.1:50051].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Serve plaintext gRPC on an address other than loopback. For development only: every call,
    /// patient data included, crosses the network unencrypted and unauthenticated.
    #[arg(long)]
    pub insecure_plaintext_on_network: bool,
    /// Relay event subscriptions whose channel is NATS to this NATS JetStream server
    /// (`nats://127.0.0.1:4222`).
    #[arg(long, value_name = "URL")]
    pub events_nats: Option<String>,
    /// Serve only these services (comma-separated: population, directory, access, records, emr, cards,
    /// events, telemedicine) [default:
    /// every one]. An unknown name is refused at start-up.
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// How many residents to generate.
    #[arg(long, default_value_t = 20_000)]
    pub residents: usize,
    /// The seed of the generator; the same seed makes the same prefecture.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
}

impl Cli {
    /// The settings: file and environment, then the flags of the command.
    fn settings(&self) -> Result<Settings, String> {
        let mut settings = Settings::load(self.config.as_deref())?;
        let (listen, database) = match &self.command {
            Command::Serve(serve) | Command::Demo(DemoArgs { serve, .. }) => {
                if !serve.services.is_empty() {
                    settings.services = serve.services.iter().map(|s| s.trim().to_owned()).collect();
                }
                if let Some(url) = &serve.events_nats {
                    settings.events.nats_url = Some(url.clone());
                }
                (serve.listen, &serve.database)
            }
            Command::Migrate(database)
            | Command::Audit(AuditCommand::Verify(database))
            | Command::Population(
                population_jobs::PopulationCommand::Train(database)
                | population_jobs::PopulationCommand::Rematch(population_jobs::RematchArgs {
                    database, ..
                }),
            )
            | Command::Certs(CertsCommand::Issue { database, .. } | CertsCommand::Revoke { database, .. }) => {
                (None, database)
            }
            Command::Card(card_cli::CardCommand::Simulate(
                card_cli::SimulateCommand::Resolve(reader)
                | card_cli::SimulateCommand::CheckIn(card_cli::CheckInArgs { reader, .. }),
            )) => (None, &reader.database),
            Command::Certs(CertsCommand::Init { .. }) => return Ok(settings),
            // Batch linkage works on files, not the database.
            Command::Link(_) | Command::Dedupe(_) | Command::Generate(_) => return Ok(settings),
            // An adapter runs at the hospital, with its own journal and no exchange database.
            Command::Adapter(_) => return Ok(settings),
            Command::Bench(_) => {
                // Benchmarks print JSON; per-request information logs would only add noise.
                if std::env::var_os("HIE_LOG").is_none() {
                    settings.log = "warn".into();
                }
                return Ok(settings);
            }
        };
        if let Some(listen) = listen {
            settings.listen = listen;
        }
        if let Some(url) = &database.database_url {
            settings.database.url = SecretUrl::new(url.clone());
        }
        Ok(settings)
    }
}

/// Runs the command line; the exit code says whether it succeeded.
pub fn run(cli: Cli) -> ExitCode {
    let settings = match cli.settings() {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("hie: {message}");
            return ExitCode::from(2);
        }
    };
    init_logging(&settings.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("hie: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(settings, args.insecure_plaintext_on_network).await,
            Command::Migrate(_) => migrate(&settings).await,
            Command::Demo(args) => {
                demo::run(
                    settings,
                    args.residents,
                    args.seed,
                    args.serve.insecure_plaintext_on_network,
                )
                .await
            }
            Command::Bench(command) => bench::run(command).await,
            Command::Certs(command) => certs(&settings, command).await,
            Command::Audit(AuditCommand::Verify(_)) => verify_audit(&settings).await,
            Command::Link(args) => {
                linkage_cli::link(&args).map(|summary| report_linkage(&summary, &args.out))
            }
            Command::Dedupe(args) => {
                linkage_cli::dedupe(&args).map(|summary| report_linkage(&summary, &args.out))
            }
            Command::Population(command) => population_jobs::run(&settings, command).await,
            Command::Card(command) => card_cli::run(&settings, command).await,
            Command::Adapter(command) => adapter_cli::run(command).await,
            Command::Generate(GenerateCommand::PopulationFile {
                script,
                records,
                id_share,
                seed,
                out,
                truth,
            }) => generate_population_file(script, records, id_share, seed, &out, &truth),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("hie: {message}");
            ExitCode::FAILURE
        }
    }
}

fn report_linkage(summary: &linkage_cli::LinkageSummary, out: &std::path::Path) {
    eprintln!(
        "hie: {} records, {} candidate pairs compared, {} pairs written to {}{}",
        summary.records,
        summary.candidate_pairs,
        summary.pairs_written,
        out.display(),
        if summary.warnings > 0 {
            format!(" ({} warnings above)", summary.warnings)
        } else {
            String::new()
        }
    );
}

fn generate_population_file(
    script: population_file::Script,
    records: usize,
    id_share: f64,
    seed: u64,
    out: &std::path::Path,
    truth: &std::path::Path,
) -> Result<(), String> {
    if !(0.0..=1.0).contains(&id_share) {
        return Err(format!("--id-share {id_share} must lie between 0 and 1"));
    }
    let options = population_file::GeneratorOptions {
        script,
        records,
        id_share,
        seed,
    };
    let generated = population_file::generate(&options);
    population_file::write(script, &generated, out, truth)
        .map_err(|e| format!("cannot write the files: {e}"))?;
    let maps: Vec<String> = population_file::column_map(script)
        .iter()
        .map(|m| format!("--map {m}"))
        .collect();
    eprintln!(
        "hie: wrote {} records to {} and the truth to {}; read it with: --id-column record_id {}",
        generated.len(),
        out.display(),
        truth.display(),
        maps.join(" ")
    );
    Ok(())
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn serve(settings: Settings, plaintext_on_network: bool) -> Result<(), String> {
    let exchange = Exchange::open(&settings).await.map_err(|e| e.to_string())?;
    let server = exchange
        .start_with(settings.listen, settings.tls.as_ref(), plaintext_on_network)
        .await
        .map_err(|e| e.to_string())?;
    serve_until_interrupted(server).await
}

/// Serves until Ctrl-C (or SIGTERM), then shuts down gracefully.
pub async fn serve_until_interrupted(mut server: crate::RunningServer) -> Result<(), String> {
    tokio::select! {
        result = server.wait() => return result.map_err(|e| e.to_string()),
        () = shutdown_signal() => {}
    }
    tracing::info!("shutting down");
    server.stop().await.map_err(|e| e.to_string())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn migrate(settings: &Settings) -> Result<(), String> {
    let database = Database::connect(settings.database.url.expose(), 1)
        .await
        .map_err(|e| e.to_string())?;
    database.migrate().await.map_err(|e| e.to_string())?;
    database.close().await;
    eprintln!("hie: the {:?} database is up to date", database.backend());
    Ok(())
}

/// The request context of an operator's command on this machine: no organisation, the region's
/// administrator, the operating-system user as the user, and what the command does as the reason.
pub fn operator(reason: &str) -> hie_core::context::RequestContext {
    let user = std::env::var("USER").unwrap_or_else(|_| "operator".to_owned());
    hie_core::context::RequestContext::bulk_load(
        &format!("os:{}", user.chars().take(60).collect::<String>()),
        reason,
    )
}

async fn certs(settings: &Settings, command: CertsCommand) -> Result<(), String> {
    use hie_transport::pki::{self, PkiFolder};
    match command {
        CertsCommand::Init { dir, server_names } => {
            let folder = PkiFolder::new(dir);
            pki::init(&folder, &server_names)?;
            println!(
                "created {} and the server certificate {}; serve with mutual TLS by adding to hie.toml:\n\n\
                 [tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"",
                folder.ca_cert().display(),
                folder.server_cert().display(),
                folder.server_cert().display(),
                folder.server_key().display(),
                folder.ca_cert().display()
            );
            Ok(())
        }
        CertsCommand::Issue { org, dir, .. } => {
            let code = hie_core::domain::OrganisationCode::parse(&org).map_err(|e| format!("--org: {e}"))?;
            let exchange = Exchange::open(settings).await.map_err(|e| e.to_string())?;
            exchange
                .directory
                .get_organisation(&code)
                .await
                .map_err(|e| format!("{e}; register it first"))?;
            let folder = PkiFolder::new(dir);
            let fingerprint = pki::issue_organisation(&folder, code.as_str())?;
            exchange
                .directory
                .register_certificate(
                    &operator("issuing an organisation's client certificate"),
                    &code,
                    &fingerprint,
                )
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "issued {} (key {}) for {code}, fingerprint {fingerprint}, registered in the directory",
                folder.organisation_cert(code.as_str()).display(),
                folder.organisation_key(code.as_str()).display()
            );
            Ok(())
        }
        CertsCommand::Revoke {
            cert, fingerprint, ..
        } => {
            let fingerprint = match (cert, fingerprint) {
                (Some(path), _) => {
                    let pem = std::fs::read_to_string(&path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    pki::fingerprint_of_pem(&pem)?
                }
                (None, Some(fingerprint)) => fingerprint.trim().to_ascii_lowercase(),
                (None, None) => return Err("give --cert FILE or --fingerprint HEX".into()),
            };
            let exchange = Exchange::open(settings).await.map_err(|e| e.to_string())?;
            exchange
                .directory
                .revoke_certificate(
                    &operator("revoking an organisation's client certificate"),
                    &fingerprint,
                )
                .await
                .map_err(|e| e.to_string())?;
            println!("revoked {fingerprint}");
            Ok(())
        }
    }
}

async fn verify_audit(settings: &Settings) -> Result<(), String> {
    let exchange = Exchange::open(settings).await.map_err(|e| e.to_string())?;
    match exchange
        .access
        .audit()
        .verify()
        .await
        .map_err(|e| e.to_string())?
    {
        Ok(n_events) => {
            println!("audit trail intact: {n_events} events, every hash verified");
            Ok(())
        }
        Err(broken) => Err(format!("audit trail broken: {broken}")),
    }
}
