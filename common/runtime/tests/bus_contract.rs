//! The bus contract: one suite, run against the in-process adapter and against NATS on a real
//! nats-server.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use ttscm_contract::{ErrorCode, Operation, WireError};
use ttscm_runtime::Shutdown;
use ttscm_runtime::bus::{Bus, BusError, Headers, inproc::InProcBus, nats::NatsBus};
use ttscm_runtime::service::{BusClient, CallContext, serve_fn};
use ttscm_testkit::NatsServer;

/// A test operation `$name { $field: String }` on `$subject`, replying a string.
macro_rules! string_operation {
    ($name:ident { $field:ident }, $subject:literal) => {
        #[derive(Debug, Clone, Serialize, Deserialize)]
        struct $name {
            $field: String,
        }

        impl Operation for $name {
            const SUBJECT: &'static str = $subject;
            type Reply = String;
        }
    };
}

string_operation!(Echo { text }, "ttscm.test.v1.echo");

enum Adapter {
    InProc,
    Nats,
}

/// A bus of the chosen kind, plus what keeps its server alive.
async fn bus(adapter: &Adapter) -> (Bus, Option<NatsServer>) {
    ttscm_testkit::init_tracing();
    match adapter {
        Adapter::InProc => (Bus::InProc(InProcBus::new()), None),
        Adapter::Nats => {
            let server = NatsServer::start();
            let nats = NatsBus::connect(&server.url(), "contract-test", &Default::default())
                .await
                .expect("connects");
            assert!(
                nats.wait_connected(Duration::from_secs(5)).await,
                "connected to nats-server"
            );
            (Bus::Nats(Box::new(nats)), Some(server))
        }
    }
}

/// A second connection to the same bus (for NATS a new client; in-process the same bus).
async fn second(bus: &Bus, server: &Option<NatsServer>) -> Bus {
    match (bus, server) {
        (Bus::Nats(_), Some(server)) => {
            let nats = NatsBus::connect(&server.url(), "contract-test-2", &Default::default())
                .await
                .expect("connects");
            assert!(nats.wait_connected(Duration::from_secs(5)).await);
            Bus::Nats(Box::new(nats))
        }
        _ => bus.clone(),
    }
}

async fn echo_server(bus: &Bus, shutdown: &Shutdown, tag: &'static str) {
    serve_fn::<Echo, _, _>(bus, "echo", shutdown.clone(), move |_ctx, op: Echo| async move {
        if op.text == "boom" {
            panic!("the handler panics on purpose");
        }
        Ok(format!("{tag}:{}", op.text))
    })
    .await
    .expect("serves");
}

/// `caller` calls `echo` with `text`.
async fn echo(caller: &BusClient, text: &str) -> Result<String, WireError> {
    caller
        .call(&CallContext::new(None), &Echo { text: text.into() })
        .await
}

fn client(bus: &Bus) -> BusClient {
    BusClient::new(bus.clone(), Duration::from_secs(2))
}

async fn a_request_gets_its_reply(adapter: Adapter) {
    let (bus, server) = bus(&adapter).await;
    let shutdown = Shutdown::new();
    echo_server(&bus, &shutdown, "a").await;
    let caller = second(&bus, &server).await;
    let reply = echo(&client(&caller), "hi").await;
    assert_eq!(reply, Ok("a:hi".to_owned()));
    shutdown.cancel();
}

