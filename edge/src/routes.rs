//! How a declared route becomes a warp filter: [`RouteSpec`] (what [`crate::table`] lists per
//! route), [`RequestCtx`] (request id, bearer header, client IP) and the one place every route
//! is served from ([`routes`]).
//!
//! Every route with a request context runs the same way: in a span carrying the request id, its
//! [`Access`] is checked, its handler runs — most of them [`Forward`] one bus operation and
//! answer the reply in the envelope with the route's status and message — and any error is
//! answered in the error envelope. A path parameter reaches its handler percent-decoded, or
//! the request is answered 400 ([`decode_param`]). What no route matches falls through to
//! [`crate::error::handle_rejection`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use tracing::Instrument;
use ttscm_contract::{ErrorCode, FieldError, Operation, WireError};
use ttscm_runtime::service::CallContext;
use ttscm_runtime::settings::IpNet;
use warp::filters::ws::Ws;
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::error::{error_response, handle_rejection};
use crate::limits::{Allowance, Throttled};
use crate::openapi::{Data, Param, SchemaFn};
use crate::table::route_table;
use crate::{EdgeState, body, envelope};

/// Header carrying the request id in both directions.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Default records per page.
pub const DEFAULT_RPP: u64 = 30;
/// Largest records per page.
pub const MAX_RPP: u64 = 100;

// ---- the declaration ------------------------------------------------------------------------

/// One route of the table: everything a reviewer, a test or an API description needs to know
/// about it, and the handler that serves it.
pub struct RouteSpec {
    /// The HTTP method.
    pub method: Method,
    /// The path pattern: literal segments and at most one `:name` parameter, named as the spec
    /// names it (`/v1/credential/credentials/:id/fields`).
    pub path: &'static str,
    /// The route's name in logs and spans (`credential.reveal`).
    pub name: &'static str,
    /// Who may call it.
    pub access: Access,
    /// What the route reads besides its path.
    pub reads: Reads,
    /// The status of a successful answer.
    pub status: StatusCode,
    /// The envelope's message on success.
    pub message: &'static str,
    /// What serves it.
    pub handler: Handler,
    /// A deadline longer than the bus client's default (the call waits on something slow).
    pub deadline: Option<Duration>,
    /// Every answer carries `cache-control: no-store` (plaintext secrets).
    pub no_store: bool,
    /// Listed in the API spec (`shared/spec/api-routes.md`); the others are TTSCM's own.
    pub in_spec: bool,
    /// The schema of its JSON body, for the API description (`None`: it reads none).
    pub body: Option<SchemaFn>,
    /// What its `data` is on success, for the API description (`None`: not declared, which
    /// `edge/tests/openapi.rs` refuses for a route that answers JSON).
    pub data: Option<Data>,
    /// The query parameters and headers it reads, for the API description.
    pub params: &'static [Param],
}

/// An HTTP method a route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    /// The method as HTTP spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// Who may call a route; checked before the handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: the route checks nothing about the caller (starting a sign-in, health).
    Public,
    /// Whoever presents a refresh token in `x-refresh-token`; the operation checks it.
    RefreshToken,
    /// Any authenticated caller (API token or access token).
    SignedIn,
    /// An authenticated caller holding every one of these permissions.
    Permissions(&'static [&'static str]),
    /// A user's access token carrying every one of these scopes.
    Scopes(&'static [&'static str]),
}

/// What a route reads besides its path (extracted in this order, after the request context).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// Nothing else.
    Nothing,
    /// A JSON body (content length limited).
    Body,
    /// The query string, as a map.
    Query,
    /// One optional header.
    Header(&'static str),
    /// The query string, then one optional header.
    QueryAndHeader(&'static str),
    /// The query string, then several optional headers (in [`Input::headers`], in this order).
    QueryAndHeaders(&'static [&'static str]),
}

