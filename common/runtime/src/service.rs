//! The bridge between the bus and service handlers ([`ServiceOp`]), and the typed client the
//! edge and services use to call each other.
//!
//! A service implements [`ServiceOp`] for each operation it serves and declares them in its
//! [`crate::router::ServiceRouter`]; [`serve_fn`] subscribes to an operation's subject in the
//! service's queue group, decodes each request, runs the handler, and replies with the result.
//! [`BusClient::call`] is the other side.
//!
//! **Architecture Invariant**: a panicking handler answers that one request with a 500 and the
//! service keeps serving: [`serve_fn`] catches the unwind of each request's handler.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures_util::FutureExt;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use ttscm_contract::operation::ReplyBody;
use ttscm_contract::subjects::{HEADER_PRINCIPAL, HEADER_REQUEST_ID};
use ttscm_contract::{ErrorCode, FieldError, Operation, Principal, WireError};

use crate::bus::{Bus, BusError, Headers, Request};
use crate::principal::{MeshAuth, Refusal};
use crate::{Shutdown, ids, telemetry};

/// Who asked, and the request's id, as a service sees them.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// The request id from the edge (or a new one).
    pub request_id: String,
    /// The authenticated caller, if the edge forwarded one.
    pub principal: Option<Arc<Principal>>,
    /// The caller as encoded for the bus header, when the edge cached it with the principal
    /// (encoding it per request is measurable on the hot path).
    pub principal_header: Option<Arc<str>>,
    /// The client IP the edge saw, for audit entries.
    pub client_ip: Option<String>,
    /// The client's `Idempotency-Key`, when it sent one (see [`crate::idempotency`]).
    pub idempotency_key: Option<String>,
}

/// Bus header carrying the client's `Idempotency-Key`.
pub const HEADER_IDEMPOTENCY_KEY: &str = "ttscm-idempotency-key";

/// Bus header carrying the client IP the edge saw.
pub const HEADER_CLIENT_IP: &str = "ttscm-client-ip";

impl CallContext {
    /// A context for a new request (CLI tools, background jobs, the edge).
    pub fn new(principal: Option<Principal>) -> Self {
        Self {
            request_id: ids::new_request_id(),
            principal: principal.map(Arc::new),
            principal_header: None,
            client_ip: None,
            idempotency_key: None,
        }
    }

    /// Encodes a principal as the bus header carries it (JSON, base64url).
    pub fn encode_principal(principal: &Principal) -> String {
        let json = serde_json::to_vec(principal).expect("a principal always serializes");
        URL_SAFE_NO_PAD.encode(json)
    }

    /// The caller, or 401.
    pub fn principal(&self) -> Result<&Principal, WireError> {
        self.principal
            .as_deref()
            .ok_or_else(|| WireError::new(ErrorCode::Unauthorized, "Unauthorized"))
    }

    /// Fails with 403 unless the caller holds every permission in `required`.
    pub fn require(&self, required: &[&str]) -> Result<&Principal, WireError> {
        let principal = self.principal()?;
        if principal.permissions.grants_all(required) {
            Ok(principal)
        } else {
            Err(WireError::forbidden())
        }
    }

    fn to_headers(&self) -> Headers {
        let mut headers = Headers::new();
        headers.insert(HEADER_REQUEST_ID, self.request_id.clone());
        match (&self.principal_header, &self.principal) {
            (Some(encoded), _) => headers.insert(HEADER_PRINCIPAL, encoded.to_string()),
            (None, Some(principal)) => headers.insert(HEADER_PRINCIPAL, Self::encode_principal(principal)),
            (None, None) => {}
        }
        if let Some(ip) = &self.client_ip {
            headers.insert(HEADER_CLIENT_IP, ip.clone());
        }
        if let Some(key) = &self.idempotency_key {
            headers.insert(HEADER_IDEMPOTENCY_KEY, key.clone());
        }
        telemetry::inject_context(&mut headers);
        headers
    }

