//! Signed webhooks end to end, in both modes: endpoints managed through the API
//! (`webhook.manage`), deliveries verified by the Standard Webhooks reference library in a real
//! receiver, the type and company filters, thin payloads (no value ever), the delivery log,
//! replays; and in the mesh, a webhook component restarted mid-backlog loses nothing. The retry
//! schedule, the automatic disable, secret rotation and the address check at delivery are in
//! `webhook_delivery.rs` (a clock of the test's own).

use crate::support;
use crate::webhook_support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Mode, TestApp, spawn_app_with};
use ttscm::Component;
use webhook_support::{Receiver, accepted_ids, event_of};

const ENDPOINTS: &str = "/v1/webhook/endpoints";

async fn spawn(mode: Mode) -> TestApp {
    spawn_app_with(mode, |settings| {
        settings.webhook.allow_private = true;
        settings.webhook.allow_http = true;
    })
    .await
}

/// Registers `url` for `types` and `companies`; answers its id and secret.
async fn register(app: &TestApp, url: &str, types: &[&str], companies: &[&str]) -> (String, String) {
    let response = app
        .http
        .post(format!("{}{ENDPOINTS}", app.address))
        .bearer_auth(&app.admin_token)
        .json(&json!({"url": url, "description": "PSA automation", "eventTypes": types, "companyIds": companies}))
        .send()
        .await
        .expect("the edge answers");
    assert_eq!(response.status(), 201);
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap_or_default()),
        Some("no-store"),
        "the secret is not cached"
    );
    let body: Value = response.json().await.expect("JSON");
    let secret = body["data"]["secret"].as_str().expect("a secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (body["data"]["id"].as_str().expect("an id").to_owned(), secret)
}

/// The distinct events delivered and verified, by type (without `ttscm.`), with their subjects.
fn delivered_by_type(received: &[Value]) -> BTreeMap<String, Vec<String>> {
    let ids = accepted_ids(received);
    let mut seen = std::collections::BTreeSet::new();
    let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for delivery in received {
        let id = delivery["id"].as_str().unwrap_or_default();
        if !ids.contains(id) || !seen.insert(id.to_owned()) {
            continue;
        }
        let event = event_of(delivery);
        assert_eq!(event["id"], json!(id), "webhook-id is the CloudEvent id");
        let kind = event["type"]
            .as_str()
            .expect("a type")
            .trim_start_matches("ttscm.")
            .to_owned();
        by_type
            .entry(kind)
            .or_default()
            .push(event["subject"].as_str().expect("a subject").to_owned());
    }
    by_type
}

