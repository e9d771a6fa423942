//! The audit log port: an append-only, hash-chained log of who did what, written before the
//! response leaves, shared by every writer (replicas, a `ttscm` command beside the server)
//! without ever forking the chain.
//!
//! Vocabulary, one name per thing:
//! - [`AuditEntry`] (contract type): a stored entry — its place in the chain (`seq`), the
//!   previous entry's hash (`prevHash`) and its own `hash`.
//! - [`NewAuditEntry`]: what a caller appends, serialized by the caller, before it has a place.
//! - [`AuditHead`]: the last entry's `seq` and `hash`, what the next entry chains onto.
//! - [`AuditStorage`]: where entries are kept and read — the embedded [`Journal`] file or a
//!   MongoDB collection ([`MongoEntries`], `audit_entries`).
//! - [`AuditStream`]: the JetStream write-ahead in front of the storage when the bus is NATS.
//!
//! Which adapter follows the bus and the store ([`AuditLog::open`]):
//!
//! | bus       | store   | appended to                    | kept in (listed, verified) |
//! |-----------|---------|--------------------------------|----------------------------|
//! | in-process| SQLite  | the journal                    | the journal                |
//! | in-process| MongoDB | the collection                 | the collection             |
//! | NATS      | MongoDB | the `TTSCM_AUDIT` stream       | the collection (copied)    |
//! | NATS      | SQLite  | the `TTSCM_AUDIT` stream       | the journal (copied)       |
//!
//! NATS with the embedded store keeps the write-ahead, as it did before the port existed: the
//! chain then has one rule whatever the store (over NATS, the stream's expected last sequence
//! decides which writer extends the chain), and replicas on one data dir share one copier.
//!
//! **Appends** run a group commit led by the callers themselves (no actor, no thread hop): the
//! first caller to find no write in progress becomes the *leader* and writes; callers arriving
//! meanwhile queue; when its write is done the leader answers the batch and hands the lead to the
//! first queued caller, which writes everything queued by then as one batch. The leader holds
//! the head in memory; when another writer extended the chain first (a taken `seq` in the
//! storage, a refused expected-last-sequence on the stream) it reloads the head and retries after
//! a short random pause, for up to 3 s. A leader dropped mid-write (bus handlers run to the end,
//! so it never is) still hands the lead on, and the next leader reloads the head.
//!
//! **Signed checkpoints** ([`checkpoint`]): a head signed by vault's checkpoint key.
//! [`AuditLog::verify_against`] checks the chain and the log against one (truncated before it,
//! rewritten at it); [`checkpoint::verify_lines`] does the same offline for an exported log.
//! Where checkpoints are kept and when they are made is the audit log owner's business (the
//! credential service: `audit_checkpoints`, and the `audit.checkpoint` event).

mod chain;
pub mod checkpoint;
pub mod journal;
mod mongo;
mod record;
mod stream;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;

pub use chain::{GENESIS, NewAuditEntry, entry_hash};
pub use journal::Journal;
pub use mongo::{BLOCK, BLOCK_FIELD, MongoEntries, block_of};
pub use record::{AuditRecord, actor_of, anonymous_actor, cli_actor, system_actor};
pub use stream::AuditStream;
pub use ttscm_contract::audit::{AuditEntry, AuditPage, AuditVerification, ListAuditEvents};

use crate::bus::Bus;
use crate::retry::Backoff;
use crate::store::{Store, StoreError};
use chain::{AuditEntryText, chain};
use checkpoint::{ChainCheck, CheckAgainst};
use stream::{AppendError, AppendPoint};

/// The MongoDB collection holding the audit log.
pub const COLLECTION: &str = "audit_entries";

/// How a batch retries after losing the race for the next sequence number to another writer:
/// a random pause of up to 400 µs, doubling per retry, at most 10 ms, for up to 3 s (below the
/// bus request timeout, 5 s by default), then its appends fail. Without the pause, the writer
/// that just won keeps winning: it holds the head in memory and writes its next batch at once,
/// while the loser still reloads the head.
const RETRY: Backoff =
    Backoff::new(Duration::from_micros(400), Duration::from_millis(10)).deadline(Duration::from_secs(3));
