//! Users, sign-in sessions and refresh tokens (identity owns these collections).
//!
//! - A user is keyed by Entra's (`tid`, `oid`), never by e-mail or UPN. The display name comes
//!   from the ID token when the user is first seen and is the user's to change afterwards; the
//!   e-mail and login are refreshed from the ID token at every sign-in.
//! - A session is a refresh-token family. Each refresh token is stored as its SHA-256 only and
//!   works once: using it inserts a claim document whose id is that hash, so of two concurrent
//!   refreshes exactly one wins (a unique-id insert is atomic on every store, unlike a
//!   conditional update on FerretDB). Presenting a used token again revokes the whole family
//!   (RFC 9700 §4.14.2) — the loser of such a race included.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use ttscm_contract::identity::{ACCESS_TOKEN_TYPE, AccessClaims, TokenPair, User};
use ttscm_contract::token::token_hash as hash_token;
use ttscm_runtime::store::{Document, FindOptions, IndexSpec, Order};
use ttscm_runtime::{Filter, Store, StoreError, Update, clock, ids};

use crate::SigningKey;
use crate::store::ADMIN_ROLE;

/// Users: `{id, tidOid, tid, oid, name, email, emailKey, login, image, roles, createdAt, updatedAt, lastSignInAt}`.
pub const USERS: &str = "users";
/// Sessions (refresh-token families): `{id, userId, createdAt, expiresAt, revokedAt, revokedReason}`.
pub const SESSIONS: &str = "sessions";
/// Refresh tokens by hash: `{id, sessionId, userId, createdAt, expiresAt}`.
pub const REFRESH_TOKENS: &str = "refresh_tokens";
/// One document per refresh token ever used, id = its hash (the single-use guard).
pub const REFRESH_TOKEN_USES: &str = "refresh_token_uses";

/// Prefix of refresh tokens, so scanners and people can tell them from access tokens.
pub const REFRESH_TOKEN_PREFIX: &str = "ttscmr_";
/// Scopes of a signed-in user's access token.
pub const USER_SCOPES: &str = "user.read user.write";

const USER_INDEXES: &[IndexSpec] = &[IndexSpec {
    name: "tid_oid_unique",
    fields: &["tidOid"],
    unique: true,
}];

/// Declares the indexes of the user and session collections.
pub async fn prepare(store: &Store) -> Result<(), StoreError> {
    store.ensure_indexes(USERS, USER_INDEXES).await
}

/// A stored user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserDoc {
    /// Id.
    pub id: String,
    /// `tid:oid`, unique.
    pub tid_oid: String,
    /// Entra tenant id.
    pub tid: String,
    /// Entra object id.
    pub oid: String,
    /// Display name.
    pub name: String,
    /// E-mail.
    pub email: String,
    /// Lowercase e-mail, for lookups.
    pub email_key: String,
    /// Part of the e-mail before `@`.
    pub login: String,
    /// Avatar URL.
    #[serde(default)]
    pub image: Option<String>,
    /// Role names.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Created.
    pub created_at: String,
    /// Last changed.
    pub updated_at: String,
    /// Last sign-in.
    #[serde(default)]
    pub last_sign_in_at: Option<String>,
    /// When the bootstrap settings made this user an admin (or found it one already): set once,
    /// after which they never grant it anything again, so a demotion sticks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_granted_at: Option<String>,
}

impl UserDoc {
    /// The user as the API shows it.
    pub fn to_user(&self) -> User {
        User {
            id: self.id.clone(),
            name: self.name.clone(),
            email: self.email.clone(),
            login: self.login.clone(),
            image: self.image.clone(),
            roles: self.roles.clone(),
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
        }
    }

