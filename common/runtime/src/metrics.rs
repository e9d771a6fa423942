//! Prometheus metrics: the one recorder of the process, the `/metrics` endpoint that serves it on
//! `TTSCM_METRICS_ADDR` (a port of its own, never the API's), and one function per thing TTSCM
//! measures, so metric names and their label sets are declared here and nowhere else.
//!
//! - **One recorder per process** ([`handle`]): installed the first time a component asks for
//!   an endpoint, kept in a `OnceLock`. Embedded mode has one endpoint for all its components;
//!   in the mesh each `ttscm serve --only C` process has its own. Before (or without) an
//!   endpoint the `metrics` macros go to the facade's no-op recorder: a measurement costs a
//!   few nanoseconds.
//! - **One endpoint per address per process** ([`serve`]): a second component of the same
//!   process asking for the address already served shares it (the tests run a whole mesh in
//!   one process).
//! - **Labels never carry ids, secrets, tokens, user names or concrete paths**: a route is its
//!   table pattern (`/v1/credential/credentials/:id/reveal`), a bus request its operation's
//!   subject (a constant of the contract), everything else a fixed word. Every label value
//!   here is `&'static str` or a status code, so a label set is bounded by construction.
//! - **Histograms are real Prometheus histograms** (buckets set per metric below), so
//!   `histogram_quantile` works across replicas; the exporter's raw samples are folded into
//!   them by an upkeep every [`UPKEEP_INTERVAL`] while an endpoint runs.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use parking_lot::{Mutex, RwLock};
use warp::Filter;

use crate::Shutdown;

/// HTTP requests the edge answered, by `method`, `route` (the table's path pattern, or
/// `unmatched`) and `status`.
pub const HTTP_REQUESTS: &str = "ttscm_http_requests_total";
/// Seconds from a request's arrival to its answer, by `method`, `route` and `status`.
pub const HTTP_REQUEST_DURATION: &str = "ttscm_http_request_duration_seconds";
/// Seconds one bus request took (sent to reply or failure), by `subject`.
pub const BUS_REQUEST_DURATION: &str = "ttscm_bus_request_duration_seconds";
/// Bus requests that failed on the way (no reply), by `subject` and `kind` (`no_responders`,
/// `timed_out`, `disconnected`, `payload_too_large`, `reply_too_large`, `other`). A service's
/// error reply (a 404, a 403) is an answer, not a bus error: the HTTP status counts it.
pub const BUS_REQUEST_ERRORS: &str = "ttscm_bus_request_errors_total";
/// Bearer tokens the edge checked, by `kind` (`api_token`, `access_token`, `none`: no or a
/// malformed `Authorization` header) and `outcome` (`cached`: a fresh cache entry answered;
/// `accepted`: identity or the signature said yes; `refused`: 401; `failed`: identity could not
/// be asked, 503/504).
pub const TOKEN_VERIFICATIONS: &str = "ttscm_token_verifications_total";
/// Cache lookups, by `cache` (`credential`, `credential_type`, `company`, `user`) and `result`
/// (`hit`, `miss`).
pub const CACHE_LOOKUPS: &str = "ttscm_cache_lookups_total";
/// Audit entries in the write-ahead stream not yet copied into the store (mesh only; sampled
/// every [`AUDIT_SAMPLE_INTERVAL`] by each process that runs a copier).
pub const AUDIT_COPY_PENDING: &str = "ttscm_audit_copy_pending_entries";
/// Audit entries the copier stored.
pub const AUDIT_COPIED: &str = "ttscm_audit_copied_entries_total";
/// Events waiting in a service's outbox (the bus did not take them), by `outbox` (the
/// collection's name), as of its last drain.
pub const EVENT_OUTBOX_LENGTH: &str = "ttscm_event_outbox_length";
/// Company syncs run, by `kind` (`full`, `incremental`) and `outcome` (`success`, `failure`).
pub const COMPANY_SYNC_RUNS: &str = "ttscm_company_sync_runs_total";
/// Seconds one company sync took, by `kind`.
pub const COMPANY_SYNC_DURATION: &str = "ttscm_company_sync_duration_seconds";
/// Unix time of the last successful company sync (seen by this process: the one it ran, or the
/// one the shared status records).
pub const COMPANY_SYNC_LAST_SUCCESS: &str = "ttscm_company_sync_last_success_timestamp_seconds";
/// Webhook deliveries queued (an event stored for an endpoint that wants it).
pub const WEBHOOK_QUEUED: &str = "ttscm_webhook_deliveries_queued_total";
/// Webhook delivery attempts, by `outcome` (`delivered`, `failed`: the receiver refused or did
/// not answer, retried later; `gave_up`: the last attempt of a delivery failed; `refused`: the
/// address was refused, against server-side request forgery).
pub const WEBHOOK_ATTEMPTS: &str = "ttscm_webhook_attempts_total";
/// Seconds from an event's delivery being queued to a receiver accepting it (first attempts).
pub const WEBHOOK_DELAY: &str = "ttscm_webhook_delivery_delay_seconds";
/// Webhook deliveries waiting (pending), as of the last look of this process.
pub const WEBHOOK_PENDING: &str = "ttscm_webhook_pending_deliveries";

