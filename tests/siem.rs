//! SIEM export end to end, in both modes: the audit log reaches a syslog listener (parsed as
//! RFC 5424 by `syslog_loose`) and a Splunk-HEC-shaped HTTP receiver, every entry in sequence
//! with its chain hash, none skipped — also after the receiver failed for a while and after the
//! credential service restarted mid-backlog (mesh).

use crate::support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::Value;
use support::{Mode, TestApp, spawn_app_with};
use tokio::io::AsyncReadExt;
use ttscm::Component;
use warp::Filter;

const HEC_TOKEN: &str = "hec-token-for-tests";
const SECRET: &str = "siem-secret-never-exported";

/// What the two sinks received.
#[derive(Clone, Default)]
struct Received {
    syslog: Arc<Mutex<Vec<u8>>>,
    hec_bodies: Arc<Mutex<Vec<String>>>,
    hec_authorizations: Arc<Mutex<Vec<String>>>,
    /// While set, the HEC receiver answers 503 (and keeps nothing).
    hec_down: Arc<AtomicBool>,
}

/// Starts a TCP syslog listener and a HEC receiver; answers their addresses.
async fn start_sinks(received: &Received) -> (String, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let syslog_addr = listener.local_addr().expect("address").to_string();
    let syslog = received.syslog.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let syslog = syslog.clone();
            tokio::spawn(async move {
                let mut bytes = Vec::new();
                if socket.read_to_end(&mut bytes).await.is_ok() {
                    syslog.lock().extend_from_slice(&bytes);
                }
            });
        }
    });
    let (bodies, authorizations, down) = (
        received.hec_bodies.clone(),
        received.hec_authorizations.clone(),
        received.hec_down.clone(),
    );
    let route = warp::post()
        .and(warp::path!("services" / "collector" / "event"))
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::body::bytes())
        .map(move |authorization: Option<String>, body: bytes::Bytes| {
            if down.load(Ordering::SeqCst) {
                return warp::http::StatusCode::SERVICE_UNAVAILABLE;
            }
            authorizations.lock().push(authorization.unwrap_or_default());
            bodies
                .lock()
                .push(String::from_utf8(body.to_vec()).expect("UTF-8"));
            warp::http::StatusCode::OK
        });
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let address = http.local_addr().expect("address");
    tokio::spawn(warp::serve(route).incoming(http).run());
    (syslog_addr, format!("http://{address}/services/collector/event"))
}

/// `seq` → `hash` of the syslog records received, parsed as RFC 5424 (octet-counted frames).
fn syslog_records(received: &Received) -> Vec<(u64, String, Value)> {
    let bytes = received.syslog.lock().clone();
    let text = String::from_utf8(bytes).expect("UTF-8");
    let mut rest = text.as_str();
    let mut records = Vec::new();
    while !rest.is_empty() {
        let (length, after) = rest.split_once(' ').expect("an octet count");
        let length: usize = length.parse().expect("a length");
        let (frame, next) = after.split_at(length);
        rest = next;
        let message = syslog_loose::parse_message(frame, syslog_loose::Variant::RFC5424);
        assert_eq!(message.protocol, syslog_loose::Protocol::RFC5424(1), "{frame}");
        assert_eq!(message.appname, Some("ttscm"), "{frame}");
        let data = message
            .structured_data
            .iter()
            .find(|d| d.id == "ttscm@32473")
            .expect("TTSCM's structured data");
        let param = |name: &str| {
            data.params
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
                .expect("the parameter")
        };
        let entry: Value = serde_json::from_str(message.msg).expect("the entry as JSON");
        assert_eq!(Some(entry["action"].as_str().expect("action")), message.msgid);
        let seq: u64 = param("seq").parse().expect("a number");
        assert_eq!(entry["seq"], seq);
        assert_eq!(entry["prevHash"].as_str(), Some(param("prevHash").as_str()));
        records.push((seq, param("hash"), entry));
    }
    records
}

/// `seq` → `hash` of the HEC events received.
fn hec_records(received: &Received) -> Vec<(u64, String, Value)> {
    let mut records = Vec::new();
    for body in received.hec_bodies.lock().iter() {
        for line in body.lines() {
            let event: Value = serde_json::from_str(line).expect("a JSON event per line");
            assert_eq!(event["sourcetype"], "ttscm:audit");
            assert!(event["time"].as_f64().is_some_and(|t| t > 1.7e9), "{event}");
            let entry = event["event"].clone();
            records.push((
                entry["seq"].as_u64().expect("seq"),
                entry["hash"].as_str().expect("hash").to_owned(),
                entry,
            ));
        }
    }
    records
}

/// The log's entries as the API shows them: `seq` → `hash` (`None` while the credential service
/// does not answer, e.g. just after its restart).
async fn the_log(app: &TestApp) -> Option<BTreeMap<u64, String>> {
    let mut log = BTreeMap::new();
    for page in 1.. {
        let (status, body) = app
            .get(
                &format!("/v1/audit/events?rpp=100&page={page}"),
                Some(&app.admin_token),
            )
            .await;
        if status == 503 {
            return None;
        }
        assert_eq!(status, 200, "{body}");
        let items = body["data"].as_array().expect("entries");
        if items.is_empty() {
            break;
        }
        for item in items {
            log.insert(
                item["seq"].as_u64().expect("seq"),
                item["hash"].as_str().expect("hash").to_owned(),
            );
        }
    }
    Some(log)
}

