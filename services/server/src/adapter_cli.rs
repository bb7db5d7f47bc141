//! `hie adapter …`: the hospital adapters, run at or for a hospital, and the operator's view of
//! an adapter's journal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::FixedOffset;
use clap::{Args, Subcommand};
use hie_adapter_fhir::poll::PollSettings;
use hie_adapter_fhir::run::FhirSettings;
use hie_adapter_hl7v2::forwarder::Backoff;
use hie_adapter_hl7v2::gateway::{GatewaySettings, GatewayTls};
use hie_adapter_hl7v2::hl7::{Charset, Message};
use hie_adapter_hl7v2::journal::Journal;
use hie_adapter_hl7v2::listener::ListenerSettings;
use hie_adapter_hl7v2::run::AdapterSettings;
use hie_adapter_hl7v2::translate::Hospital;
use hie_adapter_relay::run::{RelaySettings, TlsFiles};
use hie_core::domain::OrganisationCode;

#[derive(Debug, Subcommand)]
pub enum AdapterCommand {
    /// Listen for HL7 v2 over MLLP from the hospital's interface engine, acknowledge every message
    /// once it is journaled, and forward it to the exchange.
    Hl7v2(Box<Hl7v2Args>),
    /// Take FHIR R4 resources and transaction bundles pushed to a FHIR endpoint, answer each once
    /// it is journaled, and forward them to the exchange.
    Fhir(Box<FhirArgs>),
    /// An adapter's backlog, oldest pending message, dead letters and last error, as JSON.
    Status(DataFolderArgs),
    /// Messages the exchange refused: list, show, and put back in the queue after a fix.
    #[command(subcommand)]
    DeadLetters(DeadLetterCommand),
}

#[derive(Debug, Args)]
pub struct DataFolderArgs {
    /// The adapter's data folder (its journal).
    #[arg(long, default_value = "hie-adapter")]
    pub data_folder: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// Every dead letter, oldest first, with the exchange's reason (JSON).
    List(DataFolderArgs),
    /// One message as it was received, one segment per line.
    Show {
        sequence: i64,
        #[command(flatten)]
        folder: DataFolderArgs,
    },
    /// Queue one dead letter (or every one with --all) for delivery again.
    Replay {
        #[arg(required_unless_present = "all")]
        sequence: Option<i64>,
        #[arg(long, conflicts_with = "sequence")]
        all: bool,
        #[command(flatten)]
        folder: DataFolderArgs,
    },
}

/// What every adapter needs: the exchange, the hospital, the journal, forwarding, the gateway.
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// The exchange: https://host:port (mutual TLS; plaintext http only to a loopback address).
    #[arg(long)]
    pub exchange: String,
    /// The hospital's code in the exchange's directory (the organisation its certificate names).
    #[arg(long)]
    pub organisation: String,
    #[command(flatten)]
    pub folder: DataFolderArgs,
    /// The CA that issued the exchange's certificate (PEM).
    #[arg(long, requires_all = ["cert", "key"])]
    pub ca: Option<PathBuf>,
    /// The hospital's certificate (PEM).
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// The hospital's private key (PEM).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// The name on the exchange's certificate, when it is not the URL's host.
    #[arg(long)]
    pub server_name: Option<String>,
    /// The user the adapter's calls are made as.
    #[arg(long, default_value = "hospital-interface")]
    pub user: String,
    /// How many patients' messages are forwarded at once (each patient's in order).
    #[arg(long, default_value_t = 16)]
    pub lanes: usize,
    /// The offset of timestamps that do not state one.
    #[arg(long, default_value = "+08:00")]
    pub utc_offset: String,
    /// How long delivered messages are kept, so that a late resend is recognised.
    #[arg(long, default_value_t = 7)]
    pub keep_delivered_days: u64,
    /// Serve hie.hospital.v1.HospitalGateway for the documents in this folder (the hospital keeps
    /// them; the exchange holds their metadata and fetches them on retrieve).
    #[arg(long, requires = "gateway_listen")]
    pub documents_folder: Option<PathBuf>,
    /// Where the gateway listens.
    #[arg(long)]
    pub gateway_listen: Option<SocketAddr>,
    /// The gateway's certificate and key (PEM), and the CA of the exchange's certificate.
    #[arg(long, requires_all = ["gateway_key", "gateway_client_ca", "exchange_fingerprint"])]
    pub gateway_cert: Option<PathBuf>,
    #[arg(long)]
    pub gateway_key: Option<PathBuf>,
    #[arg(long)]
    pub gateway_client_ca: Option<PathBuf>,
    /// The SHA-256 fingerprint (hex) of the exchange's certificate: the only client the gateway
    /// answers. Repeatable (for a certificate renewal).
    #[arg(long)]
    pub exchange_fingerprint: Vec<String>,
}

