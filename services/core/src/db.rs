//! The database handle every store uses: one connection pool over sqlx's `Any` driver, so that
//! each query is written once and runs on SQLite (the embedded default) and PostgreSQL (the
//! production store) alike. Queries use `$1` placeholders, which both backends accept, and only
//! types both hold through sqlx's `Any` driver: 64-bit integers (instants as microseconds, flags
//! as 0 or 1) and text.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{Any, AnyConnection, AnyPool, Executor, Transaction};

use crate::Error;

/// Which database the exchange runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Result<Backend, Error> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(Error::invalid(
                "database.url",
                "expected a sqlite:// or postgres:// URL",
            ))
        }
    }
}

/// A pool of connections to the exchange's database.
#[derive(Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    /// PostgreSQL: the URL, for the connection that listens for other replicas' changes. Never
    /// shown (the `Debug` below leaves it out).
    listen_url: Option<std::sync::Arc<str>>,
}

/// The PostgreSQL channel on which a write that replicas must hear of at once (a card stopped, a
/// person's consent or lineage changed) notifies, as it commits (`OutboxEvent::insert_all`).
pub const CHANGES_CHANNEL: &str = "hie_changes";

/// A connection listening on [`CHANGES_CHANNEL`].
pub struct ChangeListener(sqlx::postgres::PgListener);

impl std::fmt::Debug for ChangeListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChangeListener")
    }
}

impl ChangeListener {
    /// Waits for the next notification. After a lost connection it reconnects; what was
    /// notified meanwhile is lost, so a caller polls as well.
    pub async fn next(&mut self) -> Result<(), Error> {
        self.0
            .recv()
            .await
            .map(drop)
            .map_err(|e| Error::Unavailable(format!("listening for changes: {}", describe(&e))))
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// One ordered set of migrations for every service's tables, because sqlx keeps one version table
/// per database. Each file names the service that owns its tables. The SQL is portable, so the
/// same files migrate both backends; a backend-specific folder is the way out if that ever stops
/// being true.
static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// PostgreSQL's `statement_timeout` and `lock_timeout` for every pooled connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseTimeouts {
    pub statement: Duration,
    pub lock: Duration,
}

impl Database {
    /// Connects to `url` (`sqlite://path` or `postgres://…`) with at most `max_connections`
    /// connections. A SQLite file and its folder are created when missing.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Database, Error> {
        Self::connect_with(url, max_connections, None).await
    }

    /// Like [`Database::connect`]; on PostgreSQL every connection of the pool gets these
    /// timeouts, so that no statement or lock wait holds a pooled connection indefinitely.
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        timeouts: Option<DatabaseTimeouts>,
    ) -> Result<Database, Error> {
        install_default_drivers();
        let backend = Backend::of_url(url)?;
        let url = match backend {
            Backend::Sqlite => prepare_sqlite_url(url)?,
            Backend::Postgres => url.to_owned(),
        };
        let options = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            // sqlx pings a connection before every hand-out by default: a second round trip per
            // query on the hot path. A broken connection surfaces as an error on its first use
            // instead, and the pool replaces it.
            .test_before_acquire(false);
        let options = match backend {
            // WAL lets readers go on while one writer writes; NORMAL synchronisation is durable
            // across application crashes, and the busy timeout queues writers instead of failing.
            Backend::Sqlite => options.after_connect(|connection, _| {
                Box::pin(async move {
                    connection
                        .execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                    Ok(())
                })
            }),
            Backend::Postgres => match timeouts {
                None => options,
                Some(timeouts) => options.after_connect(move |connection, _| {
                    Box::pin(async move {
                        connection
                            .execute(sqlx::AssertSqlSafe(format!(
                                "SET statement_timeout = {}; SET lock_timeout = {}",
                                timeouts.statement.as_millis(),
                                timeouts.lock.as_millis()
                            )))
                            .await?;
                        Ok(())
                    })
                }),
            },
        };
        let pool = options.connect(&url).await.map_err(|e| {
            Error::Unavailable(format!("cannot open the {backend:?} database: {}", describe(&e)))
        })?;
        let listen_url = (backend == Backend::Postgres).then(|| std::sync::Arc::from(url.as_str()));
        Ok(Database {
            pool,
            backend,
            listen_url,
        })
    }

    /// On PostgreSQL, a connection of its own listening for the changes other replicas commit
    /// ([`CHANGES_CHANNEL`]); `None` on SQLite, which one process holds.
    pub async fn listen_for_changes(&self) -> Result<Option<ChangeListener>, Error> {
        let Some(url) = &self.listen_url else {
            return Ok(None);
        };
        let unavailable =
            |e: sqlx::Error| Error::Unavailable(format!("cannot listen for changes: {}", describe(&e)));
        let mut listener = sqlx::postgres::PgListener::connect(url)
            .await
            .map_err(unavailable)?;
        listener.listen(CHANGES_CHANNEL).await.map_err(unavailable)?;
        Ok(Some(ChangeListener(listener)))
    }

    /// Applies every migration not yet applied. Migrations only ever add.
    pub async fn migrate(&self) -> Result<(), Error> {
        MIGRATIONS
            .run(&self.pool)
            .await
            .map_err(|e| Error::internal("migration failed", e))
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so that two writers queue on the busy timeout instead of one failing
    /// when it upgrades a read lock.
    pub async fn begin_write(&self) -> Result<Transaction<'static, Any>, Error> {
        let transaction = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(transaction)
    }

    /// Refreshes the planner's statistics. After a bulk load, before autovacuum (PostgreSQL) or
    /// anything (SQLite) has done it, the planner believes the tables empty and may scan them.
    pub async fn analyze(&self) -> Result<(), Error> {
        self.pool.execute("ANALYZE").await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Creates the folder of a SQLite file and asks sqlx to create the file itself.
fn prepare_sqlite_url(url: &str) -> Result<String, Error> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" {
        return Err(Error::invalid(
            "database.url",
            "an in-memory SQLite database is not supported; name a file",
        ));
    }
    if let Some(parent) = std::path::Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(|e| {
            Error::Unavailable(format!("cannot create the data folder {}: {e}", parent.display()))
        })?;
    }
    let query = if query.contains("mode=") {
        query.to_owned()
    } else if query.is_empty() {
        "mode=rwc".into()
    } else {
        format!("{query}&mode=rwc")
    };
    // Check the URL parses before the pool tries it, for a clearer message.
    sqlx::any::AnyConnectOptions::from_str(&format!("sqlite://{path}?{query}"))
        .map_err(|e| Error::invalid("database.url", e.to_string()))?;
    Ok(format!("sqlite://{path}?{query}"))
}

