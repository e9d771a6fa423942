//! An operation ties a request payload to its bus subject and its reply type, so callers and
//! servers cannot disagree about either.
//!
//! Every operation is declared with [`operation!`](crate::operation!), which implements
//! [`Operation`] and registers the operation in the contract's own list ([`operations`]). A test
//! walks that list and checks that exactly one service serves each operation, so a forgotten
//! registration fails the suite instead of answering 503 "no responders" at run time.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Component;

/// A request-reply operation on the bus.
pub trait Operation: Serialize + DeserializeOwned + Send + 'static {
    /// The versioned subject this operation is served on, from [`crate::subjects`].
    const SUBJECT: &'static str;
    /// The components that may call it (NATS publish permissions are generated from this).
    const CALLERS: &'static [Component] = &[Component::Edge];
    /// Whether it is served without a principal (sign-in, token resolution, health). Every
    /// other operation is refused in the mesh unless its principal header verifies.
    const ANONYMOUS: bool = false;
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
    /// The components that may call it.
    pub callers: &'static [Component],
    /// Served without a principal.
    pub anonymous: bool,
}

inventory::collect!(OperationInfo);

/// Every operation declared with [`operation!`](crate::operation!), in no particular order.
pub fn operations() -> impl Iterator<Item = &'static OperationInfo> {
    inventory::iter::<OperationInfo>.into_iter()
}

/// Declares a request type an [`Operation`] served on `subject`, answering `reply`, and
/// registers it in [`operations`]: `operation!(GetCredential => subjects::CREDENTIAL_GET, Credential);`
///
/// The edge is the caller unless `callers: [Component::Credential]` says otherwise;
/// `anonymous: true` marks the few operations served without a principal.
#[macro_export]
macro_rules! operation {
    ($op:ty => $subject:expr, $reply:ty $(, callers: [$($caller:expr),+])? $(, anonymous: $anonymous:literal)?) => {
        impl $crate::Operation for $op {
            const SUBJECT: &'static str = $subject;
            const CALLERS: &'static [$crate::Component] =
                $crate::operation!(@callers $([$($caller),+])?);
            const ANONYMOUS: bool = $crate::operation!(@anonymous $($anonymous)?);
            type Reply = $reply;
        }
        $crate::inventory::submit! {
            $crate::operation::OperationInfo {
                name: stringify!($op),
                subject: $subject,
                callers: <$op as $crate::Operation>::CALLERS,
                anonymous: <$op as $crate::Operation>::ANONYMOUS,
            }
        }
    };
    (@callers) => { &[$crate::Component::Edge] };
    (@callers [$($caller:expr),+]) => { &[$($caller),+] };
    (@anonymous) => { false };
    (@anonymous $anonymous:literal) => { $anonymous };
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
