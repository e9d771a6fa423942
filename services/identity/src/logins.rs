//! Pending sign-ins: what `GET /auth/uri` started and `GET /auth/redirect` finishes.
//!
//! A pending login is stored under the SHA-256 of its callback key (the OAuth `state`, 256
//! random bits) with the PKCE verifier and the nonce, for [`LOGIN_TTL`]. Finishing consumes it
//! whatever the outcome: a claim document with the same id is inserted first, so a replayed or
//! concurrent redirect for the same `state` finds it taken.

use serde_json::Value;
use ttscm_runtime::store::Document;
use ttscm_runtime::{Filter, Store, StoreError, clock, ids};

use ttscm_contract::token::token_hash as hash_token;

/// Pending logins: `{id: sha256(callbackKey), pkceVerifier, nonce, createdAt, expiresAt}`.
pub const PENDING_LOGINS: &str = "pending_logins";
/// One document per finished (or failed) login, id = the pending login's id.
pub const LOGIN_USES: &str = "pending_login_uses";
/// How long a started sign-in may take.
pub const LOGIN_TTL: time::Duration = time::Duration::minutes(10);

/// A pending login read back.
#[derive(Debug)]
pub struct Pending {
    /// PKCE verifier.
    pub pkce_verifier: String,
    /// Nonce.
    pub nonce: String,
}

/// Why a callback key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Never issued, expired, or already used.
    #[error("unknown, expired or already used sign-in")]
    Unknown,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A fresh callback key: 256 random bits, base64url.
pub fn new_callback_key() -> String {
    base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ids::random_bytes::<32>(),
    )
}

/// Whether `key` looks like a callback key (checked before it is hashed or looked up).
pub fn plausible_key(key: &str) -> bool {
    (16..=128).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Stores a pending login; answers its expiry.
pub async fn store_pending(
    store: &Store,
    key: &str,
    pkce_verifier: &str,
    nonce: &str,
) -> Result<String, StoreError> {
    let expires_at = clock::format_iso(time::OffsetDateTime::now_utc() + LOGIN_TTL);
    let mut document = Document::new();
    document.insert("id".into(), hash_token(key).into());
    document.insert("pkceVerifier".into(), pkce_verifier.into());
    document.insert("nonce".into(), nonce.into());
    document.insert("createdAt".into(), clock::now_iso().into());
    document.insert("expiresAt".into(), expires_at.clone().into());
    store.insert(PENDING_LOGINS, document).await?;
    Ok(expires_at)
}

fn live(document: &Document) -> Option<String> {
    let expires_at = document.get("expiresAt").and_then(Value::as_str)?;
    (clock::parse_iso(expires_at)? > time::OffsetDateTime::now_utc()).then(|| expires_at.to_owned())
}

/// The expiry of the pending login for `key`, if it is pending.
pub async fn check(store: &Store, key: &str) -> Result<String, LoginError> {
    if !plausible_key(key) {
        return Err(LoginError::Unknown);
    }
    let id = hash_token(key);
    let pending = store.get(PENDING_LOGINS, &id).await?.ok_or(LoginError::Unknown)?;
    let expires_at = live(&pending).ok_or(LoginError::Unknown)?;
    if store.get(LOGIN_USES, &id).await?.is_some() {
        return Err(LoginError::Unknown);
    }
    Ok(expires_at)
}

/// Consumes the pending login for `key`: answers it once, never again.
pub async fn take(store: &Store, key: &str) -> Result<Pending, LoginError> {
    if !plausible_key(key) {
        return Err(LoginError::Unknown);
    }
    let id = hash_token(key);
    let pending = store.get(PENDING_LOGINS, &id).await?.ok_or(LoginError::Unknown)?;
    let mut claim = Document::new();
    claim.insert("id".into(), id.clone().into());
    claim.insert("usedAt".into(), clock::now_iso().into());
    claim.insert(
        "expiresAt".into(),
        pending.get("expiresAt").cloned().unwrap_or(Value::Null),
    );
    match store.insert(LOGIN_USES, claim).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => return Err(LoginError::Unknown),
        Err(other) => return Err(other.into()),
    }
    live(&pending).ok_or(LoginError::Unknown)?;
    let text = |k: &str| ttscm_runtime::store::text(&pending, k);
    Ok(Pending {
        pkce_verifier: text("pkceVerifier"),
        nonce: text("nonce"),
    })
}

/// Deletes expired pending logins and their use records.
pub async fn sweep(store: &Store) -> Result<u64, StoreError> {
    let now = clock::now_iso();
    let mut removed = 0;
    for collection in [PENDING_LOGINS, LOGIN_USES] {
        removed += store
            .delete_many(collection, &Filter::Lt("expiresAt".into(), now.clone().into()))
            .await?;
    }
    Ok(removed)
}
