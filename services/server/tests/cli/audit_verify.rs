//! `hie audit verify` as the operator runs it: the binary, against a database file that someone
//! tampered with. It must name the gap and the edited event, and exit non-zero.

use std::process::{Command, Output};

use hie_core::db::Database;
use hie_server::Exchange;
use hie_server::demo::{SyntheticPrefecture, load};
use hie_server::settings::{SecretUrl, Settings};

fn verify(url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hie"))
        .args(["audit", "verify", "--database-url", url])
        .output()
        .expect("the hie binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn tamper(url: &str, statement: &str) {
    let database = Database::connect(url, 1).await.unwrap();
    let changed = sqlx::query(sqlx::AssertSqlSafe(statement))
        .execute(database.pool())
        .await
        .unwrap();
    assert_eq!(changed.rows_affected(), 1, "{statement}");
    database.close().await;
}

#[tokio::test]
async fn audit_verify_reports_an_intact_chain_then_names_the_gap_and_the_edited_event() {
    let (_folder, url) = loaded().await;

    let intact = verify(&url);
    assert!(intact.status.success(), "{}", text(&intact.stderr));
    assert!(
        text(&intact.stdout).contains("audit trail intact"),
        "{}",
        text(&intact.stdout)
    );

    tamper(&url, "DELETE FROM audit_events WHERE sequence = 5").await;
    let gap = verify(&url);
    assert_eq!(gap.status.code(), Some(1), "{}", text(&gap.stdout));
    assert!(
        text(&gap.stderr).contains("expected event 5, found 6"),
        "{}",
        text(&gap.stderr)
    );

    tamper(
        &url,
        "UPDATE audit_events SET user_id = 'someone-else' WHERE sequence = 3",
    )
    .await;
    let edited = verify(&url);
    assert_eq!(edited.status.code(), Some(1));
    assert!(
        text(&edited.stderr).contains("audit event 3 was edited"),
        "{}",
        text(&edited.stderr)
    );
}

/// A fresh database with a small prefecture loaded and a failed event at the end; its folder
/// (which holds the audit key and anchor beside the database) and URL.
async fn loaded() -> (tempfile::TempDir, String) {
    use hie_access::{AuditEvent, Outcome};
    let folder = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/hie.db", folder.path().display());
    let mut settings = Settings::default();
    settings.database.url = SecretUrl::new(&url);
    let exchange = Exchange::open(&settings).await.unwrap();
    load(&exchange, &SyntheticPrefecture::generate(20, 11))
        .await
        .unwrap();
    let context = hie_core::context::RequestContext::bulk_load("test", "a failed call");
    let failed = AuditEvent::new(
        &context,
        hie_core::vocabulary::AuditAction::QueryAudit,
        None,
        "thing",
        None,
        Outcome::Failed("it broke".into()),
    );
    exchange.access.audit().record(failed).await.unwrap();
    exchange.access.audit().flush().await.unwrap();
    exchange.database.close().await;
    (folder, url)
}

async fn last_sequence(url: &str) -> i64 {
    let database = Database::connect(url, 1).await.unwrap();
    let (last,): (i64,) = sqlx::query_as("SELECT MAX(sequence) FROM audit_events")
        .fetch_one(database.pool())
        .await
        .unwrap();
    database.close().await;
    last
}

#[tokio::test]
async fn audit_verify_finds_an_unknown_outcome_a_trimmed_tail_with_the_head_moved_back_and_a_missing_key() {
    // An outcome no event has: decoded it would read as "failed", so the raw column is checked.
    let (_folder, url) = loaded().await;
    tamper(
        &url,
        "UPDATE audit_events SET outcome = 'bogus' WHERE outcome = 'failed'",
    )
    .await;
    let edited = verify(&url);
    assert_eq!(edited.status.code(), Some(1), "{}", text(&edited.stdout));
    assert!(
        text(&edited.stderr).contains("was edited"),
        "{}",
        text(&edited.stderr)
    );

    // The last two events deleted and the head moved back to the one before: the chain alone is
    // consistent, the anchor file outside the database is not.
    let (_folder, url) = loaded().await;
    let last = last_sequence(&url).await;
    tamper(&url, &format!("DELETE FROM audit_events WHERE sequence = {last}")).await;
    tamper(
        &url,
        &format!("DELETE FROM audit_events WHERE sequence = {}", last - 1),
    )
    .await;
    tamper(
        &url,
        &format!(
            "UPDATE audit_head SET sequence = {kept}, hash = (SELECT hash FROM audit_events WHERE sequence = {kept})",
            kept = last - 2
        ),
    )
    .await;
    let trimmed = verify(&url);
    assert_eq!(trimmed.status.code(), Some(1), "{}", text(&trimmed.stdout));
    assert!(
        text(&trimmed.stderr).contains(&format!("chained up to event {last}")),
        "{}",
        text(&trimmed.stderr)
    );

    // The head's hash edited alone.
    let (_folder, url) = loaded().await;
    tamper(&url, "UPDATE audit_head SET hash = 'ab' WHERE id = 1").await;
    let head = verify(&url);
    assert_eq!(head.status.code(), Some(1));
    assert!(
        text(&head.stderr).contains("head was edited"),
        "{}",
        text(&head.stderr)
    );

    // Without the key the trail cannot be verified, and nothing quietly starts a new one.
    let (folder, url) = loaded().await;
    std::fs::remove_file(folder.path().join("audit.key")).unwrap();
    let keyless = verify(&url);
    assert_ne!(keyless.status.code(), Some(0));
    assert!(
        text(&keyless.stderr).contains("settings.audit.key_file"),
        "{}",
        text(&keyless.stderr)
    );
    assert!(!folder.path().join("audit.key").exists(), "no new key was made");
}