async fn webhooks_deliver_signed_filtered_events_and_replay(mode: Mode) {
    let app = spawn(mode).await;
    let receiver = Receiver::start();
    let (company_a, type_id) = app.company_and_aws_type("Acme").await;
    let company_b = app.seed_company("Globex").await;
    let (endpoint, secret) = register(&app, &receiver.url(), &["credential.*"], &[&company_a]).await;
    receiver.secrets(&[&secret]).await;

    const CANARY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYCANARYKEY";
    let in_a = app.create_aws_credential(&type_id, &company_a, CANARY).await;
    let in_b = app.create_aws_credential(&type_id, &company_b, CANARY).await;
    let (status, _) = app
        .get(
            &format!("/v1/credential/credentials/{in_a}/secure-values"),
            Some(&app.admin_token),
        )
        .await;
    assert_eq!(status, 200);

    let received = receiver
        .wait_until(Duration::from_secs(20), "A's created and revealed events", |r| {
            let by_type = delivered_by_type(r);
            by_type
                .get("credential.created")
                .is_some_and(|s| s.contains(&in_a))
                && by_type
                    .get("credential.revealed")
                    .is_some_and(|s| s.contains(&in_a))
        })
        .await;
    let by_type = delivered_by_type(&received);
    assert_eq!(
        by_type.keys().cloned().collect::<Vec<_>>(),
        vec!["credential.created", "credential.revealed"],
        "only credential events (no type or company events)"
    );
    for subjects in by_type.values() {
        assert!(
            subjects.iter().all(|s| *s == in_a),
            "only company A's credential: {subjects:?} (B's is {in_b})"
        );
    }
    for delivery in &received {
        assert_eq!(
            delivery["verifiedWith"],
            json!([0]),
            "every delivery verifies: {delivery}"
        );
        let body = delivery["body"].as_str().expect("a body");
        assert!(!body.contains(CANARY), "a value in a webhook payload: {body}");
        assert!(!body.contains(&secret), "the secret in a payload");
    }

    // The delivery log. An attempt is recorded after the receiver answers, so the receiver can
    // have a delivery a moment before the log says so: read until both are recorded.
    let log_path = format!("{ENDPOINTS}/{endpoint}/deliveries?rpp=10");
    let recorded = |log: &Value| {
        log["data"]
            .as_array()
            .is_some_and(|items| items.iter().all(|d| d["status"] != "pending"))
    };
    let log = ttscm_testkit::eventually(Duration::from_secs(10), || async {
        let (status, log) = app.get(&log_path, Some(&app.admin_token)).await;
        assert_eq!(status, 200, "{log}");
        recorded(&log).then_some(log)
    })
    .await
    .expect("both attempts recorded in the delivery log");
    assert_eq!(log["pagination"]["totalRecords"], json!(2), "{log}");
    let items = log["data"].as_array().expect("deliveries");
    assert!(
        items.iter().all(|d| d["status"] == "delivered"
            && d["attempts"] == 1
            && d["lastAttempts"][0]["statusCode"] == 204),
        "{log}"
    );
    let (status, pending) = app
        .get(
            &format!("{ENDPOINTS}/{endpoint}/deliveries?status=pending"),
            Some(&app.admin_token),
        )
        .await;
    assert_eq!(
        (status, pending["pagination"]["totalRecords"].clone()),
        (200, json!(0)),
        "{pending}"
    );

    // Replay one delivery: the same webhook-id arrives again.
    let replayed_id = items[0]["id"].as_str().expect("id");
    let event_id = items[0]["eventId"].as_str().expect("eventId").to_owned();
    let (status, body) = app
        .post(
            &format!("{ENDPOINTS}/{endpoint}/deliveries/{replayed_id}/replay"),
            &app.admin_token,
            &json!(null),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let count_of = |r: &[Value], id: &str| r.iter().filter(|d| d["id"] == id).count();
    receiver
        .wait_until(Duration::from_secs(20), "the replayed delivery", |r| {
            count_of(r, &event_id) == 2
        })
        .await;

    // Replay a time range: both deliveries again.
    let since = ttscm_runtime::clock::now_offset(-3600);
    let (status, body) = app
        .post(
            &format!("{ENDPOINTS}/{endpoint}/replay"),
            &app.admin_token,
            &json!({"since": since}),
        )
        .await;
    assert_eq!(
        (status, body["data"]["requeued"].clone()),
        (200, json!(2)),
        "{body}"
    );
    let received = receiver
        .wait_until(Duration::from_secs(20), "the replayed range", |r| {
            r.len() >= 5 && count_of(r, &event_id) == 3
        })
        .await;
    assert_eq!(received.len(), 5, "2 deliveries, 1 replay, 2 replayed in a range");

    // The endpoint as listed and fetched: never its secret.
    let (status, list) = app.get(ENDPOINTS, Some(&app.admin_token)).await;
    assert_eq!(status, 200);
    assert!(!list.to_string().contains("whsec_"), "{list}");
    assert_eq!(list["data"][0]["companyIds"], json!([company_a]));
    assert_eq!(list["data"][0]["eventTypes"], json!(["credential.*"]));

    // Disabled: nothing more is delivered; deleted: gone with its log.
    let (status, body) = app
        .patch(
            &format!("{ENDPOINTS}/{endpoint}"),
            &app.admin_token,
            &json!({"enabled": false}),
        )
        .await;
    assert_eq!(
        (status, body["data"]["enabled"].clone()),
        (200, json!(false)),
        "{body}"
    );
    app.create_aws_credential(&type_id, &company_a, CANARY).await;
    app.assert_deleted(
        &format!("{ENDPOINTS}/{endpoint}"),
        &app.admin_token,
        "Webhook Endpoint Deleted Successfully!",
    )
    .await;
    assert_eq!(
        receiver.received().await.len(),
        5,
        "nothing delivered to a disabled endpoint"
    );
}

async fn endpoints_need_webhook_manage_and_valid_input(mode: Mode) {
    let app = spawn(mode).await;
    let reader = app.token_with(&["credential.fetch", "audit.fetch.many"]).await;
    for (method, path) in [
        (reqwest::Method::GET, ENDPOINTS.to_owned()),
        (reqwest::Method::POST, ENDPOINTS.to_owned()),
        (reqwest::Method::GET, format!("{ENDPOINTS}/x/deliveries")),
    ] {
        let (status, body) = app
            .json(
                method.clone(),
                &path,
                &reader,
                &json!({"url": "https://example.com"}),
            )
            .await;
        assert_eq!(status, 403, "{method} {path}: {body}");
    }
    for (body, path) in [
        (json!({"url": "ftp://example.com/hook"}), json!(["url"])),
        (json!({"url": "not a url"}), json!(["url"])),
        (json!({"url": "https://user:pw@example.com/"}), json!(["url"])),
        (
            json!({"url": "https://example.com/", "eventTypes": ["Credential"]}),
            json!(["eventTypes", 0]),
        ),
        (
            json!({"url": "https://example.com/", "colour": "red"}),
            json!(["colour"]),
        ),
        (json!({"url": 7}), json!(["url"])),
    ] {
        let (status, answer) = app.post(ENDPOINTS, &app.admin_token, &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["errors"][0]["path"], path, "{body}: {answer}");
    }
    let (status, _) = app
        .get(&format!("{ENDPOINTS}/nope"), Some(&app.admin_token))
        .await;
    assert_eq!(status, 404);
    let (status, body) = app
        .post(
            &format!("{ENDPOINTS}/nope/replay"),
            &app.admin_token,
            &json!({"since": "yesterday"}),
        )
        .await;
    assert_eq!(
        (status, body["errors"][0]["path"].clone()),
        (400, json!(["since"])),
        "{body}"
    );
    // Every change is on the audit chain.
    let receiver = Receiver::start();
    let (endpoint, _) = register(&app, &receiver.url(), &[], &[]).await;
    let (status, _) = app
        .post(
            &format!("{ENDPOINTS}/{endpoint}/rotate-secret"),
            &app.admin_token,
            &json!(null),
        )
        .await;
    assert_eq!(status, 200);
    for action in ["webhook.endpoint_created", "webhook.secret_rotated"] {
        let entries = app.audit_entries(action).await;
        assert_eq!(entries.len(), 1, "{action}");
        assert_eq!(entries[0]["target"]["id"], json!(endpoint), "{action}");
        assert!(
            !entries[0].to_string().contains("whsec_"),
            "no secret in the audit log"
        );
    }
}

both_modes!(
    webhooks_deliver_signed_filtered_events_and_replay,
    endpoints_need_webhook_manage_and_valid_input,
);

/// The webhook component stopped while events happen; restarted with a second replica beside
/// it, the two deliver the backlog to a slow receiver, and mid-backlog both are restarted
/// (one comes back): every event arrives, verified; repeats (at least once: attempts cut short by a restart) are counted and bounded by
/// what was in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_webhook_component_delivers_its_whole_backlog() {
    let mut app = spawn_app_with(Mode::Mesh, |settings| {
        settings.webhook.allow_private = true;
        settings.webhook.allow_http = true;
        // Two at a time to a receiver taking 100 ms each: the backlog takes seconds.
        settings.webhook.concurrency = 2;
    })
    .await;
    let receiver = Receiver::start();
    receiver.delay(100).await;
    let (company, type_id) = app.company_and_aws_type("Initech").await;
    let (_, secret) = register(&app, &receiver.url(), &["credential.created"], &[]).await;
    receiver.secrets(&[&secret]).await;

    app.stop(Component::Webhook);
    const EVENTS: usize = 60;
    let mut created = Vec::new();
    for _ in 0..EVENTS {
        created.push(
            app.create_aws_credential(&type_id, &company, "s3cr3t-value")
                .await,
        );
    }
    app.restart(Component::Webhook);
    app.start_extra_replica(Component::Webhook);
    let part = receiver
        .wait_until(Duration::from_secs(30), "a part of the backlog", |r| {
            accepted_ids(r).len() >= 10
        })
        .await;
    app.restart(Component::Webhook);
    assert!(accepted_ids(&part).len() < EVENTS, "restarted mid-backlog");
    let received = receiver
        .wait_until(Duration::from_secs(60), "the whole backlog", |r| {
            let by_type = delivered_by_type(r);
            by_type
                .get("credential.created")
                .is_some_and(|s| s.len() >= EVENTS)
        })
        .await;
    let by_type = delivered_by_type(&received);
    let mut subjects = by_type["credential.created"].clone();
    subjects.sort();
    created.sort();
    assert_eq!(subjects, created, "every event, once each by webhook-id");
    let repeats = received.len() - accepted_ids(&received).len();
    eprintln!(
        "backlog of {EVENTS}: {} deliveries, {repeats} repeats",
        received.len()
    );
    assert!(
        repeats <= 4,
        "repeats are bounded by the deliveries in flight: {repeats}"
    );
    assert!(received.iter().all(|d| d["verifiedWith"] == json!([0])));
}

