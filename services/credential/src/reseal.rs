//! Moving every sealed value to vault's active key after a rotation (`ttscm vault reseal`).
//!
//! Idempotent and resumable: values already under the active key come back unchanged and are
//! not written. Safe while the API serves traffic: each credential is written only if its
//! `updatedAt` is still what was read (a concurrent change already sealed with the active key).

use serde::Serialize;
use ttscm_contract::WireError;
use ttscm_contract::vault::{Place, Reseal, SealedItem};
use ttscm_runtime::service::{BusClient, CallContext};
use ttscm_runtime::store::{FindOptions, Order};
use ttscm_runtime::{Filter, Store, Update};

use crate::service::store_failed;
use crate::store::{CREDENTIALS, CredentialDoc, from_document};

/// Credentials read per page.
const PAGE: u64 = 200;

/// What a reseal run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResealReport {
    /// Credentials looked at.
    pub scanned: u64,
    /// Credentials whose values moved to the active key.
    pub resealed: u64,
    /// Credentials changed concurrently (already under the active key), left alone.
    pub skipped: u64,
    /// Credentials with a value that does not open (logged by id); the run goes on without them.
    pub failed: u64,
}

/// Reseals every credential's sealed values through vault (reached by `client`).
pub async fn reseal_all(
    store: &Store,
    client: &BusClient,
    ctx: &CallContext,
) -> Result<ResealReport, WireError> {
    let mut report = ResealReport::default();
    let mut offset = 0;
    loop {
        let page = store
            .find(
                CREDENTIALS,
                &FindOptions::new(Filter::All)
                    .sort("id", Order::Asc)
                    .page(offset, PAGE),
            )
            .await
            .map_err(store_failed)?;
        if page.is_empty() {
            if report.resealed > 0 {
                // Credential replicas on the same bus (the mesh) drop their cached copies now;
                // others (a server in another process on the embedded store) within their
                // cache time. Either way the old copies still open: old keys are kept.
                let _ = client
                    .bus()
                    .publish(
                        ttscm_contract::subjects::CREDENTIAL_CHANGED,
                        ttscm_runtime::Headers::new(),
                        bytes::Bytes::from_static(b"*"),
                    )
                    .await;
            }
            return Ok(report);
        }
        offset += page.len() as u64;
        for document in page {
            let mut credential: CredentialDoc = from_document(document).map_err(store_failed)?;
            report.scanned += 1;
            let items: Vec<SealedItem> = credential
                .values
                .iter()
                .filter(|v| v.sealed)
                .map(|v| SealedItem {
                    place: Place {
                        credential_id: credential.id.clone(),
                        field_id: v.field_id.clone(),
                    },
                    sealed: v.value.clone(),
                })
                .collect();
            if items.is_empty() {
                continue;
            }
            let resealed = match client.call(ctx, &Reseal { items }).await {
                Ok(resealed) => resealed,
                Err(error) if error.code == ttscm_contract::ErrorCode::Internal => {
                    tracing::error!(credential = %credential.id, message = %error.message, "a sealed value does not open; left as it is");
                    report.failed += 1;
                    continue;
                }
                Err(error) => return Err(error),
            };
            let mut changed = false;
            for (value, blob) in credential.values.iter_mut().filter(|v| v.sealed).zip(resealed) {
                if value.value != blob {
                    value.value = blob;
                    changed = true;
                }
            }
            if !changed {
                continue;
            }
            let unchanged_since_read = Filter::And(vec![
                Filter::id(&credential.id),
                Filter::eq("updatedAt", credential.updated_at.as_str()),
            ]);
            let update = Update::default().set(
                "values",
                serde_json::to_value(&credential.values).expect("values serialize"),
            );
            if store
                .update_one(CREDENTIALS, &unchanged_since_read, &update)
                .await
                .map_err(store_failed)?
            {
                report.resealed += 1;
            } else {
                report.skipped += 1;
            }
        }
    }
}
