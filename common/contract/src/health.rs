//! Health checks every service answers, so the edge's `/readyz` can report which part is down.

use serde::{Deserialize, Serialize};

use crate::subjects;

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

crate::operation!(IdentityHealth => subjects::IDENTITY_HEALTH, HealthReply, anonymous: true);

/// Ask company-sync whether it is healthy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CompanySyncHealth {}

crate::operation!(CompanySyncHealth => subjects::COMPANY_SYNC_HEALTH, HealthReply, anonymous: true);

/// Ask credential whether it is healthy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CredentialHealth {}

crate::operation!(CredentialHealth => subjects::CREDENTIAL_HEALTH, HealthReply, anonymous: true);

/// Ask vault whether it is healthy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VaultHealth {}

crate::operation!(VaultHealth => subjects::VAULT_HEALTH, HealthReply, anonymous: true);