    /// The context a request's headers carry. With `auth` (the mesh) a principal header must
    /// verify, or the request is refused; without it (in process) it is decoded as it is.
    fn from_headers(headers: &Headers, auth: Option<&MeshAuth>) -> Result<Self, Refusal> {
        // The header text is kept to forward as it is on calls this request makes.
        let (principal, principal_header) = match (headers.get(HEADER_PRINCIPAL), auth) {
            (None, _) => (None, None),
            (Some(header), Some(auth)) => {
                let (principal, text) = auth.verify(header)?;
                (Some(principal), Some(text))
            }
            (Some(header), None) => decode_principal(header).unzip(),
        };
        Ok(Self {
            request_id: headers
                .get(HEADER_REQUEST_ID)
                .map_or_else(ids::new_request_id, str::to_owned),
            principal,
            principal_header,
            client_ip: headers.get(HEADER_CLIENT_IP).map(str::to_owned),
            idempotency_key: headers.get(HEADER_IDEMPOTENCY_KEY).map(str::to_owned),
        })
    }
}

/// A decoded principal header: the principal, and the header's text to forward unchanged.
type DecodedPrincipal = (Arc<Principal>, Arc<str>);

/// Decoded principal headers by their exact text. The header fully determines the principal, so
/// an entry can never be stale (the time to live is the cache's longest); the cache's bound
/// keeps it small. Decoding (base64, JSON, parsing every permission) per request, and encoding
/// again for each call onwards, is measurable on the hot path.
static PRINCIPALS: std::sync::LazyLock<crate::cache::Cache<Arc<str>, Arc<Principal>>> =
    std::sync::LazyLock::new(|| crate::cache::Cache::new(std::time::Duration::MAX, MAX_PRINCIPALS));
/// Principals kept in the cache at most.
const MAX_PRINCIPALS: usize = 10_000;

fn decode_principal(encoded: &str) -> Option<DecodedPrincipal> {
    if let Some((text, principal)) = PRINCIPALS.get_key_value(encoded) {
        return Some((principal, text));
    }
    let json = URL_SAFE_NO_PAD.decode(encoded).ok()?;
    let principal: Arc<Principal> = Arc::new(serde_json::from_slice(&json).ok()?);
    let text: Arc<str> = Arc::from(encoded);
    PRINCIPALS.insert(text.clone(), principal.clone());
    Some((principal, text))
}

/// Serves operation `O` with a plain async function (each request in its own task).
pub async fn serve_fn<O, F, Fut>(
    bus: &Bus,
    queue: &str,
    shutdown: Shutdown,
    handler: F,
) -> Result<JoinHandle<()>, BusError>
where
    O: Operation,
    F: Fn(CallContext, O) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<O::Reply, WireError>> + Send + 'static,
{
    let tracker = TaskTracker::new();
    if let Bus::InProc(inproc) = bus {
        // In-process: the requester's task runs the handler (no channel, no task hop); the
        // tracker still counts requests in flight so shutdown drains them.
        let counted = tracker.clone();
        let direct: crate::bus::inproc::DirectHandler = Arc::new(move |request| {
            let in_flight = counted.token();
            let handler = handler.clone();
            Box::pin(async move {
                handle::<O, F, Fut>(request, handler, None).await;
                drop(in_flight);
            })
        });
        let registration = inproc.serve_direct(O::SUBJECT, queue, direct)?;
        return Ok(tokio::spawn(async move {
            shutdown.cancelled().await;
            drop(registration);
            tracker.close();
            tracker.wait().await;
        }));
    }
    let mut requests = bus.serve(O::SUBJECT, queue).await?;
    let auth = bus.principal_auth().cloned();
    Ok(tokio::spawn(async move {
        loop {
            let request = tokio::select! {
                () = shutdown.cancelled() => break,
                request = requests.next() => request,
            };
            let Some(request) = request else { break };
            let handler = handler.clone();
            tracker.spawn(handle::<O, F, Fut>(request, handler, auth.clone()));
        }
        // Unsubscribe first, so new requests go to other members (or fail fast), then drain.
        drop(requests);
        tracker.close();
        tracker.wait().await;
    }))
}

