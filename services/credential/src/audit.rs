//! The audit log: append-only, hash-chained entries in the `audit_entries` collection.
//!
//! [`AuditLog`] owns the chain head (last sequence number and hash) and writes appends in
//! batches (group commit), so appends are serialized without a read per append. Each entry's `hash` is SHA-256 over its canonical
//! JSON (every field but `hash`, `prevHash` included); a unique index on `seq` stops two writers
//! (replicas) from both extending the chain at the same point — the loser reloads the head and
//! retries. Tampering with any stored entry breaks verification from that entry on.
//!
//! Group commit runs in the callers' own tasks, not on an actor thread: the first caller to find
//! no write in progress becomes the *leader* and writes; callers arriving meanwhile queue up;
//! when its write is done the leader answers the batch it wrote and hands the lead to the first
//! queued caller, which writes everything queued by then in one transaction. So an append costs
//! no thread hop of its own (on the 2-core target a cross-thread wake-up costs more than the
//! SQLite insert), and under load each commit carries every append that arrived during the
//! previous one. A leader that is dropped mid-write (it never is: bus handlers run to the end)
//! still hands the lead on, and the next leader reloads the head from the store.
//!
//! In mesh mode a batch goes to the write-ahead stream instead ([`crate::audit_stream`]): it
//! counts as written once the stream has stored it, and is copied into the collection a moment
//! later; the stream's expected-last-sequence check takes the unique index's place in keeping
//! one chain across replicas.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;
use ttscm_contract::audit::{AuditActor, AuditEvent, AuditTarget, AuditVerification};
use ttscm_runtime::service::CallContext;
use ttscm_runtime::store::{DocumentKeys, FindOptions, IndexSpec, Order};
use ttscm_runtime::{Filter, Store, StoreError, clock, ids};

use crate::audit_stream::{AppendError, AuditStream, StreamHead};

/// Audit entries; owned by the credential service.
pub const AUDIT_ENTRIES: &str = "audit_entries";
const INDEXES: &[IndexSpec] = &[
    IndexSpec {
        name: "seq_unique",
        fields: &["seq"],
        unique: true,
    },
    IndexSpec {
        name: "at",
        fields: &["at"],
        unique: false,
    },
];
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// How long a batch keeps retrying after losing races for the next sequence number (to another
/// replica), before its appends fail. Below the bus request timeout (5 s by default).
const APPEND_DEADLINE: Duration = Duration::from_secs(3);
/// The most scheduler turns a busy leader waits for more appends to join its batch.
const MAX_GATHER_TURNS: usize = 8;
/// The longest pause before a retry.
const MAX_BACKOFF: Duration = Duration::from_millis(10);

/// A random pause before retry `attempt` (1, 2, …), up to 200 µs doubling per attempt, at most
/// [`MAX_BACKOFF`]. Without it, the replica that just won keeps winning: it holds the head in
/// memory and writes its next batch at once, while the loser still reloads the head.
fn backoff(attempt: u32) -> Duration {
    let ceiling = (200u64 << attempt.min(10)).min(MAX_BACKOFF.as_micros() as u64);
    let mut random = [0u8; 8];
    // An RNG failure only loses the jitter.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random);
    Duration::from_micros(u64::from_le_bytes(random) % ceiling)
}

/// What happened, to whom, about what.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    /// e.g. `credential.revealed`.
    pub action: &'static str,
    /// `credential` or `credential_type`.
    pub target_kind: &'static str,
    /// The target's id.
    pub target_id: String,
    /// The credential involved.
    pub credential_id: Option<String>,
    /// The type involved.
    pub type_id: Option<String>,
    /// The company involved.
    pub company_id: Option<String>,
}

/// One append, serialized by its caller before it joins a batch (see [`Prepared`]).
type Entry = Prepared;

/// What a queued caller is told when its turn comes.
enum Turn {
    /// Its entry was written in a batch (or the batch failed).
    Written(Result<(), StoreError>),
    /// It leads now: it writes its entry (handed back) and everything queued behind it.
    Lead(Entry),
}

