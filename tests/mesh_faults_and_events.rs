//! Mesh-only behaviour of credentials: events an outside tool replays from JetStream, a vault
//! outage (fast 503, nothing half-written, recovery without restarts), audit entries held in
//! their stream through a store outage, and a reveal whose audit entry cannot be stored (fail
//! closed).

use crate::support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{
    Mode, assert_took_less, spawn_app, spawn_mesh_with_own_store, spawn_mesh_with_own_store_with, strings,
};
use ttscm::Component;

const CREDS: &str = "/v1/credential/credentials";

/// JetStream as an outside tool connected as `client` sees it, and its stream `name`.
async fn outside_stream(
    client: async_nats::Client,
    name: &str,
) -> (
    async_nats::jetstream::Context,
    async_nats::jetstream::stream::Stream,
) {
    let jetstream = async_nats::jetstream::new(client);
    let stream = jetstream.get_stream(name).await.expect("the stream exists");
    (jetstream, stream)
}

#[tokio::test]
async fn an_outside_tool_replays_cloud_events_without_secrets() {
    let app = spawn_app(Mode::Mesh).await;
    let token = app.admin_token.clone();
    let (company, type_id) = app.company_and_aws_type("Events Co").await;
    let secret = "event-canary-secret-value";
    let id = app.create_aws_credential(&type_id, &company, secret).await;
    let (_, fields) = app.get(&format!("{CREDS}/{id}/fields"), Some(&token)).await;
    let sealed = fields["data"]
        .as_array()
        .and_then(|a| a.iter().find(|v| v["fieldId"] == "secretAccessKey"))
        .map(|v| v["value"].as_str().unwrap_or_default().to_owned())
        .expect("sealed value");
    assert_eq!(
        app.patch(&format!("{CREDS}/{id}"), &token, &json!({"name": "Renamed"}))
            .await
            .0,
        200
    );
    assert_eq!(app.put(&format!("{CREDS}/{id}/fields"), &token, &json!({"fields": [{"fieldId": "accessKeyId", "value": "A"}, {"fieldId": "secretAccessKey", "value": secret}]})).await.0, 200);
    app.assert_get(&format!("{CREDS}/{id}/secure-values"), &token, 200)
        .await;
    assert_eq!(app.delete_status(&format!("{CREDS}/{id}"), &token).await, 200);
    let type_path = format!("/v1/credential-type/credential-types/{type_id}");
    let renamed = json!({"name": "Renamed type"});
    assert_eq!(app.patch(&type_path, &token, &renamed).await.0, 200);
    assert_eq!(app.delete_status(&type_path, &token).await, 200);

    // Each event is stored by the stream before its request answers (a crash right after a 200
    // loses none): all eight are there now, without waiting.
    let events = app.replay_events().await;
    assert_eq!(events.len(), 8, "{events:?}");
    let subjects: Vec<&str> = events.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "ttscm.events.credential_type.created",
            "ttscm.events.credential.created",
            "ttscm.events.credential.updated",
            "ttscm.events.credential.fields_updated",
            "ttscm.events.credential.revealed",
            "ttscm.events.credential.deleted",
            "ttscm.events.credential_type.updated",
            "ttscm.events.credential_type.deleted",
        ]
    );
    for (subject, event) in &events {
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(
            event["type"].as_str(),
            subject
                .strip_prefix("ttscm.events.")
                .map(|rest| format!("ttscm.{rest}"))
                .as_deref()
        );
        assert!(event["id"].as_str().is_some_and(|i| !i.is_empty()));
        assert!(
            event["source"].as_str().is_some()
                && event["time"].as_str().is_some()
                && event["subject"].as_str().is_some()
        );
        let text = event.to_string();
        assert!(
            !text.contains(secret) && !text.contains(&sealed),
            "{subject} carries a secret"
        );
    }
    let revealed = &events[4].1;
    assert_eq!(revealed["subject"], id.as_str());
    assert_eq!(revealed["data"]["fieldIds"], json!(["secretAccessKey"]));
    assert_eq!(revealed["data"]["companyId"], company.as_str());
}

