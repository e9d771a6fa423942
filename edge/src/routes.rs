//! The route table: `/v1` per the spec, plus `/v1/audit/*`, `/healthz` and `/readyz`.
//!
//! Every handler runs inside one [`RequestCtx`] (request id, bearer header, client IP),
//! authenticates and checks the permissions the spec lists for its route, calls one service
//! operation, and answers in the envelope with the spec's status and message. Errors are
//! answered by the handler itself; what no route matches falls through to
//! [`crate::error::handle_rejection`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;
use ttscm_contract::audit::{ListAuditEvents, VerifyAudit};
use ttscm_contract::credential::*;
use ttscm_contract::health::{CompanySyncHealth, CredentialHealth, HealthReply, IdentityHealth, VaultHealth};
use ttscm_contract::permission::names;
use ttscm_contract::{FieldError, Operation, WireError};
use ttscm_runtime::service::CallContext;
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::envelope::{self, Pagination};
use crate::error::{error_response, handle_rejection};
use crate::{EdgeState, body};

/// Header carrying the request id in both directions.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Default records per page.
pub const DEFAULT_RPP: u64 = 30;
/// Largest records per page.
pub const MAX_RPP: u64 = 100;

/// What every handler knows about its request.
pub struct RequestCtx {
    /// The bus context (request id, later the principal).
    pub call: CallContext,
    /// The raw `Authorization` header.
    authorization: Option<String>,
    /// The state shared by handlers.
    state: Arc<EdgeState>,
}

impl RequestCtx {
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

pub(crate) fn ctx(state: Arc<EdgeState>) -> impl Filter<Extract = (RequestCtx,), Error = Rejection> + Clone {
    warp::header::optional::<String>(REQUEST_ID_HEADER)
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::addr::remote())
        .map(
            move |id: Option<String>, authorization: Option<String>, remote: Option<SocketAddr>| {
                let mut call = CallContext::new(None);
                if let Some(id) = id.filter(|id| valid_request_id(id)) {
                    call.request_id = id;
                }
                call.client_ip = remote.map(|r| r.ip().to_string());
                RequestCtx {
                    call,
                    authorization,
                    state: state.clone(),
                }
            },
        )
}

/// A handler's answer, boxed: warp boxes every route's future while it tries the routes in
/// turn, so a handler future stored inline would be allocated and copied for every route tried
/// before the match; boxed, only the route that matched pays for it.
pub(crate) type Answering = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// Runs a handler in a span carrying the request id, and stamps the id on the response.
pub(crate) fn finish<F>(
    ctx: RequestCtx,
    route: &'static str,
    handler: impl FnOnce(RequestCtx) -> F + Send + 'static,
) -> Answering
where
    F: Future<Output = Result<Response, WireError>> + Send + 'static,
{
    Box::pin(async move {
        let request_id = ctx.call.request_id.clone();
        let span = tracing::info_span!("request", route, request_id = %request_id);
        let mut response = handler(ctx)
            .instrument(span)
            .await
            .unwrap_or_else(|error| error_response(&error));
        response.headers_mut().insert(
            REQUEST_ID_HEADER,
            HeaderValue::from_str(&request_id).unwrap_or_else(|_| HeaderValue::from_static("invalid")),
        );
        Ok(response)
    })
}

/// How a route answers on success.
#[derive(Clone, Copy)]
pub(crate) struct Answer {
    route: &'static str,
    required: &'static [&'static str],
    status: StatusCode,
    message: &'static str,
}

pub(crate) const fn answer(
    route: &'static str,
    required: &'static [&'static str],
    status: StatusCode,
    message: &'static str,
) -> Answer {
    Answer {
        route,
        required,
        status,
        message,
    }
}

/// Authorizes, calls `op`, and answers its reply in the envelope.
pub(crate) fn respond_with<O>(ctx: RequestCtx, answer: Answer, op: Result<O, WireError>) -> Answering
where
    O: Operation + Sync,
    O::Reply: Serialize,
{
    finish(ctx, answer.route, move |mut ctx| async move {
        ctx.authorize(answer.required).await?;
        let op = op?;
        // The reply goes out as the service encoded it: no decode and re-encode here.
        let reply = ctx.call_raw(&op).await?;
        Ok(envelope::success(answer.status, answer.message, &reply))
    })
}

pub(crate) fn parse_body<T: DeserializeOwned>(headers: &HeaderMap, bytes: &Bytes) -> Result<T, WireError> {
    body::parse(headers, bytes)
}

