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
    /// After changing them, `hie population rematch` renews every record's keys.
    pub blocking_rules: Vec<String>,
}

impl Default for MatchingSettings {
    fn default() -> MatchingSettings {
        MatchingSettings {
            link_threshold: 0.95,
            review_threshold: 0.5,
            blocking_rules: hie_population::domain::linkage::blocking::DEFAULT_RULES
                .iter()
                .map(|r| (*r).to_owned())
                .collect(),
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
            database: DatabaseSettings::default(),
            migrate_on_start: true,
            log: "info".into(),
            tls: None,
            consent: ConsentSettings::default(),
            matching: MatchingSettings::default(),
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
}