/// A connection error without the URL (which may hold a password).
fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Io(e) => e.to_string(),
        sqlx::Error::Database(e) => e.message().to_owned(),
        sqlx::Error::Configuration(e) => e.to_string(),
        sqlx::Error::PoolTimedOut => "timed out".into(),
        other => other.to_string(),
    }
}

/// Connections held out of the pool for one hot path, one per batch that may run at once. sqlx
/// checks every connection it takes back into its pool with a round trip to the database; a path
/// that runs one statement per batch would pay two round trips for one.
#[derive(Debug)]
pub struct HeldConnections {
    database: Database,
    held: Vec<tokio::sync::Mutex<Option<AnyConnection>>>,
}

impl HeldConnections {
    pub fn new(database: Database, n: usize) -> HeldConnections {
        HeldConnections {
            database,
            held: (0..n.max(1)).map(|_| tokio::sync::Mutex::new(None)).collect(),
        }
    }

    /// Runs `work` on a free held connection, opened on first use. After an error the
    /// connection is let go (it may be broken) and the next use opens another.
    pub async fn with<T>(
        &self,
        work: impl AsyncFnOnce(&mut AnyConnection) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut slot = match self.held.iter().find_map(|slot| slot.try_lock().ok()) {
            Some(free) => free,
            None => self.held[0].lock().await,
        };
        let connection = match &mut *slot {
            Some(connection) => connection,
            empty => empty.insert(self.database.pool().acquire().await?.detach()),
        };
        let result = work(connection).await;
        if result.is_err() {
            *slot = None;
        }
        result
    }
}

/// Creates the PostgreSQL database `name` through the server at `admin_url` and returns the URL
/// of the new database. For tests and benchmarks, which each want a database of their own.
pub async fn create_postgres_database(admin_url: &str, name: &str) -> Result<String, Error> {
    check_database_name(name)?;
    let admin = Database::connect(admin_url, 1).await?;
    let created = admin
        .pool
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await;
    admin.close().await;
    created?;
    Ok(with_database_name(admin_url, name))
}

/// Drops the PostgreSQL database `name`, closing any connection still open to it.
pub async fn drop_postgres_database(admin_url: &str, name: &str) -> Result<(), Error> {
    check_database_name(name)?;
    let admin = Database::connect(admin_url, 1).await?;
    let dropped = admin
        .pool
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await;
    admin.close().await;
    dropped.map(drop).map_err(Error::from)
}

/// Only plain lower-case names, so that a name can be spliced into DDL safely.
fn check_database_name(name: &str) -> Result<(), Error> {
    if !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        Ok(())
    } else {
        Err(Error::invalid(
            "database name",
            "expected 1 to 63 characters from a-z, 0-9 and _",
        ))
    }
}

/// The URL with its database (the path) replaced by `name`, keeping user, host and parameters.
pub fn with_database_name(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (authority_and_path, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let authority = authority_and_path.split('/').next().unwrap_or("");
    match query {
        Some(query) => format!("{scheme}://{authority}/{name}?{query}"),
        None => format!("{scheme}://{authority}/{name}"),
    }
}

/// `$first, $first+1, …` for `n` values: the numbered placeholders of an `IN (…)` list, which
/// both backends accept.
pub fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_url_gets_another_database_and_keeps_the_rest() {
        assert_eq!(
            with_database_name(
                "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
                "hie_t1"
            ),
            "postgres://postgres@127.0.0.1:5432/hie_t1?sslmode=disable"
        );
        assert_eq!(
            with_database_name("postgres://root@localhost", "x"),
            "postgres://root@localhost/x"
        );
    }

    #[test]
    fn only_plain_names_reach_ddl() {
        assert!(check_database_name("hie_test_01").is_ok());
        assert!(check_database_name("x; DROP DATABASE postgres").is_err());
        assert!(check_database_name("").is_err());
    }
}
