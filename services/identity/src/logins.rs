//! Pending sign-ins: what `GET /auth/uri` started and `GET /auth/redirect` finishes.
//!
//! A pending login is stored under the SHA-256 of its callback key (the OAuth `state`, 256
//! random bits) with the PKCE verifier, the nonce and its client binding ([`LoginBinding`]), for
//! [`LOGIN_TTL`]. Finishing consumes it whatever the outcome: a claim document with the same id
//! is inserted first, so a replayed or concurrent redirect for the same `state` finds it taken.
//!
//! **One waiter**: a socket waiting for the outcome claims the pending login ([`claim`]: its
//! `waiter` field, set only while empty or already its own, one atomic conditional update), so
//! a second socket — on any edge replica — is refused until the first gives the claim up.

use serde_json::Value;
use ttscm_runtime::store::Document;
use ttscm_runtime::{Filter, Store, StoreError, clock, ids};

use ttscm_contract::identity::LoginBinding;
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
    /// How it is bound to its client.
    pub binding: LoginBinding,
}

/// Why a callback key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Never issued, expired, or already used.
    #[error("unknown, expired or already used sign-in")]
    Unknown,
    /// Another socket waits for it.
    #[error("another client is waiting for this sign-in")]
    Claimed,
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

/// Why a sign-in cannot be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// [`PendingLogins::cap`] sign-ins are already pending.
    #[error("too many sign-ins are pending")]
    TooMany,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<StartError> for ttscm_contract::WireError {
    fn from(error: StartError) -> Self {
        match error {
            StartError::TooMany => ttscm_contract::WireError::new(
                ttscm_contract::ErrorCode::Unavailable,
                "Too many sign-ins are in progress; try again in a few minutes",
            ),
            StartError::Store(error) => ttscm_runtime::service::store_failed(error),
        }
    }
}

/// The bound on pending sign-ins (`TTSCM_IDENTITY__MAX_PENDING_LOGINS`): each costs a document
/// for [`LOGIN_TTL`], and `/auth/uri` is open to anyone, so without it a stranger (or many,
/// past the edge's per-address limit) could fill the store.
///
/// Counted before each insert (live documents only, so the count recovers as sign-ins finish
/// or expire, without waiting for the sweep); concurrent starts may pass the count together,
/// so the bound may be exceeded by the starts in flight.
#[derive(Debug, Clone, Copy)]
pub struct PendingLogins {
    /// The most sign-ins pending at once.
    pub cap: u64,
}

impl PendingLogins {
    /// The bound `settings` set.
    pub fn new(settings: &ttscm_runtime::settings::IdentitySettings) -> Self {
        Self {
            cap: settings.max_pending_logins,
        }
    }

    /// Stores a pending login unless [`Self::cap`] are pending; answers its expiry.
    pub async fn start(
        &self,
        store: &Store,
        key: &str,
        pkce_verifier: &str,
        nonce: &str,
        binding: &LoginBinding,
    ) -> Result<String, StartError> {
        if pending_count(store).await? >= self.cap {
            tracing::warn!(cap = self.cap, "a sign-in was refused: too many are pending");
            return Err(StartError::TooMany);
        }
        Ok(store_pending(store, key, pkce_verifier, nonce, binding).await?)
    }
}

/// How many sign-ins are pending (stored and not expired; used ones count until they expire).
pub async fn pending_count(store: &Store) -> Result<u64, StoreError> {
    store
        .count(
            PENDING_LOGINS,
            &Filter::Gt("expiresAt".into(), clock::now_iso().into()),
        )
        .await
}

/// Stores a pending login without looking at the bound ([`PendingLogins::start`] does);
/// answers its expiry.
pub async fn store_pending(
    store: &Store,
    key: &str,
    pkce_verifier: &str,
    nonce: &str,
    binding: &LoginBinding,
) -> Result<String, StoreError> {
    let expires_at = clock::format_iso(time::OffsetDateTime::now_utc() + LOGIN_TTL);
    let mut document = Document::new();
    document.insert("id".into(), hash_token(key).into());
    document.insert("pkceVerifier".into(), pkce_verifier.into());
    document.insert("nonce".into(), nonce.into());
    document.insert("createdAt".into(), clock::now_iso().into());
    document.insert("expiresAt".into(), expires_at.clone().into());
    document.insert(
        "binding".into(),
        serde_json::to_value(binding).expect("bindings serialize"),
    );
    document.insert("waiter".into(), Value::Null);
    store.insert(PENDING_LOGINS, document).await?;
    Ok(expires_at)
}

/// The binding stored with `pending` (a document without one, or an unreadable one, is bound
/// to a cookie nobody has: it cannot be finished).
fn binding_of(pending: &Document) -> LoginBinding {
    pending
        .get("binding")
        .cloned()
        .and_then(|b| serde_json::from_value(b).ok())
        .unwrap_or(LoginBinding::Cookie { hash: String::new() })
}

