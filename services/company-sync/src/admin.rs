//! Administrative operations the `ttscm` CLI runs directly against the store: manual companies
//! for MSPs (or setups) without ConnectWise.

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
    store.insert(COMPANIES, doc.to_document()).await?;
    Ok(doc.id)
}
