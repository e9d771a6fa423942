//! What each company operation does: listing with search and pagination, lookups, and the manual
//! companies API (create, rename, delete). Synced companies are read-only here: ConnectWise owns
//! them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use serde_json::{Value, json};
use ttscm_contract::company::{
    Company, CompanyInput, CompanyPage, CompanySource, CompanySummary, ListCompanies,
};
use ttscm_contract::{ErrorCode, FieldError, WireError};
use ttscm_runtime::store::{FindOptions, Order};
use ttscm_runtime::{Filter, Store, StoreError, Update, clock, ids};

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
}

/// How long a snapshot is trusted even when the collection's version looks unchanged: the
/// bound on staleness when replicas' clocks disagree (the version compares `updatedAt`).
const SNAPSHOT_TTL: Duration = Duration::from_secs(5);

/// A sorted copy of `companies` with one search text: every company's lowercase name and
/// identifier, each entry ended by a NUL, so one SIMD substring search (`memchr::memmem`)
/// runs over all of them. Searching 10,000 companies this way takes tens of microseconds; in
/// SQLite it scans and parses every document twice (count, page), about 13 ms.
struct Snapshot {
    version: (u64, Option<String>),
    taken: Instant,
    /// The companies, ordered by `nameKey`, then id.
    companies: Vec<Company>,
    /// `name\0identifier\0` of each company, lowercase, in the same order.
    haystack: Vec<u8>,
    /// Where each company's text starts in `haystack`.
    starts: Vec<usize>,
}

impl Snapshot {
    /// Indexes of the companies whose name or identifier contains `needle` (lowercase), in order.
    fn matching(&self, needle: &str) -> Vec<usize> {
        if needle.contains('\0') {
            return Vec::new();
        }
        let mut found: Vec<usize> = Vec::new();
        // Matches come in order; a cursor walks `starts` along with them.
        let mut index = 0;
        for at in memchr::memmem::find_iter(&self.haystack, needle.as_bytes()) {
            while self.starts.get(index + 1).is_some_and(|&next| next <= at) {
                index += 1;
            }
            if found.last() != Some(&index) {
                found.push(index);
            }
        }
        found
    }
}

/// Lists and searches companies from a snapshot, reloaded when the collection's version
/// (count, newest `updatedAt`) changes or the snapshot is older than [`SNAPSHOT_TTL`]. Every
/// write of this service sets `updatedAt` to the current time, so a change shows at once.
///
/// One caller at a time checks the version (a count and a sort over every company: tens of
/// milliseconds on FerretDB with 10,000 companies) and reloads. When the check is due only
/// because [`VERSION_CHECK_INTERVAL`] passed, the others meanwhile answer from the snapshot
/// they have (stale by at most the interval plus one check) instead of all asking the store at
/// once — measured before: every second, 32 concurrent lists each ran the check, and p99 went
/// to ~180 ms. After a write through this replica nobody answers from the old snapshot: they
/// wait for a check that started after the write.
#[derive(Default)]
pub struct Listing {
    /// The current snapshot; read without waiting for a check or reload in progress.
    snapshot: std::sync::Mutex<Option<Arc<Snapshot>>>,
    /// Held by the one caller checking the version (and reloading).
    refresh: tokio::sync::Mutex<()>,
    checked: std::sync::Mutex<Checked>,
    /// Version checks made (for tests and diagnostics).
    checks: std::sync::atomic::AtomicU64,
}

/// When the version was last found unchanged, and how many writes invalidated it.
#[derive(Default)]
struct Checked {
    /// Within [`VERSION_CHECK_INTERVAL`] of it the snapshot is used without asking the store;
    /// `None` after a write here: the next list must check.
    at: Option<Instant>,
    /// Bumped by every invalidation, so a check that began before a write cannot mark the
    /// snapshot fresh after it.
    generation: u64,
}

/// How long a version check is trusted; writes through this replica reset it at once, so this
/// bounds only how late another replica's writes show.
const VERSION_CHECK_INTERVAL: Duration = Duration::from_secs(1);

impl Listing {
    async fn version(store: &Store) -> Result<(u64, Option<String>), StoreError> {
        let count = store.count(COMPANIES, &Filter::All).await?;
        let newest = store
            .find(
                COMPANIES,
                &FindOptions::new(Filter::All)
                    .sort("updatedAt", Order::Desc)
                    .page(0, 1),
            )
            .await?
            .pop()
            .and_then(|d| d.get("updatedAt").and_then(Value::as_str).map(str::to_owned));
        Ok((count, newest))
    }

    fn checked(&self) -> std::sync::MutexGuard<'_, Checked> {
        self.checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Forgets that the version was checked: the next list asks the store (after a write here).
    pub fn invalidate(&self) {
        let mut checked = self.checked();
        checked.at = None;
        checked.generation += 1;
    }

