//! The OpenAPI 3.1 document (`GET /v1/openapi.json`) and its browsable page (`GET /v1/docs`),
//! generated from the code: the paths, methods, parameters, security and success answers from
//! the route table ([`crate::table`]), the request and `data` schemas from the contract's wire
//! types (`utoipa::ToSchema`, derived beside their serde attributes), the envelope and error
//! shapes from [`crate::envelope`] and [`crate::error`].
//!
//! A route names what the document cannot know from its declaration: its JSON body
//! ([`RouteSpec::body`], `.takes(schema::<T>)`), what its `data` is ([`Data`], `.gives(…)`) and
//! the query parameters and headers it reads ([`Param`], `.params(&[…])`). Every other part is
//! derived: error answers from its access and what it reads, links from a create's `data.id` to
//! the routes below its path.
//!
//! **Architecture Invariant**: the document describes exactly the table: `edge/tests/openapi.rs`
//! compares their route sets, and every response the end-to-end tests receive is validated
//! against the document (`tests/support/mod.rs`); Schemathesis fuzzes the live server with it.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::{Value, json};
use ttscm_contract::WireError;
use utoipa::ToSchema;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

use crate::routes::{Access, Handler, Input, Method, Reads, RequestCtx, RouteSpec};
use crate::table::route_table;

/// Named schemas (`components.schemas`), filled while the document is built.
pub type Schemas = BTreeMap<String, Value>;

/// Adds a schema (and every schema it refers to) to the components; answers how to refer to it.
pub type SchemaFn = fn(&mut Schemas) -> Value;

/// `T`'s schema as a `$ref`, `T` and the schemas it refers to added to the components.
pub fn schema<T: ToSchema>(schemas: &mut Schemas) -> Value {
    let mut nested = Vec::new();
    T::schemas(&mut nested);
    for (name, schema) in nested {
        schemas.insert(name, to_json(&schema));
    }
    let name = T::name().into_owned();
    schemas.insert(name.clone(), to_json(&T::schema()));
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// Any JSON value (`{}`): what a route passes on without knowing its shape (ConnectWise's
/// configurations).
pub fn any_value(_: &mut Schemas) -> Value {
    json!({})
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("utoipa's schemas serialize")
}

/// What a route's `data` is on success.
#[derive(Clone, Copy)]
pub enum Data {
    /// One value of the schema.
    One(SchemaFn),
    /// An array of the schema's items (never paged).
    Array(SchemaFn),
    /// An array of the schema's items, with the spec's `pagination` beside it when the query
    /// asks for a page (`page` or `rpp`).
    List(SchemaFn),
    /// An array of the schema's items, always with `pagination`.
    Paged(SchemaFn),
    /// One value of the schema (a report of one page), always with `pagination`.
    OnePaged(SchemaFn),
    /// `null`.
    Null,
    /// JSON when the request's `Accept` asks for it, else an HTML page (the sign-in redirect
    /// a browser lands on): the JSON's `data` is the schema.
    OneOrPage(SchemaFn),
    /// Not the envelope: the body is the schema itself, with the given content type (this
    /// document, the documentation page and its assets).
    Raw(&'static str, SchemaFn),
}

/// Where a [`Param`] is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum In {
    Query,
    Header,
}

/// A query parameter or request header a route reads.
#[derive(Clone, Copy)]
pub struct Param {
    /// Its name.
    pub name: &'static str,
    /// Query or header.
    pub location: In,
    /// Whether the route refuses a request without it.
    pub required: bool,
    /// Its schema (JSON Schema).
    pub schema: fn() -> Value,
    /// What it is for.
    pub description: &'static str,
}

impl Param {
    /// An optional query parameter.
    pub const fn query(name: &'static str, schema: fn() -> Value, description: &'static str) -> Self {
        Self {
            name,
            location: In::Query,
            required: false,
            schema,
            description,
        }
    }

    /// An optional request header.
    pub const fn header(name: &'static str, schema: fn() -> Value, description: &'static str) -> Self {
        Self {
            name,
            location: In::Header,
            required: false,
            schema,
            description,
        }
    }

    /// The route refuses a request without it.
    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }
}

