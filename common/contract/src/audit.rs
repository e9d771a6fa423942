//! The audit log: append-only, hash-chained entries written before responses leave.

use serde::{Deserialize, Serialize};

use crate::{PrincipalKind, subjects};

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditActor {
    /// User or API token id.
    pub id: String,
    /// User or API token.
    pub kind: PrincipalKind,
    /// Display name at the time.
    pub name: String,
}

/// What it was done to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditTarget {
    /// `credential`, `credential_type`, `role`, `user`, `session`, `api_token`, `vault_key` or
    /// `audit_log`.
    pub kind: String,
    /// Its id.
    pub id: String,
}

/// One entry of the audit log as it is stored and listed: chained to the entry before it by
/// `prev_hash`, sealed by `hash`. (The operation listing them keeps its API name,
/// `ListAuditEvents`.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Id.
    pub id: String,
    /// Position in the chain, from 1.
    pub seq: u64,
    /// When (ISO-8601 UTC, ms).
    pub at: String,
    /// e.g. `credential.revealed`.
    pub action: String,
    /// Who.
    pub actor: AuditActor,
    /// What.
    pub target: AuditTarget,
    /// The credential involved, if any.
    pub credential_id: Option<String>,
    /// The type involved, if any.
    pub type_id: Option<String>,
    /// The company involved, if any.
    pub company_id: Option<String>,
    /// The request that caused it.
    pub request_id: String,
    /// The client's IP as the edge saw it.
    pub client_ip: Option<String>,
    /// What else the action needs said (e.g. a role's permissions, why a sign-in failed, how
    /// many failures went unrecorded); never a secret. Absent when empty, so entries written
    /// before it existed keep their hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<std::collections::BTreeMap<String, String>>,
    /// Hash of the previous entry (hex; zeros for the first).
    pub prev_hash: String,
    /// SHA-256 (hex) over this entry's fields and `prev_hash`.
    pub hash: String,
}

/// Query the audit log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListAuditEvents {
    /// Only this actor id.
    pub actor: Option<String>,
    /// Only this target id (credential or type).
    pub target: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only at or after this time (RFC 3339).
    pub from: Option<String>,
    /// Only before this time (RFC 3339).
    pub to: Option<String>,
    /// Page, from 1.
    pub page: u64,
    /// Records per page.
    pub rpp: u64,
}

/// A page of entries, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    /// The entries on this page.
    pub items: Vec<AuditEntry>,
    /// How many entries match in all.
    pub total: u64,
    /// Entries appended but not yet readable (in the mesh, still in the write-ahead stream on
    /// their way to the store): 0 when this page was read with every entry appended before it.
    #[serde(default)]
    pub pending: u64,
}

crate::operation!(ListAuditEvents => subjects::AUDIT_LIST, AuditPage);

/// Check the whole chain, and against a signed checkpoint: the one given, else the newest
/// stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyAudit {
    /// A checkpoint's `token` to check against (e.g. a copy kept outside TTSCM).
    #[serde(default)]
    pub checkpoint: Option<String>,
    /// Start from the first entry instead of after the entries verified before (a full
    /// re-verification; a long log takes several calls, each going on from the last).
    #[serde(default)]
    pub full: bool,
}

/// The outcome of a chain check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditVerification {
    /// Whether every entry's hash and link is intact and the log agrees with the checkpoint.
    pub valid: bool,
    /// How many entries were checked.
    pub entries: u64,
    /// The first entry that does not verify, if any.
    pub first_broken_seq: Option<u64>,
    /// The first entry checked this time: 1 for a check from the start; later when the entries
    /// before it were verified already (their last hash is checked to be unchanged).
    #[serde(default)]
    pub verified_from: u64,
    /// Whether the check reached the newest entry (false when it stopped at its size limit:
    /// ask again to go on from where it stopped).
    #[serde(default)]
    pub complete: bool,
    /// Entries appended but not yet readable when the check ran (in the mesh, still in the
    /// write-ahead stream on their way to the store): they are checked next time.
    #[serde(default)]
    pub pending: u64,
    /// The signed checkpoint the log was checked against (none when there is none yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointCheck>,
}

crate::operation!(VerifyAudit => subjects::AUDIT_VERIFY, AuditVerification);

