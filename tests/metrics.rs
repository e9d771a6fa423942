//! Prometheus metrics end to end: `/metrics` on `TTSCM_METRICS_ADDR`, read with a real
//! Prometheus text-format parser (`prometheus-parse`), moves when requests are made — by route
//! pattern and status, per bus subject, per token check — and is not served on the API port.
//!
//! The recorder is one per process, so every app of this test binary records into the same
//! one: the tests compare a scrape after their requests with one before, and hold [`SERIAL`]
//! so no other test's requests land between the two.

mod support;
mod webhook_support;

use std::net::SocketAddr;
use std::time::Duration;

use prometheus_parse::{Sample, Scrape, Value};
use support::{Mode, TestApp, spawn_app_with};
use ttscm_runtime::metrics;

/// Held by each test from spawn to its last scrape (see the module documentation).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The reveal route's pattern: what its label says, never the concrete path.
const REVEAL_ROUTE: &str = "/v1/credential/credentials/:id/secure-values";

/// `mode` with metrics on a free loopback port; answers the app and the metrics address.
async fn app_with_metrics(
    mode: Mode,
    configure: impl FnOnce(&mut ttscm_runtime::Settings),
) -> (TestApp, SocketAddr) {
    let address = SocketAddr::from(([127, 0, 0, 1], ttscm_testkit::free_port()));
    let app = spawn_app_with(mode, |settings| {
        settings.metrics_addr = Some(address);
        configure(settings);
    })
    .await;
    (app, address)
}

/// One scrape of `address`, parsed; also its text.
async fn scrape(app: &TestApp, address: SocketAddr) -> (Scrape, String) {
    let response = app
        .http
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .expect("the metrics endpoint answers");
    assert_eq!(response.status(), 200);
    assert!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/plain; version=0.0.4")),
        "the Prometheus text format's content type"
    );
    let text = response.text().await.expect("a text body");
    let parsed =
        Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).expect("the Prometheus text format");
    (parsed, text)
}

/// Whether `sample` is `name` and carries every label of `labels`.
fn matches(sample: &Sample, name: &str, labels: &[(&str, &str)]) -> bool {
    sample.metric == name && labels.iter().all(|(k, v)| sample.labels.get(k) == Some(*v))
}

/// The sum of the counters or gauges `name` with `labels` (0 when there is none yet).
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| matches(s, name, labels))
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => panic!("{name} is not a counter or a gauge"),
        })
        .sum()
}

