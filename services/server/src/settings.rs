//! One typed settings struct: defaults, then a TOML file, then `HIE_*` environment variables
//! (nested keys joined by a double underscore: `HIE_DATABASE__URL`), then command-line flags.

use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Everything `hie` can be configured with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the gRPC server listens.
    pub listen: SocketAddr,
    /// Which services `hie serve` runs, by name (`population`, `directory`, `access`, `records`, `emr`,
    /// `cards`, `events`, `telemedicine`); all of
    /// them when empty. Replicas that scale one service apart serve a subset.
    pub services: Vec<String>,
    pub database: DatabaseSettings,
    /// Whether `hie serve` applies pending migrations at start-up.
    pub migrate_on_start: bool,
    /// The log filter, in `tracing` syntax (for example `info` or `hie=debug,sqlx=warn`).
    pub log: String,
    /// Mutual TLS. When set, every call must present a client certificate issued by `client_ca`
    /// and registered in the directory for an active organisation.
    pub tls: Option<TlsSettings>,
    pub consent: ConsentSettings,
    pub matching: MatchingSettings,
    pub limits: LimitSettings,
    pub audit: AuditSettings,
    pub cards: CardSettings,
    /// The gateways of hospitals that keep their documents themselves: the EMR registry fetches
    /// their content from there on retrieve.
    pub hospital_gateways: Vec<HospitalGatewaySettings>,
    pub events: EventSettings,
}

/// The event log's delivery beyond gRPC streams.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EventSettings {
    /// A NATS server with JetStream (`nats://127.0.0.1:4222`): subscriptions whose channel is
    /// NATS are published to its `HIE_EVENTS` stream. Unset: NATS subscriptions are refused.
    pub nats_url: Option<String>,
}

/// One hospital's gateway (`hie.hospital.v1.HospitalGateway`, served by its adapter).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HospitalGatewaySettings {
    /// The hospital's code in the directory.
    pub organisation: String,
    /// `https://host:port`; `http://` only to a loopback address (development).
    pub url: String,
    /// For https: the CA that issued the gateway's certificate, PEM. The exchange presents its
    /// own certificate (`[tls] cert` and `key`) as its client certificate.
    pub ca: Option<std::path::PathBuf>,
    /// The name on the gateway's certificate; the URL's host when absent.
    pub server_name: Option<String>,
}

/// The card service's keys, in files outside the database (hex, at least 32 bytes each).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CardSettings {
    /// The secret under which the exchange keeps each card number as an HMAC-SHA256 token (the
    /// database never holds a number). Created when absent and no card is stored yet. Unset:
    /// `card-token.key` beside the audit key.
    pub token_key_file: Option<std::path::PathBuf>,
    /// Token keys used before a rotation: cards stored under them are still found.
    pub retired_token_key_files: Vec<std::path::PathBuf>,
    /// The folder of the card issuers' master keys, `<type>.issuer.key` for each card type
    /// (`resident_health`, `social_security`, `bank`, `citizen`): each chip card's key is
    /// derived from its issuer's master key and its number. A missing file is created, for
    /// development; in production each issuer installs its own. Unset: beside the audit key.
    pub issuer_key_folder: Option<std::path::PathBuf>,
}

/// Where the audit trail's key and anchor live: outside the database, so that write access to the
/// database alone can neither recompute the chain after an edit nor trim its tail unnoticed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// The secret (hex, at least 32 bytes) whose HMAC-SHA256 chains the events. Created, readable
    /// by its owner only, when it does not exist and the trail holds no keyed event yet. Unset:
    /// `audit.key` beside a SQLite database file, `hie-data/audit.key` for PostgreSQL.
    pub key_file: Option<std::path::PathBuf>,
    /// Keys that chained older events, kept so that `hie audit verify` still checks them after a
    /// rotation (move the old key file here and give `key_file` a new one).
    pub retired_key_files: Vec<std::path::PathBuf>,
    /// Where this process keeps the last link it chained (sequence and hash). Unset:
    /// `audit.anchor` beside the key file.
    pub anchor_file: Option<std::path::PathBuf>,
}

impl Settings {
    /// The audit key file: as set, or beside a SQLite database file, or under `hie-data/`.
    pub fn audit_key_file(&self) -> std::path::PathBuf {
        if let Some(path) = &self.audit.key_file {
            return path.clone();
        }
        let url = self.database.url.expose();
        let sqlite_file = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .map(|rest| rest.split('?').next().unwrap_or(rest))
            .filter(|path| !path.is_empty() && *path != ":memory:");
        match sqlite_file.and_then(|file| Path::new(file).parent()) {
            Some(folder) => folder.join("audit.key"),
            None => "hie-data/audit.key".into(),
        }
    }

    /// The audit anchor file: as set, or beside the key file.
    pub fn audit_anchor_file(&self) -> std::path::PathBuf {
        self.audit
            .anchor_file
            .clone()
            .unwrap_or_else(|| self.audit_key_file().with_file_name("audit.anchor"))
    }
}

