//! The credential-type operations: list (with counts), get, create, update (migrating every
//! credential of the type first), delete (with its credentials).
//!
//! # Type changes that expose or destroy secure values
//!
//! A type change migrates every credential of the type, so a change to its fields acts on
//! values the caller may never have seen. Two kinds of change act on *secure* values:
//!
//! - a field that was `secure` becomes non-secure: every credential's value of it is opened
//!   and stored in plaintext, readable afterwards by anyone with `credential.fetch` — in effect
//!   a reveal of that field of every credential of the type;
//! - a `secure` field is removed: every credential's value of it is destroyed.
//!
//! Either needs, besides `credential_type.update`, what revealing those values needs:
//! `credential.secure_values.read` and the type's permission scope. Without them the change is
//! refused with 403, naming what is missing, and nothing changes. With them, before anything
//! is written, one audit entry per credential that held such a value is stored:
//! `credential.unsealed` (a value of a field turned non-secure is now plaintext at rest) or
//! `credential.values_removed` (a value of a removed secure field is gone); a credential
//! affected both ways gets both. The type's own `credential_type.updated` entry follows as for
//! any change. Changes that keep secure fields secure (or make fields secure) need nothing
//! more than before.

use std::sync::Arc;

use serde_json::json;
use ttscm_contract::credential::*;
use ttscm_contract::permission::names;
use ttscm_contract::{ErrorCode, WireError};
use ttscm_runtime::service::{CallContext, ServiceOp};
use ttscm_runtime::store::{FindOptions, Order};
use ttscm_runtime::{Filter, Store, StoreError, Update, clock, ids};

use crate::caches::{Caches, TYPE_LIST_STALE, TYPE_LIST_TTL};
use crate::domain;
use crate::service::{Change, Service, check_scope, store_failed, type_not_found};
use crate::store::{
    CREDENTIAL_TYPES, CREDENTIALS, CredentialDoc, StoredValue, TypeDoc, from_document, to_document,
};

/// How many credentials a type has.
async fn credentials_of_type(store: &Store, type_id: &str) -> Result<u64, WireError> {
    store
        .count(CREDENTIALS, &Filter::eq("typeId", type_id))
        .await
        .map_err(store_failed)
}

/// Lists the live types and counts their credentials (a count per type), and caches the list
/// unless the list was cleared meanwhile.
async fn recount_types(store: &Store, caches: &Caches) -> Result<Vec<CredentialType>, WireError> {
    let generation = caches.type_list_generation();
    let documents = store
        .find(
            CREDENTIAL_TYPES,
            &FindOptions::new(Filter::Ne("deleting".into(), true.into()))
                .sort("nameKey", Order::Asc)
                .sort("id", Order::Asc),
        )
        .await
        .map_err(store_failed)?;
    let mut types = Vec::with_capacity(documents.len());
    for document in documents {
        let doc: TypeDoc = from_document(document).map_err(store_failed)?;
        let count = credentials_of_type(store, &doc.id).await?;
        types.push(doc.to_wire(count));
    }
    caches.store_type_list(generation, types.clone());
    Ok(types)
}

/// A type write's store failure: a unique conflict means a type of that name exists already.
fn type_write_failed(error: StoreError, name: &str) -> WireError {
    match error {
        StoreError::Conflict => WireError::new(
            ErrorCode::Conflict,
            format!("A credential type named '{name}' already exists"),
        ),
        other => store_failed(other),
    }
}

impl Service {
    /// Announces `action` on the type `id` named `name`.
    pub(crate) async fn type_event(&self, ctx: &CallContext, action: &str, id: &str, name: &str) {
        self.events
            .publish(
                ctx,
                "credential_type",
                action,
                id,
                || json!({"id": id, "name": name}),
            )
            .await;
    }

    pub(crate) async fn count_of(&self, type_id: &str) -> Result<u64, WireError> {
        credentials_of_type(&self.store, type_id).await
    }

