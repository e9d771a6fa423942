//! Company-sync operations other services use.

use serde::{Deserialize, Serialize};

use crate::{Operation, subjects};

/// A company as embedded in other resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompanySummary {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
}

/// Look up companies by id; unknown ids are left out of the reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetCompanySummaries {
    /// The ids.
    pub ids: Vec<String>,
}

impl Operation for GetCompanySummaries {
    const SUBJECT: &'static str = subjects::COMPANY_SUMMARIES;
    type Reply = Vec<CompanySummary>;
}
