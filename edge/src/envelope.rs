//! The spec's response envelope: `{status, message, data, successful}` (plus `pagination` on
//! lists that page), and the error shape `{status, message, errors?, successful: false}`.

use serde::Serialize;
use ttscm_contract::FieldError;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

#[derive(Serialize)]
struct Success<'a, T: Serialize> {
    status: u16,
    message: &'a str,
    data: &'a T,
    successful: bool,
}

#[derive(Serialize)]
struct Failure<'a> {
    status: u16,
    message: &'a str,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
    successful: bool,
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
}

/// A successful response carrying `data`.
pub fn success<T: Serialize>(status: StatusCode, message: &str, data: &T) -> Response {
    let body = serde_json::to_vec(&Success {
        status: status.as_u16(),
        message,
        data,
        successful: true,
    })
    .expect("wire types always serialize");
    json_response(status, body)
}

/// An error response.
pub fn error(status: StatusCode, message: &str, errors: &[FieldError]) -> Response {
    let body = serde_json::to_vec(&Failure {
        status: status.as_u16(),
        message,
        errors,
        successful: false,
    })
    .expect("errors always serialize");
    json_response(status, body)
}