async fn a_queue_group_spreads_requests_over_its_members(adapter: Adapter) {
    let (bus, server) = bus(&adapter).await;
    let shutdown = Shutdown::new();
    echo_server(&bus, &shutdown, "one").await;
    let other = second(&bus, &server).await;
    echo_server(&other, &shutdown, "two").await;
    let caller = client(&bus);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for i in 0..60 {
        let reply = echo(&caller, &i.to_string()).await.expect("answered");
        *seen
            .entry(reply.split(':').next().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    assert_eq!(seen.values().sum::<usize>(), 60);
    assert!(
        seen.get("one").copied().unwrap_or(0) > 0 && seen.get("two").copied().unwrap_or(0) > 0,
        "{seen:?}"
    );
    shutdown.cancel();
}

async fn a_request_nobody_serves_fails_at_once(adapter: Adapter) {
    let (bus, _server) = bus(&adapter).await;
    let started = Instant::now();
    let error = bus
        .request(
            "ttscm.nobody.v1.here",
            Headers::new(),
            Bytes::from_static(b"{}"),
            Duration::from_secs(5),
        )
        .await
        .expect_err("nobody answers");
    assert!(matches!(error, BusError::NoResponders { .. }), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "took {:?}",
        started.elapsed()
    );
}

async fn a_request_times_out_at_its_deadline(adapter: Adapter) {
    let (bus, _server) = bus(&adapter).await;
    // A member that takes requests and never answers.
    let mut requests = bus.serve("ttscm.slow.v1.never", "slow").await.expect("serves");
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(request) = requests.next().await {
            held.push(request);
        }
    });
    let started = Instant::now();
    let error = bus
        .request(
            "ttscm.slow.v1.never",
            Headers::new(),
            Bytes::new(),
            Duration::from_millis(300),
        )
        .await
        .expect_err("never answered");
    let elapsed = started.elapsed();
    assert!(matches!(error, BusError::TimedOut { .. }), "{error:?}");
    assert!(
        elapsed >= Duration::from_millis(290) && elapsed < Duration::from_millis(1500),
        "{elapsed:?}"
    );
    holder.abort();
}

async fn wildcard_subscriptions_get_matching_messages_only(adapter: Adapter) {
    let (bus, server) = bus(&adapter).await;
    let mut subscription = bus.subscribe("ttscm.events.>").await.expect("subscribes");
    let publisher = second(&bus, &server).await;
    if let Bus::Nats(nats) = &bus {
        nats.client().flush().await.expect("subscription registered");
    }
    publisher
        .publish("ttscm.other.thing", Headers::new(), Bytes::from_static(b"no"))
        .await
        .expect("published");
    publisher
        .publish(
            "ttscm.events.credential.created",
            Headers::new(),
            Bytes::from_static(b"yes"),
        )
        .await
        .expect("published");
    let message = tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .expect("a message arrives")
        .expect("subscription open");
    assert_eq!(message.subject, "ttscm.events.credential.created");
    assert_eq!(&message.payload[..], b"yes");
}

/// A publisher may skip a message only when it could reach nobody: never over NATS (streams and
/// other processes), in process exactly while no open subscription matches.
async fn a_message_may_be_skipped_only_when_nobody_could_get_it(adapter: Adapter) {
    let (bus, _server) = bus(&adapter).await;
    let subject = "ttscm.events.credential.revealed";
    let nobody = !bus.may_have_subscribers(subject);
    assert_eq!(nobody, matches!(adapter, Adapter::InProc));
    let other = bus.subscribe("ttscm.events.company.>").await.expect("subscribes");
    assert_eq!(
        !bus.may_have_subscribers(subject),
        nobody,
        "a pattern that does not match"
    );
    let matching = bus
        .subscribe("ttscm.events.*.revealed")
        .await
        .expect("subscribes");
    assert!(bus.may_have_subscribers(subject));
    drop(matching);
    assert_eq!(
        !bus.may_have_subscribers(subject),
        nobody,
        "a dropped subscription"
    );
    drop(other);
}

async fn headers_survive_the_round_trip(adapter: Adapter) {
    let (bus, server) = bus(&adapter).await;
    let mut requests = bus.serve("ttscm.test.v1.headers", "h").await.expect("serves");
    tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            let headers = request.headers.clone();
            request.respond(headers, Bytes::new()).await.expect("replies");
        }
    });
    let caller = second(&bus, &server).await;
    let mut headers = Headers::new();
    headers.insert("ttscm-request-id", "req-1");
    headers.insert(
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    );
    let reply = caller
        .request(
            "ttscm.test.v1.headers",
            headers.clone(),
            Bytes::new(),
            Duration::from_secs(2),
        )
        .await
        .expect("answered");
    assert_eq!(reply.headers.get("ttscm-request-id"), Some("req-1"));
    assert_eq!(reply.headers.get("traceparent"), headers.get("traceparent"));
}