/// A head of the chain signed by vault's checkpoint key: proof that the log held `seq` entries
/// ending in `hash` at `at`. Copies kept outside TTSCM (events, a SIEM) let `verify` notice a
/// log cut short or rewritten after it, which the hash chain alone cannot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditCheckpoint {
    /// The last entry's `seq` at signing.
    pub seq: u64,
    /// Its `hash`.
    pub hash: String,
    /// When it was signed (ISO-8601 UTC).
    pub at: String,
    /// The signing key's id (16 hex digits of its public key's SHA-256).
    pub key_id: String,
    /// The signing key's public half, base64url (pin it out of band to trust it).
    pub public_key: String,
    /// The signed statement: a compact JWS (`EdDSA`, type `ttscm-audit-checkpoint+jwt`) whose
    /// claims are `seq`, `hash` and `iat`.
    pub token: String,
}

/// How the log compares with a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointOutcome {
    /// The entry at the checkpoint's `seq` has the checkpoint's hash.
    Matches,
    /// The log ends before the checkpoint's `seq`: entries were deleted.
    Truncated,
    /// The entry at the checkpoint's `seq` has another hash: the log was rewritten.
    Rewritten,
}

/// The checkpoint a verification used and what it found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointCheck {
    /// The checkpoint's `seq`.
    pub seq: u64,
    /// The checkpoint's `hash`.
    pub hash: String,
    /// When it was signed.
    pub at: String,
    /// `given` (in the request) or `stored` (the newest kept beside the log).
    pub source: String,
    /// What the log holds at the checkpoint.
    pub outcome: CheckpointOutcome,
}

/// The newest stored checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GetAuditCheckpoint {}

crate::operation!(GetAuditCheckpoint => subjects::AUDIT_CHECKPOINT_GET, AuditCheckpoint);

/// Sign the chain's head now (answers the newest checkpoint when the head has not moved since).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateAuditCheckpoint {}

crate::operation!(CreateAuditCheckpoint => subjects::AUDIT_CHECKPOINT_CREATE, AuditCheckpoint);

/// The credentials `actor` (a user's or an API token's id) revealed — the current or a past
/// version; `totp` codes are not reveals — whose revealed secure values are still the
/// credential's values now: what a leaver could still use. Credentials since deleted are left
/// out (their values are gone); credentials of a type whose `permissionScope` the caller lacks
/// are left out and counted in `hidden`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetExposure {
    /// The actor's id, as audit entries name it.
    pub actor: String,
    /// Only reveals at or after this time (RFC 3339); `None`: every reveal on record.
    #[serde(default)]
    pub since: Option<String>,
    /// Which part of the list.
    #[serde(default)]
    pub window: crate::credential::ListWindow,
}

/// A credential as the exposure report names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExposedCredentialRef {
    /// Id.
    pub id: String,
    /// Name now.
    pub name: String,
    /// Type id.
    pub type_id: String,
    /// Company id.
    pub company_id: String,
    /// The company's name, when company-sync answered for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_name: Option<String>,
}

/// One credential whose revealed values are still in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExposedCredential {
    /// The credential.
    pub credential: ExposedCredentialRef,
    /// The fields whose revealed values are unchanged since (sorted).
    pub field_ids: Vec<String>,
    /// The actor's last reveal of it in the window.
    pub revealed_at: String,
    /// How many times the actor revealed it in the window.
    pub reveals: u64,
    /// The credential versions the actor revealed (ascending; empty for reveals recorded
    /// before versions were).
    pub versions: Vec<u64>,
    /// Whether it is marked due for rotation already.
    pub rotation_due: bool,
}

/// The exposure report: the credentials still exposed, most recently revealed first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExposureReport {
    /// The credentials (one page, or all).
    pub items: Vec<ExposedCredential>,
    /// How many are still exposed in all.
    pub total: u64,
    /// Exposed credentials left out because the caller lacks their type's scope.
    pub hidden: u64,
    /// Credentials the actor revealed that were deleted since (their values are gone).
    pub deleted: u64,
    /// How many reveals by the actor were read.
    pub reveals: u64,
}

crate::operation!(GetExposure => subjects::AUDIT_EXPOSURE, ExposureReport);

/// Marks every credential [`GetExposure`] reports for `actor` (the caller may see) due for
/// rotation, with reason `exposure`; recorded as one `credential.exposure_marked` entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarkExposureDue {
    /// The actor's id.
    pub actor: String,
    /// Only reveals at or after this time (RFC 3339).
    #[serde(default)]
    pub since: Option<String>,
}

/// What a [`MarkExposureDue`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExposureMarked {
    /// Credentials this call made due (each emitted `credential.rotation_due`).
    pub marked: u64,
    /// Credentials that were due already.
    pub already_due: u64,
    /// The exposed credentials' ids (marked or due already).
    pub credentials: Vec<String>,
    /// Exposed credentials left alone because the caller lacks their type's scope.
    pub hidden: u64,
}

crate::operation!(MarkExposureDue => subjects::AUDIT_EXPOSURE_MARK, ExposureMarked);
