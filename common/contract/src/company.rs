//! Company-sync operations other services use.

use serde::{Deserialize, Serialize};

use crate::subjects;

/// A company as embedded in other resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

crate::operation!(GetCompanySummaries => subjects::COMPANY_SUMMARIES, Vec<CompanySummary>, callers: [crate::Component::Credential]);

/// Where a company comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CompanySource {
    /// Added by hand (API or CLI); editable through the API.
    Manual,
    /// Synced from ConnectWise Manage; read-only through the API.
    Connectwise,
}

/// A company as the company routes answer it. Field names follow the spec (`cw_CompanyId`,
/// `cw_Identifier`); the ConnectWise fields are `null` for manual companies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Company {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// The ConnectWise company id (`null` for manual companies).
    #[serde(rename = "cw_CompanyId")]
    pub cw_company_id: Option<i64>,
    /// The ConnectWise identifier (`null` for manual companies).
    #[serde(rename = "cw_Identifier")]
    pub cw_identifier: Option<String>,
    /// False once the company was deleted or flagged in ConnectWise (kept: credentials may
    /// point at it).
    pub active: bool,
    /// Where the company comes from.
    pub source: CompanySource,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Updated (RFC 3339).
    pub updated_at: String,
}

/// One page of companies and how many match in all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompanyPage {
    /// The companies on this page, ordered by name (case-insensitively), then id.
    pub items: Vec<Company>,
    /// How many companies match the search.
    pub total: u64,
}

/// List companies, optionally searching name and ConnectWise identifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListCompanies {
    /// Page, from 1.
    pub page: u64,
    /// Records per page.
    pub rpp: u64,
    /// Case-insensitive literal text to find in the name or the identifier.
    pub search: Option<String>,
}

crate::operation!(ListCompanies => subjects::COMPANY_LIST, CompanyPage);

/// Get one company by id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetCompany {
    /// The company id.
    pub id: String,
}

// The credential service asks too: whether a credential's company has a ConnectWise id (a
// `ticket` reveal policy's fallback to a reason).
crate::operation!(GetCompany => subjects::COMPANY_GET, Company, callers: [crate::Component::Edge, crate::Component::Credential]);

/// The body of creating or renaming a manual company.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompanyInput {
    /// The name: 1 to 200 characters after trimming.
    #[schema(schema_with = crate::schema::company_name)]
    pub name: String,
}

/// Create a manual company.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateCompany {
    /// What to create.
    pub input: CompanyInput,
}

crate::operation!(CreateCompany => subjects::COMPANY_CREATE, Company);

/// Rename a manual company; a synced company is a conflict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateCompany {
    /// The company id.
    pub id: String,
    /// The change.
    pub patch: CompanyInput,
}

crate::operation!(UpdateCompany => subjects::COMPANY_UPDATE, Company);

/// Delete a manual company; a synced company is a conflict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteCompany {
    /// The company id.
    pub id: String,
}

crate::operation!(DeleteCompany => subjects::COMPANY_DELETE, ());

/// What one ConnectWise sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    /// `full` (every company, deletions noticed) or `incremental` (changed since the last sync).
    pub kind: String,
    /// Started (RFC 3339).
    pub started_at: String,
    /// Finished (RFC 3339).
    pub finished_at: String,
    /// Companies ConnectWise returned.
    pub fetched: u64,
    /// Companies added.
    pub created: u64,
    /// Companies changed (name, identifier, or reactivated).
    pub updated: u64,
    /// Companies turned inactive (deleted or flagged in ConnectWise).
    pub deactivated: u64,
    /// Why the sync failed, if it did (e.g. ConnectWise rejected the credentials).
    pub error: Option<String>,
}

/// Whether sync is on, and the last run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// Whether ConnectWise settings are present (otherwise nothing syncs).
    pub enabled: bool,
    /// The last run, if any.
    pub last: Option<SyncReport>,
    /// When the last successful run finished.
    pub last_success_at: Option<String>,
}

/// Run a ConnectWise sync now and answer its report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunCompanySync {
    /// A full sync (noticing deletions) rather than an incremental one.
    #[serde(default)]
    pub full: bool,
}

crate::operation!(RunCompanySync => subjects::COMPANY_SYNC_RUN, SyncReport);

/// The sync status.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GetCompanySyncStatus {}

crate::operation!(GetCompanySyncStatus => subjects::COMPANY_SYNC_STATUS, SyncStatus);

/// A company's ConnectWise configurations, fetched live (empty when the company has no
/// ConnectWise id).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetCompanyConfigurations {
    /// The company id.
    pub id: String,
}

crate::operation!(GetCompanyConfigurations => subjects::COMPANY_CONFIGURATIONS, Vec<serde_json::Value>);

/// Check that a ConnectWise service ticket may justify a reveal of a credential of a company:
/// it exists, belongs to that company (by the company's ConnectWise id) and is open — neither
/// `closedFlag` nor a status whose `closedStatus` is true. Asked live (company-sync may answer
/// from a cache of a few seconds). ConnectWise unreachable (and nothing cached) is
/// [`crate::ErrorCode::Upstream`] (502): the caller reveals nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckTicket {
    /// TTSCM's id of the credential's company.
    pub company_id: String,
    /// The ticket number.
    pub ticket_id: u64,
}

/// What a ticket check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketOutcome {
    /// An open ticket of the company: the reveal may go ahead.
    Open,
    /// The ticket is closed (`closedFlag`, or a closed status).
    Closed,
    /// The ticket belongs to another company.
    OtherCompany,
    /// ConnectWise has no such ticket.
    NotFound,
    /// The company has no ConnectWise id (kept by hand): no ticket can be checked for it.
    NoConnectWiseId,
    /// ConnectWise is not configured.
    ConnectWiseOff,
}

/// The answer to [`CheckTicket`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketCheck {
    /// The verdict.
    pub outcome: TicketOutcome,
    /// The ticket's summary, when it was found (for the audit entry; never a credential value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

crate::operation!(CheckTicket => subjects::COMPANY_CHECK_TICKET, TicketCheck, callers: [crate::Component::Credential]);

/// Queue an internal note (`internalAnalysisFlag: true`, `processNotifications: false`) on a
/// ConnectWise ticket. Answers once the note is stored durably in company-sync's queue; it is
/// posted from there with retries (a ConnectWise hiccup or a restart loses none), at most once
/// per `key`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueTicketNote {
    /// Makes queueing idempotent (the audit entry's id): queued twice, posted once.
    pub key: String,
    /// The ticket number.
    pub ticket_id: u64,
    /// The note's text (never a credential value).
    pub text: String,
}

crate::operation!(QueueTicketNote => subjects::COMPANY_QUEUE_TICKET_NOTE, (), callers: [crate::Component::Credential]);
