//! The company operations, each a [`ServiceOp`] on [`Service`]: listing with search and
//! pagination, lookups, and the manual companies API (create, rename, delete). Synced companies are read-only here: ConnectWise owns
//! them.

use std::sync::Arc;

use actix::Addr;
use serde_json::{Value, json};
use ttscm_contract::company::{
    Company, CompanyPage, CompanySource, CompanySummary, CreateCompany, DeleteCompany, GetCompany,
    GetCompanyConfigurations, GetCompanySummaries, GetCompanySyncStatus, ListCompanies, RunCompanySync,
    SyncReport, SyncStatus, UpdateCompany,
};
use ttscm_contract::{ErrorCode, FieldError, WireError};
use ttscm_runtime::service::{CallContext, ServiceOp};
use ttscm_runtime::store::FindOptions;
use ttscm_runtime::{Filter, Store, Update, clock, ids};

use crate::events::AGGREGATE;
use crate::listing::Listing;
use crate::store::{COMPANIES, CompanyDoc, manual_key};
use crate::sync::{RunSync, SyncActor, Syncer, Upstream, upstream};

/// Longest company name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest search text, in characters.
const MAX_SEARCH_CHARS: usize = 200;
/// Most ids one summaries call may ask for.
const MAX_SUMMARY_IDS: usize = 1000;

/// The company-sync service's dependencies.
pub struct Service {
    /// The `companies` collection's store.
    pub store: Store,
    /// Publishes company events (`events.rs`), durably.
    pub events: crate::events::Events,
    /// ConnectWise (configurations are fetched live).
    pub upstream: Arc<Upstream>,
    /// Reads the sync status.
    pub syncer: Arc<Syncer>,
    /// Runs syncs one at a time.
    pub sync: Addr<SyncActor>,
    /// The in-memory copy lists and searches run on.
    pub listing: Listing,
    /// Asks the credential service whether a company still has credentials.
    pub client: ttscm_runtime::service::BusClient,
    /// Checks ConnectWise tickets for ticket-bound reveals.
    pub tickets: crate::tickets::Tickets,
    /// The queue of notes to post on tickets.
    pub notes: Arc<crate::notes::NoteQueue>,
}

pub use ttscm_runtime::service::store_failed;

pub(crate) fn not_found() -> WireError {
    WireError::not_found("Company")
}

fn synced_is_read_only() -> WireError {
    WireError::new(
        ErrorCode::Conflict,
        "This company is synced from ConnectWise; change it there",
    )
}

/// A checked company name: trimmed, 1 to [`MAX_NAME_CHARS`] characters.
pub fn parse_name(raw: &str) -> Result<String, WireError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(WireError::validation(vec![FieldError::new(
            vec![json!("name")],
            format!("a company name is 1 to {MAX_NAME_CHARS} characters"),
        )]));
    }
    Ok(name.to_owned())
}

impl Service {
    /// The stored company `id`.
    pub(crate) async fn doc(&self, id: &str) -> Result<Option<CompanyDoc>, WireError> {
        match self.store.get(COMPANIES, id).await.map_err(store_failed)? {
            Some(document) => Ok(Some(CompanyDoc::from_document(document).map_err(store_failed)?)),
            None => Ok(None),
        }
    }
}

