//! What each credential operation does. [`Service`] holds the store, a bus client (vault,
//! company-sync), the event publisher and the audit log; the actor hands each call here.
//!
//! Rules kept throughout:
//! - every access to a credential of a type with a `permissionScope` needs that permission;
//! - secure values are sealed by vault before anything is written, so a vault outage writes
//!   nothing; reveals are audited before the values leave (fail closed);
//! - a type change first migrates every credential (each value says whether it is sealed), then
//!   the type, so a crash midway stays readable and a retry finishes the job;
//! - a type delete marks the type, deletes its credentials, then deletes the type.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use ttscm_contract::company::{CompanySummary, GetCompanySummaries};
use ttscm_contract::credential::*;
use ttscm_contract::vault::{Place, Plaintexts, Seal, SealItem, SealedItem, Unseal};
use ttscm_contract::{ErrorCode, FieldError, WireError};
use ttscm_runtime::service::{BusClient, CallContext};
use ttscm_runtime::store::{FindOptions, Order};
use ttscm_runtime::{Filter, Store, StoreError, Update, clock, ids};

use crate::audit::{AuditLog, AuditRecord};
use crate::domain::{self, CheckedValue};
use crate::events::Events;
use crate::store::{
    CREDENTIAL_TYPES, CREDENTIALS, CredentialDoc, StoredValue, TypeDoc, from_document, to_document,
};

/// How long a cached credential type is trusted. Changes made through any replica also clear
/// every replica's cache at once (the service listens to its own type events).
const TYPE_TTL: Duration = Duration::from_secs(2);
/// How long a cached company name is trusted.
const COMPANY_TTL: Duration = Duration::from_secs(10);
/// How long the list of types (with counts) is reused; local writes clear it.
const TYPE_LIST_TTL: Duration = Duration::from_secs(1);
/// How old a type list may be and still answer while one caller recounts in the background;
/// an older one (the store has been failing that long) is recounted while the caller waits.
const TYPE_LIST_STALE: Duration = Duration::from_secs(10);
/// How long a cached credential is trusted. Writes through this replica forget it at once;
/// writes through another replica as soon as its change event arrives here (a NATS hop).
const CREDENTIAL_TTL: Duration = Duration::from_secs(2);
/// Credentials kept at most (the cache is cleared when full).
const MAX_CACHED_CREDENTIALS: usize = 10_000;
/// Credentials whose stored values are longer than this in total are not cached.
const MAX_CACHED_CREDENTIAL_BYTES: usize = 16 * 1024;

/// Recently read credentials, as stored (secure values sealed: the cache never holds plaintext).
///
/// Reads (fetch, fields, reveal) are served from here, so the hot reveal path reads nothing
/// from the store; writes read fresh. A read that raced a write is never cached: every write
/// bumps the generation after it is stored, and a read caches only if the generation did not
/// move while it read. Writes by another process to the embedded store (`ttscm vault reseal`)
/// are noticed through the store's change epoch within 100 ms.
#[derive(Default)]
pub struct CredentialCache {
    state: Mutex<CredentialCacheState>,
}

#[derive(Default)]
struct CredentialCacheState {
    generation: u64,
    /// The store's change epoch the entries were read under.
    epoch: u64,
    entries: HashMap<String, (Instant, Arc<CredentialDoc>)>,
}

