//! Offboarding, the identity side (`ttscm user offboard`, run by the CLI on the store): finding
//! the person who leaves, ending their sessions and revoking the API tokens made for them.
//! What they revealed is the credential service's part (`ttscm_credential::exposure`).

use serde_json::Value;
use ttscm_runtime::store::{FindOptions, Scalar};
use ttscm_runtime::{Filter, Store, clock};

use crate::IdentityError;
use crate::admin::ApiTokenInfo;
use crate::store::{API_TOKENS, prepare};
use crate::users::{SESSIONS, UserDoc, find_by_email, get_user, revoke_session};

/// How the person who leaves is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserKey {
    /// By e-mail (case-insensitive).
    Email(String),
    /// By Entra tenant id and object id (stable even when the e-mail changed).
    TenantObject {
        /// Tenant id (`tid`).
        tid: String,
        /// Object id (`oid`).
        oid: String,
    },
}

impl std::fmt::Display for UserKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserKey::Email(email) => write!(f, "e-mail '{email}'"),
            UserKey::TenantObject { tid, oid } => write!(f, "tenant '{tid}' and object id '{oid}'"),
        }
    }
}

/// The user `key` names (`NotFound` when none has signed in).
pub async fn find_user(store: &Store, key: &UserKey) -> Result<UserDoc, IdentityError> {
    crate::users::prepare(store).await?;
    let found = match key {
        UserKey::Email(email) => find_by_email(store, email.trim()).await?,
        UserKey::TenantObject { tid, oid } => {
            let tid_oid = format!("{}:{}", tid.trim(), oid.trim());
            match store
                .find_one(crate::users::USERS, Filter::eq("tidOid", tid_oid))
                .await?
            {
                Some(document) => get_user(store, &ttscm_runtime::store::text(&document, "id")).await?,
                None => None,
            }
        }
    };
    found.ok_or_else(|| IdentityError::NotFound(format!("no user with {key} has signed in")))
}

/// Revokes every live session of `user_id` (their refresh tokens stop working at once; access
/// tokens within the edge's token cache time, as a sign-out); answers the sessions' ids.
pub async fn end_sessions(store: &Store, user_id: &str) -> Result<Vec<String>, IdentityError> {
    let live = store
        .find(
            SESSIONS,
            &FindOptions::new(Filter::And(vec![
                Filter::eq("userId", user_id),
                Filter::eq("revokedAt", Scalar::Null),
            ])),
        )
        .await?;
    let mut ended = Vec::with_capacity(live.len());
    for session in live {
        let id = ttscm_runtime::store::text(&session, "id");
        revoke_session(store, &id, "offboarded").await?;
        ended.push(id);
    }
    Ok(ended)
}

/// Revokes every unrevoked API token made for `user_id` (`ttscm token create --owner`);
/// answers them. The edge refuses them within its token cache time.
pub async fn revoke_tokens_of(store: &Store, user_id: &str) -> Result<Vec<ApiTokenInfo>, IdentityError> {
    prepare(store).await?;
    let owned = store
        .find(
            API_TOKENS,
            &FindOptions::new(Filter::And(vec![
                Filter::eq("ownerId", user_id),
                Filter::eq("revokedAt", Scalar::Null),
            ])),
        )
        .await?;
    let mut revoked = Vec::with_capacity(owned.len());
    for token in owned {
        let text = |k: &str| token.get(k).and_then(Value::as_str).map(str::to_owned);
        let id = text("id").unwrap_or_default();
        crate::admin::revoke_api_token(store, &id).await?;
        revoked.push(ApiTokenInfo {
            name: text("name").unwrap_or_default(),
            roles: ttscm_runtime::store::texts(&token, "roles"),
            created_at: text("createdAt").unwrap_or_default(),
            expires_at: text("expiresAt"),
            revoked_at: Some(clock::now_iso()),
            owner_id: Some(user_id.to_owned()),
            id,
        });
    }
    Ok(revoked)
}
