//! Property tests over the request bodies of every JSON route (issue 20): whatever body arrives —
//! any JSON value, an object with the route's own keys holding anything, a valid body with one
//! part replaced or removed, tricky JSON texts (deep nesting, huge numbers, lone surrogates), or
//! any string or bytes as the raw body under a few content types — the answer is never a 5xx and
//! always the spec's envelope: `status` equal to the HTTP status, a `message`, and `successful`
//! true exactly below 400.
//!
//! Embedded mode only: the edge parses the body and the services check it the same way in both
//! modes (the mesh adds the bus, which carries what the edge already parsed). One app per test,
//! requests one at a time, [`CASES`] cases per kind of body, from a fixed seed so a run is
//! repeatable (`PROPTEST_RNG_SEED` and `PROPTEST_CASES` override both). A failure reports the
//! smallest body proptest found; keep it as a regular regression test beside the fix.

use crate::support;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};
use support::{Mode, TestApp, spawn_app};

/// Cases per kind of body (JSON values and raw bodies) and route.
const CASES: u32 = 96;

/// The seed of every run unless `PROPTEST_RNG_SEED` says otherwise.
const SEED: u64 = 20;

const TYPES: &str = "/v1/credential-type/credential-types";
const CREDS: &str = "/v1/credential/credentials";
const COMPANIES: &str = "/v1/company/companies";
const ROLES: &str = "/v1/role/roles";

/// What a request carries as its body.
#[derive(Debug, Clone)]
enum Body {
    /// A JSON value, sent as `application/json`.
    Json(Value),
    /// Bytes as they are, under a content type (`None`: no `Content-Type` header).
    Raw(Option<&'static str>, Vec<u8>),
}

/// One JSON route under test: where it is, who calls it, a valid body and the keys its bodies
/// use (so generated objects reach the checks behind the parser, not only the parser).
struct Route {
    method: reqwest::Method,
    path: String,
    token: String,
    valid: Value,
    keys: &'static [&'static str],
}

/// The runner's configuration: [`CASES`] cases from [`SEED`], unless the environment says
/// otherwise; no failure files (a failure is kept as a regression test instead).
fn config() -> Config {
    let from_environment = Config::default();
    Config {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            from_environment.cases
        } else {
            CASES
        },
        rng_seed: if std::env::var_os("PROPTEST_RNG_SEED").is_some() {
            from_environment.rng_seed
        } else {
            RngSeed::Fixed(SEED)
        },
        failure_persistence: None,
        ..from_environment
    }
}

/// Text: mostly short and of any characters, some of the characters that matter to parsers
/// and stores, and now and then long (up to past the body limit).
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter),
        2 => proptest::collection::vec(
            prop::sample::select(&['a', ' ', '\0', '\n', '"', '\\', '$', '.', '/', '%', 'ä', '\u{202e}', '\u{feff}', '😀'][..]),
            0..16,
        )
        .prop_map(String::from_iter),
        1 => (0usize..200_000).prop_map(|n| "x".repeat(n)),
    ]
}

/// Any JSON number `serde_json` can hold.
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        prop::sample::select(&[0i64, -1, 1, 2, 100, 101, 65_536][..]).prop_map(Value::from),
    ]
}

