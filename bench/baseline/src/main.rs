//! Raw warp 0.4 baseline for `bench/run.sh`: two of TTSCM's routes with fixed JSON bodies,
//! the ceiling TTSCM's edge is measured against in the same run.

use std::net::SocketAddr;

use warp::Filter;
use warp::http::{StatusCode, header};
use warp::reply::Reply;

const TEAPOT: &str = r#"{"status":418,"message":"I'm a teapot","successful":false}"#;
const CREDENTIAL_TYPES: &str =
    r#"{"status":200,"message":"Credential Types Fetched Successfully!","data":[],"successful":true}"#;

fn json(body: &'static str, status: StatusCode) -> warp::reply::Response {
    let mut response = warp::reply::with_status(body, status).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // The bodies are constants; check once at startup that they are valid JSON.
    for body in [TEAPOT, CREDENTIAL_TYPES] {
        serde_json::from_str::<serde_json::Value>(body).expect("baseline body is valid JSON");
    }

    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3999".to_owned())
        .parse()
        .expect("first argument must be a socket address such as 127.0.0.1:3999");

    let teapot = warp::get()
        .and(warp::path!("v1" / "teapot"))
        .map(|| json(TEAPOT, StatusCode::IM_A_TEAPOT));
    let credential_types = warp::get()
        .and(warp::path!("v1" / "credential-type" / "credential-types"))
        .map(|| json(CREDENTIAL_TYPES, StatusCode::OK));

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    eprintln!("ttscm-warp-baseline listening on {addr}");
    warp::serve(teapot.or(credential_types))
        .incoming(listener)
        .run()
        .await;
}
