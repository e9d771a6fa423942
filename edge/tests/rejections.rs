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

impl Answer {
    /// Asserts that the answer carries the header line `line` (`name: value`, lowercase).
    #[track_caller]
    fn assert_header(&self, line: &str) {
        assert!(self.headers.contains(line), "{line} in {}", self.headers);
    }

    /// Asserts that the answer carries no header `name`.
    #[track_caller]
    fn assert_no_header(&self, name: &str) {
        assert!(
            !self.headers.contains(&format!("\r\n{name}:")),
            "no {name} in {}",
            self.headers
        );
    }
}

/// An error answer as the spec shows it: the status and its envelope.
fn refusal(status: u16, message: &str) -> (u16, serde_json::Value) {
    let body = serde_json::json!({"status": status, "message": message, "successful": false});
    (status, body)
}

#[tokio::test]
async fn a_path_no_route_has_is_a_404_and_a_known_path_with_another_method_a_405() {
    let edge = spawn_edge().await;
    let not_found = refusal(404, "Resource not found");
    let not_allowed = refusal(405, "Method not allowed");
    let cases = [
        ("GET /v1/nope", &not_found),
        ("GET /v1/credential/credentials//", &not_found),
        ("GET /v1/teapot//", &not_found),
        ("GET /", &not_found),
        ("GET /v1", &not_found),
        ("PATCH /v1/teapot", &not_allowed),
        ("DELETE /v1/credential-type/credential-types", &not_allowed),
        ("PUT /v1/credential/credentials/abc", &not_allowed),
        ("POST /v1/auth/uri", &not_allowed),
        ("POST /healthz", &not_allowed),
    ];
    for (request, expected) in cases {
        let answer = edge
            .send(&format!("{request} HTTP/1.1\r\ncontent-length: 0"), "")
            .await;
        answer.assert_header("x-request-id: ");
        assert_eq!(&(answer.status, answer.body), expected, "{request}");
    }
}

#[tokio::test]
async fn a_trailing_slash_reaches_the_route() {
    let edge = spawn_edge().await;
    let answer = edge.get("/v1/teapot/").await;
    assert_eq!((answer.status, answer.body), refusal(418, "I'm a teapot"));
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
    answer.assert_header("x-request-id: req-123");
    answer.assert_no_header("cache-control");
}

#[tokio::test]
async fn the_reveal_is_no_store_even_when_it_fails() {
    let edge = spawn_edge().await;
    let answer = edge.get("/v1/credential/credentials/abc/secure-values").await;
    assert_eq!(answer.status, 401);
    answer.assert_header("cache-control: no-store");
}

#[tokio::test]
async fn a_body_needs_a_length_within_the_limit() {
    let edge = spawn_edge().await;
    let create = "POST /v1/credential/credentials HTTP/1.1\r\ncontent-type: application/json";
    let chunked = format!("{create}\r\ntransfer-encoding: chunked");
    let answer = edge.send(&chunked, "2\r\n{}\r\n0\r\n\r\n").await;
    let expected = refusal(411, "A Content-Length header is required");
    assert_eq!((answer.status, answer.body), expected);

    let long = "x".repeat(2048);
    let answer = edge
        .send(&format!("{create}\r\ncontent-length: 2048"), &long)
        .await;
    assert_eq!((answer.status, answer.body), refusal(413, "Payload too large"));
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
    alive.assert_no_header("x-request-id");

    // No services behind the bus: not ready, and said so in the envelope.
    let ready = edge.get("/readyz").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.body["message"], "Not ready");
    ready.assert_header("x-request-id: ");
}

#[tokio::test]
async fn a_plain_get_of_the_sign_in_socket_is_a_400_saying_it_is_a_websocket() {
    let edge = spawn_edge().await;
    let answer = edge.get("/v1/auth/ws?callbackKey=abc").await;
    answer.assert_header("x-request-id: ");
    assert_eq!(
        (answer.status, answer.body),
        refusal(
            400,
            "This route is a WebSocket: open it with an Upgrade: websocket request"
        )
    );
}