impl CredentialCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, CredentialCacheState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached credential, if fresh; else the generation to pass to [`Self::put`]. When the
    /// store's change `epoch` moved (another process wrote to the embedded store, e.g.
    /// `ttscm vault reseal`), everything cached is forgotten first.
    fn get(&self, id: &str, epoch: u64) -> Result<Arc<CredentialDoc>, u64> {
        let mut state = self.lock();
        if state.epoch != epoch {
            state.epoch = epoch;
            state.generation += 1;
            state.entries.clear();
        }
        match state.entries.get(id) {
            Some((at, doc)) if at.elapsed() < CREDENTIAL_TTL => Ok(doc.clone()),
            _ => Err(state.generation),
        }
    }

    /// Caches `doc`, read when the generation was `generation`, unless a write happened since.
    fn put(&self, generation: u64, doc: &Arc<CredentialDoc>) {
        if doc.values.iter().map(|v| v.value.len()).sum::<usize>() > MAX_CACHED_CREDENTIAL_BYTES {
            return;
        }
        let mut state = self.lock();
        if state.generation != generation {
            return;
        }
        if state.entries.len() >= MAX_CACHED_CREDENTIALS {
            state.entries.clear();
        }
        state
            .entries
            .insert(doc.id.clone(), (Instant::now(), doc.clone()));
    }

    /// Forgets one credential (after it was written, here or on another replica).
    pub fn forget(&self, id: &str) {
        let mut state = self.lock();
        state.generation += 1;
        state.entries.remove(id);
    }

    /// Forgets every credential (after a write to many).
    pub fn clear(&self) {
        let mut state = self.lock();
        state.generation += 1;
        state.entries.clear();
    }
}

/// A type as read at a time (`None`: there was none).
type CachedType = (Instant, Option<Arc<TypeDoc>>);

/// Short-lived caches of what nearly every request reads: credential types and company names.
#[derive(Default)]
pub struct Caches {
    /// Types by id, shared with their readers (a reveal reads one; cloning it per request is
    /// measurable).
    types: Mutex<HashMap<String, CachedType>>,
    companies: Mutex<HashMap<String, (Instant, CompanySummary)>>,
    type_list: Mutex<Option<(Instant, Vec<CredentialType>)>>,
    /// Recently read credentials.
    pub credentials: CredentialCache,
    /// Held while one caller recounts the type list: counting is a scan per type, and a
    /// stampede of recounts when the cache expires under load would bury the store.
    type_list_refresh: Arc<tokio::sync::Mutex<()>>,
    /// Moves when the type list is cleared, so a recount that began before a write does not
    /// store counts that miss it.
    type_list_generation: std::sync::atomic::AtomicU64,
}

impl Caches {
    /// Forgets every type (after a type changed anywhere), and every credential (a type
    /// change may have migrated its credentials' values).
    pub fn clear_types(&self) {
        self.types.lock().expect("cache lock is never poisoned").clear();
        self.clear_type_list();
        self.credentials.clear();
    }

    /// Forgets the type list (after counts changed).
    pub fn clear_type_list(&self) {
        let mut list = self.type_list.lock().expect("cache lock is never poisoned");
        self.type_list_generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        *list = None;
    }

    /// The cached type list and its age.
    fn cached_type_list(&self) -> Option<(Duration, Vec<CredentialType>)> {
        self.type_list
            .lock()
            .expect("cache lock is never poisoned")
            .as_ref()
            .map(|(at, list)| (at.elapsed(), list.clone()))
    }
}

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
    let generation = caches
        .type_list_generation
        .load(std::sync::atomic::Ordering::Acquire);
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
    let mut list = caches.type_list.lock().expect("cache lock is never poisoned");
    if caches
        .type_list_generation
        .load(std::sync::atomic::Ordering::Acquire)
        == generation
    {
        *list = Some((Instant::now(), types.clone()));
    }
    Ok(types)
}

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
}

pub use ttscm_runtime::service::store_failed;

fn type_not_found() -> WireError {
    WireError::not_found("Credential type")
}

fn credential_not_found() -> WireError {
    WireError::not_found("Credential")
}

fn invalid(path: &str, message: &str) -> WireError {
    WireError::validation(vec![FieldError::new(vec![json!(path)], message)])
}

