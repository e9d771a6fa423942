//! Errors of the identity service.

use ttscm_runtime::StoreError;

/// Why an identity admin command (run by the CLI on the store) or loading the signing key
/// failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A setting is missing or invalid (the CLI exits with code 64).
    #[error("{0}")]
    Config(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An admin command named something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// An admin command's input is invalid.
    #[error("{0}")]
    Invalid(String),
}

impl From<IdentityError> for ttscm_runtime::router::StartError {
    fn from(error: IdentityError) -> Self {
        match error {
            IdentityError::Store(error) => Self::Store(error),
            other => Self::Config(other.to_string()),
        }
    }
}
