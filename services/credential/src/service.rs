//! The credential service's shared state ([`Service`]) and what every operation needs from it:
//! reading types and credentials (through the caches), the type-scope check, company names,
//! and the conversion to the wire type. The operations themselves are in [`crate::types`] and
//! [`crate::credentials`]; sealing in [`crate::sealing`]; the audit entries in
//! [`crate::auditing`].
//!
//! Rules kept throughout:
//! - every access to a credential of a type with a `permissionScope` needs that permission;
//! - secure values are sealed by vault before anything is written, so a vault outage writes
//!   nothing; reveals are audited before the values leave (fail closed);
//! - a type change first migrates every credential (each value says whether it is sealed), then
//!   the type, so a crash midway stays readable and a retry finishes the job;
//! - writes of values validate and seal against the type as stored (never the cached one) and
//!   are conditional on the credential's `revision`, so a migration and a fields write racing
//!   on one credential never revert each other (the loser re-reads); after a type change, and
//!   after each fields write or create, values a race left out of line with the stored type
//!   are brought in line (`Service::conform`);
//! - a type delete marks the type, deletes its credentials, then deletes the type.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Value, json};
use ttscm_contract::company::{CompanySummary, GetCompanySummaries};
use ttscm_contract::credential::*;
use ttscm_contract::{FieldError, WireError};
use ttscm_runtime::service::{BusClient, CallContext};
use ttscm_runtime::store::Scalar;
use ttscm_runtime::{Filter, Store, Update, clock};

use crate::audit::AuditLog;
use crate::caches::Caches;
use crate::events::Events;
use crate::store::{CREDENTIAL_TYPES, CREDENTIALS, CredentialDoc, StoredValue, TypeDoc, from_document};

/// The credential service's dependencies.
pub struct Service {
    /// Owned collections.
    pub store: Store,
    /// Calls vault and company-sync.
    pub client: BusClient,
    /// Publishes events.
    pub events: Events,
    /// The audit chain.
    pub audit: AuditLog,
    /// Caches of types and company names.
    pub caches: Arc<Caches>,
    /// How often the audit chain's head is signed when it moved (`None`: on demand only).
    pub checkpoint_every: Option<std::time::Duration>,
    /// Most entries one verification checks.
    pub verify_max_entries: u64,
    /// Most credentials a list answers without paging.
    pub list_max_unpaged: u64,
}

pub use ttscm_runtime::service::store_failed;

/// Most company ids asked for in one summaries call (company-sync's limit).
const SUMMARY_BATCH: usize = 1000;

pub(crate) fn type_not_found() -> WireError {
    WireError::not_found("Credential type")
}

pub(crate) fn credential_not_found() -> WireError {
    WireError::not_found("Credential")
}

pub(crate) fn invalid(path: &str, message: &str) -> WireError {
    WireError::validation(vec![FieldError::new(vec![json!(path)], message)])
}

impl Service {
    /// Forgets changed credentials (`None`: every credential) here, and tells the other
    /// replicas. Called after the change is stored and before the request is answered, so a
    /// client's next request finds no replica serving the old values.
    pub(crate) async fn credentials_changed(&self, id: Option<&str>) {
        match id {
            Some(id) => self.caches.credentials.forget(id),
            None => self.caches.credentials.clear(),
        }
        let published = self
            .client
            .bus()
            .publish(
                ttscm_contract::subjects::CREDENTIAL_CHANGED,
                ttscm_runtime::Headers::new(),
                bytes::Bytes::from(id.unwrap_or("*").to_owned()),
            )
            .await;
        if let Err(error) = published {
            tracing::warn!(%error, "could not announce a credential change; other replicas catch up within their cache time");
        }
    }

    pub(crate) async fn type_by_id(&self, id: &str) -> Result<Option<Arc<TypeDoc>>, WireError> {
        if let Some(cached) = self.caches.types.get(id) {
            return Ok(cached);
        }
        let generation = self.caches.types.generation();
        let found: Option<Arc<TypeDoc>> =
            match self.store.get(CREDENTIAL_TYPES, id).await.map_err(store_failed)? {
                Some(document) => Some(Arc::new(from_document(document).map_err(store_failed)?)),
                None => None,
            };
        self.caches
            .types
            .insert_unless_changed(generation, id.to_owned(), found.clone());
        Ok(found)
    }

    /// Stores `values` as `credential`'s values if the stored credential is still at the revision
    /// `credential` was read at, bumping it; answers the credential as written, or `None` when it
    /// changed (or vanished) meanwhile. Forgets the credential everywhere either way. `rotated`:
    /// the values were written anew by someone (not migrated), which clears a rotation mark.
    pub(crate) async fn write_values_if_unchanged(
        &self,
        credential: &CredentialDoc,
        values: Vec<StoredValue>,
        rotated: bool,
    ) -> Result<Option<CredentialDoc>, WireError> {
        let mut written = credential.clone();
        written.values = values;
        written.rotation_due &= !rotated;
        written.revision = credential.revision + 1;
        written.updated_at = clock::now_iso();
        let at_revision = if credential.revision == 0 {
            Filter::Or(vec![
                Filter::eq("revision", 0i64),
                Filter::Eq("revision".into(), Scalar::Null),
            ])
        } else {
            Filter::eq("revision", credential.revision)
        };
        let update = Update::default()
            .set(
                "values",
                serde_json::to_value(&written.values).expect("values serialize"),
            )
            .set("revision", written.revision)
            .set("rotationDue", written.rotation_due)
            .set("updatedAt", written.updated_at.clone());
        let updated = self
            .store
            .update_one(
                CREDENTIALS,
                &Filter::And(vec![Filter::id(&credential.id), at_revision]),
                &update,
            )
            .await;
        self.credentials_changed(Some(&credential.id)).await;
        Ok(updated.map_err(store_failed)?.then_some(written))
    }