async fn a_panicking_responder_fails_one_request_and_keeps_serving(adapter: Adapter) {
    let (bus, _server) = bus(&adapter).await;
    let shutdown = Shutdown::new();
    echo_server(&bus, &shutdown, "p").await;
    let caller = client(&bus);
    let error = echo(&caller, "boom").await.expect_err("panicked");
    assert_eq!(error, WireError::internal());
    let reply = echo(&caller, "after").await;
    assert_eq!(reply, Ok("p:after".to_owned()));
    shutdown.cancel();
}

async fn an_oversized_payload_is_refused(adapter: Adapter) {
    let (bus, _server) = bus(&adapter).await;
    let big = Bytes::from(vec![b'x'; 2 * 1024 * 1024]);
    let error = bus
        .request("ttscm.test.v1.big", Headers::new(), big, Duration::from_secs(1))
        .await
        .expect_err("too big");
    assert!(matches!(error, BusError::PayloadTooLarge { .. }), "{error:?}");
}

async fn a_stopped_server_stops_taking_requests(adapter: Adapter) {
    let (bus, _server) = bus(&adapter).await;
    let shutdown = Shutdown::new();
    echo_server(&bus, &shutdown, "s").await;
    let caller = client(&bus);
    assert!(echo(&caller, "x").await.is_ok());
    shutdown.cancel();
    let quick = BusClient::new(bus.clone(), Duration::from_millis(300));
    let error = ttscm_testkit::eventually(Duration::from_secs(5), || async {
        echo(&quick, "x")
            .await
            .err()
            .filter(|e| e.code == ErrorCode::Unavailable)
    })
    .await;
    assert!(
        error.is_some(),
        "requests fail with 503 once the only server stopped"
    );
}

string_operation!(Slow { tag }, "ttscm.test.v1.slow");

/// A handler is never cut off half-way: not when its caller's deadline passes, not when the
/// caller goes away (in-process, the caller's own task runs it).
async fn a_handler_finishes_after_its_caller_gave_up(adapter: Adapter) {
    let (bus, server) = bus(&adapter).await;
    let shutdown = Shutdown::new();
    let finished = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let record = finished.clone();
    serve_fn::<Slow, _, _>(&bus, "slow", shutdown.clone(), move |_ctx, op: Slow| {
        let record = record.clone();
        async move {
            record
                .lock()
                .expect("not poisoned")
                .push(format!("started:{}", op.tag));
            tokio::time::sleep(Duration::from_millis(400)).await;
            record.lock().expect("not poisoned").push(op.tag.clone());
            Ok(op.tag)
        }
    })
    .await
    .expect("serves");
    let caller = second(&bus, &server).await;
    let quick = BusClient::new(caller.clone(), Duration::from_millis(100));
    let error = quick
        .call(
            &CallContext::new(None),
            &Slow {
                tag: "timed-out".into(),
            },
        )
        .await
        .expect_err("the deadline passes first");
    assert_eq!(error.code, ErrorCode::Timeout, "{error:?}");
    let patient = client(&caller);
    let abandoned = tokio::spawn(async move {
        patient
            .call(
                &CallContext::new(None),
                &Slow {
                    tag: "abandoned".into(),
                },
            )
            .await
    });
    let started = ttscm_testkit::eventually(Duration::from_secs(3), || async {
        let seen = finished.lock().expect("not poisoned").clone();
        seen.contains(&"started:abandoned".to_owned()).then_some(())
    })
    .await;
    assert!(started.is_some(), "the second call reached its handler");
    abandoned.abort();
    let done = ttscm_testkit::eventually(Duration::from_secs(3), || async {
        let seen = finished.lock().expect("not poisoned").clone();
        (seen.contains(&"timed-out".to_owned()) && seen.contains(&"abandoned".to_owned())).then_some(())
    })
    .await;
    assert!(
        done.is_some(),
        "both handlers ran to the end: {:?}",
        finished.lock()
    );
    shutdown.cancel();
}

