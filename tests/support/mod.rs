//! The end-to-end harness: `spawn_app(mode)` starts TTSCM on a random port — embedded (one
//! process, in-process bus, SQLite in a temp dir) or mesh (each component on its own actix
//! system, joined only by a real nats-server and a fresh FerretDB database) — and returns a
//! [`TestApp`] with one method per endpoint. Dropping it shuts everything down.

#![allow(dead_code)]

/// Runs each named `async fn(Mode)` as two tests: `embedded::<name>` and `mesh::<name>`.
#[macro_export]
macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {
        ttscm_testkit::for_each_variant!(Mode { embedded: Embedded, mesh: Mesh } => $($name),*);
    };
}

pub mod openapi;

use std::net::{SocketAddr, TcpListener};
use std::thread::JoinHandle;
use std::time::Duration;

use std::sync::Arc;

use secrecy::SecretString;
use serde_json::Value;
use ttscm::Component;
use ttscm_runtime::{Settings, Shutdown, Store, connect};
use ttscm_testkit::{MongoFixture, NatsServer};

/// How the app runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One process, embedded defaults.
    Embedded,
    /// Components joined only by NATS and FerretDB.
    Mesh,
}

/// A running TTSCM for one test.
pub struct TestApp {
    /// Base URL, e.g. `http://127.0.0.1:4321`.
    pub address: String,
    /// The settings every component got.
    pub settings: Settings,
    /// An HTTP client (no redirects followed).
    pub http: reqwest::Client,
    /// The admin API token.
    pub admin_token: String,
    components: Vec<(Component, Shutdown, Option<JoinHandle<()>>)>,
    pub nats: Option<NatsServer>,
    /// The mesh's generated NATS users and principal keys (mesh mode).
    pub mesh_keys: Option<Arc<ttscm::mesh::MeshKeys>>,
    /// The OpenID provider sign-in uses, when started with [`spawn_app_with_sign_in`].
    pub oidc: Option<ttscm_testkit::oidc::OidcProvider>,
    mongo: Option<MongoFixture>,
    _data_dir: tempfile::TempDir,
}

/// The password of the test-only NATS user that may do anything (the tests' operator: it
/// inspects streams and every subject); the product's users are the generated ones.
pub const NATS_OPERATOR_PASSWORD: &str = "operator-only-in-tests";

fn start_component(
    settings: &Settings,
    keys: Option<&ttscm::mesh::MeshKeys>,
    components: Vec<Component>,
    listener: Option<TcpListener>,
) -> (Shutdown, JoinHandle<()>) {
    let shutdown = Shutdown::new();
    let mut settings = settings.clone();
    // In the mesh each component connects as its own NATS user with its own principal key.
    if let (Some(keys), [component]) = (keys, components.as_slice()) {
        keys.apply(*component, &mut settings);
    }
    let stop = shutdown.clone();
    let handle = std::thread::spawn(move || {
        if let Err(error) = ttscm::run_blocking(settings, components, listener, stop) {
            panic!("the app failed: {error}");
        }
    });
    (shutdown, handle)
}

/// Starts a nats-server with the mesh's generated configuration (its `tls` block when `tls_dir`
/// is given) plus the test-only operator user, its config file in `dir`.
pub fn start_mesh_nats(
    keys: &ttscm::mesh::MeshKeys,
    dir: &std::path::Path,
    tls_dir: Option<&str>,
) -> NatsServer {
    start_mesh_nats_with(keys, dir, tls_dir, None)
}

