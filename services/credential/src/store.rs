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
/// Past versions of credentials: one snapshot per superseded version (see `history.rs`).
pub const CREDENTIAL_VERSIONS: &str = "credential_versions";

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
    // The `rotationDue=true` lists' marked branch (the by-date branches go by `typeId`).
    IndexSpec {
        name: "rotation_due",
        fields: &["rotationDue"],
        unique: false,
    },
];

/// A credential's versions in order; and the pruning's scan by age.
const VERSION_INDEXES: &[IndexSpec] = &[
    IndexSpec {
        name: "credential_id_version",
        fields: &["credentialId", "version"],
        unique: true,
    },
    IndexSpec {
        name: "superseded_at",
        fields: &["supersededAt"],
        unique: false,
    },
];

/// Declares the indexes of types, credentials and versions (the outbox is declared by
/// `events::prepare`, the audit log is the runtime's audit port).
pub async fn prepare(store: &Store) -> Result<(), StoreError> {
    store.ensure_indexes(CREDENTIAL_TYPES, TYPE_INDEXES).await?;
    store.ensure_indexes(CREDENTIALS, CREDENTIAL_INDEXES).await?;
    store.ensure_indexes(CREDENTIAL_VERSIONS, VERSION_INDEXES).await
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
    /// Days after which its credentials' secure values are due for rotation (missing: never
    /// by schedule; see `rotation.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_days: Option<u32>,
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
            rotation_days: self.rotation_days,
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
    /// The credential version in which this value was written (kept while it is unchanged); a
    /// sealed value is bound to it, so a blob from another version does not open here. 0: a
    /// value from before versions (sealed unversioned; `ttscm vault reseal` binds it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl StoredValue {
    /// Where vault sealed this value: its credential, field and version.
    pub fn place(&self, credential_id: &str) -> ttscm_contract::vault::Place {
        ttscm_contract::vault::Place {
            credential_id: credential_id.to_owned(),
            field_id: self.field_id.clone(),
            version: (self.version > 0).then_some(self.version),
        }
    }

    /// This value as vault takes it to open.
    pub fn sealed_item(&self, credential_id: &str) -> ttscm_contract::vault::SealedItem {
        ttscm_contract::vault::SealedItem {
            place: self.place(credential_id),
            sealed: self.value.clone(),
        }
    }
}

/// What made a version, kept with it: when, by whom, how, and which fields it wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    /// When.
    pub at: String,
    /// Who (a user, an API token, or the system for a migration).
    pub actor: ttscm_contract::audit::AuditActor,
    /// `created`, `fields_updated`, `renamed`, `migrated` or `restored`.
    pub change: String,
    /// The fields whose values this version wrote (added, changed or removed).
    pub field_ids: Vec<String>,
    /// For `restored`: the version restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<u64>,
}

/// A superseded version of a credential, written just before the write that supersedes it
/// (so a crash between the two leaves a snapshot of a version that is still current: harmless).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionDoc {
    /// `<credential id>.<version, 12 digits>`: one snapshot per version, whoever writes it.
    pub id: String,
    /// The credential.
    pub credential_id: String,
    /// The version.
    pub version: u64,
    /// The credential's name then.
    pub name: String,
    /// Its type then.
    pub type_id: String,
    /// Its values then (secure ones sealed, each bound to the version it was written in).
    pub values: Vec<StoredValue>,
    /// What made the version (`None`: a version from before history was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<VersionInfo>,
    /// When the next version replaced it (retention counts days from here).
    pub superseded_at: String,
}

impl VersionDoc {
    /// The id of `credential_id`'s version `version`.
    pub fn id_of(credential_id: &str, version: u64) -> String {
        format!("{credential_id}.{version:012}")
    }
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
    /// The credential's version (its `ETag`): 1 when created, bumped by every write — values,
    /// name, migration, restore (not a reseal). Every write is conditional on it (see
    /// `Service::write_version`), so a type migration, a fields write and a rename racing on
    /// one credential never silently overwrite each other. Missing in older documents: 0.
    #[serde(default)]
    pub revision: i64,
    /// What made the current version (missing in documents from before history was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_info: Option<VersionInfo>,
    /// When a secure value was last written by someone (create, fields, restore); `None` in
    /// older documents (then `created_at` stands in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_changed_at: Option<String>,
    /// Set when its secure values should be changed: by a break-glass reveal, an exposure mark,
    /// or the rotation scheduler once the type's `rotationDays` have passed. Cleared when a
    /// secure value is written again.
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
