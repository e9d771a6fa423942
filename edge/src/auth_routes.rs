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
//! redirect page knows whether anyone was waiting. One socket waits per callback key: it claims
//! the pending login in identity (a second socket, on any replica, gets 409) and gives the claim
//! up when it closes.
//!
//! **Bound to the client that started it** (so a phisher who sends someone the `uri` gets
//! nothing), by the client's kind, chosen with `/auth/uri?binding=…`:
//! - `cookie` (the default; a browser on the edge's site): `/auth/uri` sets the HttpOnly,
//!   `SameSite=Lax` cookie `ttscm_sign_in` (a browser keeps one value for all its sign-ins),
//!   identity keeps its hash with the pending login, and the redirect must carry it. Without it
//!   the redirect answers 403 with a page saying why, and the socket gets nothing.
//! - `opener` (a page on another allow-listed origin, where third-party cookies are blocked):
//!   the redirect page hands a one-time completion code to its `window.opener`, by
//!   `postMessage` to that origin only; the socket, told `{"type":"code_required"}`, releases
//!   the tokens only for that code (sent as its next message, within a minute).
//! - `native` (an app that opened the system browser; only with `TTSCM_EDGE__NATIVE_CLIENTS`):
//!   the provider is asked to let the person pick the account (`prompt=select_account`) and the
//!   redirect page asks them to confirm they are signing in to the named client before anything
//!   is finished.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use ttscm_contract::FieldError;
use ttscm_contract::identity::{
    BeginLogin, CheckLogin, CompleteLogin, DescribeLogin, LoginBinding, Logout, ReleaseLogin, SignedIn,
};
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
/// The cookie binding a browser's sign-ins to it.
const COOKIE: &str = "ttscm_sign_in";
/// How long the cookie lives (a pending sign-in's lifetime).
const COOKIE_MAX_AGE_SECS: u32 = 600;
/// How long a socket waits for the completion code of an opener-bound sign-in.
const CODE_DEADLINE: Duration = Duration::from_secs(60);
/// Longest client name a native sign-in may show.
const MAX_CLIENT_NAME: usize = 60;

/// A new random value (256 bits, base64url): a cookie's value, a completion code, a socket id.
fn random_token() -> String {
    base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ttscm_runtime::ids::random_bytes::<32>(),
    )
}

/// The sign-in cookie's value in a `Cookie` header, if plausible.
fn cookie_value(header: Option<&str>) -> Option<String> {
    header?
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| plausible_key(value))
}

/// The `Set-Cookie` value for `value`.
fn set_cookie(value: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/v1/auth; Max-Age={COOKIE_MAX_AGE_SECS}; HttpOnly; SameSite=Lax{secure}"
    ))
    .expect("a base64url value makes a valid header")
}

fn forbidden(message: &str) -> WireError {
    WireError::new(ErrorCode::Forbidden, message)
}

