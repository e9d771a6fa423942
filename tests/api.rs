//! End-to-end tests of the HTTP surface, each run in both modes: embedded (one process) and
//! mesh (components joined only by NATS and FerretDB).

use crate::support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Mode, refusal, spawn_app};

async fn the_teapot_answers_418_exactly_as_the_spec_shows(mode: Mode) {
    let app = spawn_app(mode).await;
    assert_eq!(app.get("/v1/teapot", None).await, refusal(418, "I'm a teapot"));
}

async fn an_unknown_route_is_a_404_in_the_envelope(mode: Mode) {
    let app = spawn_app(mode).await;
    let answer = app.get("/v1/does-not-exist", None).await;
    assert_eq!(answer, refusal(404, "Resource not found"));
}

async fn the_protected_list_needs_a_token_with_the_permission(mode: Mode) {
    let app = spawn_app(mode).await;
    let path = "/v1/credential-type/credential-types";
    assert_eq!(app.get(path, None).await, refusal(401, "Unauthorized"));
    let (status, _) = app.get(path, Some("ttscm_not-a-real-token")).await;
    assert_eq!(status, 401);
    let (status, _) = app.get(path, Some("garbage.jwt.here")).await;
    assert_eq!(status, 401);
    let weak = app.token_with(&["credential.fetch"]).await;
    let answer = app.get(path, Some(&weak)).await;
    assert_eq!(answer, refusal(403, "Insufficient permissions"));
    let exact = app.token_with(&["credential_type.fetch.many"]).await;
    let wildcard = app.token_with(&["credential_type.*"]).await;
    for token in [exact.as_str(), wildcard.as_str(), app.admin_token.as_str()] {
        let (status, body) = app.get(path, Some(token)).await;
        assert_eq!(status, 200);
        assert_eq!(
            body,
            json!({"status": 200, "message": "Credential Types Fetched Successfully!", "data": [], "successful": true})
        );
    }
}

async fn a_revoked_token_stops_working_within_seconds(mode: Mode) {
    let app = spawn_app(mode).await;
    let path = "/v1/credential-type/credential-types";
    let token = app.token_with(&["*"]).await;
    assert_eq!(app.get_status(path, Some(&token)).await, 200);
    let store = app.store().await;
    let tokens = ttscm_identity::admin::list_api_tokens(&store)
        .await
        .expect("listed");
    let id = tokens
        .iter()
        .find(|t| t.name == "test")
        .expect("the token is listed")
        .id
        .clone();
    ttscm_identity::admin::revoke_api_token(&store, &id)
        .await
        .expect("revoked");
    assert!(
        app.answers_within(path, Some(&token), 401, Duration::from_secs(5))
            .await,
        "a revoked token is refused within the cache time"
    );
}

async fn an_expired_token_is_refused(mode: Mode) {
    let app = spawn_app(mode).await;
    let past = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    let token = app.create_token("old", &["admin"], Some(past)).await;
    assert_eq!(
        app.get_status("/v1/credential-type/credential-types", Some(&token))
            .await,
        401
    );
}

async fn every_response_carries_a_request_id(mode: Mode) {
    let app = spawn_app(mode).await;
    let response = app
        .http
        .get(format!("{}/v1/teapot", app.address))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .expect("sent");
    assert_eq!(
        response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("abc-123")
    );
    for path in ["/v1/teapot", "/v1/nope", "/v1/credential-type/credential-types"] {
        let response = app.bare(reqwest::Method::GET, path).await;
        let id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(ttscm_runtime::ids::is_id(&id), "{path}: generated id {id:?}");
    }
}

async fn health_and_readiness_report_ok(mode: Mode) {
    let app = spawn_app(mode).await;
    assert_eq!(app.get_status("/healthz", None).await, 200);
    let (status, body) = app.get("/readyz", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], Value::Null, "the public answer names no component");
    // An authenticated caller gets the report per component.
    let (status, body) = app.get("/readyz", Some(&app.admin_token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["credential"]["store"], json!(true));
}

both_modes!(
    the_teapot_answers_418_exactly_as_the_spec_shows,
    an_unknown_route_is_a_404_in_the_envelope,
    the_protected_list_needs_a_token_with_the_permission,
    a_revoked_token_stops_working_within_seconds,
    an_expired_token_is_refused,
    every_response_carries_a_request_id,
    health_and_readiness_report_ok,
);
