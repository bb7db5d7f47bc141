//! `hie certs` as the operator runs it: issuing and revoking an organisation's certificate changes
//! who may connect, so each is in the audit trail, with the operating-system user who did it.

use std::process::Command;

use hie_server::Exchange;
use hie_server::demo::{SyntheticPrefecture, load};
use hie_server::settings::{SecretUrl, Settings};

fn hie(args: &[&str], folder: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hie"))
        .args(args)
        .current_dir(folder)
        .env("USER", "operator-li")
        .output()
        .expect("the hie binary runs")
}

#[tokio::test]
async fn issuing_and_revoking_a_certificate_are_audited() {
    let folder = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/hie.db", folder.path().display());
    let mut settings = Settings::default();
    settings.database.url = SecretUrl::new(&url);
    let exchange = Exchange::open(&settings).await.unwrap();
    load(&exchange, &SyntheticPrefecture::generate(10, 3))
        .await
        .unwrap();
    exchange.database.close().await;

    let init = hie(&["certs", "init", "--dir", "pki"], folder.path());
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let issue = hie(
        &[
            "certs",
            "issue",
            "--org",
            "QDN-H01",
            "--dir",
            "pki",
            "--database-url",
            &url,
        ],
        folder.path(),
    );
    assert!(
        issue.status.success(),
        "{}",
        String::from_utf8_lossy(&issue.stderr)
    );
    let revoke = || {
        hie(
            &[
                "certs",
                "revoke",
                "--cert",
                "pki/orgs/QDN-H01.pem",
                "--database-url",
                &url,
            ],
            folder.path(),
        )
    };
    let revoked = revoke();
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    assert!(
        !revoke().status.success(),
        "a second revocation finds nothing to revoke"
    );

    let database = hie_core::db::Database::connect(&url, 1).await.unwrap();
    let events: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT action, outcome, user_id FROM audit_events WHERE action LIKE 'directory.certificate.%' ORDER BY sequence",
    )
    .fetch_all(database.pool())
    .await
    .unwrap();
    database.close().await;
    let expected = [
        ("directory.certificate.issue", "permitted"),
        ("directory.certificate.revoke", "permitted"),
        ("directory.certificate.revoke", "failed"),
    ];
    assert_eq!(events.len(), 3, "{events:?}");
    for ((action, outcome, user), (want_action, want_outcome)) in events.iter().zip(expected) {
        assert_eq!((action.as_str(), outcome.as_str()), (want_action, want_outcome));
        assert_eq!(user, "os:operator-li");
    }
}
