//! Administrative operations the `ttscm` CLI runs directly against the store: manual companies
//! for MSPs (or setups) without ConnectWise.

use serde_json::json;
use ttscm_runtime::{Store, StoreError, clock, ids};

use crate::COMPANIES;

/// Adds a manual company; answers its id.
pub async fn create_company(store: &Store, name: &str) -> Result<String, StoreError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(StoreError::Invalid(
            "a company name is 1 to 200 characters".into(),
        ));
    }
    let id = ids::new_id();
    let now = clock::now_iso();
    let document = json!({
        "id": id, "name": name, "nameKey": name.to_lowercase(), "active": true, "source": "manual",
        "createdAt": now, "updatedAt": now,
    });
    let serde_json::Value::Object(document) = document else {
        unreachable!("an object literal")
    };
    store.insert(COMPANIES, document).await?;
    Ok(id)
}
