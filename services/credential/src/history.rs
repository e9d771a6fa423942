//! Credential history: every version a credential had (`credential_versions` keeps a snapshot of
//! each superseded one, written by `Service::write_version`), revealing a past version's
//! secure values (a reveal in every respect: permission, scope, policy, audit), restoring one
//! (a new version with its values), and pruning by the retention settings.
//!
//! A value in a snapshot keeps the version it was written in, and vault binds the blob to that
//! version: a blob copied from a snapshot into another version of the credential does not open.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use ttscm_contract::credential::*;
use ttscm_contract::permission::names;
use ttscm_contract::{FieldError, WireError};
use ttscm_runtime::service::{CallContext, ServiceOp};
use ttscm_runtime::store::{FindOptions, Order};
use ttscm_runtime::{Filter, Shutdown, clock};

use crate::credentials::{if_match_holds, next_version};
use crate::domain;
use crate::service::{Change, Service, check_scope, store_failed};
use crate::store::{
    CREDENTIAL_VERSIONS, CREDENTIALS, CredentialDoc, StoredValue, TypeDoc, VersionDoc, from_document,
};
use crate::types::changed_concurrently;

fn version_not_found() -> WireError {
    WireError::not_found("Credential version")
}

/// The current version of a credential, as a snapshot would hold it.
fn current_snapshot(credential: &CredentialDoc) -> VersionDoc {
    let version = u64::try_from(credential.revision).unwrap_or_default();
    VersionDoc {
        id: VersionDoc::id_of(&credential.id, version),
        credential_id: credential.id.clone(),
        version,
        name: credential.name.clone(),
        type_id: credential.type_id.clone(),
        values: credential.values.clone(),
        info: credential.version_info.clone(),
        superseded_at: String::new(),
    }
}

fn to_wire(snapshot: &VersionDoc, current: bool) -> CredentialVersion {
    let info = snapshot.info.as_ref();
    CredentialVersion {
        version: snapshot.version,
        current,
        at: info.map(|i| i.at.clone()),
        actor: info.map(|i| i.actor.clone()),
        change: info.map(|i| i.change.clone()),
        field_ids: info.map(|i| i.field_ids.clone()).unwrap_or_default(),
        restored_from: info.and_then(|i| i.restored_from),
        name: snapshot.name.clone(),
        fields: snapshot
            .values
            .iter()
            .filter(|v| !v.sealed)
            .map(|v| (v.field_id.clone(), Value::String(v.value.clone())))
            .collect(),
        secure_field_ids: snapshot
            .values
            .iter()
            .filter(|v| v.sealed)
            .map(|v| v.field_id.clone())
            .collect(),
    }
}

/// `field@version` of each value, comma-separated: what a reveal's audit entry says it showed,
/// so the exposure report can tell whether a revealed value has changed since.
pub(crate) fn field_versions(values: &[&StoredValue]) -> String {
    values
        .iter()
        .map(|v| format!("{}@{}", v.field_id, v.version))
        .collect::<Vec<_>>()
        .join(",")
}

impl Service {
    /// Version `version` of `credential`: the credential itself when it is the current one,
    /// else its stored snapshot (404 when there is none, or it was pruned).
    async fn snapshot(&self, credential: &CredentialDoc, version: u64) -> Result<VersionDoc, WireError> {
        if i64::try_from(version).ok() == Some(credential.revision) {
            return Ok(current_snapshot(credential));
        }
        if i64::try_from(version).map_or(true, |v| v > credential.revision) {
            return Err(version_not_found());
        }
        let document = self
            .store
            .get(CREDENTIAL_VERSIONS, &VersionDoc::id_of(&credential.id, version))
            .await
            .map_err(store_failed)?
            .ok_or_else(version_not_found)?;
        from_document(document).map_err(store_failed)
    }

