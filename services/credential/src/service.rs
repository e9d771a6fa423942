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
use ttscm_runtime::retry::Retries;
use ttscm_runtime::service::{BusClient, CallContext};
use ttscm_runtime::store::Scalar;
use ttscm_runtime::{Filter, Store, StoreError, Update, clock};

use crate::audit::AuditLog;
use crate::caches::Caches;
use crate::events::Events;
use crate::store::{
    CREDENTIAL_TYPES, CREDENTIAL_VERSIONS, CREDENTIALS, CredentialDoc, StoredValue, TypeDoc, VersionDoc,
    VersionInfo, from_document,
};

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
    /// The credential service's settings (history retention, …).
    pub credential_settings: ttscm_runtime::settings::CredentialSettings,
    /// The audit log's settings (the SIEM export's sinks).
    pub audit_settings: ttscm_runtime::settings::AuditSettings,
    /// This process's writers of one credential, one at a time.
    pub turns: crate::turns::WriteTurns,
    /// The longest a writer waits for its turn: one bus request's deadline.
    pub turn_wait: std::time::Duration,
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
        let cached = self.caches.types.get(id);
        ttscm_runtime::metrics::cache_lookup("credential_type", cached.is_some());
        if let Some(cached) = cached {
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

    /// Writes the next version of `read` — `values` and `name`, made by `change` — if the stored
    /// credential is still at the version `read` was read at; answers the credential as written,
    /// or `None` when it changed (or vanished) meanwhile. First keeps `read` as a past version
    /// (idempotent: whoever supersedes a version writes the same snapshot), so history never
    /// misses a version that was current. Forgets the credential everywhere either way.
    pub(crate) async fn write_version(
        &self,
        ctx: &CallContext,
        read: &CredentialDoc,
        change: Change,
        values: Vec<StoredValue>,
        name: String,
    ) -> Result<Option<CredentialDoc>, WireError> {
        let now = clock::now_iso();
        let field_ids = written_fields(&read.values, &values);
        let secrets_written = field_ids.iter().any(|id| {
            read.values
                .iter()
                .chain(&values)
                .any(|v| v.sealed && &v.field_id == id)
        });
        self.keep_version(read, &now).await?;
        let mut written = read.clone();
        written.values = values;
        written.name = name;
        written.revision = read.revision + 1;
        written.updated_at = now.clone();
        if change.rotates() && secrets_written {
            written.secrets_changed_at = Some(now.clone());
            written.rotation_due = false;
        }
        written.version_info = Some(VersionInfo {
            at: now,
            actor: ttscm_runtime::audit::actor_of(ctx),
            change: change.name().to_owned(),
            field_ids,
            restored_from: match change {
                Change::Restored(from) => Some(from),
                _ => None,
            },
        });
        let at_revision = if read.revision == 0 {
            Filter::Or(vec![
                Filter::eq("revision", 0i64),
                Filter::Eq("revision".into(), Scalar::Null),
            ])
        } else {
            Filter::eq("revision", read.revision)
        };
        let mut update = Update::default()
            .set(
                "values",
                serde_json::to_value(&written.values).expect("values serialize"),
            )
            .set("name", written.name.clone())
            .set("revision", written.revision)
            .set(
                "versionInfo",
                serde_json::to_value(&written.version_info).expect("version info serializes"),
            )
            .set("rotationDue", written.rotation_due)
            .set("updatedAt", written.updated_at.clone());
        if let Some(at) = &written.secrets_changed_at {
            update = update.set("secretsChangedAt", at.clone());
        }
        let updated = self
            .store
            .update_one(
                CREDENTIALS,
                &Filter::And(vec![Filter::id(&read.id), at_revision]),
                &update,
            )
            .await;
        self.credentials_changed(Some(&read.id)).await;
        if !updated.map_err(store_failed)? {
            return Ok(None);
        }
        self.drop_version_beyond_retention(read).await;
        Ok(Some(written))
    }

    /// This process's turn to write credential `id` (see [`crate::turns`]), and the attempts
    /// of the write: each a fresh read and a [`Service::write_version`] conditional on it,
    /// with a jittered wait after a round another process won. The turn and the attempts
    /// share one deadline, [`Service::turn_wait`] from now: 409 when the writers before this
    /// one keep the turn past it, or when other processes keep winning until it.
    pub(crate) async fn turn_to_write(
        &self,
        id: &str,
    ) -> Result<(crate::turns::Turn<'_>, Retries), WireError> {
        let started = tokio::time::Instant::now();
        let turn = tokio::time::timeout(self.turn_wait, self.turns.take(id))
            .await
            .map_err(|_| crate::types::changed_concurrently())?;
        let left = self.turn_wait.saturating_sub(started.elapsed());
        Ok((turn, crate::turns::WRITE_BACKOFF.deadline(left).start()))
    }

    /// Once `read`'s version is superseded, deletes the past version that fell out of
    /// `history_keep_versions` (by id: one small write), so a credential's history stays within
    /// the limit as it is written rather than until the next pruning run — storage, and with it
    /// the store's working set, does not grow with the number of writes. A failure is only
    /// logged: [`Service::prune_history`] deletes whatever is left.
    async fn drop_version_beyond_retention(&self, read: &CredentialDoc) {
        let keep = self.credential_settings.history_keep_versions;
        let superseded = u64::try_from(read.revision).unwrap_or_default();
        if keep == 0 || superseded < keep.saturating_add(1) {
            return;
        }
        let id = VersionDoc::id_of(&read.id, superseded - keep);
        if let Err(error) = self.store.delete(CREDENTIAL_VERSIONS, &id).await {
            tracing::warn!(%error, "could not delete a credential version beyond retention; pruning will");
        }
    }

    /// Stores `credential` as it is now as a past version, superseded at `at` (a snapshot
    /// already there — written by a writer that lost the race, or before a crash — is the same).
    async fn keep_version(&self, credential: &CredentialDoc, at: &str) -> Result<(), WireError> {
        let version = u64::try_from(credential.revision).unwrap_or_default();
        let snapshot = VersionDoc {
            id: VersionDoc::id_of(&credential.id, version),
            credential_id: credential.id.clone(),
            version,
            name: credential.name.clone(),
            type_id: credential.type_id.clone(),
            values: credential.values.clone(),
            info: credential.version_info.clone(),
            superseded_at: at.to_owned(),
        };
        match self
            .store
            .insert(CREDENTIAL_VERSIONS, crate::store::to_document(&snapshot))
            .await
        {
            Ok(()) | Err(StoreError::Conflict) => Ok(()),
            Err(error) => Err(store_failed(error)),
        }
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
            let cached = self.caches.companies.get(&id);
            ttscm_runtime::metrics::cache_lookup("company", cached.is_some());
            match cached {
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
        let (rotation_due, rotation_due_at) =
            crate::rotation::rotation_state(credential, credential_type, &clock::now_iso());
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
            version: u64::try_from(credential.revision).unwrap_or_default(),
            rotation_due,
            rotation_due_at,
        }
    }
}