#[tokio::test]
async fn a_vault_outage_answers_503_fast_writes_nothing_and_recovers() {
    let mut app = spawn_app(Mode::Mesh).await;
    let token = app.admin_token.clone();
    let (company, type_id) = app.company_and_aws_type("Outage Co").await;
    let existing = app.create_aws_credential(&type_id, &company, "before").await;
    app.stop(Component::Vault);

    let started = Instant::now();
    let (status, body) = app
        .post(
            CREDS,
            &token,
            &json!({"name": "x", "typeId": type_id, "companyId": company, "fields": [
            {"fieldId": "accessKeyId", "value": "A"}, {"fieldId": "secretAccessKey", "value": "during"}]}),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert_took_less("the request", started, Duration::from_millis(500));
    let (status, body) = app
        .get(&format!("{CREDS}/{existing}/secure-values"), Some(&token))
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["message"], "The vault service is unavailable");
    let (_, listed) = app.get(&format!("{CREDS}/company/{company}"), Some(&token)).await;
    assert_eq!(
        listed["data"].as_array().map(Vec::len),
        Some(1),
        "nothing half-written"
    );
    assert_eq!(
        app.get_status(&format!("{CREDS}/{existing}"), Some(&token)).await,
        200,
        "reads without secrets still work"
    );

    app.restart(Component::Vault);
    let back = ttscm_testkit::eventually(Duration::from_secs(10), || async {
        let (status, body) = app
            .get(&format!("{CREDS}/{existing}/secure-values"), Some(&token))
            .await;
        (status == 200).then_some(body)
    })
    .await
    .expect("reveals work again without restarting anything else");
    assert_eq!(back["data"]["secretAccessKey"], "before");
}

/// Audit entries are stored in the JetStream stream `TTSCM_AUDIT` before the reveal answers, and
/// copied into the store from there. With the store down (the credential cached), reveals still
/// answer — their entries wait in the stream — and reading the log answers 503 rather than a
/// partial list; once the store is back, every entry of the outage is listed, in one intact chain.
#[tokio::test]
async fn a_store_outage_keeps_audit_entries_in_the_stream_until_the_store_is_back() {
    let mut app = spawn_mesh_with_own_store().await;
    let token = app.admin_token.clone();
    let (company, type_id) = app.company_and_aws_type("Outage Co").await;
    let id = app
        .create_aws_credential(&type_id, &company, "kept-audited")
        .await;
    let reveal = format!("{}{CREDS}/{id}/secure-values", app.address);
    let http = app.http.clone();
    let reveal_as = |request_id: &'static str| {
        http.get(&reveal)
            .bearer_auth(&token)
            .header("x-request-id", request_id)
            .send()
    };
    assert_eq!(reveal_as("before-outage").await.expect("reveal").status(), 200);

    app.store_server().stop();
    for request_id in ["during-outage-1", "during-outage-2"] {
        let response = reveal_as(request_id).await.expect("reveal");
        assert_eq!(
            response.status(),
            200,
            "audited in the stream while the store is down"
        );
    }
    let started = Instant::now();
    let (status, body) = app.get("/v1/audit/events", Some(&token)).await;
    assert_eq!(status, 503, "{body}");
    assert_took_less("the request", started, Duration::from_secs(4));

    app.store_server().restart();
    // Once the store is back the log reads again at once — what is stored, with a count of the
    // entries still being copied from the stream — and soon with every entry.
    let listed = ttscm_testkit::eventually(Duration::from_secs(30), || async {
        let response = app
            .http
            .get(format!(
                "{}/v1/audit/events?action=credential.revealed&rpp=100",
                app.address
            ))
            .bearer_auth(&token)
            .send()
            .await
            .ok()?;
        let pending = response
            .headers()
            .get("x-audit-pending")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: Value = response.json().await.ok()?;
        (body["status"] == 200 && pending.as_deref() == Some("0")).then_some(body)
    })
    .await
    .expect("the log reads again, whole, once the store is back");
    let request_ids = strings(&listed["data"], "requestId");
    assert_eq!(
        request_ids,
        ["during-outage-2", "during-outage-1", "before-outage"],
        "{listed}"
    );
    let (_, verified) = app.get("/v1/audit/verify", Some(&token)).await;
    assert_eq!(verified["data"]["valid"], true, "{verified}");
    assert_eq!(verified["data"]["pending"], 0, "{verified}");
}