/// Any JSON value (up to four levels deep); object keys are drawn from `keys` or are any text.
fn any_json(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key(keys), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// An object key: one of `keys` (or a key of the nested shapes), or any text.
fn key(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    const NESTED: &[&str] = &[
        "id",
        "name",
        "required",
        "secure",
        "valueType",
        "fieldId",
        "value",
    ];
    prop_oneof![
        3 => prop::sample::select(keys).prop_map(str::to_owned),
        2 => prop::sample::select(NESTED).prop_map(str::to_owned),
        1 => text(),
    ]
}

/// Every JSON pointer into `value` (the root included).
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                pointers(
                    v,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                pointers(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// `valid` with the part at one of its pointers replaced by `replacement`, or removed.
fn mutate(valid: &Value, at: Index, replacement: Option<Value>) -> Value {
    let mut all = Vec::new();
    pointers(valid, String::new(), &mut all);
    let pointer = at.get(&all);
    let mut body = valid.clone();
    match (pointer.rsplit_once('/'), replacement) {
        (None, Some(replacement)) => body = replacement,
        (None, None) => body = Value::Null,
        (Some(_), Some(replacement)) => {
            *body.pointer_mut(pointer).expect("a pointer of the body") = replacement
        }
        (Some((parent, last)), None) => match body.pointer_mut(parent).expect("a pointer of the body") {
            Value::Object(map) => {
                map.remove(&last.replace("~1", "/").replace("~0", "~"));
            }
            Value::Array(items) => {
                items.remove(last.parse::<usize>().expect("an array index"));
            }
            _ => unreachable!("a parent is an object or an array"),
        },
    }
    body
}

/// Bodies that are JSON: anything, objects of the route's keys, and the valid body mutated.
fn json_bodies(valid: Value, keys: &'static [&'static str]) -> impl Strategy<Value = Body> {
    let object = proptest::collection::vec((key(keys), any_json(keys)), 0..6)
        .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>()));
    // Most replacements are of the kinds the bodies hold, so they pass the parser and reach
    // the rules behind it.
    let replacement = prop_oneof![
        3 => text().prop_map(Value::String),
        1 => number(),
        1 => any::<bool>().prop_map(Value::Bool),
        2 => any_json(keys),
    ];
    let mutated = (any::<Index>(), proptest::option::weighted(0.8, replacement))
        .prop_map(move |(at, replacement)| mutate(&valid, at, replacement));
    prop_oneof![
        1 => any_json(keys),
        2 => object,
        3 => mutated,
    ]
    .prop_map(Body::Json)
}

/// Raw bodies: any text or bytes, tricky JSON texts, under JSON's and other content types.
fn raw_bodies() -> impl Strategy<Value = Body> {
    let tricky = prop_oneof![
        (1usize..20_000).prop_map(|depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth))),
        (1usize..20_000).prop_map(|depth| format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))),
        Just("1e400".to_owned()),
        Just("-1e400".to_owned()),
        Just("123456789012345678901234567890".to_owned()),
        Just("{\"name\":\"\\ud800\"}".to_owned()),
        Just("{\"name\":\"a\\u0000b\"}".to_owned()),
        Just("{\"name\":\"a\",\"name\":\"b\"}".to_owned()),
        Just("\u{feff}{\"name\":\"bom\"}".to_owned()),
        Just("{\"name\":\"x\"} trailing".to_owned()),
        Just(String::new()),
        Just("null".to_owned()),
    ]
    .prop_map(String::into_bytes);
    let bytes = prop_oneof![
        2 => text().prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<u8>(), 0..64),
        2 => tricky,
    ];
    let content_type = prop_oneof![
        6 => Just(Some("application/json")),
        1 => Just(Some("application/json; charset=utf-8")),
        1 => Just(Some("text/plain")),
        1 => Just(Some("application/x-www-form-urlencoded")),
        1 => Just(None),
    ];
    (content_type, bytes).prop_map(|(content_type, bytes)| Body::Raw(content_type, bytes))
}

/// Checks that every answer of `route` to the bodies of `strategy` is a non-5xx envelope.
fn check(
    runtime: &tokio::runtime::Runtime,
    app: &TestApp,
    route: &Route,
    strategy: impl Strategy<Value = Body>,
) {
    let mut runner = TestRunner::new(config());
    let outcome = runner.run(&strategy, |body| {
        let (status, answer) = runtime.block_on(send(app, route, &body));
        envelope_holds(status, &answer)
    });
    if let Err(failure) = outcome {
        panic!("{} {}: {failure}", route.method, route.path);
    }
}

