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

/// A failure that still carries `data` (the authenticated `/readyz` report when not ready):
/// the error envelope's `successful: false`, with the details beside it.
pub fn failure_with<T: Serialize>(status: StatusCode, message: &str, data: &T) -> Response {
    let body = serde_json::to_vec(&Success {
        status: status.as_u16(),
        message,
        data,
        successful: false,
    })
    .expect("wire types always serialize");
    json_response(status, body)
}

/// The spec's `pagination` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    /// The page before, if any.
    pub previous_page: Option<u64>,
    /// This page (from 1).
    pub current_page: u64,
    /// The page after, if any.
    pub next_page: Option<u64>,
    /// How many pages in all.
    pub total_pages: u64,
    /// How many records in all.
    pub total_records: u64,
    /// How many records on this page.
    pub listed_records: u64,
}

impl Pagination {
    /// The pagination of page `page` (from 1) with `rpp` records per page.
    pub fn new(page: u64, rpp: u64, total_records: u64, listed_records: u64) -> Self {
        let total_pages = total_records.div_ceil(rpp.max(1));
        Self {
            previous_page: (page > 1).then(|| (page - 1).min(total_pages.max(1))),
            current_page: page,
            next_page: (page < total_pages).then_some(page + 1),
            total_pages,
            total_records,
            listed_records,
        }
    }
}

#[derive(Serialize)]
struct Paged<'a, T: Serialize> {
    status: u16,
    message: &'a str,
    data: &'a T,
    pagination: &'a Pagination,
    successful: bool,
}

/// A successful page of a list.
pub fn paginated<T: Serialize>(message: &str, data: &T, pagination: &Pagination) -> Response {
    let body = serde_json::to_vec(&Paged {
        status: 200,
        message,
        data,
        pagination,
        successful: true,
    })
    .expect("wire types always serialize");
    json_response(StatusCode::OK, body)
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
