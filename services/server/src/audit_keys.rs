//! The audit trail's key and anchor files: read at start-up, the key created on first use.
//!
//! The key never enters the database and never prints; only its id (a digest) is stored beside
//! each event. Losing it does not lose the trail, but makes it unverifiable, so a start that
//! finds the trail keyed with a key the settings do not hold refuses, instead of quietly chaining
//! on under a new one.

use std::path::Path;

use hie_access::domain::{AuditKey, AuditKeys};
use hie_access::store::ChainKeys;
use hie_core::Error;
use hie_core::db::Database;

use crate::{Settings, key_files};

/// The keys and anchor the settings name; creates the key file when the trail has no keyed event.
pub async fn load(all_settings: &Settings, database: &Database) -> Result<ChainKeys, Error> {
    let settings = &all_settings.audit;
    let key_file = all_settings.audit_key_file();
    let last_key_id: Option<(Option<String>,)> = sqlx::query_as(
        "SELECT key_id FROM audit_events WHERE key_id IS NOT NULL ORDER BY sequence DESC LIMIT 1",
    )
    .fetch_optional(database.pool())
    .await?;
    let last_key_id = last_key_id.and_then(|(id,)| id);
    let current = match read_key(&key_file, "settings.audit.key_file")? {
        Some(key) => key,
        None => match &last_key_id {
            Some(id) => {
                return Err(Error::precondition(
                    "settings.audit.key_file",
                    format!(
                        "{} does not exist, and the audit trail is chained with key {id}: restore that key file \
                         (without it the trail cannot be verified)",
                        key_file.display()
                    ),
                ));
            }
            None => {
                let (head,): (i64,) = sqlx::query_as("SELECT sequence FROM audit_head WHERE id = 1")
                    .fetch_one(database.pool())
                    .await?;
                create_key(&key_file, head)?
            }
        },
    };
    let mut retired = Vec::with_capacity(settings.retired_key_files.len());
    for (i, path) in settings.retired_key_files.iter().enumerate() {
        let field = format!("settings.audit.retired_key_files[{i}]");
        retired.push(
            read_key(path, &field)?
                .ok_or_else(|| Error::precondition(field, format!("{} does not exist", path.display())))?,
        );
    }
    let keys = AuditKeys::new(current, retired);
    if let Some(id) = last_key_id
        && keys.by_id(&id).is_none()
    {
        return Err(Error::precondition(
            "settings.audit.key_file",
            format!(
                "the audit trail's last event was chained with key {id}, which neither key_file nor \
                 retired_key_files holds; to rotate keys, list the old key file in retired_key_files"
            ),
        ));
    }
    Ok(ChainKeys::new(keys, Some(all_settings.audit_anchor_file())))
}

/// The key in `path`, or `None` when the file does not exist: the secret in hex on the first
/// line and, on the second, `legacy-until N`, the last event chained before the key was made (0,
/// none, when the line is missing).
fn read_key(path: &Path, field: &str) -> Result<Option<AuditKey>, Error> {
    let Some((secret, lines)) = key_files::read_secret(path, field)? else {
        return Ok(None);
    };
    let not_a_key =
        |what: &str| Error::precondition(field, format!("{} is not a key: {what}", path.display()));
    let legacy_until = match lines.first() {
        None => 0,
        Some(line) => line
            .strip_prefix("legacy-until ")
            .and_then(|n| n.trim().parse::<i64>().ok())
            .ok_or_else(|| not_a_key("expected `legacy-until N` on the second line"))?,
    };
    AuditKey::from_secret(&secret)
        .map(|key| Some(key.made_after(legacy_until)))
        .map_err(|reason| Error::precondition(field, format!("{}: {reason}", path.display())))
}

/// Writes a new random key, readable by its owner only, and says so in the log (never the key).
fn create_key(path: &Path, head: i64) -> Result<AuditKey, Error> {
    let field = "settings.audit.key_file";
    let secret = AuditKey::generate_secret().map_err(|e| Error::Internal(e.into()))?;
    key_files::create_secret(path, field, &secret, &[format!("legacy-until {head}")])?;
    let key = AuditKey::from_secret(&secret)
        .map_err(|e| Error::Internal(e.into()))?
        .made_after(head);
    tracing::warn!(
        path = %path.display(),
        key_id = key.id(),
        "created a new audit key; back it up: without it the audit trail cannot be verified"
    );
    Ok(key)
}