ttscm_testkit::for_each_variant!(
    Adapter { in_process: InProc, nats: Nats } =>
    a_request_gets_its_reply,
    a_queue_group_spreads_requests_over_its_members,
    a_request_nobody_serves_fails_at_once,
    a_request_times_out_at_its_deadline,
    wildcard_subscriptions_get_matching_messages_only,
    a_message_may_be_skipped_only_when_nobody_could_get_it,
    headers_survive_the_round_trip,
    a_panicking_responder_fails_one_request_and_keeps_serving,
    an_oversized_payload_is_refused,
    a_stopped_server_stops_taking_requests,
    a_handler_finishes_after_its_caller_gave_up,
    a_reply_many_times_the_payload_limit_arrives_whole,
);

#[tokio::test]
async fn a_nats_restart_fails_fast_then_recovers_by_itself() {
    let (bus, server) = bus(&Adapter::Nats).await;
    let mut server = server.expect("nats adapter has a server");
    let shutdown = Shutdown::new();
    echo_server(&bus, &shutdown, "r").await;
    let caller = client(&bus);
    assert!(echo(&caller, "1").await.is_ok());
    server.stop();
    let started = Instant::now();
    let error = ttscm_testkit::eventually(Duration::from_secs(5), || async {
        echo(&caller, "2").await.err()
    })
    .await
    .expect("fails while down");
    assert!(
        matches!(error.code, ErrorCode::Unavailable | ErrorCode::Timeout),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    server.restart();
    let reply = ttscm_testkit::eventually(Duration::from_secs(15), || async {
        echo(&caller, "3").await.ok()
    })
    .await;
    assert_eq!(reply.as_deref(), Some("r:3"));
    shutdown.cancel();
}

// Replies larger than the NATS server's `max_payload` travel in chunks (`bus::nats::chunks`):
// tested on a nats-server whose limit is small, so a few hundred kilobytes make many chunks.

/// The nats-server limit these tests run with.
const SMALL_MAX_PAYLOAD: usize = 16 * 1024;

/// A nats-server with `max_payload` of [`SMALL_MAX_PAYLOAD`] (the configuration file's
/// directory lives as long as the server, which rereads it on restart).
fn small_payload_server() -> (NatsServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("nats.conf");
    std::fs::write(&path, format!("max_payload: {SMALL_MAX_PAYLOAD}\n"))
        .expect("the configuration is written");
    let server = NatsServer::start_with(&["-c", path.to_str().expect("a UTF-8 path")]);
    (server, dir)
}

/// A connection to `server` accepting replies of at most `max_reply_bytes`.
async fn nats_bus(server: &NatsServer, max_reply_bytes: u64) -> Bus {
    ttscm_testkit::init_tracing();
    let settings = ttscm_runtime::settings::NatsSettings {
        max_reply_bytes,
        ..Default::default()
    };
    let nats = NatsBus::connect(&server.url(), "chunk-test", &settings)
        .await
        .expect("connects");
    assert!(nats.wait_connected(Duration::from_secs(5)).await, "connected");
    assert_eq!(nats.client().server_info().max_payload, SMALL_MAX_PAYLOAD);
    Bus::Nats(Box::new(nats))
}

/// `len` bytes that differ from place to place (a chunk out of order or missing shows).
fn patterned(len: usize, seed: usize) -> String {
    let mut text = String::with_capacity(len + 16);
    let mut i = seed;
    while text.len() < len {
        text.push_str(&format!("{i:08x}|"));
        i += 1;
    }
    text.truncate(len);
    text
}

string_operation!(Large { spec }, "ttscm.test.v1.large");

/// Serves [`Large`]: `spec` is `<length>:<seed>`, the reply is [`patterned`] text of that length.
async fn large_server(bus: &Bus, shutdown: &Shutdown) {
    serve_fn::<Large, _, _>(bus, "large", shutdown.clone(), |_ctx, op: Large| async move {
        let (len, seed) = op.spec.split_once(':').expect("length:seed");
        Ok(patterned(
            len.parse().expect("a length"),
            seed.parse().expect("a seed"),
        ))
    })
    .await
    .expect("serves");
}

/// Waits until the large service answers `caller` (over NATS, the replier's subscription
/// reaches the server a moment after `serve_fn` returns; a request from another connection
/// before that finds no responder).
async fn answering(caller: &BusClient) {
    let answered = ttscm_testkit::eventually(Duration::from_secs(5), || async {
        call_large(caller, 1, 0).await.ok()
    })
    .await;
    assert!(answered.is_some(), "the large service answers");
}

async fn call_large(caller: &BusClient, len: usize, seed: usize) -> Result<String, WireError> {
    caller
        .call(
            &CallContext::new(None),
            &Large {
                spec: format!("{len}:{seed}"),
            },
        )
        .await
}

/// In both adapters a reply many times NATS' `max_payload` arrives whole; over NATS it comes in
/// chunks, and concurrent chunked replies (with small ones between them) each reach their own
/// request.
async fn a_reply_many_times_the_payload_limit_arrives_whole(adapter: Adapter) {
    let (_server, _dir, replier, requester) = match adapter {
        Adapter::InProc => {
            let bus = Bus::InProc(InProcBus::new());
            (None, None, bus.clone(), bus)
        }
        Adapter::Nats => {
            let (server, dir) = small_payload_server();
            let replier = nats_bus(&server, 64 * 1024 * 1024).await;
            let requester = nats_bus(&server, 64 * 1024 * 1024).await;
            (Some(server), Some(dir), replier, requester)
        }
    };
    let shutdown = Shutdown::new();
    large_server(&replier, &shutdown).await;
    let caller = BusClient::new(requester, Duration::from_secs(10));
    answering(&caller).await;
    let len = 7 * SMALL_MAX_PAYLOAD + 123;
    let reply = call_large(&caller, len, 1).await.expect("answered");
    assert_eq!(reply.len(), len);
    assert!(reply == patterned(len, 1), "the reply arrived changed");
    let calls = (0..12).map(|i| {
        let caller = caller.clone();
        // Every other one fits one message.
        let len = if i % 2 == 0 {
            3 * SMALL_MAX_PAYLOAD + i
        } else {
            100 + i
        };
        async move { (len, i, call_large(&caller, len, i).await) }
    });
    for (len, seed, reply) in futures_util::future::join_all(calls).await {
        let reply = reply.expect("answered");
        assert!(reply == patterned(len, seed), "reply {seed} arrived changed");
    }
    shutdown.cancel();
}

/// Serves `subject` with raw replies: the request's payload is the reply's length in bytes;
/// after each reply the replier publishes `sentinel` (after every chunk, as NATS keeps one
/// publisher's order).
async fn raw_length_server(bus: &Bus, subject: &str, sentinel: &'static str) {
    let mut requests = bus.serve(subject, "raw").await.expect("serves");
    let publisher = bus.clone();
    tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            let len: usize = std::str::from_utf8(&request.payload)
                .expect("text")
                .parse()
                .expect("a length");
            let body = Bytes::from(patterned(len, len).into_bytes());
            request.respond(Headers::new(), body).await.expect("replies");
            publisher
                .publish(sentinel, Headers::new(), Bytes::new())
                .await
                .expect("published");
        }
    });
}

