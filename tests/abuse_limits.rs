//! Abuse limits (issue 19): per-client-address rate limits on the anonymous sign-in routes
//! (and on refresh), per-caller rate limits on the API, the cap on waiting sign-in sockets, the
//! sign-in socket's Origin allow-list, and `/readyz` telling anonymous callers only whether the
//! server is ready, from a briefly reused answer. Limits are set low here; the defaults are in
//! `common/runtime/src/settings.rs`.

use crate::support;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use support::{Mode, TestApp, spawn_app_with, spawn_app_with_sign_in};
use tokio_tungstenite::tungstenite;
use ttscm::Component;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A GET of `path` with `headers`: status, `Retry-After` and body.
async fn get_with(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> (u16, Option<String>, Value) {
    let mut request = app.http.get(format!("{}{path}", app.address));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("sent");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ASCII").to_owned());
    (status, retry_after, response.json().await.unwrap_or(Value::Null))
}

/// Asserts a 429 in the spec's error shape with a `Retry-After` of whole seconds.
fn assert_throttled((status, retry_after, body): &(u16, Option<String>, Value)) {
    assert_eq!(*status, 429, "{body}");
    let seconds: u64 = retry_after
        .as_deref()
        .expect("a Retry-After header")
        .parse()
        .expect("whole seconds");
    assert!(seconds >= 1, "Retry-After {seconds}");
    assert_eq!(body["status"], 429);
    assert_eq!(body["successful"], false);
    assert!(
        body["message"]
            .as_str()
            .expect("a message")
            .starts_with("Too many requests"),
        "{body}"
    );
}

/// The sign-in socket requested with `origin` (none: a native client): the open socket, or the
/// HTTP answer that refused the upgrade (status, `Retry-After`, body).
async fn open_sign_in_socket(
    app: &TestApp,
    origin: Option<&str>,
) -> Result<Socket, (u16, Option<String>, Value)> {
    use tungstenite::client::IntoClientRequest;
    let url = format!("{}/v1/auth/ws", app.address.replace("http://", "ws://"));
    let mut request = url.into_client_request().expect("a WebSocket URL");
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().expect("an origin"));
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => {
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().expect("ASCII").to_owned());
            let body = response
                .body()
                .as_deref()
                .map(|b| serde_json::from_slice(b).expect("a JSON body"))
                .unwrap_or(Value::Null);
            Err((response.status().as_u16(), retry_after, body))
        }
        Err(other) => panic!("the upgrade failed: {other}"),
    }
}

// ---- per client address ------------------------------------------------------------------------

async fn the_sign_in_uri_answers_429_with_retry_after_beyond_the_address_allowance(mode: Mode) {
    let app = spawn_app_with_sign_in(mode, |s| {
        s.edge.sign_in_per_minute = 1;
        s.edge.sign_in_burst = 2;
    })
    .await;
    for _ in 0..2 {
        let (status, _, body) = get_with(&app, "/v1/auth/uri", &[]).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_throttled(&get_with(&app, "/v1/auth/uri", &[]).await);
    // The redirect and the socket spend the same allowance.
    assert_throttled(&get_with(&app, "/v1/auth/redirect?state=x&code=y", &[]).await);
    let refused = open_sign_in_socket(&app, Some(&app.address))
        .await
        .expect_err("the socket is refused too");
    assert_throttled(&refused);
    // Authenticated routes do not spend it.
    assert_eq!(
        app.get_status("/v1/credential-type/credential-types", Some(&app.admin_token))
            .await,
        200
    );
}

async fn a_forwarded_for_header_from_an_untrusted_peer_does_not_dodge_the_limit(mode: Mode) {
    let app = spawn_app_with(mode, |s| {
        s.edge.sign_in_per_minute = 1;
        s.edge.sign_in_burst = 1;
    })
    .await;
    // Sign-in is not configured here: the first answer is its 503, then the limit.
    let (status, _, body) = get_with(&app, "/v1/auth/uri", &[("x-forwarded-for", "192.0.2.1")]).await;
    assert_eq!(status, 503, "{body}");
    assert_throttled(&get_with(&app, "/v1/auth/uri", &[("x-forwarded-for", "192.0.2.2")]).await);
}

async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_allowance(mode: Mode) {
    let app = spawn_app_with(mode, |s| {
        s.edge.sign_in_per_minute = 1;
        s.edge.sign_in_burst = 1;
        s.edge.trusted_proxies = vec!["127.0.0.1".parse().expect("an address")];
    })
    .await;
    let from = |client: &'static str| [("x-forwarded-for", client)];
    assert_eq!(get_with(&app, "/v1/auth/uri", &from("192.0.2.1")).await.0, 503);
    assert_eq!(get_with(&app, "/v1/auth/uri", &from("192.0.2.2")).await.0, 503);
    assert_throttled(&get_with(&app, "/v1/auth/uri", &from("192.0.2.1")).await);
    // The proxy's own requests (no header) are its own client.
    assert_eq!(get_with(&app, "/v1/auth/uri", &[]).await.0, 503);
}

async fn refreshes_from_one_address_are_limited_by_the_api_allowance(mode: Mode) {
    let app = spawn_app_with(mode, |s| {
        s.edge.api_per_second = 1;
        s.edge.api_burst = 2;
    })
    .await;
    let refresh = || async {
        let response = app.post_refresh("not-a-refresh-token").await;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().expect("ASCII").to_owned());
        (status, retry_after, response.json().await.unwrap_or(Value::Null))
    };
    let mut answers = Vec::new();
    for _ in 0..10 {
        answers.push(refresh().await);
    }
    assert_eq!(answers[0].0, 401, "{:?}", answers[0]);
    let throttled = answers
        .iter()
        .find(|(status, _, _)| *status == 429)
        .expect("a refresh beyond the burst is throttled");
    assert_throttled(throttled);
}

