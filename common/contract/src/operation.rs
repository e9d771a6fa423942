//! An operation ties a request payload to its bus subject and its reply type, so callers and
//! servers cannot disagree about either.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A request-reply operation on the bus.
pub trait Operation: Serialize + DeserializeOwned + Send + 'static {
    /// The versioned subject this operation is served on, from [`crate::subjects`].
    const SUBJECT: &'static str;
    /// What a successful call answers.
    type Reply: Serialize + DeserializeOwned + Send + 'static;
}

/// The JSON shape of every reply on the bus: either data or a typed error.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ReplyBody<T> {
    /// The operation succeeded.
    Ok(T),
    /// The operation failed; the edge maps this to the HTTP error envelope.
    Err(crate::WireError),
}