    fn from_document(document: Document) -> Result<Self, StoreError> {
        serde_json::from_value(Value::Object(document)).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    fn to_document(&self) -> Document {
        match serde_json::to_value(self).expect("users serialize") {
            Value::Object(map) => map,
            _ => unreachable!("a struct serializes to an object"),
        }
    }
}

/// Who signed in, as the ID token says.
#[derive(Debug, Clone)]
pub struct SignInProfile {
    /// Tenant id.
    pub tid: String,
    /// Object id.
    pub oid: String,
    /// Display name (first sign-in only).
    pub name: String,
    /// E-mail (`email`, else `preferred_username`).
    pub email: String,
    /// Whether this person is a bootstrap admin by (`tid`, `oid`) ([`Bootstrap::ById`]) for
    /// [`upsert_signed_in`]; the sign-in itself decides with [`upsert_signed_in_as`].
    pub bootstrap_admin: bool,
}

/// How a sign-in matches the bootstrap-admin settings (`TTSCM_IDENTITY__ADMIN_OBJECT_IDS`,
/// `TTSCM_IDENTITY__ADMIN_EMAILS`).
///
/// A bootstrap grant happens at most once per user: the user records it
/// ([`UserDoc::bootstrap_granted_at`]) and is never granted again, whatever its roles become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bootstrap {
    /// Not a bootstrap admin.
    No,
    /// Matched by (tenant id, object id): granted `admin` at the first sign-in that matches,
    /// unless granted once already.
    ById,
    /// Matched by e-mail in the configured tenant: granted `admin` only when this sign-in
    /// creates the user.
    ByEmail,
}

/// The `login` of an e-mail: the part before `@`.
pub fn login_of(email: &str) -> String {
    email.split('@').next().unwrap_or_default().to_owned()
}

/// A user by id.
pub async fn get_user(store: &Store, id: &str) -> Result<Option<UserDoc>, StoreError> {
    store
        .get(USERS, id)
        .await?
        .map(UserDoc::from_document)
        .transpose()
}

/// A user by e-mail (case-insensitive).
pub async fn find_by_email(store: &Store, email: &str) -> Result<Option<UserDoc>, StoreError> {
    store
        .find_one(USERS, Filter::eq("emailKey", email.to_lowercase()))
        .await?
        .map(UserDoc::from_document)
        .transpose()
}

/// [`upsert_signed_in_as`] with [`Bootstrap::ById`] when `profile.bootstrap_admin`, else
/// [`Bootstrap::No`].
pub async fn upsert_signed_in(store: &Store, profile: &SignInProfile) -> Result<UserDoc, StoreError> {
    let bootstrap = if profile.bootstrap_admin {
        Bootstrap::ById
    } else {
        Bootstrap::No
    };
    upsert_signed_in_as(store, profile, bootstrap).await
}

/// Creates the user on first sign-in, or refreshes e-mail/login of the existing one keyed by
/// (`tid`, `oid`); grants bootstrap `admin` as [`Bootstrap`] says, once per user.
pub async fn upsert_signed_in_as(
    store: &Store,
    profile: &SignInProfile,
    bootstrap: Bootstrap,
) -> Result<UserDoc, StoreError> {
    let key = format!("{}:{}", profile.tid, profile.oid);
    let now = clock::now_iso();
    for _ in 0..2 {
        if let Some(document) = store.find_one(USERS, Filter::eq("tidOid", key.as_str())).await? {
            let mut user = UserDoc::from_document(document)?;
            let mut update = Update::default()
                .set("email", profile.email.as_str())
                .set("emailKey", profile.email.to_lowercase())
                .set("login", login_of(&profile.email))
                .set("lastSignInAt", now.as_str());
            user.email = profile.email.clone();
            user.email_key = profile.email.to_lowercase();
            user.login = login_of(&profile.email);
            // Only a (tid, oid) match grants an existing user, and only if none did before.
            if bootstrap == Bootstrap::ById && user.bootstrap_granted_at.is_none() {
                user.bootstrap_granted_at = Some(now.clone());
                update = update.set("bootstrapGrantedAt", now.as_str());
                if !user.roles.iter().any(|r| r == ADMIN_ROLE) {
                    user.roles.push(ADMIN_ROLE.into());
                    user.updated_at = now.clone();
                    update = update
                        .set("roles", user.roles.clone())
                        .set("updatedAt", now.as_str());
                }
            }
            store.update_one(USERS, &Filter::id(&user.id), &update).await?;
            return Ok(user);
        }
        let user = UserDoc {
            id: ids::new_id(),
            tid_oid: key.clone(),
            tid: profile.tid.clone(),
            oid: profile.oid.clone(),
            name: profile.name.clone(),
            email: profile.email.clone(),
            email_key: profile.email.to_lowercase(),
            login: login_of(&profile.email),
            image: None,
            roles: if bootstrap == Bootstrap::No {
                Vec::new()
            } else {
                vec![ADMIN_ROLE.into()]
            },
            created_at: now.clone(),
            updated_at: now.clone(),
            last_sign_in_at: Some(now.clone()),
            bootstrap_granted_at: (bootstrap != Bootstrap::No).then(|| now.clone()),
        };
        match store.insert(USERS, user.to_document()).await {
            Ok(()) => return Ok(user),
            // Signed in twice at once: the other insert won; read it on the next round.
            Err(StoreError::Conflict) => continue,
            Err(other) => return Err(other),
        }
    }
    Err(StoreError::Other(
        "the user was created concurrently and cannot be read".into(),
    ))
}