/// How often the exporter folds recorded samples into the histograms (bounds their memory
/// between scrapes).
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
/// How often a process running the audit copier samples how many entries wait.
pub const AUDIT_SAMPLE_INTERVAL: Duration = Duration::from_secs(15);

/// Buckets of request and bus latencies: 250 µs (an embedded reveal) to 10 s (beyond the bus
/// deadline).
const LATENCY_BUCKETS: &[f64] = &[
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets of a company sync's duration: a second to half an hour.
const SYNC_BUCKETS: &[f64] = &[1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

/// The content type of the Prometheus text format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
/// Addresses this process serves `/metrics` on (see [`serve`]).
static SERVED: Mutex<Option<HashSet<SocketAddr>>> = Mutex::new(None);

/// The process's recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HTTP_REQUEST_DURATION.into()), LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(BUS_REQUEST_DURATION.into()), LATENCY_BUCKETS)
            })
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(COMPANY_SYNC_DURATION.into()), SYNC_BUCKETS))
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(WEBHOOK_DELAY.into()), LATENCY_BUCKETS))
            .expect("the bucket lists are not empty")
            .build_recorder();
        let handle = recorder.handle();
        if let Err(error) = metrics::set_global_recorder(recorder) {
            tracing::warn!(%error, "another metrics recorder is installed; /metrics stays empty");
        }
        describe();
        handle
    })
}

/// The `# HELP` lines.
fn describe() {
    metrics::describe_counter!(HTTP_REQUESTS, "HTTP requests answered by the edge");
    metrics::describe_histogram!(
        HTTP_REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Seconds from a request's arrival to its answer"
    );
    metrics::describe_histogram!(
        BUS_REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Seconds one bus request took"
    );
    metrics::describe_counter!(BUS_REQUEST_ERRORS, "Bus requests that got no reply");
    metrics::describe_counter!(TOKEN_VERIFICATIONS, "Bearer tokens checked by the edge");
    metrics::describe_counter!(CACHE_LOOKUPS, "Cache lookups by cache and result");
    metrics::describe_gauge!(AUDIT_COPY_PENDING, "Audit entries not yet copied into the store");
    metrics::describe_counter!(AUDIT_COPIED, "Audit entries copied into the store");
    metrics::describe_gauge!(EVENT_OUTBOX_LENGTH, "Events waiting in the outbox");
    metrics::describe_counter!(COMPANY_SYNC_RUNS, "Company syncs run");
    metrics::describe_counter!(WEBHOOK_QUEUED, "Webhook deliveries queued");
    metrics::describe_counter!(WEBHOOK_ATTEMPTS, "Webhook delivery attempts by outcome");
    metrics::describe_histogram!(
        WEBHOOK_DELAY,
        "Seconds from a webhook delivery queued to accepted"
    );
    metrics::describe_gauge!(WEBHOOK_PENDING, "Webhook deliveries waiting");
    metrics::describe_histogram!(
        COMPANY_SYNC_DURATION,
        metrics::Unit::Seconds,
        "Seconds one company sync took"
    );
    metrics::describe_gauge!(
        COMPANY_SYNC_LAST_SUCCESS,
        "Unix time of the last successful company sync"
    );
}