/// What serves a route.
#[derive(Clone, Copy)]
pub enum Handler {
    /// Runs with a request context: the access check, then this answer.
    Answer(&'static dyn Answer),
    /// Upgrades to a WebSocket, reading the query, the client address and the `Origin`. No
    /// request context: the socket outlives the request and answers on its own.
    WebSocket(fn(Arc<EdgeState>, SocketRequest, Ws) -> Response),
    /// Answers the route's status and message with `data: null`, without a request context or
    /// request id (liveness: nothing to fail).
    Fixed,
}

/// What a WebSocket route reads from its upgrade request.
#[derive(Debug)]
pub struct SocketRequest {
    /// The query string, as a map.
    pub query: HashMap<String, String>,
    /// The client's address ([`client_ip`]).
    pub client: Option<IpAddr>,
    /// The `Origin` header (a browser's page origin), if sent.
    pub origin: Option<String>,
}

/// A handler that runs with a request context, after the route's access check.
pub trait Answer: Sync {
    /// The bus subject of the one operation it forwards, if that is all it does.
    fn subject(&self) -> Option<&'static str>;
    /// Answers one request.
    fn answer(&self, ctx: RequestCtx, route: &'static RouteSpec, input: Input) -> Answering;
}

/// Forwards the operation `O`, built from the request by the function it holds, and answers
/// the reply as the service encoded it (no decode and re-encode here), in the envelope with the
/// route's status and message.
pub struct Forward<O>(pub fn(&mut Input) -> Result<O, WireError>);

impl<O> Answer for Forward<O>
where
    O: Operation + Sync,
{
    fn subject(&self) -> Option<&'static str> {
        Some(O::SUBJECT)
    }

    fn answer(&self, ctx: RequestCtx, route: &'static RouteSpec, mut input: Input) -> Answering {
        let build = self.0;
        finish(ctx, route, move |ctx| async move {
            let op = build(&mut input)?;
            Ok(match route.deadline {
                None => envelope::success(route.status, route.message, &ctx.call_raw(&op).await?),
                // The bus client has no raw call with its own deadline; these replies are small.
                Some(deadline) => {
                    let reply = ctx
                        .state
                        .client
                        .call_with_timeout(&ctx.call, &op, deadline)
                        .await?;
                    envelope::success(route.status, route.message, &reply)
                }
            })
        })
    }
}

/// A handler of its own: an `async fn(RequestCtx, &'static RouteSpec, Input)` answering a
/// response or an error.
pub struct Custom<F>(pub F);

impl<F, Fut> Answer for Custom<F>
where
    F: Fn(RequestCtx, &'static RouteSpec, Input) -> Fut + Copy + Send + Sync + 'static,
    Fut: Future<Output = Result<Response, WireError>> + Send + 'static,
{
    fn subject(&self) -> Option<&'static str> {
        None
    }

    fn answer(&self, ctx: RequestCtx, route: &'static RouteSpec, input: Input) -> Answering {
        let handler = self.0;
        finish(ctx, route, move |ctx| handler(ctx, route, input))
    }
}

/// What a route read from its request besides the context (see [`Reads`]).
#[derive(Default)]
pub struct Input {
    /// The path parameters not taken yet, percent-decoded ([`decode_param`]), in the pattern's
    /// order.
    params: std::collections::VecDeque<String>,
    /// The query string (empty unless the route reads it).
    pub query: HashMap<String, String>,
    /// The header the route reads, if sent.
    pub header: Option<String>,
    /// The headers a [`Reads::QueryAndHeaders`] route reads, in its order (`None`: not sent).
    pub headers: Vec<Option<String>>,
    /// The body's headers and bytes, if the route reads a body.
    body: Option<(HeaderMap, Bytes)>,
}

impl Input {
    /// The next path parameter in the pattern's order (taken; empty when there is none left,
    /// which the table's test rules out).
    pub fn param(&mut self) -> String {
        self.params.pop_front().unwrap_or_default()
    }

    /// A header of a route that reads a body (its headers come with it), if sent and text.
    pub fn body_header(&self, name: &str) -> Option<&str> {
        self.body
            .as_ref()
            .and_then(|(headers, _)| headers.get(name))
            .and_then(|v| v.to_str().ok())
    }

    /// The JSON body as `T` (400 with the problem's path when it does not parse).
    pub fn body<T: DeserializeOwned>(&self) -> Result<T, WireError> {
        match &self.body {
            Some((headers, bytes)) => body::parse(headers, bytes),
            None => {
                tracing::error!("a route parses a body it does not read");
                Err(WireError::internal())
            }
        }
    }
}

// ---- a declaration, written as the table writes it ------------------------------------------

/// A route being declared: `route(method, path, name)`, then `allow(access)`, `answers(status,
/// message)` and whatever else applies, closed by `by(handler)`. The table is a static, so a
/// route missing its access or answer fails to compile.
pub struct Draft {
    method: Method,
    path: &'static str,
    name: &'static str,
    access: Option<Access>,
    reads: Reads,
    answer: Option<(StatusCode, &'static str)>,
    deadline: Option<Duration>,
    no_store: bool,
    in_spec: bool,
    body: Option<SchemaFn>,
    data: Option<Data>,
    params: &'static [Param],
}

/// Starts declaring a route.
pub const fn route(method: Method, path: &'static str, name: &'static str) -> Draft {
    Draft {
        method,
        path,
        name,
        access: None,
        reads: Reads::Nothing,
        answer: None,
        deadline: None,
        no_store: false,
        in_spec: true,
        body: None,
        data: None,
        params: &[],
    }
}

impl Draft {
    /// Who may call it.
    pub const fn allow(mut self, access: Access) -> Self {
        self.access = Some(access);
        self
    }