async fn a_sign_in_beyond_the_pending_cap_is_refused_with_503(mode: Mode) {
    let app = spawn_app_with_sign_in(mode, |s| s.identity.max_pending_logins = 2).await;
    for _ in 0..2 {
        let (status, _, body) = get_with(&app, "/v1/auth/uri", &[]).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, _, body) = get_with(&app, "/v1/auth/uri", &[]).await;
    assert_eq!(
        (status, body),
        support::refusal(
            503,
            "Too many sign-ins are in progress; try again in a few minutes"
        )
    );
}

// ---- per caller ----------------------------------------------------------------------------------

async fn an_api_caller_beyond_its_allowance_gets_429_and_other_callers_do_not(mode: Mode) {
    let app = spawn_app_with(mode, |s| {
        s.edge.api_per_second = 1;
        s.edge.api_burst = 3;
    })
    .await;
    let path = "/v1/credential-type/credential-types";
    let bearer = format!("Bearer {}", app.admin_token);
    let mut answers = Vec::new();
    for _ in 0..10 {
        answers.push(get_with(&app, path, &[("authorization", &bearer)]).await);
    }
    assert!(answers[..3].iter().all(|a| a.0 == 200), "{answers:?}");
    let throttled = answers
        .iter()
        .find(|(status, _, _)| *status == 429)
        .expect("a request beyond the burst is throttled");
    assert_throttled(throttled);
    // Another caller has its own allowance.
    let other = app.create_token("other", &["admin"], None).await;
    assert_eq!(app.get_status(path, Some(&other)).await, 200);
}

// ---- the sign-in socket ------------------------------------------------------------------------

async fn waiting_sign_in_sockets_are_capped(mode: Mode) {
    let app = spawn_app_with(mode, |s| s.edge.max_waiting_sockets = 1).await;
    // Waits for its callback key as its first message, holding the one place.
    let first = open_sign_in_socket(&app, Some(&app.address))
        .await
        .expect("the first socket opens");
    let (status, retry_after, body) = open_sign_in_socket(&app, Some(&app.address))
        .await
        .expect_err("a second socket is refused");
    assert_eq!(status, 503, "{body}");
    assert!(retry_after.is_some(), "Retry-After is sent");
    assert_eq!(body["successful"], false);
    assert!(
        body["message"]
            .as_str()
            .expect("a message")
            .contains("Too many sign-ins"),
        "{body}"
    );
    drop(first);
    let reopened = ttscm_testkit::eventually(Duration::from_secs(10), || async {
        open_sign_in_socket(&app, Some(&app.address)).await.ok()
    })
    .await;
    assert!(
        reopened.is_some(),
        "the place is free again once the socket closed"
    );
}

async fn the_sign_in_socket_opens_only_from_allowed_origins(mode: Mode) {
    let app = spawn_app_with(mode, |s| {
        s.edge.sign_in_origins = vec!["https://app.example.com".into()];
    })
    .await;
    for allowed in [app.address.as_str(), "https://app.example.com"] {
        assert!(
            open_sign_in_socket(&app, Some(allowed)).await.is_ok(),
            "{allowed} may open it"
        );
    }
    for (origin, message) in [
        (
            Some("https://evil.example.com"),
            "This origin may not call TTSCM from a browser or open its sign-in socket (see TTSCM_EDGE__SIGN_IN_ORIGINS)",
        ),
        (
            Some("null"),
            "This origin may not call TTSCM from a browser or open its sign-in socket (see TTSCM_EDGE__SIGN_IN_ORIGINS)",
        ),
        (
            None,
            "The sign-in socket needs an Origin header: native clients are not enabled on this server",
        ),
    ] {
        let (status, _, body) = open_sign_in_socket(&app, origin)
            .await
            .err()
            .unwrap_or_else(|| panic!("{origin:?} is refused"));
        assert_eq!((status, body), support::refusal(403, message), "{origin:?}");
    }
}

