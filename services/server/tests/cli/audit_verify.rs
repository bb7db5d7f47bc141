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
    let folder = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/hie.db", folder.path().display());
    let mut settings = Settings::default();
    settings.database.url = SecretUrl::new(&url);
    let exchange = Exchange::open(&settings).await.unwrap();
    load(&exchange, &SyntheticPrefecture::generate(20, 11))
        .await
        .unwrap();
    exchange.access.audit().flush().await.unwrap();
    exchange.database.close().await;

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
