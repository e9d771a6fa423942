//! Identity operations: API token authentication and the public keys for access tokens.

use serde::{Deserialize, Serialize};

use crate::{Principal, subjects};

/// Resolve an API token to its principal. Carries only the token's SHA-256 hash (hex), never the
/// token itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticateToken {
    /// Lowercase hex SHA-256 of the presented token.
    pub token_hash: String,
}

/// A resolved API token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticatedToken {
    /// The principal the token stands for.
    pub principal: Principal,
    /// When the token expires (RFC 3339), if ever.
    pub expires_at: Option<String>,
}

crate::operation!(AuthenticateToken => subjects::IDENTITY_AUTHENTICATE_TOKEN, AuthenticatedToken, anonymous: true);

/// Ask for the public keys and the claims access tokens must carry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GetPublicKeys {}

/// One verification key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicKey {
    /// Key id, matched against the token header's `kid`.
    pub kid: String,
    /// Algorithm; always `EdDSA` (Ed25519).
    pub alg: String,
    /// The raw 32-byte Ed25519 public key, base64url without padding (JWK `x`).
    pub x: String,
}

/// The keys and the expected claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicKeys {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
    /// Keys currently valid for verification.
    pub keys: Vec<PublicKey>,
}

crate::operation!(GetPublicKeys => subjects::IDENTITY_PUBLIC_KEYS, PublicKeys, anonymous: true);

/// The `typ` claim value of access tokens; refresh and ID tokens never carry it.
pub const ACCESS_TOKEN_TYPE: &str = "access";

/// Claims of an access token issued by identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// User id.
    pub sub: String,
    /// Session (refresh-token family) id.
    #[serde(default)]
    pub sid: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Space-separated scopes.
    #[serde(default)]
    pub scope: String,
    /// Role names.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Effective permissions at issue time.
    #[serde(default)]
    pub perms: Vec<String>,
    /// Token type; must be [`ACCESS_TOKEN_TYPE`].
    pub typ: String,
    /// Issued at (seconds).
    pub iat: u64,
    /// Not before (seconds).
    pub nbf: u64,
    /// Expires (seconds).
    pub exp: u64,
}

// ---- sign-in (OIDC code flow) -------------------------------------------------------------

/// How a sign-in is bound to the client that started it, so that only that client can finish
/// it (a phisher who sends someone the `uri` gets nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LoginBinding {
    /// A browser on the edge's site: the redirect must carry the HttpOnly cookie `/auth/uri`
    /// set, whose SHA-256 (hex) this is.
    Cookie {
        /// SHA-256 (hex) of the cookie's value.
        hash: String,
    },
    /// A web page on another origin: the redirect page hands a one-time code to its
    /// `window.opener` on this origin only, and the socket releases the tokens only for it.
    Opener {
        /// The page's origin (allow-listed).
        origin: String,
    },
    /// A native app that opened the system browser: the redirect page asks the person to
    /// confirm they are signing in to this client (and the provider to let them pick the
    /// account).
    Native {
        /// The client's name as the app gave it (shown on the confirmation page).
        client: String,
    },
}

/// Start a sign-in: identity builds the provider's authorization URL (PKCE S256, nonce,
/// `state` = a fresh callback key) and stores the pending login for ~10 minutes, bound to its
/// client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BeginLogin {
    /// How the sign-in is bound to its client.
    pub binding: LoginBinding,
}

/// A started sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginStart {
    /// The provider's authorization URL to open in a browser.
    pub uri: String,
    /// The key a client waits on (WebSocket) and the `state` the provider echoes back.
    pub callback_key: String,
    /// When the pending login expires (RFC 3339).
    pub expires_at: String,
}

crate::operation!(BeginLogin => subjects::IDENTITY_LOGIN_BEGIN, LoginStart, anonymous: true);

/// Claims a pending sign-in for one waiting socket: answers its expiry (and how it is bound),
/// 400 when it is not pending, 409 when another socket holds the claim. One waiter per callback
/// key, across every edge replica (the claim lives with the pending login).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckLogin {
    /// The callback key.
    pub callback_key: String,
    /// The waiting socket's id (random per socket).
    pub waiter: String,
}

/// A pending sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginPending {
    /// When it expires (RFC 3339).
    pub expires_at: String,
}

crate::operation!(CheckLogin => subjects::IDENTITY_LOGIN_CHECK, LoginPending, anonymous: true);

/// Gives up a socket's claim on a pending sign-in (the socket closed), so the client may wait
/// again from another socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseLogin {
    /// The callback key.
    pub callback_key: String,
    /// The socket's id, as it claimed.
    pub waiter: String,
}

crate::operation!(ReleaseLogin => subjects::IDENTITY_LOGIN_RELEASE, (), anonymous: true);

/// Finish a sign-in with what the provider's redirect carried. Consumes the pending login
/// (single use) whatever the outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompleteLogin {
    /// `state`, i.e. the callback key.
    pub state: String,
    /// The authorization code.
    pub code: Option<String>,
    /// The provider's `error`, when it refused.
    pub error: Option<String>,
    /// The provider's `error_description`.
    pub error_description: Option<String>,
    /// SHA-256 (hex) of the sign-in cookie the redirect carried, if any.
    #[serde(default)]
    pub cookie_hash: Option<String>,
    /// Whether the person confirmed the client on the redirect page (native binding).
    #[serde(default)]
    pub confirmed: bool,
}

/// A finished sign-in and what the edge needs to hand it over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginCompleted {
    /// The tokens and the user.
    pub signed_in: SignedIn,
    /// For an opener-bound sign-in, the origin its completion code goes to.
    pub opener_origin: Option<String>,
}