    /// How many times the version was checked.
    pub fn version_checks(&self) -> u64 {
        self.checks.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the last check is recent, and whether a check is due only because it is not.
    fn freshness(&self) -> (bool, bool) {
        let checked = self.checked();
        match checked.at {
            Some(at) => (at.elapsed() < VERSION_CHECK_INTERVAL, true),
            None => (false, false),
        }
    }

    /// The current snapshot; one caller checks (and reloads) while the others wait for it, or,
    /// when only time made the check due, answer from the snapshot they have.
    async fn current(&self, store: &Store) -> Result<Arc<Snapshot>, StoreError> {
        let (fresh, merely_old) = self.freshness();
        let current = self.snapshot();
        if let (true, Some(current)) = (fresh, &current) {
            return Ok(current.clone());
        }
        let _refreshing = match (merely_old, current) {
            (true, Some(current)) => match self.refresh.try_lock() {
                Ok(guard) => guard,
                Err(_) => return Ok(current),
            },
            _ => self.refresh.lock().await,
        };
        // A check may have finished while this caller waited for the lock, or just before.
        if self.freshness().0
            && let Some(current) = self.snapshot()
        {
            return Ok(current);
        }
        let generation = self.checked().generation;
        self.checks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let version = Self::version(store).await?;
        let mark_checked = || {
            let mut checked = self.checked();
            if checked.generation == generation {
                checked.at = Some(Instant::now());
            }
        };
        if let Some(current) = self.snapshot()
            && current.version == version
            && current.taken.elapsed() < SNAPSHOT_TTL
        {
            mark_checked();
            return Ok(current);
        }
        let mut docs = store
            .find(COMPANIES, &FindOptions::new(Filter::All))
            .await?
            .into_iter()
            .map(CompanyDoc::from_document)
            .collect::<Result<Vec<_>, _>>()?;
        docs.sort_by(|a, b| (&a.name_key, &a.id).cmp(&(&b.name_key, &b.id)));
        let mut haystack = Vec::new();
        let mut starts = Vec::with_capacity(docs.len());
        for doc in &docs {
            starts.push(haystack.len());
            haystack.extend_from_slice(doc.name.to_lowercase().as_bytes());
            haystack.push(0);
            if let Some(identifier) = &doc.cw_identifier {
                haystack.extend_from_slice(identifier.to_lowercase().as_bytes());
            }
            haystack.push(0);
        }
        let fresh = Arc::new(Snapshot {
            version,
            taken: Instant::now(),
            companies: docs.iter().map(CompanyDoc::to_wire).collect(),
            haystack,
            starts,
        });
        *self
            .snapshot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(fresh.clone());
        mark_checked();
        Ok(fresh)
    }
}

pub use ttscm_runtime::service::store_failed;

fn not_found() -> WireError {
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
    /// A page of companies, ordered by name (case-insensitively), then id; `search` matches
    /// the name or the ConnectWise identifier, ignoring case, literally.
    pub async fn list(&self, op: ListCompanies) -> Result<CompanyPage, WireError> {
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
        let snapshot = self.listing.current(&self.store).await.map_err(store_failed)?;
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

    async fn doc(&self, id: &str) -> Result<Option<CompanyDoc>, WireError> {
        match self.store.get(COMPANIES, id).await.map_err(store_failed)? {
            Some(document) => Ok(Some(CompanyDoc::from_document(document).map_err(store_failed)?)),
            None => Ok(None),
        }
    }

    /// One company by id.
    pub async fn get(&self, id: &str) -> Result<Company, WireError> {
        self.doc(id).await?.map(|c| c.to_wire()).ok_or_else(not_found)
    }

    /// Creates a manual company.
    pub async fn create(&self, input: CompanyInput) -> Result<Company, WireError> {
        let _invalidate = Invalidate(&self.listing);
        let name = parse_name(&input.name)?;
        let doc = new_manual(name);
        self.store
            .insert(COMPANIES, doc.to_document())
            .await
            .map_err(store_failed)?;
        Ok(doc.to_wire())
    }

    /// Renames a manual company.
    pub async fn rename(&self, id: &str, patch: CompanyInput) -> Result<Company, WireError> {
        let _invalidate = Invalidate(&self.listing);
        let name = parse_name(&patch.name)?;
        let update = Update::default()
            .set("name", name.clone())
            .set("nameKey", name.to_lowercase())
            .set("updatedAt", clock::now_iso());
        let changed = self
            .store
            .update_one(COMPANIES, &manual_only(id), &update)
            .await
            .map_err(store_failed)?;
        let doc = self.doc(id).await?.ok_or_else(not_found)?;
        if !changed {
            return Err(synced_is_read_only());
        }
        Ok(doc.to_wire())
    }

    /// Deletes a manual company that has no credentials (409 when it has: they would point at
    /// nothing). A credential created between the check and the delete is possible and rare;
    /// it keeps pointing at the company id and shows an empty company name.
    pub async fn delete(&self, ctx: &ttscm_runtime::service::CallContext, id: &str) -> Result<(), WireError> {
        let _invalidate = Invalidate(&self.listing);
        if self.doc(id).await?.is_some() {
            let count = self
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
        let deleted = self
            .store
            .delete_many(COMPANIES, &manual_only(id))
            .await
            .map_err(store_failed)?;
        if deleted > 0 {
            return Ok(());
        }
        match self.doc(id).await? {
            Some(_) => Err(synced_is_read_only()),
            None => Err(not_found()),
        }
    }

    /// The ConnectWise configurations of company `id`: none when it has no ConnectWise id.
    pub async fn configurations(&self, id: &str) -> Result<Vec<Value>, WireError> {
        let doc = self.doc(id).await?.ok_or_else(not_found)?;
        let Some(cw_company_id) = doc.cw_company_id else {
            return Ok(Vec::new());
        };
        self.upstream
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

    /// Runs a sync now (after any running in this replica).
    pub async fn run_sync(&self, full: bool) -> Result<ttscm_contract::company::SyncReport, WireError> {
        let _invalidate = Invalidate(&self.listing);
        self.sync
            .send(RunSync { full })
            .await
            .map_err(|_| WireError::new(ErrorCode::Unavailable, "The sync scheduler is not running"))?
    }

    /// The sync status.
    pub async fn sync_status(&self) -> Result<ttscm_contract::company::SyncStatus, WireError> {
        self.syncer.status().await.map_err(store_failed)
    }

    /// Summaries of the companies with `ids`; unknown ids are left out.
    pub async fn summaries(&self, ids: Vec<String>) -> Result<Vec<CompanySummary>, WireError> {
        if ids.len() > MAX_SUMMARY_IDS {
            return Err(WireError::new(
                ErrorCode::Validation,
                format!("at most {MAX_SUMMARY_IDS} ids"),
            ));
        }
        let documents = self
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

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(companies: &[(&str, Option<&str>)]) -> Snapshot {
        let mut haystack = Vec::new();
        let mut starts = Vec::new();
        let mut wire = Vec::new();
        for (name, identifier) in companies {
            starts.push(haystack.len());
            haystack.extend_from_slice(name.to_lowercase().as_bytes());
            haystack.push(0);
            haystack.extend_from_slice(identifier.unwrap_or_default().to_lowercase().as_bytes());
            haystack.push(0);
            let mut doc = new_manual((*name).to_owned());
            doc.cw_identifier = identifier.map(str::to_owned);
            wire.push(doc.to_wire());
        }
        Snapshot {
            version: (0, None),
            taken: Instant::now(),
            companies: wire,
            haystack,
            starts,
        }
    }

    /// When the version check is due only because time passed, one caller checks while the
    /// others answer from the snapshot; after a write here, every caller sees the write.
    /// On FerretDB, where the check takes long enough for the callers to overlap.
    #[tokio::test]
    async fn concurrent_lists_check_the_version_once_and_never_miss_a_local_write() {
        ttscm_testkit::init_tracing();
        let fixture = ttscm_testkit::MongoFixture::start();
        let store = Store::Mongo(
            ttscm_runtime::store::mongo::MongoStore::connect(&fixture.uri, &fixture.database)
                .await
                .expect("connects"),
        );
        crate::store::prepare(&store).await.expect("prepared");
        let docs: Vec<ttscm_runtime::store::Document> = (0..2000)
            .map(|i| new_manual(format!("Company {i:04}")).to_document())
            .collect();
        store.insert_many(COMPANIES, docs).await.expect("seeded");
        let listing = Listing::default();
        assert_eq!(
            listing.current(&store).await.expect("listed").companies.len(),
            2000
        );
        assert_eq!(listing.version_checks(), 1);

        // Time made the check due: 32 lists at once, one check.
        listing.checked().at = Some(Instant::now() - VERSION_CHECK_INTERVAL);
        let lists = (0..32).map(|_| listing.current(&store));
        for listed in futures_util::future::join_all(lists).await {
            assert_eq!(listed.expect("listed").companies.len(), 2000);
        }
        assert_eq!(
            listing.version_checks(),
            2,
            "one caller checked; the rest used the snapshot"
        );

        // A write here: nobody answers from the old snapshot any more.
        store
            .insert(COMPANIES, new_manual("Company new".into()).to_document())
            .await
            .expect("written");
        listing.invalidate();
        let lists = (0..32).map(|_| listing.current(&store));
        for listed in futures_util::future::join_all(lists).await {
            assert_eq!(listed.expect("listed").companies.len(), 2001);
        }
    }

    #[test]
    fn a_search_matches_each_company_once_and_never_across_fields() {
        let snapshot = snapshot(&[("Abab", Some("AB")), ("Cd", None), ("xab", Some("cdab"))]);
        assert_eq!(snapshot.matching("ab"), [0, 2]);
        assert_eq!(
            snapshot.matching("bc"),
            Vec::<usize>::new(),
            "no match across fields"
        );
        assert_eq!(snapshot.matching("cd"), [1, 2]);
        assert_eq!(snapshot.matching("a\0b"), Vec::<usize>::new());
    }
}