/// Sets a user's fields (the caller validated them) and answers the user as stored.
pub async fn update_user(store: &Store, id: &str, update: Update) -> Result<Option<UserDoc>, StoreError> {
    let update = update.set("updatedAt", clock::now_iso());
    if !store.update_one(USERS, &Filter::id(id), &update).await? {
        return Ok(None);
    }
    get_user(store, id).await
}

/// A page of users, newest first, optionally matching `search` in name or e-mail.
pub async fn list_users(
    store: &Store,
    page: u64,
    rpp: u64,
    search: Option<&str>,
) -> Result<(Vec<UserDoc>, u64), StoreError> {
    let filter = match search.map(str::trim).filter(|s| !s.is_empty()) {
        Some(text) => Filter::Or(vec![
            Filter::contains_ci("name", text),
            Filter::contains_ci("email", text),
        ]),
        None => Filter::All,
    };
    let total = store.count(USERS, &filter).await?;
    let documents = store
        .find(
            USERS,
            &FindOptions::new(filter)
                .sort("createdAt", Order::Desc)
                .page((page.max(1) - 1) * rpp, rpp),
        )
        .await?;
    let users = documents
        .into_iter()
        .map(UserDoc::from_document)
        .collect::<Result<_, _>>()?;
    Ok((users, total))
}

/// Every user (role administration counts role holders; user counts are small).
pub async fn all_users(store: &Store) -> Result<Vec<UserDoc>, StoreError> {
    store
        .find(USERS, &FindOptions::new(Filter::All))
        .await?
        .into_iter()
        .map(UserDoc::from_document)
        .collect()
}

// ---- sessions and tokens --------------------------------------------------------------------

/// What token issuing needs to know.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// Signs access tokens.
    pub key: SigningKey,
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// Access-token lifetime (s).
    pub access_ttl: u64,
    /// Refresh-token lifetime (s).
    pub refresh_ttl: u64,
    /// Session lifetime (s).
    pub session_ttl: u64,
}

fn iso_in(seconds: u64) -> String {
    clock::format_iso(
        time::OffsetDateTime::now_utc()
            + time::Duration::seconds(i64::try_from(seconds).unwrap_or(i64::MAX / 2)),
    )
}

/// Why a token operation was refused; every case is a 401 to the client.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Unknown, expired or revoked.
    #[error("the token or session is not valid")]
    Invalid,
    /// A used refresh token came back: the family is now revoked.
    #[error("a refresh token was used twice; its session is revoked")]
    Reused {
        /// The revoked session.
        session_id: String,
        /// Its user's id.
        user_id: String,
        /// Its user's name (empty when the user is gone).
        user_name: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Starts a session for `user` and answers its first token pair and the session's id.
pub async fn start_session(
    store: &Store,
    tokens: &TokenSettings,
    user: &UserDoc,
) -> Result<(TokenPair, String), StoreError> {
    let session_id = ids::new_id();
    let mut session = Document::new();
    session.insert("id".into(), session_id.clone().into());
    session.insert("userId".into(), user.id.clone().into());
    session.insert("createdAt".into(), clock::now_iso().into());
    session.insert("expiresAt".into(), iso_in(tokens.session_ttl).into());
    session.insert("revokedAt".into(), Value::Null);
    store.insert(SESSIONS, session).await?;
    let pair = issue_pair(store, tokens, user, &session_id).await?;
    Ok((pair, session_id))
}

async fn issue_pair(
    store: &Store,
    tokens: &TokenSettings,
    user: &UserDoc,
    session_id: &str,
) -> Result<TokenPair, StoreError> {
    let refresh_token = format!(
        "{REFRESH_TOKEN_PREFIX}{}",
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ids::random_bytes::<32>()
        )
    );
    let mut document = Document::new();
    document.insert("id".into(), hash_token(&refresh_token).into());
    document.insert("sessionId".into(), session_id.into());
    document.insert("userId".into(), user.id.clone().into());
    document.insert("createdAt".into(), clock::now_iso().into());
    document.insert("expiresAt".into(), iso_in(tokens.refresh_ttl).into());
    store.insert(REFRESH_TOKENS, document).await?;
    Ok(TokenPair {
        access_token: access_token(tokens, user, session_id),
        refresh_token,
    })
}