/// Waits until `records` (repeats allowed) cover exactly the log's entries with the same hashes.
async fn wait_for_all(app: &TestApp, what: &str, records: impl Fn() -> Vec<(u64, String, Value)>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = the_log(app).await.unwrap_or_default();
        let mut got = BTreeMap::new();
        for (seq, hash, _) in records() {
            if let Some(before) = got.insert(seq, hash.clone()) {
                assert_eq!(before, hash, "{what}: seq {seq} sent twice with different hashes");
            }
        }
        if !log.is_empty() && got == log {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: received {:?}, the log has {:?}",
            got.keys().collect::<Vec<_>>(),
            log.keys().collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn spawn_with_sinks(mode: Mode, received: &Received) -> TestApp {
    let (syslog, hec) = start_sinks(received).await;
    spawn_app_with(mode, |settings| {
        settings.audit.syslog_addr = Some(syslog);
        settings.audit.hec_url = Some(hec);
        settings.audit.hec_token = Some(HEC_TOKEN.to_owned().into());
        settings.audit.export_interval_ms = 50;
        settings.audit.export_batch = 3;
    })
    .await
}

async fn the_audit_log_reaches_syslog_and_hec_whole_and_in_order(mode: Mode) {
    let received = Received::default();
    received.hec_down.store(true, Ordering::SeqCst);
    let app = spawn_with_sinks(mode, &received).await;
    let seeded = app.seed_aws_credential("SIEM Co", SECRET).await;
    let (status, _) = app
        .get(
            &format!("/v1/credential/credentials/{}/secure-values", seeded.id),
            Some(&app.admin_token),
        )
        .await;
    assert_eq!(status, 200);

    // Syslog takes everything while the HEC receiver is down; HEC catches up once it is back.
    wait_for_all(&app, "syslog", || syslog_records(&received)).await;
    assert!(received.hec_bodies.lock().is_empty());
    received.hec_down.store(false, Ordering::SeqCst);
    wait_for_all(&app, "HEC", || hec_records(&received)).await;

    let records = syslog_records(&received);
    assert!(
        records
            .iter()
            .any(|(_, _, entry)| entry["action"] == "credential.revealed"),
        "the reveal is exported"
    );
    // Continuity: each record's prevHash is the previous record's hash.
    let mut previous: Option<String> = None;
    let in_order: BTreeMap<u64, (String, Value)> = hec_records(&received)
        .into_iter()
        .map(|(seq, hash, entry)| (seq, (hash, entry)))
        .collect();
    for (seq, (hash, entry)) in &in_order {
        if let Some(previous) = &previous {
            assert_eq!(entry["prevHash"].as_str(), Some(previous.as_str()), "seq {seq}");
        }
        previous = Some(hash.clone());
    }
    assert!(
        received
            .hec_authorizations
            .lock()
            .iter()
            .all(|a| a == &format!("Splunk {HEC_TOKEN}"))
    );
    let everything = format!(
        "{}{}",
        String::from_utf8_lossy(&received.syslog.lock()),
        received.hec_bodies.lock().join("")
    );
    assert!(!everything.contains(SECRET), "no value is exported");
}

/// Mesh: the credential service restarts while the HEC receiver is down and entries wait; once
/// the receiver is back every entry arrives — the cursor is durable, nothing is skipped.
#[tokio::test]
async fn the_export_resumes_after_a_restart_without_a_gap() {
    let received = Received::default();
    let mut app = spawn_with_sinks(Mode::Mesh, &received).await;
    let first = app.seed_aws_credential("Before Co", "a").await;
    for n in 0..3 {
        let (status, _) = app
            .patch(
                &format!("/v1/credential/credentials/{}", first.id),
                &app.admin_token,
                &serde_json::json!({"name": format!("Before {n}")}),
            )
            .await;
        assert_eq!(status, 200);
    }
    wait_for_all(&app, "HEC", || hec_records(&received)).await;
    received.hec_down.store(true, Ordering::SeqCst);
    let delivered = hec_records(&received);
    let last_delivered = delivered.iter().map(|(seq, _, _)| *seq).max().expect("some");
    for n in 0..4 {
        let (status, _) = app
            .patch(
                &format!("/v1/credential/credentials/{}", first.id),
                &app.admin_token,
                &serde_json::json!({"name": format!("Renamed {n}")}),
            )
            .await;
        assert_eq!(status, 200);
    }
    app.restart(Component::Credential);
    app.wait_ready().await;
    received.hec_down.store(false, Ordering::SeqCst);
    wait_for_all(&app, "HEC after the restart", || hec_records(&received)).await;
    wait_for_all(&app, "syslog after the restart", || syslog_records(&received)).await;
    // The restarted service went on from its stored cursor: at most the one batch whose cursor
    // move was still under way went again (at least once) — a service starting over would have
    // sent every entry delivered before a second time.
    assert!(delivered.len() >= 5, "{}", delivered.len());
    let again = hec_records(&received)
        .iter()
        .filter(|(seq, _, _)| *seq <= last_delivered)
        .count();
    assert!(
        again <= delivered.len() + 3,
        "{again} records up to {last_delivered}, {} before the restart",
        delivered.len()
    );
}

both_modes!(the_audit_log_reaches_syslog_and_hec_whole_and_in_order);
