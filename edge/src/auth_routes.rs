//! Sign-in routes (`/v1/auth/…`): the spec's `uri`, `redirect` and `refresh`, plus the
//! WebSocket the tokens are delivered on and `logout`.
//!
//! The flow, for a client (e.g. a desktop or web app):
//! 1. `GET /v1/auth/uri` → `{uri, callbackKey}`.
//! 2. Open `GET /v1/auth/ws?callbackKey=…` (WebSocket) and wait for `{"type":"waiting"}`; then
//!    open `uri` in a browser (popup).
//! 3. The provider redirects the browser to `GET /v1/auth/redirect?code=…&state=…`; identity
//!    finishes the sign-in and this edge sends the outcome to the WebSocket — `{"type":
//!    "authenticated", accessToken, refreshToken, tokenType, expiresIn, user}` or `{"type":
//!    "error", status, message}` — which then closes. The browser gets a page that closes
//!    itself (or JSON with the tokens when it asked for `application/json`).
//!
//! **Delivery across replicas**: the WebSocket's edge serves the bus subject
//! `ttscm.edge.v1.login.<sha256(callbackKey)>`; the edge that receives the redirect sends the
//! outcome there as a request, so it reaches whichever replica holds the socket, and the
//! redirect page knows whether anyone was waiting.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use ttscm_contract::identity::{CheckLogin, CompleteLogin, Logout, SignedIn};
use ttscm_contract::subjects::EDGE_LOGIN_DELIVERY_PREFIX;
use ttscm_contract::{ErrorCode, WireError};
use ttscm_runtime::Headers;
use warp::filters::ws::{Message, WebSocket, Ws};
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

use crate::EdgeState;
use crate::auth::sha256_hex;
use crate::envelope;
use crate::error::status_of;
use crate::limits::Allowance;
use crate::routes::{Input, RequestCtx, RouteSpec, SocketRequest};

/// Queue group of WebSocket waiters (one socket per callback key serves its subject).
const WS_QUEUE: &str = "edge-ws";
/// How long identity may take to finish a sign-in (it calls the provider's token endpoint).
const COMPLETE_DEADLINE: Duration = Duration::from_secs(20);
/// How long the redirect waits for the WebSocket's edge to take the outcome.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(3);
/// How long a socket opened without `callbackKey` in its URL may take to send it.
const FIRST_MESSAGE_DEADLINE: Duration = Duration::from_secs(10);
/// Longest accepted refresh token.
const MAX_REFRESH_TOKEN_LEN: usize = 256;

fn delivery_subject(callback_key: &str) -> String {
    format!("{EDGE_LOGIN_DELIVERY_PREFIX}.{}", sha256_hex(callback_key))
}

fn plausible_key(key: &str) -> bool {
    (16..=128).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The WebSocket message for a finished sign-in.
fn outcome_message(outcome: &Result<SignedIn, WireError>) -> Value {
    match outcome {
        Ok(signed_in) => {
            let mut message = serde_json::to_value(signed_in).expect("wire types serialize");
            message["type"] = json!("authenticated");
            message
        }
        Err(error) => error_message(error),
    }
}

fn error_message(error: &WireError) -> Value {
    json!({"type": "error", "status": status_of(error.code).as_u16(), "message": error.message})
}

/// The callback key a socket sent as its first message: the bare key, or
/// `{"callbackKey": "…"}`.
fn key_from_message(text: &str) -> String {
    let text = text.trim();
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("callbackKey").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| text.to_owned())
}