/// What made a version of a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Values written through `PUT …/fields`.
    FieldsUpdated,
    /// Renamed through `PATCH`.
    Renamed,
    /// Values brought in line with a changed type.
    Migrated,
    /// Values made equal to those of the version given.
    Restored(u64),
}

impl Change {
    /// Its name in history.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Change::FieldsUpdated => "fields_updated",
            Change::Renamed => "renamed",
            Change::Migrated => "migrated",
            Change::Restored(_) => "restored",
        }
    }

    /// Whether secure values it writes count as rotated (someone chose new values; a migration
    /// only moves the same ones).
    fn rotates(self) -> bool {
        matches!(self, Change::FieldsUpdated | Change::Restored(_))
    }
}

/// The fields whose stored values differ between `before` and `after` (added, changed or
/// removed), sorted.
pub(crate) fn written_fields(before: &[StoredValue], after: &[StoredValue]) -> Vec<String> {
    let mut ids: Vec<String> = before
        .iter()
        .filter(|b| !after.iter().any(|a| a == *b))
        .chain(after.iter().filter(|a| !before.iter().any(|b| b == *a)))
        .map(|v| v.field_id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// 412: `If-Match` names a version that is no longer current.
pub(crate) fn precondition_failed(current: i64) -> WireError {
    WireError::new(
        ttscm_contract::ErrorCode::PreconditionFailed,
        format!("The credential changed since that version: it is at version {current} now (If-Match)"),
    )
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
