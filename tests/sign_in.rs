//! Sign-in with a real OpenID provider (`oidc-provider`, Entra-shaped ID tokens): the code flow
//! with tokens delivered on the WebSocket, refresh rotation with reuse detection, sign-out, the
//! user routes, role administration, and the failure paths. Run in both modes.

use crate::support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::{Mode, TestApp, assert_took_less, error_paths, spawn_app, spawn_app_with_sign_in, strings};
use tokio_tungstenite::tungstenite::Message;
use ttscm_testkit::oidc;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// `GET /v1/auth/uri` on `base`: the authorize URL and the callback key.
async fn start_sign_in(app: &TestApp, base: &str) -> (String, String) {
    let response = app
        .http
        .get(format!("{base}/v1/auth/uri"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["message"], "Successfully fetch Auth URI");
    assert_eq!(body["successful"], true);
    (
        body["data"]["uri"].as_str().expect("uri").to_owned(),
        body["data"]["callbackKey"]
            .as_str()
            .expect("callbackKey")
            .to_owned(),
    )
}

/// The sign-in WebSocket of `base` for `key`, as it opened.
async fn connect_socket(base: &str, key: &str) -> Socket {
    let url = format!(
        "{}/v1/auth/ws?callbackKey={key}",
        base.replace("http://", "ws://")
    );
    let (socket, _) = tokio_tungstenite::connect_async(from_page_of(base, &url))
        .await
        .expect("WebSocket opens");
    socket
}

/// A WebSocket request to `url` as a page of the edge at `base` opens it: with that `Origin`
/// (sockets without one are native clients, refused unless enabled).
fn from_page_of(base: &str, url: &str) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().expect("a WebSocket URL");
    request
        .headers_mut()
        .insert("origin", base.parse().expect("an origin"));
    request
}

/// Opens the WebSocket for `key` on `base` and waits for `waiting`.
async fn open_socket(base: &str, key: &str) -> Socket {
    let mut socket = connect_socket(base, key).await;
    let first = next_json(&mut socket).await;
    assert_eq!(first["type"], "waiting", "{first}");
    socket
}

async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(15), socket.next())
            .await
            .expect("a message within 15 s")
            .expect("the socket is open")
            .expect("a message");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).expect("json message"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
}

/// Asserts the socket closes next.
async fn expect_closed(socket: &mut Socket) {
    let next = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("closes within 5 s");
    assert!(
        matches!(next, None | Some(Ok(Message::Close(_))) | Some(Err(_))),
        "expected close, got {next:?}"
    );
}

