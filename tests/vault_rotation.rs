//! Key rotation as an operator runs it: `ttscm vault rotate` while the server runs, then
//! `ttscm vault reseal`; old and new values keep opening throughout.

use crate::support;

use std::process::Command;
use std::time::Duration;

use base64::Engine;
use support::{Mode, spawn_app};

const BIN: &str = env!("CARGO_BIN_EXE_ttscm");

/// The kid inside a sealed blob (version byte, kid length, kid, …).
fn kid_of(blob: &str) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .expect("base64");
    let len = bytes[1] as usize;
    String::from_utf8(bytes[2..2 + len].to_vec()).expect("kid is text")
}

async fn sealed_kid(app: &support::TestApp, id: &str) -> String {
    let (_, fields) = app
        .get(
            &format!("/v1/credential/credentials/{id}/fields"),
            Some(&app.admin_token),
        )
        .await;
    let blob = fields["data"]
        .as_array()
        .and_then(|a| a.iter().find(|v| v["fieldId"] == "secretAccessKey"))
        .and_then(|v| v["value"].as_str())
        .expect("sealed value");
    kid_of(blob)
}

fn ttscm(app: &support::TestApp, args: &[&str]) -> String {
    let output = Command::new(BIN)
        .args(args)
        .env("TTSCM_DATA_DIR", &app.settings.data_dir)
        .env("TTSCM_LOG", "warn")
        .output()
        .expect("ttscm runs");
    support::stdout_of(output, &format!("ttscm {args:?}"))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn rotation_then_reseal_moves_old_values_to_the_new_key_and_everything_still_opens() {
    let app = spawn_app(Mode::Embedded).await;
    let company = app.seed_company("Rotate Co").await;
    let type_id = app.create_aws_type(None).await;
    let old = app
        .create_aws_credential(&type_id, &company, "sealed-before")
        .await;
    let first_kid = sealed_kid(&app, &old).await;

    let new_kid = ttscm(&app, &["vault", "rotate"]);
    assert_ne!(new_kid, first_kid);
    // The running vault picks the new key up within seconds; new values use it.
    let fresh = ttscm_testkit::eventually(Duration::from_secs(10), || async {
        let id = app
            .create_aws_credential(&type_id, &company, "sealed-after")
            .await;
        (sealed_kid(&app, &id).await == new_kid).then_some(id)
    })
    .await
    .expect("new values are sealed with the new key");
    let reveal = |id: String| {
        let app = &app;
        async move {
            app.get(
                &format!("/v1/credential/credentials/{id}/secure-values"),
                Some(&app.admin_token),
            )
            .await
            .1["data"]["secretAccessKey"]
                .clone()
        }
    };
    assert_eq!(
        reveal(old.clone()).await,
        "sealed-before",
        "old values still open after rotation"
    );
    assert_eq!(sealed_kid(&app, &old).await, first_kid);

    let report: serde_json::Value =
        serde_json::from_str(&ttscm(&app, &["vault", "reseal"])).expect("a JSON report");
    assert!(report["resealed"].as_u64().is_some_and(|n| n >= 1), "{report}");
    // The running server caches credentials (sealed) for up to 2 s — the line above cached this
    // one — but notices another process's commit to the embedded store within 100 ms (the
    // store's change epoch), so it shows the moved value well before its copy would expire.
    ttscm_testkit::eventually(Duration::from_secs(1), || async {
        (sealed_kid(&app, &old).await == new_kid).then_some(())
    })
    .await
    .expect("old values moved to the active key");
    assert_eq!(reveal(old).await, "sealed-before");
    assert_eq!(reveal(fresh).await, "sealed-after");
    let again: serde_json::Value =
        serde_json::from_str(&ttscm(&app, &["vault", "reseal"])).expect("a JSON report");
    assert_eq!(again["resealed"], 0, "reseal is idempotent: {again}");

    // The rotation and both reseals are on the server's audit chain, which still verifies.
    let (_, rotated) = app
        .get(
            "/v1/audit/events?action=vault.key_rotated",
            Some(&app.admin_token),
        )
        .await;
    assert_eq!(rotated["data"][0]["target"]["id"], new_kid.as_str(), "{rotated}");
    assert_eq!(rotated["data"][0]["actor"]["name"], "ttscm vault rotate");
    let (_, resealed) = app
        .get("/v1/audit/events?action=vault.resealed", Some(&app.admin_token))
        .await;
    let counts: Vec<&str> = resealed["data"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|e| e["details"]["resealed"].as_str())
        .collect();
    assert_eq!(counts.len(), 2, "{resealed}");
    assert_eq!(counts[0], "0");
    assert_eq!(counts[1], report["resealed"].to_string());
    let (_, verified) = app.get("/v1/audit/verify", Some(&app.admin_token)).await;
    assert_eq!(verified["data"]["valid"], true, "{verified}");
}