/// A queued append and where to tell its caller.
type Waiting = (Entry, oneshot::Sender<Turn>);

/// The chain head and the appends waiting for the next write.
#[derive(Default)]
struct State {
    /// `(seq, hash)` of the last entry, once loaded (`None`: load it before writing).
    head: Option<Head>,
    /// Appends waiting for the next batch.
    queue: Vec<Waiting>,
    /// Whether a leader is writing now.
    writing: bool,
    /// Entries in the last batch written (a hint of how busy the log is).
    last_batch: usize,
}

/// The audit chain of one credential service replica.
pub struct AuditLog {
    store: Store,
    /// In mesh mode, the write-ahead stream entries are appended to (see [`crate::audit_stream`]).
    stream: Option<AuditStream>,
    state: Mutex<State>,
}

/// The head of the chain: the last entry's sequence number and hash, and (stream path) the
/// stream sequence of the message holding it.
type Head = StreamHead;

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
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
    fn finish(mut self, head: Option<Head>) {
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

impl AuditLog {
    /// Declares indexes; the head loads lazily on the first append.
    pub async fn prepare(store: &Store) -> Result<(), StoreError> {
        store.ensure_indexes(AUDIT_ENTRIES, INDEXES).await
    }

    /// A log written straight to `store` (embedded mode), or through `stream` (mesh mode).
    pub fn new(store: Store, stream: Option<AuditStream>) -> Self {
        Self {
            store,
            stream,
            state: Mutex::new(State::default()),
        }
    }

    /// Waits until entries appended so far can be read from the store (the stream path copies
    /// them there a moment later).
    pub async fn settled(&self) -> Result<(), StoreError> {
        match &self.stream {
            Some(stream) => stream.settled().await,
            None => Ok(()),
        }
    }

    /// A page of entries matching `query`, newest first, with the total that match; waits
    /// first until entries appended so far can be read (see [`Self::settled`]).
    pub async fn list(
        &self,
        query: &ttscm_contract::audit::ListAuditEvents,
    ) -> Result<ttscm_contract::audit::AuditPage, StoreError> {
        self.settled().await?;
        list(&self.store, query).await
    }

    /// Checks every entry's hash and link, in sequence order; waits first until entries
    /// appended so far can be read (see [`Self::settled`]).
    pub async fn verify(&self) -> Result<AuditVerification, StoreError> {
        self.settled().await?;
        verify(&self.store).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is consistent between statements (no panics while held), so a poisoned
        // lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Passes the lead to the first queued caller still waiting, or ends the writing.
    fn hand_on(state: &mut State) {
        while !state.queue.is_empty() {
            let (entry, turn) = state.queue.remove(0);
            if turn.send(Turn::Lead(entry)).is_ok() {
                return;
            }
            // That caller is gone, and its request with it: its entry is not written.
        }
        state.writing = false;
    }

    /// Appends one record; answers once it is stored (and fails if it could not be).
    pub async fn append(&self, ctx: &CallContext, record: AuditRecord) -> Result<(), StoreError> {
        // Serialized here, in the caller's task, so the leader's write — which every request in
        // the batch waits for — only places the entry in the chain and hashes it.
        let entry = Prepared::new(ctx, &record);
        let told = {
            let mut state = self.lock();
            if state.writing {
                let (turn, told) = oneshot::channel();
                state.queue.push((entry, turn));
                Ok(told)
            } else {
                state.writing = true;
                Err(entry)
            }
        };
        match told {
            Err(entry) => self.lead(entry).await,
            Ok(told) => match told.await {
                Ok(Turn::Written(result)) => result,
                Ok(Turn::Lead(entry)) => self.lead(entry).await,
                Err(_) => Err(StoreError::Unavailable("the audit log stopped".into())),
            },
        }
    }

    /// Writes `own` and everything queued, answers the queued callers, hands the lead on, and
    /// answers the batch's result.
    async fn lead(&self, own: Entry) -> Result<(), StoreError> {
        let guard = LeadGuard {
            log: self,
            done: false,
        };
        // Under load, let the tasks already runnable on this thread reach their appends first,
        // so they join this batch: a SQLite commit never yields, so without this each would
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
            state.last_batch = state.queue.len() + 1;
            (state.head.clone(), std::mem::take(&mut state.queue))
        };
        let mut records = Vec::with_capacity(queued.len() + 1);
        let mut turns = Vec::with_capacity(queued.len());
        records.push(own);
        for (entry, turn) in queued {
            records.push(entry);
            turns.push(turn);
        }
        let result = match &self.stream {
            Some(stream) => write_batch_to_stream(stream, head, &records).await,
            None => write_batch(&self.store, head, &records).await,
        };
        let (head, answer) = match result {
            Ok(head) => (Some(head), Ok(())),
            Err(error) => (None, Err(error)),
        };
        for turn in turns {
            let _ = turn.send(Turn::Written(answer.clone()));
        }
        guard.finish(head);
        answer
    }
}

/// The last entry of the collection (`(0, GENESIS)` when empty).
pub(crate) async fn load_head(store: &Store) -> Result<(u64, String), StoreError> {
    let last = store
        .find(
            AUDIT_ENTRIES,
            &FindOptions::new(Filter::All).sort("seq", Order::Desc).page(0, 1),
        )
        .await?;
    Ok(match last.first() {
        Some(entry) => (
            entry.get("seq").and_then(Value::as_u64).unwrap_or(0),
            entry
                .get("hash")
                .and_then(Value::as_str)
                .unwrap_or(GENESIS)
                .to_owned(),
        ),
        None => (0, GENESIS.to_owned()),
    })
}

/// `records` chained after `(seq, hash)`: the entries to store and the new head.
fn chain(records: &[Prepared], (mut seq, mut prev): (u64, String)) -> (Vec<Stored>, (u64, String)) {
    let mut entries = Vec::with_capacity(records.len());
    for prepared in records {
        seq += 1;
        let (stored, hash) = prepared.seal(seq, &prev);
        prev = hash;
        entries.push(stored);
    }
    (entries, (seq, prev))
}

fn contended() -> StoreError {
    StoreError::Unavailable("the audit chain is contended; try again".into())
}

/// Writes one batch after `head`, retrying from a fresh head when another writer extended the
/// chain first. Entries that did get stored before a conflict (MongoDB keeps those before the
/// failed one) are recognised by id and not written twice. Answers the new head.
async fn write_batch(store: &Store, head: Option<Head>, records: &[Prepared]) -> Result<Head, StoreError> {
    let mut head = match head {
        Some(known) => (known.seq, known.hash),
        None => load_head(store).await?,
    };
    tracing::trace!(entries = records.len(), "writing an audit batch");
    let mut start = 0;
    let deadline = Instant::now() + APPEND_DEADLINE;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (entries, last) = chain(&records[start..], head.clone());
        let stored = store
            .insert_many_as(AUDIT_ENTRIES, &entries, |e| DocumentKeys {
                id: &e.id,
                sequence: Some(e.seq),
                json: Some(&e.json),
            })
            .await;
        match stored {
            Ok(()) => head = last,
            Err(StoreError::Conflict) if Instant::now() < deadline => {
                tokio::time::sleep(backoff(attempt)).await;
                head = load_head(store).await?;
                // Skip the entries of this batch that are already stored.
                while start < records.len() && store.get(AUDIT_ENTRIES, &records[start].id).await?.is_some() {
                    start += 1;
                }
                if start < records.len() {
                    continue;
                }
            }
            Err(StoreError::Conflict) => return Err(contended()),
            Err(other) => return Err(other),
        }
        return Ok(Head {
            seq: head.0,
            hash: head.1,
            stream_seq: 0,
        });
    }
}