    /// Reveals `values` (of `credential`'s version `version`) after checking `justification`
    /// against the type's policy: the audit entry (with the version and each value's version)
    /// is written while vault opens them, and nothing leaves before it is stored. `totp` seeds
    /// are left out unless the caller holds [`names::CREDENTIAL_TOTP_SEED_READ`].
    pub(crate) async fn reveal(
        &self,
        ctx: &CallContext,
        credential: &CredentialDoc,
        credential_type: &TypeDoc,
        justification: Justification,
        values: &[StoredValue],
        version: u64,
    ) -> Result<SecureValues, WireError> {
        let id = credential.id.as_str();
        let justified = self
            .justify(ctx, credential, credential_type, justification)
            .await?;
        let seeds_too = ctx
            .principal()?
            .permissions
            .grants(names::CREDENTIAL_TOTP_SEED_READ);
        let is_seed = |field_id: &str| {
            credential_type
                .fields
                .iter()
                .any(|f| f.id == field_id && f.value_type == "totp")
        };
        let sealed: Vec<&StoredValue> = values
            .iter()
            .filter(|v| v.sealed && (seeds_too || !is_seed(&v.field_id)))
            .collect();
        let past = i64::try_from(version).ok() != Some(credential.revision);
        let mut record = justified.record("credential.revealed", credential);
        record.details.insert("version".into(), version.to_string());
        record
            .details
            .insert("fieldVersions".into(), field_versions(&sealed));
        if past {
            record.details.insert("pastVersion".into(), "true".into());
        }
        let (opened, recorded) =
            tokio::join!(self.unseal(ctx, id, &sealed), self.record_numbered(ctx, record),);
        // On either error the opened values are wiped as `opened` drops.
        let mut opened = opened?;
        let seq = recorded?;
        let what = if past {
            format!("revealed (version {version})")
        } else {
            "revealed".to_owned()
        };
        self.after_reveal(ctx, credential, credential_type, &justified, seq, &what)
            .await?;
        let revealed: BTreeMap<String, String> = sealed
            .iter()
            .map(|v| v.field_id.clone())
            .zip(std::mem::take(&mut opened.0))
            .collect();
        self.events
            .publish(ctx, "credential", "revealed", id, || {
                let mut data = Service::event_data(credential);
                data["fieldIds"] = json!(revealed.keys().collect::<Vec<_>>());
                if past {
                    data["version"] = json!(version);
                }
                if let Some(ticket) = justified.ticket {
                    data["ticket"] = json!(ticket);
                }
                if justified.break_glass {
                    data["breakGlass"] = json!(true);
                }
                data
            })
            .await;
        Ok(SecureValues(revealed))
    }

    /// Deletes every past version of credential `id` (it was deleted: its values go with it).
    pub(crate) async fn forget_history(&self, id: &str) -> Result<(), WireError> {
        self.store
            .delete_many(CREDENTIAL_VERSIONS, &Filter::eq("credentialId", id))
            .await
            .map_err(store_failed)?;
        Ok(())
    }

    /// Deletes the versions retention no longer keeps: older than `history_keep_days` and
    /// beyond the newest `history_keep_versions` of each credential. Answers how many went.
    pub async fn prune_history(&self) -> Result<u64, WireError> {
        let settings = &self.credential_settings;
        let mut pruned = 0;
        if settings.history_keep_days > 0 {
            let cutoff = clock::now_offset(-(settings.history_keep_days as i64) * 86_400);
            pruned += self
                .store
                .delete_many(
                    CREDENTIAL_VERSIONS,
                    &Filter::Lt("supersededAt".into(), cutoff.into()),
                )
                .await
                .map_err(store_failed)?;
        }
        let keep = settings.history_keep_versions;
        if keep > 0 {
            let deep = self
                .store
                .find(
                    CREDENTIALS,
                    &FindOptions::new(Filter::Gt(
                        "revision".into(),
                        i64::try_from(keep).unwrap_or(i64::MAX).into(),
                    )),
                )
                .await
                .map_err(store_failed)?;
            for document in deep {
                let credential: CredentialDoc = from_document(document).map_err(store_failed)?;
                let oldest_kept = credential.revision - i64::try_from(keep).unwrap_or(i64::MAX);
                pruned += self
                    .store
                    .delete_many(
                        CREDENTIAL_VERSIONS,
                        &Filter::And(vec![
                            Filter::eq("credentialId", credential.id.as_str()),
                            Filter::Lt("version".into(), oldest_kept.into()),
                        ]),
                    )
                    .await
                    .map_err(store_failed)?;
            }
        }
        Ok(pruned)
    }

    /// Prunes history every `history_prune_secs` until `shutdown` (every replica may: pruning
    /// is idempotent).
    pub(crate) async fn prune_history_forever(self: Arc<Self>, shutdown: Shutdown) {
        let every = self.credential_settings.history_prune_secs;
        if every == 0 {
            return;
        }
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(every));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.prune_history().await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, "pruned credential history"),
                Err(error) => {
                    tracing::warn!(%error, "could not prune credential history; trying again later")
                }
            }
        }
    }
}

