//! Vault operations: seal and unseal field values bound to their place (credential id, field
//! id). Plaintext crosses the bus only in payloads (never in subjects or headers); in mesh mode
//! NATS connections should use TLS.

use serde::{Deserialize, Serialize};

use crate::subjects;

/// Where a value lives; the key that seals it is derived from this, so a sealed value copied to
/// another credential or field, or from one version of a credential to another, fails to open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Place {
    /// The credential's id.
    pub credential_id: String,
    /// The field's id within the credential type.
    pub field_id: String,
    /// The credential version in which the value was written, bound into its key (`None`: a
    /// value sealed before credentials had versions, bound to credential and field only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// One value to seal.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealItem {
    /// Where the value lives.
    pub place: Place,
    /// The plaintext.
    pub plaintext: String,
    /// The value stored at this field now: when it opens to exactly `plaintext`, it is answered
    /// unchanged (compared in constant time), so an unchanged value keeps its blob and version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_if_equal: Option<SealedItem>,
}

impl Drop for SealItem {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.plaintext);
    }
}

impl std::fmt::Debug for SealItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealItem")
            .field("place", &self.place)
            .field("plaintext", &"***")
            .finish()
    }
}

/// Seal values with the active key. Replies with one sealed blob (base64) per item, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Seal {
    /// The values.
    pub items: Vec<SealItem>,
}

crate::operation!(Seal => subjects::VAULT_SEAL, Vec<String>, callers: [crate::Component::Credential]);

/// One sealed value to open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedItem {
    /// Where the value lives (must be where it was sealed).
    pub place: Place,
    /// The sealed blob (base64).
    pub sealed: String,
}

/// Open sealed values. Replies with one plaintext per item, in order; any item that fails to
/// open fails the whole call (code `internal`, message saying a sealed value failed to open).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unseal {
    /// The values.
    pub items: Vec<SealedItem>,
}

/// Plaintexts; `Debug` hides them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Plaintexts(pub Vec<String>);

impl Drop for Plaintexts {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::fmt::Debug for Plaintexts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Plaintexts({} values, ***)", self.0.len())
    }
}

crate::operation!(Unseal => subjects::VAULT_UNSEAL, Plaintexts, callers: [crate::Component::Credential]);

/// Re-seal values with the active key (for key rotation). Items already under the active key
/// come back unchanged. Replies with one sealed blob per item, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reseal {
    /// The values.
    pub items: Vec<SealedItem>,
    /// Empty, or one version per item: the item is sealed again bound to that version (a value
    /// from before credential versions, moving to its credential's version); otherwise each
    /// stays bound to its own place.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to_versions: Vec<u64>,
}

crate::operation!(Reseal => subjects::VAULT_RESEAL, Vec<String>, callers: [crate::Component::Credential]);

/// Compute the current code of a sealed TOTP seed (an `otpauth://totp/` URI or a base32
/// secret): vault opens the seed, computes the code with its own clock and drops the seed; only
/// the code leaves. Fails like [`Unseal`] when the value does not open; a value that is not a
/// seed is `validation`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerateTotp {
    /// The sealed seed and its place.
    pub item: SealedItem,
}

/// A TOTP code (RFC 6238) and how long it stays valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TotpCode {
    /// The digits.
    pub code: String,
    /// Seconds per code.
    pub period: u64,
    /// Seconds until the next code.
    pub expires_in: u64,
}

crate::operation!(GenerateTotp => subjects::VAULT_TOTP, TotpCode, callers: [crate::Component::Credential]);

/// Sign a head of the audit chain with vault's checkpoint key (the credential service asks,
/// periodically and on demand). Replies with the checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignAuditHead {
    /// The last entry's `seq`.
    pub seq: u64,
    /// Its `hash` (64 hex digits).
    pub hash: String,
}

crate::operation!(SignAuditHead => subjects::VAULT_SIGN_AUDIT_HEAD, crate::audit::AuditCheckpoint, callers: [crate::Component::Credential]);

/// The public key checkpoints are signed with.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GetCheckpointKey {}

/// A checkpoint key's public half.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointKey {
    /// Its id (see [`crate::audit::AuditCheckpoint::key_id`]).
    pub key_id: String,
    /// The public half, base64url.
    pub public_key: String,
}

crate::operation!(GetCheckpointKey => subjects::VAULT_CHECKPOINT_KEY, CheckpointKey, callers: [crate::Component::Credential]);