/// Serves `/metrics` on `address` until `shutdown` and keeps the histograms folded; answers
/// the bound address, or `None` when this process already serves that address (another
/// component of the same process started it). Anything but `GET /metrics` is a 404.
pub async fn serve(
    address: SocketAddr,
    shutdown: Shutdown,
) -> std::io::Result<Option<(SocketAddr, tokio::task::JoinHandle<()>)>> {
    let handle = handle();
    if !SERVED.lock().get_or_insert_with(HashSet::new).insert(address) {
        return Ok(None);
    }
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(error) => {
            forget(address);
            return Err(error);
        }
    };
    let bound = listener.local_addr()?;
    // Boxed: an unboxed filter's future trips rustc's `Send` check inside `tokio::spawn`.
    let route = warp::path("metrics")
        .and(warp::path::end())
        .and(warp::get())
        .map(move || {
            warp::http::Response::builder()
                .header("content-type", TEXT_FORMAT)
                .body(handle.render())
                .expect("a static header makes a valid response")
        })
        .boxed();
    let task = tokio::spawn(async move {
        let upkeep = async {
            let mut interval = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                interval.tick().await;
                handle.run_upkeep();
            }
        };
        let stopped = shutdown.clone();
        let server = warp::serve(route)
            .incoming(listener)
            .graceful(async move { stopped.cancelled().await })
            .run();
        tokio::select! {
            () = server => {}
            () = upkeep => {}
        }
        forget(address);
    });
    Ok(Some((bound, task)))
}

fn forget(address: SocketAddr) {
    if let Some(served) = SERVED.lock().as_mut() {
        served.remove(&address);
    }
}

/// The hot paths' handles, looked up in the recorder once per label set and reused: a request
/// then costs an atomic add and a histogram push, not a registry look-up (with a `String` label)
/// per measurement. Label sets are bounded (route patterns × methods × statuses, subjects).
type HttpHandles = HashMap<(&'static str, &'static str, u16), (metrics::Counter, metrics::Histogram)>;
static HTTP_HANDLES: RwLock<Option<HttpHandles>> = RwLock::new(None);
static BUS_HANDLES: RwLock<Option<HashMap<&'static str, metrics::Histogram>>> = RwLock::new(None);

/// Whether this process has a recorder: without one nothing is recorded (and no handle is
/// cached, so a recorder installed later — another app in a test process — gets real ones).
fn recording() -> bool {
    HANDLE.get().is_some()
}

/// The edge answered a request.
pub fn http_request(method: &'static str, route: &'static str, status: u16, elapsed: Duration) {
    if !recording() {
        return;
    }
    let key = (method, route, status);
    let cached = HTTP_HANDLES.read().as_ref().and_then(|h| h.get(&key).cloned());
    let (counter, histogram) = match cached {
        Some(handles) => handles,
        None => {
            let labels = [
                metrics::Label::from_static_parts("method", method),
                metrics::Label::from_static_parts("route", route),
                metrics::Label::new("status", itoa::Buffer::new().format(status).to_owned()),
            ];
            let handles = (
                metrics::counter!(HTTP_REQUESTS, labels.iter()),
                metrics::histogram!(HTTP_REQUEST_DURATION, labels.iter()),
            );
            HTTP_HANDLES
                .write()
                .get_or_insert_with(HashMap::new)
                .insert(key, handles.clone());
            handles
        }
    };
    counter.increment(1);
    histogram.record(elapsed.as_secs_f64());
}

