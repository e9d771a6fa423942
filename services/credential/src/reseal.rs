//! Moving every sealed value to vault's active key after a rotation (`ttscm vault reseal`), and
//! binding values sealed before credentials had versions to their credential's version.
//!
//! Idempotent and resumable: values already under the active key (and bound to a version) come
//! back unchanged and are not written. Safe while the API serves traffic: each credential is
//! written only if its `updatedAt` is still what was read (a concurrent change already sealed
//! with the active key). Past versions (`credential_versions`) are moved too, so a retired key
//! never strands a version in history; their values keep the version they were written in.

use serde::Serialize;
use ttscm_contract::WireError;
use ttscm_contract::vault::{Reseal, SealedItem};
use ttscm_runtime::service::{BusClient, CallContext};
use ttscm_runtime::store::{Document, FindOptions, Order};
use ttscm_runtime::{Filter, Store, Update};

use crate::service::store_failed;
use crate::store::{CREDENTIAL_VERSIONS, CREDENTIALS, CredentialDoc, StoredValue, VersionDoc, from_document};

/// Documents read per page.
const PAGE: u64 = 200;

/// What a reseal run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResealReport {
    /// Credentials looked at.
    pub scanned: u64,
    /// Credentials whose values moved to the active key (or were bound to their version).
    pub resealed: u64,
    /// Credentials changed concurrently (already under the active key), left alone.
    pub skipped: u64,
    /// Credentials with a value that does not open (logged by id); the run goes on without them.
    pub failed: u64,
    /// Past versions whose values moved to the active key.
    pub versions_resealed: u64,
}

/// One document's sealed values and where to write them back.
struct Sealed<'a> {
    credential_id: &'a str,
    values: &'a mut [StoredValue],
    /// The version unversioned values are bound to (`None`: they stay unversioned).
    bind_to: Option<u64>,
}

/// Reseals every credential's and past version's sealed values through vault (reached by
/// `client`).
pub async fn reseal_all(
    store: &Store,
    client: &BusClient,
    ctx: &CallContext,
) -> Result<ResealReport, WireError> {
    let mut report = ResealReport::default();
    let mut offset = 0;
    loop {
        let page = page_of(store, CREDENTIALS, offset).await?;
        if page.is_empty() {
            break;
        }
        offset += page.len() as u64;
        for document in page {
            let mut credential: CredentialDoc = from_document(document).map_err(store_failed)?;
            report.scanned += 1;
            // A credential from before versions is at version 0; binding its values makes it 1.
            let version = credential.revision.max(1);
            let sealed = Sealed {
                credential_id: &credential.id,
                values: &mut credential.values,
                bind_to: u64::try_from(version).ok(),
            };
            match reseal_values(client, ctx, sealed).await? {
                Outcome::Unchanged => continue,
                Outcome::Failed => {
                    report.failed += 1;
                    continue;
                }
                Outcome::Changed => {}
            }
            let unchanged_since_read = Filter::And(vec![
                Filter::id(&credential.id),
                Filter::eq("updatedAt", credential.updated_at.as_str()),
            ]);
            let update = Update::default()
                .set(
                    "values",
                    serde_json::to_value(&credential.values).expect("values serialize"),
                )
                .set("revision", version);
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
    let mut offset = 0;
    loop {
        let page = page_of(store, CREDENTIAL_VERSIONS, offset).await?;
        if page.is_empty() {
            break;
        }
        offset += page.len() as u64;
        for document in page {
            let mut version: VersionDoc = from_document(document).map_err(store_failed)?;
            let sealed = Sealed {
                credential_id: &version.credential_id,
                values: &mut version.values,
                bind_to: None,
            };
            if reseal_values(client, ctx, sealed).await? != Outcome::Changed {
                continue;
            }
            let update = Update::default().set(
                "values",
                serde_json::to_value(&version.values).expect("values serialize"),
            );
            if store
                .update_one(CREDENTIAL_VERSIONS, &Filter::id(&version.id), &update)
                .await
                .map_err(store_failed)?
            {
                report.versions_resealed += 1;
            }
        }
    }
    if report.resealed > 0 {
        // Credential replicas on the same bus (the mesh) drop their cached copies now; others
        // (a server in another process on the embedded store) within their cache time. Either
        // way the old copies still open: old keys are kept.
        let _ = client
            .bus()
            .publish(
                ttscm_contract::subjects::CREDENTIAL_CHANGED,
                ttscm_runtime::Headers::new(),
                bytes::Bytes::from_static(b"*"),
            )
            .await;
    }
    Ok(report)
}

async fn page_of(store: &Store, collection: &str, offset: u64) -> Result<Vec<Document>, WireError> {
    store
        .find(
            collection,
            &FindOptions::new(Filter::All)
                .sort("id", Order::Asc)
                .page(offset, PAGE),
        )
        .await
        .map_err(store_failed)
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Unchanged,
    Changed,
    Failed,
}

/// Moves the sealed values of one document to the active key (binding unversioned ones when
/// asked), in place.
async fn reseal_values(
    client: &BusClient,
    ctx: &CallContext,
    sealed: Sealed<'_>,
) -> Result<Outcome, WireError> {
    let Sealed {
        credential_id,
        values,
        bind_to,
    } = sealed;
    let items: Vec<SealedItem> = values
        .iter()
        .filter(|v| v.sealed)
        .map(|v| v.sealed_item(credential_id))
        .collect();
    if items.is_empty() {
        return Ok(Outcome::Unchanged);
    }
    let to_versions = match bind_to {
        Some(version) => values
            .iter()
            .filter(|v| v.sealed)
            .map(|v| if v.version == 0 { version } else { v.version })
            .collect(),
        None => Vec::new(),
    };
    let resealed = match client.call(ctx, &Reseal { items, to_versions }).await {
        Ok(resealed) => resealed,
        Err(error) if error.code == ttscm_contract::ErrorCode::Internal => {
            tracing::error!(credential = %credential_id, message = %error.message, "a sealed value does not open; left as it is");
            return Ok(Outcome::Failed);
        }
        Err(error) => return Err(error),
    };
    let mut changed = false;
    for (value, blob) in values.iter_mut().filter(|v| v.sealed).zip(resealed) {
        if value.value != blob {
            value.value = blob;
            if let (0, Some(version)) = (value.version, bind_to) {
                value.version = version;
            }
            changed = true;
        }
    }
    Ok(if changed {
        Outcome::Changed
    } else {
        Outcome::Unchanged
    })
}
