//! [`Cache`]: the one bounded, time-limited cache every TTSCM component uses (tokens at the edge,
//! users in identity, ConnectWise configurations, decoded principals, credentials).
//!
//! - **Time to live** on tokio's clock ([`tokio::time::Instant`]), so tests pause and advance
//!   time (`tokio::time::pause`/`advance`) instead of sleeping or polling. An entry is fresh while
//!   `now < inserted + ttl` (or the shorter time given to [`Cache::insert_for`]).
//! - **Bounded** by an entry count. When an insert finds the cache full, the expired entries are
//!   dropped first; if that leaves less than a quarter of the room (at least one slot) free,
//!   every entry is dropped. So the cache never holds more than its capacity, and the O(n) sweep
//!   runs at most once per `capacity / 4` inserts (a cache of live entries under key spraying —
//!   unknown tokens, say — is emptied rather than swept on every insert). Not LRU: keeping an
//!   order costs every lookup a write, and these caches live for seconds.
//! - **Cheap lookups**: a read lock (`parking_lot`, no poisoning) and a clone of the value, so
//!   values are meant to be `Arc`s or other handles; keys are looked up by a borrowed form
//!   (`&str` for a `String` or `Arc<str>` key).
//! - **Told about changes**: [`Cache::remove`] and [`Cache::clear`] move a generation counter; a
//!   value read from the source of truth while one of them ran is not cached
//!   ([`Cache::insert_unless_changed`], and [`Cache::get_or_try_insert_with`] does it itself),
//!   so a read that raced a write never outlives the write.
//! - **No stampede** on request: [`Cache::get_or_try_insert_with`] lets one caller per key fetch
//!   while the others wait for its answer.
//!
//! Why not `moka`: its clock (`quanta`) cannot be paused, so every expiry test would sleep
//! through short time-to-lives and poll with deadlines; and it is a sizeable dependency tree
//! (crossbeam, its own scheduler and timer wheel) to compile on the 2-core build machines, for
//! caches of seconds that hold at most tens of thousands of entries. The few dozen lines here
//! do what TTSCM needs.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::time::Instant;

/// The longest time to live: far beyond any cache's purpose, and far from the clock's range.
const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// A bounded map whose entries expire; see the [module documentation](self).
pub struct Cache<K, V> {
    /// The entries with the instant each stops being fresh.
    entries: RwLock<HashMap<K, (V, Instant)>>,
    /// How long an entry stays fresh.
    ttl: Duration,
    /// The most entries kept.
    capacity: usize,
    /// Moves on every [`Cache::remove`] and [`Cache::clear`]: a value read before a change must
    /// not be cached after it.
    generation: AtomicU64,
    /// Keys being fetched by [`Cache::get_or_try_insert_with`], each with the cell its waiters
    /// share.
    pending: Pending<K, V>,
}

/// The state of a [`Cache`] when a caller began reading from the source of truth; see
/// [`Cache::generation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(u64);

