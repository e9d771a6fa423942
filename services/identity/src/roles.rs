//! Role administration (beyond the spec, needed to run it): list, create, change permissions,
//! delete. Roles are referenced by name from users and API tokens, so a role's name never
//! changes, and a role still held by anyone cannot be deleted (409 with the count).
//!
//! A deleted role's name is never used again (issue 18). Counting the holders and deleting are
//! not one atomic step, so a grant racing the delete can leave a user or token holding the name
//! of a deleted role. That must never come alive: deleting a role writes a tombstone
//! (`deleted_roles`, id = the name's key) by a unique insert — atomic on FerretDB too, where
//! conditional updates are not — and keeps the role's document, whose unique `nameKey` keeps
//! the name taken. So:
//! - creating a role of a deleted role's name is refused (409 "name was used by a deleted
//!   role"), and the admin CLI's upsert refuses it too;
//! - a name with a tombstone resolves to no permissions (`store::permissions_of`), is not
//!   listed, cannot be changed, deleted again or granted (400 "There is no role");
//! - a grant re-reads the tombstones after writing: a role deleted meanwhile is taken out again
//!   and the grant answers 409. (Even if that clean-up lost a race, the dead name grants
//!   nothing and cannot be revived.) Taking away a dead name needs nothing, and a dead name a
//!   user already holds is dropped silently when their roles are set.
//!
//! Delegation cannot escalate: a caller creates, changes, deletes, grants or takes away only
//! roles whose permissions it holds entirely (wildcards count: `credential.*` covers
//! `credential.fetch`; only `*` covers `*`, so only its holders grant `admin`). The callers pass
//! the principal's permissions.

use serde_json::{Value, json};
use ttscm_contract::identity::{Role, RoleInput};
use ttscm_contract::{ErrorCode, FieldError, Permission, PermissionSet, WireError};
use ttscm_runtime::service::store_failed;
use ttscm_runtime::store::{Document, FindOptions, Order, text, texts};
use ttscm_runtime::{Filter, Store, StoreError, Update, clock, ids};

use crate::store::{API_TOKENS, DELETED_ROLES, ROLES, as_document, deleted_keys, live_roles};
use crate::users::all_users;

fn role_of(document: &Document) -> Role {
    let text = |k: &str| text(document, k);
    Role {
        id: text("id"),
        name: text("name"),
        permissions: texts(document, "permissions"),
        built_in: document.get("builtIn").and_then(Value::as_bool).unwrap_or(false),
        created_at: text("createdAt"),
        updated_at: text("updatedAt"),
    }
}

/// Whether `name` is a valid role name.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn validate_permissions(permissions: &[String], errors: &mut Vec<FieldError>) {
    for (i, permission) in permissions.iter().enumerate() {
        if let Err(e) = Permission::parse(permission) {
            errors.push(FieldError::new(
                vec![json!("permissions"), json!(i)],
                e.to_string(),
            ));
        }
    }
}

/// The first of `permissions` that `held` does not grant.
fn first_lacking<'a>(held: &PermissionSet, permissions: &'a [String]) -> Option<&'a str> {
    permissions.iter().map(String::as_str).find(|p| !held.grants(p))
}

/// Refuses (403, naming the permission) unless `held` grants every permission the role `role`
/// holds; `action` says what the caller tried (`grant`, `change`, …).
pub fn require_holds(
    held: &PermissionSet,
    action: &str,
    role: &str,
    permissions: &[String],
) -> Result<(), WireError> {
    match first_lacking(held, permissions) {
        None => Ok(()),
        Some(missing) => Err(WireError::new(
            ErrorCode::Forbidden,
            format!("You cannot {action} role \"{role}\": it holds \"{missing}\", which you do not hold"),
        )),
    }
}

/// Whether the role named by `key` (a lowercased name) was deleted.
async fn is_deleted(store: &Store, key: &str) -> Result<bool, WireError> {
    Ok(store
        .get(DELETED_ROLES, key)
        .await
        .map_err(store_failed)?
        .is_some())
}

/// The live role named `name` (ignoring case), if any.
async fn live_role(store: &Store, name: &str) -> Result<Option<Document>, WireError> {
    Ok(live_roles(store, &[name.to_owned()])
        .await
        .map_err(store_failed)?
        .into_iter()
        .next())
}

