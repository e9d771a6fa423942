//! Syncing companies from ConnectWise into `companies`.
//!
//! - [`Syncer::run`] does one sync: a full one lists every company not flagged deleted and turns
//!   the synced companies it no longer sees inactive; an incremental one lists what changed
//!   since the newest `lastUpdated` of the last successful sync and turns flagged ones inactive.
//!   Companies are upserted by ConnectWise id through the unique `cwKey`, so a crash or a second
//!   replica never duplicates one. Inactive companies are kept: credentials may point at them.
//! - Only one sync runs at a time across replicas: a lease document in `company_sync_state`
//!   (taken with a conditional update, expiring after [`LEASE_TTL`] if its holder dies).
//! - The last report and the incremental watermark live in the same collection, so every
//!   replica answers the same status.
//! - [`SyncActor`] schedules: a full sync at start, an incremental one every interval, and a
//!   full one at least daily. Messages are handled one at a time ([`AtomicResponse`]), so a
//!   replica never runs two syncs at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, ActorFutureExt, AsyncContext, AtomicResponse, Context, Handler, WrapFuture};
use serde_json::{Value, json};
use tokio::time::Instant;
use ttscm_contract::company::{CompanySource, SyncReport, SyncStatus};
use ttscm_contract::{ErrorCode, WireError};
use ttscm_runtime::cache::Cache;
use ttscm_runtime::store::{Document, FindOptions, IndexSpec, Scalar};
use ttscm_runtime::{Bus, Filter, Store, StoreError, Update, clock, ids};

use crate::connectwise::{ConnectWise, ConnectWiseConfig, ConnectWiseError, CwCompany, RetryPolicy};
use crate::events::{Event, Events, company_events};
use crate::store::{COMPANIES, CompanyDoc, cw_key};

/// Sync bookkeeping: the lease and the status document. Owned by company-sync.
pub const SYNC_STATE: &str = "company_sync_state";
const LEASE_ID: &str = "lease";
const STATUS_ID: &str = "status";
/// How long a lease holds without its holder releasing it (a crashed replica's lease expires).
pub const LEASE_TTL: Duration = Duration::from_secs(15 * 60);
/// How long fetched configurations are reused.
const CONFIGURATIONS_TTL: Duration = Duration::from_secs(30);
/// Companies whose configurations are kept at most.
const CONFIGURATIONS_MAX: usize = 1000;
/// A full sync runs at least this often, to notice companies deleted in ConnectWise.
const FULL_SYNC_EVERY: Duration = Duration::from_secs(24 * 60 * 60);

/// No indexes: the collection holds two documents, read by id. Declaring it creates it.
const STATE_INDEXES: &[IndexSpec] = &[];

/// Why a sync did not run or failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// No ConnectWise settings: sync is off.
    #[error("ConnectWise sync is off: no connectwise settings")]
    Off,
    /// Another replica holds the lease.
    #[error("a sync is already running")]
    Busy,
    /// ConnectWise failed.
    #[error(transparent)]
    ConnectWise(#[from] ConnectWiseError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SyncError {
    /// The error as a client sees it.
    pub fn to_wire(&self) -> WireError {
        match self {
            SyncError::Off => WireError::new(
                ErrorCode::Conflict,
                "ConnectWise sync is off: the connectwise settings are not set",
            ),
            SyncError::Busy => WireError::new(ErrorCode::Conflict, "A sync is already running"),
            SyncError::ConnectWise(error) => upstream(error),
            SyncError::Store(error) => crate::service::store_failed(error.clone()),
        }
    }
}

/// A ConnectWise failure as a client sees it (502, saying what ConnectWise did).
pub fn upstream(error: &ConnectWiseError) -> WireError {
    tracing::warn!(%error, "ConnectWise call failed");
    WireError::new(ErrorCode::Upstream, error.to_string())
}

/// The way to ConnectWise: its settings and, once connected, the client.
pub struct Upstream {
    config: Option<ConnectWiseConfig>,
    retry: RetryPolicy,
    client: tokio::sync::Mutex<Option<ConnectWise>>,
    /// Configurations by ConnectWise company id; concurrent requests for one company share a
    /// fetch.
    configurations: Cache<i64, Arc<Vec<Value>>>,
}

impl Upstream {
    /// ConnectWise per `config` (`None`: off).
    pub fn new(config: Option<ConnectWiseConfig>, retry: RetryPolicy) -> Self {
        Self {
            config,
            retry,
            client: tokio::sync::Mutex::new(None),
            configurations: Cache::new(CONFIGURATIONS_TTL, CONFIGURATIONS_MAX),
        }
    }