impl<K, V> std::fmt::Debug for Cache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the entries: they may be principals or credentials.
        f.debug_struct("Cache")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .field("len", &self.entries.read().len())
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq, V: Clone> Cache<K, V> {
    /// An empty cache keeping at most `capacity` entries, each fresh for `ttl` (at most a
    /// year). A capacity of zero caches nothing.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            ttl: ttl.min(MAX_TTL),
            capacity,
            generation: AtomicU64::new(0),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// How long an entry stays fresh.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The value of `key`, if it is cached and fresh.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = Instant::now();
        self.entries
            .read()
            .get(key)
            .filter(|(_, expires)| now < *expires)
            .map(|(value, _)| value.clone())
    }

    /// The fresh entry of `key`: the key as stored (e.g. to reuse a shared `Arc<str>`) and the
    /// value.
    pub fn get_key_value<Q>(&self, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q> + Clone,
        Q: Hash + Eq + ?Sized,
    {
        let now = Instant::now();
        self.entries
            .read()
            .get_key_value(key)
            .filter(|(_, (_, expires))| now < *expires)
            .map(|(key, (value, _))| (key.clone(), value.clone()))
    }

    /// Caches `value` for the cache's time to live.
    pub fn insert(&self, key: K, value: V) {
        self.insert_for(key, value, self.ttl);
    }

    /// Caches `value` for `ttl` or the cache's time to live, whichever is shorter (e.g. until
    /// the token it was resolved from expires).
    pub fn insert_for(&self, key: K, value: V, ttl: Duration) {
        let mut entries = self.entries.write();
        self.insert_locked(&mut entries, key, value, ttl);
    }

    /// Where a read from the source of truth stands: pass it to
    /// [`Cache::insert_unless_changed`] with what was read.
    pub fn generation(&self) -> Generation {
        Generation(self.generation.load(Ordering::Acquire))
    }

    /// Caches `value` unless [`Cache::remove`] or [`Cache::clear`] ran since `since` was taken
    /// (the value may predate that change). Answers whether it was cached.
    pub fn insert_unless_changed(&self, since: Generation, key: K, value: V) -> bool {
        self.insert_for_unless_changed(since, key, value, self.ttl)
    }

    /// [`Cache::insert_unless_changed`] for `ttl` or the cache's time to live, whichever is
    /// shorter.
    pub fn insert_for_unless_changed(&self, since: Generation, key: K, value: V, ttl: Duration) -> bool {
        let mut entries = self.entries.write();
        // Changes move the generation under the write lock, so this check and the insert are
        // one step for them.
        if self.generation() != since {
            return false;
        }
        self.insert_locked(&mut entries, key, value, ttl);
        true
    }

    /// Forgets `key` (after it changed), and keeps values read before now from being cached.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut entries = self.entries.write();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(key).map(|(value, _)| value)
    }

    /// Forgets everything, and keeps values read before now from being cached.
    pub fn clear(&self) {
        let mut entries = self.entries.write();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }

    /// Entries held, expired ones not yet dropped included.
    pub fn len(&self) -> usize {
        self.entries.read().len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert_locked(&self, entries: &mut HashMap<K, (V, Instant)>, key: K, value: V, ttl: Duration) {
        if self.capacity == 0 {
            return;
        }
        let now = Instant::now();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (_, expires)| now < *expires);
            // Less than a quarter of the room (at least one slot) free: start afresh.
            if entries.len() + (self.capacity / 4).max(1) > self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (value, now + ttl.min(self.ttl)));
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Cache<K, V> {
    /// The value of `key`: the cached one if fresh, else what `fetch` answers (then cached
    /// unless the key was removed or the cache cleared meanwhile). Concurrent misses for one key
    /// run one `fetch` at a time: the others wait and take its value. If it fails (or its caller
    /// goes away), the next waiter runs its own `fetch`; errors are not cached.
    pub async fn get_or_try_insert_with<F, Fut, E>(&self, key: K, fetch: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        if let Some(value) = self.get(&key) {
            return Ok(value);
        }
        let waiting = Waiting::join(&self.pending, key.clone());
        waiting
            .cell()
            .get_or_try_init(|| async {
                // The fetch that this cell waited for may have finished just before.
                if let Some(value) = self.get(&key) {
                    return Ok(value);
                }
                let since = self.generation();
                let value = fetch().await?;
                self.insert_unless_changed(since, key.clone(), value.clone());
                Ok(value)
            })
            .await
            .cloned()
    }
}

/// The cells of keys being fetched, each shared by the callers waiting for that key.
type Pending<K, V> = Mutex<HashMap<K, Arc<tokio::sync::OnceCell<V>>>>;

/// One caller's share in the fetch of a key; the last one to leave (answered, failed or
/// cancelled) removes the key's cell.
struct Waiting<'a, K: Hash + Eq, V> {
    pending: &'a Pending<K, V>,
    key: K,
    /// `None` only while dropping.
    cell: Option<Arc<tokio::sync::OnceCell<V>>>,
}