    /// Brings every credential of a type in line with its new field definitions, or refuses
    /// (409) when existing values cannot satisfy them. Writes nothing when refusing.
    ///
    /// Before writing, records an audit entry per credential holding a sealed value that the
    /// change exposes or destroys (see [`SecureChange`] and the module docs); a failed audit
    /// write fails the change before any credential is touched.
    pub(crate) async fn migrate(
        &self,
        ctx: &CallContext,
        new: &TypeDoc,
        secure: &SecureChange,
    ) -> Result<(), WireError> {
        let documents = self
            .store
            .find(
                CREDENTIALS,
                &FindOptions::new(Filter::eq("typeId", new.id.as_str())),
            )
            .await
            .map_err(store_failed)?;
        let credentials: Vec<CredentialDoc> = documents
            .into_iter()
            .map(from_document)
            .collect::<Result<_, _>>()
            .map_err(store_failed)?;
        let mut blocked = 0usize;
        let mut reasons = Vec::new();
        let mut planned = Vec::new();
        for credential in &credentials {
            // Plaintext of every kept value (unsealing secure ones), then the new stored form.
            let kept: Vec<&StoredValue> = credential
                .values
                .iter()
                .filter(|v| new.field(&v.field_id).is_some())
                .collect();
            let inputs = self.as_inputs(ctx, &credential.id, &kept).await?;
            match domain::check_values(&new.fields, &inputs) {
                Ok(checked) => planned.push((credential, checked)),
                Err(problems) => {
                    blocked += 1;
                    if reasons.len() < 3 {
                        reasons.extend(problems.into_iter().map(|p| p.message).take(1));
                    }
                }
            }
        }
        if blocked > 0 {
            return Err(WireError::new(
                ErrorCode::Conflict,
                format!(
                    "{blocked} credential(s) of this type block the change: {}",
                    reasons.join("; ")
                ),
            ));
        }
        for (credential, _) in &planned {
            for (action, fields) in [
                ("credential.unsealed", &secure.unsealed),
                ("credential.values_removed", &secure.removed),
            ] {
                if credential
                    .values
                    .iter()
                    .any(|v| v.sealed && fields.contains(&v.field_id))
                {
                    self.record(ctx, Service::credential_record(action, credential))
                        .await?;
                }
            }
        }
        for (credential, checked) in planned {
            let next = crate::credentials::next_version(credential);
            let values = self
                .seal(ctx, &credential.id, checked, &credential.values, next)
                .await?;
            // Conditional on the revision read above: a fields write that landed meanwhile is
            // not reverted, the credential is read again and brought in line instead.
            if values == credential.values {
                continue;
            }
            match self
                .write_version(ctx, credential, Change::Migrated, values, credential.name.clone())
                .await?
            {
                Some(written) => {
                    self.record(ctx, Service::version_record("credential.migrated", &written))
                        .await?;
                }
                None => {
                    self.conform(ctx, &credential.id, new).await?;
                }
            }
        }
        Ok(())
    }

    /// After a type change is stored: brings in line every credential of the type as stored now
    /// whose values a racing write left out of line (a fields write or create that validated
    /// against the type before the change, and landed after the migration read it).
    pub(crate) async fn conform_all(&self, ctx: &CallContext, type_id: &str) -> Result<(), WireError> {
        let Some(current) = self.type_fresh(type_id).await? else {
            return Ok(());
        };
        let documents = self
            .store
            .find(CREDENTIALS, &FindOptions::new(Filter::eq("typeId", type_id)))
            .await
            .map_err(store_failed)?;
        for document in documents {
            let credential: CredentialDoc = from_document(document).map_err(store_failed)?;
            if !conforms(&credential, &current) {
                self.conform(ctx, &credential.id, &current).await?;
            }
        }
        Ok(())
    }