    /// Whether ConnectWise settings are present.
    pub fn enabled(&self) -> bool {
        self.config.is_some()
    }

    /// The client, connecting (and discovering the codebase) on first use.
    pub async fn client(&self) -> Result<ConnectWise, SyncError> {
        let Some(config) = &self.config else {
            return Err(SyncError::Off);
        };
        let mut client = self.client.lock().await;
        if let Some(client) = client.as_ref() {
            return Ok(client.clone());
        }
        let connected = ConnectWise::connect(config, self.retry).await?;
        *client = Some(connected.clone());
        Ok(connected)
    }

    /// The configurations of ConnectWise company `cw_company_id`, reused for a short while.
    pub async fn configurations(&self, cw_company_id: i64) -> Result<Vec<Value>, SyncError> {
        let configurations = self
            .configurations
            .get_or_try_insert_with(cw_company_id, || async {
                let fetched = self
                    .client()
                    .await?
                    .with_retry(RetryPolicy::interactive())
                    .configurations(cw_company_id)
                    .await?;
                Ok::<_, SyncError>(Arc::new(fetched))
            })
            .await?;
        Ok(configurations.as_ref().clone())
    }
}

/// Runs syncs for one replica.
pub struct Syncer {
    store: Store,
    /// Publishes the sync's company events (kept in the outbox while the bus is down).
    events: Events,
    upstream: Arc<Upstream>,
    /// This replica's name on the lease.
    holder: String,
}

impl Syncer {
    /// A syncer over `store`, publishing events on `bus` (the outbox declared by
    /// [`crate::events::prepare`]).
    pub fn new(store: Store, bus: Bus, upstream: Arc<Upstream>) -> Self {
        Self {
            events: crate::events::events(bus, store.clone()),
            store,
            upstream,
            holder: ids::new_id(),
        }
    }

    /// Declares the state collection.
    pub async fn prepare(store: &Store) -> Result<(), StoreError> {
        store.ensure_indexes(SYNC_STATE, STATE_INDEXES).await
    }

    /// Whether ConnectWise settings are present.
    pub fn enabled(&self) -> bool {
        self.upstream.enabled()
    }

    /// The way to ConnectWise this syncer uses.
    pub fn upstream(&self) -> Arc<Upstream> {
        self.upstream.clone()
    }