impl RelayArgs {
    pub fn settings(&self) -> Result<RelaySettings, String> {
        let organisation =
            OrganisationCode::parse(&self.organisation).map_err(|e| format!("--organisation: {}", e.0))?;
        let utc_offset: FixedOffset = self
            .utc_offset
            .parse()
            .map_err(|_| format!("--utc-offset {}: expected +HH:MM or -HH:MM", self.utc_offset))?;
        if self.lanes == 0 || self.lanes > 1024 {
            return Err("--lanes: expected 1 to 1024".to_owned());
        }
        let tls = match (&self.ca, &self.cert, &self.key) {
            (Some(ca), Some(cert), Some(key)) => Some(TlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
                server_name: self.server_name.clone(),
            }),
            (None, None, None) => None,
            _ => return Err("--ca, --cert and --key go together".to_owned()),
        };
        Ok(RelaySettings {
            exchange_url: self.exchange.clone(),
            tls,
            hospital: Hospital {
                organisation,
                utc_offset,
            },
            data_folder: self.folder.data_folder.clone(),
            user: self.user.clone(),
            lanes: self.lanes,
            backoff: Backoff::default(),
            keep_delivered: Duration::from_secs(self.keep_delivered_days * 86_400),
            gateway: match (&self.documents_folder, self.gateway_listen) {
                (Some(folder), Some(listen)) => Some(GatewaySettings {
                    listen,
                    documents_folder: folder.clone(),
                    tls: match (&self.gateway_cert, &self.gateway_key, &self.gateway_client_ca) {
                        (Some(cert), Some(key), Some(client_ca)) => Some(GatewayTls {
                            cert: cert.clone(),
                            key: key.clone(),
                            client_ca: client_ca.clone(),
                            exchange_fingerprints: self.exchange_fingerprint.clone(),
                        }),
                        _ => None,
                    },
                }),
                _ => None,
            },
        })
    }
}

#[derive(Debug, Args)]
pub struct Hl7v2Args {
    /// Where the MLLP listener listens.
    #[arg(long, default_value = "127.0.0.1:2575")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub relay: RelayArgs,
    /// The character set of messages that leave MSH-18 empty: UNICODE UTF-8, GB 18030-2000, GBK, …
    #[arg(long, default_value = "UNICODE UTF-8")]
    pub default_charset: String,
    /// Larger messages are refused (AR).
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,
}

impl Hl7v2Args {
    pub fn settings(&self) -> Result<AdapterSettings, String> {
        let relay = self.relay.settings()?;
        let default_charset = Charset::from_msh18(&self.default_charset).ok_or_else(|| {
            format!(
                "--default-charset {}: expected UNICODE UTF-8, GB 18030-2000, GBK, ASCII or 8859/1",
                self.default_charset
            )
        })?;
        Ok(AdapterSettings {
            listen: self.listen,
            listener: ListenerSettings {
                default_charset,
                max_message_bytes: self.max_message_bytes,
                ..ListenerSettings::default()
            },
            relay,
        })
    }
}

