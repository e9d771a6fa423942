//! Does the chunked-reply support slow down the single-message request path over NATS?
//!
//! Runs a real nats-server (`TTSCM_TEST_NATS_SERVER` or `nats-server` on the PATH) and measures
//! request-reply round trips with a small reply two ways, alternately in one process:
//! - **plain**: what the NATS adapter did before chunking — `async-nats`' `send_request` on a
//!   client without the chunk subscription, the reply published with `publish_with_headers`;
//! - **bus**: `Bus::request` on a `NatsBus` (its chunk subscription, the chunk check on every
//!   reply) answered by `Request::respond` (the single-message check before publishing).
//!
//! `cargo run --release -p ttscm-runtime --example bus_reply_bench` (BENCH_SECS per cell,
//! default 3; BENCH_ROUNDS alternations, default 3). Prints req/s per cell.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use ttscm_runtime::bus::nats::NatsBus;
use ttscm_runtime::bus::{Bus, Headers};

const REPLY: &[u8] = &[b'r'; 200];

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn request_headers() -> Headers {
    let mut headers = Headers::new();
    headers.insert("ttscm-request-id", "0123456789abcdef");
    headers.insert("ttscm-principal", "x".repeat(300));
    headers
}

fn nats_headers(headers: &Headers) -> async_nats::HeaderMap {
    let mut map = async_nats::HeaderMap::new();
    for (name, value) in headers.iter() {
        map.insert(name, value);
    }
    map
}

/// One plain request as the adapter made it before (`NatsBus::request` at 990c758): the
/// connection and payload checks, send, wait, copy the reply into a message.
async fn plain_request(client: &async_nats::Client, headers: Headers) -> usize {
    assert_eq!(
        client.connection_state(),
        async_nats::connection::State::Connected
    );
    let payload = Bytes::from_static(b"{\"id\":\"abc\"}");
    let max = client.server_info().max_payload;
    assert!(payload.len() <= max);
    let request = async_nats::Request::new()
        .payload(payload)
        .headers(nats_headers(&headers))
        .timeout(Some(Duration::from_secs(5)));
    let message = client
        .send_request("bench.plain".to_owned(), request)
        .await
        .expect("answered");
    let mut out = Headers::new();
    if let Some(map) = message.headers.as_ref() {
        for (name, values) in map.iter() {
            if let Some(value) = values.first() {
                out.insert(name.to_string(), value.as_str());
            }
        }
    }
    let _subject = message.subject.to_string();
    message.payload.len() + out.iter().count()
}

async fn bus_request(bus: &Bus, headers: Headers) -> usize {
    let reply = bus
        .request(
            "bench.bus",
            headers,
            Bytes::from_static(b"{\"id\":\"abc\"}"),
            Duration::from_secs(5),
        )
        .await
        .expect("answered");
    reply.payload.len() + reply.headers.iter().count()
}

/// Requests per second with `concurrency` requesters for `secs`.
async fn measure<F, Fut>(concurrency: usize, secs: u64, call: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = usize> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    std::hint::black_box(call().await);
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("a requester finished");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let secs = setting("BENCH_SECS", 3);
    let rounds = setting("BENCH_ROUNDS", 3);
    let server = ttscm_testkit::NatsServer::start();
    let url = server.url();

    // The plain replier: a bare client publishing the reply as the adapter did.
    let plain_server = async_nats::connect(&url).await.expect("connects");
    let mut plain_requests = plain_server
        .queue_subscribe("bench.plain", "bench".to_owned())
        .await
        .expect("subscribes");
    tokio::spawn(async move {
        while let Some(message) = plain_requests.next().await {
            let Some(reply) = message.reply else { continue };
            let _ = plain_server
                .publish_with_headers(reply, async_nats::HeaderMap::new(), Bytes::from_static(REPLY))
                .await;
        }
    });

    // The bus replier.
    let bus_server = Bus::Nats(Box::new(
        NatsBus::connect(&url, "bench-server", &Default::default())
            .await
            .expect("connects"),
    ));
    let mut bus_requests = bus_server.serve("bench.bus", "bench").await.expect("serves");
    tokio::spawn(async move {
        while let Some(request) = bus_requests.next().await {
            let _ = request.respond(Headers::new(), Bytes::from_static(REPLY)).await;
        }
    });

    let plain_client = async_nats::connect(&url).await.expect("connects");
    let bus = NatsBus::connect(&url, "bench-client", &Default::default())
        .await
        .expect("connects");
    assert!(bus.wait_connected(Duration::from_secs(5)).await);
    let bus = Bus::Nats(Box::new(bus));
    let headers = request_headers();

    for concurrency in [1usize, 32] {
        let mut ratios = Vec::new();
        for round in 1..=rounds {
            let (client, h) = (plain_client.clone(), headers.clone());
            let plain_cell = move || {
                let (client, h) = (client.clone(), h.clone());
                async move { plain_request(&client, h).await }
            };
            let (b, h) = (bus.clone(), headers.clone());
            let bus_cell = move || {
                let (b, h) = (b.clone(), h.clone());
                async move { bus_request(&b, h).await }
            };
            // Alternate which goes first, so a drift in the machine's load favours neither.
            let (plain, new) = if round % 2 == 1 {
                let plain = measure(concurrency, secs, plain_cell).await;
                (plain, measure(concurrency, secs, bus_cell).await)
            } else {
                let new = measure(concurrency, secs, bus_cell).await;
                (measure(concurrency, secs, plain_cell).await, new)
            };
            println!(
                "concurrency {concurrency:>2} round {round}: plain {plain:>9.0} req/s   bus {new:>9.0} req/s   bus/plain {:.3}",
                new / plain
            );
            ratios.push(new / plain);
        }
        ratios.sort_by(f64::total_cmp);
        println!(
            "concurrency {concurrency:>2}: median bus/plain {:.3} over {rounds} rounds",
            ratios[ratios.len() / 2]
        );
    }
}
