//! The credential service's caches: types, company names and the type list (time-limited, cleared
//! by type events from any replica) and credentials as stored (sealed), with the generation
//! guard that keeps a read which raced a write out of the cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;
use ttscm_runtime::cache::{Cache, Generation};

use ttscm_contract::company::CompanySummary;
use ttscm_contract::credential::CredentialType;

use crate::store::{CredentialDoc, TypeDoc};

/// How long a cached credential type is trusted. Changes made through any replica also clear
/// every replica's cache at once (the service listens to its own type events).
pub(crate) const TYPE_TTL: Duration = Duration::from_secs(2);
/// How long a cached company name is trusted.
pub(crate) const COMPANY_TTL: Duration = Duration::from_secs(10);
/// How long the list of types (with counts) is reused; local writes clear it.
pub(crate) const TYPE_LIST_TTL: Duration = Duration::from_secs(1);
/// How old a type list may be and still answer while one caller recounts in the background;
/// an older one (the store has been failing that long) is recounted while the caller waits.
pub(crate) const TYPE_LIST_STALE: Duration = Duration::from_secs(10);
/// How long a cached credential is trusted. Writes through this replica forget it at once;
/// writes through another replica as soon as its change event arrives here (a NATS hop).
pub(crate) const CREDENTIAL_TTL: Duration = Duration::from_secs(2);
/// Types kept at most.
const MAX_CACHED_TYPES: usize = 10_000;
/// Company names kept at most.
const MAX_CACHED_COMPANIES: usize = 10_000;
/// Credentials kept at most.
pub(crate) const MAX_CACHED_CREDENTIALS: usize = 10_000;
/// Credentials whose stored values are longer than this in total are not cached.
pub(crate) const MAX_CACHED_CREDENTIAL_BYTES: usize = 16 * 1024;

/// Recently read credentials, as stored (secure values sealed: the cache never holds plaintext).
///
/// Reads (fetch, fields, reveal) are served from here, so the hot reveal path reads nothing
/// from the store; writes read fresh. A read that raced a write is never cached: a write
/// forgets the credential after it is stored (moving the cache's generation), and a read
/// caches only if the generation did not move while it read. Writes by another process to the
/// embedded store (`ttscm vault reseal`) are noticed through the store's change epoch within
/// 100 ms. A thin layer over the runtime's [`Cache`].
pub struct CredentialCache {
    entries: Cache<String, Arc<CredentialDoc>>,
    /// The store's change epoch the entries were read under.
    epoch: AtomicU64,
}

impl Default for CredentialCache {
    fn default() -> Self {
        Self {
            entries: Cache::new(CREDENTIAL_TTL, MAX_CACHED_CREDENTIALS),
            epoch: AtomicU64::new(0),
        }
    }
}

impl CredentialCache {
    /// The cached credential, if fresh; else the generation to pass to [`Self::put`]. When the
    /// store's change `epoch` moved (another process wrote to the embedded store, e.g.
    /// `ttscm vault reseal`), everything cached is forgotten first.
    pub(crate) fn get(&self, id: &str, epoch: u64) -> Result<Arc<CredentialDoc>, Generation> {
        if self.epoch.swap(epoch, Ordering::AcqRel) != epoch {
            self.entries.clear();
        }
        let generation = self.entries.generation();
        let cached = self.entries.get(id);
        ttscm_runtime::metrics::cache_lookup("credential", cached.is_some());
        cached.ok_or(generation)
    }

    /// Caches `doc`, read when the generation was `generation`, unless a write happened since.
    pub(crate) fn put(&self, generation: Generation, doc: &Arc<CredentialDoc>) {
        if doc.values.iter().map(|v| v.value.len()).sum::<usize>() > MAX_CACHED_CREDENTIAL_BYTES {
            return;
        }
        self.entries
            .insert_unless_changed(generation, doc.id.clone(), doc.clone());
    }

    /// Forgets one credential (after it was written, here or on another replica).
    pub fn forget(&self, id: &str) {
        self.entries.remove(id);
    }

    /// Forgets every credential (after a write to many).
    pub fn clear(&self) {
        self.entries.clear();
    }
}

/// Short-lived caches of what nearly every request reads: credential types and company names.
pub struct Caches {
    /// Types by id (`None`: there was none), shared with their readers (a reveal reads one;
    /// cloning it per request is measurable).
    pub(crate) types: Cache<String, Option<Arc<TypeDoc>>>,
    /// Company names by company id.
    pub(crate) companies: Cache<String, CompanySummary>,
    /// The type list with counts and when it was counted.
    type_list: Mutex<Option<(Instant, Vec<CredentialType>)>>,
    /// Recently read credentials.
    pub credentials: CredentialCache,
    /// Held while one caller recounts the type list: counting is a scan per type, and a
    /// stampede of recounts when the cache expires under load would bury the store.
    pub(crate) type_list_refresh: Arc<tokio::sync::Mutex<()>>,
    /// Moves when the type list is cleared, so a recount that began before a write does not
    /// store counts that miss it.
    type_list_generation: AtomicU64,
}

impl Default for Caches {
    fn default() -> Self {
        Self {
            types: Cache::new(TYPE_TTL, MAX_CACHED_TYPES),
            companies: Cache::new(COMPANY_TTL, MAX_CACHED_COMPANIES),
            type_list: Mutex::new(None),
            credentials: CredentialCache::default(),
            type_list_refresh: Arc::default(),
            type_list_generation: AtomicU64::new(0),
        }
    }
}

impl Caches {
    /// Forgets every type (after a type changed anywhere), and every credential (a type
    /// change may have migrated its credentials' values).
    pub fn clear_types(&self) {
        self.types.clear();
        self.clear_type_list();
        self.credentials.clear();
    }

    /// Forgets the type list (after counts changed).
    pub fn clear_type_list(&self) {
        let mut list = self.type_list.lock();
        self.type_list_generation.fetch_add(1, Ordering::AcqRel);
        *list = None;
    }

    /// The type list's generation, to pass to [`Self::store_type_list`] after a recount.
    pub(crate) fn type_list_generation(&self) -> u64 {
        self.type_list_generation.load(Ordering::Acquire)
    }

    /// Keeps a recounted type list, unless the list was cleared since the recount began.
    pub(crate) fn store_type_list(&self, generation: u64, types: Vec<CredentialType>) {
        let mut list = self.type_list.lock();
        if self.type_list_generation.load(Ordering::Acquire) == generation {
            *list = Some((Instant::now(), types));
        }
    }

    /// The cached type list and its age.
    pub(crate) fn cached_type_list(&self) -> Option<(Duration, Vec<CredentialType>)> {
        self.type_list
            .lock()
            .as_ref()
            .map(|(at, list)| (at.elapsed(), list.clone()))
    }
}
