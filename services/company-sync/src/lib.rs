//! The company-sync service: keeps companies from ConnectWise Manage in its `companies`
//! collection. This first cut declares the collection and answers health; syncing and the
//! company routes build on it.

use tokio::task::JoinHandle;
use ttscm_contract::health::{CompanySyncHealth, HealthReply};
use ttscm_contract::subjects::COMPANY_SYNC_QUEUE;
use ttscm_runtime::service::serve_fn;
use ttscm_runtime::store::IndexSpec;
use ttscm_runtime::{Bus, BusError, Shutdown, Store, StoreError};

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
    Ok(vec![
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