/// A credential's versions, newest (the current one) first.
impl ServiceOp<Service> for ListCredentialHistory {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<CredentialHistory, WireError> {
        let (credential, _) = service.accessible_fresh(&ctx, &self.id).await?;
        let past = Filter::And(vec![
            Filter::eq("credentialId", credential.id.as_str()),
            Filter::Lt("version".into(), credential.revision.into()),
        ]);
        let total = service
            .store
            .count(CREDENTIAL_VERSIONS, &past)
            .await
            .map_err(store_failed)?
            + 1;
        // The current version is item 0; snapshots follow, newest first.
        let (start, rpp) = match self.window.page {
            Some((page, rpp)) => (page.saturating_sub(1).saturating_mul(rpp), rpp),
            None => (0, service.list_max_unpaged),
        };
        let mut items = Vec::new();
        if start == 0 && rpp > 0 {
            items.push(to_wire(&current_snapshot(&credential), true));
        }
        let wanted = rpp - items.len() as u64;
        if wanted > 0 {
            let documents = service
                .store
                .find(
                    CREDENTIAL_VERSIONS,
                    &FindOptions::new(past)
                        .sort("version", Order::Desc)
                        .page(start.saturating_sub(1), wanted),
                )
                .await
                .map_err(store_failed)?;
            for document in documents {
                let snapshot: VersionDoc = from_document(document).map_err(store_failed)?;
                items.push(to_wire(&snapshot, false));
            }
        }
        Ok(CredentialHistory { items, total })
    }
}

/// A past version's secure values: permission, scope, policy and audit as a reveal.
impl ServiceOp<Service> for RevealPastSecureValues {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<SecureValues, WireError> {
        let (credential, credential_type) = service.accessible(&ctx, &self.id).await?;
        let snapshot = service.snapshot(&credential, self.version).await?;
        service
            .reveal(
                &ctx,
                &credential,
                &credential_type,
                self.justification,
                &snapshot.values,
                self.version,
            )
            .await
    }
}

/// A new version whose values equal those of a past one, checked against the type as it is
/// now (a version that no longer fits is 409); unchanged values keep their blobs.
impl ServiceOp<Service> for RestoreCredentialVersion {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<Credential, WireError> {
        let id = self.id.as_str();
        let (turn, mut retries) = service.turn_to_write(id).await?;
        let (credential, credential_type) = loop {
            let (read, _) = service.accessible_fresh(&ctx, id).await?;
            if_match_holds(self.if_match, &read)?;
            if i64::try_from(self.version).ok() == Some(read.revision) {
                return Err(WireError::validation(vec![FieldError::new(
                    vec![json!("version")],
                    format!("Version {} is the current version", self.version),
                )]));
            }
            let snapshot = service.snapshot(&read, self.version).await?;
            let credential_type = service
                .type_fresh(&read.type_id)
                .await?
                .ok_or_else(crate::service::credential_not_found)?;
            check_scope(&ctx, &credential_type)?;
            let values: Vec<&StoredValue> = snapshot.values.iter().collect();
            let inputs = service.as_inputs(&ctx, id, &values).await?;
            let checked = domain::check_values(&credential_type.fields, &inputs).map_err(|problems| {
                WireError::new(
                    ttscm_contract::ErrorCode::Conflict,
                    format!(
                        "Version {} does not fit the credential type as it is now: {}",
                        self.version,
                        problems
                            .into_iter()
                            .map(|p| p.message)
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                )
            })?;
            let values = service
                .seal(&ctx, id, checked, &read.values, next_version(&read))
                .await?;
            let change = Change::Restored(self.version);
            if let Some(credential) = service
                .write_version(&ctx, &read, change, values, read.name.clone())
                .await?
            {
                break (credential, Arc::new(credential_type));
            }
            if !retries.wait().await {
                return Err(changed_concurrently());
            }
        };
        drop(turn);
        let field_ids = credential
            .version_info
            .as_ref()
            .map(|i| i.field_ids.clone())
            .unwrap_or_default();
        let mut record = Service::credential_record("credential.restored", &credential);
        record
            .details
            .insert("version".into(), credential.revision.to_string());
        record
            .details
            .insert("restoredFrom".into(), self.version.to_string());
        record.details.insert("fieldIds".into(), field_ids.join(","));
        service.record(&ctx, record).await?;
        service
            .events
            .publish(&ctx, "credential", "restored", id, || {
                let mut data = Service::event_data(&credential);
                data["version"] = json!(credential.revision);
                data["restoredFrom"] = json!(self.version);
                data["fieldIds"] = json!(field_ids);
                data
            })
            .await;
        let company = service.company(&ctx, &credential.company_id).await?;
        Ok(Service::to_wire(&credential, &credential_type, company))
    }
}