/// Every route, with rejections turned into the envelope.
pub fn routes(state: Arc<EdgeState>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let limit = state.body_limit;
    let v1 = warp::path("v1");
    let company_routes = crate::company_routes::routes(state.clone(), limit);
    let (me_route, user_routes) = crate::user_routes::routes(state.clone(), limit);
    let auth_routes = crate::auth_routes::routes(state.clone());
    let c = move || ctx(state.clone());
    let types = v1
        .and(warp::path("credential-type"))
        .and(warp::path("credential-types"));
    let creds = v1.and(warp::path("credential")).and(warp::path("credentials"));

    let teapot = v1
        .and(warp::path!("teapot"))
        .and(warp::get())
        .and(c())
        .and_then(|ctx| {
            finish(ctx, "teapot", |_| async {
                Ok(envelope::error(StatusCode::IM_A_TEAPOT, "I'm a teapot", &[]))
            })
        });

    // ---- credential types ----
    const LIST_TYPES: Answer = answer(
        "credential_type.list",
        &[names::CREDENTIAL_TYPE_FETCH_MANY],
        StatusCode::OK,
        "Credential Types Fetched Successfully!",
    );
    const GET_TYPE: Answer = answer(
        "credential_type.get",
        &[names::CREDENTIAL_TYPE_FETCH],
        StatusCode::OK,
        "Credential Type Fetched Successfully!",
    );
    const CREATE_TYPE: Answer = answer(
        "credential_type.create",
        &[names::CREDENTIAL_TYPE_CREATE],
        StatusCode::CREATED,
        "Credential Type Created Successfully!",
    );
    const UPDATE_TYPE: Answer = answer(
        "credential_type.update",
        &[names::CREDENTIAL_TYPE_UPDATE],
        StatusCode::OK,
        "Credential Type Updated Successfully!",
    );
    const DELETE_TYPE: Answer = answer(
        "credential_type.delete",
        &[names::CREDENTIAL_TYPE_DELETE],
        StatusCode::OK,
        "Credential Type Deleted Successfully!",
    );
    const TYPE_CREDENTIALS: Answer = answer(
        "credential_type.credentials",
        &[names::CREDENTIAL_TYPE_FETCH, names::CREDENTIAL_FETCH_MANY],
        StatusCode::OK,
        "Credentials Fetched Successfully!",
    );

    let list_types = types
        .and(warp::path::end())
        .and(warp::get())
        .and(c())
        .and_then(|ctx| respond_with(ctx, LIST_TYPES, Ok(ListCredentialTypes {})));
    let create_type = types
        .and(warp::path::end())
        .and(warp::post())
        .and(c())
        .and(body::raw(limit))
        .and_then(|ctx, headers: HeaderMap, bytes: Bytes| {
            let op = parse_body(&headers, &bytes).map(|input| CreateCredentialType { input });
            respond_with(ctx, CREATE_TYPE, op)
        });
    let get_type = types
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::get())
        .and(c())
        .and_then(|identifier: String, ctx| {
            respond_with(ctx, GET_TYPE, Ok(GetCredentialType { identifier }))
        });
    let update_type = types
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::patch())
        .and(c())
        .and(body::raw(limit))
        .and_then(|id: String, ctx, headers: HeaderMap, bytes: Bytes| {
            let op = parse_body(&headers, &bytes).map(|patch| UpdateCredentialType { id, patch });
            respond_with(ctx, UPDATE_TYPE, op)
        });
    let delete_type = types
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::delete())
        .and(c())
        .and_then(|id: String, ctx| respond_with(ctx, DELETE_TYPE, Ok(DeleteCredentialType { id })));
    let type_credentials = types
        .and(warp::path::param::<String>())
        .and(warp::path("credentials"))
        .and(warp::path::end())
        .and(warp::get())
        .and(c())
        .and_then(|id: String, ctx| respond_with(ctx, TYPE_CREDENTIALS, Ok(ListCredentialsByType { id })));

    // ---- credentials ----
    const BY_COMPANY: Answer = answer(
        "credential.by_company",
        &[names::CREDENTIAL_FETCH_MANY],
        StatusCode::OK,
        "Company Credentials Fetched Successfully!",
    );
    const GET: Answer = answer(
        "credential.get",
        &[names::CREDENTIAL_FETCH],
        StatusCode::OK,
        "Credential Fetched Successfully!",
    );
    const CREATE: Answer = answer(
        "credential.create",
        &[names::CREDENTIAL_CREATE],
        StatusCode::CREATED,
        "Credential Created Successfully!",
    );
    const UPDATE: Answer = answer(
        "credential.update",
        &[names::CREDENTIAL_UPDATE],
        StatusCode::OK,
        "Credential Updated Successfully!",
    );
    const UPDATE_FIELDS: Answer = answer(
        "credential.fields_update",
        &[names::CREDENTIAL_UPDATE, names::CREDENTIAL_FIELDS_UPDATE],
        StatusCode::OK,
        "Credential Fields Updated Successfully!",
    );
    const GET_FIELDS: Answer = answer(
        "credential.fields_get",
        &[names::CREDENTIAL_FETCH, names::CREDENTIAL_FIELDS_FETCH],
        StatusCode::OK,
        "Credential Fields Fetched Successfully!",
    );
    const REVEAL: Answer = answer(
        "credential.reveal",
        &[names::CREDENTIAL_FETCH, names::CREDENTIAL_SECURE_VALUES_READ],
        StatusCode::OK,
        "Secure Values Fetched Successfully!",
    );
    const DELETE: Answer = answer(
        "credential.delete",
        &[names::CREDENTIAL_DELETE],
        StatusCode::OK,
        "Credential Deleted Successfully!",
    );

    let by_company = creds
        .and(warp::path("company"))
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::get())
        .and(c())
        .and_then(|company_id: String, ctx| {
            respond_with(ctx, BY_COMPANY, Ok(ListCredentialsByCompany { company_id }))
        });
    let create = creds
        .and(warp::path::end())
        .and(warp::post())
        .and(c())
        .and(body::raw(limit))
        .and_then(|ctx, headers: HeaderMap, bytes: Bytes| {
            let op = parse_body(&headers, &bytes).map(|input| CreateCredential { input });
            respond_with(ctx, CREATE, op)
        });
    let get = creds
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::get())
        .and(c())
        .and_then(|id: String, ctx| respond_with(ctx, GET, Ok(GetCredential { id })));
    let update = creds
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::patch())
        .and(c())
        .and(body::raw(limit))
        .and_then(|id: String, ctx, headers: HeaderMap, bytes: Bytes| {
            let op = parse_body(&headers, &bytes).map(|patch| UpdateCredential { id, patch });
            respond_with(ctx, UPDATE, op)
        });
    let update_fields = creds
        .and(warp::path::param::<String>())
        .and(warp::path("fields"))
        .and(warp::path::end())
        .and(warp::put())
        .and(c())
        .and(body::raw(limit))
        .and_then(|id: String, ctx, headers: HeaderMap, bytes: Bytes| {
            let op = parse_body(&headers, &bytes).map(|input| UpdateCredentialFields { id, input });
            respond_with(ctx, UPDATE_FIELDS, op)
        });
    let get_fields = creds
        .and(warp::path::param::<String>())
        .and(warp::path("fields"))
        .and(warp::path::end())
        .and(warp::get())
        .and(c())
        .and_then(|id: String, ctx| respond_with(ctx, GET_FIELDS, Ok(GetCredentialFields { id })));
    let reveal = creds
        .and(warp::path::param::<String>())
        .and(warp::path("secure-values"))
        .and(warp::path::end())
        .and(warp::get())
        .and(c())
        .and_then(|id: String, ctx| respond_with(ctx, REVEAL, Ok(RevealSecureValues { id })))
        // Plaintext secrets: no browser or proxy may keep a copy.
        .map(|mut response: Response| {
            response
                .headers_mut()
                .insert("cache-control", HeaderValue::from_static("no-store"));
            response
        });
    let delete = creds
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::delete())
        .and(c())
        .and_then(|id: String, ctx| respond_with(ctx, DELETE, Ok(DeleteCredential { id })));

    // ---- audit (beyond the spec) ----
    let audit_events = v1
        .and(warp::path!("audit" / "events"))
        .and(warp::get())
        .and(c())
        .and(warp::query::<HashMap<String, String>>())
        .and_then(|ctx, query: HashMap<String, String>| {
            finish(ctx, "audit.events", move |ctx| audit_events(ctx, query))
        });
    const VERIFY: Answer = answer(
        "audit.verify",
        &[names::AUDIT_VERIFY],
        StatusCode::OK,
        "Audit Chain Verified!",
    );
    let audit_verify = v1
        .and(warp::path!("audit" / "verify"))
        .and(warp::get())
        .and(c())
        .and_then(|ctx| respond_with(ctx, VERIFY, Ok(VerifyAudit {})));

    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| envelope::success(StatusCode::OK, "Alive", &serde_json::Value::Null));
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(c())
        .and_then(|ctx| finish(ctx, "readyz", readiness));

    // Routes are grouped by path prefix, so a request skips every group but its own at the
    // cost of one prefix check; most frequent first within the table and within each group.
    let table: Vec<Route> = Vec::from([
        teapot.boxed(),
        group(
            &["/v1/credential/"],
            vec![
                get.boxed(),
                reveal.boxed(),
                get_fields.boxed(),
                by_company.boxed(),
                create.boxed(),
                update_fields.boxed(),
                update.boxed(),
                delete.boxed(),
            ],
        ),
        group(
            &["/v1/credential-type/"],
            vec![
                list_types.boxed(),
                get_type.boxed(),
                type_credentials.boxed(),
                create_type.boxed(),
                update_type.boxed(),
                delete_type.boxed(),
            ],
        ),
        me_route,
        group(&["/v1/company/"], company_routes),
        group(&["/v1/user/", "/v1/role/"], user_routes),
        group(&["/v1/audit/"], vec![audit_events.boxed(), audit_verify.boxed()]),
        group(&["/v1/auth/"], auth_routes),
        healthz.boxed(),
        readyz.boxed(),
    ]);
    any_of(table).recover(handle_rejection).unify()
}