/// [`start_mesh_nats`] with the server's `max_payload` set to `max_payload` (an operator's
/// server may keep the 1 MB default) instead of the generated configuration's.
fn start_mesh_nats_with(
    keys: &ttscm::mesh::MeshKeys,
    dir: &std::path::Path,
    tls_dir: Option<&str>,
    max_payload: Option<usize>,
) -> NatsServer {
    let operator = format!("      {{ user: operator, password: {NATS_OPERATOR_PASSWORD} }}\n");
    // The tests pick the ports and the store directory on the command line; no monitor port.
    let mut conf = keys
        .nats_conf(tls_dir, &operator)
        .replace("http: 0.0.0.0:8222\n", "")
        .replace("jetstream {\n  store_dir: \"/data\"\n}\n", "");
    if let Some(max) = max_payload {
        conf = conf.replace("max_payload: 8MB\n", &format!("max_payload: {max}\n"));
    }
    let path = dir.join("nats.conf");
    std::fs::write(&path, conf).expect("the NATS configuration is written");
    NatsServer::start_with(&["-c", path.to_str().expect("a UTF-8 path")])
}

/// Starts TTSCM in `mode`.
pub async fn spawn_app(mode: Mode) -> TestApp {
    spawn_app_with(mode, |_| {}).await
}

fn base64_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(ttscm_runtime::ids::random_bytes::<32>())
}

impl TestApp {
    /// A NATS connection as the integrator (the user other MSP tools get), mesh mode only.
    pub async fn nats_integrator(&self) -> async_nats::Client {
        let keys = self.mesh_keys.as_ref().expect("mesh mode");
        async_nats::ConnectOptions::with_nkey(keys.integrator_seed())
            .connect(self.nats.as_ref().expect("mesh has NATS").url())
            .await
            .expect("the integrator connects")
    }

    /// The events in `TTSCM_EVENTS` as the integrator replays them: subject and payload, in
    /// order (mesh mode only).
    pub async fn replay_events(&self) -> Vec<(String, Value)> {
        let jetstream = async_nats::jetstream::new(self.nats_integrator().await);
        let mut stream = jetstream
            .get_stream("TTSCM_EVENTS")
            .await
            .expect("the stream exists");
        let last = stream.info().await.expect("stream info").state.last_sequence;
        let mut events = Vec::new();
        for seq in 1..=last {
            if let Ok(message) = stream.get_raw_message(seq).await {
                let payload: Value = serde_json::from_slice(&message.payload).expect("events are JSON");
                events.push((message.subject.to_string(), payload));
            }
        }
        events
    }

    /// The audit entries of `action`, newest first (at most 100), as the admin lists them.
    pub async fn audit_entries(&self, action: &str) -> Vec<Value> {
        let (status, page) = self
            .get(
                &format!("/v1/audit/events?rpp=100&action={action}"),
                Some(&self.admin_token),
            )
            .await;
        assert_eq!(status, 200, "{page}");
        page["data"].as_array().expect("a list").clone()
    }

    /// Changes the stored audit entry `seq` in place, `from` → `to` (same length, so the
    /// embedded server's index of its journal stays right), rehashing nothing: what someone
    /// with write access to the storage does — the journal file (embedded) or the MongoDB
    /// document's `action` (mesh, where `to` is the whole new action).
    pub async fn edit_audit_entry(&self, mode: Mode, seq: u64, from: &str, to: &str) {
        match mode {
            Mode::Embedded => {
                let path = ttscm_runtime::audit::journal_path(
                    &self.settings.data_dir.join(ttscm_runtime::connect::SQLITE_FILE),
                );
                let text = std::fs::read_to_string(&path).expect("the audit journal");
                let edited: String = text
                    .lines()
                    .map(|line| {
                        let entry: Value = serde_json::from_str(line).expect("an entry per line");
                        let line = if entry["seq"] == seq {
                            line.replacen(from, to, 1)
                        } else {
                            line.to_owned()
                        };
                        line + "\n"
                    })
                    .collect();
                assert_ne!(edited, text, "entry {seq} holds {from}");
                std::fs::write(&path, edited).expect("edited");
            }
            Mode::Mesh => {
                let changed = self
                    .store()
                    .await
                    .update_one(
                        ttscm_runtime::audit::COLLECTION,
                        &ttscm_runtime::Filter::eq("seq", seq as i64),
                        &ttscm_runtime::Update::default().set("action", to),
                    )
                    .await
                    .expect("edited");
                assert!(changed, "entry {seq} is stored");
            }
        }
    }