#[tokio::test]
async fn a_reply_exactly_at_the_payload_limit_is_one_message_and_one_byte_more_is_two() {
    let (server, _dir) = small_payload_server();
    let replier = nats_bus(&server, 1024 * 1024).await;
    let requester = nats_bus(&server, 1024 * 1024).await;
    raw_length_server(&replier, "ttscm.test.v1.raw", "_INBOX.sentinel").await;
    // Watches every message to the requester's inbox.
    let watcher = async_nats::connect(server.url()).await.expect("connects");
    let mut watched = watcher.subscribe("_INBOX.>").await.expect("subscribes");
    watcher.flush().await.expect("subscribed");
    for (len, messages) in [
        (SMALL_MAX_PAYLOAD - 1, 1),
        (SMALL_MAX_PAYLOAD, 1),
        (SMALL_MAX_PAYLOAD + 1, 2),
        (3 * SMALL_MAX_PAYLOAD, 4),
    ] {
        let reply = requester
            .request(
                "ttscm.test.v1.raw",
                Headers::new(),
                Bytes::from(len.to_string()),
                Duration::from_secs(5),
            )
            .await
            .expect("answered");
        assert_eq!(reply.payload.len(), len);
        assert!(
            reply.payload == patterned(len, len).as_bytes(),
            "{len} bytes arrived changed"
        );
        assert!(
            reply.headers.is_empty(),
            "no chunk headers are left: {:?}",
            reply.headers
        );
        let mut seen = 0;
        loop {
            use futures_util::StreamExt;
            let message = tokio::time::timeout(Duration::from_secs(5), watched.next())
                .await
                .expect("the sentinel comes")
                .expect("subscribed");
            if message.subject.as_str() == "_INBOX.sentinel" {
                break;
            }
            seen += 1;
        }
        assert_eq!(seen, messages, "messages for a reply of {len} bytes");
    }
}