    /// The status every replica sees.
    pub async fn status(&self) -> Result<SyncStatus, StoreError> {
        let status = self.store.get(SYNC_STATE, STATUS_ID).await?;
        let last = status
            .as_ref()
            .and_then(|s| s.get("last"))
            .and_then(|l| serde_json::from_value(l.clone()).ok());
        let last_success_at = status
            .as_ref()
            .and_then(|s| s.get("lastSuccessAt"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        if let Some(at) = last_success_at.as_deref().and_then(clock::parse_iso) {
            ttscm_runtime::metrics::company_sync_succeeded_at(
                u64::try_from(at.unix_timestamp()).unwrap_or(0),
            );
        }
        Ok(SyncStatus {
            enabled: self.enabled(),
            last,
            last_success_at,
        })
    }

    /// Runs one sync under the lease and records its report. A ConnectWise failure is in the
    /// report's `error`; not running at all (off, busy, store down) is an error.
    pub async fn run(&self, full: bool) -> Result<SyncReport, SyncError> {
        if !self.enabled() {
            return Err(SyncError::Off);
        }
        if !self.acquire().await? {
            // Another replica syncs: the last success it recorded is this replica's metric too.
            let _ = self.status().await;
            return Err(SyncError::Busy);
        }
        let result = self.run_leased(full).await;
        if let Err(error) = self.release().await {
            tracing::warn!(%error, "could not release the sync lease; it expires on its own");
        }
        result
    }

    async fn run_leased(&self, full: bool) -> Result<SyncReport, SyncError> {
        let status = self.store.get(SYNC_STATE, STATUS_ID).await?;
        let watermark = status
            .as_ref()
            .and_then(|s| s.get("watermark"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let full = full || watermark.is_none();
        let started = std::time::Instant::now();
        let mut report = SyncReport {
            kind: if full { "full" } else { "incremental" }.into(),
            started_at: clock::now_iso(),
            ..SyncReport::default()
        };
        let mut events = Vec::new();
        let outcome = self
            .sync(full, watermark.as_deref(), &mut report, &mut events)
            .await;
        report.finished_at = clock::now_iso();
        // Each company changed is announced (durably, see `events`) before anything else can
        // fail, then the report once it is saved: both before the sync reports done.
        self.events.publish_all(company_events(events)).await;
        let mut update = Update::default();
        match outcome {
            Ok(new_watermark) => {
                ttscm_runtime::metrics::company_sync(
                    sync_kind(full),
                    started.elapsed(),
                    Some(clock::unix_now()),
                );
                update = update.set("lastSuccessAt", report.finished_at.clone());
                if let Some(mark) = new_watermark.or(watermark) {
                    update = update.set("watermark", mark);
                }
                tracing::info!(
                    kind = report.kind,
                    fetched = report.fetched,
                    created = report.created,
                    updated = report.updated,
                    deactivated = report.deactivated,
                    "companies synced from ConnectWise"
                );
            }
            Err(SyncError::Store(error)) => {
                ttscm_runtime::metrics::company_sync(sync_kind(full), started.elapsed(), None);
                return Err(SyncError::Store(error));
            }
            Err(SyncError::ConnectWise(error @ ConnectWiseError::Unauthorized { .. })) => {
                ttscm_runtime::metrics::company_sync(sync_kind(full), started.elapsed(), None);
                tracing::error!(%error, "company sync stopped: check the connectwise keys, client id and the API member's security role");
                report.error = Some(error.to_string());
            }
            Err(error) => {
                ttscm_runtime::metrics::company_sync(sync_kind(full), started.elapsed(), None);
                tracing::warn!(%error, "company sync failed");
                report.error = Some(error.to_string());
            }
        }
        update = update.set("last", serde_json::to_value(&report).expect("reports serialize"));
        self.save_status(&update).await?;
        let synced = (
            "synced",
            report.kind.clone(),
            serde_json::to_value(&report).expect("reports serialize"),
        );
        self.events.publish_all(company_events(vec![synced])).await;
        Ok(report)
    }

    /// Fetches and applies; answers the new watermark (the newest `lastUpdated` seen).
    async fn sync(
        &self,
        full: bool,
        watermark: Option<&str>,
        report: &mut SyncReport,
        events: &mut Vec<Event>,
    ) -> Result<Option<String>, SyncError> {
        let client = self.upstream.client().await?;
        let conditions = match (full, watermark) {
            (false, Some(mark)) => format!("lastUpdated > [{mark}]"),
            _ => "deletedFlag=false".to_owned(),
        };
        let records = client.companies(Some(&conditions)).await?;
        report.fetched = records.len() as u64;
        // Only well-formed times become the watermark: it goes back into a condition.
        let newest = records
            .iter()
            .filter_map(|r| r.info.as_ref()?.last_updated.clone())
            .filter(|t| clock::parse_iso(t).is_some() && t.ends_with('Z'))
            .max();

        let mut existing: HashMap<i64, CompanyDoc> = HashMap::new();
        let synced = FindOptions::new(Filter::eq("source", "connectwise"));
        for document in self.store.find(COMPANIES, &synced).await? {
            let doc = CompanyDoc::from_document(document)?;
            if let Some(cw_id) = doc.cw_company_id {
                existing.insert(cw_id, doc);
            }
        }
        let now = clock::now_iso();
        let mut seen = HashSet::new();
        let mut new_docs = Vec::new();
        for record in &records {
            let Some(cw_id) = record.id else { continue };
            if !seen.insert(cw_id) {
                continue;
            }
            match existing.get(&cw_id) {
                None => new_docs.push(new_synced(cw_id, record, &now)),
                Some(doc) => self.apply(doc, record, report, events).await?,
            }
        }
        self.insert_new(new_docs, report, events).await?;
        if full {
            for doc in existing.values() {
                let Some(cw_id) = doc.cw_company_id else { continue };
                if doc.active && !seen.contains(&cw_id) {
                    self.deactivate(doc, report, events).await?;
                }
            }
        }
        Ok(newest)
    }

    /// Brings `doc` in line with `record`.
    async fn apply(
        &self,
        doc: &CompanyDoc,
        record: &CwCompany,
        report: &mut SyncReport,
        events: &mut Vec<Event>,
    ) -> Result<(), StoreError> {
        let Some(cw_id) = record.id else { return Ok(()) };
        let name = name_of(cw_id, record);
        let active = record.deleted_flag != Some(true);
        let identifier = record.identifier.clone().filter(|i| !i.is_empty());
        if doc.name == name && doc.active == active && doc.cw_identifier == identifier {
            return Ok(());
        }
        if !active && doc.name == name && doc.cw_identifier == identifier {
            return self.deactivate(doc, report, events).await;
        }
        let mut update = Update::default()
            .set("name", name.clone())
            .set("nameKey", name.to_lowercase())
            .set("active", active)
            .set("updatedAt", clock::now_iso());
        update = match &identifier {
            Some(identifier) => update.set("cwIdentifier", identifier.clone()),
            None => update.unset("cwIdentifier"),
        };
        self.store
            .update_one(COMPANIES, &Filter::id(&doc.id), &update)
            .await?;
        if doc.active && !active {
            report.deactivated += 1;
            events.push((
                "deactivated",
                doc.id.clone(),
                json!({"id": doc.id, "name": name, "cwCompanyId": cw_id, "source": "connectwise"}),
            ));
        } else {
            report.updated += 1;
            events.push((
                "updated",
                doc.id.clone(),
                json!({"id": doc.id, "name": name, "cwCompanyId": cw_id, "source": "connectwise"}),
            ));
        }
        Ok(())
    }

    async fn deactivate(
        &self,
        doc: &CompanyDoc,
        report: &mut SyncReport,
        events: &mut Vec<Event>,
    ) -> Result<(), StoreError> {
        let update = Update::default()
            .set("active", false)
            .set("updatedAt", clock::now_iso());
        if self
            .store
            .update_one(COMPANIES, &Filter::id(&doc.id), &update)
            .await?
        {
            report.deactivated += 1;
            events.push((
                "deactivated",
                doc.id.clone(),
                json!({"id": doc.id, "name": doc.name, "cwCompanyId": doc.cw_company_id, "source": "connectwise"}),
            ));
        }
        Ok(())
    }

    /// Inserts new companies; one that another replica inserted meanwhile (a unique `cwKey`
    /// conflict) is updated instead.
    async fn insert_new(
        &self,
        docs: Vec<CompanyDoc>,
        report: &mut SyncReport,
        events: &mut Vec<Event>,
    ) -> Result<(), StoreError> {
        let mut pending = docs;
        if matches!(self.store, Store::Sqlite(_)) {
            // One transaction per chunk; a conflict rolls the chunk back and it goes one by one.
            let mut rest = Vec::new();
            for chunk in pending.chunks(500) {
                let documents: Vec<Document> = chunk.iter().map(CompanyDoc::to_document).collect();
                match self.store.insert_many(COMPANIES, documents).await {
                    Ok(()) => {
                        for doc in chunk {
                            report.created += 1;
                            events.push(created_event(doc));
                        }
                    }
                    Err(StoreError::Conflict) => rest.extend(chunk.iter().cloned()),
                    Err(error) => return Err(error),
                }
            }
            pending = rest;
        }
        for doc in pending {
            match self.store.insert(COMPANIES, doc.to_document()).await {
                Ok(()) => {
                    report.created += 1;
                    events.push(created_event(&doc));
                }
                Err(StoreError::Conflict) => {
                    let Some(cw_id) = doc.cw_company_id else { continue };
                    let theirs = self
                        .store
                        .find_one(COMPANIES, Filter::eq(crate::store::CW_KEY, cw_key(cw_id)))
                        .await?;
                    if let Some(theirs) = theirs {
                        let theirs = CompanyDoc::from_document(theirs)?;
                        let record = CwCompany {
                            id: Some(cw_id),
                            name: Some(doc.name.clone()),
                            identifier: doc.cw_identifier.clone(),
                            deleted_flag: Some(!doc.active),
                            ..CwCompany::default()
                        };
                        self.apply(&theirs, &record, report, events).await?;
                    }
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    async fn save_status(&self, update: &Update) -> Result<(), StoreError> {
        if self
            .store
            .update_one(SYNC_STATE, &Filter::id(STATUS_ID), update)
            .await?
        {
            return Ok(());
        }
        let mut document = Document::new();
        document.insert("id".into(), json!(STATUS_ID));
        for (field, value) in &update.set {
            document.insert(field.clone(), value.clone());
        }
        match self.store.insert(SYNC_STATE, document).await {
            Err(StoreError::Conflict) => self
                .store
                .update_one(SYNC_STATE, &Filter::id(STATUS_ID), update)
                .await
                .map(|_| ()),
            other => other,
        }
    }

    /// Takes the lease if it is free, expired, or already ours.
    async fn acquire(&self) -> Result<bool, StoreError> {
        let now = clock::unix_now_millis();
        let until = now + LEASE_TTL.as_millis() as i64;
        let filter = Filter::And(vec![
            Filter::id(LEASE_ID),
            Filter::Or(vec![
                Filter::Lt("until".into(), Scalar::Int(now)),
                Filter::eq("holder", self.holder.as_str()),
            ]),
        ]);
        let update = Update::default()
            .set("holder", self.holder.clone())
            .set("until", until);
        if self.store.update_one(SYNC_STATE, &filter, &update).await? {
            return Ok(true);
        }
        let mut lease = Document::new();
        lease.insert("id".into(), json!(LEASE_ID));
        lease.insert("holder".into(), json!(self.holder));
        lease.insert("until".into(), json!(until));
        match self.store.insert(SYNC_STATE, lease).await {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(error) => Err(error),
        }
    }

    async fn release(&self) -> Result<(), StoreError> {
        let filter = Filter::And(vec![
            Filter::id(LEASE_ID),
            Filter::eq("holder", self.holder.as_str()),
        ]);
        self.store
            .update_one(SYNC_STATE, &filter, &Update::default().set("until", 0))
            .await
            .map(|_| ())
    }
}

/// A sync's kind as its metric label.
fn sync_kind(full: bool) -> &'static str {
    if full { "full" } else { "incremental" }
}

fn name_of(cw_id: i64, record: &CwCompany) -> String {
    let name = record
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .or(record
            .identifier
            .as_deref()
            .map(str::trim)
            .filter(|i| !i.is_empty()));
    match name {
        Some(name) => name.chars().take(crate::service::MAX_NAME_CHARS).collect(),
        None => format!("ConnectWise company {cw_id}"),
    }
}

fn new_synced(cw_id: i64, record: &CwCompany, now: &str) -> CompanyDoc {
    let name = name_of(cw_id, record);
    CompanyDoc {
        id: ids::new_id(),
        name_key: name.to_lowercase(),
        name,
        cw_key: cw_key(cw_id),
        cw_company_id: Some(cw_id),
        cw_identifier: record.identifier.clone().filter(|i| !i.is_empty()),
        active: record.deleted_flag != Some(true),
        source: CompanySource::Connectwise,
        created_at: now.to_owned(),
        updated_at: now.to_owned(),
    }
}

fn created_event(doc: &CompanyDoc) -> Event {
    (
        "created",
        doc.id.clone(),
        json!({"id": doc.id, "name": doc.name, "cwCompanyId": doc.cw_company_id, "source": "connectwise"}),
    )
}

/// Run a sync (one at a time per replica).
#[derive(actix::Message)]
#[rtype(result = "Result<SyncReport, WireError>")]
pub struct RunSync {
    /// Full rather than incremental.
    pub full: bool,
}

/// Schedules syncs and runs them one at a time.
pub struct SyncActor {
    syncer: Arc<Syncer>,
    interval: Duration,
    last_full: Option<Instant>,
}

impl SyncActor {
    /// An actor running `syncer` every `interval` (when ConnectWise is configured).
    pub fn new(syncer: Arc<Syncer>, interval: Duration) -> Self {
        Self {
            syncer,
            interval,
            last_full: None,
        }
    }
}

impl Actor for SyncActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if !self.syncer.enabled() {
            tracing::info!("ConnectWise sync is off: no connectwise settings; serving stored companies");
            return;
        }
        ctx.notify(RunSync { full: true });
        ctx.run_interval(self.interval, |actor, ctx| {
            let full = actor.last_full.is_none_or(|at| at.elapsed() >= FULL_SYNC_EVERY);
            ctx.notify(RunSync { full });
        });
    }
}

impl Handler<RunSync> for SyncActor {
    type Result = AtomicResponse<Self, Result<SyncReport, WireError>>;

    fn handle(&mut self, message: RunSync, _: &mut Self::Context) -> Self::Result {
        let syncer = self.syncer.clone();
        let full = message.full;
        AtomicResponse::new(Box::pin(
            async move { syncer.run(full).await }.into_actor(self).map(
                move |result, actor, _| match result {
                    Ok(report) => {
                        if report.kind == "full" && report.error.is_none() {
                            actor.last_full = Some(Instant::now());
                        }
                        Ok(report)
                    }
                    Err(error) => {
                        if !matches!(error, SyncError::Busy) {
                            tracing::warn!(%error, "company sync did not run");
                        }
                        Err(error.to_wire())
                    }
                },
            ),
        ))
    }
}