/// A signed access token for `user` in `session_id`.
pub fn access_token(tokens: &TokenSettings, user: &UserDoc, session_id: &str) -> String {
    let now = clock::unix_now();
    tokens.key.sign(&AccessClaims {
        iss: tokens.issuer.clone(),
        aud: tokens.audience.clone(),
        sub: user.id.clone(),
        sid: session_id.to_owned(),
        name: user.name.clone(),
        scope: USER_SCOPES.into(),
        roles: user.roles.clone(),
        perms: Vec::new(),
        typ: ACCESS_TOKEN_TYPE.into(),
        iat: now,
        nbf: now,
        exp: now + tokens.access_ttl,
    })
}

/// The live session `id` of `user_id` (not revoked, not expired), if any.
pub async fn live_session(store: &Store, id: &str, user_id: &str) -> Result<Option<Document>, StoreError> {
    Ok(store.get(SESSIONS, id).await?.filter(|session| {
        session.get("userId").and_then(Value::as_str) == Some(user_id)
            && session.get("revokedAt").is_none_or(Value::is_null)
            && !ttscm_runtime::store::is_expired(session)
    }))
}

/// Revokes a session (idempotent).
pub async fn revoke_session(store: &Store, id: &str, reason: &str) -> Result<(), StoreError> {
    store
        .update_one(
            SESSIONS,
            &Filter::And(vec![
                Filter::id(id),
                Filter::eq("revokedAt", ttscm_runtime::store::Scalar::Null),
            ]),
            &Update::default()
                .set("revokedAt", clock::now_iso())
                .set("revokedReason", reason),
        )
        .await?;
    Ok(())
}

/// Rotates the refresh token whose hash is `token_hash`.
pub async fn refresh(
    store: &Store,
    tokens: &TokenSettings,
    token_hash: &str,
) -> Result<TokenPair, SessionError> {
    let token = store
        .get(REFRESH_TOKENS, token_hash)
        .await?
        .ok_or(SessionError::Invalid)?;
    let text = |key: &str| ttscm_runtime::store::text(&token, key);
    let (session_id, user_id) = (text("sessionId"), text("userId"));
    // Liveness is checked before the claim: two concurrent refreshes with one token both see the
    // session live, one claims it and the other (a reuse) revokes the session. Checked after the
    // claim, the loser's revocation could land first and fail the winner too.
    if ttscm_runtime::store::is_expired(&token) || live_session(store, &session_id, &user_id).await?.is_none()
    {
        return Err(SessionError::Invalid);
    }
    let mut claim = Document::new();
    claim.insert("id".into(), token_hash.into());
    claim.insert("usedAt".into(), clock::now_iso().into());
    claim.insert("expiresAt".into(), text("expiresAt").into());
    match store.insert(REFRESH_TOKEN_USES, claim).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => {
            revoke_session(store, &session_id, "refresh token reuse").await?;
            tracing::warn!(session = %session_id, "a used refresh token was presented again; session revoked");
            let user_name = get_user(store, &user_id)
                .await?
                .map(|u| u.name)
                .unwrap_or_default();
            return Err(SessionError::Reused {
                session_id,
                user_id,
                user_name,
            });
        }
        Err(other) => return Err(other.into()),
    }
    let user = get_user(store, &user_id).await?.ok_or(SessionError::Invalid)?;
    Ok(issue_pair(store, tokens, &user, &session_id).await?)
}

/// Deletes what has expired: refresh tokens and their use records, and sessions.
pub async fn sweep(store: &Store) -> Result<u64, StoreError> {
    let now = clock::now_iso();
    let mut removed = 0;
    for collection in [REFRESH_TOKENS, REFRESH_TOKEN_USES, SESSIONS] {
        removed += store
            .delete_many(collection, &Filter::Lt("expiresAt".into(), now.clone().into()))
            .await?;
    }
    Ok(removed)
}