/// Every live role, by name.
pub async fn list(store: &Store) -> Result<Vec<Role>, WireError> {
    let documents = store
        .find(ROLES, &FindOptions::new(Filter::All).sort("nameKey", Order::Asc))
        .await
        .map_err(store_failed)?;
    let deleted = store
        .find(DELETED_ROLES, &FindOptions::new(Filter::All))
        .await
        .map_err(store_failed)?;
    let deleted: Vec<String> = deleted.iter().map(|d| text(d, "id")).collect();
    Ok(documents
        .iter()
        .filter(|d| !deleted.contains(&text(d, "nameKey")))
        .map(role_of)
        .collect())
}

/// Creates a role holding only permissions `held` grants.
pub async fn create(store: &Store, held: &PermissionSet, input: RoleInput) -> Result<Role, WireError> {
    let mut errors = Vec::new();
    let name = input.name.unwrap_or_default();
    if !valid_name(&name) {
        errors.push(FieldError::new(
            vec![json!("name")],
            "A role name is 1 to 64 letters, digits, '_', '-' or '.'",
        ));
    }
    let permissions = input.permissions.unwrap_or_default();
    validate_permissions(&permissions, &mut errors);
    if !errors.is_empty() {
        return Err(WireError::validation(errors));
    }
    require_holds(held, "create", &name, &permissions)?;
    let now = clock::now_iso();
    let document = as_document(json!({
        "id": ids::new_id(), "name": name, "nameKey": name.to_lowercase(), "permissions": permissions,
        "builtIn": false, "createdAt": now, "updatedAt": now,
    }));
    match store.insert(ROLES, document.clone()).await {
        Ok(()) => Ok(role_of(&document)),
        Err(StoreError::Conflict) if is_deleted(store, &name.to_lowercase()).await? => Err(WireError::new(
            ErrorCode::Conflict,
            format!("The role name '{name}' was used by a deleted role and cannot be used again"),
        )),
        Err(StoreError::Conflict) => Err(WireError::new(
            ErrorCode::Conflict,
            format!("A role named '{name}' already exists"),
        )),
        Err(other) => Err(store_failed(other)),
    }
}

async fn existing(store: &Store, id: &str) -> Result<Document, WireError> {
    let role = store
        .get(ROLES, id)
        .await
        .map_err(store_failed)?
        .ok_or_else(|| WireError::not_found("Role"))?;
    if is_deleted(store, &text(&role, "nameKey")).await? {
        return Err(WireError::not_found("Role"));
    }
    if role.get("builtIn").and_then(Value::as_bool) == Some(true) {
        return Err(WireError::new(
            ErrorCode::Conflict,
            "The built-in admin role cannot be changed or deleted",
        ));
    }
    Ok(role)
}

/// Replaces a role's permissions (its name cannot change); `held` must grant every permission
/// the role holds now and every one it is to hold.
pub async fn update(
    store: &Store,
    held: &PermissionSet,
    id: &str,
    input: RoleInput,
) -> Result<Role, WireError> {
    let role = existing(store, id).await?;
    let current = role_of(&role);
    require_holds(held, "change", &current.name, &current.permissions)?;
    let mut errors = Vec::new();
    if let Some(name) = &input.name
        && role.get("name").and_then(Value::as_str) != Some(name.as_str())
    {
        errors.push(FieldError::new(
            vec![json!("name")],
            "A role's name cannot change (users and API tokens refer to it); create a new role",
        ));
    }
    let permissions = input.permissions.unwrap_or(current.permissions);
    validate_permissions(&permissions, &mut errors);
    if !errors.is_empty() {
        return Err(WireError::validation(errors));
    }
    if let Some(missing) = first_lacking(held, &permissions) {
        return Err(WireError::new(
            ErrorCode::Forbidden,
            format!(
                "You cannot give role \"{}\" \"{missing}\", which you do not hold",
                current.name
            ),
        ));
    }
    let now = clock::now_iso();
    store
        .update_one(
            ROLES,
            &Filter::id(id),
            &Update::default()
                .set("permissions", permissions.clone())
                .set("updatedAt", now.as_str()),
        )
        .await
        .map_err(store_failed)?;
    let mut updated = role;
    updated.insert("permissions".into(), json!(permissions));
    updated.insert("updatedAt".into(), json!(now));
    Ok(role_of(&updated))
}