fn text() -> Value {
    json!({"type": "string"})
}

fn rfc3339() -> Value {
    json!({"type": "string", "format": "date-time"})
}

/// The parameters the table's routes read, each described once.
pub mod params {
    use serde_json::json;

    use super::{Param, rfc3339, text};

    /// `page` of a paged list.
    pub const PAGE: Param = Param::query(
        "page",
        || json!({"type": "integer", "minimum": 1, "maximum": 1_000_000}),
        "The page, from 1 (default 1).",
    );
    /// `rpp` of a paged list (a list of companies clamps larger values to 100).
    pub const RPP: Param = Param::query(
        "rpp",
        || json!({"type": "integer", "minimum": 1, "maximum": crate::routes::MAX_RPP}),
        "Records per page, 1 to 100 (default 30).",
    );
    /// `rpp` of the companies list: larger values are clamped to 100.
    pub const COMPANY_RPP: Param = Param::query(
        "rpp",
        || json!({"type": "integer", "minimum": 1, "maximum": u64::MAX}),
        "Records per page (default 30); more than 100 counts as 100.",
    );
    /// `search` of the companies and users lists.
    pub const SEARCH: Param = Param::query("search", text, "Literal, case-insensitive text to look for.");
    /// `rotationDue` of the credential lists.
    pub const ROTATION_DUE: Param = Param::query(
        "rotationDue",
        || json!({"type": "boolean", "enum": [true]}),
        "Only credentials due for rotation (leave out for all).",
    );
    /// `ticket` of a reveal.
    pub const TICKET: Param = Param::query(
        "ticket",
        || json!({"type": "integer", "minimum": 1, "maximum": i64::MAX}),
        "The ConnectWise service ticket the reveal is for (a type's reveal policy may require it).",
    );
    /// `reason` of a reveal.
    pub const REASON: Param = Param::query(
        "reason",
        || json!({"type": "string", "maxLength": 500}),
        "Why the values are revealed (a type's reveal policy may require it).",
    );
    /// `breakGlass` of a reveal.
    pub const BREAK_GLASS: Param = Param::query(
        "breakGlass",
        || json!({"type": "boolean"}),
        "Bypass the reveal policy (needs credential.break_glass and a reason; marks the credential due).",
    );
    /// `full` of a company sync.
    pub const FULL: Param = Param::query(
        "full",
        || json!({"type": "boolean"}),
        "A full sync instead of the changes since the last one.",
    );
    /// `full` of the audit verification.
    pub const FULL_VERIFY: Param = Param::query(
        "full",
        || json!({"type": "boolean"}),
        "Verify the whole chain rather than from the last verified entry.",
    );
    /// `checkpoint` of the audit verification.
    pub const CHECKPOINT: Param = Param::query(
        "checkpoint",
        text,
        "A signed checkpoint (from GET /v1/audit/checkpoint) to verify the log against.",
    );
    /// `actor` of the audit events.
    pub const ACTOR: Param = Param::query("actor", text, "Only entries by this actor id.");
    /// `target` of the audit events.
    pub const TARGET: Param = Param::query("target", text, "Only entries about this target id.");
    /// `action` of the audit events.
    pub const ACTION: Param = Param::query("action", text, "Only entries of this action.");
    /// `from` of the audit events.
    pub const FROM: Param = Param::query("from", rfc3339, "Only entries at or after this time.");
    /// `to` of the audit events.
    pub const TO: Param = Param::query("to", rfc3339, "Only entries before this time.");
    /// `actor` of the exposure routes.
    pub const EXPOSED_BY: Param = Param::query(
        "actor",
        || json!({"type": "string", "pattern": "\\S"}),
        "The user or API token whose reveals count.",
    )
    .required();
    /// `since` of the exposure routes.
    pub const SINCE: Param = Param::query("since", rfc3339, "Only reveals at or after this time.");
    /// `binding` of the sign-in start.
    pub const BINDING: Param = Param::query(
        "binding",
        || json!({"type": "string", "enum": ["cookie", "opener", "native"]}),
        "What the sign-in is bound to (default cookie).",
    );
    /// `client` of a native sign-in.
    pub const CLIENT: Param = Param::query(
        "client",
        text,
        "A native client's name (1 to 100 characters), shown to the person signing in (ignored by other bindings).",
    );
    /// `callbackKey` of the sign-in socket (or sent as its first message).
    pub const CALLBACK_KEY: Param = Param::query("callbackKey", text, "The key from GET /v1/auth/uri.");
    /// `code` of the sign-in redirect.
    pub const CODE: Param = Param::query("code", text, "The authorization code from the provider.");
    /// `state` of the sign-in redirect.
    pub const STATE: Param =
        Param::query("state", text, "The callback key the sign-in started with.").required();
    /// `error` of the sign-in redirect.
    pub const ERROR: Param = Param::query("error", text, "The provider's error, if the sign-in failed.");
    /// `error_description` of the sign-in redirect.
    pub const ERROR_DESCRIPTION: Param =
        Param::query("error_description", text, "The provider's error text.");
    /// `confirm` of the sign-in redirect.
    pub const CONFIRM: Param = Param::query(
        "confirm",
        || json!({"type": "string", "enum": ["yes"]}),
        "The person confirmed a native client's sign-in.",
    );
    /// `If-Match` of a credential write.
    pub const IF_MATCH: Param = Param::header(
        "If-Match",
        || json!({"type": "string", "pattern": "^(\\*|(W/)?(\"[0-9]{1,19}\"|[0-9]{1,19}))$"}),
        "The ETag of the credential as read (its version); another current version answers 412.",
    );
    /// `Idempotency-Key` of a create.
    pub const IDEMPOTENCY_KEY: Param = Param::header(
        "Idempotency-Key",
        || json!({"type": "string", "pattern": "^[!-~]{1,255}$"}),
        "Runs the create once per key and caller for 24 h; a reuse with another body answers 422.",
    );
}

