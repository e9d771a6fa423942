//! Credential service operations.

use serde::{Deserialize, Serialize};

use crate::{Operation, subjects};

/// One field definition of a credential type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldDefinition {
    /// Identifier, unique within the type.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Whether every credential must have a value.
    pub required: bool,
    /// Whether values are sealed by vault.
    pub secure: bool,
    /// One of `plain_text`, `password`, `email`, `url`, `note`, `number`, `totp`.
    pub value_type: String,
}

/// A credential type as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialType {
    /// Id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Extra permission every access to this type's credentials requires.
    pub permission_scope: Option<String>,
    /// Icon URL.
    pub icon: Option<String>,
    /// Field definitions.
    pub fields: Vec<FieldDefinition>,
    /// How many credentials use the type.
    pub credential_count: u64,
    /// Created (ISO-8601 UTC, ms).
    pub created_at: String,
    /// Last updated (ISO-8601 UTC, ms).
    pub updated_at: String,
}

/// List every credential type.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListCredentialTypes {}

impl Operation for ListCredentialTypes {
    const SUBJECT: &'static str = subjects::CREDENTIAL_TYPE_LIST;
    type Reply = Vec<CredentialType>;
}
