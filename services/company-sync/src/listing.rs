//! The listing snapshot: an in-memory sorted copy of `companies` that lists and searches run
//! on, reloaded when the collection changes.

use std::sync::Arc;
use std::time::Duration;

// tokio's clock: tests can pause it.
use tokio::time::Instant;

use serde_json::Value;
use ttscm_contract::company::Company;
use ttscm_runtime::store::{FindOptions, Order};
use ttscm_runtime::{Filter, Store, StoreError};

use crate::store::{COMPANIES, CompanyDoc};

/// How long a snapshot is trusted even when the collection's version looks unchanged: the
/// bound on staleness when replicas' clocks disagree (the version compares `updatedAt`).
const SNAPSHOT_TTL: Duration = Duration::from_secs(5);

/// A sorted copy of `companies` with one search text: every company's lowercase name and
/// identifier, each entry ended by a NUL, so one SIMD substring search (`memchr::memmem`)
/// runs over all of them. Searching 10,000 companies this way takes tens of microseconds; in
/// SQLite it scans and parses every document twice (count, page), about 13 ms.
pub(crate) struct Snapshot {
    version: (u64, Option<String>),
    taken: Instant,
    /// The companies, ordered by `nameKey`, then id.
    pub(crate) companies: Vec<Company>,
    /// `name\0identifier\0` of each company, lowercase, in the same order.
    haystack: Vec<u8>,
    /// Where each company's text starts in `haystack`.
    starts: Vec<usize>,
}

impl Snapshot {
    /// Indexes of the companies whose name or identifier contains `needle` (lowercase), in order.
    pub(crate) fn matching(&self, needle: &str) -> Vec<usize> {
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
    snapshot: parking_lot::Mutex<Option<Arc<Snapshot>>>,
    /// Held by the one caller checking the version (and reloading).
    refresh: tokio::sync::Mutex<()>,
    checked: parking_lot::Mutex<Checked>,
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

    fn checked(&self) -> parking_lot::MutexGuard<'_, Checked> {
        self.checked.lock()
    }

    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.lock().clone()
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
    pub(crate) async fn current(&self, store: &Store) -> Result<Arc<Snapshot>, StoreError> {
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
        *self.snapshot.lock() = Some(fresh.clone());
        mark_checked();
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::new_manual;

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