/// Sends `body` on `route`; answers the status and the JSON answer (`null` if not JSON).
async fn send(app: &TestApp, route: &Route, body: &Body) -> (u16, Value) {
    let mut request = app
        .http
        .request(route.method.clone(), format!("{}{}", app.address, route.path))
        .bearer_auth(&route.token);
    request = match body {
        Body::Json(value) => request
            .header("content-type", "application/json")
            .body(serde_json::to_vec(value).expect("a JSON value serializes")),
        Body::Raw(Some(content_type), bytes) => {
            request.header("content-type", *content_type).body(bytes.clone())
        }
        Body::Raw(None, bytes) => request.body(bytes.clone()),
    };
    let response = request.send().await.expect("the app answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The answer is no 5xx and in the spec's envelope.
fn envelope_holds(status: u16, answer: &Value) -> Result<(), TestCaseError> {
    prop_assert!(status < 500, "answered {status}: {answer}");
    prop_assert_eq!(
        &answer["status"],
        &json!(status),
        "the envelope's status: {}",
        answer
    );
    prop_assert!(answer["message"].is_string(), "no message: {answer}");
    prop_assert_eq!(
        &answer["successful"],
        &json!(status < 400),
        "successful: {}",
        answer
    );
    Ok(())
}

/// Runs both kinds of bodies against `route`.
fn check_route(runtime: &tokio::runtime::Runtime, app: &TestApp, route: Route) {
    check(runtime, app, &route, json_bodies(route.valid.clone(), route.keys));
    check(runtime, app, &route, raw_bodies());
}

/// A runtime for the test's client (the app runs on threads of its own).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime builds")
}

/// An embedded app holding one company, one credential type and one credential of it.
struct Fixture {
    app: TestApp,
    company: String,
    type_id: String,
    credential: String,
}

async fn fixture() -> Fixture {
    let app = spawn_app(Mode::Embedded).await;
    let seeded = app.seed_aws_credential("Property Test Ltd", "s3cr3t").await;
    Fixture {
        app,
        company: seeded.company,
        type_id: seeded.type_id,
        credential: seeded.id,
    }
}

/// The fields of the AWS-like type, as a body carries them.
fn aws_fields() -> Value {
    json!([
        {"id": "accessKeyId", "name": "Access Key ID", "required": true, "secure": false, "valueType": "plain_text"},
        {"id": "secretAccessKey", "name": "Secret Access Key", "required": true, "secure": true, "valueType": "password"},
        {"id": "notes", "name": "Notes", "required": false, "secure": false, "valueType": "note"}
    ])
}

const TYPE_KEYS: &[&str] = &["name", "permissionScope", "icon", "fields"];
const CREDENTIAL_KEYS: &[&str] = &["name", "typeId", "companyId", "fields"];

#[test]
fn credential_type_bodies_never_get_a_5xx() {
    let runtime = runtime();
    let Fixture { app, type_id, .. } = runtime.block_on(fixture());
    let token = app.admin_token.clone();
    let valid = json!({
        "name": "Generated", "permissionScope": "generated", "icon": "https://example.com/i.png",
        "fields": aws_fields(),
    });
    check_route(
        &runtime,
        &app,
        Route {
            method: reqwest::Method::POST,
            path: TYPES.into(),
            token: token.clone(),
            valid: valid.clone(),
            keys: TYPE_KEYS,
        },
    );
    check_route(
        &runtime,
        &app,
        Route {
            method: reqwest::Method::PATCH,
            path: format!("{TYPES}/{type_id}"),
            token,
            valid,
            keys: TYPE_KEYS,
        },
    );
}

#[test]
fn credential_bodies_never_get_a_5xx() {
    let runtime = runtime();
    let Fixture {
        app,
        company,
        type_id,
        credential,
    } = runtime.block_on(fixture());
    let token = app.admin_token.clone();
    let fields = json!([
        {"fieldId": "accessKeyId", "value": "AKIAIOSFODNN7EXAMPLE"},
        {"fieldId": "secretAccessKey", "value": "s3cr3t"},
        {"fieldId": "notes", "value": "a note"}
    ]);
    let routes = [
        (
            reqwest::Method::POST,
            CREDS.to_owned(),
            json!({"name": "Generated", "typeId": type_id, "companyId": company, "fields": fields}),
        ),
        (
            reqwest::Method::PATCH,
            format!("{CREDS}/{credential}"),
            json!({"name": "Renamed"}),
        ),
        (
            reqwest::Method::PUT,
            format!("{CREDS}/{credential}/fields"),
            json!({"fields": fields}),
        ),
    ];
    for (method, path, valid) in routes {
        let route = Route {
            method,
            path,
            token: token.clone(),
            valid,
            keys: CREDENTIAL_KEYS,
        };
        check_route(&runtime, &app, route);
    }
}

#[test]
fn role_and_user_role_bodies_never_get_a_5xx() {
    let runtime = runtime();
    let app = runtime.block_on(spawn_app(Mode::Embedded));
    let token = app.admin_token.clone();
    let (status, role) = runtime.block_on(app.post(
        ROLES,
        &token,
        &json!({"name": "generated", "permissions": ["credential.fetch"]}),
    ));
    assert_eq!(status, 201, "{role}");
    let role = role["data"]["id"].as_str().expect("a role id").to_owned();
    let user = runtime.block_on(app.signed_in_user(&[]));
    const KEYS: &[&str] = &["name", "permissions", "roles"];
    let routes = [
        (
            reqwest::Method::POST,
            ROLES.to_owned(),
            json!({"name": "readers", "permissions": ["credential.fetch", "company.*"]}),
        ),
        (
            reqwest::Method::PATCH,
            format!("{ROLES}/{role}"),
            json!({"name": "renamed", "permissions": ["credential.fetch"]}),
        ),
        (
            reqwest::Method::PUT,
            format!("/v1/user/users/{}/roles", user.user_id),
            json!({"roles": ["generated"]}),
        ),
    ];
    for (method, path, valid) in routes {
        let route = Route {
            method,
            path,
            token: token.clone(),
            valid,
            keys: KEYS,
        };
        check_route(&runtime, &app, route);
    }
}

#[test]
fn company_and_me_bodies_never_get_a_5xx() {
    let runtime = runtime();
    let app = runtime.block_on(spawn_app(Mode::Embedded));
    let token = app.admin_token.clone();
    let (status, company) = runtime.block_on(app.post(COMPANIES, &token, &json!({"name": "Manual Ltd"})));
    assert_eq!(status, 201, "{company}");
    let company = company["data"]["id"].as_str().expect("a company id").to_owned();
    let user = runtime.block_on(app.signed_in_user(&[]));
    const KEYS: &[&str] = &["name", "image"];
    let routes = [
        (
            reqwest::Method::POST,
            COMPANIES.to_owned(),
            token.clone(),
            json!({"name": "Generated"}),
        ),
        (
            reqwest::Method::PATCH,
            format!("{COMPANIES}/{company}"),
            token.clone(),
            json!({"name": "Renamed"}),
        ),
        (
            reqwest::Method::PATCH,
            "/v1/user/@me".to_owned(),
            user.access_token.clone(),
            json!({"name": "Me", "image": "https://example.com/me.png"}),
        ),
    ];
    for (method, path, token, valid) in routes {
        let route = Route {
            method,
            path,
            token,
            valid,
            keys: KEYS,
        };
        check_route(&runtime, &app, route);
    }
}

#[test]
fn webhook_bodies_never_get_a_5xx() {
    let runtime = runtime();
    let app = runtime.block_on(spawn_app(Mode::Embedded));
    let token = app.admin_token.clone();
    // A public literal address: registration resolves nothing and sends nothing.
    const URL: &str = "https://93.184.216.34/hook";
    let (status, endpoint) = runtime.block_on(app.post(
        "/v1/webhook/endpoints",
        &token,
        &json!({"url": URL, "eventTypes": ["credential.*"]}),
    ));
    assert_eq!(status, 201, "{endpoint}");
    let endpoint = endpoint["data"]["id"]
        .as_str()
        .expect("an endpoint id")
        .to_owned();
    const KEYS: &[&str] = &[
        "url",
        "description",
        "eventTypes",
        "companyIds",
        "enabled",
        "since",
        "until",
    ];
    let routes = [
        (
            reqwest::Method::POST,
            "/v1/webhook/endpoints".to_owned(),
            json!({"url": URL, "description": "PSA", "eventTypes": ["credential.created", "company.*"], "companyIds": ["c1"], "enabled": false}),
        ),
        (
            reqwest::Method::PATCH,
            format!("/v1/webhook/endpoints/{endpoint}"),
            json!({"url": URL, "description": "", "eventTypes": [], "companyIds": ["c2"], "enabled": true}),
        ),
        (
            reqwest::Method::POST,
            format!("/v1/webhook/endpoints/{endpoint}/replay"),
            json!({"since": "2026-01-01T00:00:00Z", "until": "2026-12-31T00:00:00Z"}),
        ),
    ];
    for (method, path, valid) in routes {
        let route = Route {
            method,
            path,
            token: token.clone(),
            valid,
            keys: KEYS,
        };
        check_route(&runtime, &app, route);
    }
}