impl Service {
    /// Forgets changed credentials (`None`: every credential) here, and tells the other
    /// replicas. Called after the change is stored and before the request is answered, so a
    /// client's next request finds no replica serving the old values.
    async fn credentials_changed(&self, id: Option<&str>) {
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

    async fn record(&self, ctx: &CallContext, record: AuditRecord) -> Result<(), WireError> {
        self.audit.append(ctx, record).await.map_err(|error| {
            tracing::error!(%error, "audit write failed; failing the request");
            WireError::new(ErrorCode::Unavailable, "The audit log is unavailable")
        })
    }

    async fn type_by_id(&self, id: &str) -> Result<Option<Arc<TypeDoc>>, WireError> {
        if let Some((at, cached)) = self
            .caches
            .types
            .lock()
            .expect("cache lock is never poisoned")
            .get(id)
            && at.elapsed() < TYPE_TTL
        {
            return Ok(cached.clone());
        }
        let found: Option<Arc<TypeDoc>> =
            match self.store.get(CREDENTIAL_TYPES, id).await.map_err(store_failed)? {
                Some(document) => Some(Arc::new(from_document(document).map_err(store_failed)?)),
                None => None,
            };
        let mut types = self.caches.types.lock().expect("cache lock is never poisoned");
        if types.len() > 10_000 {
            types.clear();
        }
        types.insert(id.to_owned(), (Instant::now(), found.clone()));
        Ok(found)
    }

    /// The type as stored now, bypassing the cache (for writes).
    async fn type_fresh(&self, id: &str) -> Result<Option<TypeDoc>, WireError> {
        match self.store.get(CREDENTIAL_TYPES, id).await.map_err(store_failed)? {
            Some(document) => Ok(Some(from_document(document).map_err(store_failed)?)),
            None => Ok(None),
        }
    }

    async fn live_type(&self, id: &str) -> Result<Arc<TypeDoc>, WireError> {
        self.type_by_id(id)
            .await?
            .filter(|t| !t.deleting)
            .ok_or_else(type_not_found)
    }

    /// A credential as stored now, bypassing the cache (for writes).
    async fn credential_fresh(&self, id: &str) -> Result<CredentialDoc, WireError> {
        let document = self
            .store
            .get(CREDENTIALS, id)
            .await
            .map_err(store_failed)?
            .ok_or_else(credential_not_found)?;
        from_document(document).map_err(store_failed)
    }

    /// A credential, from the cache when it holds it.
    async fn credential(&self, id: &str) -> Result<Arc<CredentialDoc>, WireError> {
        let generation = match self.caches.credentials.get(id, self.store.change_epoch()) {
            Ok(cached) => return Ok(cached),
            Err(generation) => generation,
        };
        let doc = Arc::new(self.credential_fresh(id).await?);
        self.caches.credentials.put(generation, &doc);
        Ok(doc)
    }

    /// A credential (possibly cached) and its type, after checking the type's scope.
    async fn accessible(
        &self,
        ctx: &CallContext,
        id: &str,
    ) -> Result<(Arc<CredentialDoc>, Arc<TypeDoc>), WireError> {
        let credential = self.credential(id).await?;
        let credential_type = self.scoped_type(ctx, &credential).await?;
        Ok((credential, credential_type))
    }

    /// A credential as stored now and its type, after checking the type's scope (for writes).
    async fn accessible_fresh(
        &self,
        ctx: &CallContext,
        id: &str,
    ) -> Result<(CredentialDoc, Arc<TypeDoc>), WireError> {
        let credential = self.credential_fresh(id).await?;
        let credential_type = self.scoped_type(ctx, &credential).await?;
        Ok((credential, credential_type))
    }

    /// The credential's type, after checking its scope.
    async fn scoped_type(
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

    async fn companies(
        &self,
        ctx: &CallContext,
        ids: Vec<String>,
    ) -> Result<HashMap<String, CompanySummary>, WireError> {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        {
            let cache = self
                .caches
                .companies
                .lock()
                .expect("cache lock is never poisoned");
            for id in ids {
                match cache.get(&id) {
                    Some((at, summary)) if at.elapsed() < COMPANY_TTL => {
                        found.insert(id, summary.clone());
                    }
                    _ => missing.push(id),
                }
            }
        }
        if !missing.is_empty() {
            let summaries = self
                .client
                .call(ctx, &GetCompanySummaries { ids: missing })
                .await?;
            let mut cache = self
                .caches
                .companies
                .lock()
                .expect("cache lock is never poisoned");
            if cache.len() > 10_000 {
                cache.clear();
            }
            for summary in summaries {
                cache.insert(summary.id.clone(), (Instant::now(), summary.clone()));
                found.insert(summary.id.clone(), summary);
            }
        }
        Ok(found)
    }

    async fn company(&self, ctx: &CallContext, id: &str) -> Result<Option<CompanySummary>, WireError> {
        Ok(self.companies(ctx, vec![id.to_owned()]).await?.remove(id))
    }

    fn to_wire(
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

    async fn seal(
        &self,
        ctx: &CallContext,
        credential_id: &str,
        values: Vec<CheckedValue>,
        existing: &[StoredValue],
    ) -> Result<Vec<StoredValue>, WireError> {
        let to_seal: Vec<SealItem> = values
            .iter()
            .filter(|v| v.secure)
            .map(|v| SealItem {
                place: Place {
                    credential_id: credential_id.to_owned(),
                    field_id: v.field_id.clone(),
                },
                plaintext: v.text.clone(),
            })
            .collect();
        let mut sealed = if to_seal.is_empty() {
            Vec::new()
        } else {
            self.client.call(ctx, &Seal { items: to_seal }).await?
        }
        .into_iter();
        let mut out = Vec::with_capacity(values.len());
        for value in values {
            // Values keep their id across updates of the same field; new fields get a new id.
            let id = existing
                .iter()
                .find(|e| e.field_id == value.field_id)
                .map_or_else(ids::new_id, |e| e.id.clone());
            let (sealed_flag, text) = if value.secure {
                (true, sealed.next().ok_or_else(WireError::internal)?)
            } else {
                (false, value.text)
            };
            out.push(StoredValue {
                id,
                field_id: value.field_id,
                sealed: sealed_flag,
                value: text,
            });
        }
        Ok(out)
    }

    /// Opens `values` through vault; the plaintexts are wiped when the answer is dropped.
    async fn unseal(
        &self,
        ctx: &CallContext,
        credential_id: &str,
        values: &[&StoredValue],
    ) -> Result<Plaintexts, WireError> {
        if values.is_empty() {
            return Ok(Plaintexts(Vec::new()));
        }
        let items = values
            .iter()
            .map(|v| SealedItem {
                place: Place {
                    credential_id: credential_id.to_owned(),
                    field_id: v.field_id.clone(),
                },
                sealed: v.value.clone(),
            })
            .collect();
        self.client.call(ctx, &Unseal { items }).await
    }

    async fn count_of(&self, type_id: &str) -> Result<u64, WireError> {
        credentials_of_type(&self.store, type_id).await
    }

    fn event_data(credential: &CredentialDoc) -> Value {
        json!({"id": credential.id, "name": credential.name, "typeId": credential.type_id, "companyId": credential.company_id})
    }

    fn credential_record(action: &'static str, credential: &CredentialDoc) -> AuditRecord {
        AuditRecord {
            action,
            target_kind: "credential",
            target_id: credential.id.clone(),
            credential_id: Some(credential.id.clone()),
            type_id: Some(credential.type_id.clone()),
            company_id: Some(credential.company_id.clone()),
        }
    }

    fn type_record(action: &'static str, id: &str) -> AuditRecord {
        AuditRecord {
            action,
            target_kind: "credential_type",
            target_id: id.to_owned(),
            credential_id: None,
            type_id: Some(id.to_owned()),
            company_id: None,
        }
    }

    // ---- credential types ----------------------------------------------------------------

    /// Every live type with its credential count.
    ///
    /// The list is cached for [`TYPE_LIST_TTL`]. Once it is older, the first caller starts a
    /// recount in the background and everybody answers from the old list until it is done —
    /// counting scans (FerretDB counts without its indexes: seconds with 10⁵ credentials),
    /// and no request should wait for it while a list a few seconds old exists. Without a
    /// list (after a local write, at start, or one older than [`TYPE_LIST_STALE`]), callers
    /// wait for one recount.
    pub async fn list_types(&self) -> Result<Vec<CredentialType>, WireError> {
        let cached = self.caches.cached_type_list();
        match cached {
            Some((age, list)) if age < TYPE_LIST_TTL => Ok(list),
            Some((age, list)) if age < TYPE_LIST_STALE => {
                if let Ok(recounting) = self.caches.type_list_refresh.clone().try_lock_owned() {
                    let (store, caches) = (self.store.clone(), self.caches.clone());
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
                let _recounting = self.caches.type_list_refresh.lock().await;
                match self.caches.cached_type_list() {
                    Some((age, list)) if age < TYPE_LIST_TTL => Ok(list),
                    _ => recount_types(&self.store, &self.caches).await,
                }
            }
        }
    }

    /// A type by id or case-insensitive name.
    pub async fn get_type(&self, identifier: &str) -> Result<CredentialType, WireError> {
        let by_id = self.type_by_id(identifier).await?.filter(|t| !t.deleting);
        let found = match by_id {
            Some(found) => found,
            None => {
                let document = self
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
        let count = self.count_of(&found.id).await?;
        Ok(found.to_wire(count))
    }

    /// Creates a type.
    pub async fn create_type(
        &self,
        ctx: &CallContext,
        mut input: CredentialTypeInput,
    ) -> Result<CredentialType, WireError> {
        let errors = domain::check_type_input(&mut input);
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
            created_at: now.clone(),
            updated_at: now,
        };
        match self.store.insert(CREDENTIAL_TYPES, to_document(&doc)).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                return Err(WireError::new(
                    ErrorCode::Conflict,
                    format!("A credential type named '{}' already exists", doc.name),
                ));
            }
            Err(other) => return Err(store_failed(other)),
        }
        self.caches.clear_type_list();
        if let Err(error) = self
            .record(ctx, Self::type_record("credential_type.created", &doc.id))
            .await
        {
            let _ = self.store.delete(CREDENTIAL_TYPES, &doc.id).await;
            return Err(error);
        }
        self.events
            .publish(
                ctx,
                "credential_type",
                "created",
                &doc.id,
                || json!({"id": doc.id, "name": doc.name}),
            )
            .await;
        Ok(doc.to_wire(0))
    }

    /// Changes a type, migrating its credentials first.
    pub async fn update_type(
        &self,
        ctx: &CallContext,
        id: &str,
        patch: CredentialTypePatch,
    ) -> Result<CredentialType, WireError> {
        let old = self
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
        if !errors.is_empty() {
            return Err(WireError::validation(errors));
        }
        check_scope(ctx, &old)?;
        if new.name_key != old.name_key
            && self
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
            self.migrate(ctx, &new).await?;
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
            .set("updatedAt", new.updated_at.clone());
        match self
            .store
            .update_one(CREDENTIAL_TYPES, &Filter::id(id), &update)
            .await
        {
            Ok(true) => {}
            Ok(false) => return Err(type_not_found()),
            Err(StoreError::Conflict) => {
                return Err(WireError::new(
                    ErrorCode::Conflict,
                    format!("A credential type named '{}' already exists", new.name),
                ));
            }
            Err(other) => return Err(store_failed(other)),
        }
        self.caches.clear_types();
        self.record(ctx, Self::type_record("credential_type.updated", id))
            .await?;
        self.events
            .publish(
                ctx,
                "credential_type",
                "updated",
                id,
                || json!({"id": id, "name": new.name}),
            )
            .await;
        let count = self.count_of(id).await?;
        Ok(new.to_wire(count))
    }

    /// Brings every credential of a type in line with its new field definitions, or refuses
    /// (409) when existing values cannot satisfy them. Writes nothing when refusing.
    async fn migrate(&self, ctx: &CallContext, new: &TypeDoc) -> Result<(), WireError> {
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
            let sealed: Vec<&StoredValue> = kept.iter().copied().filter(|v| v.sealed).collect();
            let mut opened =
                std::mem::take(&mut self.unseal(ctx, &credential.id, &sealed).await?.0).into_iter();
            let mut inputs = Vec::with_capacity(kept.len());
            for value in &kept {
                let text = if value.sealed {
                    opened.next().ok_or_else(WireError::internal)?
                } else {
                    value.value.clone()
                };
                inputs.push(FieldValueInput {
                    id: Some(value.id.clone()),
                    field_id: value.field_id.clone(),
                    value: Value::String(text),
                });
            }
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
        for (credential, checked) in planned {
            let values = self
                .seal(ctx, &credential.id, checked, &credential.values)
                .await?;
            if values != credential.values {
                let update = Update::default()
                    .set("values", serde_json::to_value(&values).expect("values serialize"))
                    .set("updatedAt", clock::now_iso());
                let updated = self
                    .store
                    .update_one(CREDENTIALS, &Filter::id(&credential.id), &update)
                    .await;
                self.credentials_changed(Some(&credential.id)).await;
                updated.map_err(store_failed)?;
            }
        }
        Ok(())
    }

    /// Deletes a type and every credential of it.
    pub async fn delete_type(&self, ctx: &CallContext, id: &str) -> Result<(), WireError> {
        let doc = self.type_fresh(id).await?.ok_or_else(type_not_found)?;
        self.record(ctx, Self::type_record("credential_type.deleted", id))
            .await?;
        if !doc.deleting {
            self.store
                .update_one(
                    CREDENTIAL_TYPES,
                    &Filter::id(id),
                    &Update::default().set("deleting", true),
                )
                .await
                .map_err(store_failed)?;
        }
        let doomed = self
            .store
            .find(CREDENTIALS, &FindOptions::new(Filter::eq("typeId", id)))
            .await
            .map_err(store_failed)?;
        let deleted = self
            .store
            .delete_many(CREDENTIALS, &Filter::eq("typeId", id))
            .await;
        self.credentials_changed(None).await;
        deleted.map_err(store_failed)?;
        self.store
            .delete(CREDENTIAL_TYPES, id)
            .await
            .map_err(store_failed)?;
        self.caches.clear_types();
        for document in doomed {
            if let Ok(credential) = from_document::<CredentialDoc>(document) {
                self.events
                    .publish(ctx, "credential", "deleted", &credential.id, || {
                        Self::event_data(&credential)
                    })
                    .await;
            }
        }
        self.events
            .publish(
                ctx,
                "credential_type",
                "deleted",
                id,
                || json!({"id": id, "name": doc.name}),
            )
            .await;
        Ok(())
    }

    // ---- credentials -----------------------------------------------------------------------

    async fn with_companies(
        &self,
        ctx: &CallContext,
        credentials: Vec<(CredentialDoc, Arc<TypeDoc>)>,
    ) -> Result<Vec<Credential>, WireError> {
        let mut company_ids: Vec<String> = credentials.iter().map(|(c, _)| c.company_id.clone()).collect();
        company_ids.sort();
        company_ids.dedup();
        let companies = if company_ids.is_empty() {
            HashMap::new()
        } else {
            self.companies(ctx, company_ids).await?
        };
        Ok(credentials
            .iter()
            .map(|(c, t)| Self::to_wire(c, t, companies.get(&c.company_id).cloned()))
            .collect())
    }

    /// Every credential of a type.
    pub async fn list_by_type(&self, ctx: &CallContext, id: &str) -> Result<Vec<Credential>, WireError> {
        let credential_type = self.live_type(id).await?;
        check_scope(ctx, &credential_type)?;
        let documents = self
            .store
            .find(
                CREDENTIALS,
                &FindOptions::new(Filter::eq("typeId", id))
                    .sort("name", Order::Asc)
                    .sort("id", Order::Asc),
            )
            .await
            .map_err(store_failed)?;
        let credentials = documents
            .into_iter()
            .map(|d| from_document::<CredentialDoc>(d).map(|c| (c, credential_type.clone())))
            .collect::<Result<_, _>>()
            .map_err(store_failed)?;
        self.with_companies(ctx, credentials).await
    }

    /// Every credential of a company the caller may see (types whose scope it lacks are left out).
    pub async fn list_by_company(
        &self,
        ctx: &CallContext,
        company_id: &str,
    ) -> Result<Vec<Credential>, WireError> {
        let company = self
            .company(ctx, company_id)
            .await?
            .ok_or_else(|| WireError::not_found("Company"))?;
        let documents = self
            .store
            .find(
                CREDENTIALS,
                &FindOptions::new(Filter::eq("companyId", company_id))
                    .sort("name", Order::Asc)
                    .sort("id", Order::Asc),
            )
            .await
            .map_err(store_failed)?;
        let mut types: HashMap<String, Option<Arc<TypeDoc>>> = HashMap::new();
        let mut out = Vec::new();
        for document in documents {
            let credential: CredentialDoc = from_document(document).map_err(store_failed)?;
            if !types.contains_key(&credential.type_id) {
                let found = self.type_by_id(&credential.type_id).await?;
                types.insert(credential.type_id.clone(), found);
            }
            if let Some(Some(credential_type)) = types.get(&credential.type_id)
                && check_scope(ctx, credential_type).is_ok()
            {
                out.push(Self::to_wire(&credential, credential_type, Some(company.clone())));
            }
        }
        Ok(out)
    }

    /// How many credentials a company has.
    pub async fn count_of_company(&self, company_id: &str) -> Result<u64, WireError> {
        self.store
            .count(CREDENTIALS, &Filter::eq("companyId", company_id))
            .await
            .map_err(store_failed)
    }

    /// One credential.
    pub async fn get(&self, ctx: &CallContext, id: &str) -> Result<Credential, WireError> {
        let (credential, credential_type) = self.accessible(ctx, id).await?;
        let company = self.company(ctx, &credential.company_id).await?;
        Ok(Self::to_wire(&credential, &credential_type, company))
    }

    /// Creates a credential.
    pub async fn create(&self, ctx: &CallContext, input: CredentialInput) -> Result<Credential, WireError> {
        let mut errors = Vec::new();
        domain::check_name(&input.name, vec![json!("name")], &mut errors);
        let credential_type = match self.type_by_id(&input.type_id).await? {
            Some(t) if !t.deleting => Some(t),
            _ => {
                errors.push(FieldError::new(
                    vec![json!("typeId")],
                    "Credential type not found",
                ));
                None
            }
        };
        let company = self.company(ctx, &input.company_id).await?;
        if company.is_none() {
            errors.push(FieldError::new(vec![json!("companyId")], "Company not found"));
        }
        let checked = match &credential_type {
            Some(t) => match domain::check_values(&t.fields, &input.fields) {
                Ok(checked) => checked,
                Err(problems) => {
                    errors.extend(problems);
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        if !errors.is_empty() {
            return Err(WireError::validation(errors));
        }
        let credential_type = credential_type.ok_or_else(WireError::internal)?;
        check_scope(ctx, &credential_type)?;
        let id = ids::new_id();
        let values = self.seal(ctx, &id, checked, &[]).await?;
        let now = clock::now_iso();
        let credential = CredentialDoc {
            id,
            name: input.name.trim().to_owned(),
            type_id: credential_type.id.clone(),
            company_id: input.company_id,
            values,
            created_at: now.clone(),
            updated_at: now,
        };
        self.store
            .insert(CREDENTIALS, to_document(&credential))
            .await
            .map_err(store_failed)?;
        self.caches.clear_type_list();
        if let Err(error) = self
            .record(ctx, Self::credential_record("credential.created", &credential))
            .await
        {
            let _ = self.store.delete(CREDENTIALS, &credential.id).await;
            self.credentials_changed(Some(&credential.id)).await;
            return Err(error);
        }
        self.events
            .publish(ctx, "credential", "created", &credential.id, || {
                Self::event_data(&credential)
            })
            .await;
        Ok(Self::to_wire(&credential, &credential_type, company))
    }

    /// Renames a credential.
    pub async fn rename(
        &self,
        ctx: &CallContext,
        id: &str,
        patch: CredentialPatch,
    ) -> Result<Credential, WireError> {
        let mut errors = Vec::new();
        domain::check_name(&patch.name, vec![json!("name")], &mut errors);
        if !errors.is_empty() {
            return Err(WireError::validation(errors));
        }
        let (mut credential, credential_type) = self.accessible_fresh(ctx, id).await?;
        credential.name = patch.name.trim().to_owned();
        credential.updated_at = clock::now_iso();
        let update = Update::default()
            .set("name", credential.name.clone())
            .set("updatedAt", credential.updated_at.clone());
        let updated = self.store.update_one(CREDENTIALS, &Filter::id(id), &update).await;
        self.credentials_changed(Some(id)).await;
        if !updated.map_err(store_failed)? {
            return Err(credential_not_found());
        }
        self.record(ctx, Self::credential_record("credential.updated", &credential))
            .await?;
        self.events
            .publish(ctx, "credential", "updated", id, || Self::event_data(&credential))
            .await;
        let company = self.company(ctx, &credential.company_id).await?;
        Ok(Self::to_wire(&credential, &credential_type, company))
    }

    /// Replaces a credential's values.
    pub async fn update_fields(
        &self,
        ctx: &CallContext,
        id: &str,
        input: CredentialFieldsInput,
    ) -> Result<Credential, WireError> {
        let (mut credential, credential_type) = self.accessible_fresh(ctx, id).await?;
        let checked =
            domain::check_values(&credential_type.fields, &input.fields).map_err(WireError::validation)?;
        credential.values = self.seal(ctx, id, checked, &credential.values).await?;
        credential.updated_at = clock::now_iso();
        let update = Update::default()
            .set(
                "values",
                serde_json::to_value(&credential.values).expect("values serialize"),
            )
            .set("updatedAt", credential.updated_at.clone());
        let updated = self.store.update_one(CREDENTIALS, &Filter::id(id), &update).await;
        self.credentials_changed(Some(id)).await;
        if !updated.map_err(store_failed)? {
            return Err(credential_not_found());
        }
        self.record(
            ctx,
            Self::credential_record("credential.fields_updated", &credential),
        )
        .await?;
        self.events
            .publish(ctx, "credential", "fields_updated", id, || {
                let mut data = Self::event_data(&credential);
                data["fieldIds"] = json!(
                    credential
                        .values
                        .iter()
                        .map(|v| v.field_id.clone())
                        .collect::<Vec<_>>()
                );
                data
            })
            .await;
        let company = self.company(ctx, &credential.company_id).await?;
        Ok(Self::to_wire(&credential, &credential_type, company))
    }

    /// Values, secure ones sealed.
    pub async fn fields(&self, ctx: &CallContext, id: &str) -> Result<Vec<FieldValue>, WireError> {
        let (credential, _) = self.accessible(ctx, id).await?;
        Ok(credential
            .values
            .iter()
            .map(|v| FieldValue {
                id: v.id.clone(),
                field_id: v.field_id.clone(),
                value: Value::String(v.value.clone()),
            })
            .collect())
    }

    /// Secure values in the clear, once the audit entry is stored.
    ///
    /// The entry is written while vault opens the values (the two round trips overlap), so
    /// nothing leaves before it is stored, and an attempt that then fails in vault (503, or a
    /// value that does not open) is still on record: the log errs on the side of recording.
    pub async fn reveal(&self, ctx: &CallContext, id: &str) -> Result<SecureValues, WireError> {
        let (credential, _) = self.accessible(ctx, id).await?;
        let sealed: Vec<&StoredValue> = credential.values.iter().filter(|v| v.sealed).collect();
        let (opened, recorded) = tokio::join!(
            self.unseal(ctx, id, &sealed),
            self.record(ctx, Self::credential_record("credential.revealed", &credential)),
        );
        // On either error the opened values are wiped as `opened` drops.
        let mut opened = opened?;
        recorded?;
        let revealed: BTreeMap<String, String> = sealed
            .iter()
            .map(|v| v.field_id.clone())
            .zip(std::mem::take(&mut opened.0))
            .collect();
        self.events
            .publish(ctx, "credential", "revealed", id, || {
                let mut data = Self::event_data(&credential);
                data["fieldIds"] = json!(revealed.keys().collect::<Vec<_>>());
                data
            })
            .await;
        Ok(SecureValues(revealed))
    }

    /// Deletes a credential and its sealed values.
    pub async fn delete(&self, ctx: &CallContext, id: &str) -> Result<(), WireError> {
        let (credential, _) = self.accessible_fresh(ctx, id).await?;
        self.record(ctx, Self::credential_record("credential.deleted", &credential))
            .await?;
        let deleted = self.store.delete(CREDENTIALS, id).await;
        self.credentials_changed(Some(id)).await;
        if !deleted.map_err(store_failed)? {
            return Err(credential_not_found());
        }
        self.caches.clear_type_list();
        self.events
            .publish(ctx, "credential", "deleted", id, || Self::event_data(&credential))
            .await;
        Ok(())
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
