//! JSON request bodies: the content type must be JSON, the size is limited (413 beyond), and a
//! body that does not parse answers 400 with the path of the problem (`["fields", 1, "value"]`)
//! — unknown fields included, since request types deny them.

use serde::de::DeserializeOwned;
use ttscm_contract::{ErrorCode, FieldError, WireError};
use warp::Filter;
use warp::http::HeaderMap;

/// Extracts the raw body after checking its length against `limit` (413 beyond it).
pub fn raw(limit: u64) -> impl Filter<Extract = (HeaderMap, bytes::Bytes), Error = warp::Rejection> + Clone {
    warp::header::headers_cloned()
        .and(warp::body::content_length_limit(limit))
        .and(warp::body::bytes())
}

/// Parses a JSON body into `T`.
pub fn parse<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, WireError> {
    let is_json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            let v = v.trim().to_ascii_lowercase();
            v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
        });
    if !is_json {
        return Err(WireError::new(
            ErrorCode::UnsupportedMediaType,
            "Content-Type must be application/json",
        ));
    }
    // Every body is an object; serde would also read a struct from an array (`[null, null]`).
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(WireError::validation(vec![FieldError::new(
            Vec::new(),
            "The body must be a JSON object",
        )]));
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error
            .path()
            .iter()
            .filter_map(|segment| match segment {
                serde_path_to_error::Segment::Seq { index } => Some(serde_json::Value::from(*index)),
                serde_path_to_error::Segment::Map { key } => Some(serde_json::Value::from(key.clone())),
                serde_path_to_error::Segment::Enum { variant } => {
                    Some(serde_json::Value::from(variant.clone()))
                }
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        let inner = error.into_inner();
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("Malformed JSON: {inner}")
        } else {
            // serde's message names the field ("unknown field `x`, expected …", "missing field `y`").
            let text = inner.to_string();
            text.split(" at line ").next().unwrap_or(&text).to_owned()
        };
        WireError::validation(vec![FieldError::new(path, message)])
    })
}
