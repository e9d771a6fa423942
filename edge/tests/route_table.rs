//! The route table against the API spec: every route the spec lists is served, none twice, and
//! what the table calls "in the spec" is.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

use ttscm_edge::routes::{Access, Handler, Method, Reads};
use ttscm_edge::table::route_table;

/// The spec's route list (`METHOD /path` under `/v1`), as `shared/spec/api-routes.md` lists it
/// today. The spec lives beside this repository, not in it; when it is there, the test below
/// also checks that this copy still matches it.
const SPEC_ROUTES: &[&str] = &[
    "GET /auth/uri",
    "GET /auth/redirect",
    "POST /auth/refresh",
    "GET /user/@me",
    "PATCH /user/@me",
    "GET /company/companies",
    "GET /company/companies/:identifier",
    "GET /company/companies/:identifier/configurations",
    "GET /credential/credentials/:id",
    "GET /credential/credentials/company/:companyId",
    "POST /credential/credentials",
    "PATCH /credential/credentials/:id",
    "PUT /credential/credentials/:id/fields",
    "GET /credential/credentials/:id/fields",
    "GET /credential/credentials/:id/secure-values",
    "DELETE /credential/credentials/:id",
    "GET /credential-type/credential-types/:identifier",
    "GET /credential-type/credential-types",
    "POST /credential-type/credential-types",
    "PATCH /credential-type/credential-types/:id",
    "DELETE /credential-type/credential-types/:id",
    "GET /credential-type/credential-types/:id/credentials",
    "GET /teapot",
];

/// `shared/spec/api-routes.md`: `$TTSCM_SPEC_DIR`, else `shared/` beside the repository.
fn spec_file() -> Option<PathBuf> {
    let dir = match std::env::var_os("TTSCM_SPEC_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/spec"),
    };
    let file = dir.join("api-routes.md");
    file.is_file().then_some(file)
}

/// The `**METHOD** `/path`` lines of the spec, as `METHOD /path`.
fn parse_spec(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("**")?;
            let (method, rest) = rest.split_once("** `")?;
            let path = rest.strip_suffix('`')?;
            ["GET", "POST", "PUT", "PATCH", "DELETE"]
                .contains(&method)
                .then_some(())?;
            Some(format!("{method} {path}"))
        })
        .collect()
}

/// `METHOD /v1/path` of each route of the table that says it is in the spec, without `/v1`.
fn table_spec_routes() -> BTreeSet<String> {
    route_table()
        .iter()
        .filter(|r| r.in_spec)
        .map(|r| {
            let path = r.path.strip_prefix("/v1").expect("spec routes are under /v1");
            format!("{} {path}", r.method.as_str())
        })
        .collect()
}

#[test]
fn the_embedded_spec_list_matches_the_spec_file_when_it_is_there() {
    let Some(file) = spec_file() else {
        eprintln!("shared/spec/api-routes.md not found beside the repository; using the embedded list");
        return;
    };
    let text = std::fs::read_to_string(&file).expect("the spec file is readable");
    let parsed: BTreeSet<String> = parse_spec(&text).into_iter().collect();
    let embedded: BTreeSet<String> = SPEC_ROUTES.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        parsed, embedded,
        "the spec's routes changed: update SPEC_ROUTES and the table"
    );
}

#[test]
fn every_route_of_the_spec_is_in_the_table_and_marked_so() {
    let table = table_spec_routes();
    let spec: BTreeSet<String> = SPEC_ROUTES.iter().map(|s| s.to_string()).collect();
    let missing: Vec<_> = spec.difference(&table).collect();
    let extra: Vec<_> = table.difference(&spec).collect();
    assert!(
        missing.is_empty(),
        "spec routes the table does not serve: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "table routes marked in_spec that the spec does not list: {extra:?}"
    );
}

#[test]
fn no_two_routes_share_a_method_and_path() {
    let mut seen = HashSet::new();
    for route in route_table() {
        // `:id` and `:identifier` match the same requests.
        let shape: Vec<&str> = route
            .path
            .split('/')
            .map(|s| if s.starts_with(':') { ":" } else { s })
            .collect();
        assert!(
            seen.insert((route.method, shape.join("/"))),
            "{} {} is declared twice",
            route.method.as_str(),
            route.path
        );
    }
}

#[test]
fn route_names_are_unique() {
    let mut seen = HashSet::new();
    for route in route_table() {
        assert!(seen.insert(route.name), "route name {} is used twice", route.name);
    }
}

#[test]
fn every_path_is_absolute_with_distinct_parameters() {
    for route in route_table() {
        assert!(route.path.starts_with('/'), "{}", route.path);
        assert!(!route.path.ends_with('/'), "{}", route.path);
        let params: Vec<&str> = route.path.split('/').filter(|s| s.starts_with(':')).collect();
        let distinct: std::collections::BTreeSet<&&str> = params.iter().collect();
        assert_eq!(
            distinct.len(),
            params.len(),
            "{} names a parameter twice",
            route.path
        );
        assert!(
            route.path.split('/').skip(1).all(|s| !s.is_empty() && s != ":"),
            "{} has an empty segment",
            route.path
        );
    }
}

#[test]
fn every_route_under_v1_is_in_the_table() {
    // Health probes sit outside /v1; everything else is under it.
    for route in route_table() {
        assert!(
            route.path.starts_with("/v1/") || ["/healthz", "/readyz"].contains(&route.path),
            "{}",
            route.path
        );
    }
}

#[test]
fn the_websocket_is_a_get_that_reads_the_query() {
    let sockets: Vec<_> = route_table()
        .iter()
        .filter(|r| matches!(r.handler, Handler::WebSocket(_)))
        .collect();
    assert_eq!(sockets.len(), 1);
    assert_eq!(sockets[0].method, Method::Get);
    assert_eq!(sockets[0].reads, Reads::Query);
    assert_eq!(sockets[0].access, Access::Public);
}

#[test]
fn routes_that_take_a_body_are_writes() {
    for route in route_table() {
        if route.reads == Reads::Body {
            assert!(
                matches!(route.method, Method::Post | Method::Put | Method::Patch),
                "{} {} reads a body",
                route.method.as_str(),
                route.path
            );
        }
    }
}

#[test]
fn every_forwarded_operation_is_one_of_the_contract() {
    let subjects: HashSet<&str> = ttscm_contract::operation::operations()
        .map(|op| op.subject)
        .collect();
    for route in route_table() {
        if let Handler::Answer(answer) = route.handler
            && let Some(subject) = answer.subject()
        {
            assert!(subjects.contains(subject), "{} forwards {subject}", route.name);
        }
    }
}

#[test]
fn only_sign_in_probes_and_the_api_description_are_public() {
    let public: BTreeSet<&str> = route_table()
        .iter()
        .filter(|r| matches!(r.access, Access::Public | Access::RefreshToken))
        .map(|r| r.path)
        .collect();
    let expected: BTreeSet<&str> = [
        "/v1/teapot",
        "/v1/auth/uri",
        "/v1/auth/ws",
        "/v1/auth/redirect",
        "/v1/auth/refresh",
        "/healthz",
        "/readyz",
        "/v1/openapi.json",
        "/v1/docs",
        "/v1/docs/swagger-ui-bundle.js",
        "/v1/docs/swagger-ui.css",
    ]
    .into();
    assert_eq!(public, expected);
}