    /// A NATS connection as the tests' operator (may do anything), mesh mode only.
    pub async fn nats_operator(&self) -> async_nats::Client {
        async_nats::ConnectOptions::with_user_and_password("operator".into(), NATS_OPERATOR_PASSWORD.into())
            .connect(self.nats.as_ref().expect("mesh has NATS").url())
            .await
            .expect("the operator connects")
    }

    /// A NATS connection as `component`'s own NATS user (what a compromised pod of it holds).
    pub async fn nats_as(&self, component: Component) -> async_nats::Client {
        let keys = self.mesh_keys.as_ref().expect("mesh mode");
        async_nats::ConnectOptions::with_nkey(keys.nkey_seed(component))
            .custom_inbox_prefix(component.inbox_prefix())
            .connect(self.nats.as_ref().expect("mesh has NATS").url())
            .await
            .expect("connects with the component's credentials")
    }

    /// The OpenID provider's redirect to `location` followed on `base` (this app or another edge
    /// of it), asking for the JSON answer when `json`.
    pub async fn follow_provider_redirect(
        &self,
        base: &str,
        location: &str,
        json: bool,
    ) -> reqwest::Response {
        let url = url::Url::parse(location).expect("absolute redirect");
        let mut request = self.http.get(format!(
            "{base}{}?{}",
            url.path(),
            url.query().unwrap_or_default()
        ));
        if json {
            request = request.header("accept", "application/json");
        }
        request.send().await.expect("sent")
    }

    /// `POST /v1/auth/refresh` with `refresh_token`.
    pub async fn post_refresh(&self, refresh_token: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/auth/refresh", self.address))
            .header("x-refresh-token", refresh_token)
            .send()
            .await
            .expect("sent")
    }

    /// Polls `/readyz` until 200.
    pub async fn wait_ready(&self) {
        let ready = ttscm_testkit::eventually(Duration::from_secs(20), || async {
            let response = self
                .http
                .get(format!("{}/readyz", self.address))
                .send()
                .await
                .ok()?;
            (response.status() == 200).then_some(())
        })
        .await;
        assert!(ready.is_some(), "the app did not become ready");
    }

    /// A store handle on the app's store (a second connection).
    pub async fn store(&self) -> Store {
        connect::store(&self.settings).await.expect("store opens")
    }

    /// Creates an API token with `roles` (creating a role per name with the given permissions
    /// when it is not `admin`).
    pub async fn create_token(
        &self,
        name: &str,
        roles: &[&str],
        expires_at: Option<time::OffsetDateTime>,
    ) -> String {
        let store = self.store().await;
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        let (_, token) = ttscm_identity::admin::create_api_token(&store, name, &roles, expires_at)
            .await
            .expect("token created");
        token
    }

    /// Creates a role holding `permissions`.
    pub async fn create_role(&self, name: &str, permissions: &[&str]) {
        let store = self.store().await;
        ttscm_identity::admin::upsert_role(&store, name, permissions)
            .await
            .expect("role created");
    }

    /// A token whose only role holds exactly `permissions`.
    pub async fn token_with(&self, permissions: &[&str]) -> String {
        let role = format!("r{}", ttscm_runtime::ids::new_id());
        self.create_role(&role, permissions).await;
        self.create_token("test", &[&role], None).await
    }