/// The most scheduler turns a busy leader waits for more appends to join its batch.
const MAX_GATHER_TURNS: usize = 8;
/// Entries read per step when verifying: a MongoDB collection's block, and each step ends where
/// a block ends (one read per step; see [`mongo`]).
const VERIFY_BATCH: u64 = mongo::BLOCK;
/// How long a read (a page, a verification) waits for entries appended before it to become
/// readable before it serves what is stored and counts the rest as pending.
const READ_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// The journal file of the embedded store whose main file is `store_file`, next to it:
/// `ttscm.sqlite3` → `ttscm-audit_entries.jsonl` (and its lock file `ttscm-audit_entries.lock`).
pub fn journal_path(store_file: &Path) -> PathBuf {
    let stem = store_file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ttscm".into());
    store_file.with_file_name(format!("{stem}-{COLLECTION}.jsonl"))
}

/// The head of the chain: the last entry's sequence number and hash (`0` and [`GENESIS`] when
/// the log is empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    /// The last entry's `seq`.
    pub seq: u64,
    /// The last entry's `hash`.
    pub hash: String,
}

impl AuditHead {
    /// The head of an empty log.
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS.to_owned(),
        }
    }
}

/// Where entries are kept, listed and verified from.
#[derive(Clone, Debug)]
pub enum AuditStorage {
    /// The embedded store's journal file.
    Journal(Arc<Journal>),
    /// A MongoDB collection.
    Mongo(MongoEntries),
}

impl AuditStorage {
    /// The storage beside `store`: its journal file for the embedded store, its
    /// `audit_entries` collection for MongoDB.
    pub async fn open(store: &Store) -> Result<Self, StoreError> {
        match store {
            Store::Mongo(_) => Ok(Self::Mongo(MongoEntries::open(store).await?)),
            Store::Sqlite(sqlite) => Ok(Self::Journal(Journal::open(&journal_path(sqlite.path()))?)),
        }
    }

    /// Stores `entries` (chained, in order). A taken `seq` is [`StoreError::Conflict`]; the
    /// journal then stores none of them, MongoDB those before the taken one.
    async fn append(&self, entries: &[AuditEntryText]) -> Result<(), StoreError> {
        match self {
            Self::Journal(journal) => journal.append(entries),
            Self::Mongo(mongo) => mongo.append(entries).await,
        }
    }

    /// Whether `entry` is stored (at its `seq`, by its id).
    async fn contains(&self, entry: &AuditEntryText) -> Result<bool, StoreError> {
        match self {
            Self::Journal(journal) => Ok(journal
                .line_at(entry.seq)?
                .and_then(|line| journal::keys(&line))
                .is_some_and(|(id, _)| id == entry.id)),
            Self::Mongo(mongo) => mongo.contains(entry).await,
        }
    }

    /// Stores `entries` (in sequence order) copied from the write-ahead stream, skipping those
    /// already stored (a redelivered message): on a conflict, one read of their range finds
    /// which are stored and the rest go in one write.
    ///
    /// A stored entry that holds an entry's place under another id was not written by the
    /// stream (nothing else writes the storage in the mesh): it is kept — verification then
    /// reports the chain broken there — and the stream's entry is logged in full (entries hold
    /// no secret) rather than retried forever, which would stop every later entry.
    async fn copy(&self, entries: &[AuditEntryText]) -> Result<(), StoreError> {
        match self {
            Self::Journal(journal) => match journal.append(entries) {
                Err(StoreError::Conflict) => self.copy_the_rest(entries).await,
                other => other,
            },
            Self::Mongo(mongo) => {
                let Some(last) = entries.last() else {
                    return Ok(());
                };
                match mongo.insert(entries).await {
                    Err(StoreError::Conflict) => self.copy_the_rest(entries).await?,
                    other => other?,
                }
                // Once every entry of the message is stored, and before it is acknowledged: a
                // copier stopped (or failing) here gets the message again and raises the head
                // then, so a page never stays short of stored entries.
                mongo.raise_head(last.seq).await
            }
        }
    }