/// Bounds on what one caller, connection or call may hold, so that a slow or hostile client cannot
/// tie up the server or the database.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// A call running longer is cancelled with DEADLINE_EXCEEDED (a client's shorter
    /// `grpc-timeout` wins).
    pub request_timeout_ms: u64,
    /// Calls one connection may have in progress at once; more wait.
    pub concurrency_per_connection: usize,
    /// HTTP/2 streams one connection may open at once.
    pub max_concurrent_streams: u32,
    /// How often an idle HTTP/2 connection is pinged, and how long an answer may take before the
    /// connection is closed.
    pub http2_keepalive_interval_ms: u64,
    pub http2_keepalive_timeout_ms: u64,
    /// TCP keepalive on accepted connections.
    pub tcp_keepalive_ms: u64,
    /// A TLS handshake taking longer is abandoned.
    pub tls_handshake_timeout_ms: u64,
    /// PostgreSQL: a statement running longer is cancelled (UNAVAILABLE to the caller).
    pub statement_timeout_ms: u64,
    /// PostgreSQL: a wait for a lock (row, table or a registration's advisory lock) longer than
    /// this fails (UNAVAILABLE), so that no call holds a pooled connection waiting indefinitely.
    pub lock_timeout_ms: u64,
    /// The largest document content the exchange keeps itself; larger documents are kept at the
    /// hospital and fetched through its gateway.
    pub document_max_bytes: u64,
    /// A hospital gateway answering later than this is UNAVAILABLE to the retrieving caller.
    pub gateway_timeout_ms: u64,
}

impl Default for LimitSettings {
    fn default() -> LimitSettings {
        LimitSettings {
            request_timeout_ms: 30_000,
            concurrency_per_connection: 128,
            max_concurrent_streams: 256,
            http2_keepalive_interval_ms: 30_000,
            http2_keepalive_timeout_ms: 10_000,
            tcp_keepalive_ms: 60_000,
            tls_handshake_timeout_ms: 10_000,
            statement_timeout_ms: 30_000,
            lock_timeout_ms: 5_000,
            document_max_bytes: 16 * 1024 * 1024,
            gateway_timeout_ms: 10_000,
        }
    }
}

impl LimitSettings {
    /// Refuses limits of zero, which would refuse every call; names the setting.
    pub fn check(&self) -> Result<(), String> {
        let named = [
            ("request_timeout_ms", self.request_timeout_ms),
            (
                "concurrency_per_connection",
                self.concurrency_per_connection as u64,
            ),
            ("max_concurrent_streams", u64::from(self.max_concurrent_streams)),
            ("http2_keepalive_interval_ms", self.http2_keepalive_interval_ms),
            ("http2_keepalive_timeout_ms", self.http2_keepalive_timeout_ms),
            ("tcp_keepalive_ms", self.tcp_keepalive_ms),
            ("tls_handshake_timeout_ms", self.tls_handshake_timeout_ms),
            ("statement_timeout_ms", self.statement_timeout_ms),
            ("lock_timeout_ms", self.lock_timeout_ms),
            ("document_max_bytes", self.document_max_bytes),
            ("gateway_timeout_ms", self.gateway_timeout_ms),
        ];
        match named.iter().find(|(_, value)| *value == 0) {
            Some((name, _)) => Err(format!("limits.{name} must be greater than 0")),
            None => Ok(()),
        }
    }
}

/// The thresholds of match probability for registrations.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MatchingSettings {
    /// At or above: the record joins the person.
    pub link_threshold: f64,
    /// At or above (and below link_threshold): the pair waits in the review queue.
    pub review_threshold: f64,
    /// Blocking rules (`part+part`), a union: records sharing a key under any rule are compared.
    /// Empty (the default): the rules `hie population train` chose from the registry's records
    /// with the newest model, or before any training the built-in ones. After changing them,
    /// `hie population rematch` renews every record's keys.
    pub blocking_rules: Vec<String>,
}

impl Default for MatchingSettings {
    fn default() -> MatchingSettings {
        MatchingSettings {
            link_threshold: 0.95,
            review_threshold: 0.5,
            blocking_rules: Vec::new(),
        }
    }
}

/// The region's consent policy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ConsentSettings {
    /// Opt-in: a person's data is shared only once they agreed. The default, opt-out, shares
    /// unless they withheld.
    pub opt_in: bool,
    /// Whether emergency access with a reason (break-the-glass) overrides a refusal. It is
    /// always flagged in the audit trail and the patient's access log.
    pub emergency_override: bool,
}

impl Default for ConsentSettings {
    fn default() -> ConsentSettings {
        ConsentSettings {
            opt_in: false,
            emergency_override: true,
        }
    }
}

/// The files of the server's TLS identity and the CA its clients' certificates come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The server's certificate chain, PEM.
    pub cert: std::path::PathBuf,
    /// The server's private key, PEM.
    pub key: std::path::PathBuf,
    /// The CA that issues organisations' client certificates, PEM.
    pub client_ca: std::path::PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://path/to/file.db` (the embedded default) or `postgres://user@host/db`.
    pub url: SecretUrl,
    /// The size of the connection pool.
    pub max_connections: u32,
}