async fn handle<O, F, Fut>(request: Request, handler: F, auth: Option<Arc<MeshAuth>>)
where
    O: Operation,
    F: Fn(CallContext, O) -> Fut,
    Fut: Future<Output = Result<O::Reply, WireError>> + Send + 'static,
{
    let verified = CallContext::from_headers(&request.headers, auth.as_deref()).and_then(|ctx| {
        match (&auth, &ctx.principal) {
            (Some(_), None) if !O::ANONYMOUS => Err(Refusal::Missing),
            _ => Ok(ctx),
        }
    });
    let ctx = match verified {
        Ok(ctx) => ctx,
        Err(refusal) => return refuse::<O>(request, refusal).await,
    };
    let span = tracing::info_span!("call", subject = O::SUBJECT, request_id = %ctx.request_id);
    telemetry::set_parent_from(&span, &request.headers);
    let result = match serde_json::from_slice::<O>(&request.payload) {
        Ok(op) => {
            // Each request already runs in its own task; catching the unwind here contains a
            // panic to this request without a second spawn (a thread hop) per request.
            match AssertUnwindSafe(handler(ctx, op).instrument(span.clone()))
                .catch_unwind()
                .await
            {
                Ok(result) => result,
                Err(_) => {
                    span.in_scope(|| tracing::error!("a request handler panicked"));
                    Err(WireError::internal())
                }
            }
        }
        Err(error) => Err(WireError::validation(vec![FieldError::new(
            vec![],
            format!("malformed request: {error}"),
        )])),
    };
    let body = match result {
        Ok(reply) => ReplyBody::Ok(reply),
        Err(error) => ReplyBody::Err(error),
    };
    let mut payload = serde_json::to_vec(&body).expect("replies always serialize");
    // Over NATS a reply larger than one message travels in chunks (`bus::nats::respond`), up to
    // the reply cap; beyond it the caller would refuse it: say instead what to ask for.
    if let Some(max) = request.max_reply()
        && payload.len() > max
    {
        span.in_scope(|| {
            tracing::warn!(
                size = payload.len(),
                max,
                "a reply is larger than the bus carries"
            )
        });
        payload = serde_json::to_vec(&ReplyBody::<()>::Err(reply_too_large(payload.len(), max)))
            .expect("replies always serialize");
    }
    if let Err(error) = request.respond(Headers::new(), Bytes::from(payload)).await {
        span.in_scope(|| tracing::warn!(%error, "could not send a reply"));
    }
}

/// The answer to a request whose reply is larger than the reply cap (413, naming `page`/`rpp`).
fn reply_too_large(size: usize, max: usize) -> WireError {
    WireError::new(
        ErrorCode::PayloadTooLarge,
        format!(
            "The answer is too large to send ({size} bytes; at most {max}): ask for fewer items with page and rpp"
        ),
    )
}

/// Answers a request whose principal did not verify (or that needs one and carried none) with
/// 401, without running anything, and logs why (never the header itself).
async fn refuse<O: Operation>(request: Request, refusal: Refusal) {
    let request_id = request.headers.get(HEADER_REQUEST_ID).unwrap_or("-").to_owned();
    tracing::warn!(subject = O::SUBJECT, %request_id, reason = %refusal, "refused a request: its principal did not verify");
    let body: ReplyBody<()> = ReplyBody::Err(WireError::new(
        ErrorCode::Unauthorized,
        "The request's principal is missing, forged or expired",
    ));
    let payload = serde_json::to_vec(&body).expect("replies always serialize");
    if let Err(error) = request.respond(Headers::new(), Bytes::from(payload)).await {
        tracing::warn!(%error, "could not send a reply");
    }
}

/// An operation a service answers with its shared state `S` (the stateless request path: no
/// actor hop). Services implement it per operation and serve it with [`serve_op`].
pub trait ServiceOp<S>: Operation {
    /// Does the work.
    fn run(
        self,
        service: Arc<S>,
        ctx: CallContext,
    ) -> impl Future<Output = Result<Self::Reply, WireError>> + Send + 'static;
}

/// Serves operation `O` with `service` in queue group `queue`.
pub async fn serve_op<O, S>(
    bus: &Bus,
    queue: &str,
    service: Arc<S>,
    shutdown: Shutdown,
) -> Result<JoinHandle<()>, BusError>
where
    O: ServiceOp<S>,
    S: Send + Sync + 'static,
{
    serve_fn::<O, _, _>(bus, queue, shutdown, move |ctx, op: O| {
        op.run(service.clone(), ctx)
    })
    .await
}

/// A store failure as a client sees it: 503 when the store is unreachable, 409 on a unique
/// conflict, otherwise 500 (the cause is logged here, never sent).
pub fn store_failed(error: crate::StoreError) -> WireError {
    match error {
        crate::StoreError::Unavailable(cause) => {
            tracing::warn!(%cause, "store unavailable");
            WireError::new(ErrorCode::Unavailable, "The store is unavailable")
        }
        crate::StoreError::Conflict => {
            WireError::new(ErrorCode::Conflict, "The change conflicts with existing data")
        }
        other => {
            tracing::error!(error = %other, "store failure");
            WireError::internal()
        }
    }
}