impl<'a, K: Hash + Eq, V> Waiting<'a, K, V> {
    /// Joins the fetch of `key` in progress, or begins one. A cell already answered belongs to
    /// callers still leaving (its value may predate a removal): a newcomer starts afresh.
    fn join(pending: &'a Pending<K, V>, key: K) -> Self
    where
        K: Clone,
    {
        let mut cells = pending.lock();
        let cell = cells.entry(key.clone()).or_default();
        if cell.initialized() {
            *cell = Arc::default();
        }
        let cell = Some(cell.clone());
        drop(cells);
        Self { pending, key, cell }
    }

    fn cell(&self) -> &tokio::sync::OnceCell<V> {
        self.cell.as_ref().expect("taken only when dropped")
    }
}

impl<K: Hash + Eq, V> Drop for Waiting<'_, K, V> {
    fn drop(&mut self) {
        let mut cells = self.pending.lock();
        let Some(cell) = self.cell.take() else { return };
        // Every clone of a cell is made and dropped under this lock, so the count is exact:
        // two is the map's and this caller's.
        if Arc::strong_count(&cell) == 2
            && cells
                .get(&self.key)
                .is_some_and(|shared| Arc::ptr_eq(shared, &cell))
        {
            cells.remove(&self.key);
        }
        drop(cell);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    const TTL: Duration = Duration::from_secs(2);

    #[tokio::test(start_paused = true)]
    async fn an_entry_is_fresh_until_its_time_to_live_has_passed() {
        let cache: Cache<String, Arc<str>> = Cache::new(TTL, 10);
        cache.insert("a".to_owned(), Arc::from("one"));
        assert_eq!(cache.get("a").as_deref(), Some("one"));
        tokio::time::advance(TTL - Duration::from_millis(1)).await;
        assert_eq!(cache.get("a").as_deref(), Some("one"));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(cache.get("a"), None);
        assert_eq!(cache.get_key_value("a"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_time_to_live_is_kept_and_a_longer_one_is_capped() {
        let cache: Cache<&str, u32> = Cache::new(TTL, 10);
        cache.insert_for("short", 1, Duration::from_millis(500));
        cache.insert_for("long", 2, Duration::from_secs(60));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(cache.get("short"), None);
        assert_eq!(cache.get("long"), Some(2));
        tokio::time::advance(TTL).await;
        assert_eq!(cache.get("long"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_cache_drops_expired_entries_first() {
        let cache: Cache<u32, u32> = Cache::new(TTL, 8);
        for key in 0..6 {
            cache.insert(key, key);
        }
        tokio::time::advance(TTL).await;
        cache.insert(6, 6);
        cache.insert(7, 7);
        assert_eq!(cache.len(), 8);
        cache.insert(8, 8);
        assert_eq!(
            cache.len(),
            3,
            "the six expired entries went, the live ones stayed"
        );
        assert_eq!(
            (cache.get(&6), cache.get(&7), cache.get(&8)),
            (Some(6), Some(7), Some(8))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cache_full_of_live_entries_is_emptied_and_never_exceeds_its_capacity() {
        let cache: Cache<u32, u32> = Cache::new(TTL, 8);
        for key in 0..1000 {
            cache.insert(key, key);
            assert!(cache.len() <= 8);
        }
        assert_eq!(cache.get(&999), Some(999));
        // Overwriting a key of a full cache keeps the others.
        let full = cache.len();
        cache.insert(999, 0);
        assert_eq!(cache.len(), full);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unbounded_time_to_live_is_capped_rather_than_overflowing_the_clock() {
        let cache: Cache<u32, u32> = Cache::new(Duration::MAX, 10);
        cache.insert_for(1, 1, Duration::MAX);
        assert_eq!(cache.get(&1), Some(1));
        assert_eq!(cache.ttl(), MAX_TTL);
    }

    #[tokio::test(start_paused = true)]
    async fn small_caches_keep_their_bound_too() {
        for capacity in 1..=5 {
            let cache: Cache<u32, u32> = Cache::new(TTL, capacity);
            for key in 0..20 {
                cache.insert(key, key);
                assert!(
                    cache.len() <= capacity,
                    "{} entries in a cache of {capacity}",
                    cache.len()
                );
                assert_eq!(cache.get(&key), Some(key), "the newest entry is kept");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_cache_of_capacity_zero_holds_nothing() {
        let cache: Cache<u32, u32> = Cache::new(TTL, 0);
        cache.insert(1, 1);
        assert_eq!(cache.get(&1), None);
        assert!(cache.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_looked_up_by_their_borrowed_form() {
        let cache: Cache<Arc<str>, u32> = Cache::new(TTL, 10);
        let key: Arc<str> = Arc::from("principal");
        cache.insert(key.clone(), 7);
        let (stored, value) = cache.get_key_value("principal").expect("cached");
        assert!(Arc::ptr_eq(&stored, &key));
        assert_eq!(value, 7);
        assert_eq!(cache.remove("principal"), Some(7));
        assert_eq!(cache.get("principal"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_value_read_before_a_change_is_not_cached() {
        let cache: Cache<&str, u32> = Cache::new(TTL, 10);
        let since = cache.generation();
        cache.remove("other");
        assert!(!cache.insert_unless_changed(since, "a", 1));
        assert_eq!(cache.get("a"), None);
        let since = cache.generation();
        assert!(cache.insert_unless_changed(since, "a", 1));
        cache.clear();
        assert_eq!(cache.get("a"), None);
        assert!(!cache.insert_unless_changed(since, "a", 1));
        let since = cache.generation();
        assert!(cache.insert_for_unless_changed(since, "b", 2, Duration::from_millis(10)));
        tokio::time::advance(Duration::from_millis(10)).await;
        assert_eq!(cache.get("b"), None, "kept for the shorter time");
        cache.remove("b");
        assert!(!cache.insert_for_unless_changed(since, "b", 2, TTL));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_misses_for_one_key_fetch_once() {
        let cache: Arc<Cache<&str, u32>> = Arc::new(Cache::new(TTL, 10));
        let fetches = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let cache = cache.clone();
                let fetches = fetches.clone();
                tokio::spawn(async move {
                    cache
                        .get_or_try_insert_with("k", || async {
                            fetches.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            Ok::<_, ()>(42)
                        })
                        .await
                })
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.await.expect("no panic"), Ok(42));
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert_eq!(cache.get("k"), Some(42));
        assert!(cache.pending.lock().is_empty());
        // Expired: fetched again.
        tokio::time::advance(TTL).await;
        let again = cache
            .get_or_try_insert_with("k", || async { Ok::<_, ()>(43) })
            .await;
        assert_eq!(again, Ok(43));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fetch_whose_caller_went_away_leaves_nothing_behind_and_the_next_caller_fetches() {
        let cache: Arc<Cache<&str, u32>> = Arc::new(Cache::new(TTL, 10));
        let shared = cache.clone();
        let abandoned = tokio::spawn(async move {
            shared
                .get_or_try_insert_with("k", std::future::pending::<Result<u32, ()>>)
                .await
        });
        tokio::task::yield_now().await;
        assert_eq!(cache.pending.lock().len(), 1, "the fetch is under way");
        abandoned.abort();
        assert!(abandoned.await.is_err_and(|e| e.is_cancelled()));
        assert!(cache.pending.lock().is_empty());
        let fetched = cache
            .get_or_try_insert_with("k", || async { Ok::<_, ()>(5) })
            .await;
        assert_eq!(fetched, Ok(5));
        assert!(cache.pending.lock().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_fetch_is_not_cached_and_the_next_caller_fetches_again() {
        let cache: Cache<&str, u32> = Cache::new(TTL, 10);
        let failed = cache
            .get_or_try_insert_with("k", || async { Err::<u32, _>("down") })
            .await;
        assert_eq!(failed, Err("down"));
        assert_eq!(cache.get("k"), None);
        let fetched = cache
            .get_or_try_insert_with("k", || async { Ok::<_, &str>(1) })
            .await;
        assert_eq!(fetched, Ok(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fetch_that_raced_a_removal_answers_but_is_not_cached() {
        let cache: Cache<&str, u32> = Cache::new(TTL, 10);
        let fetched = cache
            .get_or_try_insert_with("k", || async {
                cache.remove("k");
                Ok::<_, ()>(1)
            })
            .await;
        assert_eq!(fetched, Ok(1));
        assert_eq!(cache.get("k"), None);
    }
}
