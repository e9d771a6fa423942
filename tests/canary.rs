//! A canary secret written during a full credential flow (mesh mode) appears nowhere in the
//! logs (captured at TRACE for TTSCM and DEBUG for dependencies), in no bus subject, and in no
//! event. Its own test binary, because it installs the global log subscriber.

use crate::support;

use futures_util::StreamExt;
use serde_json::json;
use support::{Mode, Seeded, spawn_app};

#[tokio::test]
async fn a_canary_secret_never_reaches_logs_subjects_or_events() {
    let logs = ttscm_testkit::CapturedLog::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug,ttscm=trace,ttscm_edge=trace,ttscm_runtime=trace,ttscm_credential=trace,ttscm_vault=trace,ttscm_identity=trace"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let app = spawn_app(Mode::Mesh).await;
    // The tests' operator may subscribe to everything (the product's users may not).
    let client = app.nats_operator().await;
    let mut everything = client.subscribe(">").await.expect("subscribes to every subject");
    client.flush().await.expect("subscribed");

    let canary = "CANARY-7f3e2a9b-do-not-leak";
    let token = app.admin_token.clone();
    let Seeded { id, .. } = app.seed_aws_credential("Canary Co", canary).await;
    let path = format!("/v1/credential/credentials/{id}");
    let (status, revealed) = app.get(&format!("{path}/secure-values"), Some(&token)).await;
    assert_eq!(
        (status, revealed["data"]["secretAccessKey"].as_str()),
        (200, Some(canary))
    );
    let body = json!({"fields": [{"fieldId": "accessKeyId", "value": "A"}, {"fieldId": "secretAccessKey", "value": format!("{canary}-2")}]});
    assert_eq!(app.put(&format!("{path}/fields"), &token, &body).await.0, 200);
    let bad = json!({"fields": [{"fieldId": "accessKeyId", "value": format!("{canary}\nbad")}, {"fieldId": "secretAccessKey", "value": canary}]});
    assert_eq!(app.put(&format!("{path}/fields"), &token, &bad).await.0, 400);
    // History: a past version revealed and restored (its value unsealed and sealed again).
    let (status, past) = app
        .get(&format!("{path}/history/1/secure-values"), Some(&token))
        .await;
    assert_eq!(
        (status, past["data"]["secretAccessKey"].as_str()),
        (200, Some(canary))
    );
    assert_eq!(
        app.post(&format!("{path}/history/1/restore"), &token, &json!({}))
            .await
            .0,
        200
    );
    assert_eq!(app.get(&format!("{path}/history"), Some(&token)).await.0, 200);
    assert_eq!(app.delete_status(&path, &token).await, 200);

    // A TOTP seed (base32, so the canary's letters are its first characters) and its codes.
    let seed = "CANARYTOTPSEEDAACANARYTOTPSEEDAA";
    let (status, made) = app
        .post(
            "/v1/credential-type/credential-types",
            &token,
            &json!({"name": "Canary MFA", "fields": [{"id": "otp", "name": "Code", "required": true, "valueType": "totp"}]}),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let company = app.seed_company("Canary MFA Co").await;
    let (status, credential) = app
        .post(
            "/v1/credential/credentials",
            &token,
            &json!({"name": "Shared MFA", "typeId": made["data"]["id"], "companyId": company,
                    "fields": [{"fieldId": "otp", "value": format!("otpauth://totp/Canary?secret={seed}")}]}),
        )
        .await;
    assert_eq!(status, 201, "{credential}");
    let otp = format!(
        "/v1/credential/credentials/{}/totp/otp",
        credential["data"]["id"].as_str().expect("id")
    );
    let (status, code) = app.get(&otp, Some(&token)).await;
    assert_eq!(status, 200, "{code}");
    let bad = json!({"name": "Bad MFA", "typeId": made["data"]["id"], "companyId": company,
                     "fields": [{"fieldId": "otp", "value": format!("otpauth://totp/x?secret={seed}&digits=12")}]});
    assert_eq!(app.post("/v1/credential/credentials", &token, &bad).await.0, 400);

    // Everything published so far has been delivered once a round trip through the server is done.
    client.flush().await.expect("flushed");
    let mut subjects = Vec::new();
    let mut events = Vec::new();
    while let Ok(Some(message)) =
        tokio::time::timeout(std::time::Duration::from_millis(300), everything.next()).await
    {
        if message.subject.starts_with("ttscm.events.") {
            events.push(String::from_utf8_lossy(&message.payload).into_owned());
        }
        subjects.push(message.subject.to_string());
    }
    assert!(
        subjects.iter().any(|s| s == "ttscm.vault.v1.seal"),
        "the flow crossed the bus: {subjects:?}"
    );
    assert!(events.len() >= 3, "events were seen: {}", events.len());
    assert!(
        subjects.iter().all(|s| !s.contains("CANARY")),
        "a subject carries the canary"
    );
    assert!(
        events.iter().all(|e| !e.contains("CANARY")),
        "an event carries the canary"
    );
    drop(app);
    let captured = logs.text();
    assert!(
        captured.len() > 1000,
        "logs were captured ({} bytes)",
        captured.len()
    );
    assert!(!captured.contains("CANARY"), "the logs carry the canary");
}
