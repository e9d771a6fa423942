//! The credential service's collections and how documents map to wire types.

use serde_json::Value;
use ttscm_contract::credential::{CredentialType, FieldDefinition};
use ttscm_runtime::store::{Document, IndexSpec};
use ttscm_runtime::{Store, StoreError};

/// Credential types: `{id, name, nameKey (lowercase, unique), permissionScope, icon, fields, createdAt, updatedAt}`.
pub const CREDENTIAL_TYPES: &str = "credential_types";
/// Credentials: `{id, name, typeId, companyId, values, createdAt, updatedAt}`.
pub const CREDENTIALS: &str = "credentials";

const TYPE_INDEXES: &[IndexSpec] = &[IndexSpec {
    name: "name_key_unique",
    fields: &["nameKey"],
    unique: true,
}];
const CREDENTIAL_INDEXES: &[IndexSpec] = &[
    IndexSpec {
        name: "type_id",
        fields: &["typeId"],
        unique: false,
    },
    IndexSpec {
        name: "company_id",
        fields: &["companyId"],
        unique: false,
    },
];

/// Declares the indexes.
pub async fn prepare(store: &Store) -> Result<(), StoreError> {
    store.ensure_indexes(CREDENTIAL_TYPES, TYPE_INDEXES).await?;
    store.ensure_indexes(CREDENTIALS, CREDENTIAL_INDEXES).await
}

/// A stored type as the API shows it.
pub fn to_credential_type(document: &Document, credential_count: u64) -> Result<CredentialType, StoreError> {
    let text = |key: &str| document.get(key).and_then(Value::as_str).map(str::to_owned);
    let fields: Vec<FieldDefinition> =
        serde_json::from_value(document.get("fields").cloned().unwrap_or(Value::Array(vec![])))
            .map_err(|e| StoreError::Corrupt(format!("credential type fields: {e}")))?;
    Ok(CredentialType {
        id: text("id").unwrap_or_default(),
        name: text("name").unwrap_or_default(),
        permission_scope: text("permissionScope"),
        icon: text("icon"),
        fields,
        credential_count,
        created_at: text("createdAt").unwrap_or_default(),
        updated_at: text("updatedAt").unwrap_or_default(),
    })
}