    /// Brings the stored credential `id` in line with `ty`'s fields: values of fields `ty` lacks
    /// are dropped, the others are sealed exactly when their field is secure (values are not
    /// validated again). Written in this process's turn for the credential, as every other
    /// write of its values ([`Service::turn_to_write`]), conditional on its revision; when
    /// another process wins a round the credential is read again. Answers the credential as
    /// stored afterwards (`None` when it is gone); 409 when it keeps changing.
    pub(crate) async fn conform(
        &self,
        ctx: &CallContext,
        id: &str,
        ty: &TypeDoc,
    ) -> Result<Option<CredentialDoc>, WireError> {
        let (_turn, mut retries) = self.turn_to_write(id).await?;
        loop {
            let Some(document) = self.store.get(CREDENTIALS, id).await.map_err(store_failed)? else {
                return Ok(None);
            };
            let credential: CredentialDoc = from_document(document).map_err(store_failed)?;
            if credential.type_id != ty.id || conforms(&credential, ty) {
                return Ok(Some(credential));
            }
            let kept: Vec<(&StoredValue, bool)> = credential
                .values
                .iter()
                .filter_map(|v| ty.field(&v.field_id).map(|f| (v, f.secure)))
                .collect();
            let sealed: Vec<&StoredValue> = kept.iter().map(|(v, _)| *v).filter(|v| v.sealed).collect();
            let mut opened =
                std::mem::take(&mut self.unseal(ctx, &credential.id, &sealed).await?.0).into_iter();
            let mut checked = Vec::with_capacity(kept.len());
            for (value, secure) in &kept {
                let text = if value.sealed {
                    opened.next().ok_or_else(WireError::internal)?
                } else {
                    value.value.clone()
                };
                checked.push(domain::CheckedValue {
                    id: Some(value.id.clone()),
                    field_id: value.field_id.clone(),
                    secure: *secure,
                    text,
                });
            }
            for (action, exposed) in [
                (
                    "credential.unsealed",
                    kept.iter().any(|(v, secure)| v.sealed && !secure),
                ),
                (
                    "credential.values_removed",
                    credential
                        .values
                        .iter()
                        .any(|v| v.sealed && ty.field(&v.field_id).is_none()),
                ),
            ] {
                if exposed {
                    self.record(ctx, Service::credential_record(action, &credential))
                        .await?;
                }
            }
            let next = crate::credentials::next_version(&credential);
            let values = self.seal(ctx, id, checked, &credential.values, next).await?;
            let name = credential.name.clone();
            if let Some(written) = self
                .write_version(ctx, &credential, Change::Migrated, values, name)
                .await?
            {
                self.record(ctx, Service::version_record("credential.migrated", &written))
                    .await?;
                return Ok(Some(written));
            }
            if !retries.wait().await {
                return Err(changed_concurrently());
            }
        }
    }
}

/// 409: a credential kept changing under a conditional write.
pub(crate) fn changed_concurrently() -> WireError {
    WireError::new(
        ErrorCode::Conflict,
        "The credential changed concurrently; please try again",
    )
}

/// Whether every value of `credential` fills a field of `ty` and is sealed exactly when that
/// field is secure.
pub(crate) fn conforms(credential: &CredentialDoc, ty: &TypeDoc) -> bool {
    credential
        .values
        .iter()
        .all(|v| ty.field(&v.field_id).is_some_and(|f| f.secure == v.sealed))
}

/// Every live type with its credential count.
///
/// The list is cached for [`TYPE_LIST_TTL`]. Once it is older, the first caller starts a
/// recount in the background and everybody answers from the old list until it is done —
/// counting scans (FerretDB counts without its indexes: seconds with 10⁵ credentials),
/// and no request should wait for it while a list a few seconds old exists. Without a
/// list (after a local write, at start, or one older than [`TYPE_LIST_STALE`]), callers
/// wait for one recount.
impl ServiceOp<Service> for ListCredentialTypes {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<Vec<CredentialType>, WireError> {
        let cached = service.caches.cached_type_list();
        match cached {
            Some((age, list)) if age < TYPE_LIST_TTL => Ok(list),
            Some((age, list)) if age < TYPE_LIST_STALE => {
                if let Ok(recounting) = service.caches.type_list_refresh.clone().try_lock_owned() {
                    let (store, caches) = (service.store.clone(), service.caches.clone());
                    tokio::spawn(async move {
                        if let Err(error) = recount_types(&store, &caches).await {
                            tracing::warn!(message = %error.message, "recounting credential types failed");
                        }
                        drop(recounting);
                    });
                }
                Ok(list)
            }
            _ => {
                let _recounting = service.caches.type_list_refresh.lock().await;
                match service.caches.cached_type_list() {
                    Some((age, list)) if age < TYPE_LIST_TTL => Ok(list),
                    _ => recount_types(&service.store, &service.caches).await,
                }
            }
        }
    }
}

