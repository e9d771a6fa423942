//! What the edge answers before any handler runs — no route, wrong method, a body without a
//! length or too long — and what every route stamps on its answer, over a real socket with no
//! services behind the bus (nothing here reaches one).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use ttscm_runtime::bus::inproc::InProcBus;
use ttscm_runtime::{Bus, Settings, Shutdown};

/// An edge on a random loopback port, stopped when dropped.
struct Edge {
    address: String,
    shutdown: Shutdown,
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn spawn_edge() -> Edge {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let address = listener
        .local_addr()
        .expect("a bound socket has an address")
        .to_string();
    let shutdown = Shutdown::new();
    let mut settings = Settings::default();
    settings.edge.body_limit = 1024;
    ttscm_edge::run(
        Bus::InProc(InProcBus::new()),
        &settings,
        listener,
        shutdown.clone(),
    );
    Edge { address, shutdown }
}

/// One HTTP/1.1 exchange: the status, the header block (lowercase) and the body.
struct Answer {
    status: u16,
    headers: String,
    body: serde_json::Value,
}

impl Edge {
    /// Sends `head` (request line and headers, without the blank line) and `body`.
    async fn send(&self, head: &str, body: &str) -> Answer {
        let mut stream = TcpStream::connect(&self.address).await.expect("the edge listens");
        let request = format!(
            "{head}\r\nhost: {}\r\nconnection: close\r\n\r\n{body}",
            self.address
        );
        stream
            .write_all(request.as_bytes())
            .await
            .expect("the request is written");
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
            .await
            .expect("the edge answers within 10 s")
            .expect("the answer is read");
        let text = String::from_utf8(raw).expect("answers are UTF-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
        let status = head[9..12].parse().expect("a status code");
        // Bodies here are small and not chunked, except where noted by the caller.
        let body = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
        Answer {
            status,
            headers: head.to_ascii_lowercase(),
            body,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(&format!("GET {path} HTTP/1.1"), "").await
    }
}

fn error(status: u16, message: &str) -> serde_json::Value {
    serde_json::json!({"status": status, "message": message, "successful": false})
}

#[tokio::test]
async fn a_path_no_route_has_is_a_404_in_the_envelope() {
    let edge = spawn_edge().await;
    for path in [
        "/v1/nope",
        "/v1/credential/credentials//",
        "/v1/teapot//",
        "/",
        "/v1",
    ] {
        let answer = edge.get(path).await;
        assert_eq!(answer.status, 404, "{path}");
        assert_eq!(answer.body, error(404, "Resource not found"), "{path}");
        assert!(answer.headers.contains("x-request-id: "), "{path}");
    }
}

#[tokio::test]
async fn a_known_path_with_another_method_is_a_405() {
    let edge = spawn_edge().await;
    for head in [
        "PATCH /v1/teapot HTTP/1.1",
        "DELETE /v1/credential-type/credential-types HTTP/1.1",
        "PUT /v1/credential/credentials/abc HTTP/1.1",
        "POST /v1/auth/uri HTTP/1.1",
        "POST /healthz HTTP/1.1",
    ] {
        let answer = edge.send(&format!("{head}\r\ncontent-length: 0"), "").await;
        assert_eq!(answer.status, 405, "{head}");
        assert_eq!(answer.body, error(405, "Method not allowed"), "{head}");
    }
}

#[tokio::test]
async fn a_trailing_slash_reaches_the_route() {
    let edge = spawn_edge().await;
    let answer = edge.get("/v1/teapot/").await;
    assert_eq!(answer.status, 418);
    assert_eq!(answer.body, error(418, "I'm a teapot"));
}

#[tokio::test]
async fn a_route_without_a_token_answers_401_with_the_request_id_it_was_given() {
    let edge = spawn_edge().await;
    let answer = edge
        .send(
            "GET /v1/credential/credentials/abc HTTP/1.1\r\nx-request-id: req-123",
            "",
        )
        .await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.body["successful"], false);
    assert!(
        answer.headers.contains("x-request-id: req-123"),
        "{}",
        answer.headers
    );
    assert!(!answer.headers.contains("cache-control"), "{}", answer.headers);
}

#[tokio::test]
async fn the_reveal_is_no_store_even_when_it_fails() {
    let edge = spawn_edge().await;
    let answer = edge.get("/v1/credential/credentials/abc/secure-values").await;
    assert_eq!(answer.status, 401);
    assert!(
        answer.headers.contains("cache-control: no-store"),
        "{}",
        answer.headers
    );
}

#[tokio::test]
async fn a_body_needs_a_length_within_the_limit() {
    let edge = spawn_edge().await;
    let chunked = edge
        .send(
            "POST /v1/credential/credentials HTTP/1.1\r\ncontent-type: application/json\r\ntransfer-encoding: chunked",
            "2\r\n{}\r\n0\r\n\r\n",
        )
        .await;
    assert_eq!(chunked.status, 411);
    assert_eq!(chunked.body, error(411, "A Content-Length header is required"));

    let long = "x".repeat(2048);
    let too_long = edge
        .send(
            &format!(
                "POST /v1/credential/credentials HTTP/1.1\r\ncontent-type: application/json\r\ncontent-length: {}",
                long.len()
            ),
            &long,
        )
        .await;
    assert_eq!(too_long.status, 413);
    assert_eq!(too_long.body, error(413, "Payload too large"));
}

#[tokio::test]
async fn liveness_answers_without_a_request_id_and_readiness_with_one() {
    let edge = spawn_edge().await;
    let alive = edge.get("/healthz").await;
    assert_eq!(alive.status, 200);
    assert_eq!(
        alive.body,
        serde_json::json!({"status": 200, "message": "Alive", "data": null, "successful": true})
    );
    assert!(!alive.headers.contains("x-request-id"), "{}", alive.headers);

    // No services behind the bus: not ready, and said so in the envelope.
    let ready = edge.get("/readyz").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.body["message"], "Not ready");
    assert!(ready.headers.contains("x-request-id: "), "{}", ready.headers);
}
