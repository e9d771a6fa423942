//! The one place wire error codes become HTTP statuses, and warp's own rejections (no route,
//! wrong method, body too large) become the spec's error envelope.

use std::convert::Infallible;

use ttscm_contract::{ErrorCode, WireError};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Rejection, Reply};

use crate::envelope;

/// The HTTP status of a wire error code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Validation => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        ErrorCode::Upstream => StatusCode::BAD_GATEWAY,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A wire error as an HTTP response.
pub fn error_response(error: &WireError) -> Response {
    envelope::error(status_of(error.code), &error.message, &error.errors)
}

/// A request to a WebSocket route without `Upgrade: websocket` (e.g. a plain GET): a 400 that
/// says so, rather than warp's own rejection, which is not public and would end as a 500.
#[derive(Debug)]
pub struct NotAWebSocket;

impl warp::reject::Reject for NotAWebSocket {}

/// Passes requests that ask for a WebSocket upgrade; rejects others with [`NotAWebSocket`].
pub fn websocket_upgrade() -> impl warp::Filter<Extract = (), Error = Rejection> + Copy {
    use warp::Filter;
    warp::header::optional::<String>("upgrade")
        .and_then(|upgrade: Option<String>| async move {
            match upgrade {
                Some(value) if value.eq_ignore_ascii_case("websocket") => Ok(()),
                _ => Err(warp::reject::custom(NotAWebSocket)),
            }
        })
        .untuple_one()
}

/// Turns warp's rejections into the spec's envelope. Handlers answer their own errors; what
/// reaches here is "no route matched" or a body/header problem warp found first.
pub async fn handle_rejection(rejection: Rejection) -> Result<Response, Infallible> {
    let (status, message) = if rejection.is_not_found() {
        (StatusCode::NOT_FOUND, "Resource not found")
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        (StatusCode::PAYLOAD_TOO_LARGE, "Payload too large")
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        (StatusCode::LENGTH_REQUIRED, "A Content-Length header is required")
    } else if rejection.find::<warp::reject::UnsupportedMediaType>().is_some() {
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        )
    } else if rejection.find::<NotAWebSocket>().is_some() {
        (
            StatusCode::BAD_REQUEST,
            "This route is a WebSocket: open it with an Upgrade: websocket request",
        )
    } else if let Some(cors) = rejection.find::<warp::cors::CorsForbidden>() {
        tracing::info!(%cors, "a cross-origin request was refused");
        (StatusCode::FORBIDDEN, crate::limits::ORIGIN_REFUSED)
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
    } else if rejection.find::<warp::reject::InvalidQuery>().is_some() {
        (StatusCode::BAD_REQUEST, "Invalid query string")
    } else if rejection.find::<warp::reject::InvalidHeader>().is_some()
        || rejection.find::<warp::reject::MissingHeader>().is_some()
    {
        (StatusCode::BAD_REQUEST, "Invalid request header")
    } else {
        tracing::error!(?rejection, "unhandled rejection");
        (StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    };
    let mut response = envelope::error(status, message, &[]).into_response();
    response.headers_mut().insert(
        crate::routes::REQUEST_ID_HEADER,
        warp::http::HeaderValue::from_str(&ttscm_runtime::ids::new_request_id()).expect("ids are ASCII"),
    );
    Ok(response)
}