/// How many observations the histograms `name` with `labels` hold (their `+Inf` buckets), and
/// how many buckets each has.
fn observations(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> (f64, usize) {
    let mut count = 0.0;
    let mut buckets = usize::MAX;
    for sample in scrape.samples.iter().filter(|s| matches(s, name, labels)) {
        let Value::Histogram(counts) = &sample.value else {
            panic!("{name} is not a histogram")
        };
        let inf = counts
            .iter()
            .find(|b| b.less_than.is_infinite())
            .expect("a histogram has a +Inf bucket");
        count += inf.count;
        buckets = buckets.min(counts.len());
    }
    (count, if buckets == usize::MAX { 0 } else { buckets })
}

async fn requests_move_the_counters_by_route_pattern_status_subject_and_token_check(mode: Mode) {
    let _serial = SERIAL.lock().await;
    let (app, address) = app_with_metrics(mode, |_| {}).await;
    let seeded = app.seed_aws_credential("Metrics Co", "metrics-secret").await;
    let reveal = format!("/v1/credential/credentials/{}/secure-values", seeded.id);
    let unknown = format!(
        "/v1/credential/credentials/{}/secure-values",
        ttscm_runtime::ids::new_id()
    );
    // A first reveal: the token and the credential are cached from here on.
    app.assert_get(&reveal, &app.admin_token, 200).await;
    let (before, _) = scrape(&app, address).await;

    app.assert_get(&reveal, &app.admin_token, 200).await;
    app.assert_get(&reveal, &app.admin_token, 200).await;
    app.assert_get(&unknown, &app.admin_token, 404).await;
    assert_eq!(app.get_status(&reveal, None).await, 401, "no sign-in");
    assert_eq!(
        app.get_status("/v1/no-such-area/things", Some(&app.admin_token))
            .await,
        404
    );
    let (after, text) = scrape(&app, address).await;

    let moved =
        |name: &str, labels: &[(&str, &str)]| value(&after, name, labels) - value(&before, name, labels);
    let route = |status: &'static str| [("method", "GET"), ("route", REVEAL_ROUTE), ("status", status)];
    assert_eq!(moved(metrics::HTTP_REQUESTS, &route("200")), 2.0, "two reveals");
    assert_eq!(
        moved(metrics::HTTP_REQUESTS, &route("404")),
        1.0,
        "one unknown credential"
    );
    assert_eq!(
        moved(metrics::HTTP_REQUESTS, &route("401")),
        1.0,
        "one without a token"
    );
    assert_eq!(
        moved(
            metrics::HTTP_REQUESTS,
            &[("route", "unmatched"), ("status", "404")]
        ),
        1.0,
        "a path no route matches counts under `unmatched`"
    );

    let (revealed_before, _) = observations(&before, metrics::HTTP_REQUEST_DURATION, &route("200"));
    let (revealed_after, buckets) = observations(&after, metrics::HTTP_REQUEST_DURATION, &route("200"));
    assert_eq!(revealed_after - revealed_before, 2.0, "two reveals timed");
    assert!(
        buckets > 10,
        "the latency histogram has its buckets, not a summary: {buckets}"
    );

    let subject = [("subject", ttscm_contract::subjects::CREDENTIAL_REVEAL)];
    let (bus_before, _) = observations(&before, metrics::BUS_REQUEST_DURATION, &subject);
    let (bus_after, _) = observations(&after, metrics::BUS_REQUEST_DURATION, &subject);
    assert_eq!(
        bus_after - bus_before,
        3.0,
        "three reveals went over the bus (the one without a token did not)"
    );
    assert_eq!(
        moved(metrics::BUS_REQUEST_ERRORS, &subject),
        0.0,
        "a 404 is an answer, not a bus error"
    );

    assert_eq!(
        moved(metrics::TOKEN_VERIFICATIONS, &[("kind", "api_token")]),
        3.0,
        "three requests with the API token"
    );
    assert_eq!(
        moved(
            metrics::TOKEN_VERIFICATIONS,
            &[("kind", "api_token"), ("outcome", "cached")]
        ),
        3.0,
        "the token was resolved by the first reveal and cached"
    );
    assert_eq!(
        moved(
            metrics::TOKEN_VERIFICATIONS,
            &[("kind", "none"), ("outcome", "refused")]
        ),
        1.0
    );
    // Hit or miss depends on the cache's 2 s and on writes meanwhile; each reveal looks.
    assert_eq!(
        moved(metrics::CACHE_LOOKUPS, &[("cache", "credential")]),
        3.0,
        "each reveal looked in the credential cache"
    );

    assert!(!text.contains(&seeded.id), "no id in any label");
    assert!(!text.contains(&app.admin_token), "no token in any label");
}

async fn metrics_are_served_on_their_own_port_and_not_on_the_api_port(mode: Mode) {
    let _serial = SERIAL.lock().await;
    let (app, address) = app_with_metrics(mode, |_| {}).await;
    assert!(
        !app.address.ends_with(&format!(":{}", address.port())),
        "the metrics port is not the API port"
    );
    assert_eq!(
        app.get_status("/metrics", None).await,
        404,
        "no /metrics on the API port"
    );
    assert_eq!(
        app.get_status("/metrics", Some(&app.admin_token)).await,
        404,
        "not even for an admin"
    );
    let other = app
        .http
        .get(format!("http://{address}/v1/credential/credentials"))
        .send()
        .await
        .expect("the metrics endpoint answers");
    assert_eq!(other.status(), 404, "the metrics port serves /metrics only");
    scrape(&app, address).await;
}

both_modes!(
    requests_move_the_counters_by_route_pattern_status_subject_and_token_check,
    metrics_are_served_on_their_own_port_and_not_on_the_api_port,
);

#[tokio::test]
async fn the_mesh_reports_how_many_audit_entries_wait_to_be_copied() {
    let _serial = SERIAL.lock().await;
    let (app, address) = app_with_metrics(Mode::Mesh, |_| {}).await;
    // The copier's process samples the stream when it starts, then every 15 s.
    let gauge = ttscm_testkit::eventually(Duration::from_secs(10), || async {
        let (scraped, _) = scrape(&app, address).await;
        scraped
            .samples
            .iter()
            .find(|s| s.metric == metrics::AUDIT_COPY_PENDING)
            .map(|s| s.value.clone())
    })
    .await;
    assert!(
        matches!(gauge, Some(Value::Gauge(v)) if v >= 0.0),
        "the pending gauge is there: {gauge:?}"
    );
}

#[tokio::test]
async fn a_company_sync_reports_its_success_time_and_duration() {
    let _serial = SERIAL.lock().await;
    let fake = ttscm_testkit::connectwise::ConnectWiseFake::start(vec![ttscm_testkit::connectwise::company(
        1,
        "2026-01-01T00:00:00Z",
    )])
    .await;
    let (app, address) = app_with_metrics(Mode::Embedded, |settings| fake.configure(settings)).await;
    let success = [("kind", "full"), ("outcome", "success")];
    let synced = ttscm_testkit::eventually(Duration::from_secs(10), || async {
        let (scraped, _) = scrape(&app, address).await;
        // Only this test of the binary syncs companies.
        (value(&scraped, metrics::COMPANY_SYNC_RUNS, &success) >= 1.0).then_some(scraped)
    })
    .await
    .expect("the first full sync is counted");
    let last = value(&synced, metrics::COMPANY_SYNC_LAST_SUCCESS, &[]);
    let now = ttscm_runtime::clock::unix_now() as f64;
    assert!(
        now - last < 60.0 && last <= now,
        "the last success is now: {last} vs {now}"
    );
    let (runs, buckets) = observations(&synced, metrics::COMPANY_SYNC_DURATION, &[("kind", "full")]);
    assert!(
        runs >= 1.0 && buckets > 5,
        "the sync's duration is a histogram: {runs}, {buckets}"
    );
}

/// Webhook deliveries move their counters: queued, delivered and failed attempts (by
/// outcome), the first-attempt delay histogram and the pending gauge.
#[tokio::test]
async fn webhook_deliveries_and_failures_are_counted() {
    let _serial = SERIAL.lock().await;
    let (app, address) = app_with_metrics(Mode::Embedded, |settings| {
        settings.webhook.allow_private = true;
        settings.webhook.allow_http = true;
    })
    .await;
    let (before, _) = scrape(&app, address).await;
    let receiver = webhook_support::Receiver::start();
    let register = |url: String| {
        let app = &app;
        async move {
            let (status, body) = app
                .post(
                    "/v1/webhook/endpoints",
                    &app.admin_token,
                    &serde_json::json!({"url": url, "eventTypes": ["credential_type.*"]}),
                )
                .await;
            assert_eq!(status, 201, "{body}");
        }
    };
    register(receiver.url()).await;
    // A second endpoint nobody listens at: its attempts fail.
    register(format!("http://127.0.0.1:{}/hook", ttscm_testkit::free_port())).await;
    app.create_aws_type(None).await;
    let after = ttscm_testkit::eventually(Duration::from_secs(10), || async {
        let (scraped, _) = scrape(&app, address).await;
        let delivered = value(&scraped, metrics::WEBHOOK_ATTEMPTS, &[("outcome", "delivered")])
            - value(&before, metrics::WEBHOOK_ATTEMPTS, &[("outcome", "delivered")]);
        let failed = value(&scraped, metrics::WEBHOOK_ATTEMPTS, &[("outcome", "failed")])
            - value(&before, metrics::WEBHOOK_ATTEMPTS, &[("outcome", "failed")]);
        (delivered >= 1.0 && failed >= 1.0).then_some(scraped)
    })
    .await
    .expect("one delivered and one failed attempt are counted");
    assert_eq!(
        value(&after, metrics::WEBHOOK_QUEUED, &[]) - value(&before, metrics::WEBHOOK_QUEUED, &[]),
        2.0,
        "one event queued for each endpoint"
    );
    let (delays, buckets) = observations(&after, metrics::WEBHOOK_DELAY, &[]);
    assert!(
        delays >= 1.0 && buckets > 5,
        "the delay is a histogram: {delays}, {buckets}"
    );
    assert!(
        after.samples.iter().any(|s| s.metric == metrics::WEBHOOK_PENDING),
        "the pending gauge is there"
    );
}