/// A raw NATS replier on `subject` that sends a chunked reply of `count` chunks declaring
/// `total` bytes, but only the chunks whose index `sends` keeps, each `chunk` bytes long.
async fn broken_replier(
    server: &NatsServer,
    subject: &str,
    count: usize,
    total: usize,
    chunk: usize,
    sends: fn(usize) -> bool,
) {
    use ttscm_contract::subjects::{
        HEADER_CHUNK_COUNT, HEADER_CHUNK_INDEX, HEADER_REPLY_BYTES, REPLY_CHUNKS_TOKEN,
    };
    let client = async_nats::connect(server.url()).await.expect("connects");
    let mut requests = client.subscribe(subject.to_owned()).await.expect("subscribes");
    client.flush().await.expect("subscribed");
    tokio::spawn(async move {
        use futures_util::StreamExt;
        while let Some(request) = requests.next().await {
            let reply = request.reply.expect("a request");
            for index in (0..count).filter(|i| sends(*i)) {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(HEADER_CHUNK_INDEX, index.to_string().as_str());
                headers.insert(HEADER_CHUNK_COUNT, count.to_string().as_str());
                let subject = if index == 0 {
                    headers.insert(HEADER_REPLY_BYTES, total.to_string().as_str());
                    reply.to_string()
                } else {
                    format!("{reply}.{REPLY_CHUNKS_TOKEN}")
                };
                client
                    .publish_with_headers(subject, headers, Bytes::from(vec![b'x'; chunk]))
                    .await
                    .expect("published");
            }
        }
    });
}