/// A page of companies, ordered by name (case-insensitively), then id; `search` matches
/// the name or the ConnectWise identifier, ignoring case, literally.
impl ServiceOp<Service> for ListCompanies {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<CompanyPage, WireError> {
        let op = self;
        if op.page == 0 || op.rpp == 0 {
            return Err(WireError::new(ErrorCode::Validation, "page and rpp start at 1"));
        }
        let search = match op.search.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(search) if search.chars().count() > MAX_SEARCH_CHARS => {
                return Err(WireError::validation(vec![FieldError::new(
                    vec![json!("search")],
                    format!("search is at most {MAX_SEARCH_CHARS} characters"),
                )]));
            }
            other => other.map(str::to_lowercase),
        };
        let snapshot = service
            .listing
            .current(&service.store)
            .await
            .map_err(store_failed)?;
        let skip = usize::try_from((op.page - 1).saturating_mul(op.rpp)).unwrap_or(usize::MAX);
        let rpp = usize::try_from(op.rpp).unwrap_or(usize::MAX);
        let (total, items) = match search {
            None => (
                snapshot.companies.len(),
                snapshot.companies.iter().skip(skip).take(rpp).cloned().collect(),
            ),
            Some(needle) => {
                let found = snapshot.matching(&needle);
                let items = found
                    .iter()
                    .skip(skip)
                    .take(rpp)
                    .map(|&i| snapshot.companies[i].clone())
                    .collect();
                (found.len(), items)
            }
        };
        Ok(CompanyPage {
            items,
            total: total as u64,
        })
    }
}

/// One company by id.
impl ServiceOp<Service> for GetCompany {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<Company, WireError> {
        let id = self.id.as_str();
        service.doc(id).await?.map(|c| c.to_wire()).ok_or_else(not_found)
    }
}

/// Creates a manual company.
impl ServiceOp<Service> for CreateCompany {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<Company, WireError> {
        let store = service.store.clone();
        ttscm_runtime::idempotency::once_op(&store, ctx, "company.create", self, |op, ctx| {
            create_company(op, service, ctx)
        })
        .await
    }
}

/// The create itself (run once per `Idempotency-Key`).
async fn create_company(
    op: CreateCompany,
    service: Arc<Service>,
    ctx: CallContext,
) -> Result<Company, WireError> {
    let input = op.input;
    let _invalidate = Invalidate(&service.listing);
    let name = parse_name(&input.name)?;
    let doc = new_manual(name);
    service
        .store
        .insert(COMPANIES, doc.to_document())
        .await
        .map_err(store_failed)?;
    service
        .events
        .publish(
            &ctx,
            AGGREGATE,
            "created",
            &doc.id,
            || json!({"id": doc.id, "name": doc.name, "source": "manual"}),
        )
        .await;
    Ok(doc.to_wire())
}

/// Renames a manual company.
impl ServiceOp<Service> for UpdateCompany {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<Company, WireError> {
        let id = self.id.as_str();
        let patch = self.patch;
        let _invalidate = Invalidate(&service.listing);
        let name = parse_name(&patch.name)?;
        let before = service.doc(id).await?;
        let update = Update::default()
            .set("name", name.clone())
            .set("nameKey", name.to_lowercase())
            .set("updatedAt", clock::now_iso());
        let changed = service
            .store
            .update_one(COMPANIES, &manual_only(id), &update)
            .await
            .map_err(store_failed)?;
        let doc = service.doc(id).await?.ok_or_else(not_found)?;
        if !changed {
            return Err(synced_is_read_only());
        }
        let previous = before.map_or_else(|| doc.name.clone(), |before| before.name);
        service
            .events
            .publish(&ctx, AGGREGATE, "updated", id, || {
                let changed: &[&str] = if previous == doc.name { &[] } else { &["name"] };
                json!({"id": doc.id, "name": doc.name, "previousName": previous, "changed": changed, "source": "manual"})
            })
            .await;
        Ok(doc.to_wire())
    }
}

