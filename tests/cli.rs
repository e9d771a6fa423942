//! The `ttscm` binary as a user runs it: tokens from the CLI, settings errors, graceful stop.

use crate::support;

use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_ttscm");

/// Polls `GET {base}/healthz` with a tiny blocking HTTP/1.0 request until it answers 200.
fn wait_ready(base: &str) -> bool {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;
    {
        let addr = base.trim_start_matches("http://").to_owned();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(mut stream) = TcpStream::connect(&addr) {
                let _ = stream.write_all(b"GET /healthz HTTP/1.0\r\n\r\n");
                let mut response = String::new();
                let _ = stream.read_to_string(&mut response);
                if response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200") {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

#[test]
fn a_token_created_on_the_cli_works_and_sigterm_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = ttscm_testkit::free_port();
    let mut server = Command::new(BIN)
        .arg("serve")
        .env("TTSCM_DATA_DIR", dir.path())
        .env("TTSCM_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("TTSCM_LOG", "warn")
        .env_remove("NATS_URL")
        .env_remove("MONGODB_URI")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ttscm starts");
    let base = format!("http://127.0.0.1:{port}");
    assert!(wait_ready(&base), "ttscm serve answers /healthz");

    let created = Command::new(BIN)
        .args([
            "token",
            "create",
            "--name",
            "ci",
            "--role",
            "admin",
            "--expires-in",
            "1h",
        ])
        .env("TTSCM_DATA_DIR", dir.path())
        .output()
        .expect("token create runs");
    let token = support::stdout_of(created, "ttscm token create")
        .trim()
        .to_owned();
    assert!(token.starts_with("ttscm_") && token.len() > 40, "{token}");

    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (status, audited) = runtime.block_on(async {
        let client = reqwest::Client::new();
        let status = client
            .get(format!("{base}/v1/credential-type/credential-types"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("sent")
            .status()
            .as_u16();
        // The command's own action is on the server's audit chain.
        let audited: serde_json::Value = client
            .get(format!("{base}/v1/audit/events?action=api_token.created"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        (status, audited)
    });
    assert_eq!(status, 200);
    let entry = &audited["data"][0];
    assert_eq!(entry["actor"]["name"], "ttscm token create", "{audited}");
    assert_eq!(entry["details"]["name"], "ci", "{audited}");
    assert_eq!(entry["details"]["roles"], "admin", "{audited}");
    assert!(
        !audited.to_string().contains(&token),
        "the secret is not in the log"
    );
    drop(runtime);

    let listed = Command::new(BIN)
        .args(["token", "list"])
        .env("TTSCM_DATA_DIR", dir.path())
        .output()
        .expect("runs");
    let listing = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listing.contains("\"ci\"") && !listing.contains(&token),
        "lists the token but never its secret"
    );

    let pid = server.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs")
            .success()
    );
    let start = std::time::Instant::now();
    let exit = loop {
        if let Some(exit) = server.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "ttscm did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
}

#[test]
fn a_single_component_without_nats_and_mongodb_exits_64_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(BIN)
        .args(["serve", "--only", "credential"])
        .env("TTSCM_DATA_DIR", dir.path())
        .env_remove("NATS_URL")
        .env_remove("MONGODB_URI")
        .env_remove("TTSCM_NATS_URL")
        .env_remove("TTSCM_MONGODB_URI")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("TTSCM_NATS_URL"), "{stderr}");
}

#[test]
fn mesh_mode_without_keys_exits_64_naming_the_setting() {
    let output = Command::new(BIN)
        .args(["serve", "--only", "vault"])
        .env("TTSCM_NATS_URL", "nats://127.0.0.1:1")
        .env("TTSCM_MONGODB_URI", "mongodb://127.0.0.1:1/")
        .env_remove("TTSCM_VAULT__KEYS")
        .output()
        .expect("runs");
    assert_eq!(
        output.status.code(),
        Some(64),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("TTSCM_VAULT__KEYS"));
}

#[test]
fn an_unknown_setting_exits_64() {
    let output = Command::new(BIN)
        .arg("serve")
        .env("TTSCM_LISTEN_ADDR", "not-an-address")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(64));
}

#[tokio::test]
async fn user_grant_gives_a_signed_in_user_a_role_and_refuses_unknown_users() {
    let dir = tempfile::tempdir().expect("temp dir");
    let grant = |email: &str, role: &str| {
        Command::new(BIN)
            .args(["user", "grant", "--email", email, "--role", role])
            .env("TTSCM_DATA_DIR", dir.path())
            .env_remove("TTSCM_MONGODB_URI")
            .env_remove("MONGODB_URI")
            .output()
            .expect("runs")
    };
    let output = grant("nobody@contoso.example", "admin");
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("signed in yet") && stderr.contains("TTSCM_IDENTITY__ADMIN_EMAILS"),
        "{stderr}"
    );

    let settings = ttscm_runtime::Settings {
        data_dir: dir.path().to_path_buf(),
        ..ttscm_runtime::Settings::default()
    };
    let store = ttscm_runtime::connect::store(&settings).await.expect("store");
    let profile = ttscm_identity::users::SignInProfile {
        tid: "t".into(),
        oid: "o".into(),
        name: "Frank".into(),
        email: "Frank@Contoso.example".into(),
        bootstrap_admin: false,
    };
    let user = ttscm_identity::users::upsert_signed_in(&store, &profile)
        .await
        .expect("user");
    drop(store);

    let output = grant("frank@contoso.example", "ADMIN");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        grant("frank@contoso.example", "no-such-role").status.code(),
        Some(64)
    );
    let store = ttscm_runtime::connect::store(&settings).await.expect("store");
    let stored = ttscm_identity::users::get_user(&store, &user.id)
        .await
        .expect("read")
        .expect("user");
    assert_eq!(stored.roles, vec!["admin".to_owned()]);
}

#[test]
fn admin_emails_are_read_from_a_comma_separated_variable() {
    let output = Command::new(BIN)
        .args(["user", "grant", "--email", "x@y.z", "--role", "admin"])
        .env("TTSCM_DATA_DIR", tempfile::tempdir().expect("dir").path())
        .env("TTSCM_IDENTITY__ADMIN_EMAILS", "a@b.c, d@e.f")
        .env("TTSCM_ENTRA__ALLOWED_TENANTS", "t1,t2")
        .output()
        .expect("runs");
    // The settings load (a list from a comma-separated string); the grant itself finds no user.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("invalid settings"), "{stderr}");
    assert_eq!(output.status.code(), Some(64), "{stderr}");
}

/// `ttscm user offboard` beside a running server: finds the user by e-mail, ends their
/// sessions, revokes the tokens made for them, reports what they revealed that is still in use
/// and marks it due — each action on the server's audit chain as the command's.
#[tokio::test]
async fn user_offboard_ends_sessions_revokes_tokens_and_marks_the_exposure_due() {
    let app = support::spawn_app(support::Mode::Embedded).await;
    let cli = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("TTSCM_DATA_DIR", &app.settings.data_dir)
            .env_remove("TTSCM_MONGODB_URI")
            .env_remove("MONGODB_URI")
            .env_remove("TTSCM_NATS_URL")
            .env_remove("NATS_URL")
            .output()
            .expect("runs")
    };
    let seeded = app.seed_aws_credential("Leaver Co", "cli-leaver-secret").await;
    let kept = app
        .create_aws_credential(&seeded.type_id, &seeded.company, "not-revealed")
        .await;
    app.create_role("revealer", &["credential.fetch", "credential.secure_values.read"])
        .await;
    let leaver = app.signed_in_user(&["revealer"]).await;
    let email = ttscm_identity::users::get_user(&app.store().await, &leaver.user_id)
        .await
        .expect("reads")
        .expect("the user")
        .email;
    let reveal = format!("/v1/credential/credentials/{}/secure-values", seeded.id);
    app.assert_get(&reveal, &leaver.access_token, 200).await;

    // A token made for the leaver, and one made for nobody.
    let token = support::stdout_of(
        cli(&[
            "token",
            "create",
            "--name",
            "leaver-laptop",
            "--role",
            "revealer",
            "--owner",
            &email,
        ]),
        "token create --owner",
    )
    .trim()
    .to_owned();
    app.assert_get(&reveal, &token, 200).await;
    let unowned = app.token_with(&["credential.fetch"]).await;
    let unknown = cli(&[
        "token",
        "create",
        "--name",
        "x",
        "--role",
        "revealer",
        "--owner",
        "nobody@contoso.example",
    ]);
    assert_eq!(
        unknown.status.code(),
        Some(64),
        "an unknown owner is the person's mistake"
    );

    let output = cli(&[
        "user",
        "offboard",
        "--email",
        &email.to_uppercase(),
        "--mark-due",
        "--end-sessions",
        "--revoke-tokens",
    ]);
    let report: serde_json::Value =
        serde_json::from_str(&support::stdout_of(output, "user offboard")).expect("a JSON report");
    assert_eq!(report["user"]["id"], leaver.user_id.as_str(), "{report}");
    assert_eq!(report["user"]["email"], email.as_str(), "{report}");
    assert_eq!(report["exposure"]["total"], 1, "{report}");
    assert_eq!(
        report["exposure"]["items"][0]["credential"]["id"],
        seeded.id.as_str(),
        "{report}"
    );
    assert_eq!(
        report["exposure"]["items"][0]["fieldIds"],
        serde_json::json!(["secretAccessKey"])
    );
    assert_eq!(report["marked"]["marked"], 1, "{report}");
    assert_eq!(
        report["sessionsEnded"],
        serde_json::json!([leaver.session_id]),
        "{report}"
    );
    assert_eq!(
        report["tokensRevoked"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    assert!(!report.to_string().contains("cli-leaver-secret"), "never a value");

    // Sessions ended: the refresh token is refused at once, the access token within the edge's
    // token cache time; the owned token likewise; the unowned one keeps working.
    assert_eq!(app.post_refresh(&leaver.refresh_token).await.status(), 401);
    let within = Duration::from_secs(20);
    assert!(
        app.answers_within(&reveal, Some(&leaver.access_token), 401, within)
            .await
    );
    assert!(app.answers_within(&reveal, Some(&token), 401, within).await);
    app.assert_get(&format!("/v1/credential/credentials/{kept}"), &unowned, 200)
        .await;

    // Marked due; the credential it did not reveal is not.
    let store = app.store().await;
    let due = |document: Option<ttscm_runtime::store::Document>| {
        document.expect("stored").get("rotationDue") == Some(&serde_json::json!(true))
    };
    assert!(due(store.get("credentials", &seeded.id).await.expect("reads")));
    assert!(!due(store.get("credentials", &kept).await.expect("reads")));

    // On the server's chain, as the command's.
    for action in [
        "credential.exposure_marked",
        "user.sessions_ended",
        "api_token.revoked",
    ] {
        let entries = app.audit_entries(action).await;
        assert_eq!(entries.len(), 1, "{action}: {entries:?}");
        assert_eq!(entries[0]["actor"]["name"], "ttscm user offboard", "{entries:?}");
    }
    let marked = &app.audit_entries("credential.exposure_marked").await[0];
    assert_eq!(marked["details"]["actor"], leaver.user_id.as_str(), "{marked}");
    assert_eq!(marked["details"]["marked"], "1", "{marked}");

    // By tenant and object id it finds the same user; nobody is exit 64.
    let output = cli(&[
        "user",
        "offboard",
        "--tenant",
        ttscm_testkit::oidc::TEST_TENANT,
        "--object-id",
        email
            .trim_start_matches("alice.")
            .trim_end_matches("@contoso.example"),
    ]);
    let again: serde_json::Value =
        serde_json::from_str(&support::stdout_of(output, "user offboard --tenant")).expect("JSON");
    assert_eq!(again["user"]["id"], leaver.user_id.as_str(), "{again}");
    assert_eq!(again["exposure"]["items"][0]["rotationDue"], true, "{again}");
    assert!(
        again.get("marked").is_none(),
        "nothing marked without --mark-due: {again}"
    );
    let nobody = cli(&["user", "offboard", "--email", "nobody@contoso.example"]);
    assert_eq!(nobody.status.code(), Some(64));
    let bad_since = cli(&["user", "offboard", "--email", &email, "--since", "last week"]);
    assert_eq!(bad_since.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad_since.stderr).contains("--since"));
}
