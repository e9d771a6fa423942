//! The route table: `/v1` per the spec, plus `/healthz` and `/readyz`.
//!
//! Every handler runs inside one [`RequestCtx`] (request id, bearer header, client IP), answers
//! its own errors in the envelope, and echoes the request id in `x-request-id`. What no route
//! matches falls through to [`crate::error::handle_rejection`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;
use ttscm_contract::credential::ListCredentialTypes;
use ttscm_contract::health::{CompanySyncHealth, CredentialHealth, HealthReply, IdentityHealth, VaultHealth};
use ttscm_contract::permission::names;
use ttscm_contract::{Operation, WireError};
use ttscm_runtime::service::CallContext;
use warp::Filter;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

use crate::EdgeState;
use crate::envelope;
use crate::error::{error_response, handle_rejection};

/// Header carrying the request id in both directions.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

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
        if !principal.permissions.grants_all(required) {
            return Err(WireError::forbidden());
        }
        self.call.principal = Some((*principal).clone());
        Ok(())
    }

    /// Calls a service with this request's context.
    pub async fn call<O: Operation>(&self, op: &O) -> Result<O::Reply, WireError> {
        self.state.client.call(&self.call, op).await
    }
}

fn valid_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

fn ctx(state: Arc<EdgeState>) -> impl Filter<Extract = (RequestCtx,), Error = warp::Rejection> + Clone {
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

/// Runs a handler in a span carrying the request id, and stamps the id on the response.
async fn finish<F>(
    ctx: RequestCtx,
    route: &'static str,
    handler: impl FnOnce(RequestCtx) -> F,
) -> Result<Response, Infallible>
where
    F: std::future::Future<Output = Result<Response, WireError>>,
{
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
}

/// Every route, with rejections turned into the envelope.
pub fn routes(state: Arc<EdgeState>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let v1 = warp::path("v1");

    let teapot = v1
        .and(warp::path!("teapot"))
        .and(warp::get())
        .and(ctx(state.clone()))
        .and_then(|ctx| {
            finish(ctx, "teapot", |_| async {
                Ok(envelope::error(StatusCode::IM_A_TEAPOT, "I'm a teapot", &[]))
            })
        });

    let list_credential_types = v1
        .and(warp::path!("credential-type" / "credential-types"))
        .and(warp::get())
        .and(ctx(state.clone()))
        .and_then(|ctx| {
            finish(ctx, "credential_type.list", |mut ctx| async move {
                ctx.authorize(&[names::CREDENTIAL_TYPE_FETCH_MANY]).await?;
                let types = ctx.call(&ListCredentialTypes {}).await?;
                Ok(envelope::success(
                    StatusCode::OK,
                    "Credential Types Fetched Successfully!",
                    &types,
                ))
            })
        });

    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| envelope::success(StatusCode::OK, "Alive", &serde_json::Value::Null));

    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(ctx(state))
        .and_then(|ctx| finish(ctx, "readyz", readiness));

    teapot
        .or(list_credential_types)
        .unify()
        .or(healthz)
        .unify()
        .or(readyz)
        .unify()
        .recover(handle_rejection)
        .unify()
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
        let mut response = envelope::success(StatusCode::SERVICE_UNAVAILABLE, "Not ready", &report);
        // The envelope's `successful` says true for a report that was produced; the status says 503.
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        Ok(response)
    }
}