    /// [`Self::copy`] after a conflict: stores those of `entries` not stored yet.
    async fn copy_the_rest(&self, entries: &[AuditEntryText]) -> Result<(), StoreError> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        let span =
            usize::try_from(last.seq.saturating_sub(first.seq).saturating_add(1)).unwrap_or(usize::MAX);
        let stored: std::collections::HashMap<u64, Option<String>> = self
            .read_from(
                first.seq,
                span.min(entries.len().saturating_mul(4).saturating_add(1024)),
            )
            .await?
            .into_iter()
            .map(|(seq, entry)| (seq, entry.map(|e| e.id)))
            .collect();
        let mut missing = Vec::new();
        for entry in entries {
            match stored.get(&entry.seq) {
                None => missing.push(entry.clone()),
                Some(Some(id)) if *id == entry.id => {}
                Some(_) => tracing::error!(
                    seq = entry.seq,
                    entry = %entry.json,
                    "the audit store holds another entry at this sequence number; keeping the stored one"
                ),
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        match self.append(&missing).await {
            // Stored meanwhile by another copier (a message handed on after its ack wait).
            Err(StoreError::Conflict) => {
                for entry in &missing {
                    if !self.contains(entry).await? {
                        self.append(std::slice::from_ref(entry)).await?;
                    }
                }
                Ok(())
            }
            other => other,
        }
    }

    /// The last stored entry's head.
    async fn head(&self) -> Result<AuditHead, StoreError> {
        match self {
            Self::Journal(journal) => match journal.last_line()? {
                Some(line) => {
                    let text = std::str::from_utf8(&line).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    let last = AuditEntryText::parse(text)?;
                    Ok(AuditHead {
                        seq: last.seq,
                        hash: last.hash,
                    })
                }
                None => Ok(AuditHead::genesis()),
            },
            Self::Mongo(mongo) => Ok(mongo
                .last()
                .await?
                .map_or_else(AuditHead::genesis, |last| AuditHead {
                    seq: last.seq,
                    hash: last.hash,
                })),
        }
    }

    /// At most `limit` entries from `seq` `from` on, in sequence order, each with its `seq` and
    /// the entry (`None` when the stored text is not an entry).
    async fn read_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, Option<AuditEntry>)>, StoreError> {
        match self {
            Self::Journal(journal) => Ok(journal
                .read_from(from, limit)?
                .iter()
                .map(|line| {
                    let seq = journal::seq_of(line).unwrap_or(0);
                    (seq, journal::parse(line, seq).ok())
                })
                .collect()),
            Self::Mongo(mongo) => mongo.read_from(from, limit).await,
        }
    }

    async fn page(&self, query: &ListAuditEvents) -> Result<(Vec<AuditEntry>, u64), StoreError> {
        match self {
            Self::Journal(journal) => journal.page(query),
            Self::Mongo(mongo) => mongo.page(query).await,
        }
    }
}

/// What a queued caller is told when its turn comes.
enum Turn {
    /// Its entries were written in a batch, at these sequence numbers (or the batch failed).
    Written(Result<Vec<u64>, StoreError>),
    /// It leads now: it writes its entries (handed back) and everything queued behind it.
    Lead(Vec<NewAuditEntry>),
}

/// Queued entries and where to tell their caller.
type Waiting = (Vec<NewAuditEntry>, oneshot::Sender<Turn>);

/// The head as this handle knows it and the appends waiting for the next write.
#[derive(Default)]
struct State {
    /// The head (and, ahead of a stream, its message), once loaded (`None`: load it before
    /// writing).
    head: Option<AppendPoint>,
    /// Appends waiting for the next batch.
    queue: Vec<Waiting>,
    /// Whether a leader is writing now.
    writing: bool,
    /// Entries in the last batch written (a hint of how busy the log is).
    last_batch: usize,
}

/// The audit log; clones share the head and the group commit. See the module docs.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    storage: AuditStorage,
    /// Over NATS, the write-ahead stream appends go to.
    ahead: Option<AuditStream>,
    state: Mutex<State>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("storage", &self.inner.storage)
            .field("ahead", &self.inner.ahead.is_some())
            .finish_non_exhaustive()
    }
}

/// Held by the leader while it writes. Dropped without [`LeadGuard::finish`] (the leader's
/// future was dropped mid-write), it forgets the head, whose state is then unknown, and hands
/// the lead on.
struct LeadGuard<'a> {
    log: &'a AuditLog,
    done: bool,
}

impl LeadGuard<'_> {
    fn finish(mut self, head: Option<AppendPoint>) {
        self.done = true;
        let mut state = self.log.lock();
        state.head = head;
        AuditLog::hand_on(&mut state);
    }
}

impl Drop for LeadGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut state = self.log.lock();
            state.head = None;
            AuditLog::hand_on(&mut state);
        }
    }
}

fn contended() -> StoreError {
    StoreError::Unavailable("the audit chain is contended; try again".into())
}