/// Calls operations over the bus with a deadline, mapping bus failures to wire errors.
#[derive(Clone, Debug)]
pub struct BusClient {
    bus: Bus,
    timeout: Duration,
}

impl BusClient {
    /// A client with a per-request deadline.
    pub fn new(bus: Bus, timeout: Duration) -> Self {
        Self { bus, timeout }
    }

    /// The bus underneath.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Calls `op` and waits for its reply.
    pub async fn call<O: Operation>(&self, ctx: &CallContext, op: &O) -> Result<O::Reply, WireError> {
        self.call_with_timeout(ctx, op, self.timeout).await
    }

    /// Calls `op` and answers its reply as the service encoded it, without decoding it (for
    /// replies the caller only passes on).
    pub async fn call_raw<O: Operation>(
        &self,
        ctx: &CallContext,
        op: &O,
    ) -> Result<Box<serde_json::value::RawValue>, WireError> {
        let reply = self.request(ctx, op, self.timeout).await?;
        match serde_json::from_slice::<ReplyBody<Box<serde_json::value::RawValue>>>(&reply.payload) {
            Ok(ReplyBody::Ok(value)) => Ok(value),
            Ok(ReplyBody::Err(error)) => Err(error),
            Err(error) => {
                tracing::error!(subject = O::SUBJECT, %error, "undecodable reply");
                Err(WireError::internal())
            }
        }
    }

    async fn request<O: Operation>(
        &self,
        ctx: &CallContext,
        op: &O,
        timeout: Duration,
    ) -> Result<crate::bus::Message, WireError> {
        let payload = serde_json::to_vec(op).expect("operations always serialize");
        let started = std::time::Instant::now();
        let reply = self
            .bus
            .request(O::SUBJECT, ctx.to_headers(), Bytes::from(payload), timeout)
            .await;
        crate::metrics::bus_request(
            O::SUBJECT,
            started.elapsed(),
            reply.as_ref().err().map(BusError::kind),
        );
        reply.map_err(|error| bus_error_to_wire(O::SUBJECT, &error))
    }

    /// Calls `op` with a specific deadline.
    pub async fn call_with_timeout<O: Operation>(
        &self,
        ctx: &CallContext,
        op: &O,
        timeout: Duration,
    ) -> Result<O::Reply, WireError> {
        let reply = self.request(ctx, op, timeout).await?;
        match serde_json::from_slice::<ReplyBody<O::Reply>>(&reply.payload) {
            Ok(ReplyBody::Ok(value)) => Ok(value),
            Ok(ReplyBody::Err(error)) => Err(error),
            Err(error) => {
                tracing::error!(subject = O::SUBJECT, %error, "undecodable reply");
                Err(WireError::internal())
            }
        }
    }
}

/// The service a subject belongs to (`ttscm.<service>.v1.<verb>`), for messages.
fn service_of(subject: &str) -> &str {
    subject.split('.').nth(1).unwrap_or("a service")
}

/// Maps a bus failure to what a client sees: 503 when nobody can answer, 504 on a deadline.
pub fn bus_error_to_wire(subject: &str, error: &BusError) -> WireError {
    let service = service_of(subject);
    match error {
        BusError::NoResponders { .. } => WireError::new(
            ErrorCode::Unavailable,
            format!("The {service} service is unavailable"),
        ),
        BusError::Disconnected => WireError::new(ErrorCode::Unavailable, "The message bus is unavailable"),
        BusError::TimedOut { .. } => WireError::new(
            ErrorCode::Timeout,
            format!("The {service} service did not answer in time"),
        ),
        BusError::PayloadTooLarge { .. } => WireError::new(ErrorCode::PayloadTooLarge, "Payload too large"),
        BusError::ReplyTooLarge { size, max } => {
            tracing::warn!(subject, size, max, "refused a reply larger than the reply cap");
            reply_too_large(*size, *max)
        }
        BusError::Other(cause) => {
            tracing::error!(subject, %cause, "bus failure");
            WireError::new(ErrorCode::Unavailable, "The message bus is unavailable")
        }
    }
}
