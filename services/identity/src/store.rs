//! identity's collections (it is their only owner): roles, deleted roles and API tokens.

use std::collections::HashSet;

use serde_json::json;
use ttscm_contract::permission::names;
use ttscm_contract::{Permission, PermissionSet};
use ttscm_runtime::store::{Document, Filter, IndexSpec, text};
use ttscm_runtime::{Store, StoreError, clock};

/// Roles: `{id, name, nameKey, permissions, builtIn, createdAt, updatedAt}`.
pub const ROLES: &str = "roles";
/// Deleted roles (tombstones): `{id: nameKey, name, roleId, deletedAt}`, one per deleted name,
/// kept forever. The role's own document stays too, so its unique `nameKey` keeps the name
/// taken; a tombstone is written by a unique insert, so no concurrent update can undo it (see
/// `roles.rs`).
pub const DELETED_ROLES: &str = "deleted_roles";
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

/// The name keys among `keys` whose roles were deleted.
pub async fn deleted_keys(store: &Store, keys: &[String]) -> Result<HashSet<String>, StoreError> {
    if keys.is_empty() {
        return Ok(HashSet::new());
    }
    let found = store
        .find(
            DELETED_ROLES,
            &ttscm_runtime::FindOptions::new(Filter::is_in("id", keys.iter().map(String::as_str))),
        )
        .await?;
    Ok(found.iter().map(|d| text(d, "id")).collect())
}

/// The live roles named by `names` (compared ignoring case): deleted and unknown names are
/// left out.
pub async fn live_roles(store: &Store, names: &[String]) -> Result<Vec<Document>, StoreError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = names.iter().map(|r| r.to_lowercase()).collect();
    let found = store
        .find(
            ROLES,
            &ttscm_runtime::FindOptions::new(Filter::is_in("nameKey", keys.iter().map(String::as_str))),
        )
        .await?;
    // Read the tombstones after the roles: a role deleted meanwhile is then seen as deleted.
    let deleted = deleted_keys(store, &keys).await?;
    Ok(found
        .into_iter()
        .filter(|role| !deleted.contains(&text(role, "nameKey")))
        .collect())
}

/// The union of the named roles' permissions; unknown and deleted role names grant nothing.
pub async fn permissions_of(store: &Store, roles: &[String]) -> Result<PermissionSet, StoreError> {
    let found = live_roles(store, roles).await?;
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