    /// Sends `method path` with an optional bearer token, after `build` adds what else the
    /// request carries; answers the status and the JSON body (null when there is none).
    async fn exchange(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> (u16, Value) {
        let mut request = build(
            self.http
                .request(method.clone(), format!("{}{path}", self.address)),
        );
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.bytes().await.unwrap_or_default();
        openapi::check_response(method.as_str(), path, status, content_type.as_deref(), &body);
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// `method path` as a bare request (no token, no body); answers the response as it came.
    pub async fn bare(&self, method: reqwest::Method, path: &str) -> reqwest::Response {
        let url = format!("{}{path}", self.address);
        self.http.request(method, url).send().await.expect("sent")
    }

    /// GET `path` with an optional bearer token; answers status and JSON body.
    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.exchange(reqwest::Method::GET, path, token, |r| r).await
    }

    /// The status of `GET path` with an optional bearer token.
    pub async fn get_status(&self, path: &str, token: Option<&str>) -> u16 {
        self.get(path, token).await.0
    }

    /// Asserts that `GET path` with `token` answers `status`.
    pub async fn assert_get(&self, path: &str, token: &str, status: u16) {
        assert_eq!(self.get_status(path, Some(token)).await, status, "GET {path}");
    }

    /// Polls `GET path` with `token` until it answers `status` (true), or `within` passes (false).
    pub async fn answers_within(
        &self,
        path: &str,
        token: Option<&str>,
        status: u16,
        within: Duration,
    ) -> bool {
        ttscm_testkit::eventually(within, || async {
            (self.get(path, token).await.0 == status).then_some(())
        })
        .await
        .is_some()
    }

    /// Sends a request with a raw body and content type.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, Value) {
        self.exchange(method, path, token, |r| {
            r.header("content-type", content_type).body(body)
        })
        .await
    }

    /// POSTs `body` as it is, labelled `content_type`, with `token`.
    pub async fn post_raw(&self, path: &str, token: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
        self.send(
            reqwest::Method::POST,
            path,
            Some(token),
            content_type,
            body.to_vec(),
        )
        .await
    }

    /// Sends `body` as JSON with `method` and `token`.
    pub async fn json(&self, method: reqwest::Method, path: &str, token: &str, body: &Value) -> (u16, Value) {
        let bytes = serde_json::to_vec(body).expect("json");
        self.send(method, path, Some(token), "application/json", bytes)
            .await
    }

    /// Sends only a request head announcing a `content_length`-byte JSON body, and reads the
    /// answer (for limits enforced before the body is read).
    pub async fn send_head_only(
        &self,
        method: &str,
        path: &str,
        token: &str,
        content_length: usize,
    ) -> (u16, Value) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let host = self.address.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(host).await.expect("connects");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {token}\r\n\
             content-type: application/json\r\ncontent-length: {content_length}\r\nconnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("head sent");
        let mut response = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
        let text = String::from_utf8_lossy(&response);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// Sends JSON with the admin token.
    pub async fn send_json(&self, method: reqwest::Method, path: &str, body: &Value) -> (u16, Value) {
        self.json(method, path, &self.admin_token, body).await
    }

    /// Stops one component (mesh mode) and waits for it to finish.
    pub fn stop(&mut self, component: Component) {
        for (c, shutdown, handle) in &mut self.components {
            if *c == component {
                shutdown.cancel();
                if let Some(handle) = handle.take() {
                    handle.join().expect("component thread ends cleanly");
                }
            }
        }
    }

    /// Starts a stopped component again (mesh mode).
    pub fn restart(&mut self, component: Component) {
        self.stop(component);
        let (shutdown, handle) =
            start_component(&self.settings, self.mesh_keys.as_deref(), vec![component], None);
        self.components.push((component, shutdown, Some(handle)));
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        for (_, shutdown, _) in &self.components {
            shutdown.cancel();
        }
        for (_, _, handle) in &mut self.components {
            if let Some(handle) = handle.take() {
                let _ = handle.join();
            }
        }
    }
}

impl TestApp {
    /// identity's signing key, as the app loaded it.
    pub fn signing_key(&self) -> ttscm_identity::SigningKey {
        ttscm_identity::SigningKey::load(&self.settings).expect("the app's signing key loads")
    }