impl AuditLog {
    /// The log the bus and store call for (see the table in the module docs). Over NATS, start
    /// the copier too ([`Self::start_copier`]).
    pub async fn open(bus: &Bus, store: &Store) -> Result<Self, StoreError> {
        let storage = AuditStorage::open(store).await?;
        let ahead = match bus {
            Bus::Nats(nats) => Some(AuditStream::new(nats.client().clone(), nats.stream_replicas())),
            Bus::InProc(_) => None,
        };
        Ok(Self::new(storage, ahead))
    }

    /// A log kept in `storage`, appended to through `ahead` when given.
    pub fn new(storage: AuditStorage, ahead: Option<AuditStream>) -> Self {
        Self {
            inner: Arc::new(Inner {
                storage,
                ahead,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Over NATS, starts copying entries from the stream into the storage until `shutdown`
    /// (every replica runs one; they share the durable consumer), and samples how many entries
    /// wait for it (the `ttscm_audit_copy_pending_entries` gauge). `None` without a stream.
    pub fn start_copier(&self, shutdown: crate::Shutdown) -> Option<tokio::task::JoinHandle<()>> {
        let stream = self.inner.ahead.clone()?;
        let sampler = stream.clone().sample_pending_forever(shutdown.clone());
        let copier = stream.copy_forever(self.inner.storage.clone(), shutdown);
        Some(tokio::spawn(async move {
            tokio::join!(copier, sampler);
        }))
    }

    /// Where entries are kept.
    pub fn storage(&self) -> &AuditStorage {
        &self.inner.storage
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, State> {
        self.inner.state.lock()
    }

    /// Passes the lead to the first queued caller still waiting, or ends the writing.
    fn hand_on(state: &mut State) {
        while !state.queue.is_empty() {
            let (entries, turn) = state.queue.remove(0);
            if turn.send(Turn::Lead(entries)).is_ok() {
                return;
            }
            // That caller is gone, and its request with it: its entries are not written.
        }
        state.writing = false;
    }

    /// Appends one entry; answers once it is stored (and fails if it could not be).
    pub async fn append(&self, entry: NewAuditEntry) -> Result<(), StoreError> {
        self.append_all(vec![entry]).await
    }

    /// Appends one entry as [`Self::append`] does and answers its sequence number (for a
    /// reference to it, e.g. in a ticket note).
    pub async fn append_numbered(&self, entry: NewAuditEntry) -> Result<u64, StoreError> {
        self.append_seqs(vec![entry])
            .await?
            .pop()
            .ok_or_else(|| StoreError::Unavailable("the audit log wrote nothing".into()))
    }

    /// Appends `entries`, in order and next to each other in the chain; answers once they are
    /// stored (and fails, having stored none of them, if they could not be — except that on
    /// MongoDB a failure other than a lost race may leave the first ones stored).
    pub async fn append_all(&self, entries: Vec<NewAuditEntry>) -> Result<(), StoreError> {
        self.append_seqs(entries).await.map(drop)
    }

    /// [`Self::append_all`], answering each entry's sequence number, in order.
    async fn append_seqs(&self, entries: Vec<NewAuditEntry>) -> Result<Vec<u64>, StoreError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let told = {
            let mut state = self.lock();
            if state.writing {
                let (turn, told) = oneshot::channel();
                state.queue.push((entries, turn));
                Ok(told)
            } else {
                state.writing = true;
                Err(entries)
            }
        };
        match told {
            Err(entries) => self.lead(entries).await,
            Ok(told) => match told.await {
                Ok(Turn::Written(result)) => result,
                Ok(Turn::Lead(entries)) => self.lead(entries).await,
                Err(_) => Err(StoreError::Unavailable("the audit log stopped".into())),
            },
        }
    }

    /// Writes `own` and everything queued, answers the queued callers (each its entries'
    /// sequence numbers), hands the lead on, and answers `own`'s.
    async fn lead(&self, own: Vec<NewAuditEntry>) -> Result<Vec<u64>, StoreError> {
        let guard = LeadGuard {
            log: self,
            done: false,
        };
        // Under load, let the tasks already runnable on this thread reach their appends first,
        // so they join this batch: a journal write never yields, so without this each would
        // commit alone. Alone (the last batch had one entry and nobody queued since), skip it:
        // a yield costs a turn of the scheduler's I/O poll.
        let busy = {
            let state = self.lock();
            state.last_batch > 1 || !state.queue.is_empty()
        };
        if busy {
            // Keep yielding while appends keep arriving (at most a few turns).
            let mut queued = self.lock().queue.len();
            for _ in 0..MAX_GATHER_TURNS {
                tokio::task::yield_now().await;
                let now = self.lock().queue.len();
                if now == queued {
                    break;
                }
                queued = now;
            }
        }
        let (head, queued) = {
            let mut state = self.lock();
            state.last_batch = own.len() + state.queue.iter().map(|(more, _)| more.len()).sum::<usize>();
            (state.head.clone(), std::mem::take(&mut state.queue))
        };
        let own_len = own.len();
        let mut entries = own;
        let mut turns = Vec::with_capacity(queued.len());
        for (more, turn) in queued {
            turns.push((entries.len()..entries.len() + more.len(), turn));
            entries.extend(more);
        }
        let result = match &self.inner.ahead {
            Some(stream) => self.write_ahead(stream, head, &entries).await,
            None => self.write_direct(head, &entries).await,
        };
        let (head, seqs) = match result {
            Ok((head, seqs)) => (Some(head), Ok(seqs)),
            Err(error) => (None, Err(error)),
        };
        for (range, turn) in turns {
            let theirs = match &seqs {
                Ok(seqs) => Ok(seqs[range].to_vec()),
                Err(error) => Err(error.clone()),
            };
            let _ = turn.send(Turn::Written(theirs));
        }
        guard.finish(head);
        seqs.map(|mut seqs| {
            seqs.truncate(own_len);
            seqs
        })
    }

    /// Writes one batch to the storage after `head`, retrying from a fresh head when another
    /// writer extended the chain first. Entries that did get stored before a conflict (MongoDB
    /// keeps those before the failed one) are recognised and not written twice. Answers the
    /// new head and each entry's sequence number.
    async fn write_direct(
        &self,
        head: Option<AppendPoint>,
        entries: &[NewAuditEntry],
    ) -> Result<(AppendPoint, Vec<u64>), StoreError> {
        let storage = &self.inner.storage;
        let mut head = match head {
            Some(known) => known.head,
            None => storage.head().await?,
        };
        tracing::trace!(entries = entries.len(), "writing an audit batch");
        let mut start = 0;
        let mut seqs = Vec::with_capacity(entries.len());
        let mut retries = RETRY.start();
        while start < entries.len() {
            let texts = chain(&entries[start..], head.seq, &head.hash);
            match storage.append(&texts).await {
                Ok(()) => {
                    seqs.extend(texts.iter().map(|t| t.seq));
                    let last = texts.last().expect("a batch has entries");
                    head = AuditHead {
                        seq: last.seq,
                        hash: last.hash.clone(),
                    };
                    start = entries.len();
                }
                Err(StoreError::Conflict) if retries.wait().await => {
                    head = storage.head().await?;
                    // Skip the entries of this batch that are already stored.
                    for text in &texts {
                        if !storage.contains(text).await? {
                            break;
                        }
                        seqs.push(text.seq);
                        start += 1;
                    }
                }
                Err(StoreError::Conflict) => return Err(contended()),
                Err(other) => return Err(other),
            }
        }
        Ok((AppendPoint { head, stream_seq: 0 }, seqs))
    }

    /// Writes one batch after `head` to the write-ahead stream, in messages of at most
    /// [`stream::ENTRIES_PER_MESSAGE`] entries, each expecting the one before it; retries from a
    /// fresh head when another writer appended first (a refused message stored nothing).
    /// Answers the new head and each entry's sequence number.
    async fn write_ahead(
        &self,
        stream: &AuditStream,
        head: Option<AppendPoint>,
        entries: &[NewAuditEntry],
    ) -> Result<(AppendPoint, Vec<u64>), StoreError> {
        let mut head = match head {
            Some(known) => known,
            None => stream.head(&self.inner.storage).await?,
        };
        let mut retries = RETRY.start();
        let mut start = 0;
        let mut seqs = Vec::with_capacity(entries.len());
        while start < entries.len() {
            let end = entries.len().min(start + stream::ENTRIES_PER_MESSAGE);
            let texts = chain(&entries[start..end], head.head.seq, &head.head.hash);
            match stream.append(head.stream_seq, &texts).await {
                Ok(stream_seq) => {
                    seqs.extend(texts.iter().map(|t| t.seq));
                    let last = texts.last().expect("a batch has entries");
                    head = AppendPoint {
                        head: AuditHead {
                            seq: last.seq,
                            hash: last.hash.clone(),
                        },
                        stream_seq,
                    };
                    start = end;
                }
                Err(AppendError::Conflict) if retries.wait().await => {
                    head = stream.head(&self.inner.storage).await?;
                }
                Err(AppendError::Conflict) => return Err(contended()),
                Err(AppendError::Unavailable(reason)) => return Err(StoreError::Unavailable(reason)),
            }
        }
        Ok((head, seqs))
    }

    /// The head of the chain: the last entry appended by anyone (over NATS, in the stream or,
    /// all copied, in the storage).
    pub async fn head(&self) -> Result<AuditHead, StoreError> {
        match &self.inner.ahead {
            Some(stream) => Ok(stream.head(&self.inner.storage).await?.head),
            None => self.inner.storage.head().await,
        }
    }

    /// Waits until entries appended so far can be read from the storage (over NATS the copier
    /// stores them a moment later; at most 2 s, then [`StoreError::Unavailable`]). For a
    /// command that needs every entry (an export).
    pub async fn settled(&self) -> Result<(), StoreError> {
        match &self.inner.ahead {
            Some(stream) => stream.settled().await,
            None => Ok(()),
        }
    }

    /// What a read does first: waits up to [`READ_WAIT`] (half a second) for entries appended so far to be
    /// readable (read-your-own-writes, normally a few milliseconds), then answers how many are
    /// still on their way (over NATS, in the stream; 0 otherwise). A lagging copy is reported,
    /// not an error.
    async fn catch_up(&self) -> Result<u64, StoreError> {
        match &self.inner.ahead {
            Some(stream) => stream.pending_after(READ_WAIT).await,
            None => Ok(0),
        }
    }

    /// A page of the entries `query` asks for (actor, target, action, `from` ≤ `at` < `to`),
    /// newest first, how many match in all, and how many appended entries are not readable yet
    /// (see [`Self::catch_up`]).
    pub async fn page(&self, query: &ListAuditEvents) -> Result<AuditPage, StoreError> {
        let pending = self.catch_up().await?;
        let (items, total) = self.inner.storage.page(query).await?;
        Ok(AuditPage {
            items,
            total,
            pending,
        })
    }

    /// At most `limit` stored entries from sequence number `from` on, in sequence order (for
    /// verification and export). Reads the storage as it is: call [`Self::settled`] first to
    /// include entries still in the write-ahead stream.
    pub async fn scan(&self, from: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner
            .storage
            .read_from(from, limit)
            .await?
            .into_iter()
            .map(|(seq, entry)| {
                entry.ok_or_else(|| StoreError::Corrupt(format!("the audit entry at sequence {seq}")))
            })
            .collect()
    }

    /// Checks every entry's hash and link, in sequence order, from the first; waits for
    /// [`Self::settled`] first (fails while entries are still on their way).
    pub async fn verify(&self) -> Result<AuditVerification, StoreError> {
        self.settled().await?;
        self.verify_against(None).await
    }

    /// Checks every entry's hash and link from the first and, when given, the log against a
    /// signed checkpoint (truncated before it, or rewritten at it: see [`checkpoint`]); entries
    /// still on their way are counted in `pending` (see [`Self::verify_incremental`]).
    pub async fn verify_against(
        &self,
        against: Option<&CheckAgainst>,
    ) -> Result<AuditVerification, StoreError> {
        Ok(self.verify_incremental(None, u64::MAX, against).await?.0)
    }

    /// Checks the entries after `verified` (a head verified before: its stored entry must still
    /// have its hash, else the check is broken there), at most `max_entries` of them, and the log
    /// against `against` when given; catches up first (see [`Self::catch_up`]: entries still on
    /// their way are counted in `pending` and checked next time). Answers the verification
    /// (`complete` false when it stopped at `max_entries`) and the head verified through, to
    /// start from next time (`None` when the chain is broken or empty).
    ///
    /// What this trusts: entries up to `verified` are not read again, so an edit there that
    /// leaves `verified`'s own entry alone is found by a check from the start (and an edit that
    /// rehashes up to a signed checkpoint, by the checkpoint).
    pub async fn verify_incremental(
        &self,
        verified: Option<&AuditHead>,
        max_entries: u64,
        against: Option<&CheckAgainst>,
    ) -> Result<(AuditVerification, Option<AuditHead>), StoreError> {
        self.verify_incremental_within(verified, max_entries, None, against)
            .await
    }

    /// [`Self::verify_incremental`] that also stops reading (`complete` false) once `budget`
    /// has passed since the call: for a caller with a deadline (a bus request) on a store where
    /// each read takes long (FerretDB at millions of entries), so progress is made and kept
    /// call by call instead of every call timing out.
    pub async fn verify_incremental_within(
        &self,
        verified: Option<&AuditHead>,
        max_entries: u64,
        budget: Option<Duration>,
        against: Option<&CheckAgainst>,
    ) -> Result<(AuditVerification, Option<AuditHead>), StoreError> {
        let until = budget.map(|budget| tokio::time::Instant::now() + budget);
        let pending = self.catch_up().await?;
        let check = match verified {
            None => ChainCheck::default(),
            Some(head) if self.hash_at(head.seq).await?.as_deref() == Some(head.hash.as_str()) => {
                ChainCheck::after(head)
            }
            Some(head) => ChainCheck::broken_at(head.seq),
        };
        let (check, complete) = self.check_chain(check, max_entries, until).await?;
        let head = check.intact_head();
        let hash_there = match against {
            // An intact chain that ends before the checkpoint: the log was cut there (entries
            // stored beyond a cut are not the chain's).
            Some(against)
                if complete && !check.is_broken() && check.next_seq() <= against.checkpoint.head.seq =>
            {
                None
            }
            Some(against) => self.hash_at(against.checkpoint.head.seq).await?,
            None => None,
        };
        let mut verification = check.finish(against.map(|a| (a, hash_there.as_deref())));
        verification.complete = complete;
        verification.pending = pending;
        Ok((verification, head))
    }

    /// The hash of the stored entry at `seq` as its content gives it (`None` when there is no
    /// entry there; empty when the stored text is not an entry or does not match its own
    /// `hash`, i.e. it was edited).
    async fn hash_at(&self, seq: u64) -> Result<Option<String>, StoreError> {
        let there = self.inner.storage.read_from(seq, 1).await?;
        Ok(match there.first() {
            Some((at, entry)) if *at == seq => Some(
                entry
                    .as_ref()
                    .filter(|e| entry_hash(e) == e.hash)
                    .map_or_else(String::new, |e| e.hash.clone()),
            ),
            _ => None,
        })
    }

    /// Checks every entry after `checkpoint` (a head trusted because it was signed, or from the
    /// first entry when `None`), in sequence order; waits for [`Self::settled`] first.
    /// `entries` counts the entries checked.
    pub async fn verify_from(&self, checkpoint: Option<&AuditHead>) -> Result<AuditVerification, StoreError> {
        self.settled().await?;
        let start = checkpoint.map_or_else(ChainCheck::default, ChainCheck::after);
        Ok(self.check_chain(start, u64::MAX, None).await?.0.finish(None))
    }

    /// Feeds `check` the stored entries from its next `seq` on, until the end, a break,
    /// `max_entries` fed or the first batch ending after `until`; answers it and whether it got
    /// to the end (or found a break).
    async fn check_chain(
        &self,
        mut check: ChainCheck,
        max_entries: u64,
        until: Option<tokio::time::Instant>,
    ) -> Result<(ChainCheck, bool), StoreError> {
        if check.is_broken() {
            return Ok((check, true));
        }
        loop {
            let room = max_entries.saturating_sub(check.checked());
            if room == 0 {
                let more = !self
                    .inner
                    .storage
                    .read_from(check.next_seq(), 1)
                    .await?
                    .is_empty();
                return Ok((check, !more));
            }
            // By key (seq ≥ the next expected), not by offset: each batch is one seek.
            let next = check.next_seq();
            let want = usize::try_from(room.min(VERIFY_BATCH - next % VERIFY_BATCH)).unwrap_or(usize::MAX);
            let batch = self.inner.storage.read_from(next, want).await?;
            if batch.is_empty() {
                return Ok((check, true));
            }
            for (seq, entry) in &batch {
                if !check.feed(*seq, entry.as_ref()) {
                    return Ok((check, true));
                }
            }
            if until.is_some_and(|until| tokio::time::Instant::now() >= until) {
                return Ok((check, false));
            }
        }
    }
}