/// `routes`, tried only when the request's path starts with one of `prefixes` (a cheap check
/// that spares a request the boxed futures of every route in the group).
fn group(prefixes: &'static [&'static str], routes: Vec<Route>) -> Route {
    warp::path::full()
        .and_then(move |path: warp::path::FullPath| {
            std::future::ready(if prefixes.iter().any(|p| path.as_str().starts_with(p)) {
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
pub(crate) type Route = warp::filters::BoxedFilter<(Response,)>;

/// The first route that matches.
fn any_of(routes: Vec<Route>) -> Route {
    routes
        .into_iter()
        .reduce(|a, b| a.or(b).unify().boxed())
        .expect("the route table is not empty")
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

async fn audit_events(mut ctx: RequestCtx, query: HashMap<String, String>) -> Result<Response, WireError> {
    ctx.authorize(&[names::AUDIT_FETCH_MANY]).await?;
    let (page, rpp) = page_and_rpp(&query)?;
    let mut errors = Vec::new();
    for key in ["from", "to"] {
        if let Some(value) = query.get(key)
            && ttscm_runtime::clock::parse_iso(value).is_none()
        {
            errors.push(FieldError::new(
                vec![serde_json::json!(key)],
                format!("{key} must be an RFC 3339 time"),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(WireError::validation(errors));
    }
    let op = ListAuditEvents {
        actor: query.get("actor").cloned(),
        target: query.get("target").cloned(),
        action: query.get("action").cloned(),
        from: query
            .get("from")
            .and_then(|v| ttscm_runtime::clock::parse_iso(v))
            .map(ttscm_runtime::clock::format_iso),
        to: query
            .get("to")
            .and_then(|v| ttscm_runtime::clock::parse_iso(v))
            .map(ttscm_runtime::clock::format_iso),
        page,
        rpp,
    };
    let reply = ctx.call(&op).await?;
    let pagination = Pagination::new(page, rpp, reply.total, reply.items.len() as u64);
    Ok(envelope::paginated(
        "Audit Events Fetched Successfully!",
        &reply.items,
        &pagination,
    ))
}

/// Ready when the bus is connected and every service answers with a reachable store.
async fn readiness(ctx: RequestCtx) -> Result<Response, WireError> {
    let client = &ctx.state.client;
    let timeout = Duration::from_secs(1);
    let bus_ok = client.bus().is_connected();
    let (identity, company_sync, credential, vault) = tokio::join!(
        client.call_with_timeout(&ctx.call, &IdentityHealth {}, timeout),
        client.call_with_timeout(&ctx.call, &CompanySyncHealth {}, timeout),
        client.call_with_timeout(&ctx.call, &CredentialHealth {}, timeout),
        client.call_with_timeout(&ctx.call, &VaultHealth {}, timeout),
    );
    let mut report = serde_json::Map::new();
    report.insert(
        "bus".into(),
        serde_json::json!({"kind": client.bus().kind(), "ok": bus_ok}),
    );
    let mut ready = bus_ok;
    for (name, result) in [
        ("identity", identity),
        ("company-sync", company_sync),
        ("credential", credential),
        ("vault", vault),
    ] {
        let entry = match result {
            Ok(HealthReply { store_ok, .. }) => {
                ready &= store_ok != Some(false);
                serde_json::json!({"ok": store_ok != Some(false), "store": store_ok})
            }
            Err(error) => {
                ready = false;
                serde_json::json!({"ok": false, "error": error.message})
            }
        };
        report.insert(name.into(), entry);
    }
    if ready {
        Ok(envelope::success(StatusCode::OK, "Ready", &report))
    } else {
        Ok(envelope::success(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not ready",
            &report,
        ))
    }
}