/// Claims the pending login for `key` for the socket `waiter`; answers its expiry. Refused
/// when it is not pending ([`LoginError::Unknown`]) or another socket holds the claim
/// ([`LoginError::Claimed`]).
pub async fn claim(store: &Store, key: &str, waiter: &str) -> Result<String, LoginError> {
    let expires_at = check(store, key).await?;
    let mine = Filter::And(vec![
        Filter::id(&hash_token(key)),
        Filter::Or(vec![
            Filter::eq("waiter", ttscm_runtime::store::Scalar::Null),
            Filter::eq("waiter", waiter),
        ]),
    ]);
    if store
        .update_one(
            PENDING_LOGINS,
            &mine,
            &ttscm_runtime::Update::default().set("waiter", waiter),
        )
        .await?
    {
        Ok(expires_at)
    } else {
        Err(LoginError::Claimed)
    }
}

/// Gives up `waiter`'s claim on the pending login for `key` (nothing when it holds none).
pub async fn release(store: &Store, key: &str, waiter: &str) -> Result<(), StoreError> {
    if !plausible_key(key) {
        return Ok(());
    }
    let mine = Filter::And(vec![Filter::id(&hash_token(key)), Filter::eq("waiter", waiter)]);
    store
        .update_one(
            PENDING_LOGINS,
            &mine,
            &ttscm_runtime::Update::default().set("waiter", Value::Null),
        )
        .await?;
    Ok(())
}

/// How the pending login for `key` is bound, while it is pending (not consumed).
pub async fn describe(store: &Store, key: &str) -> Result<LoginBinding, LoginError> {
    check(store, key).await?;
    let pending = store
        .get(PENDING_LOGINS, &hash_token(key))
        .await?
        .ok_or(LoginError::Unknown)?;
    Ok(binding_of(&pending))
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
        binding: binding_of(&pending),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh embedded store in its own directory, removed on drop.
    struct TempStore(std::path::PathBuf, Store);

    impl TempStore {
        fn open() -> Self {
            let dir = std::env::temp_dir().join(format!("ttscm-logins-{}", ids::new_id()));
            std::fs::create_dir_all(&dir).expect("a temp dir");
            let store = ttscm_runtime::store::sqlite::SqliteStore::open(&dir.join("store.sqlite3"))
                .expect("the store opens");
            Self(dir, Store::Sqlite(store))
        }
    }

    impl Drop for TempStore {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn cookie() -> LoginBinding {
        LoginBinding::Cookie { hash: "h".into() }
    }

    /// One socket at a time holds a pending sign-in: a second is refused until the first gives
    /// it up; the claim survives the holder asking again.
    #[tokio::test]
    async fn one_waiter_claims_a_pending_sign_in() {
        let temp = TempStore::open();
        let store = &temp.1;
        let key = new_callback_key();
        store_pending(store, &key, "v", "n", &cookie())
            .await
            .expect("stored");
        claim(store, &key, "socket-a").await.expect("the first claims");
        claim(store, &key, "socket-a").await.expect("the holder again");
        assert!(matches!(
            claim(store, &key, "socket-b").await,
            Err(LoginError::Claimed)
        ));
        release(store, &key, "socket-b")
            .await
            .expect("a non-holder releases nothing");
        assert!(matches!(
            claim(store, &key, "socket-b").await,
            Err(LoginError::Claimed)
        ));
        release(store, &key, "socket-a").await.expect("released");
        claim(store, &key, "socket-b").await.expect("free again");
        assert!(matches!(
            claim(store, &new_callback_key(), "socket-b").await,
            Err(LoginError::Unknown)
        ));
        assert_eq!(describe(store, &key).await.expect("pending"), cookie());
        take(store, &key).await.expect("taken");
        assert!(matches!(describe(store, &key).await, Err(LoginError::Unknown)));
    }

    #[tokio::test]
    async fn a_sign_in_beyond_the_cap_is_refused_until_one_expires() {
        let temp = TempStore::open();
        let store = &temp.1;
        let logins = PendingLogins { cap: 2 };
        for _ in 0..2 {
            logins
                .start(store, &new_callback_key(), "verifier", "nonce", &cookie())
                .await
                .expect("under the cap");
        }
        let refused = logins
            .start(store, &new_callback_key(), "verifier", "nonce", &cookie())
            .await;
        assert!(matches!(refused, Err(StartError::TooMany)), "{refused:?}");
        let wire = ttscm_contract::WireError::from(StartError::TooMany);
        assert_eq!(wire.code, ttscm_contract::ErrorCode::Unavailable);
        assert!(wire.message.contains("Too many sign-ins"), "{}", wire.message);

        // An expired one no longer counts, swept or not.
        let expired = Filter::Eq("nonce".into(), "nonce".into());
        let one = store
            .find_one(PENDING_LOGINS, expired)
            .await
            .expect("found")
            .expect("one is stored");
        let id = ttscm_runtime::store::text(&one, "id");
        store.delete(PENDING_LOGINS, &id).await.expect("deleted");
        let mut past = one.clone();
        past.insert("expiresAt".into(), "2000-01-01T00:00:00.000Z".into());
        store
            .insert(PENDING_LOGINS, past)
            .await
            .expect("stored as expired");
        assert_eq!(pending_count(store).await.expect("counted"), 1);
        logins
            .start(store, &new_callback_key(), "verifier", "nonce", &cookie())
            .await
            .expect("an expired sign-in leaves room");
    }
}