/// GETs the provider's redirect on `base` (same path and query, maybe another edge).
async fn follow_redirect(app: &TestApp, location: &str, base: &str, json: bool) -> (u16, String) {
    let response = app.follow_provider_redirect(base, location, json).await;
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// The provider's redirect back to the app with `state` and `code`, followed on the app.
async fn provider_returns(app: &TestApp, state: &str, code: &str, json: bool) -> (u16, String) {
    let location = format!("http://x/v1/auth/redirect?state={state}&code={code}");
    follow_redirect(app, &location, &app.address, json).await
}

async fn me(app: &TestApp, token: &str) -> (u16, Value) {
    app.get("/v1/user/@me", Some(token)).await
}

async fn refresh(app: &TestApp, refresh_token: &str) -> (u16, Value) {
    let response = app.post_refresh(refresh_token).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Signs in as `login` through the JSON answer of the redirect (no WebSocket): the data.
async fn sign_in_json(app: &TestApp, login: &str) -> Value {
    let (uri, _) = start_sign_in(app, &app.address).await;
    let location = oidc::sign_in(&uri, login).await;
    let (status, body) = follow_redirect(app, &location, &app.address, true).await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).expect("json");
    body["data"].clone()
}

async fn session_count(app: &TestApp) -> u64 {
    app.store()
        .await
        .count("sessions", &ttscm_runtime::Filter::All)
        .await
        .expect("count")
}

async fn code_flow_delivers_tokens_on_the_websocket(mode: Mode) {
    let app = spawn_app_with_sign_in(mode, |_| {}).await;
    let (uri, key) = start_sign_in(&app, &app.address).await;
    let issuer = &app.oidc.as_ref().expect("provider").issuer;
    let parsed = url::Url::parse(&uri).expect("uri");
    assert!(uri.starts_with(issuer.as_str()), "{uri}");
    let query: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
    assert_eq!(query["state"], key);
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["response_type"], "code");
    assert!(query["nonce"].len() >= 16);
    assert!(key.len() >= 22, "callback key carries >= 128 bits");
    for scope in ["openid", "profile", "email"] {
        assert!(query["scope"].split(' ').any(|s| s == scope), "{scope}");
    }

    let mut socket = open_socket(&app.address, &key).await;
    let location = oidc::sign_in(&uri, "alice").await;
    let (status, page) = follow_redirect(&app, &location, &app.address, false).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("window.close()"), "{page}");
    let message = next_json(&mut socket).await;
    assert_eq!(message["type"], "authenticated", "{message}");
    assert_eq!(message["tokenType"], "Bearer");
    assert_eq!(message["user"]["email"], "alice@contoso.example");
    assert_eq!(message["user"]["login"], "alice");
    assert_eq!(message["user"]["name"], "Alice");
    expect_closed(&mut socket).await;
    let access = message["accessToken"].as_str().expect("access token").to_owned();
    let refresh_1 = message["refreshToken"]
        .as_str()
        .expect("refresh token")
        .to_owned();
    let claims = support::decode_claims(&access);
    assert_eq!(claims.scope, "user.read user.write");
    assert_eq!(claims.typ, "access");
    assert!(claims.exp - claims.iat <= 900);

    // The same redirect again: the state is used up.
    let (status, page) = follow_redirect(&app, &location, &app.address, false).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("already used"), "{page}");

    let (status, body) = me(&app, &access).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "Fetched user.");
    let user = &body["data"];
    for field in [
        "id",
        "name",
        "email",
        "login",
        "image",
        "roles",
        "createdAt",
        "updatedAt",
    ] {
        assert!(user.get(field).is_some(), "{field} in {user}");
    }
    assert_eq!(user["roles"], json!([]));
    assert_eq!(user["email"], "alice@contoso.example");

    let (status, body) = app
        .patch(
            "/v1/user/@me",
            &access,
            &json!({"name": "Alice Smith", "image": "https://example.com/a.png"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "Successfully updated user.");
    assert_eq!(body["data"]["name"], "Alice Smith");
    assert_eq!(body["data"]["image"], "https://example.com/a.png");
    assert_eq!(me(&app, &access).await.1["data"]["name"], "Alice Smith");
    let (status, body) = app
        .patch("/v1/user/@me", &access, &json!({"email": "x@y.z"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("email")
    );
    let (status, body) = app
        .patch(
            "/v1/user/@me",
            &access,
            &json!({"image": "http://example.com/a.png"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["path"], json!(["image"]));
    // A name that would spoof log lines or audit entries: control and bidi-override characters.
    for spoof in [
        "Alice\nsigned_in admin",
        "Alice\u{1b}[2K",
        "Alice\u{202e}nimda",
        "Al\u{0}ice",
    ] {
        let (status, body) = app.patch("/v1/user/@me", &access, &json!({"name": spoof})).await;
        assert_eq!(status, 400, "{spoof:?}: {body}");
        assert_eq!(body["errors"][0]["path"], json!(["name"]));
    }
    assert_eq!(me(&app, &access).await.1["data"]["name"], "Alice Smith");

    // Rotation: a new pair, the old refresh token is spent.
    let (status, body) = refresh(&app, &refresh_1).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["message"], "Token refreshed successfully!");
    let access_2 = body["data"]["accessToken"].as_str().expect("access").to_owned();
    let refresh_2 = body["data"]["refreshToken"].as_str().expect("refresh").to_owned();
    assert_ne!(refresh_2, refresh_1);
    assert_eq!(me(&app, &access_2).await.0, 200);

    // Reuse of the spent token revokes the whole family: the newest tokens stop working too.
    assert_eq!(refresh(&app, &refresh_1).await.0, 401);
    assert_eq!(refresh(&app, &refresh_2).await.0, 401);
    let revoked = ttscm_testkit::eventually(Duration::from_secs(5), || async {
        (me(&app, &access_2).await.0 == 401).then_some(())
    })
    .await;
    assert!(
        revoked.is_some(),
        "a revoked family's access token stops working within seconds"
    );

    // Sign-out of a second session: its access and refresh tokens stop at once on this edge.
    let data = sign_in_json(&app, "alice").await;
    let access_3 = data["accessToken"].as_str().expect("access").to_owned();
    assert_eq!(me(&app, &access_3).await.0, 200);
    let (status, body) = app.post("/v1/auth/logout", &access_3, &json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(me(&app, &access_3).await.0, 401);
    assert_eq!(
        refresh(&app, data["refreshToken"].as_str().expect("refresh"))
            .await
            .0,
        401
    );

    // A refresh token is not an access token, and unknown refresh tokens are refused.
    assert_eq!(
        me(&app, data["refreshToken"].as_str().expect("refresh")).await.0,
        401
    );
    assert_eq!(refresh(&app, "ttscmr_unknown").await.0, 401);
    let response = app.bare(reqwest::Method::POST, "/v1/auth/refresh").await;
    assert_eq!(response.status(), 401, "no x-refresh-token");
}

async fn failures_are_clear_and_create_no_session(mode: Mode) {
    let app = spawn_app_with_sign_in(mode, |_| {}).await;

    // Unknown state.
    let unknown = "Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXg";
    let (status, page) = provider_returns(&app, unknown, "abc", false).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("unknown, expired or already used"), "{page}");
    let (status, _) = follow_redirect(&app, "http://x/v1/auth/redirect?code=abc", &app.address, true).await;
    assert_eq!(status, 400, "no state");

    // The user cancels at the provider: error page, the socket hears it, the state is spent.
    let (uri, key) = start_sign_in(&app, &app.address).await;
    let mut socket = open_socket(&app.address, &key).await;
    let location = oidc::abort(&uri).await;
    assert!(location.contains("error=access_denied"), "{location}");
    let (status, page) = follow_redirect(&app, &location, &app.address, false).await;
    assert_eq!(status, 401, "{page}");
    assert!(page.contains("access_denied"), "{page}");
    let message = next_json(&mut socket).await;
    assert_eq!(message["type"], "error");
    assert_eq!(message["status"], 401);
    expect_closed(&mut socket).await;

    // A code the provider rejects.
    let (_, key) = start_sign_in(&app, &app.address).await;
    let mut socket = open_socket(&app.address, &key).await;
    let (status, body) = provider_returns(&app, &key, "not-a-code", true).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(next_json(&mut socket).await["type"], "error");

    // A nonce that does not match the pending login's (the request was tampered with on its way
    // to the provider): the provider signs the tampered nonce, identity refuses the ID token.
    let (uri, _) = start_sign_in(&app, &app.address).await;
    let mut tampered = url::Url::parse(&uri).expect("uri");
    let pairs: Vec<(String, String)> = tampered
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "nonce" {
                "attacker-nonce".into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    let location = oidc::sign_in(tampered.as_str(), "mallory").await;
    let (status, body) = follow_redirect(&app, &location, &app.address, true).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("failed verification"), "{body}");

    // A callback key nobody issued: the socket is told and closed.
    let mut socket = connect_socket(&app.address, unknown).await;
    let message = next_json(&mut socket).await;
    assert_eq!(message["type"], "error", "{message}");
    assert_eq!(message["status"], 400);

    assert_eq!(session_count(&app).await, 0, "no failure created a session");
}

async fn concurrent_refreshes_with_one_token_let_exactly_one_win(mode: Mode) {
    let app = spawn_app_with_sign_in(mode, |_| {}).await;
    // Several rounds: the loser's revocation of the session must never fail the winner too.
    for round in 0..4 {
        let data = sign_in_json(&app, "dave").await;
        let token = data["refreshToken"].as_str().expect("refresh").to_owned();
        let (a, b) = tokio::join!(refresh(&app, &token), refresh(&app, &token));
        let mut statuses = [a.0, b.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 401], "round {round}: exactly one refresh wins");
    }
}

async fn bootstrap_admin_and_role_changes_reach_the_edge(mode: Mode) {
    let app = spawn_app_with_sign_in(mode, |settings| {
        // An e-mail names a bootstrap admin only in TENANT_ID's tenant (at the first sign-in).
        settings.entra.tenant_id = Some(oidc::TEST_TENANT.into());
        settings.identity.admin_emails = vec!["Boss@Contoso.example".into()];
    })
    .await;
    let boss = sign_in_json(&app, "boss").await;
    assert_eq!(boss["user"]["roles"], json!(["admin"]));
    let boss_token = boss["accessToken"].as_str().expect("token").to_owned();
    let types = "/v1/credential-type/credential-types";
    assert_eq!(app.get_status(types, Some(&boss_token)).await, 200);

    let alice = sign_in_json(&app, "alice").await;
    let alice_token = alice["accessToken"].as_str().expect("token").to_owned();
    let alice_id = alice["user"]["id"].as_str().expect("id").to_owned();
    assert_eq!(app.get_status(types, Some(&alice_token)).await, 403);

    // Role administration with the boss's own access token.
    let (status, body) = app
        .post(
            "/v1/role/roles",
            &boss_token,
            &json!({"name": "type-reader", "permissions": ["credential_type.fetch.many"]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let role_id = body["data"]["id"].as_str().expect("role id").to_owned();
    let (status, body) = app
        .post(
            "/v1/role/roles",
            &boss_token,
            &json!({"name": "Type-Reader", "permissions": []}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = app
        .post(
            "/v1/role/roles",
            &boss_token,
            &json!({"name": "bad name!", "permissions": ["ok.perm", "Not A Permission"]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let paths = error_paths(&body);
    assert!(paths.contains(&json!(["name"])), "{body}");
    assert!(paths.contains(&json!(["permissions", 1])), "{body}");
    let (status, body) = app.get("/v1/role/roles", Some(&boss_token)).await;
    assert_eq!(status, 200, "{body}");
    let names = strings(&body["data"], "name");
    assert!(
        names.contains(&"admin") && names.contains(&"type-reader"),
        "{names:?}"
    );
    assert_eq!(
        app.patch("/v1/role/roles/admin", &boss_token, &json!({"permissions": []}))
            .await
            .0,
        409
    );
    assert_eq!(app.delete_status("/v1/role/roles/admin", &boss_token).await, 409);
    let role_path = format!("/v1/role/roles/{role_id}");
    let (status, body) = app
        .patch(&role_path, &boss_token, &json!({"name": "renamed"}))
        .await;
    assert_eq!(status, 400, "{body}");

    // Give alice the role: her existing access token gains the permission within seconds.
    let set_alice_roles = |roles: Value| {
        let (app, token) = (&app, &boss_token);
        let path = format!("/v1/user/users/{alice_id}/roles");
        async move { app.put(&path, token, &json!({ "roles": roles })).await }
    };
    let (status, body) = set_alice_roles(json!(["type-reader"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["roles"], json!(["type-reader"]));
    assert!(
        app.answers_within(types, Some(&alice_token), 200, Duration::from_secs(5))
            .await,
        "a role granted reaches the edge within seconds"
    );
    let (status, body) = set_alice_roles(json!(["nope"])).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["path"], json!(["roles", 0]));

    // A role someone holds cannot go; taken away, it can.
    assert_eq!(app.delete_status(&role_path, &boss_token).await, 409);
    // Narrowing the role's permissions reaches alice's token too.
    let (status, _) = app
        .patch(
            &role_path,
            &boss_token,
            &json!({"permissions": ["company.fetch"]}),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        app.answers_within(types, Some(&alice_token), 403, Duration::from_secs(5))
            .await,
        "a role's changed permissions reach the edge within seconds"
    );
    set_alice_roles(json!([])).await;
    assert_eq!(app.delete_status(&role_path, &boss_token).await, 200);

    // Users list, paginated, searchable; alice cannot list.
    let (status, body) = app
        .get("/v1/user/users?search=BOSS&rpp=10", Some(&boss_token))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pagination"]["totalRecords"], 1);
    assert_eq!(body["data"][0]["email"], "boss@contoso.example");
    assert_eq!(app.get_status("/v1/user/users", Some(&alice_token)).await, 403);
    // API tokens are not users: no profile.
    assert_eq!(me(&app, &app.admin_token).await.0, 403);
}

async fn sign_in_without_settings_answers_503_and_the_rest_works(mode: Mode) {
    let app = spawn_app(mode).await;
    let (status, body) = app.get("/v1/auth/uri", None).await;
    assert_eq!(status, 503, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    for name in [
        "TTSCM_ENTRA__CLIENT_ID",
        "TTSCM_ENTRA__CLIENT_SECRET",
        "TTSCM_ENTRA__REDIRECT_URL",
    ] {
        assert!(message.contains(name), "{message}");
    }
    assert_eq!(
        app.get_status("/v1/credential-type/credential-types", Some(&app.admin_token))
            .await,
        200
    );
    let user = app.signed_in_user(&[]).await;
    assert_eq!(me(&app, &user.access_token).await.0, 200);
    assert_eq!(refresh(&app, &user.refresh_token).await.0, 201);
}

async fn entra_shaped_claims_fill_the_user(mode: Mode) {
    let app = spawn_app_with_sign_in(mode, |_| {}).await;
    // No `email` claim: the e-mail comes from preferred_username.
    let data = sign_in_json(&app, "noemail7").await;
    assert_eq!(data["user"]["email"], "noemail7@contoso.example");
    assert_eq!(data["user"]["login"], "noemail7");
    // Keyed on (tid, oid): signing in again is the same user, whose chosen name is kept.
    let access = data["accessToken"].as_str().expect("token");
    app.patch("/v1/user/@me", access, &json!({"name": "Chosen"}))
        .await;
    let again = sign_in_json(&app, "noemail7").await;
    assert_eq!(again["user"]["id"], data["user"]["id"]);
    assert_eq!(again["user"]["name"], "Chosen");
    let stored = app
        .store()
        .await
        .get("users", data["user"]["id"].as_str().expect("id"))
        .await
        .expect("read")
        .expect("user");
    assert_eq!(stored["tid"], oidc::TEST_TENANT);
    assert_eq!(stored["oid"], oidc::object_id("noemail7"));
}

/// A socket opened without the key in its URL sends it as its first message (so the key stays
/// out of URLs and proxy logs) and receives the sign-in; a socket that sends junk is refused.
async fn the_callback_key_may_be_the_sockets_first_message(mode: Mode) {
    let app = spawn_app_with_sign_in(mode, |_| {}).await;
    let url = format!("{}/v1/auth/ws", app.address.replace("http://", "ws://"));
    let (mut junk, _) = tokio_tungstenite::connect_async(from_page_of(&app.address, &url))
        .await
        .expect("opens");
    junk.send(Message::text("not a key!")).await.expect("sent");
    let refused = next_json(&mut junk).await;
    assert_eq!(refused["type"], "error", "{refused}");

    let (uri, key) = start_sign_in(&app, &app.address).await;
    let (mut socket, _) = tokio_tungstenite::connect_async(from_page_of(&app.address, &url))
        .await
        .expect("opens");
    socket
        .send(Message::text(json!({"callbackKey": key}).to_string()))
        .await
        .expect("sent");
    let waiting = next_json(&mut socket).await;
    assert_eq!(waiting["type"], "waiting", "{waiting}");
    let location = oidc::sign_in(&uri, "alice").await;
    let (status, page) = follow_redirect(&app, &location, &app.address, false).await;
    assert_eq!(status, 200, "{page}");
    let message = next_json(&mut socket).await;
    assert_eq!(message["type"], "authenticated", "{message}");
}

/// Responses that carry tokens or a callback key are never stored by a browser or a proxy.
async fn token_bearing_responses_are_not_cached(mode: Mode) {
    let app = spawn_app_with_sign_in(mode, |_| {}).await;
    let cache_control = |response: &reqwest::Response| {
        response
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let uri = app
        .http
        .get(format!("{}/v1/auth/uri", app.address))
        .send()
        .await
        .expect("sent");
    assert_eq!(cache_control(&uri).as_deref(), Some("no-store"), "/auth/uri");
    let (authorize, _) = start_sign_in(&app, &app.address).await;
    let location = oidc::sign_in(&authorize, "alice").await;
    let redirect = app.follow_provider_redirect(&app.address, &location, true).await;
    assert_eq!(redirect.status(), 200);
    assert_eq!(
        cache_control(&redirect).as_deref(),
        Some("no-store"),
        "the JSON redirect"
    );
    let body: Value = redirect.json().await.expect("json");
    let refresh_token = body["data"]["refreshToken"].as_str().expect("refresh token");
    let refreshed = app.post_refresh(refresh_token).await;
    assert_eq!(refreshed.status(), 201);
    assert_eq!(cache_control(&refreshed).as_deref(), Some("no-store"), "refresh");
}

/// A client without the sign-in's cookie: the phished person's browser.
fn stranger() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// GETs `location` (the provider's redirect back) on `base` as `client`: status and page.
async fn redirect_as(client: &reqwest::Client, base: &str, location: &str) -> (u16, String) {
    let url = url::Url::parse(location).expect("a URL");
    let response = client
        .get(format!(
            "{base}{}?{}",
            url.path(),
            url.query().unwrap_or_default()
        ))
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// Asserts nothing arrives on `socket` for a second (what a phisher's socket gets).
async fn assert_silent(socket: &mut Socket) {
    let next = tokio::time::timeout(Duration::from_secs(1), socket.next()).await;
    assert!(next.is_err(), "the socket got {next:?}");
}

/// The phishing scenario: someone starts a sign-in, opens its socket and sends the `uri` to a
/// person signed in at the provider. The person completes it; the redirect, without the
/// starting browser's cookie, is refused with a page saying why, and the socket gets nothing.
/// The client that started it, with its cookie, still signs in.
async fn a_phished_sign_in_gives_the_phisher_nothing(mode: Mode) {
    let app = spawn_app_with_sign_in(mode, |_| {}).await;
    let sessions_before = session_count(&app).await;
    let (uri, key) = start_sign_in(&app, &app.address).await;
    let mut phisher = open_socket(&app.address, &key).await;
    let location = oidc::sign_in(&uri, "alice").await;
    let (status, page) = redirect_as(&stranger(), &app.address, &location).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("started by another browser or app"), "{page}");
    assert!(!page.contains("window.close()"), "{page}");
    assert_silent(&mut phisher).await;
    assert_eq!(
        session_count(&app).await,
        sessions_before,
        "no session was started"
    );
    // The state is spent: the phisher cannot finish it with its own cookie either.
    let (status, _) = follow_redirect(&app, &location, &app.address, true).await;
    assert_eq!(status, 400);
    // A fresh sign-in by the browser that started it still works.
    let (uri, key) = start_sign_in(&app, &app.address).await;
    let mut socket = open_socket(&app.address, &key).await;
    let location = oidc::sign_in(&uri, "alice").await;
    let (status, page) = follow_redirect(&app, &location, &app.address, false).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(next_json(&mut socket).await["type"], "authenticated");
}

/// The cookie `/auth/uri` sets: HttpOnly, SameSite=Lax, scoped to the sign-in routes, and one
/// value per browser across its sign-ins.
async fn the_sign_in_cookie_is_http_only_and_kept_per_browser(mode: Mode) {
    let app = spawn_app_with_sign_in(mode, |_| {}).await;
    let client = stranger();
    let first = client
        .get(format!("{}/v1/auth/uri", app.address))
        .send()
        .await
        .expect("sent");
    let cookie = first
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a cookie")
        .to_owned();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/v1/auth", "Max-Age=600"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "http public URL: {cookie}");
    let value = cookie.split(';').next().expect("name=value").to_owned();
    let again = client
        .get(format!("{}/v1/auth/uri", app.address))
        .header("cookie", &value)
        .send()
        .await
        .expect("sent");
    let kept = again
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("renewed");
    assert!(kept.starts_with(&value), "the same value is kept: {kept}");
}

/// One socket waits per callback key, across edge replicas: a second is refused while the
/// first holds the claim, and may wait once it closes.
async fn one_socket_waits_per_sign_in(mode: Mode) {
    let app = spawn_app_with_sign_in(mode, |_| {}).await;
    let (uri, key) = start_sign_in(&app, &app.address).await;
    let mut first = open_socket(&app.address, &key).await;
    let mut second = connect_socket(&app.address, &key).await;
    let refused = next_json(&mut second).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["status"], 409, "{refused}");
    expect_closed(&mut second).await;
    first.close(None).await.expect("closed");
    let mut third = ttscm_testkit::eventually(Duration::from_secs(5), || async {
        let mut socket = connect_socket(&app.address, &key).await;
        (next_json(&mut socket).await["type"] == "waiting").then_some(socket)
    })
    .await
    .expect("the claim is given up when its socket closes");
    let location = oidc::sign_in(&uri, "bob").await;
    let (status, _) = follow_redirect(&app, &location, &app.address, false).await;
    assert_eq!(status, 200);
    assert_eq!(next_json(&mut third).await["type"], "authenticated");
}

/// A native app (enabled by the operator): the provider is asked to let the person pick the
/// account, and the redirect page asks them to confirm the named client before anything is
/// finished; the socket gets the tokens only after that.
async fn a_native_sign_in_is_confirmed_by_the_person(mode: Mode) {
    let app = spawn_app_with_sign_in(mode, |s| s.edge.native_clients = true).await;
    let (status, body) = app
        .get("/v1/auth/uri?binding=native&client=TTSCM%20Desktop", None)
        .await;
    assert_eq!(status, 200, "{body}");
    let uri = body["data"]["uri"].as_str().expect("uri").to_owned();
    let key = body["data"]["callbackKey"].as_str().expect("key").to_owned();
    assert!(uri.contains("prompt=select_account"), "{uri}");
    let url = format!(
        "{}/v1/auth/ws?callbackKey={key}",
        app.address.replace("http://", "ws://")
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("a native socket opens");
    assert_eq!(next_json(&mut socket).await["type"], "waiting");
    let location = oidc::sign_in(&uri, "carol").await;
    let browser = stranger();
    let (status, page) = redirect_as(&browser, &app.address, &location).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Sign in to TTSCM Desktop?"), "{page}");
    assert!(page.contains("name=\"confirm\" value=\"yes\""), "{page}");
    assert_silent(&mut socket).await;
    let (status, page) = redirect_as(&browser, &app.address, &format!("{location}&confirm=yes")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(next_json(&mut socket).await["type"], "authenticated");
    // Bad requests: no client name, unknown binding.
    assert_eq!(app.get_status("/v1/auth/uri?binding=native", None).await, 400);
    assert_eq!(
        app.get_status("/v1/auth/uri?binding=carrier-pigeon", None).await,
        400
    );
}

async fn native_sign_ins_need_the_operator(mode: Mode) {
    let app = spawn_app_with_sign_in(mode, |_| {}).await;
    let (status, body) = app.get("/v1/auth/uri?binding=native&client=App", None).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("TTSCM_EDGE__NATIVE_CLIENTS"))
    );
}

/// A page on another allowed origin (third-party cookies blocked): the redirect page hands a
/// one-time code to its opener on that origin only, and the socket releases the tokens only
/// for that code. A phisher's socket, without the code, gets nothing.
async fn an_opener_sign_in_releases_tokens_for_the_code_only(mode: Mode) {
    const APP: &str = "https://app.example.com";
    let app = spawn_app_with_sign_in(mode, |s| s.edge.sign_in_origins = vec![APP.into()]).await;
    let start = |origin: &'static str| {
        let app = &app;
        async move {
            let response = stranger()
                .get(format!("{}/v1/auth/uri?binding=opener", app.address))
                .header("origin", origin)
                .send()
                .await
                .expect("sent");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("json"))
        }
    };
    assert_eq!(start("https://evil.example.com").await.0, 403);
    for (code_sent, expected) in [(false, "error"), (true, "authenticated")] {
        let (status, body) = start(APP).await;
        assert_eq!(status, 200, "{body}");
        let (uri, key) = (
            body["data"]["uri"].as_str().expect("uri").to_owned(),
            body["data"]["callbackKey"].as_str().expect("key").to_owned(),
        );
        let url = format!(
            "{}/v1/auth/ws?callbackKey={key}",
            app.address.replace("http://", "ws://")
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(from_page_of(APP, &url))
            .await
            .expect("opens");
        assert_eq!(next_json(&mut socket).await["type"], "waiting");
        let location = oidc::sign_in(&uri, "dave").await;
        let (status, page) = redirect_as(&stranger(), &app.address, &location).await;
        assert_eq!(status, 200, "{page}");
        assert!(
            page.contains(&format!("\"{APP}\")")),
            "posted to the app's origin only: {page}"
        );
        let code = page
            .split("code:\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the page hands a code to its opener")
            .to_owned();
        let asked = next_json(&mut socket).await;
        assert_eq!(asked["type"], "code_required", "{asked}");
        let sent = if code_sent { code } else { "a-guess".to_owned() };
        socket
            .send(Message::text(json!({"code": sent}).to_string()))
            .await
            .expect("sent");
        let outcome = next_json(&mut socket).await;
        assert_eq!(outcome["type"], expected, "{outcome}");
    }
}

both_modes!(
    a_phished_sign_in_gives_the_phisher_nothing,
    the_sign_in_cookie_is_http_only_and_kept_per_browser,
    one_socket_waits_per_sign_in,
    a_native_sign_in_is_confirmed_by_the_person,
    native_sign_ins_need_the_operator,
    an_opener_sign_in_releases_tokens_for_the_code_only,
    a_web_app_on_another_origin_signs_in_through_the_real_popup,
    cross_origin_calls_get_cors_answers_for_allowed_origins_only,
    the_callback_key_may_be_the_sockets_first_message,
    token_bearing_responses_are_not_cached,
    code_flow_delivers_tokens_on_the_websocket,
    failures_are_clear_and_create_no_session,
    concurrent_refreshes_with_one_token_let_exactly_one_win,
    bootstrap_admin_and_role_changes_reach_the_edge,
    sign_in_without_settings_answers_503_and_the_rest_works,
    entra_shaped_claims_fill_the_user,
    the_sign_in_popup_closes_itself_in_a_real_browser,
    an_expired_sign_in_is_refused,
);

/// Two edge replicas: the WebSocket waits on one, the provider's redirect lands on the other.
#[tokio::test]
async fn delivery_crosses_edge_replicas() {
    let mut app = spawn_app_with_sign_in(Mode::Mesh, |_| {}).await;
    let other = app.start_extra_edge();
    let ready = ttscm_testkit::eventually(Duration::from_secs(20), || async {
        let response = app.http.get(format!("{other}/readyz")).send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    assert!(ready.is_some(), "the second edge is ready");
    let (uri, key) = start_sign_in(&app, &app.address).await;
    let mut socket = open_socket(&app.address, &key).await;
    let location = oidc::sign_in(&uri, "erin").await;
    let (status, page) = follow_redirect(&app, &location, &other, false).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("window.close()"),
        "the other edge knew the socket got it: {page}"
    );
    let message = next_json(&mut socket).await;
    assert_eq!(message["type"], "authenticated", "{message}");
    assert_eq!(message["user"]["login"], "erin");
}

/// The redirect page as a person sees it: a real browser opens the provider in a popup, signs
/// in, and the popup closes itself while the opener's WebSocket gets the tokens.
async fn the_sign_in_popup_closes_itself_in_a_real_browser(mode: Mode) {
    let app = spawn_app_with_sign_in(mode, |_| {}).await;
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-artifacts")
        .join(format!("{mode:?}").to_lowercase());
    std::fs::create_dir_all(&artifacts).expect("artifact dir");
    let edge = app.address.clone();
    let dir = artifacts.clone();
    let result = tokio::task::spawn_blocking(move || oidc::run_browser_check(&edge, "carol", &dir))
        .await
        .expect("browser check ran");
    assert_eq!(result["error"], Value::Null, "{result}");
    assert_eq!(result["popupClosed"], true, "{result}");
    let message = &result["message"];
    assert_eq!(message["type"], "authenticated", "{result}");
    assert_eq!(message["user"]["login"], "carol");
    let access = message["accessToken"].as_str().expect("access token");
    assert_eq!(me(&app, access).await.0, 200);
    let text = result["errorPageText"].as_str().unwrap_or_default();
    assert!(text.contains("Sign-in failed"), "{text}");
    let screenshot = result["screenshot"].as_str().expect("screenshot path");
    assert!(
        std::fs::metadata(screenshot).is_ok_and(|m| m.len() > 1000),
        "{screenshot}"
    );
}

/// A page on an allowed origin may call the API from the browser (CORS: preflight and answers
/// name it); a page on any other origin is refused; clients without `Origin` are not CORS.
async fn cross_origin_calls_get_cors_answers_for_allowed_origins_only(mode: Mode) {
    const APP: &str = "https://app.example.com";
    let app = spawn_app_with_sign_in(mode, |s| s.edge.sign_in_origins = vec![APP.into()]).await;
    let preflight = stranger()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/auth/refresh", app.address),
        )
        .header("origin", APP)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "x-refresh-token")
        .send()
        .await
        .expect("sent");
    assert_eq!(preflight.status(), 200);
    assert_eq!(preflight.headers()["access-control-allow-origin"], APP);
    let answer = stranger()
        .get(format!("{}/v1/company/companies", app.address))
        .header("origin", APP)
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .expect("sent");
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["access-control-allow-origin"], APP);
    let evil = stranger()
        .get(format!("{}/v1/company/companies", app.address))
        .header("origin", "https://evil.example.com")
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .expect("sent");
    assert_eq!(evil.status(), 403);
    assert!(evil.headers().get("access-control-allow-origin").is_none());
    let plain = stranger()
        .get(format!("{}/v1/company/companies", app.address))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .expect("sent");
    assert_eq!(plain.status(), 200);
    assert!(plain.headers().get("access-control-allow-origin").is_none());
}

/// A web app on another origin signs in through the real popup: an opener-bound sign-in (its
/// `/auth/uri` a CORS request), the completion code posted by the edge's redirect page to the
/// app's page, passed on to the socket, which then hands over the tokens.
async fn a_web_app_on_another_origin_signs_in_through_the_real_popup(mode: Mode) {
    let app_origin = format!("http://127.0.0.1:{}", ttscm_testkit::free_port());
    let allowed = app_origin.clone();
    let app = spawn_app_with_sign_in(mode, move |s| s.edge.sign_in_origins = vec![allowed]).await;
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-artifacts")
        .join(format!("opener-{mode:?}").to_lowercase());
    std::fs::create_dir_all(&artifacts).expect("artifact dir");
    let edge = app.address.clone();
    let result = tokio::task::spawn_blocking(move || {
        oidc::run_browser_check_from(&edge, &app_origin, "erin", &artifacts)
    })
    .await
    .expect("browser check ran");
    assert_eq!(result["error"], Value::Null, "{result}");
    assert_eq!(result["popupClosed"], true, "{result}");
    assert_eq!(result["message"]["type"], "authenticated", "{result}");
    assert_eq!(result["message"]["user"]["login"], "erin");
}

/// Stopping the server does not wait for sign-ins in progress: a waiting WebSocket is told and
/// closed, and the server stops within seconds (not at the 30 s drain deadline).
#[tokio::test]
async fn shutdown_closes_waiting_sockets_promptly() {
    let mut app = spawn_app_with_sign_in(Mode::Embedded, |_| {}).await;
    let (_, key) = start_sign_in(&app, &app.address).await;
    let mut socket = open_socket(&app.address, &key).await;
    let started = std::time::Instant::now();
    let stopping = tokio::task::spawn_blocking(move || {
        app.stop(ttscm::Component::Edge);
        app
    });
    let message = next_json(&mut socket).await;
    assert_eq!(message["type"], "error", "{message}");
    assert_eq!(message["status"], 503);
    expect_closed(&mut socket).await;
    let _app = stopping.await.expect("stopped");
    assert_took_less("stopping", started, Duration::from_secs(10));
}

/// Two identity replicas, each with a user cache: a change made through one is seen through the
/// other at once (the change is announced on the bus), not after the cache time.
#[tokio::test]
async fn a_profile_change_is_seen_through_every_identity_replica() {
    let mut app = spawn_app_with_sign_in(Mode::Mesh, |_| {}).await;
    app.start_extra_replica(ttscm::Component::Identity);
    let data = sign_in_json(&app, "gina").await;
    let token = data["accessToken"].as_str().expect("token").to_owned();
    // Warm both replicas' caches (NATS spreads the queue group's requests).
    for _ in 0..20 {
        assert_eq!(me(&app, &token).await.0, 200);
    }
    let (status, _) = app
        .patch("/v1/user/@me", &token, &json!({"name": "Gina Renamed"}))
        .await;
    assert_eq!(status, 200);
    for _ in 0..20 {
        let (status, body) = me(&app, &token).await;
        assert_eq!(status, 200);
        assert_eq!(body["data"]["name"], "Gina Renamed", "a stale replica answered");
    }
}

/// A sign-in older than its 10 minutes is refused on the socket and on the redirect, and
/// creates no session (the pending login is aged directly in identity's store).
async fn an_expired_sign_in_is_refused(mode: Mode) {
    let app = spawn_app_with_sign_in(mode, |_| {}).await;
    let (uri, key) = start_sign_in(&app, &app.address).await;
    let id = hex_sha256(&key);
    let store = app.store().await;
    let past = ttscm_runtime::clock::format_iso(time::OffsetDateTime::now_utc() - time::Duration::minutes(1));
    let aged = store
        .update_one(
            "pending_logins",
            &ttscm_runtime::Filter::id(&id),
            &ttscm_runtime::Update::default().set("expiresAt", past),
        )
        .await
        .expect("updated");
    assert!(aged, "the pending login is stored under the key's hash");
    let mut socket = connect_socket(&app.address, &key).await;
    let message = next_json(&mut socket).await;
    assert_eq!(message["type"], "error", "{message}");
    let location = oidc::sign_in(&uri, "henry").await;
    let (status, body) = follow_redirect(&app, &location, &app.address, true).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("expired"), "{body}");
    assert_eq!(session_count(&app).await, 0);
}

fn hex_sha256(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A mesh whose every NATS connection uses TLS (a CA and a server certificate made for the test,
/// `tls://` URLs, TLS required) signs a user in through the WebSocket and reveals a credential;
/// the server refuses a plain connection.
#[tokio::test]
async fn a_mesh_over_tls_signs_in_and_reveals() {
    let app = support::spawn_mesh_over_tls_with_sign_in().await;
    let (uri, key) = start_sign_in(&app, &app.address).await;
    let mut socket = open_socket(&app.address, &key).await;
    let location = oidc::sign_in(&uri, "alice").await;
    let (status, page) = follow_redirect(&app, &location, &app.address, false).await;
    assert_eq!(status, 200, "{page}");
    let message = next_json(&mut socket).await;
    assert_eq!(message["type"], "authenticated", "{message}");
    let access = message["accessToken"].as_str().expect("access token");
    let (status, body) = me(&app, access).await;
    assert_eq!((status, &body["data"]["login"]), (200, &json!("alice")), "{body}");

    let secret = "sealed-and-revealed-over-tls";
    let support::Seeded { id, .. } = app.seed_aws_credential("TLS Co", secret).await;
    let (status, revealed) = app
        .get(
            &format!("/v1/credential/credentials/{id}/secure-values"),
            Some(&app.admin_token),
        )
        .await;
    assert_eq!(
        (status, &revealed["data"]["secretAccessKey"]),
        (200, &json!(secret)),
        "{revealed}"
    );

    let plain = tokio::time::timeout(
        Duration::from_secs(5),
        async_nats::ConnectOptions::with_user_and_password(
            "operator".into(),
            support::NATS_OPERATOR_PASSWORD.into(),
        )
        .connect(app.nats.as_ref().expect("mesh has NATS").url()),
    )
    .await;
    assert!(!matches!(plain, Ok(Ok(_))), "a plain connection is refused");
}