/// Deletes a manual company that has no credentials (409 when it has: they would point at
/// nothing). A credential created between the check and the delete is possible and rare;
/// it keeps pointing at the company id and shows an empty company name.
impl ServiceOp<Service> for DeleteCompany {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<(), WireError> {
        let id = self.id.as_str();
        let ctx = &ctx;
        let _invalidate = Invalidate(&service.listing);
        let existing = service.doc(id).await?;
        if existing.is_some() {
            let count = service
                .client
                .call(
                    ctx,
                    &ttscm_contract::credential::CountCompanyCredentials {
                        company_id: id.to_owned(),
                    },
                )
                .await?;
            if count > 0 {
                return Err(WireError::new(
                    ErrorCode::Conflict,
                    format!("The company still has {count} credential(s); delete or move them first"),
                ));
            }
        }
        let deleted = service
            .store
            .delete_many(COMPANIES, &manual_only(id))
            .await
            .map_err(store_failed)?;
        if deleted > 0 {
            let name = existing.map(|doc| doc.name).unwrap_or_default();
            service
                .events
                .publish(
                    ctx,
                    AGGREGATE,
                    "deleted",
                    id,
                    || json!({"id": id, "name": name, "source": "manual"}),
                )
                .await;
            return Ok(());
        }
        match service.doc(id).await? {
            Some(_) => Err(synced_is_read_only()),
            None => Err(not_found()),
        }
    }
}

/// The ConnectWise configurations of company `id`: none when it has no ConnectWise id.
impl ServiceOp<Service> for GetCompanyConfigurations {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<Vec<Value>, WireError> {
        let id = self.id.as_str();
        let doc = service.doc(id).await?.ok_or_else(not_found)?;
        let Some(cw_company_id) = doc.cw_company_id else {
            return Ok(Vec::new());
        };
        service
            .upstream
            .configurations(cw_company_id)
            .await
            .map_err(|error| match error {
                crate::sync::SyncError::ConnectWise(error) => upstream(&error),
                crate::sync::SyncError::Off => WireError::new(
                    ErrorCode::Upstream,
                    "ConnectWise is not configured on this server",
                ),
                other => other.to_wire(),
            })
    }
}

/// Runs a sync now (after any running in this replica).
impl ServiceOp<Service> for RunCompanySync {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<SyncReport, WireError> {
        let full = self.full;
        let _invalidate = Invalidate(&service.listing);
        service
            .sync
            .send(RunSync { full })
            .await
            .map_err(|_| WireError::new(ErrorCode::Unavailable, "The sync scheduler is not running"))?
    }
}

/// The sync status.
impl ServiceOp<Service> for GetCompanySyncStatus {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<SyncStatus, WireError> {
        service.syncer.status().await.map_err(store_failed)
    }
}

/// Summaries of the companies with `ids`; unknown ids are left out.
impl ServiceOp<Service> for GetCompanySummaries {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<Vec<CompanySummary>, WireError> {
        let ids = self.ids;
        if ids.len() > MAX_SUMMARY_IDS {
            return Err(WireError::new(
                ErrorCode::Validation,
                format!("at most {MAX_SUMMARY_IDS} ids"),
            ));
        }
        let documents = service
            .store
            .find(COMPANIES, &FindOptions::new(Filter::is_in("id", ids)))
            .await
            .map_err(|error| {
                tracing::warn!(%error, "company lookup failed");
                WireError::new(ErrorCode::Unavailable, "The store is unavailable")
            })?;
        Ok(documents
            .into_iter()
            .map(|d| CompanySummary {
                id: d
                    .get("id")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned(),
                name: d
                    .get("name")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned(),
            })
            .collect())
    }
}

/// The company `id`, if it is a manual one (a synced company never matches).
fn manual_only(id: &str) -> Filter {
    Filter::And(vec![
        Filter::id(id),
        Filter::Ne("source".into(), "connectwise".into()),
    ])
}

/// A new manual company named `name` (already checked).
pub fn new_manual(name: String) -> CompanyDoc {
    let id = ids::new_id();
    let now = clock::now_iso();
    CompanyDoc {
        cw_key: manual_key(&id),
        id,
        name_key: name.to_lowercase(),
        name,
        cw_company_id: None,
        cw_identifier: None,
        active: true,
        source: CompanySource::Manual,
        created_at: now.clone(),
        updated_at: now,
    }
}

/// Invalidates the listing when dropped: at the end of a write, whatever its outcome.
struct Invalidate<'a>(&'a Listing);

impl Drop for Invalidate<'_> {
    fn drop(&mut self) {
        self.0.invalidate();
    }
}
