//! Administrative operations the `ttscm` CLI runs directly against the store (embedded or
//! MongoDB), e.g. while the server is running: API tokens.
//!
//! An API token is [`API_TOKEN_PREFIX`] + 43 base64url characters (256 random bits). Only its
//! SHA-256 is stored ([`ttscm_contract::token`] says why a fast hash).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use ttscm_contract::token::{API_TOKEN_PREFIX, token_hash};
use ttscm_runtime::store::{FindOptions, Order};
use ttscm_runtime::{Filter, Store, StoreError, Update, clock, ids};

use crate::IdentityError;
use crate::store::{API_TOKENS, ROLES, as_document, deleted_keys, live_roles, prepare};

/// An API token as listed (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiTokenInfo {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Role names.
    pub roles: Vec<String>,
    /// Created.
    pub created_at: String,
    /// Expiry, if any.
    pub expires_at: Option<String>,
    /// Revocation time, if revoked.
    pub revoked_at: Option<String>,
    /// The user the token was made for (`ttscm token create --owner`), if any: revoked with
    /// that user's tokens when they leave (`ttscm user offboard --revoke-tokens`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
}

/// Creates a token with `roles`, valid until `expires_at` (if given). Answers its info and the
/// token itself, which is shown once and never stored.
pub async fn create_api_token(
    store: &Store,
    name: &str,
    roles: &[String],
    expires_at: Option<time::OffsetDateTime>,
) -> Result<(ApiTokenInfo, String), IdentityError> {
    create_api_token_for(store, name, roles, expires_at, None).await
}

/// [`create_api_token`] made for the user with id `owner_id` (when given), so the token goes
/// when that user is offboarded.
pub async fn create_api_token_for(
    store: &Store,
    name: &str,
    roles: &[String],
    expires_at: Option<time::OffsetDateTime>,
    owner_id: Option<&str>,
) -> Result<(ApiTokenInfo, String), IdentityError> {
    prepare(store).await?;
    let name = name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(IdentityError::Invalid(
            "a token name is 1 to 100 characters".into(),
        ));
    }
    if roles.is_empty() {
        return Err(IdentityError::Invalid("a token needs at least one role".into()));
    }
    for role in roles {
        if live_roles(store, std::slice::from_ref(role)).await?.is_empty() {
            return Err(IdentityError::NotFound(format!("there is no role '{role}'")));
        }
    }
    let token = format!(
        "{API_TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(ids::random_bytes::<32>())
    );
    let info = ApiTokenInfo {
        id: ids::new_id(),
        name: name.to_owned(),
        roles: roles.to_vec(),
        created_at: clock::now_iso(),
        expires_at: expires_at.map(clock::format_iso),
        revoked_at: None,
        owner_id: owner_id.map(str::to_owned),
    };
    let mut document = as_document(serde_json::to_value(&info).expect("token info serializes"));
    document.insert("tokenHash".into(), Value::String(token_hash(&token)));
    store.insert(API_TOKENS, document).await?;
    Ok((info, token))
}

/// Every token, newest first.
pub async fn list_api_tokens(store: &Store) -> Result<Vec<ApiTokenInfo>, IdentityError> {
    prepare(store).await?;
    let documents = store
        .find(
            API_TOKENS,
            &FindOptions::new(Filter::All).sort("createdAt", Order::Desc),
        )
        .await?;
    Ok(documents
        .into_iter()
        .map(|d| {
            let text = |k: &str| d.get(k).and_then(Value::as_str).map(str::to_owned);
            ApiTokenInfo {
                id: text("id").unwrap_or_default(),
                name: text("name").unwrap_or_default(),
                roles: ttscm_runtime::store::texts(&d, "roles"),
                created_at: text("createdAt").unwrap_or_default(),
                expires_at: text("expiresAt"),
                revoked_at: text("revokedAt"),
                owner_id: text("ownerId"),
            }
        })
        .collect())
}

/// Revokes a token; the edge stops accepting it within its token cache time.
pub async fn revoke_api_token(store: &Store, id: &str) -> Result<(), IdentityError> {
    let revoked = store
        .update_one(
            API_TOKENS,
            &Filter::And(vec![
                Filter::id(id),
                Filter::eq("revokedAt", ttscm_runtime::store::Scalar::Null),
            ]),
            &Update::default().set("revokedAt", clock::now_iso()),
        )
        .await?;
    if revoked {
        return Ok(());
    }
    match store.get(API_TOKENS, id).await? {
        Some(_) => Ok(()),
        None => Err(IdentityError::NotFound(format!("there is no token '{id}'"))),
    }
}

/// Creates or replaces a role (used by tests and bootstrap); a deleted role's name is refused.
pub async fn upsert_role(store: &Store, name: &str, permissions: &[&str]) -> Result<(), IdentityError> {
    prepare(store).await?;
    for p in permissions {
        ttscm_contract::Permission::parse(p).map_err(|e| IdentityError::Invalid(e.to_string()))?;
    }
    let now = clock::now_iso();
    let key = name.to_lowercase();
    let document = json!({
        "id": ids::new_id(), "name": name, "nameKey": key, "permissions": permissions,
        "builtIn": false, "createdAt": now, "updatedAt": now,
    });
    match store.insert(ROLES, as_document(document)).await {
        Ok(()) => Ok(()),
        Err(StoreError::Conflict) => {
            if !deleted_keys(store, std::slice::from_ref(&key)).await?.is_empty() {
                return Err(IdentityError::Invalid(format!(
                    "the role name '{name}' was used by a deleted role and cannot be used again"
                )));
            }
            store
                .update_one(
                    ROLES,
                    &Filter::eq("nameKey", key),
                    &Update::default()
                        .set("permissions", permissions.to_vec())
                        .set("updatedAt", now),
                )
                .await?;
            Ok(())
        }
        Err(other) => Err(other.into()),
    }
}

/// Gives the user with `email` (who has signed in at least once) the role `role`; answers the
/// user's id and roles afterwards. Bootstrap admins before anyone signed in go in
/// `TTSCM_IDENTITY__ADMIN_EMAILS` instead.
pub async fn grant_role(
    store: &Store,
    email: &str,
    role: &str,
) -> Result<(String, Vec<String>), IdentityError> {
    prepare(store).await?;
    let user = crate::users::find_by_email(store, email.trim())
        .await?
        .ok_or_else(|| {
            IdentityError::NotFound(format!(
                "no user with e-mail '{email}' has signed in yet; sign in once first \
             (or list the address in TTSCM_IDENTITY__ADMIN_EMAILS to be admin at first sign-in)"
            ))
        })?;
    let stored = live_roles(store, &[role.to_owned()])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| IdentityError::NotFound(format!("there is no role '{role}'")))?;
    let name = stored
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or(role)
        .to_owned();
    let mut roles = user.roles.clone();
    if !roles.iter().any(|r| r.eq_ignore_ascii_case(&name)) {
        roles.push(name.clone());
        crate::users::update_user(store, &user.id, Update::default().set("roles", roles.clone())).await?;
        // Deleted while being granted: take it out again (a dead name grants nothing anyway).
        if !deleted_keys(store, &[name.to_lowercase()]).await?.is_empty() {
            roles.retain(|r| r != &name);
            crate::users::update_user(store, &user.id, Update::default().set("roles", roles)).await?;
            return Err(IdentityError::NotFound(format!("there is no role '{role}'")));
        }
    }
    Ok((user.id, roles))
}