    /// The status and message of a successful answer.
    pub const fn answers(mut self, status: StatusCode, message: &'static str) -> Self {
        self.answer = Some((status, message));
        self
    }

    /// What it reads besides the path.
    pub const fn reads(mut self, reads: Reads) -> Self {
        self.reads = reads;
        self
    }

    /// Waits up to `deadline` for its operation.
    pub const fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Marks every answer `cache-control: no-store`.
    pub const fn no_store(mut self) -> Self {
        self.no_store = true;
        self
    }

    /// Not in the API spec.
    pub const fn beyond_spec(mut self) -> Self {
        self.in_spec = false;
        self
    }

    /// Its JSON body is a `T` (`.takes(schema::<T>)`), for the API description.
    pub const fn takes(mut self, body: SchemaFn) -> Self {
        self.body = Some(body);
        self
    }

    /// What its `data` is on success (`.gives(Data::One(schema::<T>))`), for the API
    /// description.
    pub const fn gives(mut self, data: Data) -> Self {
        self.data = Some(data);
        self
    }

    /// The query parameters and headers it reads (`.params(&[params::PAGE, params::RPP])`), for
    /// the API description.
    pub const fn params(mut self, params: &'static [Param]) -> Self {
        self.params = params;
        self
    }

    /// Served by `answer`, with a request context.
    pub const fn by(self, answer: &'static dyn Answer) -> RouteSpec {
        self.with(Handler::Answer(answer))
    }

    /// Served by `handler`.
    pub const fn with(self, handler: Handler) -> RouteSpec {
        let Some(access) = self.access else {
            panic!("a route must say who may call it (allow)")
        };
        let Some((status, message)) = self.answer else {
            panic!("a route must say how it answers (answers)")
        };
        RouteSpec {
            method: self.method,
            path: self.path,
            name: self.name,
            access,
            reads: self.reads,
            status,
            message,
            handler,
            deadline: self.deadline,
            no_store: self.no_store,
            in_spec: self.in_spec,
            body: self.body,
            data: self.data,
            params: self.params,
        }
    }
}

impl RouteSpec {
    /// The allowance a request spends by its client address before the access check: the
    /// anonymous sign-in routes (`/v1/auth/…`) the sign-in allowance, a refresh — a credential
    /// whose owner is not known yet — the API's. Authenticated routes spend their caller's API
    /// allowance after the access check instead; the rest (probes, the teapot) spend nothing.
    pub fn address_allowance(&self) -> Option<Allowance> {
        if !self.path.starts_with("/v1/auth/") {
            return None;
        }
        match self.access {
            Access::Public => Some(Allowance::SignIn),
            Access::RefreshToken => Some(Allowance::Api),
            Access::SignedIn | Access::Permissions(_) | Access::Scopes(_) => None,
        }
    }
}

// ---- the request context ----------------------------------------------------------------------

/// What every handler knows about its request.
pub struct RequestCtx {
    /// The bus context (request id, later the principal).
    pub call: CallContext,
    /// The raw `Authorization` header.
    pub(crate) authorization: Option<String>,
    /// The client's address ([`client_ip`]), which rate limits count by.
    pub(crate) client: Option<IpAddr>,
    /// The state shared by handlers.
    pub(crate) state: Arc<EdgeState>,
}

impl RequestCtx {
    /// Checks `access` (authenticating the caller where it asks for one).
    pub async fn check(&mut self, access: Access) -> Result<(), WireError> {
        match access {
            Access::Public | Access::RefreshToken => Ok(()),
            Access::SignedIn => self.authorize(&[]).await,
            Access::Permissions(required) => self.authorize(required).await,
            Access::Scopes(scopes) => self.authorize_scopes(scopes).await,
        }
    }

    /// Authenticates the caller and checks that it holds every permission in `required`.
    pub async fn authorize(&mut self, required: &[&str]) -> Result<(), WireError> {
        let principal = self
            .state
            .auth
            .authenticate(&self.call, self.authorization.as_deref())
            .await?;
        if !principal.principal.permissions.grants_all(required) {
            return Err(WireError::forbidden());
        }
        self.call.principal = Some(principal.principal.clone());
        self.call.principal_header = Some(principal.header.clone());
        Ok(())
    }