    /// A signed-in user with `roles` (created straight in identity's store, as a sign-in would,
    /// with a live session): the claims of its access token, its tokens and ids.
    pub async fn signed_in_user(&self, roles: &[&str]) -> SignedInUser {
        let store = self.store().await;
        let oid = ttscm_runtime::ids::new_id();
        let profile = ttscm_identity::users::SignInProfile {
            tid: ttscm_testkit::oidc::TEST_TENANT.into(),
            oid: oid.clone(),
            name: "Alice".into(),
            email: format!("alice.{oid}@contoso.example"),
            bootstrap_admin: false,
        };
        let user = ttscm_identity::users::upsert_signed_in(&store, &profile)
            .await
            .expect("user created");
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        let user = ttscm_identity::users::update_user(
            &store,
            &user.id,
            ttscm_runtime::Update::default().set("roles", roles),
        )
        .await
        .expect("roles set")
        .expect("user exists");
        let tokens = ttscm_identity::users::TokenSettings {
            key: self.signing_key(),
            issuer: self.settings.identity.issuer.clone(),
            audience: self.settings.identity.audience.clone(),
            access_ttl: 600,
            refresh_ttl: 3600,
            session_ttl: 3600,
        };
        let (pair, _) = ttscm_identity::users::start_session(&store, &tokens, &user)
            .await
            .expect("session started");
        let claims = decode_claims(&pair.access_token);
        SignedInUser {
            user_id: user.id,
            session_id: claims.sid.clone(),
            claims,
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
        }
    }

    /// Access-token claims of a fresh signed-in user with `roles`, valid now.
    pub async fn claims(&self, roles: &[&str]) -> ttscm_contract::identity::AccessClaims {
        self.signed_in_user(roles).await.claims
    }

    /// The mesh's MongoDB-wire server (started with [`spawn_mesh_with_own_store`] to stop it).
    pub fn store_server(&mut self) -> &mut MongoFixture {
        self.mongo.as_mut().expect("a mesh has a store server")
    }

    /// Starts one more replica of a service component (mesh mode).
    pub fn start_extra_replica(&mut self, component: Component) {
        let (shutdown, handle) =
            start_component(&self.settings, self.mesh_keys.as_deref(), vec![component], None);
        self.components.push((component, shutdown, Some(handle)));
    }

    /// Starts one more edge on its own port (mesh mode): another replica behind the same
    /// load balancer. Answers its base URL.
    pub fn start_extra_edge(&mut self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let (shutdown, handle) = start_component(
            &self.settings,
            self.mesh_keys.as_deref(),
            vec![Component::Edge],
            Some(listener),
        );
        self.components.push((Component::Edge, shutdown, Some(handle)));
        format!("http://{address}")
    }
}

/// A user signed in for a test.
pub struct SignedInUser {
    /// User id.
    pub user_id: String,
    /// Session id.
    pub session_id: String,
    /// The access token's claims.
    pub claims: ttscm_contract::identity::AccessClaims,
    /// The access token.
    pub access_token: String,
    /// The refresh token.
    pub refresh_token: String,
}

/// The claims of a JWT (not verified; tests only).
pub fn decode_claims(jwt: &str) -> ttscm_contract::identity::AccessClaims {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("the payload is base64url");
    serde_json::from_slice(&bytes).expect("the payload holds access claims")
}

/// What [`TestApp::seed_aws_credential`] made.
pub struct Seeded {
    /// The company's id.
    pub company: String,
    /// The type's id.
    pub type_id: String,
    /// The credential's id.
    pub id: String,
}

/// What an error answer is exactly, per the spec: the status and its envelope.
pub fn refusal(status: u16, message: &str) -> (u16, Value) {
    let body = serde_json::json!({"status": status, "message": message, "successful": false});
    (status, body)
}

/// The string at `pointer` (a JSON pointer, `/errors/0/message`) in `body`; empty when there is
/// none, so `text(..).contains(..)` fails for a missing field as for a wrong one.
pub fn text<'a>(body: &'a Value, pointer: &str) -> &'a str {
    body.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// The first error's message in an error answer's `errors` (empty when there is none).
pub fn first_error(body: &Value) -> &str {
    text(body, "/errors/0/message")
}

/// The `path` of each error in an error answer's `errors`.
pub fn error_paths(body: &Value) -> Vec<Value> {
    body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["path"].clone())
        .collect()
}