/// A type by id or case-insensitive name.
impl ServiceOp<Service> for GetCredentialType {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<CredentialType, WireError> {
        let identifier = self.identifier.as_str();
        let by_id = service.type_by_id(identifier).await?.filter(|t| !t.deleting);
        let found = match by_id {
            Some(found) => found,
            None => {
                let document = service
                    .store
                    .find_one(
                        CREDENTIAL_TYPES,
                        Filter::eq("nameKey", identifier.trim().to_lowercase()),
                    )
                    .await
                    .map_err(store_failed)?
                    .ok_or_else(type_not_found)?;
                let doc: TypeDoc = from_document(document).map_err(store_failed)?;
                if doc.deleting {
                    return Err(type_not_found());
                }
                Arc::new(doc)
            }
        };
        let count = service.count_of(&found.id).await?;
        Ok(found.to_wire(count))
    }
}

/// Creates a type.
impl ServiceOp<Service> for CreateCredentialType {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<CredentialType, WireError> {
        let store = service.store.clone();
        ttscm_runtime::idempotency::once_op(&store, ctx, "credential_type.create", self, |op, ctx| {
            create_type(op, service, ctx)
        })
        .await
    }
}

/// The create itself (run once per `Idempotency-Key`).
async fn create_type(
    op: CreateCredentialType,
    service: Arc<Service>,
    ctx: CallContext,
) -> Result<CredentialType, WireError> {
    let mut input = op.input;
    let mut errors = domain::check_type_input(&mut input);
    crate::rotation::check_rotation_days(input.rotation_days, &mut errors);
    if !errors.is_empty() {
        return Err(WireError::validation(errors));
    }
    let now = clock::now_iso();
    let doc = TypeDoc {
        id: ids::new_id(),
        name_key: input.name.to_lowercase(),
        name: input.name,
        permission_scope: input.permission_scope,
        icon: input.icon,
        fields: input.fields,
        deleting: false,
        reveal_policy: input.reveal_policy.unwrap_or_default(),
        rotation_days: input.rotation_days,
        created_at: now.clone(),
        updated_at: now,
    };
    service
        .store
        .insert(CREDENTIAL_TYPES, to_document(&doc))
        .await
        .map_err(|error| type_write_failed(error, &doc.name))?;
    service.caches.clear_type_list();
    if let Err(error) = service
        .record(&ctx, Service::type_record("credential_type.created", &doc.id))
        .await
    {
        let _ = service.store.delete(CREDENTIAL_TYPES, &doc.id).await;
        return Err(error);
    }
    service.type_event(&ctx, "created", &doc.id, &doc.name).await;
    Ok(doc.to_wire(0))
}