/// A bus request on `subject` ended after `elapsed`, with `error` (its kind) when no reply came.
pub fn bus_request(subject: &'static str, elapsed: Duration, error: Option<&'static str>) {
    if !recording() {
        return;
    }
    let cached = BUS_HANDLES.read().as_ref().and_then(|h| h.get(subject).cloned());
    let histogram = match cached {
        Some(histogram) => histogram,
        None => {
            let histogram = metrics::histogram!(BUS_REQUEST_DURATION, "subject" => subject);
            BUS_HANDLES
                .write()
                .get_or_insert_with(HashMap::new)
                .insert(subject, histogram.clone());
            histogram
        }
    };
    histogram.record(elapsed.as_secs_f64());
    if let Some(kind) = error {
        metrics::counter!(BUS_REQUEST_ERRORS, "subject" => subject, "kind" => kind).increment(1);
    }
}

/// The edge checked a bearer token of `kind` with `outcome` (see [`TOKEN_VERIFICATIONS`]).
pub fn token_verification(kind: &'static str, outcome: &'static str) {
    metrics::counter!(TOKEN_VERIFICATIONS, "kind" => kind, "outcome" => outcome).increment(1);
}

/// A lookup in `cache` found a fresh entry (`hit`) or not.
pub fn cache_lookup(cache: &'static str, hit: bool) {
    let result = if hit { "hit" } else { "miss" };
    metrics::counter!(CACHE_LOOKUPS, "cache" => cache, "result" => result).increment(1);
}

/// `entries` audit entries wait in the stream to be copied.
pub fn audit_copy_pending(entries: u64) {
    metrics::gauge!(AUDIT_COPY_PENDING).set(entries as f64);
}

/// The copier stored `entries` audit entries.
pub fn audit_copied(entries: usize) {
    metrics::counter!(AUDIT_COPIED).increment(entries as u64);
}

/// `events` wait in the outbox collection `outbox`.
pub fn event_outbox_length(outbox: &'static str, events: usize) {
    metrics::gauge!(EVENT_OUTBOX_LENGTH, "outbox" => outbox).set(events as f64);
}

/// A company sync of `kind` ran for `elapsed`; on success `finished` is its Unix time.
pub fn company_sync(kind: &'static str, elapsed: Duration, finished: Option<u64>) {
    let outcome = if finished.is_some() { "success" } else { "failure" };
    metrics::counter!(COMPANY_SYNC_RUNS, "kind" => kind, "outcome" => outcome).increment(1);
    metrics::histogram!(COMPANY_SYNC_DURATION, "kind" => kind).record(elapsed.as_secs_f64());
    if let Some(at) = finished {
        company_sync_succeeded_at(at);
    }
}

/// The last successful company sync finished at Unix time `at` (from the shared status, or
/// this process's own run).
pub fn company_sync_succeeded_at(at: u64) {
    metrics::gauge!(COMPANY_SYNC_LAST_SUCCESS).set(at as f64);
}

/// `deliveries` webhook deliveries were queued.
pub fn webhook_queued(deliveries: usize) {
    metrics::counter!(WEBHOOK_QUEUED).increment(deliveries as u64);
}

/// A webhook delivery attempt ended with `outcome`; a first attempt that was accepted took
/// `delay` from queued.
pub fn webhook_attempt(outcome: &'static str, delay: Option<Duration>) {
    metrics::counter!(WEBHOOK_ATTEMPTS, "outcome" => outcome).increment(1);
    if let Some(delay) = delay {
        metrics::histogram!(WEBHOOK_DELAY).record(delay.as_secs_f64());
    }
}

/// `deliveries` webhook deliveries wait.
pub fn webhook_pending(deliveries: u64) {
    metrics::gauge!(WEBHOOK_PENDING).set(deliveries as f64);
}