// ---- the document ------------------------------------------------------------------------------

/// The document, built once.
static DOCUMENT: LazyLock<Value> = LazyLock::new(build);

/// The document as served, built once.
static DOCUMENT_BYTES: LazyLock<Vec<u8>> =
    LazyLock::new(|| serde_json::to_vec(&*DOCUMENT).expect("the document serializes"));

/// The OpenAPI document of every route in the table.
pub fn document() -> &'static Value {
    &DOCUMENT
}

/// `/v1/credential/credentials/:id` as OpenAPI writes it: `/v1/credential/credentials/{id}`.
///
/// OpenAPI holds two paths that differ only in their parameters' names to be the same path (and
/// the document invalid); the table names parameters as the spec does, which differs between
/// methods (`GET …/companies/:identifier`, `PATCH …/companies/:id`). So a path takes the
/// parameter names of the first route of the table with its shape.
pub fn openapi_path(pattern: &str) -> String {
    let shape = |p: &str| -> Vec<Option<String>> {
        p.split('/')
            .map(|s| (!s.starts_with(':')).then(|| s.to_owned()))
            .collect()
    };
    let wanted = shape(pattern);
    let canonical = route_table()
        .iter()
        .map(|r| r.path)
        .find(|p| shape(p) == wanted)
        .unwrap_or(pattern);
    canonical
        .split('/')
        .map(|segment| match segment.strip_prefix(':') {
            Some(name) => format!("{{{name}}}"),
            None => segment.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The names of `pattern`'s parameters in the document (see [`openapi_path`]), with the table's
/// names, in order.
fn param_names(pattern: &str) -> Vec<(String, &str)> {
    let documented = openapi_path(pattern);
    documented
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(str::to_owned)
        .zip(pattern.split('/').filter_map(|s| s.strip_prefix(':')))
        .collect()
}

/// The error statuses a route may answer besides its success, with why.
fn error_statuses(route: &RouteSpec) -> Vec<u16> {
    let mut statuses = Vec::new();
    let authenticated = !matches!(route.access, Access::Public);
    let bus = matches!(route.handler, Handler::Answer(_)) && !matches!(route.data, Some(Data::Raw(..)));
    if route.path == "/readyz" {
        // Public, but a token presented is checked (401); not ready is 503.
        return vec![401, 503];
    }
    if route.status.as_u16() >= 400 {
        // The teapot: its answer is its only one.
        return vec![];
    }
    if !bus {
        // Served without a service: the liveness probe, the sign-in socket (refused before
        // the upgrade: not a WebSocket request, a foreign origin, over its allowance, too many
        // waiting), this document and its page.
        return match route.handler {
            Handler::WebSocket(_) => vec![400, 403, 429, 503],
            _ if route.path.contains(':') => vec![404],
            _ => vec![],
        };
    }
    statuses.push(400);
    if authenticated {
        statuses.push(401);
    }
    if matches!(route.access, Access::Permissions(_) | Access::Scopes(_))
        || route.path.starts_with("/v1/auth/")
    {
        statuses.push(403);
    }
    statuses.push(404);
    if route.method != Method::Get {
        statuses.push(409);
    }
    // A body beyond the limit, or an answer beyond what the bus carries ("ask for fewer").
    statuses.push(413);
    if route.reads == Reads::Body {
        statuses.extend([411, 415]);
    }
    if route.params.iter().any(|p| p.name == "If-Match") {
        statuses.push(412);
    }
    if route.params.iter().any(|p| p.name == "Idempotency-Key") {
        statuses.push(422);
    }
    if authenticated || route.address_allowance().is_some() {
        statuses.push(429);
    }
    statuses.extend([500, 502, 503, 504]);
    statuses.sort_unstable();
    statuses
}

fn reason(status: u16) -> &'static str {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

/// The spec's error envelope with `status` fixed.
fn error_body(status: u16) -> Value {
    json!({
        "allOf": [{"$ref": "#/components/schemas/ErrorEnvelope"}],
        "properties": {"status": {"const": status}},
    })
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

/// The success envelope of `route` with `data` as `data` (and `pagination` as `paged` says:
/// `Some(true)` always, `None` optional).
fn success_envelope(route: &RouteSpec, data: Value, paged: Option<bool>) -> Value {
    let mut properties = json!({
        "status": {"const": route.status.as_u16()},
        "message": {"type": "string", "const": route.message},
        "data": data,
        "successful": {"const": true},
    });
    let mut required = vec!["status", "message", "data", "successful"];
    match paged {
        Some(true) => {
            properties["pagination"] = json!({"$ref": "#/components/schemas/Pagination"});
            required.push("pagination");
        }
        None => properties["pagination"] = json!({"$ref": "#/components/schemas/Pagination"}),
        Some(false) => {}
    }
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

fn html_page() -> Value {
    json!({"text/html": {"schema": {"type": "string"}}})
}

/// The success response of `route`.
fn success_response(route: &RouteSpec, schemas: &mut Schemas) -> Value {
    let description = if route.message.is_empty() {
        reason(route.status.as_u16()).to_owned()
    } else {
        route.message.to_owned()
    };
    let content = match route.data {
        _ if route.status == StatusCode::SWITCHING_PROTOCOLS => None,
        _ if route.status.as_u16() >= 400 => Some(json_content(error_body(route.status.as_u16()))),
        None | Some(Data::Null) => Some(json_content(success_envelope(
            route,
            json!({"type": "null"}),
            Some(false),
        ))),
        Some(Data::One(f)) => Some(json_content(success_envelope(route, f(schemas), Some(false)))),
        Some(Data::Array(f)) => Some(json_content(success_envelope(
            route,
            json!({"type": "array", "items": f(schemas)}),
            Some(false),
        ))),
        Some(Data::List(f)) => Some(json_content(success_envelope(
            route,
            json!({"type": "array", "items": f(schemas)}),
            None,
        ))),
        Some(Data::Paged(f)) => Some(json_content(success_envelope(
            route,
            json!({"type": "array", "items": f(schemas)}),
            Some(true),
        ))),
        Some(Data::OnePaged(f)) => Some(json_content(success_envelope(route, f(schemas), Some(true)))),
        Some(Data::OneOrPage(f)) => {
            let mut content = json_content(success_envelope(route, f(schemas), Some(false)));
            content["text/html"] = html_page()["text/html"].clone();
            Some(content)
        }
        Some(Data::Raw(content_type, f)) => Some(json!({ content_type: {"schema": f(schemas)} })),
    };
    let mut response = json!({ "description": description });
    if let Some(content) = content {
        response["content"] = content;
    }
    if route.no_store {
        response["headers"] = json!({"Cache-Control": {"schema": {"const": "no-store"}}});
    }
    response
}

/// A path parameter's schema, as `routes::decode_param` and the handlers read it: a version is
/// a whole number; any other parameter is text without control characters, and without `/`
/// unless it may be a name (`routes::NAME_PARAMS`).
fn path_param(name: &str) -> Value {
    match name {
        "version" => json!({"type": "integer", "minimum": 0, "maximum": i64::MAX}),
        _ if crate::routes::NAME_PARAMS.contains(&name) => {
            json!({"type": "string", "minLength": 1, "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]+$"})
        }
        _ => json!({"type": "string", "minLength": 1, "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f/]+$"}),
    }
}

/// The operation of `route`.
fn operation(route: &RouteSpec, schemas: &mut Schemas, links: Option<Value>) -> Value {
    let mut parameters: Vec<Value> = param_names(route.path)
        .into_iter()
        .map(|(documented, own)| {
            json!({
                "name": documented, "in": "path", "required": true, "schema": path_param(own),
                "description": format!("The {own}."),
            })
        })
        .collect();
    for param in route.params {
        parameters.push(json!({
            "name": param.name,
            "in": match param.location { In::Query => "query", In::Header => "header" },
            "required": param.required,
            "description": param.description,
            "schema": (param.schema)(),
        }));
    }
    let mut responses = serde_json::Map::new();
    let mut success = success_response(route, schemas);
    if let Some(links) = links {
        success["links"] = links;
    }
    responses.insert(route.status.as_u16().to_string(), success);
    let html_errors = matches!(route.data, Some(Data::OneOrPage(_)));
    for status in error_statuses(route) {
        let mut response = json!({"$ref": format!("#/components/responses/E{status}")});
        if route.path == "/readyz" && status == 503 {
            // Public: the error envelope. With a token: the detailed report as `data`, beside
            // `successful: false` (as `misc_routes::readiness` answers it).
            response = json!({
                "description": "Not ready",
                "content": json_content(json!({"oneOf": [
                    error_body(503),
                    {
                        "type": "object",
                        "properties": {
                            "status": {"const": 503},
                            "message": {"const": "Not ready"},
                            "data": {"type": "object"},
                            "successful": {"const": false},
                        },
                        "required": ["status", "message", "data", "successful"],
                        "additionalProperties": false,
                    },
                ]})),
            });
        }
        if html_errors {
            response = json!({
                "description": reason(status),
                "content": {
                    "application/json": {"schema": error_body(status)},
                    "text/html": {"schema": {"type": "string"}},
                },
            });
        }
        responses.insert(status.to_string(), response);
    }
    let tag = route
        .path
        .trim_start_matches("/v1/")
        .split('/')
        .next()
        .unwrap_or("probes");
    let mut operation = json!({
        "operationId": route.name,
        "summary": if route.message.is_empty() { route.name } else { route.message },
        "tags": [if route.path.starts_with("/v1/") { tag } else { "probes" }],
        "parameters": parameters,
        "responses": responses,
    });
    if !route.in_spec {
        operation["x-beyond-spec"] = json!(true);
    }
    if let Some(body) = route.body {
        operation["requestBody"] = json!({"required": true, "content": json_content(body(schemas))});
        if let Some(example) = example(route.name) {
            operation["requestBody"]["content"]["application/json"]["example"] = example;
        }
    }
    let security = match route.access {
        Access::Public => json!([]),
        Access::RefreshToken => json!([{"refreshToken": []}]),
        Access::Scopes(_) => json!([{"accessToken": []}]),
        Access::SignedIn | Access::Permissions(_) => json!([{"accessToken": []}, {"apiToken": []}]),
    };
    operation["security"] = security;
    let mut description = String::new();
    match route.access {
        Access::Permissions(permissions) => {
            description.push_str(&format!(
                "Requires the permissions: `{}`.",
                permissions.join("`, `")
            ));
        }
        Access::Scopes(scopes) => {
            description.push_str(&format!(
                "A user's access token with the scopes: `{}`.",
                scopes.join("`, `")
            ));
        }
        Access::SignedIn => description.push_str("Any API token or access token."),
        Access::RefreshToken => description.push_str("A refresh token in `x-refresh-token`."),
        Access::Public => description.push_str("Public."),
    }
    operation["description"] = json!(description);
    operation
}

/// Links from a create's `data.id` to the routes below its path that take the id as their
/// first parameter (Schemathesis follows them in its stateful phase).
fn links(route: &RouteSpec) -> Option<Value> {
    if route.method != Method::Post || route.status != StatusCode::CREATED || route.path.contains(':') {
        return None;
    }
    let mut links = serde_json::Map::new();
    for other in route_table() {
        let Some(rest) = other
            .path
            .strip_prefix(route.path)
            .and_then(|r| r.strip_prefix("/:"))
        else {
            continue;
        };
        // A second parameter (a field id, a version) is not known from the create.
        if rest.contains(':') {
            continue;
        }
        let Some((param, _)) = param_names(other.path).into_iter().next() else {
            continue;
        };
        links.insert(
            other.name.to_owned(),
            json!({
                "operationId": other.name,
                "parameters": { param: "$response.body#/data/id" },
            }),
        );
    }
    (!links.is_empty()).then_some(Value::Object(links))
}

/// The request examples, taken from the spec's (`shared/spec/api-routes.md`).
fn example(route: &str) -> Option<Value> {
    Some(match route {
        "user.me_update" => json!({"name": "Jane Doe"}),
        "credential.create" => json!({
            "name": "Production AWS",
            "typeId": "type123",
            "companyId": "company123",
            "fields": [
                {"fieldId": "accessKeyId", "value": "AKIAIOSFODNN7EXAMPLE"},
                {"fieldId": "secretAccessKey", "value": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
            ],
        }),
        "credential.update" => json!({"name": "Updated Credential Name"}),
        "credential.fields_update" => json!({
            "fields": [
                {"fieldId": "accessKeyId", "value": "AKIAIOSFODNN7EXAMPLE"},
                {"fieldId": "secretAccessKey", "value": "newSecretValue"},
            ],
        }),
        "credential_type.create" => json!({
            "name": "AWS Credentials",
            "permissionScope": "aws",
            "icon": "https://aws.amazon.com/favicon.ico",
            "fields": [
                {"id": "accessKeyId", "name": "Access Key ID", "required": true, "secure": false, "valueType": "plain_text"},
                {"id": "secretAccessKey", "name": "Secret Access Key", "required": true, "secure": true, "valueType": "password"},
            ],
        }),
        "credential_type.update" => json!({"name": "Updated AWS Credentials"}),
        _ => return None,
    })
}

/// Builds the document from the table.
fn build() -> Value {
    let mut schemas = Schemas::new();
    schema::<crate::envelope::Pagination>(&mut schemas);
    schemas.insert(
        "FieldError".into(),
        json!({
            "type": "object",
            "description": "One validation problem, located by a path into the request.",
            "properties": {
                "path": {"type": "array", "items": {"type": ["string", "integer"]}},
                "message": {"type": "string"},
            },
            "required": ["path", "message"],
            "additionalProperties": false,
        }),
    );
    schemas.insert(
        "ErrorEnvelope".into(),
        json!({
            "type": "object",
            "description": "The spec's error shape; `errors` only on validation errors (400).",
            "properties": {
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "message": {"type": "string"},
                "errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}, "minItems": 1},
                "successful": {"const": false},
            },
            "required": ["status", "message", "successful"],
            "additionalProperties": false,
        }),
    );
    let mut responses = serde_json::Map::new();
    for status in [
        400u16, 401, 403, 404, 409, 411, 412, 413, 415, 422, 429, 500, 502, 503, 504,
    ] {
        let mut response = json!({
            "description": reason(status),
            "content": json_content(error_body(status)),
        });
        if status == 400 {
            response["content"]["application/json"]["example"] = json!({
                "status": 400, "message": "Validation error",
                "errors": [{"path": ["fields", 1, "value"], "message": "value is required"}],
                "successful": false,
            });
        }
        if status == 429 {
            response["headers"] = json!({"Retry-After": {
                "description": "Seconds until the allowance has room again.",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            }});
        }
        responses.insert(format!("E{status}"), response);
    }
    let mut paths = serde_json::Map::new();
    for route in route_table() {
        let links = links(route);
        let operation = operation(route, &mut schemas, links);
        let item = paths.entry(openapi_path(route.path)).or_insert_with(|| json!({}));
        item[route.method.as_str().to_ascii_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "TTSCM API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "TTSCM, a credential manager for MSPs. Every answer is the envelope \
                `{status, message, data, successful}` (lists that page add `pagination`); errors are \
                `{status, message, errors?, successful: false}`, `errors[].path` locating each \
                validation problem in the request. Generated from the edge's route table.",
            "license": {"name": "AGPL-3.0-only", "identifier": "AGPL-3.0-only"},
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": responses,
            "securitySchemes": {
                "accessToken": {
                    "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                    "description": "A user's access token (from the sign-in or POST /v1/auth/refresh).",
                },
                "apiToken": {
                    "type": "http", "scheme": "bearer",
                    "description": "An API token (`ttscm_…`, from `ttscm token create`).",
                },
                "refreshToken": {
                    "type": "apiKey", "in": "header", "name": "x-refresh-token",
                    "description": "A refresh token (POST /v1/auth/refresh only).",
                },
            },
        },
    })
}

// ---- serving -----------------------------------------------------------------------------------

fn raw(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut response = Response::new(bytes::Bytes::from_static(body).into());
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    response
}

/// `GET /v1/openapi.json`: the document.
pub(crate) async fn serve_document(
    _ctx: RequestCtx,
    _route: &'static RouteSpec,
    _input: Input,
) -> Result<Response, WireError> {
    Ok(raw("application/json", DOCUMENT_BYTES.as_slice()))
}

/// The document's own schema in it: an object (an OpenAPI 3.1 document).
pub fn openapi_document(_: &mut Schemas) -> Value {
    json!({"type": "object", "required": ["openapi", "paths"]})
}

// ---- the browsable page ------------------------------------------------------------------------

/// Swagger UI's bundle and stylesheet (npm `swagger-ui-dist`, vendored in
/// `edge/assets/swagger-ui/`), served from the binary: the page loads nothing from elsewhere.
const SWAGGER_UI_JS: &str = include_str!("../assets/swagger-ui/swagger-ui-bundle.js");
const SWAGGER_UI_CSS: &str = include_str!("../assets/swagger-ui/swagger-ui.css");

/// The page: Swagger UI on `/v1/openapi.json`, assets relative to it, the online validator off.
const DOCS_PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>TTSCM API</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/v1/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/v1/docs/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({
  url: "/v1/openapi.json",
  dom_id: "#swagger-ui",
  validatorUrl: null,
  deepLinking: true,
  tryItOutEnabled: false,
});
</script>
</body>
</html>
"##;

/// `GET /v1/docs`: the browsable page.
pub(crate) async fn serve_page(
    _ctx: RequestCtx,
    _route: &'static RouteSpec,
    _input: Input,
) -> Result<Response, WireError> {
    Ok(raw("text/html; charset=utf-8", DOCS_PAGE.as_bytes()))
}

/// `GET /v1/docs/swagger-ui-bundle.js`: the page's script.
pub(crate) async fn serve_script(
    _ctx: RequestCtx,
    _route: &'static RouteSpec,
    _input: Input,
) -> Result<Response, WireError> {
    Ok(raw("text/javascript; charset=utf-8", SWAGGER_UI_JS.as_bytes()))
}

/// `GET /v1/docs/swagger-ui.css`: the page's stylesheet.
pub(crate) async fn serve_stylesheet(
    _ctx: RequestCtx,
    _route: &'static RouteSpec,
    _input: Input,
) -> Result<Response, WireError> {
    Ok(raw("text/css; charset=utf-8", SWAGGER_UI_CSS.as_bytes()))
}

/// The page's (and its assets') schema in the document: text.
pub fn text_body(_: &mut Schemas) -> Value {
    json!({"type": "string"})
}
