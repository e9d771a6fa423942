//! An operation ties a request payload to its bus subject and its reply type, so callers and
//! servers cannot disagree about either.
//!
//! Every operation is declared with [`operation!`](crate::operation!), which implements
//! [`Operation`] and registers the operation in the contract's own list ([`operations`]). A test
//! walks that list and checks that exactly one service serves each operation, so a forgotten
//! registration fails the suite instead of answering 503 "no responders" at run time.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A request-reply operation on the bus.
pub trait Operation: Serialize + DeserializeOwned + Send + 'static {
    /// The versioned subject this operation is served on, from [`crate::subjects`].
    const SUBJECT: &'static str;
    /// What a successful call answers.
    type Reply: Serialize + DeserializeOwned + Send + 'static;
}

/// One operation of the contract, as [`operations`] lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperationInfo {
    /// The request type's name, for messages.
    pub name: &'static str,
    /// The subject it is served on.
    pub subject: &'static str,
}

inventory::collect!(OperationInfo);

/// Every operation declared with [`operation!`](crate::operation!), in no particular order.
pub fn operations() -> impl Iterator<Item = &'static OperationInfo> {
    inventory::iter::<OperationInfo>.into_iter()
}

/// Declares a request type an [`Operation`] served on `subject`, answering `reply`, and
/// registers it in [`operations`]: `operation!(GetCredential => subjects::CREDENTIAL_GET, Credential);`
#[macro_export]
macro_rules! operation {
    ($op:ty => $subject:expr, $reply:ty) => {
        impl $crate::Operation for $op {
            const SUBJECT: &'static str = $subject;
            type Reply = $reply;
        }
        $crate::inventory::submit! {
            $crate::operation::OperationInfo { name: stringify!($op), subject: $subject }
        }
    };
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
