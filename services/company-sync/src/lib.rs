//! The company-sync service: keeps companies from ConnectWise Manage in its `companies`
//! collection. This first cut declares the collection and answers health; syncing and the
//! company routes build on it.

pub mod admin;

use tokio::task::JoinHandle;
use ttscm_contract::company::{CompanySummary, GetCompanySummaries};
use ttscm_contract::health::{CompanySyncHealth, HealthReply};
use ttscm_contract::subjects::COMPANY_SYNC_QUEUE;
use ttscm_contract::{ErrorCode, WireError};
use ttscm_runtime::service::serve_fn;
use ttscm_runtime::store::{FindOptions, IndexSpec};
use ttscm_runtime::{Bus, BusError, Filter, Shutdown, Store, StoreError};

/// Companies: `{id, name, nameKey, cwCompanyId, cwIdentifier, …}`; owned by this service only.
pub const COMPANIES: &str = "companies";

const COMPANY_INDEXES: &[IndexSpec] = &[IndexSpec {
    name: "name_key",
    fields: &["nameKey"],
    unique: false,
}];

/// Why company-sync could not start.
#[derive(Debug, thiserror::Error)]
pub enum CompanySyncError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Starts company-sync and serves its subjects until `shutdown`.
pub async fn run(
    bus: &Bus,
    store: &Store,
    shutdown: Shutdown,
) -> Result<Vec<JoinHandle<()>>, CompanySyncError> {
    store.ensure_indexes(COMPANIES, COMPANY_INDEXES).await?;
    let health_store = store.clone();
    let summaries_store = store.clone();
    Ok(vec![
        serve_fn::<GetCompanySummaries, _, _>(bus, COMPANY_SYNC_QUEUE, shutdown.clone(), move |_, op| {
            let store = summaries_store.clone();
            async move { summaries(&store, op.ids).await }
        })
        .await?,
        serve_fn::<CompanySyncHealth, _, _>(bus, COMPANY_SYNC_QUEUE, shutdown, move |_, _| {
            let store = health_store.clone();
            async move {
                Ok(HealthReply {
                    service: "company-sync".into(),
                    store_ok: Some(store.ping().await.is_ok()),
                })
            }
        })
        .await?,
    ])
}

/// Most ids one summaries call may ask for.
const MAX_SUMMARY_IDS: usize = 1000;

async fn summaries(store: &Store, ids: Vec<String>) -> Result<Vec<CompanySummary>, WireError> {
    if ids.len() > MAX_SUMMARY_IDS {
        return Err(WireError::new(
            ErrorCode::Validation,
            format!("at most {MAX_SUMMARY_IDS} ids"),
        ));
    }
    let documents = store
        .find(COMPANIES, &FindOptions::new(Filter::is_in("id", ids)))
        .await
        .map_err(|error| {
            tracing::warn!(%error, "company lookup failed");
            WireError::new(ErrorCode::Unavailable, "The store is unavailable")
        })?;
    Ok(documents
        .into_iter()
        .map(|d| CompanySummary {
            id: d
                .get("id")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned(),
            name: d
                .get("name")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned(),
        })
        .collect())
}