/// Deletes a role nobody holds, whose permissions `held` grants: writes its tombstone (the name
/// is never used again; see the module documentation).
pub async fn delete(store: &Store, held: &PermissionSet, id: &str) -> Result<Role, WireError> {
    let role = existing(store, id).await?;
    let current = role_of(&role);
    require_holds(held, "delete", &current.name, &current.permissions)?;
    let key = role
        .get("nameKey")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let holds = |roles: &[String]| roles.iter().any(|r| r.to_lowercase() == key);
    let users = all_users(store)
        .await
        .map_err(store_failed)?
        .iter()
        .filter(|u| holds(&u.roles))
        .count();
    let tokens = store
        .find(
            API_TOKENS,
            &FindOptions::new(Filter::eq("revokedAt", ttscm_runtime::store::Scalar::Null)),
        )
        .await
        .map_err(store_failed)?
        .iter()
        .filter(|t| holds(&texts(t, "roles")))
        .count();
    if users + tokens > 0 {
        return Err(WireError::new(
            ErrorCode::Conflict,
            format!(
                "The role is still held by {users} user(s) and {tokens} API token(s); take it away from them first"
            ),
        ));
    }
    let tombstone = as_document(json!({
        "id": key, "name": current.name, "roleId": id, "deletedAt": clock::now_iso(),
    }));
    match store.insert(DELETED_ROLES, tombstone).await {
        Ok(()) => Ok(current),
        // A concurrent delete won.
        Err(StoreError::Conflict) => Err(WireError::not_found("Role")),
        Err(other) => Err(store_failed(other)),
    }
}

/// Checks that every name is a live role; answers them as stored (canonical case). Names of
/// deleted roles in `held` (what the principal holds now) are dropped; other deleted or
/// unknown names are refused (400).
pub async fn existing_names(
    store: &Store,
    names: &[String],
    held: &[String],
) -> Result<Vec<String>, WireError> {
    let mut canonical = Vec::new();
    let mut errors = Vec::new();
    let keys: Vec<String> = names.iter().map(|n| n.to_lowercase()).collect();
    let deleted = deleted_keys(store, &keys).await.map_err(store_failed)?;
    for (i, name) in names.iter().enumerate() {
        let key = name.to_lowercase();
        if deleted.contains(&key) && held.iter().any(|h| h.to_lowercase() == key) {
            continue;
        }
        match live_role(store, name).await? {
            Some(role) => {
                let name = role_of(&role).name;
                if !canonical.contains(&name) {
                    canonical.push(name);
                }
            }
            None => errors.push(FieldError::new(
                vec![json!("roles"), json!(i)],
                format!("There is no role '{name}'"),
            )),
        }
    }
    if errors.is_empty() {
        Ok(canonical)
    } else {
        Err(WireError::validation(errors))
    }
}

/// Refuses (403) unless `held` grants every permission of each role that changing a user's
/// roles from `old` to `new` grants or takes away (roles kept are not the caller's concern).
pub async fn require_may_change(
    store: &Store,
    held: &PermissionSet,
    old: &[String],
    new: &[String],
) -> Result<(), WireError> {
    let keys = |names: &[String]| names.iter().map(|n| n.to_lowercase()).collect::<Vec<_>>();
    let (old_keys, new_keys) = (keys(old), keys(new));
    let granted = new_keys
        .iter()
        .filter(|k| !old_keys.contains(k))
        .map(|k| ("grant", k));
    let taken = old_keys
        .iter()
        .filter(|k| !new_keys.contains(k))
        .map(|k| ("take away", k));
    for (action, key) in granted.chain(taken) {
        // A name no live role has grants nothing; taking it away needs nothing.
        if let Some(role) = live_role(store, key).await? {
            let role = role_of(&role);
            require_holds(held, action, &role.name, &role.permissions)?;
        }
    }
    Ok(())
}

/// After `granted` were written to a principal's roles: the names among them whose roles were
/// deleted meanwhile (the grant raced the delete), for the caller to take out again.
pub async fn deleted_meanwhile(store: &Store, granted: &[String]) -> Result<Vec<String>, WireError> {
    let keys: Vec<String> = granted.iter().map(|n| n.to_lowercase()).collect();
    let deleted = deleted_keys(store, &keys).await.map_err(store_failed)?;
    Ok(granted
        .iter()
        .filter(|n| deleted.contains(&n.to_lowercase()))
        .cloned()
        .collect())
}
