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