/// Changes a type, migrating its credentials first.
impl ServiceOp<Service> for UpdateCredentialType {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<CredentialType, WireError> {
        let id = self.id.as_str();
        let patch = self.patch;
        let old = service
            .type_fresh(id)
            .await?
            .filter(|t| !t.deleting)
            .ok_or_else(type_not_found)?;
        let mut new = old.clone();
        let mut errors = Vec::new();
        if let Some(name) = &patch.name {
            domain::check_name(name, vec![json!("name")], &mut errors);
            new.name = name.trim().to_owned();
            new.name_key = new.name.to_lowercase();
        }
        if let Some(scope) = patch.permission_scope {
            domain::check_scope(&scope, &mut errors);
            new.permission_scope = scope;
        }
        if let Some(icon) = patch.icon {
            domain::check_icon(&icon, &mut errors);
            new.icon = icon;
        }
        if let Some(mut fields) = patch.fields {
            domain::check_fields(&mut fields, &mut errors);
            new.fields = fields;
        }
        if let Some(policy) = patch.reveal_policy {
            new.reveal_policy = policy;
        }
        if let Some(days) = patch.rotation_days {
            crate::rotation::check_rotation_days(days, &mut errors);
            new.rotation_days = days;
        }
        if !errors.is_empty() {
            return Err(WireError::validation(errors));
        }
        let secure = SecureChange::between(&old, &new);
        if !secure.is_empty() {
            may_expose_secure_values(&ctx, &old, &secure)?;
        }
        check_scope(&ctx, &old)?;
        if new.name_key != old.name_key
            && service
                .store
                .find_one(CREDENTIAL_TYPES, Filter::eq("nameKey", new.name_key.as_str()))
                .await
                .map_err(store_failed)?
                .is_some()
        {
            return Err(WireError::new(
                ErrorCode::Conflict,
                format!("A credential type named '{}' already exists", new.name),
            ));
        }
        if new.fields != old.fields {
            service.migrate(&ctx, &new, &secure).await?;
        }
        new.updated_at = clock::now_iso();
        let update = Update::default()
            .set("name", new.name.clone())
            .set("nameKey", new.name_key.clone())
            .set("permissionScope", json!(new.permission_scope))
            .set("icon", json!(new.icon))
            .set(
                "fields",
                serde_json::to_value(&new.fields).expect("fields serialize"),
            )
            .set(
                "revealPolicy",
                serde_json::to_value(&new.reveal_policy).expect("policies serialize"),
            )
            .set("rotationDays", json!(new.rotation_days))
            .set("updatedAt", new.updated_at.clone());
        let updated = service
            .store
            .update_one(CREDENTIAL_TYPES, &Filter::id(id), &update)
            .await
            .map_err(|error| type_write_failed(error, &new.name))?;
        if !updated {
            return Err(type_not_found());
        }
        service.caches.clear_types();
        if new.fields != old.fields {
            service.conform_all(&ctx, id).await?;
        }
        let mut record = Service::type_record("credential_type.updated", id);
        if new.reveal_policy != old.reveal_policy {
            // Who loosened (or tightened) what reveals need is on record.
            record.details.insert(
                "revealPolicy".into(),
                serde_json::to_string(&new.reveal_policy).expect("policies serialize"),
            );
            record.details.insert(
                "previousRevealPolicy".into(),
                serde_json::to_string(&old.reveal_policy).expect("policies serialize"),
            );
        }
        if new.rotation_days != old.rotation_days {
            // A schedule loosened or removed is on record like a policy change ("none": no schedule).
            let days = |d: Option<u32>| d.map_or_else(|| "none".to_owned(), |d| d.to_string());
            record
                .details
                .insert("rotationDays".into(), days(new.rotation_days));
            record
                .details
                .insert("previousRotationDays".into(), days(old.rotation_days));
        }
        service.record(&ctx, record).await?;
        service.type_event(&ctx, "updated", id, &new.name).await;
        let count = service.count_of(id).await?;
        Ok(new.to_wire(count))
    }
}

/// The secure fields a type change exposes or destroys.
#[derive(Debug, Default)]
pub(crate) struct SecureChange {
    /// Fields secure before and present but not secure after: their values become plaintext.
    pub unsealed: Vec<String>,
    /// Fields secure before and absent after: their values are destroyed.
    pub removed: Vec<String>,
}

impl SecureChange {
    /// What changing `old`'s fields into `new`'s does to secure values.
    pub(crate) fn between(old: &TypeDoc, new: &TypeDoc) -> Self {
        let mut change = Self::default();
        for field in old.fields.iter().filter(|f| f.secure) {
            match new.field(&field.id) {
                None => change.removed.push(field.id.clone()),
                Some(after) if !after.secure => change.unsealed.push(field.id.clone()),
                Some(_) => {}
            }
        }
        change
    }

    /// Whether no secure value is exposed or destroyed.
    pub(crate) fn is_empty(&self) -> bool {
        self.unsealed.is_empty() && self.removed.is_empty()
    }
}

