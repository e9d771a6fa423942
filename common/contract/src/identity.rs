//! Identity operations: API token authentication and the public keys for access tokens.

use serde::{Deserialize, Serialize};

use crate::{Operation, Principal, subjects};

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

impl Operation for AuthenticateToken {
    const SUBJECT: &'static str = subjects::IDENTITY_AUTHENTICATE_TOKEN;
    type Reply = AuthenticatedToken;
}

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

impl Operation for GetPublicKeys {
    const SUBJECT: &'static str = subjects::IDENTITY_PUBLIC_KEYS;
    type Reply = PublicKeys;
}

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

/// The effective permissions of a set of role names (the union of the roles' permissions).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResolveRoles {
    /// Role names.
    pub roles: Vec<String>,
}

impl Operation for ResolveRoles {
    const SUBJECT: &'static str = subjects::IDENTITY_RESOLVE_ROLES;
    type Reply = crate::PermissionSet;
}