/// `ttscm webhook add|list|rotate-secret|remove` beside a running embedded server: the endpoint
/// added on the command line receives signed deliveries from the server, and every command is
/// on the server's audit chain under its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_endpoints_beside_a_running_server() {
    use std::process::{Command, Stdio};
    const BIN: &str = env!("CARGO_BIN_EXE_ttscm");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let port = ttscm_testkit::free_port();
    let command = |args: &[&str]| {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env("TTSCM_DATA_DIR", dir.path())
            .env("TTSCM_WEBHOOK__ALLOW_PRIVATE", "true")
            .env("TTSCM_WEBHOOK__ALLOW_HTTP", "true")
            .env("TTSCM_LOG", "warn")
            .env_remove("NATS_URL")
            .env_remove("MONGODB_URI");
        command
    };
    let run =
        |args: &[&str]| support::stdout_of(command(args).output().expect("ttscm runs"), &args.join(" "));
    let mut server = command(&["serve"])
        .env("TTSCM_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ttscm starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "ttscm serve answers");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token = run(&[
        "token",
        "create",
        "--name",
        "ci",
        "--role",
        "admin",
        "--expires-in",
        "1h",
    ])
    .trim()
    .to_owned();

    let receiver = Receiver::start();
    let added: Value = serde_json::from_str(&run(&[
        "webhook",
        "add",
        "--url",
        &receiver.url(),
        "--event",
        "credential_type.*",
    ]))
    .expect("JSON");
    let secret = added["secret"].as_str().expect("a secret").to_owned();
    let id = added["id"].as_str().expect("an id").to_owned();
    receiver.secrets(&[&secret]).await;
    // The server reads endpoints added beside it within 2 s: types made until one is delivered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut n = 0;
    while accepted_ids(&receiver.received().await).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no delivery to the endpoint the CLI added"
        );
        n += 1;
        let status = client
            .post(format!("{base}/v1/credential-type/credential-types"))
            .bearer_auth(&token)
            .json(&json!({"name": format!("Type {n}"), "fields": [{"id": "u", "name": "U", "required": false, "secure": false, "valueType": "plain_text"}]}))
            .send()
            .await
            .expect("sent")
            .status();
        assert_eq!(status, 201);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let received = receiver.received().await;
    assert!(
        received.iter().all(|d| d["verifiedWith"] == json!([0])),
        "{received:?}"
    );
    assert_eq!(
        event_of(&received[0])["type"],
        json!("ttscm.credential_type.created")
    );

    let listed = run(&["webhook", "list"]);
    assert!(listed.contains(&id) && !listed.contains("whsec_"), "{listed}");
    let rotated: Value = serde_json::from_str(&run(&["webhook", "rotate-secret", &id])).expect("JSON");
    assert_ne!(rotated["secret"], json!(secret));
    run(&["webhook", "remove", &id]);
    assert!(!run(&["webhook", "list"]).contains(&id));
    let refused = command(&["webhook", "add", "--url", "ftp://example.com"])
        .output()
        .expect("runs");
    assert_eq!(
        refused.status.code(),
        Some(64),
        "a bad URL is the person's mistake"
    );

    let audited: Value = client
        .get(format!("{base}/v1/audit/events?action=webhook.endpoint_created"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(
        audited["data"][0]["actor"]["name"],
        json!("ttscm webhook add"),
        "{audited}"
    );
    let _ = server.kill();
    let _ = server.wait();
}