/// Writes one batch after `head` to the write-ahead stream, in messages of at most
/// [`crate::audit_stream::ENTRIES_PER_MESSAGE`] entries, each expecting the one before it;
/// retries from a fresh head when another replica appended first (a refused message stored
/// nothing). Answers the new head.
async fn write_batch_to_stream(
    stream: &AuditStream,
    head: Option<Head>,
    records: &[Prepared],
) -> Result<Head, StoreError> {
    let mut head = match head {
        Some(known) => known,
        None => stream.head().await?,
    };
    let deadline = Instant::now() + APPEND_DEADLINE;
    let mut attempt = 0;
    let mut start = 0;
    while start < records.len() {
        let end = records
            .len()
            .min(start + crate::audit_stream::ENTRIES_PER_MESSAGE);
        let (entries, (seq, hash)) = chain(&records[start..end], (head.seq, head.hash.clone()));
        match stream.append(head.stream_seq, &entries).await {
            Ok(stream_seq) => {
                head = Head {
                    seq,
                    hash,
                    stream_seq,
                };
                start = end;
            }
            Err(AppendError::Conflict) if Instant::now() < deadline => {
                attempt += 1;
                tokio::time::sleep(backoff(attempt)).await;
                head = stream.head().await?;
            }
            Err(AppendError::Conflict) => return Err(contended()),
            Err(AppendError::Unavailable(reason)) => {
                return Err(StoreError::Unavailable(reason));
            }
        }
    }
    Ok(head)
}

