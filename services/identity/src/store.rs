//! identity's collections (it is their only owner): roles and API tokens.

use serde_json::json;
use ttscm_contract::permission::names;
use ttscm_contract::{Permission, PermissionSet};
use ttscm_runtime::store::{Document, Filter, IndexSpec};
use ttscm_runtime::{Store, StoreError, clock};

/// Roles: `{id, name, nameKey, permissions, builtIn, createdAt, updatedAt}`.
pub const ROLES: &str = "roles";
/// API tokens: `{id, name, tokenHash, roles, createdAt, expiresAt, revokedAt}`.
pub const API_TOKENS: &str = "api_tokens";
/// The built-in role holding every permission.
pub const ADMIN_ROLE: &str = "admin";

const ROLE_INDEXES: &[IndexSpec] = &[IndexSpec {
    name: "name_key_unique",
    fields: &["nameKey"],
    unique: true,
}];
const TOKEN_INDEXES: &[IndexSpec] = &[IndexSpec {
    name: "token_hash_unique",
    fields: &["tokenHash"],
    unique: true,
}];

/// Declares indexes and makes sure the built-in `admin` role exists.
pub async fn prepare(store: &Store) -> Result<(), StoreError> {
    store.ensure_indexes(ROLES, ROLE_INDEXES).await?;
    store.ensure_indexes(API_TOKENS, TOKEN_INDEXES).await?;
    let now = clock::now_iso();
    let admin = json!({
        "id": ADMIN_ROLE, "name": ADMIN_ROLE, "nameKey": ADMIN_ROLE, "permissions": [names::ALL],
        "builtIn": true, "createdAt": now, "updatedAt": now,
    });
    match store.insert(ROLES, as_document(admin)).await {
        Ok(()) | Err(StoreError::Conflict) => Ok(()),
        Err(other) => Err(other),
    }
}

/// The union of the named roles' permissions; unknown role names grant nothing.
pub async fn permissions_of(store: &Store, roles: &[String]) -> Result<PermissionSet, StoreError> {
    if roles.is_empty() {
        return Ok(PermissionSet::default());
    }
    let keys: Vec<String> = roles.iter().map(|r| r.to_lowercase()).collect();
    let found = store
        .find(
            ROLES,
            &ttscm_runtime::FindOptions::new(Filter::is_in("nameKey", keys)),
        )
        .await?;
    let mut permissions = Vec::new();
    for role in found {
        for value in role
            .get("permissions")
            .and_then(|p| p.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(permission) = value.as_str().and_then(|p| Permission::parse(p).ok()) {
                permissions.push(permission);
            }
        }
    }
    Ok(PermissionSet::new(permissions))
}

/// A JSON object literal as a document.
pub fn as_document(value: serde_json::Value) -> Document {
    match value {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("callers pass object literals"),
    }
}