#[tokio::test]
async fn a_lost_chunk_ends_in_a_timeout_at_the_deadline_and_the_bus_keeps_working() {
    let (server, _dir) = small_payload_server();
    // Four chunks of 1 KiB; the last never comes.
    broken_replier(&server, "ttscm.test.v1.lossy", 4, 4096, 1024, |i| i != 3).await;
    // Four chunks of 1 KiB; the third never comes, the fourth does.
    broken_replier(&server, "ttscm.test.v1.gap", 4, 4096, 1024, |i| i != 2).await;
    let requester = nats_bus(&server, 1024 * 1024).await;
    let started = Instant::now();
    let error = requester
        .request(
            "ttscm.test.v1.lossy",
            Headers::new(),
            Bytes::new(),
            Duration::from_millis(500),
        )
        .await
        .expect_err("never complete");
    let elapsed = started.elapsed();
    assert!(matches!(error, BusError::TimedOut { .. }), "{error:?}");
    assert!(
        elapsed >= Duration::from_millis(490) && elapsed < Duration::from_millis(2000),
        "{elapsed:?}"
    );
    assert_eq!(
        ttscm_runtime::service::bus_error_to_wire("ttscm.test.v1.lossy", &error).code,
        ErrorCode::Timeout
    );
    // A gap shows the chunk is lost: no need to wait for the deadline.
    let started = Instant::now();
    let error = requester
        .request(
            "ttscm.test.v1.gap",
            Headers::new(),
            Bytes::new(),
            Duration::from_secs(5),
        )
        .await
        .expect_err("never complete");
    assert!(matches!(error, BusError::TimedOut { .. }), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Nothing is stuck: a whole chunked reply still arrives on the same connection.
    let shutdown = Shutdown::new();
    large_server(&requester, &shutdown).await;
    let caller = BusClient::new(requester, Duration::from_secs(5));
    let len = 2 * SMALL_MAX_PAYLOAD;
    assert!(call_large(&caller, len, 9).await.expect("answered") == patterned(len, 9));
    shutdown.cancel();
}

#[tokio::test]
async fn a_reply_beyond_the_requesters_cap_is_refused_before_it_is_collected() {
    let (server, _dir) = small_payload_server();
    // Declares 10 MiB in chunks of 1 KiB, sends the first only.
    broken_replier(
        &server,
        "ttscm.test.v1.huge",
        10 * 1024,
        10 * 1024 * 1024,
        1024,
        |i| i == 0,
    )
    .await;
    let requester = nats_bus(&server, 1024 * 1024).await;
    let started = Instant::now();
    let error = requester
        .request(
            "ttscm.test.v1.huge",
            Headers::new(),
            Bytes::new(),
            Duration::from_secs(5),
        )
        .await
        .expect_err("too large");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused at once, not at the deadline: {:?}",
        started.elapsed()
    );
    assert_eq!(
        error,
        BusError::ReplyTooLarge {
            size: 10 * 1024 * 1024,
            max: 1024 * 1024
        }
    );
    let wire = ttscm_runtime::service::bus_error_to_wire("ttscm.test.v1.huge", &error);
    assert_eq!(wire.code, ErrorCode::PayloadTooLarge);
    assert!(wire.message.contains("page and rpp"), "{}", wire.message);
}

#[tokio::test]
async fn a_reply_larger_than_it_declared_is_refused_not_collected() {
    let (server, _dir) = small_payload_server();
    // Declares 3 KiB in three chunks, but each is 4 KiB.
    broken_replier(&server, "ttscm.test.v1.liar", 3, 3 * 1024, 4 * 1024, |_| true).await;
    let requester = nats_bus(&server, 1024 * 1024).await;
    let error = requester
        .request(
            "ttscm.test.v1.liar",
            Headers::new(),
            Bytes::new(),
            Duration::from_secs(5),
        )
        .await
        .expect_err("refused");
    assert!(
        matches!(error, BusError::Other(ref text) if text.contains("broken chunked reply")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_service_answers_413_for_a_reply_beyond_its_cap_and_chunks_one_within_it() {
    let (server, _dir) = small_payload_server();
    let cap = 256 * 1024;
    let replier = nats_bus(&server, cap as u64).await;
    let shutdown = Shutdown::new();
    large_server(&replier, &shutdown).await;
    let caller = BusClient::new(nats_bus(&server, 64 * 1024 * 1024).await, Duration::from_secs(5));
    answering(&caller).await;
    // The reply body is the JSON string plus `{"ok":""}` around it.
    let within = cap - 64;
    assert_eq!(call_large(&caller, within, 3).await.map(|r| r.len()), Ok(within));
    let error = call_large(&caller, cap + 1, 3).await.expect_err("beyond the cap");
    assert_eq!(error.code, ErrorCode::PayloadTooLarge, "{error:?}");
    assert!(error.message.contains("page and rpp"), "{}", error.message);
    shutdown.cancel();
}
