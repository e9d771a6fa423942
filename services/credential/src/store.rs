//! The credential service's collections and their document shapes. Storage types are not wire
//! types: [`TypeDoc`] and [`CredentialDoc`] convert to the contract's types explicitly.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use ttscm_contract::credential::{CredentialType, CredentialTypeSummary, FieldDefinition, RevealPolicy};
use ttscm_runtime::store::{Document, IndexSpec};
use ttscm_runtime::{Store, StoreError};

/// Credential types.
pub const CREDENTIAL_TYPES: &str = "credential_types";
/// Credentials.
pub const CREDENTIALS: &str = "credentials";
/// Events that could not be published yet (see `events.rs`).
pub const EVENT_OUTBOX: &str = "event_outbox";

const TYPE_INDEXES: &[IndexSpec] = &[IndexSpec {
    name: "name_key_unique",
    fields: &["nameKey"],
    unique: true,
}];
/// The two lists (a company's, a type's) filter by one key and sort by name then id: one
/// compound index each serves the filter, the order and a page's skip without sorting in memory
/// (and the lookups by `typeId`/`companyId` alone, as its prefix). Deployments from before keep
/// the single-field `type_id`/`company_id` indexes too; they are harmless and may be dropped.
const CREDENTIAL_INDEXES: &[IndexSpec] = &[
    IndexSpec {
        name: "type_id_name_id",
        fields: &["typeId", "name", "id"],
        unique: false,
    },
    IndexSpec {
        name: "company_id_name_id",
        fields: &["companyId", "name", "id"],
        unique: false,
    },
];

/// Declares the indexes of types and credentials (the outbox is declared by `events::prepare`,
/// the audit log is the runtime's audit port).
pub async fn prepare(store: &Store) -> Result<(), StoreError> {
    store.ensure_indexes(CREDENTIAL_TYPES, TYPE_INDEXES).await?;
    store.ensure_indexes(CREDENTIALS, CREDENTIAL_INDEXES).await
}

/// A stored credential type.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeDoc {
    /// Id.
    pub id: String,
    /// Name as given.
    pub name: String,
    /// Lowercase name; unique index, so names are unique case-insensitively.
    pub name_key: String,
    /// Extra permission.
    pub permission_scope: Option<String>,
    /// Icon URL.
    pub icon: Option<String>,
    /// Field definitions.
    pub fields: Vec<FieldDefinition>,
    /// Set while a cascading delete is under way; such a type is hidden and takes no new credentials.
    #[serde(default)]
    pub deleting: bool,
    /// What reveals of its credentials must carry (missing in older documents: nothing).
    #[serde(default)]
    pub reveal_policy: RevealPolicy,
    /// Created.
    pub created_at: String,
    /// Updated.
    pub updated_at: String,
}

impl TypeDoc {
    /// The wire type.
    pub fn to_wire(&self, credential_count: u64) -> CredentialType {
        CredentialType {
            id: self.id.clone(),
            name: self.name.clone(),
            permission_scope: self.permission_scope.clone(),
            icon: self.icon.clone(),
            fields: self.fields.clone(),
            credential_count,
            reveal_policy: self.reveal_policy.clone(),
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
        }
    }

    /// The summary embedded in credentials.
    pub fn summary(&self) -> CredentialTypeSummary {
        CredentialTypeSummary {
            id: self.id.clone(),
            name: self.name.clone(),
            fields: self.fields.clone(),
            permission_scope: self.permission_scope.clone(),
        }
    }

    /// The field definition with `id`.
    pub fn field(&self, id: &str) -> Option<&FieldDefinition> {
        self.fields.iter().find(|f| f.id == id)
    }
}

/// One stored value; `sealed` says whether `value` is a vault blob. The flag lives on the
/// value (not only on the type), so every intermediate state of a type change stays readable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredValue {
    /// Stable id.
    pub id: String,
    /// The field it fills.
    pub field_id: String,
    /// Whether `value` is sealed.
    pub sealed: bool,
    /// Plain text, or the sealed blob.
    pub value: String,
}

/// A stored credential.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialDoc {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Type id.
    pub type_id: String,
    /// Company id.
    pub company_id: String,
    /// Values.
    pub values: Vec<StoredValue>,
    /// Bumped by every write of `values`; writes of values are conditional on it (see
    /// `Service::write_values_if_unchanged`), so a type migration and a fields write racing on
    /// one credential never silently overwrite each other. Missing in older documents: 0.
    #[serde(default)]
    pub revision: i64,
    /// Set by a break-glass reveal: the values were seen outside the reveal policy and should
    /// be changed (the credential lifecycle's rotation due date will take this over). Cleared
    /// when the secure values are written again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rotation_due: bool,
    /// Created.
    pub created_at: String,
    /// Updated.
    pub updated_at: String,
}

/// A storage type as a document.
pub fn to_document<T: Serialize>(value: &T) -> Document {
    match serde_json::to_value(value).expect("storage types serialize") {
        Value::Object(map) => map,
        _ => unreachable!("storage types are structs"),
    }
}

/// A document as a storage type.
pub fn from_document<T: DeserializeOwned>(document: Document) -> Result<T, StoreError> {
    serde_json::from_value(Value::Object(document)).map_err(|e| StoreError::Corrupt(e.to_string()))
}