/// The string `field` of each element of the array `items` (elements without it are skipped).
pub fn strings<'a>(items: &'a Value, field: &str) -> Vec<&'a str> {
    items
        .as_array()
        .expect("a JSON array")
        .iter()
        .filter_map(|item| item[field].as_str())
        .collect()
}

/// Asserts that `what`, begun at `started`, took less than `limit`.
pub fn assert_took_less(what: &str, started: std::time::Instant, limit: Duration) {
    let took = started.elapsed();
    assert!(took < limit, "{what} took {took:?}, not less than {limit:?}");
}

/// The standard output of a finished command, after checking that it succeeded (its standard
/// error in the message when it did not).
pub fn stdout_of(output: std::process::Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

impl TestApp {
    /// Seeds a company straight into company-sync's collection (tests only; no service of
    /// TTSCM writes another's collection).
    pub async fn seed_company(&self, name: &str) -> String {
        let id = ttscm_runtime::ids::new_id();
        let document = serde_json::json!({
            "id": id, "name": name, "nameKey": name.to_lowercase(), "active": true,
            "createdAt": ttscm_runtime::clock::now_iso(), "updatedAt": ttscm_runtime::clock::now_iso(),
        });
        let serde_json::Value::Object(document) = document else {
            unreachable!("an object literal")
        };
        self.store()
            .await
            .insert("companies", document)
            .await
            .expect("company seeded");
        id
    }

    /// POSTs JSON with `token`.
    pub async fn post(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        self.json(reqwest::Method::POST, path, token, body).await
    }

    /// PATCHes JSON with `token`.
    pub async fn patch(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        self.json(reqwest::Method::PATCH, path, token, body).await
    }

    /// PUTs JSON with `token`.
    pub async fn put(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        self.json(reqwest::Method::PUT, path, token, body).await
    }

    /// DELETEs with `token`.
    pub async fn delete(&self, path: &str, token: &str) -> (u16, Value) {
        self.exchange(reqwest::Method::DELETE, path, Some(token), |r| r)
            .await
    }

    /// The status of `DELETE path` with `token`.
    pub async fn delete_status(&self, path: &str, token: &str) -> u16 {
        self.delete(path, token).await.0
    }

    /// Deletes `path`, expecting the spec's answer (200, `message`, `data: null`), and then a 404
    /// for `GET path`.
    pub async fn assert_deleted(&self, path: &str, token: &str, message: &str) {
        let (status, deleted) = self.delete(path, token).await;
        assert_eq!(
            (status, deleted),
            (
                200,
                serde_json::json!({"status": 200, "message": message, "data": null, "successful": true})
            )
        );
        assert_eq!(
            self.get_status(path, Some(token)).await,
            404,
            "{path} after its delete"
        );
    }

    /// Seeds the company `company`, creates the AWS-like type and one credential of it for that
    /// company holding `secret`.
    pub async fn seed_aws_credential(&self, company: &str, secret: &str) -> Seeded {
        let (company, type_id) = self.company_and_aws_type(company).await;
        let id = self.create_aws_credential(&type_id, &company, secret).await;
        Seeded { company, type_id, id }
    }

    /// Seeds the company `company` and creates the AWS-like type (no scope); answers their ids.
    pub async fn company_and_aws_type(&self, company: &str) -> (String, String) {
        let company = self.seed_company(company).await;
        (company, self.create_aws_type(None).await)
    }

    /// Creates the AWS-like type used across tests; answers its id.
    pub async fn create_aws_type(&self, scope: Option<&str>) -> String {
        let name = format!("AWS {}", ttscm_runtime::ids::new_id());
        let (status, body) = self
            .post(
                "/v1/credential-type/credential-types",
                &self.admin_token,
                &serde_json::json!({
                    "name": name,
                    "permissionScope": scope,
                    "icon": "https://aws.amazon.com/favicon.ico",
                    "fields": [
                        {"id": "accessKeyId", "name": "Access Key ID", "required": true, "secure": false, "valueType": "plain_text"},
                        {"id": "secretAccessKey", "name": "Secret Access Key", "required": true, "secure": true, "valueType": "password"},
                        {"id": "notes", "name": "Notes", "required": false, "secure": false, "valueType": "note"}
                    ]
                }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["data"]["id"].as_str().expect("type id").to_owned()
    }

    /// Creates a credential of the AWS-like type; answers its id.
    pub async fn create_aws_credential(&self, type_id: &str, company_id: &str, secret: &str) -> String {
        let (status, body) = self
            .post(
                "/v1/credential/credentials",
                &self.admin_token,
                &serde_json::json!({
                    "name": "Production AWS", "typeId": type_id, "companyId": company_id,
                    "fields": [
                        {"fieldId": "accessKeyId", "value": "AKIAIOSFODNN7EXAMPLE"},
                        {"fieldId": "secretAccessKey", "value": secret}
                    ]
                }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["data"]["id"].as_str().expect("credential id").to_owned()
    }
}

/// Starts TTSCM in `mode` after `configure` adjusted the settings every component gets (e.g. the
/// `connectwise` section).
pub async fn spawn_app_with(mode: Mode, configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn(mode, Spawn::default(), configure).await
}

/// Starts TTSCM as a mesh on a FerretDB of its own, which the test may stop
/// ([`TestApp::store_server`]).
pub async fn spawn_mesh_with_own_store() -> TestApp {
    spawn(
        Mode::Mesh,
        Spawn {
            own_store: true,
            ..Spawn::default()
        },
        |_| {},
    )
    .await
}

/// [`spawn_mesh_with_own_store`] with `configure` applied to the settings.
pub async fn spawn_mesh_with_own_store_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn(
        Mode::Mesh,
        Spawn {
            own_store: true,
            ..Spawn::default()
        },
        configure,
    )
    .await
}

/// How [`spawn`] sets the mesh up.
#[derive(Debug, Clone, Copy, Default)]
struct Spawn {
    /// A FerretDB of the test's own (which it may stop).
    own_store: bool,
    /// NATS over TLS: a CA and a server certificate made for the test, `tls://` URLs, TLS
    /// required by every component.
    tls: bool,
    /// The NATS server's `max_payload`, when not the generated configuration's.
    nats_max_payload: Option<usize>,
}

/// Starts TTSCM as a mesh whose nats-server carries messages of at most `max_payload` bytes,
/// with `configure` applied.
pub async fn spawn_mesh_with_nats_max_payload(
    max_payload: usize,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    spawn(
        Mode::Mesh,
        Spawn {
            nats_max_payload: Some(max_payload),
            ..Spawn::default()
        },
        configure,
    )
    .await
}

/// Starts TTSCM as a mesh whose NATS connections all use TLS, with `configure` applied.
pub async fn spawn_mesh_over_tls_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn(
        Mode::Mesh,
        Spawn {
            tls: true,
            ..Spawn::default()
        },
        configure,
    )
    .await
}

async fn spawn(mode: Mode, options: Spawn, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let own_store = options.own_store;
    ttscm_testkit::init_tracing();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings {
        data_dir: data_dir.path().to_path_buf(),
        request_timeout_ms: 3000,
        ..Settings::default()
    };
    settings.edge.token_cache_secs = 1;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address: SocketAddr = listener.local_addr().expect("address");
    settings.public_url = format!("http://{address}");
    let (nats, mongo, mesh_keys) = match mode {
        Mode::Embedded => (None, None, None),
        Mode::Mesh => {
            // NATS runs with the generated users and permissions (and a test-only operator).
            let keys = Arc::new(ttscm::mesh::MeshKeys::generate());
            let nats = if options.tls {
                let tls_dir = data_dir.path().join("nats-tls");
                let pki = ttscm_testkit::pki::TestPki::generate();
                std::fs::create_dir_all(&tls_dir).expect("a TLS dir");
                for (from, to) in [
                    ("server.pem", "tls.crt"),
                    ("server.key", "tls.key"),
                    ("ca.pem", "ca.crt"),
                ] {
                    std::fs::copy(pki.path(from), tls_dir.join(to)).expect("the certificates are copied");
                }
                settings.nats.tls_ca = Some(tls_dir.join("ca.crt"));
                settings.nats.tls_required = true;
                start_mesh_nats(
                    &keys,
                    data_dir.path(),
                    Some(tls_dir.to_str().expect("a UTF-8 path")),
                )
            } else {
                start_mesh_nats_with(&keys, data_dir.path(), None, options.nats_max_payload)
            };
            let mongo = if own_store {
                MongoFixture::start_own()
            } else {
                MongoFixture::start()
            };
            settings.nats_url = Some(if options.tls {
                format!("tls://127.0.0.1:{}", nats.port())
            } else {
                nats.url()
            });
            settings.mongodb_uri = Some(SecretString::from(mongo.uri.clone()));
            settings.mongodb_database = mongo.database.clone();
            settings.identity.signing_key = Some(SecretString::from(
                ttscm_identity::SigningKey::generate("k1").to_base64(),
            ));
            settings.identity.signing_kid = Some("k1".into());
            settings.vault.keys = Some(SecretString::from(format!("v1:{}", base64_key())));
            settings.vault.checkpoint_key = Some(SecretString::from(
                ttscm_runtime::ed25519::Ed25519Key::generate().to_base64(),
            ));
            (Some(nats), Some(mongo), Some(keys))
        }
    };
    configure(&mut settings);
    let mut components = Vec::new();
    match mode {
        Mode::Embedded => {
            let (shutdown, handle) =
                start_component(&settings, None, Component::ALL.to_vec(), Some(listener));
            components.push((Component::Edge, shutdown, Some(handle)));
        }
        Mode::Mesh => {
            let mut listener = Some(listener);
            for component in Component::ALL {
                let own = if component == Component::Edge {
                    listener.take()
                } else {
                    None
                };
                let (shutdown, handle) =
                    start_component(&settings, mesh_keys.as_deref(), vec![component], own);
                components.push((component, shutdown, Some(handle)));
            }
        }
    }
    // Keeps cookies like a browser: the sign-in cookie `/auth/uri` sets binds the sign-in to
    // this client, and its redirect must carry it.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .expect("client");
    let mut app = TestApp {
        address: format!("http://{address}"),
        settings,
        http,
        admin_token: String::new(),
        components,
        nats,
        mesh_keys,
        oidc: None,
        mongo,
        _data_dir: data_dir,
    };
    app.wait_ready().await;
    app.admin_token = app.create_token("admin", &["admin"], None).await;
    app
}

/// Starts TTSCM in `mode` with sign-in configured against a real OpenID provider of its own
/// (`oidc-provider`, Entra-shaped ID tokens); `configure` adjusts the settings further.
pub async fn spawn_app_with_sign_in(mode: Mode, configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_with_sign_in(mode, Spawn::default(), configure).await
}

/// A mesh over TLS ([`spawn_mesh_over_tls_with`]) with sign-in as [`spawn_app_with_sign_in`].
pub async fn spawn_mesh_over_tls_with_sign_in() -> TestApp {
    spawn_with_sign_in(
        Mode::Mesh,
        Spawn {
            tls: true,
            ..Spawn::default()
        },
        |_| {},
    )
    .await
}

async fn spawn_with_sign_in(mode: Mode, options: Spawn, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let mut provider = None;
    let mut app = spawn(mode, options, |settings| {
        let redirect = format!("{}/v1/auth/redirect", settings.public_url);
        let oidc = ttscm_testkit::oidc::OidcProvider::start(std::slice::from_ref(&redirect));
        settings.entra.issuer = Some(oidc.issuer.clone());
        settings.entra.client_id = Some(ttscm_testkit::oidc::TEST_CLIENT_ID.into());
        settings.entra.client_secret = Some(SecretString::from(ttscm_testkit::oidc::TEST_CLIENT_SECRET));
        settings.entra.redirect_url = Some(redirect);
        provider = Some(oidc);
        configure(settings);
    })
    .await;
    app.oidc = provider;
    app
}