/// A database URL, which may carry a password: it never prints.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> SecretUrl {
        SecretUrl(url.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = self.0.split(':').next().unwrap_or("");
        write!(f, "{scheme}://…")
    }
}

/// The embedded default: a SQLite file under `./hie-data/`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://hie-data/hie.db";

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            services: Vec::new(),
            database: DatabaseSettings::default(),
            migrate_on_start: true,
            log: "info".into(),
            tls: None,
            consent: ConsentSettings::default(),
            matching: MatchingSettings::default(),
            limits: LimitSettings::default(),
            audit: AuditSettings::default(),
            cards: CardSettings::default(),
            hospital_gateways: Vec::new(),
            events: EventSettings::default(),
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> DatabaseSettings {
        DatabaseSettings {
            url: SecretUrl::new(DEFAULT_DATABASE_URL),
            max_connections: 16,
        }
    }
}

impl Settings {
    /// Loads the settings: defaults, then `file` (or `./hie.toml` when it exists), then the
    /// environment. A file named explicitly must exist.
    pub fn load(file: Option<&Path>) -> Result<Settings, String> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match file {
            Some(path) if !path.exists() => {
                return Err(format!("the settings file {} does not exist", path.display()));
            }
            Some(path) => figment = figment.merge(Toml::file(path)),
            None if Path::new("hie.toml").exists() => figment = figment.merge(Toml::file("hie.toml")),
            None => {}
        }
        figment
            // HIE_TEST_* and HIE_BENCH_* belong to the tests and benchmarks, not to the server;
            // every other HIE_* variable must be a setting, so that a typo is an error.
            .merge(
                Env::prefixed("HIE_")
                    .filter(|key| !key.starts_with("test_") && !key.starts_with("bench_"))
                    .split("__"),
            )
            .extract()
            .map_err(|e| format!("invalid settings: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_listen_on_loopback_with_the_embedded_database() {
        let settings = Settings::default();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:50051");
        assert_eq!(settings.database.url.expose(), DEFAULT_DATABASE_URL);
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's own error type, in a test
    fn the_example_file_reads_and_says_what_the_defaults_are() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("hie.toml", include_str!("../../../deploy/hie.example.toml"))?;
            let settings = Settings::load(None).map_err(figment::Error::from)?;
            assert_eq!(settings, Settings::default());
            Ok(())
        });
    }

    #[test]
    fn a_database_url_never_prints_its_password() {
        let url = SecretUrl::new("postgres://hie:secret@db/hie");
        assert!(!format!("{url:?}").contains("secret"));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's own error type, in a test
    fn a_file_then_the_environment_override_the_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "hie.toml",
                "listen = \"127.0.0.1:7000\"\n[database]\nmax_connections = 4\n",
            )?;
            jail.set_env("HIE_DATABASE__URL", "postgres://postgres@127.0.0.1/hie");
            jail.set_env("HIE_TEST_POSTGRES_URL", "postgres://elsewhere/x");
            jail.set_env("HIE_BENCH_POSTGRES_URL", "postgres://elsewhere/y");
            let settings = Settings::load(None).map_err(figment::Error::from)?;
            assert_eq!(settings.listen.to_string(), "127.0.0.1:7000");
            assert_eq!(settings.database.max_connections, 4);
            assert_eq!(
                settings.database.url.expose(),
                "postgres://postgres@127.0.0.1/hie"
            );
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's own error type, in a test
    fn an_unknown_hie_variable_is_an_error() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("HIE_LISTN", "127.0.0.1:7000");
            assert!(Settings::load(None).unwrap_err().contains("listn"));
            Ok(())
        });
    }

    #[test]
    fn a_limit_of_zero_is_refused_naming_the_setting() {
        assert!(LimitSettings::default().check().is_ok());
        let zero = LimitSettings {
            lock_timeout_ms: 0,
            ..LimitSettings::default()
        };
        assert_eq!(
            zero.check().unwrap_err(),
            "limits.lock_timeout_ms must be greater than 0"
        );
    }

    #[test]
    fn the_audit_key_sits_beside_a_sqlite_file_unless_set() {
        let mut settings = Settings::default();
        settings.database.url = SecretUrl::new("sqlite:///var/lib/hie/hie.db?mode=rwc");
        assert_eq!(settings.audit_key_file(), Path::new("/var/lib/hie/audit.key"));
        assert_eq!(
            settings.audit_anchor_file(),
            Path::new("/var/lib/hie/audit.anchor")
        );
        settings.database.url = SecretUrl::new("postgres://hie@db/hie");
        assert_eq!(settings.audit_key_file(), Path::new("hie-data/audit.key"));
        settings.audit.key_file = Some("/etc/hie/audit.key".into());
        assert_eq!(settings.audit_key_file(), Path::new("/etc/hie/audit.key"));
        assert_eq!(settings.audit_anchor_file(), Path::new("/etc/hie/audit.anchor"));
    }
}