/// `GET /v1/auth/uri[?binding=cookie|opener|native&client=…]`: starts a sign-in bound to the
/// client asking (see the module documentation); the cookie binding sets its cookie.
pub(crate) async fn begin(
    ctx: RequestCtx,
    route: &'static RouteSpec,
    input: Input,
) -> Result<Response, WireError> {
    let state = &ctx.state;
    let (cookie, origin) = (
        input.headers.first().cloned().flatten(),
        input.headers.get(1).cloned().flatten(),
    );
    let mut cookie_to_set = None;
    let binding = match input.query.get("binding").map(String::as_str) {
        None | Some("cookie") => {
            // One value per browser, kept while it signs in (several tabs may sign in at once).
            let value = cookie_value(cookie.as_deref()).unwrap_or_else(random_token);
            let hash = sha256_hex(&value);
            cookie_to_set = Some(value);
            LoginBinding::Cookie { hash }
        }
        Some("opener") => {
            let origin = origin
                .as_deref()
                .filter(|o| state.limits.origin_allowed(Some(o)))
                .and_then(crate::limits::origin_of)
                .ok_or_else(|| {
                    forbidden(
                        "An opener-bound sign-in needs a page origin the server allows (TTSCM_EDGE__SIGN_IN_ORIGINS)",
                    )
                })?;
            LoginBinding::Opener { origin }
        }
        Some("native") => {
            if !state.limits.native_clients() {
                return Err(forbidden(
                    "Native clients are not enabled on this server (TTSCM_EDGE__NATIVE_CLIENTS)",
                ));
            }
            let client = input.query.get("client").map(|c| c.trim()).unwrap_or_default();
            if client.is_empty()
                || client.chars().count() > MAX_CLIENT_NAME
                || client.chars().any(|c| c.is_control())
            {
                return Err(WireError::validation(vec![FieldError::new(
                    vec![json!("client")],
                    format!(
                        "A native sign-in names its client: 1 to {MAX_CLIENT_NAME} characters, no control characters"
                    ),
                )]));
            }
            LoginBinding::Native {
                client: client.to_owned(),
            }
        }
        Some(_) => {
            return Err(WireError::validation(vec![FieldError::new(
                vec![json!("binding")],
                "binding is cookie, opener or native",
            )]));
        }
    };
    let started = ctx.call(&BeginLogin { binding }).await?;
    let mut response = envelope::success(route.status, route.message, &started);
    if let Some(value) = cookie_to_set {
        response
            .headers_mut()
            .append("set-cookie", set_cookie(&value, state.secure_cookies));
    }
    Ok(response)
}

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
                crate::limits::ORIGIN_REFUSED
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
    let deliveries = match state.client.bus().serve(&delivery_subject(&key), WS_QUEUE).await {
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
    let waiter = random_token();
    let pending = match state
        .client
        .call(
            &ctx,
            &CheckLogin {
                callback_key: key.clone(),
                waiter: waiter.clone(),
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
    serve_claimed(&mut tx, &mut rx, &state, deliveries, &pending.expires_at).await;
    let _ = tx.close().await;
    // Give the claim up, so the client may wait again from another socket (after a delivery
    // the sign-in is consumed and this changes nothing).
    let release = ReleaseLogin {
        callback_key: key,
        waiter,
    };
    if let Err(error) = state.client.call(&ctx, &release).await {
        tracing::debug!(
            message = error.message,
            "could not give up a sign-in claim; it ends with the sign-in"
        );
    }
}

type SocketTx = futures_util::stream::SplitSink<WebSocket, Message>;
type SocketRx = futures_util::stream::SplitStream<WebSocket>;

/// Waits, holding the claim, for the outcome of the sign-in (until `expires_at`) and hands it to
/// the socket (an opener-bound one only for its completion code).
async fn serve_claimed(
    tx: &mut SocketTx,
    rx: &mut SocketRx,
    state: &Arc<EdgeState>,
    mut deliveries: ttscm_runtime::bus::Requests,
    expires_at: &str,
) {
    let send = |value: Value| Message::text(value.to_string());
    if tx
        .send(send(json!({"type": "waiting", "expiresAt": expires_at})))
        .await
        .is_err()
    {
        return;
    }
    let left = ttscm_runtime::clock::parse_iso(expires_at)
        .map(|at| at - time::OffsetDateTime::now_utc())
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or(Duration::from_secs(600));
    let deadline = tokio::time::sleep(left);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            request = deliveries.next() => {
                let Some(request) = request else { break };
                let delivery: Value = serde_json::from_slice(&request.payload).unwrap_or(Value::Null);
                let code_hash = delivery["codeHash"].as_str().map(str::to_owned);
                let outcome = delivery["outcome"].clone();
                let delivered = match &code_hash {
                    None => tx.send(send(outcome.clone())).await.is_ok(),
                    Some(_) => tx
                        .send(send(json!({"type": "code_required", "expiresIn": CODE_DEADLINE.as_secs()})))
                        .await
                        .is_ok(),
                };
                let ack = if delivered { "delivered" } else { "gone" };
                let _ = request.respond(Headers::new(), Bytes::from_static(ack.as_bytes())).await;
                if let Some(hash) = code_hash {
                    release_for_code(tx, rx, &hash, outcome).await;
                }
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
}

/// Sends `outcome` once the socket sends the completion code whose SHA-256 is `hash` (bare or
/// `{"code": …}`, within [`CODE_DEADLINE`]); anything else ends the sign-in with an error.
async fn release_for_code(tx: &mut SocketTx, rx: &mut SocketRx, hash: &str, outcome: Value) {
    let send = |value: Value| Message::text(value.to_string());
    let code = match tokio::time::timeout(CODE_DEADLINE, rx.next()).await {
        Ok(Some(Ok(message))) => message.to_str().map(|text| {
            let text = text.trim();
            serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| v.get("code").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| text.to_owned())
        }),
        _ => Ok(String::new()),
    }
    .unwrap_or_default();
    if !code.is_empty() && sha256_hex(&code) == hash {
        let _ = tx.send(send(outcome)).await;
    } else {
        let error = forbidden("The completion code is missing or wrong; please sign in again");
        let _ = tx.send(send(error_message(&error))).await;
    }
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
    let wants_json = input
        .headers
        .first()
        .and_then(Option::as_deref)
        .is_some_and(|a| a.contains("application/json"));
    let cookie = cookie_value(input.headers.get(1).and_then(Option::as_deref));
    let Some(key) = query.remove("state").filter(|s| plausible_key(s)) else {
        let error = WireError::new(ErrorCode::Validation, "The redirect carries no valid state");
        return Ok(page_or_json(route, wants_json, Err(&error), Handover::Nobody));
    };
    let confirmed = query.remove("confirm").as_deref() == Some("yes");
    let code = query.remove("code");
    // A native sign-in is finished only once the person confirms the client it is for.
    if !confirmed
        && let Some(code) = &code
        && let Ok(LoginBinding::Native { client }) = state
            .client
            .call(&ctx.call, &DescribeLogin { state: key.clone() })
            .await
    {
        return Ok(confirmation_page(&client, &key, code));
    }
    let op = CompleteLogin {
        state: key.clone(),
        code,
        error: query.remove("error"),
        error_description: query.remove("error_description"),
        cookie_hash: cookie.as_deref().map(sha256_hex),
        confirmed,
    };
    let completed = state
        .client
        .call_with_timeout(&ctx.call, &op, COMPLETE_DEADLINE)
        .await;
    if let Err(error) = &completed
        && error.code == ErrorCode::Forbidden
    {
        // Finished by another client than the one that started it: the waiting socket (maybe
        // a phisher's) gets nothing.
        return Ok(page_or_json(route, wants_json, Err(error), Handover::Nobody));
    }
    let opener = completed
        .as_ref()
        .ok()
        .and_then(|c| c.opener_origin.clone())
        .map(|origin| (origin, random_token()));
    let outcome = completed.map(|c| c.signed_in);
    let delivery = json!({
        "outcome": outcome_message(&outcome),
        "codeHash": opener.as_ref().map(|(_, code)| sha256_hex(code)),
    });
    let delivered = matches!(
        state
            .client
            .bus()
            .request(&delivery_subject(&key), Headers::new(), Bytes::from(delivery.to_string()), DELIVERY_DEADLINE)
            .await,
        Ok(reply) if reply.payload.as_ref() == b"delivered"
    );
    let handover = match (delivered, opener) {
        (false, _) => Handover::Nobody,
        (true, None) => Handover::Socket,
        (true, Some((origin, code))) => Handover::Opener { origin, code },
    };
    Ok(page_or_json(route, wants_json, outcome.as_ref(), handover))
}

/// Where a finished sign-in went.
enum Handover {
    /// Nobody was waiting (or nothing is handed over).
    Nobody,
    /// To the waiting socket.
    Socket,
    /// To the waiting socket, once the page that opened this window passes on `code`.
    Opener { origin: String, code: String },
}

/// The page asking the person to confirm a native client's sign-in before it is finished.
fn confirmation_page(client: &str, key: &str, code: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>TTSCM — Confirm sign-in</title>\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}}\
         h1{{font-size:1.4rem}}</style></head><body><h1>Sign in to {client}?</h1>\
         <p id=\"message\">You are signing in to TTSCM in the app <strong>{client}</strong>. Continue only if you \
         started this sign-in from {client} on this device just now. If someone sent you this link, close this window.</p>\
         <form method=\"get\" action=\"/v1/auth/redirect\"><input type=\"hidden\" name=\"state\" value=\"{key}\">\
         <input type=\"hidden\" name=\"code\" value=\"{code}\"><input type=\"hidden\" name=\"confirm\" value=\"yes\">\
         <button type=\"submit\" id=\"confirm\">Yes, sign in to {client}</button></form></body></html>",
        client = escape(client),
        key = escape(key),
        code = escape(code),
    );
    html_response(StatusCode::OK, body)
}