/// When the audit stream refuses the entry, the reveal fails fast with 503 and no secret (fail
/// closed), and reveals work again, audited, once the stream takes entries again — without
/// restarting anything.
#[tokio::test]
async fn a_reveal_whose_audit_entry_cannot_be_stored_fails_closed() {
    let app = spawn_app(Mode::Mesh).await;
    let token = app.admin_token.clone();
    let (company, type_id) = app.company_and_aws_type("Closed Co").await;
    let id = app
        .create_aws_credential(&type_id, &company, "never-unaudited")
        .await;
    let reveal = format!("{CREDS}/{id}/secure-values");
    let (status, body) = app.get(&reveal, Some(&token)).await;
    assert_eq!(
        (status, &body["data"]["secretAccessKey"]),
        (200, &json!("never-unaudited"))
    );

    // An operator points the stream elsewhere: it no longer takes audit entries.
    let (jetstream, mut stream) = outside_stream(app.nats_operator().await, "TTSCM_AUDIT").await;
    let config = stream.info().await.expect("info").config.clone();
    let parked = async_nats::jetstream::stream::Config {
        subjects: vec!["ttscm.parked.audit".into()],
        ..config.clone()
    };
    jetstream.update_stream(&parked).await.expect("stream updated");

    let started = Instant::now();
    let (status, body) = app.get(&reveal, Some(&token)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["message"], "The audit log is unavailable");
    assert!(!body.to_string().contains("never-unaudited"), "{body}");
    assert_took_less("the request", started, Duration::from_secs(5));

    jetstream.update_stream(&config).await.expect("stream restored");
    let (status, back) = app.get(&reveal, Some(&token)).await;
    assert_eq!(
        status, 200,
        "reveals work again without restarting anything: {back}"
    );
    assert_eq!(back["data"]["secretAccessKey"], "never-unaudited");
    let (_, listed) = app
        .get("/v1/audit/events?action=credential.revealed", Some(&token))
        .await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(2), "{listed}");
    let (_, verified) = app.get("/v1/audit/verify", Some(&token)).await;
    assert_eq!(verified["data"]["valid"], true, "{verified}");
}

/// Once the cached list of credential types (with counts) is a little old, requests answer from
/// it while one recount runs in the background: with the store down, the list keeps answering
/// at once (counts a few seconds old) instead of every second request waiting for a recount.
/// After a local write the list is recounted before it answers.
#[tokio::test]
async fn a_stale_type_list_answers_at_once_while_it_is_recounted() {
    const TYPES: &str = "/v1/credential-type/credential-types";
    // The edge trusts a resolved token for the product's default 5 s (the suite's 1 s would
    // send it to identity, whose store is down, during the window below).
    let mut app = spawn_mesh_with_own_store_with(|settings| settings.edge.token_cache_secs = 5).await;
    let token = app.admin_token.clone();
    let (company, type_id) = app.company_and_aws_type("Counted Co").await;
    let count_of = |list: &Value| {
        list["data"]
            .as_array()
            .and_then(|types| types.iter().find(|t| t["id"] == type_id.as_str()))
            .map(|t| t["credentialCount"].clone())
    };
    // A token first used now, so the edge still trusts it throughout the window.
    let reader = app.token_with(&["credential_type.fetch.many"]).await;
    let (status, list) = app.get(TYPES, Some(&reader)).await;
    assert_eq!((status, count_of(&list)), (200, Some(json!(0))), "{list}");

    app.store_server().stop();
    // For 2.5 s (the list expires after one) every request answers from the list.
    let window = Instant::now();
    while window.elapsed() < Duration::from_millis(2500) {
        let started = Instant::now();
        let (status, list) = app.get(TYPES, Some(&reader)).await;
        assert_eq!(
            (status, count_of(&list)),
            (200, Some(json!(0))),
            "{list} after {:?}, the request took {:?}",
            window.elapsed(),
            started.elapsed()
        );
        assert_took_less("the list", started, Duration::from_millis(500));
    }

    app.store_server().restart();
    let created = ttscm_testkit::eventually(Duration::from_secs(30), || async {
        let body = json!({"name": "counted", "typeId": type_id, "companyId": company,
            "fields": [{"fieldId": "accessKeyId", "value": "AKIA"}, {"fieldId": "secretAccessKey", "value": "s"}]});
        let (status, _) = app.post(CREDS, &token, &body).await;
        (status == 201).then_some(())
    })
    .await;
    assert!(created.is_some(), "creates work again once the store is back");
    let (status, list) = app.get(TYPES, Some(&token)).await;
    assert_eq!((status, count_of(&list)), (200, Some(json!(1))), "{list}");
}