#[derive(Debug, Args)]
pub struct FhirArgs {
    /// Where the FHIR endpoint listens (its base is http://ADDR/fhir).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub fhir_listen: SocketAddr,
    /// Serve the FHIR endpoint in plaintext beyond loopback (a hospital network the operator
    /// vouches for).
    #[arg(long)]
    pub insecure_plaintext_on_network: bool,
    /// Larger bodies are refused (413).
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Also poll the hospital's FHIR server at this base (http://host:port/path) for resources
    /// updated since the last round.
    #[arg(long)]
    pub poll: Option<String>,
    #[arg(long, default_value_t = 30)]
    pub poll_interval_seconds: u64,
    #[command(flatten)]
    pub relay: RelayArgs,
}

pub async fn run(command: AdapterCommand) -> Result<(), String> {
    match command {
        AdapterCommand::Hl7v2(args) => {
            let adapter = hie_adapter_hl7v2::run::start(args.settings()?).await?;
            println!("hie adapter hl7v2: MLLP on {}", adapter.intake_address());
            if let Some(gateway) = adapter.gateway_address() {
                println!("hie adapter hl7v2: hospital gateway on {gateway}");
            }
            adapter.until_interrupted().await;
            Ok(())
        }
        AdapterCommand::Fhir(args) => {
            let adapter = hie_adapter_fhir::run::start(FhirSettings {
                listen: args.fhir_listen,
                plaintext_on_network: args.insecure_plaintext_on_network,
                max_body_bytes: args.max_body_bytes,
                relay: args.relay.settings()?,
                poll: args.poll.as_ref().map(|base| PollSettings {
                    base: base.clone(),
                    interval: Duration::from_secs(args.poll_interval_seconds.max(1)),
                }),
            })
            .await?;
            println!(
                "hie adapter fhir: FHIR endpoint on http://{}/fhir",
                adapter.intake_address()
            );
            if let Some(gateway) = adapter.gateway_address() {
                println!("hie adapter fhir: hospital gateway on {gateway}");
            }
            adapter.until_interrupted().await;
            Ok(())
        }
        AdapterCommand::Status(folder) => {
            let journal = open(&folder).await?;
            let status = journal.status().await.map_err(|e| e.to_string())?;
            print_json(&serde_json::json!({"data_folder": folder.data_folder, "journal": status}))
        }
        AdapterCommand::DeadLetters(DeadLetterCommand::List(folder)) => {
            let journal = open(&folder).await?;
            let letters = journal.dead_letters(10_000).await.map_err(|e| e.to_string())?;
            print_json(&letters)
        }
        AdapterCommand::DeadLetters(DeadLetterCommand::Show { sequence, folder }) => {
            let journal = open(&folder).await?;
            let (state, raw) = journal
                .message(sequence)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no message {sequence} in the journal"))?;
            let text = Message::parse(&raw, Charset::Utf8)
                .ok()
                .and_then(|m| m.charset().decode(&raw).ok())
                .unwrap_or_else(|| String::from_utf8_lossy(&raw).into_owned());
            println!("# message {sequence}: {state}");
            for segment in text.split(['\r', '\n']).filter(|s| !s.is_empty()) {
                println!("{segment}");
            }
            Ok(())
        }
        AdapterCommand::DeadLetters(DeadLetterCommand::Replay {
            sequence,
            all: _,
            folder,
        }) => {
            let journal = open(&folder).await?;
            let replayed = journal.replay(sequence).await.map_err(|e| e.to_string())?;
            if replayed == 0 && sequence.is_some() {
                return Err(format!(
                    "message {} is not a dead letter",
                    sequence.unwrap_or_default()
                ));
            }
            println!(
                "{replayed} message(s) queued again; a running adapter sends them within a second or two"
            );
            Ok(())
        }
    }
}

async fn open(folder: &DataFolderArgs) -> Result<Journal, String> {
    if !folder.data_folder.join("journal.sqlite").exists() {
        return Err(format!(
            "{} holds no adapter journal",
            folder.data_folder.display()
        ));
    }
    Journal::open(&folder.data_folder)
        .await
        .map_err(|e| e.to_string())
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}
