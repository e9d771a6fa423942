//! The credential service's caches: types, company names and the type list (time-limited, cleared
//! by type events from any replica) and credentials as stored (sealed), with the generation
//! guard that keeps a read which raced a write out of the cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
/// Credentials kept at most (the cache is cleared when full).
pub(crate) const MAX_CACHED_CREDENTIALS: usize = 10_000;
/// Credentials whose stored values are longer than this in total are not cached.
pub(crate) const MAX_CACHED_CREDENTIAL_BYTES: usize = 16 * 1024;

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
    pub(crate) fn get(&self, id: &str, epoch: u64) -> Result<Arc<CredentialDoc>, u64> {
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
    pub(crate) fn put(&self, generation: u64, doc: &Arc<CredentialDoc>) {
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
    pub(crate) types: Mutex<HashMap<String, CachedType>>,
    pub(crate) companies: Mutex<HashMap<String, (Instant, CompanySummary)>>,
    pub(crate) type_list: Mutex<Option<(Instant, Vec<CredentialType>)>>,
    /// Recently read credentials.
    pub credentials: CredentialCache,
    /// Held while one caller recounts the type list: counting is a scan per type, and a
    /// stampede of recounts when the cache expires under load would bury the store.
    pub(crate) type_list_refresh: Arc<tokio::sync::Mutex<()>>,
    /// Moves when the type list is cleared, so a recount that began before a write does not
    /// store counts that miss it.
    pub(crate) type_list_generation: std::sync::atomic::AtomicU64,
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
    pub(crate) fn cached_type_list(&self) -> Option<(Duration, Vec<CredentialType>)> {
        self.type_list
            .lock()
            .expect("cache lock is never poisoned")
            .as_ref()
            .map(|(at, list)| (at.elapsed(), list.clone()))
    }
}