/// The hash of an entry: SHA-256 over its canonical JSON without `hash` (as the empty string).
pub fn entry_hash(event: &AuditEvent) -> String {
    if event.hash.is_empty() {
        return unhashed_digest(event);
    }
    let mut unhashed = event.clone();
    unhashed.hash = String::new();
    unhashed_digest(&unhashed)
}

fn unhashed_digest(event: &AuditEvent) -> String {
    let bytes = serde_json::to_vec(event).expect("audit events serialize");
    hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes))
}

/// An entry as it is stored: its id, its sequence number and its JSON (handed to the store as
/// text, so it is neither parsed again nor serialized again).
pub(crate) struct Stored {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) json: String,
}

impl serde::Serialize for Stored {
    /// The entry's JSON as it is (the store takes `json` directly; this is the general path).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &serde_json::value::RawValue =
            serde_json::from_str(&self.json).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

/// An entry's canonical JSON before it has a place in the chain: everything but `seq` and
/// `prevHash`, which the batch's leader fills in. Made by the appending caller, so the
/// serialization runs in parallel across requests instead of inside the leader's write.
struct Prepared {
    /// The entry's id (kept across retries, so an entry already stored is recognised).
    id: String,
    /// `{"id":"…","seq":` — the JSON before the sequence number.
    head: String,
    /// `,"at":…,"prevHash":"` — the JSON between the sequence number and the previous hash.
    body: String,
}

/// The end of an entry's canonical JSON after `prevHash`'s value: `hash`, empty, is its last
/// field (hex digits need no escaping, so the value is spliced in as it is).
const UNHASHED_TAIL: &str = r#"","hash":""}"#;

impl Prepared {
    fn new(ctx: &CallContext, record: &AuditRecord) -> Self {
        let id = ids::new_id();
        let json = serde_json::to_string(&build(ctx, record, &id, 0, "")).expect("audit events serialize");
        // `{"id":"<id>","seq":0,…,"prevHash":"","hash":""}`: `id` (an id, nothing to escape)
        // and `seq` are the struct's first fields, `prevHash` and `hash` its last.
        // Checked in every build: the slicing below relies on that layout.
        let seq_at = json.find(r#","seq":0,"#).expect("seq follows id") + r#","seq":"#.len();
        assert!(
            json.ends_with(r#""prevHash":"","hash":""}"#),
            "prevHash and hash end an audit entry"
        );
        Self {
            head: json[..seq_at].to_owned(),
            body: json[seq_at + 1..json.len() - UNHASHED_TAIL.len()].to_owned(),
            id,
        }
    }

    /// The entry at `seq` after `prev_hash`, ready to store, and its hash (SHA-256 over the
    /// canonical JSON with `hash` empty, as [`entry_hash`] computes it).
    fn seal(&self, seq: u64, prev_hash: &str) -> (Stored, String) {
        let mut digits = itoa::Buffer::new();
        let seq_text = digits.format(seq);
        let mut json = String::with_capacity(
            self.head.len() + seq_text.len() + self.body.len() + prev_hash.len() + 64 + UNHASHED_TAIL.len(),
        );
        json.push_str(&self.head);
        json.push_str(seq_text);
        json.push_str(&self.body);
        json.push_str(prev_hash);
        json.push_str(UNHASHED_TAIL);
        let mut hex = [0u8; 64];
        hex::encode_to_slice(
            ring::digest::digest(&ring::digest::SHA256, json.as_bytes()),
            &mut hex,
        )
        .expect("64 hex digits hold 32 bytes");
        let hash = std::str::from_utf8(&hex).expect("hex digits are ASCII");
        json.truncate(json.len() - 2);
        json.push_str(hash);
        json.push_str("\"}");
        debug_assert!(serde_json::from_str::<serde::de::IgnoredAny>(&json).is_ok());
        let stored = Stored {
            id: self.id.clone(),
            seq,
            json,
        };
        (stored, hash.to_owned())
    }
}

fn build(ctx: &CallContext, record: &AuditRecord, id: &str, seq: u64, prev_hash: &str) -> AuditEvent {
    let (actor_id, kind, name) = match &ctx.principal {
        Some(p) => (p.id.clone(), p.kind, p.name.clone()),
        None => (
            "system".to_owned(),
            ttscm_contract::PrincipalKind::ApiToken,
            "system".to_owned(),
        ),
    };
    AuditEvent {
        id: id.to_owned(),
        seq,
        at: clock::now_iso(),
        action: record.action.to_owned(),
        actor: AuditActor {
            id: actor_id,
            kind,
            name,
        },
        target: AuditTarget {
            kind: record.target_kind.to_owned(),
            id: record.target_id.clone(),
        },
        credential_id: record.credential_id.clone(),
        type_id: record.type_id.clone(),
        company_id: record.company_id.clone(),
        request_id: ctx.request_id.clone(),
        client_ip: ctx.client_ip.clone(),
        prev_hash: prev_hash.to_owned(),
        hash: String::new(),
    }
}

/// Checks every entry's hash and link, in sequence order.
pub async fn verify(store: &Store) -> Result<AuditVerification, StoreError> {
    const BATCH: u64 = 1000;
    let mut expected_prev = GENESIS.to_owned();
    let mut expected_seq = 1u64;
    let mut checked = 0u64;
    loop {
        let batch = store
            .find(
                AUDIT_ENTRIES,
                // By key (seq ≥ the next expected), not by offset: each batch is one seek.
                &FindOptions::new(Filter::Gte(
                    "seq".into(),
                    i64::try_from(expected_seq).unwrap_or(i64::MAX).into(),
                ))
                .sort("seq", Order::Asc)
                .page(0, BATCH),
            )
            .await?;
        if batch.is_empty() {
            return Ok(AuditVerification {
                valid: true,
                entries: checked,
                first_broken_seq: None,
            });
        }
        for document in &batch {
            let seq = document.get("seq").and_then(Value::as_u64).unwrap_or(0);
            let event: Option<AuditEvent> = serde_json::from_value(Value::Object(document.clone())).ok();
            let intact = event.is_some_and(|e| {
                e.seq == expected_seq && e.prev_hash == expected_prev && entry_hash(&e) == e.hash && {
                    expected_prev = e.hash.clone();
                    true
                }
            });
            checked += 1;
            if !intact {
                return Ok(AuditVerification {
                    valid: false,
                    entries: checked,
                    first_broken_seq: Some(seq.max(expected_seq)),
                });
            }
            expected_seq += 1;
        }
    }
}

/// A page of entries matching the query, newest first.
pub async fn list(
    store: &Store,
    query: &ttscm_contract::audit::ListAuditEvents,
) -> Result<ttscm_contract::audit::AuditPage, StoreError> {
    let mut all = Vec::new();
    if let Some(actor) = &query.actor {
        all.push(Filter::eq("actor.id", actor.as_str()));
    }
    if let Some(target) = &query.target {
        all.push(Filter::eq("target.id", target.as_str()));
    }
    if let Some(action) = &query.action {
        all.push(Filter::eq("action", action.as_str()));
    }
    if let Some(from) = &query.from {
        all.push(Filter::Gte("at".into(), from.as_str().into()));
    }
    if let Some(to) = &query.to {
        all.push(Filter::Lt("at".into(), to.as_str().into()));
    }
    let filter = Filter::And(all);
    let total = store.count(AUDIT_ENTRIES, &filter).await?;
    let skip = query.page.saturating_sub(1).saturating_mul(query.rpp);
    let documents = store
        .find(
            AUDIT_ENTRIES,
            &FindOptions::new(filter)
                .sort("seq", Order::Desc)
                .page(skip, query.rpp),
        )
        .await?;
    let items = documents
        .into_iter()
        .map(|d| serde_json::from_value(Value::Object(d)).map_err(|e| StoreError::Corrupt(e.to_string())))
        .collect::<Result<_, _>>()?;
    Ok(ttscm_contract::audit::AuditPage { items, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored JSON, made from the hashed JSON by splicing in the hash, reads back as the
    /// entry with that hash, and verification recomputes the same hash — names with quotes,
    /// escapes and non-ASCII included.
    #[test]
    fn a_stored_entry_verifies_against_the_hash_it_was_stored_with() {
        let ctx = CallContext {
            principal: Some(std::sync::Arc::new(ttscm_contract::Principal {
                id: "u1".into(),
                kind: ttscm_contract::PrincipalKind::User,
                name: "Zoë \"the admin\" \\ O'Brien\n".into(),
                permissions: Default::default(),
                scopes: Vec::new(),
                session_id: None,
            })),
            request_id: "r1".into(),
            client_ip: Some("::1".into()),
            ..CallContext::default()
        };
        let record = AuditRecord {
            action: "credential.revealed",
            target_kind: "credential",
            target_id: "c1".into(),
            credential_id: Some("c1".into()),
            type_id: None,
            company_id: Some("k1".into()),
        };
        let prepared = Prepared::new(&ctx, &record);
        let (stored, hash) = prepared.seal(7, GENESIS);
        let read: AuditEvent = serde_json::from_str(&stored.json).expect("stored JSON is an entry");
        assert_eq!(read.hash, hash);
        assert_eq!(read.seq, 7);
        assert_eq!(read.id, prepared.id);
        assert_eq!(read.prev_hash, GENESIS);
        // The stored text is the entry's canonical JSON, as serde writes it.
        assert_eq!(stored.json, serde_json::to_string(&read).expect("serializes"));
        // Placed again further along the chain, the same entry hashes differently.
        let (later, later_hash) = prepared.seal(12_345_678_901, &hash);
        let later: AuditEvent = serde_json::from_str(&later.json).expect("stored JSON is an entry");
        assert_eq!(
            (later.seq, later.prev_hash.as_str()),
            (12_345_678_901, hash.as_str())
        );
        assert_eq!(entry_hash(&later), later_hash);
        assert_eq!(read.actor.name, "Zoë \"the admin\" \\ O'Brien\n");
        assert_eq!(entry_hash(&read), hash);
        let mut tampered = read.clone();
        tampered.company_id = Some("k2".into());
        assert_ne!(entry_hash(&tampered), hash);
    }
}