#[tokio::test]
async fn a_native_client_without_origin_opens_the_socket_where_enabled() {
    let app = spawn_app_with(Mode::Embedded, |s| s.edge.native_clients = true).await;
    assert!(open_sign_in_socket(&app, None).await.is_ok());
    assert!(
        open_sign_in_socket(&app, Some("https://evil.example.com"))
            .await
            .is_err(),
        "a browser page of another origin still may not"
    );
}

// ---- readiness -----------------------------------------------------------------------------------

/// How many health requests cross the bus while `during` runs (mesh).
async fn health_requests_during<F: std::future::Future<Output = ()>>(app: &TestApp, during: F) -> usize {
    let nats = app.nats_operator().await;
    let mut health = nats.subscribe("ttscm.*.v1.health").await.expect("subscribed");
    nats.flush().await.expect("flushed");
    during.await;
    nats.flush().await.expect("flushed");
    let mut count = 0;
    while tokio::time::timeout(Duration::from_millis(200), health.next())
        .await
        .is_ok_and(|m| m.is_some())
    {
        count += 1;
    }
    count
}

#[tokio::test]
async fn the_public_readiness_names_nothing_internal_and_is_reused_for_its_time() {
    let mut app = spawn_app_with(Mode::Mesh, |s| s.edge.readiness_cache_ms = 60_000).await;
    let public = app.get("/readyz", None).await;
    assert_eq!(
        public,
        (
            200,
            serde_json::json!({"status": 200, "message": "Ready", "data": null, "successful": true})
        )
    );

    // Anonymous probes are answered from the reused outcome: no health calls at all.
    let calls = health_requests_during(&app, async {
        for _ in 0..20 {
            assert_eq!(app.get_status("/readyz", None).await, 200);
        }
    })
    .await;
    assert_eq!(calls, 0, "anonymous probes fanned out");

    // An authenticated caller gets a fresh report: one health call per service.
    let token = app.admin_token.clone();
    let calls = health_requests_during(&app, async {
        let (status, body) = app.get("/readyz", Some(&token)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["vault"]["ok"], true, "{body}");
        assert_eq!(body["data"]["webhook"]["ok"], true, "{body}");
    })
    .await;
    assert_eq!(calls, 5, "identity, company-sync, credential, vault, webhook");

    // A component stops: within the reuse time the public answer stays; the report shows it.
    app.stop(Component::Credential);
    assert_eq!(app.get_status("/readyz", None).await, 200);
    let (status, body) = app.get("/readyz", Some(&token)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["data"]["credential"]["ok"], false, "{body}");
    assert!(body["data"]["credential"]["error"].is_string(), "{body}");
}

#[tokio::test]
async fn the_public_readiness_turns_not_ready_after_its_time_without_details() {
    let mut app = spawn_app_with(Mode::Mesh, |s| s.edge.readiness_cache_ms = 300).await;
    app.stop(Component::Credential);
    let not_ready = ttscm_testkit::eventually(Duration::from_secs(10), || async {
        let (status, body) = app.get("/readyz", None).await;
        (status == 503).then_some(body)
    })
    .await
    .expect("the public answer turns not ready");
    assert_eq!(
        not_ready,
        serde_json::json!({"status": 503, "message": "Not ready", "successful": false})
    );
    // A token that is not valid gets no report.
    let (status, _) = app.get("/readyz", Some("ttscm_not-a-token")).await;
    assert_eq!(status, 401);
}

both_modes!(
    the_sign_in_uri_answers_429_with_retry_after_beyond_the_address_allowance,
    a_forwarded_for_header_from_an_untrusted_peer_does_not_dodge_the_limit,
    behind_a_trusted_proxy_each_forwarded_client_has_its_own_allowance,
    refreshes_from_one_address_are_limited_by_the_api_allowance,
    a_sign_in_beyond_the_pending_cap_is_refused_with_503,
    an_api_caller_beyond_its_allowance_gets_429_and_other_callers_do_not,
    waiting_sign_in_sockets_are_capped,
    the_sign_in_socket_opens_only_from_allowed_origins,
);
