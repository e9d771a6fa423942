//! Health checks every service answers, so the edge's `/readyz` can report which part is down.

use serde::{Deserialize, Serialize};

use crate::{Operation, subjects};

/// The state a service reports about its own dependencies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthReply {
    /// The service's name.
    pub service: String,
    /// Whether its store answered a ping (`None` when it has no store).
    pub store_ok: Option<bool>,
}

/// Ask identity whether it is healthy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdentityHealth {}

impl Operation for IdentityHealth {
    const SUBJECT: &'static str = subjects::IDENTITY_HEALTH;
    type Reply = HealthReply;
}

/// Ask company-sync whether it is healthy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CompanySyncHealth {}

impl Operation for CompanySyncHealth {
    const SUBJECT: &'static str = subjects::COMPANY_SYNC_HEALTH;
    type Reply = HealthReply;
}

/// Ask credential whether it is healthy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CredentialHealth {}

impl Operation for CredentialHealth {
    const SUBJECT: &'static str = subjects::CREDENTIAL_HEALTH;
    type Reply = HealthReply;
}

/// Ask vault whether it is healthy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VaultHealth {}

impl Operation for VaultHealth {
    const SUBJECT: &'static str = subjects::VAULT_HEALTH;
    type Reply = HealthReply;
}