    /// The type as stored now, bypassing the cache (for writes).
    pub(crate) async fn type_fresh(&self, id: &str) -> Result<Option<TypeDoc>, WireError> {
        match self.store.get(CREDENTIAL_TYPES, id).await.map_err(store_failed)? {
            Some(document) => Ok(Some(from_document(document).map_err(store_failed)?)),
            None => Ok(None),
        }
    }

    pub(crate) async fn live_type(&self, id: &str) -> Result<Arc<TypeDoc>, WireError> {
        self.type_by_id(id)
            .await?
            .filter(|t| !t.deleting)
            .ok_or_else(type_not_found)
    }

    /// A credential as stored now, bypassing the cache (for writes).
    pub(crate) async fn credential_fresh(&self, id: &str) -> Result<CredentialDoc, WireError> {
        let document = self
            .store
            .get(CREDENTIALS, id)
            .await
            .map_err(store_failed)?
            .ok_or_else(credential_not_found)?;
        from_document(document).map_err(store_failed)
    }

    /// A credential, from the cache when it holds it.
    pub(crate) async fn credential(&self, id: &str) -> Result<Arc<CredentialDoc>, WireError> {
        let generation = match self.caches.credentials.get(id, self.store.change_epoch()) {
            Ok(cached) => return Ok(cached),
            Err(generation) => generation,
        };
        let doc = Arc::new(self.credential_fresh(id).await?);
        self.caches.credentials.put(generation, &doc);
        Ok(doc)
    }

    /// A credential (possibly cached) and its type, after checking the type's scope.
    pub(crate) async fn accessible(
        &self,
        ctx: &CallContext,
        id: &str,
    ) -> Result<(Arc<CredentialDoc>, Arc<TypeDoc>), WireError> {
        self.with_scoped_type(ctx, self.credential(id).await?).await
    }

    /// A credential as stored now and its type, after checking the type's scope (for writes).
    pub(crate) async fn accessible_fresh(
        &self,
        ctx: &CallContext,
        id: &str,
    ) -> Result<(CredentialDoc, Arc<TypeDoc>), WireError> {
        self.with_scoped_type(ctx, self.credential_fresh(id).await?).await
    }

    async fn with_scoped_type<C: std::borrow::Borrow<CredentialDoc>>(
        &self,
        ctx: &CallContext,
        credential: C,
    ) -> Result<(C, Arc<TypeDoc>), WireError> {
        let credential_type = self.scoped_type(ctx, credential.borrow()).await?;
        Ok((credential, credential_type))
    }

    /// The credential's type, after checking its scope.
    pub(crate) async fn scoped_type(
        &self,
        ctx: &CallContext,
        credential: &CredentialDoc,
    ) -> Result<Arc<TypeDoc>, WireError> {
        let credential_type = self
            .type_by_id(&credential.type_id)
            .await?
            .ok_or_else(credential_not_found)?;
        check_scope(ctx, &credential_type)?;
        Ok(credential_type)
    }

    pub(crate) async fn companies(
        &self,
        ctx: &CallContext,
        ids: Vec<String>,
    ) -> Result<HashMap<String, CompanySummary>, WireError> {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        for id in ids {
            match self.caches.companies.get(&id) {
                Some(summary) => {
                    found.insert(id, summary);
                }
                None => missing.push(id),
            }
        }
        // company-sync answers at most SUMMARY_BATCH ids per call.
        for batch in missing.chunks(SUMMARY_BATCH) {
            let summaries = self
                .client
                .call(ctx, &GetCompanySummaries { ids: batch.to_vec() })
                .await?;
            for summary in summaries {
                self.caches.companies.insert(summary.id.clone(), summary.clone());
                found.insert(summary.id.clone(), summary);
            }
        }
        Ok(found)
    }

    pub(crate) async fn company(
        &self,
        ctx: &CallContext,
        id: &str,
    ) -> Result<Option<CompanySummary>, WireError> {
        Ok(self.companies(ctx, vec![id.to_owned()]).await?.remove(id))
    }

    pub(crate) fn to_wire(
        credential: &CredentialDoc,
        credential_type: &TypeDoc,
        company: Option<CompanySummary>,
    ) -> Credential {
        let fields: BTreeMap<String, Value> = credential
            .values
            .iter()
            .filter(|v| !v.sealed && credential_type.field(&v.field_id).is_some_and(|f| !f.secure))
            .map(|v| (v.field_id.clone(), Value::String(v.value.clone())))
            .collect();
        Credential {
            id: credential.id.clone(),
            name: credential.name.clone(),
            type_id: credential.type_id.clone(),
            company_id: credential.company_id.clone(),
            fields,
            credential_type: credential_type.summary(),
            company: company.unwrap_or_else(|| CompanySummary {
                id: credential.company_id.clone(),
                name: String::new(),
            }),
            created_at: credential.created_at.clone(),
            updated_at: credential.updated_at.clone(),
        }
    }
}

/// Fails with 403 unless the caller holds the type's `permissionScope` (when it has one).
pub fn check_scope(ctx: &CallContext, credential_type: &TypeDoc) -> Result<(), WireError> {
    let principal = ctx.principal()?;
    match &credential_type.permission_scope {
        Some(scope) if !principal.permissions.grants(scope) => Err(WireError::forbidden()),
        _ => Ok(()),
    }
}

/// Validation problem at a single top-level key.
pub fn invalid_at(path: &str, message: &str) -> WireError {
    invalid(path, message)
}

/// Shared handle.
pub type SharedService = Arc<Service>;