/// `GET /v1/auth/ws?callbackKey=…`, or `GET /v1/auth/ws` with the key as the socket's first
/// message (preferred: the key then stays out of URLs and so out of proxy logs): upgrades to
/// the WebSocket that waits for the sign-in.
///
/// Refused before the upgrade: over the client address's sign-in allowance (429), from a page
/// whose origin is not allowed or without `Origin` where native clients are not enabled (403),
/// and when [`crate::limits::Limits::socket_permit`]'s cap of waiting sockets is reached (503);
/// the socket holds its permit until it closes.
pub(crate) fn upgrade(state: Arc<EdgeState>, request: SocketRequest, ws: Ws) -> Response {
    if let Err(throttled) = state.limits.by_address(Allowance::SignIn, request.client) {
        return throttled.response();
    }
    if !state.limits.origin_allowed(request.origin.as_deref()) {
        let message = match &request.origin {
            Some(origin) => {
                tracing::info!(origin = %origin.escape_debug(), "a sign-in socket from an origin not allowed was refused");
                "This origin may not open the sign-in socket"
            }
            None => {
                "The sign-in socket needs an Origin header: native clients are not enabled on this server"
            }
        };
        return envelope::error(StatusCode::FORBIDDEN, message, &[]);
    }
    let permit = match state.limits.socket_permit() {
        Ok(permit) => permit,
        Err(full) => return full.response(),
    };
    let key = request.query.get("callbackKey").cloned().unwrap_or_default();
    warp::reply::Reply::into_response(ws.max_message_size(4096).on_upgrade(move |socket| {
        let sockets = state.sockets.clone();
        sockets.track_future(async move {
            wait_for_sign_in(socket, state, key).await;
            drop(permit);
        })
    }))
}

/// The hash of the refresh token in `x-refresh-token` (401 when it is missing or implausible).
pub(crate) fn refresh_token_hash(token: Option<String>) -> Result<String, WireError> {
    token
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty() && t.len() <= MAX_REFRESH_TOKEN_LEN)
        .map(|t| sha256_hex(&t))
        .ok_or_else(|| WireError::new(ErrorCode::Unauthorized, "Unauthorized"))
}

/// `POST /v1/auth/logout`: revokes the caller's session and forgets its cached token here.
pub(crate) async fn logout(
    ctx: RequestCtx,
    route: &'static RouteSpec,
    _: Input,
) -> Result<Response, WireError> {
    let out = ctx.call(&Logout {}).await?;
    ctx.state.auth.forget(ctx.authorization.as_deref());
    Ok(envelope::success(route.status, route.message, &out))
}

/// One WebSocket waiting for the outcome of the sign-in `key`.
async fn wait_for_sign_in(socket: WebSocket, state: Arc<EdgeState>, key: String) {
    let (mut tx, mut rx) = socket.split();
    let send = |value: Value| Message::text(value.to_string());
    let key = if key.is_empty() {
        match tokio::time::timeout(FIRST_MESSAGE_DEADLINE, rx.next()).await {
            Ok(Some(Ok(message))) => message.to_str().map(key_from_message).unwrap_or_default(),
            _ => String::new(),
        }
    } else {
        key
    };
    if !plausible_key(&key) {
        let error = WireError::new(ErrorCode::Validation, "callbackKey is missing or malformed");
        let _ = tx.send(send(error_message(&error))).await;
        let _ = tx.close().await;
        return;
    }
    // Listen first, then check: an outcome arriving in between is not lost.
    let mut deliveries = match state.client.bus().serve(&delivery_subject(&key), WS_QUEUE).await {
        Ok(requests) => requests,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for a sign-in");
            let error = WireError::new(ErrorCode::Unavailable, "Sign-in is unavailable; try again");
            let _ = tx.send(send(error_message(&error))).await;
            let _ = tx.close().await;
            return;
        }
    };
    let ctx = ttscm_runtime::service::CallContext::new(None);
    let pending = match state
        .client
        .call(
            &ctx,
            &CheckLogin {
                callback_key: key.clone(),
            },
        )
        .await
    {
        Ok(pending) => pending,
        Err(error) => {
            let _ = tx.send(send(error_message(&error))).await;
            let _ = tx.close().await;
            return;
        }
    };
    if tx
        .send(send(json!({"type": "waiting", "expiresAt": pending.expires_at})))
        .await
        .is_err()
    {
        return;
    }
    let left = ttscm_runtime::clock::parse_iso(&pending.expires_at)
        .map(|at| at - time::OffsetDateTime::now_utc())
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or(Duration::from_secs(600));
    let deadline = tokio::time::sleep(left);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            request = deliveries.next() => {
                let Some(request) = request else { break };
                let message = String::from_utf8_lossy(&request.payload).into_owned();
                let delivered = tx.send(Message::text(message)).await.is_ok();
                let ack = if delivered { "delivered" } else { "gone" };
                let _ = request.respond(Headers::new(), Bytes::from_static(ack.as_bytes())).await;
                break;
            }
            incoming = rx.next() => {
                // The client closed (or sent something; it has nothing to say): stop waiting.
                match incoming {
                    Some(Ok(message)) if !message.is_close() => continue,
                    _ => return,
                }
            }
            () = &mut deadline => {
                let error = WireError::new(ErrorCode::Validation, "The sign-in expired; please start again");
                let _ = tx.send(send(error_message(&error))).await;
                break;
            }
            () = state.shutdown.cancelled() => {
                let error = WireError::new(ErrorCode::Unavailable, "The server is restarting; please sign in again");
                let _ = tx.send(send(error_message(&error))).await;
                break;
            }
        }
    }
    let _ = tx.close().await;
}