fn page_or_json(
    route: &RouteSpec,
    wants_json: bool,
    outcome: Result<&SignedIn, &WireError>,
    handover: Handover,
) -> Response {
    if wants_json {
        return match outcome {
            Ok(signed_in) => envelope::success(route.status, route.message, signed_in),
            Err(error) => crate::error::error_response(error),
        };
    }
    let (status, title, text, close) = match (outcome, &handover) {
        (Ok(_), Handover::Opener { origin, code }) => {
            let script = format!(
                "<script>(function(){{if(window.opener){{window.opener.postMessage({{type:\"ttscm-sign-in-code\",code:{}}},{});}}window.close();}})();</script>",
                script_string(code),
                script_string(origin),
            );
            return html_page(
                StatusCode::OK,
                "Signed in",
                "You are signed in to TTSCM. This window closes by itself; if it stays open, you can close it.",
                &script,
            );
        }
        (Ok(_), Handover::Socket) => (
            StatusCode::OK,
            "Signed in",
            "You are signed in to TTSCM. This window closes by itself; if it stays open, you can close it.".to_owned(),
            true,
        ),
        (Ok(_), Handover::Nobody) => (
            StatusCode::OK,
            "Signed in, but nobody was waiting",
            "You are signed in, but no TTSCM window was waiting for this sign-in. Close this window and start the sign-in again from TTSCM.".to_owned(),
            false,
        ),
        (Err(error), _) => (
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
    let script = if close {
        "<script>window.close();</script>"
    } else {
        ""
    };
    html_page(status, title, &text, script)
}

/// `text` as a JavaScript string literal safe inside a `<script>` element.
fn script_string(text: &str) -> String {
    serde_json::to_string(text)
        .expect("strings serialize")
        .replace('<', "\\u003c")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn html_page(status: StatusCode, title: &str, text: &str, script: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>TTSCM — {title}</title>\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}}\
         h1{{font-size:1.4rem}}</style></head><body><h1>{title}</h1><p id=\"message\">{text}</p>{script}</body></html>",
        title = escape(title),
        text = escape(text),
    );
    html_response(status, body)
}

/// An HTML answer with the sign-in pages' headers: no caching, no referrer, a CSP allowing
/// only their own inline script and style, never framed.
fn html_response(status: StatusCode, body: String) -> Response {
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