/// Refuses (403, naming what is missing) unless the caller may expose or destroy the values of
/// `doc`'s secure fields: it needs what a reveal needs, the type's scope and
/// `credential.secure_values.read`.
fn may_expose_secure_values(
    ctx: &CallContext,
    doc: &TypeDoc,
    change: &SecureChange,
) -> Result<(), WireError> {
    let held = &ctx.principal()?.permissions;
    let missing = doc
        .permission_scope
        .as_deref()
        .into_iter()
        .chain([names::CREDENTIAL_SECURE_VALUES_READ])
        .find(|p| !held.grants(p));
    let Some(missing) = missing else {
        return Ok(());
    };
    let quoted = |fields: &[String]| {
        fields
            .iter()
            .map(|f| format!("\"{f}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let what = match (change.unsealed.is_empty(), change.removed.is_empty()) {
        (false, true) => format!("make secure field(s) {} non-secure", quoted(&change.unsealed)),
        (true, false) => format!("remove secure field(s) {}", quoted(&change.removed)),
        _ => format!(
            "make secure field(s) {} non-secure and remove secure field(s) {}",
            quoted(&change.unsealed),
            quoted(&change.removed)
        ),
    };
    Err(WireError::new(
        ErrorCode::Forbidden,
        format!(
            "You cannot {what} of credential type \"{}\": that exposes or destroys the secure values of its credentials and needs \"{missing}\", which you do not hold",
            doc.name
        ),
    ))
}

/// Refuses (403, naming what is missing) unless the caller may delete the type and every
/// credential of it: the type's scope (as [`check_scope`] requires for any access to them) and
/// `credential.delete`.
fn may_delete_type(ctx: &CallContext, doc: &TypeDoc) -> Result<(), WireError> {
    let held = &ctx.principal()?.permissions;
    let missing = doc
        .permission_scope
        .as_deref()
        .into_iter()
        .chain([names::CREDENTIAL_DELETE])
        .find(|p| !held.grants(p));
    match missing {
        None => check_scope(ctx, doc),
        Some(missing) => Err(WireError::new(
            ErrorCode::Forbidden,
            format!(
                "You cannot delete credential type \"{}\" and its credentials: that needs \"{missing}\", which you do not hold",
                doc.name
            ),
        )),
    }
}

/// Deletes a type and every credential of it (needs the type's scope and `credential.delete`).
impl ServiceOp<Service> for DeleteCredentialType {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<(), WireError> {
        let id = self.id.as_str();
        let doc = service.type_fresh(id).await?.ok_or_else(type_not_found)?;
        may_delete_type(&ctx, &doc)?;
        service
            .record(&ctx, Service::type_record("credential_type.deleted", id))
            .await?;
        if !doc.deleting {
            service
                .store
                .update_one(
                    CREDENTIAL_TYPES,
                    &Filter::id(id),
                    &Update::default().set("deleting", true),
                )
                .await
                .map_err(store_failed)?;
        }
        let doomed = service
            .store
            .find(CREDENTIALS, &FindOptions::new(Filter::eq("typeId", id)))
            .await
            .map_err(store_failed)?;
        let deleted = service
            .store
            .delete_many(CREDENTIALS, &Filter::eq("typeId", id))
            .await;
        service.credentials_changed(None).await;
        deleted.map_err(store_failed)?;
        // Their past versions go with them (a credential never changes type).
        service
            .store
            .delete_many(crate::store::CREDENTIAL_VERSIONS, &Filter::eq("typeId", id))
            .await
            .map_err(store_failed)?;
        service
            .store
            .delete(CREDENTIAL_TYPES, id)
            .await
            .map_err(store_failed)?;
        service.caches.clear_types();
        for document in doomed {
            if let Ok(credential) = from_document::<CredentialDoc>(document) {
                service.credential_event(&ctx, "deleted", &credential).await;
            }
        }
        service.type_event(&ctx, "deleted", id, &doc.name).await;
        Ok(())
    }
}
