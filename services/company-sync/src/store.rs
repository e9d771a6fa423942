//! The `companies` collection and its document shape. [`CompanyDoc`] is the storage type; it
//! converts to the contract's [`Company`] explicitly.
//!
//! Every document carries `cwKey`, unique: `cw:<ConnectWise id>` for synced companies, so an
//! upsert by ConnectWise id can never duplicate a company (even with two replicas racing), and
//! `manual:<id>` for manual ones, because a unique-indexed field must exist on every document.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use ttscm_contract::company::{Company, CompanySource};
use ttscm_runtime::store::{Document, FindOptions, IndexSpec};
use ttscm_runtime::{Filter, Store, StoreError, Update};

/// Companies: owned by this service only.
pub const COMPANIES: &str = "companies";

/// Field holding the unique sync key.
pub const CW_KEY: &str = "cwKey";

const COMPANY_INDEXES: &[IndexSpec] = &[
    IndexSpec {
        name: "name_key_id",
        fields: &["nameKey", "id"],
        unique: false,
    },
    IndexSpec {
        name: "updated_at",
        fields: &["updatedAt"],
        unique: false,
    },
    IndexSpec {
        name: "cw_key_unique",
        fields: &[CW_KEY],
        unique: true,
    },
];

/// A stored company.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompanyDoc {
    /// Id.
    pub id: String,
    /// Name as given (or as ConnectWise has it).
    pub name: String,
    /// Lowercase name: the sort key.
    pub name_key: String,
    /// The unique sync key (`cw:<n>` or `manual:<id>`).
    pub cw_key: String,
    /// ConnectWise company id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cw_company_id: Option<i64>,
    /// ConnectWise identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cw_identifier: Option<String>,
    /// False once deleted or flagged in ConnectWise.
    #[serde(default = "yes")]
    pub active: bool,
    /// Where it comes from.
    #[serde(default = "manual")]
    pub source: CompanySource,
    /// Created.
    #[serde(default)]
    pub created_at: String,
    /// Updated.
    #[serde(default)]
    pub updated_at: String,
}

fn yes() -> bool {
    true
}

fn manual() -> CompanySource {
    CompanySource::Manual
}

impl CompanyDoc {
    /// The wire type.
    pub fn to_wire(&self) -> Company {
        Company {
            id: self.id.clone(),
            name: self.name.clone(),
            cw_company_id: self.cw_company_id,
            cw_identifier: self.cw_identifier.clone(),
            active: self.active,
            source: self.source,
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
        }
    }

    /// The document to store.
    pub fn to_document(&self) -> Document {
        match serde_json::to_value(self).expect("storage types serialize") {
            Value::Object(map) => map,
            _ => unreachable!("CompanyDoc is a struct"),
        }
    }

    /// A stored document as a company. Documents written before `cwKey` existed (or seeded by
    /// tests) get the manual key of their id.
    pub fn from_document(mut document: Document) -> Result<Self, StoreError> {
        if !document.contains_key(CW_KEY) {
            let id = document.get("id").and_then(Value::as_str).unwrap_or_default();
            let key = manual_key(id);
            document.insert(CW_KEY.into(), Value::String(key));
        }
        serde_json::from_value(Value::Object(document)).map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

/// The sync key of a manual company.
pub fn manual_key(id: &str) -> String {
    format!("manual:{id}")
}

/// The sync key of a ConnectWise company.
pub fn cw_key(cw_company_id: i64) -> String {
    format!("cw:{cw_company_id}")
}

/// Gives documents without `cwKey` their manual key, then declares the indexes (the unique
/// index needs the field on every document).
pub async fn prepare(store: &Store) -> Result<(), StoreError> {
    let missing = FindOptions::new(Filter::eq(CW_KEY, ttscm_runtime::store::Scalar::Null));
    for document in store.find(COMPANIES, &missing).await? {
        if let Some(id) = document.get("id").and_then(Value::as_str) {
            store
                .update_one(
                    COMPANIES,
                    &Filter::id(id),
                    &Update::default().set(CW_KEY, manual_key(id)),
                )
                .await?;
        }
    }
    store.ensure_indexes(COMPANIES, COMPANY_INDEXES).await
}