    /// Authenticates the caller and checks that its token carries every scope in `scopes`.
    pub async fn authorize_scopes(&mut self, scopes: &[&str]) -> Result<(), WireError> {
        self.authorize(&[]).await?;
        let principal = self.call.principal()?;
        if scopes
            .iter()
            .all(|s| principal.scopes.iter().any(|have| have == s))
        {
            Ok(())
        } else {
            Err(WireError::new(ErrorCode::Forbidden, "Insufficient scope"))
        }
    }

    /// Calls a service with this request's context.
    pub async fn call<O: Operation>(&self, op: &O) -> Result<O::Reply, WireError> {
        self.state.client.call(&self.call, op).await
    }

    /// Calls a service and answers its reply undecoded, to be passed on as it is.
    pub async fn call_raw<O: Operation>(
        &self,
        op: &O,
    ) -> Result<Box<serde_json::value::RawValue>, WireError> {
        self.state.client.call_raw(&self.call, op).await
    }
}

fn valid_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The client's address: the peer, unless the peer is a trusted proxy; then the right-most
/// `X-Forwarded-For` address (across all such headers) that is not a trusted proxy — proxies
/// append the address they received from, so everything left of the first untrusted hop is
/// whatever the client claimed. An unreadable entry ends the walk at the hop to its right; if
/// every entry is trusted, the left-most one is the client.
pub fn client_ip(peer: IpAddr, headers: &warp::http::HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = peer.to_canonical();
    if !is_trusted(peer) {
        return peer;
    }
    let values: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let mut client = peer;
    for entry in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        let Some(ip) = forwarded_address(entry.trim()) else {
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

/// An `X-Forwarded-For` entry's address: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or
/// `[2001:db8::1]:5678`.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))?;
    Some(ip.to_canonical())
}

/// The client's address ([`client_ip`]). The request's headers are copied (to read
/// `X-Forwarded-For`) only when some proxy is trusted: otherwise the peer is the client.
fn client_address(state: &EdgeState) -> warp::filters::BoxedFilter<(Option<IpAddr>,)> {
    if state.trusted_proxies.is_empty() {
        return warp::addr::remote()
            .map(|remote: Option<SocketAddr>| remote.map(|r| r.ip().to_canonical()))
            .boxed();
    }
    let trusted: Arc<[IpNet]> = state.trusted_proxies.clone().into();
    warp::addr::remote()
        .and(warp::header::headers_cloned())
        .map(move |remote: Option<SocketAddr>, headers: HeaderMap| {
            remote.map(|r| client_ip(r.ip(), &headers, &trusted))
        })
        .boxed()
}

fn ctx(state: Arc<EdgeState>) -> impl Filter<Extract = (RequestCtx,), Error = Rejection> + Clone {
    warp::header::optional::<String>(REQUEST_ID_HEADER)
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::header::optional::<String>("idempotency-key"))
        .and(client_address(&state))
        .map(
            move |id: Option<String>,
                  authorization: Option<String>,
                  idempotency_key: Option<String>,
                  client: Option<IpAddr>| {
                let mut call = CallContext::new(None);
                if let Some(id) = id.filter(|id| valid_request_id(id)) {
                    call.request_id = id;
                }
                call.client_ip = client.map(|ip| ip.to_string());
                // Creates run once per key and caller (`ttscm_runtime::idempotency`).
                call.idempotency_key = idempotency_key;
                RequestCtx {
                    call,
                    authorization,
                    client,
                    state: state.clone(),
                }
            },
        )
}

/// Why a request was answered before (or instead of) its handler's answer.
enum Refused {
    /// An error in the envelope.
    Error(WireError),
    /// Over its allowance: 429 with `Retry-After`.
    Throttled(Throttled),
}

impl From<WireError> for Refused {
    fn from(error: WireError) -> Self {
        Self::Error(error)
    }
}

impl From<Throttled> for Refused {
    fn from(throttled: Throttled) -> Self {
        Self::Throttled(throttled)
    }
}

/// A handler's answer, boxed: warp boxes every route's future while it tries the routes in
/// turn, so a handler future stored inline would be allocated and copied for every route tried
/// before the match; boxed, only the route that matched pays for it.
pub type Answering = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// Runs a handler in a span carrying the request id, after the route's rate limits and access
/// check, and stamps the id (and `no-store` where the route asks for it) on the response.
fn finish<F>(
    ctx: RequestCtx,
    route: &'static RouteSpec,
    handler: impl FnOnce(RequestCtx) -> F + Send + 'static,
) -> Answering
where
    F: Future<Output = Result<Response, WireError>> + Send + 'static,
{
    Box::pin(async move {
        let request_id = ctx.call.request_id.clone();
        let span = tracing::info_span!("request", route = route.name, request_id = %request_id);
        let answered = async move {
            let mut ctx = ctx;
            if let Some(allowance) = route.address_allowance() {
                ctx.state.limits.by_address(allowance, ctx.client)?;
            }
            ctx.check(route.access).await?;
            if let Some(principal) = &ctx.call.principal {
                ctx.state.limits.by_caller(&principal.id)?;
            }
            Ok::<_, Refused>(handler(ctx).await?)
        };
        let mut response = answered
            .instrument(span)
            .await
            .unwrap_or_else(|refused| match refused {
                Refused::Error(error) => error_response(&error),
                Refused::Throttled(throttled) => {
                    tracing::debug!(route = route.name, "throttled");
                    throttled.response()
                }
            });
        let headers = response.headers_mut();
        headers.insert(
            REQUEST_ID_HEADER,
            HeaderValue::from_str(&request_id).unwrap_or_else(|_| HeaderValue::from_static("invalid")),
        );
        if route.no_store {
            headers.insert("cache-control", HeaderValue::from_static("no-store"));
        }
        Ok(stamped(route, response))
    })
}

// ---- request metrics ----------------------------------------------------------------------------

/// The route a response answered, stamped on it for the request metrics ([`measured`] reads
/// it); a response without one matched no route (a 404, a 405, a body refused before its
/// route ran).
#[derive(Debug, Clone, Copy)]
struct Matched {
    method: &'static str,
    path: &'static str,
}

/// `response` stamped with `route` (see [`Matched`]).
fn stamped(route: &'static RouteSpec, mut response: Response) -> Response {
    response.extensions_mut().insert(Matched {
        method: route.method.as_str(),
        path: route.path,
    });
    response
}

/// `routes` with every answer counted and timed by method, route pattern and status
/// (`ttscm_runtime::metrics::http_request`): the route's pattern, never the concrete path, so
/// no id reaches a label; requests no route matched count under `unmatched`.
fn measured(
    routes: impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    warp::any()
        .map(std::time::Instant::now)
        .and(warp::method())
        .and(warp::path::full())
        .and(routes)
        .map(
            |started: std::time::Instant,
             method: warp::http::Method,
             path: warp::path::FullPath,
             mut response: Response| {
                if response.status() == StatusCode::METHOD_NOT_ALLOWED {
                    allow_header(path.as_str(), &mut response);
                }
                let (method, route) = match response.extensions().get::<Matched>() {
                    Some(matched) => (matched.method, matched.path),
                    None => (known_method(&method), "unmatched"),
                };
                ttscm_runtime::metrics::http_request(
                    method,
                    route,
                    response.status().as_u16(),
                    started.elapsed(),
                );
                response
            },
        )
}

/// Adds `Allow` to a 405 for `path`: the methods the table serves it with (RFC 9110 requires
/// the header on a 405).
fn allow_header(path: &str, response: &mut Response) {
    let mut methods: Vec<&str> = route_table()
        .iter()
        .filter(|route| match_path(route.path, path).is_some())
        .map(|route| route.method.as_str())
        .collect();
    methods.sort_unstable();
    methods.dedup();
    if let Ok(value) = HeaderValue::from_str(&methods.join(", ")) {
        response.headers_mut().insert(warp::http::header::ALLOW, value);
    }
}

/// A request's method as a bounded label: the standard ones by name, any other `OTHER`.
fn known_method(method: &warp::http::Method) -> &'static str {
    use warp::http::Method as M;
    match *method {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

// ---- the table as filters ---------------------------------------------------------------------

/// Every route of [`route_table`], with rejections turned into the envelope.
///
/// Routes are tried in the table's order. Consecutive routes under the same `/v1/<area>/` form
/// a group, tried only when the request's path starts with that prefix: a request skips every
/// group but its own at the cost of one prefix check.
pub fn routes(state: Arc<EdgeState>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let limit = state.body_limit;
    let table: Vec<Route> = route_table()
        .chunk_by(|a, b| group_prefix(a.path).is_some() && group_prefix(a.path) == group_prefix(b.path))
        .map(|routes| {
            let filters = routes.iter().map(|r| route_filter(r, &state, limit)).collect();
            match (routes, group_prefix(routes[0].path)) {
                ([_, _, ..], Some(prefix)) => group(prefix, filters),
                _ => any_of(filters),
            }
        })
        .collect();
    // Cross-origin callers (a web app on an allow-listed origin: the opener sign-in, then the
    // API with its tokens) get CORS answers; a browser page on any other origin is refused (a
    // request without `Origin` — every non-browser client — is not CORS at all).
    let cors = warp::cors()
        .allow_origins(state.limits.origins().iter().map(String::as_str))
        .allow_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allow_headers([
            "authorization",
            "content-type",
            "accept",
            "idempotency-key",
            "if-match",
            "x-refresh-token",
            REQUEST_ID_HEADER,
        ])
        .expose_headers([
            REQUEST_ID_HEADER,
            "retry-after",
            "etag",
            crate::misc_routes::AUDIT_PENDING_HEADER,
        ])
        .max_age(600);
    measured(
        any_of(table)
            .with(cors)
            .map(warp::Reply::into_response)
            .recover(handle_rejection)
            .unify(),
    )
}

/// `/v1/<area>/` of a path with more segments below it.
fn group_prefix(path: &'static str) -> Option<&'static str> {
    let mut slashes = path.match_indices('/').map(|(i, _)| i);
    let third = slashes.nth(2)?;
    (third + 1 < path.len()).then(|| &path[..=third])
}

/// `routes`, tried only when the request's path starts with `prefix` (a cheap check that spares
/// a request the boxed futures of every route in the group).
fn group(prefix: &'static str, routes: Vec<Route>) -> Route {
    warp::path::full()
        .and_then(move |path: warp::path::FullPath| {
            std::future::ready(if path.as_str().starts_with(prefix) {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            })
        })
        .untuple_one()
        .and(any_of(routes))
        .boxed()
}

/// One route, type-erased. Boxing each route keeps warp's filter types shallow: an or-chain of
/// twenty concrete filters takes rustc many minutes to type-check.
type Route = warp::filters::BoxedFilter<(Response,)>;

/// The first route that matches.
fn any_of(routes: Vec<Route>) -> Route {
    routes
        .into_iter()
        .reduce(|a, b| a.or(b).unify().boxed())
        .expect("the route table is not empty")
}

/// One route as a filter: its path, its method, then what its handler needs — the same filters
/// in the same order as a hand-written warp chain, so the same rejections.
fn route_filter(route: &'static RouteSpec, state: &Arc<EdgeState>, limit: u64) -> Route {
    match route.method {
        Method::Get => with_method(route, warp::get(), state, limit),
        Method::Post => with_method(route, warp::post(), state, limit),
        Method::Put => with_method(route, warp::put(), state, limit),
        Method::Patch => with_method(route, warp::patch(), state, limit),
        Method::Delete => with_method(route, warp::delete(), state, limit),
    }
}

fn with_method<M>(route: &'static RouteSpec, method: M, state: &Arc<EdgeState>, limit: u64) -> Route
where
    M: Filter<Extract = (), Error = Rejection> + Copy + Send + Sync + 'static,
{
    let matched = path_pattern(route.path).and(method);
    match route.handler {
        Handler::Fixed => matched
            .map(move |_| {
                stamped(
                    route,
                    envelope::success(route.status, route.message, &serde_json::Value::Null),
                )
            })
            .boxed(),
        Handler::WebSocket(upgrade) => {
            let client = client_address(state);
            let state = state.clone();
            matched
                .and(warp::query::<HashMap<String, String>>())
                .and(crate::error::websocket_upgrade())
                .and(client)
                .and(warp::header::optional::<String>("origin"))
                .and(warp::ws())
                .map(move |_, query, client, origin, ws| {
                    let response = upgrade(
                        state.clone(),
                        SocketRequest {
                            query,
                            client,
                            origin,
                        },
                        ws,
                    );
                    stamped(route, response)
                })
                .boxed()
        }
        Handler::Answer(answer) => {
            let with_ctx = matched.and(ctx(state.clone()));
            match route.reads {
                Reads::Nothing => with_ctx
                    .and_then(move |param, ctx| answer_decoded(answer, ctx, route, param, Input::default()))
                    .boxed(),
                reads => with_ctx
                    .and(extras(reads, limit))
                    .and_then(move |param, ctx, input: Input| {
                        answer_decoded(answer, ctx, route, param, input)
                    })
                    .boxed(),
            }
        }
    }
}

/// Runs `answer` with the route's path parameters percent-decoded ([`decode_param`]); a
/// parameter that does not decode is answered 400 after the route's access check, like any other
/// bad input (so a caller without access learns nothing from it).
fn answer_decoded(
    answer: &'static dyn Answer,
    ctx: RequestCtx,
    route: &'static RouteSpec,
    raw: Vec<String>,
    input: Input,
) -> Answering {
    let decoded: Result<std::collections::VecDeque<String>, WireError> = param_names(route.path)
        .zip(&raw)
        .map(|(name, raw)| decode_param(name, raw))
        .collect();
    match decoded {
        Ok(params) => answer.answer(ctx, route, Input { params, ..input }),
        Err(error) => finish(ctx, route, move |_| std::future::ready(Err(error))),
    }
}

/// What a route reads besides path and context, as one filter (boxed: only the matched route
/// runs it).
fn extras(reads: Reads, limit: u64) -> warp::filters::BoxedFilter<(Input,)> {
    let query = || warp::query::<HashMap<String, String>>();
    let header = |name: &'static str| warp::header::optional::<String>(name);
    match reads {
        Reads::Nothing => warp::any().map(Input::default).boxed(),
        Reads::Body => body::raw(limit)
            .map(|headers, bytes| Input {
                body: Some((headers, bytes)),
                ..Input::default()
            })
            .boxed(),
        Reads::Query => query()
            .map(|query| Input {
                query,
                ..Input::default()
            })
            .boxed(),
        Reads::Header(name) => header(name)
            .map(|header| Input {
                header,
                ..Input::default()
            })
            .boxed(),
        Reads::QueryAndHeader(name) => query()
            .and(header(name))
            .map(|query, header| Input {
                query,
                header,
                ..Input::default()
            })
            .boxed(),
        Reads::QueryAndHeaders(names) => query()
            .and(warp::header::headers_cloned())
            .map(move |query, all: HeaderMap| Input {
                query,
                headers: names
                    .iter()
                    .map(|name| all.get(*name).and_then(|v| v.to_str().ok()).map(str::to_owned))
                    .collect(),
                ..Input::default()
            })
            .boxed(),
    }
}

/// Matches the whole request path against `pattern` exactly as warp's `path("a")`,
/// `path::param::<String>()` and `path::end()` would, segment by segment (a trailing slash is
/// accepted, an empty parameter is not), and extracts the parameter.
fn path_pattern(pattern: &'static str) -> impl Filter<Extract = (Vec<String>,), Error = Rejection> + Copy {
    warp::path::full().and_then(move |path: warp::path::FullPath| {
        std::future::ready(match_path(pattern, path.as_str()).ok_or_else(warp::reject::not_found))
    })
}

/// `Some(parameters)` when `path` matches `pattern` (see [`path_pattern`]); the parameters in
/// the pattern's order, as sent, still percent-encoded (decoded by [`decode_param`] once the
/// route's method matched).
pub fn match_path(pattern: &str, path: &str) -> Option<Vec<String>> {
    let mut rest = path.strip_prefix('/').unwrap_or(path);
    let mut params = Vec::new();
    for want in pattern.trim_start_matches('/').split('/') {
        let (segment, after) = rest.split_once('/').unwrap_or((rest, ""));
        if want.starts_with(':') {
            if segment.is_empty() {
                return None;
            }
            params.push(segment.to_owned());
        } else if segment != want {
            return None;
        }
        rest = after;
    }
    rest.is_empty().then_some(params)
}

/// The names of `pattern`'s parameters, in order (`id` for `/v1/role/roles/:id`).
fn param_names(pattern: &str) -> impl Iterator<Item = &str> {
    pattern.split('/').filter_map(|segment| segment.strip_prefix(':'))
}

/// The parameters that may be a name (the credential type's `:identifier` is its id or its
/// name, and names may hold a `/`); every other parameter is an id, where a `/` makes no sense.
pub(crate) const NAME_PARAMS: &[&str] = &["identifier"];

/// A path parameter as the caller meant it: percent-decoded (RFC 3986 — `%` and two hex
/// digits; a `+` stays a plus), valid UTF-8, without control characters, and without `/` unless
/// it may be a name ([`NAME_PARAMS`]). Anything else is a 400 naming the parameter: never a
/// lookup that cannot succeed.
pub fn decode_param(name: &str, raw: &str) -> Result<String, WireError> {
    let refuse = |problem: &str| {
        let mut error = WireError::validation(vec![FieldError::new(
            vec![serde_json::json!(name)],
            format!("the path parameter {name} {problem}"),
        )]);
        error.message = "Invalid path parameter".into();
        error
    };
    let bytes = raw.as_bytes();
    // `percent_decode_str` leaves a malformed escape as it is; here it is refused instead.
    let malformed = bytes.iter().enumerate().any(|(i, &b)| {
        b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if malformed {
        return Err(refuse("has a % not followed by two hexadecimal digits"));
    }
    // Without escapes there is nothing to decode (a raw segment holds no `/`), but the URI
    // parser lets a few control characters through (DEL), so they are checked all the same.
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| refuse("is not UTF-8 once percent-decoded"))?;
    if decoded.chars().any(char::is_control) {
        return Err(refuse("must not contain control characters"));
    }
    if decoded.contains('/') && !NAME_PARAMS.contains(&name) {
        return Err(refuse("must not contain /"));
    }
    Ok(decoded.into_owned())
}

// ---- helpers of several handlers ---------------------------------------------------------------

/// `page`, `rpp` (see [`page_and_rpp`]) and `search` of a list's query.
pub(crate) fn page_rpp_search(
    mut query: HashMap<String, String>,
) -> Result<(u64, u64, Option<String>), WireError> {
    let (page, rpp) = page_and_rpp(&query)?;
    Ok((page, rpp, query.remove("search")))
}

/// Page `page` of a list of `total` records, `rpp` a page, in the envelope with the route's
/// message.
pub(crate) fn page_of<T: serde::Serialize>(
    route: &RouteSpec,
    (page, rpp): (u64, u64),
    total: u64,
    items: &[T],
) -> Response {
    let pagination = envelope::Pagination::new(page, rpp, total, items.len() as u64);
    envelope::paginated(route.message, &items, &pagination)
}

/// `page` and `rpp` from a query: defaults 1 and [`DEFAULT_RPP`], `rpp` at most [`MAX_RPP`].
pub fn page_and_rpp(query: &HashMap<String, String>) -> Result<(u64, u64), WireError> {
    let mut errors = Vec::new();
    let mut number = |key: &str, default: u64, max: u64| match query.get(key) {
        None => default,
        Some(raw) => match raw.trim().parse::<u64>() {
            Ok(n) if n >= 1 && n <= max => n,
            _ => {
                errors.push(FieldError::new(
                    vec![serde_json::json!(key)],
                    format!("{key} must be a whole number from 1 to {max}"),
                ));
                default
            }
        },
    };
    let page = number("page", 1, 1_000_000);
    let rpp = number("rpp", DEFAULT_RPP, MAX_RPP);
    if errors.is_empty() {
        Ok((page, rpp))
    } else {
        Err(WireError::validation(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::{decode_param, match_path};

    #[test]
    fn paths_match_as_warp_segments_do() {
        let p = "/v1/credential/credentials/:id";
        assert_eq!(
            match_path(p, "/v1/credential/credentials/abc"),
            Some(vec!["abc".to_owned()])
        );
        assert_eq!(
            match_path(p, "/v1/credential/credentials/abc/"),
            Some(vec!["abc".to_owned()])
        );
        assert_eq!(match_path(p, "/v1/credential/credentials/abc//"), None);
        assert_eq!(match_path(p, "/v1/credential/credentials/"), None);
        assert_eq!(match_path(p, "/v1/credential/credentials//"), None);
        assert_eq!(match_path(p, "/v1/credential/credentials/abc/fields"), None);
        assert_eq!(match_path("/v1/teapot", "/v1/teapot"), Some(vec![]));
        assert_eq!(match_path("/v1/teapot", "/v1/teapot/"), Some(vec![]));
        assert_eq!(match_path("/v1/teapot", "/v1/teapotx"), None);
        assert_eq!(match_path("/v1/teapot", "/v1//teapot"), None);
        assert_eq!(match_path("/healthz", "/healthz"), Some(vec![]));
        assert_eq!(
            match_path("/v1/x/:id/totp/:fieldId", "/v1/x/a/totp/b"),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(match_path("/v1/x/:id/totp/:fieldId", "/v1/x/a/totp/"), None);
    }

    #[test]
    fn path_parameters_are_percent_decoded_or_refused() {
        assert_eq!(decode_param("id", "abc").unwrap(), "abc");
        assert_eq!(decode_param("identifier", "My%20Type").unwrap(), "My Type");
        assert_eq!(decode_param("identifier", "a+b").unwrap(), "a+b");
        assert_eq!(
            decode_param("identifier", "Zug%C3%A4nge%20B%C3%BCro").unwrap(),
            "Zugänge Büro"
        );
        assert_eq!(decode_param("identifier", "AC%2FDC").unwrap(), "AC/DC");
        assert_eq!(decode_param("id", "%7e").unwrap(), "~");
        for (name, raw) in [
            ("id", "%ZZ"),
            ("id", "abc%"),
            ("id", "abc%4"),
            ("identifier", "%C3%28"),
            ("identifier", "%FF"),
            ("identifier", "a%00b"),
            ("identifier", "a%0Ab"),
            ("id", "a%2Fb"),
        ] {
            let error = decode_param(name, raw).expect_err(raw);
            assert_eq!(error.code, ttscm_contract::ErrorCode::Validation, "{raw}");
            assert_eq!(error.message, "Invalid path parameter");
            assert_eq!(error.errors[0].path, vec![serde_json::json!(name)]);
        }
    }
}
