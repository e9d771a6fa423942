//! The audit log: append-only, hash-chained entries written before responses leave.

use serde::{Deserialize, Serialize};

use crate::{PrincipalKind, subjects};

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

crate::operation!(ListAuditEvents => subjects::AUDIT_LIST, AuditPage);

/// Check the whole chain.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VerifyAudit {}

/// The outcome of a chain check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditVerification {
    /// Whether every entry's hash and link is intact.
    pub valid: bool,
    /// How many entries were checked.
    pub entries: u64,
    /// The first entry that does not verify, if any.
    pub first_broken_seq: Option<u64>,
}

crate::operation!(VerifyAudit => subjects::AUDIT_VERIFY, AuditVerification);