/// `GET /v1/auth/redirect`: finishes the sign-in, delivers the outcome to the waiting socket,
/// and answers a page that closes itself (or JSON when the browser asks for it).
pub(crate) async fn redirect(
    ctx: RequestCtx,
    route: &'static RouteSpec,
    input: Input,
) -> Result<Response, WireError> {
    let state = &ctx.state;
    let mut query = input.query;
    let wants_json = input.header.is_some_and(|a| a.contains("application/json"));
    let Some(key) = query.remove("state").filter(|s| plausible_key(s)) else {
        let error = WireError::new(ErrorCode::Validation, "The redirect carries no valid state");
        return Ok(page_or_json(route, wants_json, Err(&error), false));
    };
    let op = CompleteLogin {
        state: key.clone(),
        code: query.remove("code"),
        error: query.remove("error"),
        error_description: query.remove("error_description"),
    };
    let outcome = state
        .client
        .call_with_timeout(&ctx.call, &op, COMPLETE_DEADLINE)
        .await;
    let payload = Bytes::from(outcome_message(&outcome).to_string());
    let delivered = matches!(
        state
            .client
            .bus()
            .request(&delivery_subject(&key), Headers::new(), payload, DELIVERY_DEADLINE)
            .await,
        Ok(reply) if reply.payload.as_ref() == b"delivered"
    );
    Ok(page_or_json(route, wants_json, outcome.as_ref(), delivered))
}

fn page_or_json(
    route: &RouteSpec,
    wants_json: bool,
    outcome: Result<&SignedIn, &WireError>,
    delivered: bool,
) -> Response {
    if wants_json {
        return match outcome {
            Ok(signed_in) => envelope::success(route.status, route.message, signed_in),
            Err(error) => crate::error::error_response(error),
        };
    }
    let (status, title, text, close) = match outcome {
        Ok(_) if delivered => (
            StatusCode::OK,
            "Signed in",
            "You are signed in to TTSCM. This window closes by itself; if it stays open, you can close it.".to_owned(),
            true,
        ),
        Ok(_) => (
            StatusCode::OK,
            "Signed in, but nobody was waiting",
            "You are signed in, but no TTSCM window was waiting for this sign-in. Close this window and start the sign-in again from TTSCM.".to_owned(),
            false,
        ),
        Err(error) => (
            status_of(error.code),
            "Sign-in failed",
            format!(
                "{}{} Close this window and try again.",
                error.message,
                if error.message.ends_with('.') { "" } else { "." }
            ),
            false,
        ),
    };
    html_page(status, title, &text, close)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn html_page(status: StatusCode, title: &str, text: &str, close: bool) -> Response {
    let script = if close {
        "<script>window.close();</script>"
    } else {
        ""
    };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>TTSCM — {title}</title>\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}}\
         h1{{font-size:1.4rem}}</style></head><body><h1>{title}</h1><p id=\"message\">{text}</p>{script}</body></html>",
        title = escape(title),
        text = escape(text),
    );
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    response
}