/// What the redirect page needs to know about a pending sign-in before finishing it: its
/// binding (a native one is confirmed by the person first). Does not consume it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeLogin {
    /// `state`, i.e. the callback key.
    pub state: String,
}

crate::operation!(DescribeLogin => subjects::IDENTITY_LOGIN_DESCRIBE, LoginBinding, anonymous: true);

/// A new access/refresh token pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenPair {
    /// The access token (JWT).
    pub access_token: String,
    /// The refresh token (opaque; shown once, stored hashed).
    pub refresh_token: String,
}

/// A finished sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignedIn {
    /// The access token (JWT).
    pub access_token: String,
    /// The refresh token.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Access-token lifetime in seconds.
    pub expires_in: u64,
    /// The user signed in.
    pub user: User,
}

crate::operation!(CompleteLogin => subjects::IDENTITY_LOGIN_COMPLETE, LoginCompleted, anonymous: true);

/// Rotate a refresh token. Carries only its SHA-256 (hex), never the token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshSession {
    /// Lowercase hex SHA-256 of the presented refresh token.
    pub token_hash: String,
}

crate::operation!(RefreshSession => subjects::IDENTITY_REFRESH, TokenPair, anonymous: true);

/// Revoke the caller's session (the refresh-token family of its access token).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Logout {}

/// A revoked session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoggedOut {
    /// The session id.
    pub session_id: String,
}

crate::operation!(Logout => subjects::IDENTITY_LOGOUT, LoggedOut);

/// The principal of a user's access token as of now: the session must be live and the user's
/// current roles decide the permissions (so role changes apply within the edge's cache time).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolveSession {
    /// The token's `sub`.
    pub user_id: String,
    /// The token's `sid`.
    pub session_id: String,
}

crate::operation!(ResolveSession => subjects::IDENTITY_RESOLVE_SESSION, Principal, anonymous: true);

// ---- users and roles ------------------------------------------------------------------------

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// E-mail (from the ID token's `email`, else `preferred_username`).
    pub email: String,
    /// The part of `email` before `@`.
    pub login: String,
    /// Avatar URL (`https`), if set.
    pub image: Option<String>,
    /// Role names.
    pub roles: Vec<String>,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last changed (RFC 3339).
    pub updated_at: String,
}

/// The caller's user.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GetMe {}

crate::operation!(GetMe => subjects::IDENTITY_ME_GET, User);

/// Change the caller's name and/or image (`image: null` removes it).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMe {
    /// New display name (1–100 characters).
    #[serde(default)]
    #[schema(schema_with = crate::schema::user_name)]
    pub name: Option<String>,
    /// New avatar URL (`https`), or `null` to remove it.
    #[serde(default, with = "double_option")]
    #[schema(schema_with = crate::schema::https_url)]
    pub image: Option<Option<String>>,
}

crate::operation!(UpdateMe => subjects::IDENTITY_ME_UPDATE, User);

/// `Option<Option<T>>` that tells a missing key (`None`) from `null` (`Some(None)`).
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize>(
        value: &Option<Option<T>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            None => s.serialize_none(),
            Some(inner) => inner.serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// A page of users, newest first; `search` matches name or e-mail (literal, case-insensitive).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListUsers {
    /// Page, from 1.
    pub page: u64,
    /// Records per page.
    pub rpp: u64,
    /// Optional search text.
    pub search: Option<String>,
}

/// A page of users.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserPage {
    /// The users on this page.
    pub users: Vec<User>,
    /// How many match in all.
    pub total: u64,
}

crate::operation!(ListUsers => subjects::IDENTITY_USER_LIST, UserPage);

/// Replace a user's roles (every role must exist).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetUserRoles {
    /// User id.
    pub id: String,
    /// Role names.
    pub roles: Vec<String>,
}

crate::operation!(SetUserRoles => subjects::IDENTITY_USER_ROLES_SET, User);

/// A role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    /// Id (`admin` for the built-in role).
    pub id: String,
    /// Name (unique, case-insensitively).
    pub name: String,
    /// Permission strings (wildcards allowed).
    pub permissions: Vec<String>,
    /// The built-in `admin` role cannot be changed or deleted.
    pub built_in: bool,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last changed (RFC 3339).
    pub updated_at: String,
}

/// Every role, by name.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListRoles {}

crate::operation!(ListRoles => subjects::IDENTITY_ROLE_LIST, Vec<Role>);

/// What a role create or update carries.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleInput {
    /// Name: letters, digits, `_`, `-`, `.`; 1–64 characters.
    #[serde(default)]
    #[schema(schema_with = crate::schema::role_name)]
    pub name: Option<String>,
    /// Permission strings.
    #[serde(default)]
    #[schema(schema_with = crate::schema::permissions)]
    pub permissions: Option<Vec<String>>,
}

/// Create a role (name and permissions required).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateRole {
    /// The role.
    pub input: RoleInput,
}

crate::operation!(CreateRole => subjects::IDENTITY_ROLE_CREATE, Role);

/// Rename a role and/or replace its permissions (renaming carries the new name to its users).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateRole {
    /// Role id.
    pub id: String,
    /// The changes.
    pub input: RoleInput,
}

crate::operation!(UpdateRole => subjects::IDENTITY_ROLE_UPDATE, Role);

/// Delete a role; refused (409) while users or API tokens hold it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteRole {
    /// Role id.
    pub id: String,
}

crate::operation!(DeleteRole => subjects::IDENTITY_ROLE_DELETE, Role);
