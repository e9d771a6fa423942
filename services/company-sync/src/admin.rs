//! Administrative operations the `ttscm` CLI runs directly against the store: manual companies
//! for MSPs (or setups) without ConnectWise. Their `company.created` event is kept in
//! company-sync's outbox, which the running service publishes (within seconds).

use ttscm_runtime::{Store, StoreError};

use crate::service::new_manual;
use crate::store::COMPANIES;

/// Adds a manual company; answers its id.
pub async fn create_company(store: &Store, name: &str) -> Result<String, StoreError> {
    let name = crate::service::parse_name(name).map_err(|_| {
        StoreError::Invalid(format!(
            "a company name is 1 to {} characters",
            crate::service::MAX_NAME_CHARS
        ))
    })?;
    let doc = new_manual(name);
    crate::events::prepare(store).await?;
    store.insert(COMPANIES, doc.to_document()).await?;
    let event = ttscm_runtime::events::NewEvent {
        aggregate: crate::events::AGGREGATE,
        action: "created",
        subject: doc.id.clone(),
        data: serde_json::json!({"id": doc.id, "name": doc.name, "source": "manual"}),
    };
    ttscm_runtime::events::keep_for_later(
        store,
        crate::events::COMPANY_EVENT_OUTBOX,
        crate::events::SOURCE,
        event,
    )
    .await?;
    Ok(doc.id)
}
