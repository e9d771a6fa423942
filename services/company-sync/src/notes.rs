//! The durable queue of internal notes to post on ConnectWise tickets ([`QueueTicketNote`]),
//! in the `ticket_notes` collection (owned by company-sync).
//!
//! - **Queueing** stores a document whose id is the caller's `key` and answers once it is
//!   stored; queueing the same key again is the same note (the insert's conflict is success).
//! - **Posting** runs in a background job on every replica ([`NoteQueue::run_forever`]): due
//!   notes oldest first, each claimed by one replica at a time (a conditional update setting
//!   `claimUntil`; a replica that stops mid-post lets go of its claim, one that dies loses it
//!   after [`CLAIM`]). A posted note
//!   stays as `state: posted` for [`POSTED_KEPT`], so a late second queueing of its key does not
//!   post it twice; a failed attempt records `attempts` and `lastError` (ConnectWise's answer,
//!   never a key) and waits an exponential backoff ([`NOTE_BACKOFF`]) before the next one.
//!   After [`GIVE_UP_AFTER`] of failures (or at once on a 400, which retrying cannot fix) the
//!   note turns `state: failed`, is logged as an error and is kept.
//! - The job polls every [`BUSY_POLL`] while notes wait, every [`IDLE_POLL`] otherwise (notes
//!   another replica queued and could not post), and wakes at once when a note is queued on
//!   this replica.
//!
//! Delivery is at least once: a POST that ConnectWise carried out but whose answer was lost is
//! posted again.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;
use ttscm_contract::company::QueueTicketNote;
use ttscm_contract::{FieldError, WireError};
use ttscm_runtime::retry::Backoff;
use ttscm_runtime::service::{CallContext, ServiceOp, store_failed};
use ttscm_runtime::store::{Document, FindOptions, IndexSpec, Order, Scalar};
use ttscm_runtime::{Filter, Shutdown, Store, StoreError, Update, clock, ids};

use crate::connectwise::{ConnectWiseError, RetryPolicy};
use crate::service::Service;
use crate::sync::{SyncError, Upstream};

/// The note queue: owned by company-sync.
pub const TICKET_NOTES: &str = "ticket_notes";
/// How long a replica's claim on a note holds (far beyond one post's 10 s).
pub const CLAIM: Duration = Duration::from_secs(60);
/// How long failing notes are retried before they turn `failed`.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a posted note's key is remembered.
pub const POSTED_KEPT: Duration = Duration::from_secs(24 * 60 * 60);
/// The wait after failed attempt `n`: up to 0.5 s × 2ⁿ, at most 10 minutes, full jitter.
pub const NOTE_BACKOFF: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(600));
/// The poll while notes wait.
pub const BUSY_POLL: Duration = Duration::from_secs(1);
/// The poll while the queue is empty.
pub const IDLE_POLL: Duration = Duration::from_secs(30);
/// How often posted notes past [`POSTED_KEPT`] are removed.
const SWEEP_EVERY: Duration = Duration::from_secs(10 * 60);
/// Notes one pass looks at.
const BATCH: u64 = 50;
/// Longest key.
const MAX_KEY_CHARS: usize = 200;
/// Longest note text.
const MAX_TEXT_CHARS: usize = 4000;
/// Longest error text recorded on a note.
const MAX_ERROR_CHARS: usize = 500;

const QUEUED: &str = "queued";
const POSTED: &str = "posted";
const FAILED: &str = "failed";

const INDEXES: &[IndexSpec] = &[IndexSpec {
    name: "state_queued_at",
    fields: &["state", "queuedAtMs"],
    unique: false,
}];

/// The queue and its poster.
pub struct NoteQueue {
    store: Store,
    upstream: Arc<Upstream>,
    /// Rung when a note is queued on this replica.
    wake: Notify,
    /// This replica's name on its claims.
    holder: String,
    /// How long failing notes are retried ([`GIVE_UP_AFTER`]; shorter in tests).
    give_up_after: Duration,
}

impl std::fmt::Debug for NoteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteQueue")
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

/// A queued note as stored.
struct QueuedNote {
    id: String,
    ticket_id: u64,
    text: String,
    queued_at_ms: i64,
    attempts: u64,
}

impl QueuedNote {
    fn from_document(document: &Document) -> Option<Self> {
        Some(Self {
            id: document.get("id")?.as_str()?.to_owned(),
            ticket_id: document.get("ticketId")?.as_u64()?,
            text: document.get("text")?.as_str()?.to_owned(),
            queued_at_ms: document.get("queuedAtMs")?.as_i64()?,
            attempts: document.get("attempts").and_then(Value::as_u64).unwrap_or(0),
        })
    }
}

impl NoteQueue {
    /// A queue in `store`, posting through `upstream`.
    pub fn new(store: Store, upstream: Arc<Upstream>) -> Self {
        Self {
            store,
            upstream,
            wake: Notify::new(),
            holder: ids::new_id(),
            give_up_after: GIVE_UP_AFTER,
        }
    }

    /// The same queue giving failing notes up after `give_up_after` instead of 24 h.
    #[must_use]
    pub fn give_up_after(self, give_up_after: Duration) -> Self {
        Self {
            give_up_after,
            ..self
        }
    }

    /// Declares the collection and its index.
    pub async fn prepare(store: &Store) -> Result<(), StoreError> {
        store.ensure_indexes(TICKET_NOTES, INDEXES).await
    }

    /// Stores a note (once per `key`) and wakes the poster.
    pub async fn queue(&self, key: &str, ticket_id: u64, text: &str) -> Result<(), StoreError> {
        let now = clock::unix_now_millis();
        let document = json!({
            "id": key,
            "ticketId": ticket_id,
            "text": text,
            "state": QUEUED,
            "queuedAt": clock::now_iso(),
            "queuedAtMs": now,
            "nextAt": now,
            "claimUntil": 0,
            "attempts": 0,
        });
        let Value::Object(document) = document else {
            unreachable!("a JSON object literal")
        };
        match self.store.insert(TICKET_NOTES, document).await {
            Ok(()) => {
                tracing::debug!(ticket_id, "ticket note queued");
                self.wake.notify_one();
                Ok(())
            }
            Err(StoreError::Conflict) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Posts queued notes until `shutdown`.
    pub async fn run_forever(self: Arc<Self>, shutdown: Shutdown) {
        let mut swept_at: Option<tokio::time::Instant> = None;
        loop {
            // Shutdown does not wait for a pass (up to a batch of posts): a note whose post is
            // cut short is let go, and posted again by whoever comes next (at least once).
            let pass = tokio::select! {
                () = shutdown.cancelled() => {
                    self.release_claims().await;
                    return;
                }
                pass = self.post_due() => pass,
            };
            let waiting = match pass {
                Ok(waiting) => waiting,
                Err(error) => {
                    tracing::warn!(%error, "the ticket-note queue could not be read");
                    true
                }
            };
            if swept_at.is_none_or(|at| at.elapsed() >= SWEEP_EVERY) {
                swept_at = Some(tokio::time::Instant::now());
                if let Err(error) = self.sweep_posted().await {
                    tracing::warn!(%error, "posted ticket notes could not be swept");
                }
            }
            let poll = if waiting { BUSY_POLL } else { IDLE_POLL };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Posts the notes that are due, oldest first; answers whether queued notes remain.
    pub async fn post_due(&self) -> Result<bool, StoreError> {
        if !self.upstream.enabled() {
            // Kept until ConnectWise is configured.
            return Ok(false);
        }
        let now = clock::unix_now_millis();
        let due = FindOptions::new(Filter::And(vec![
            Filter::eq("state", QUEUED),
            Filter::Lte("nextAt".into(), Scalar::Int(now)),
            Filter::Lt("claimUntil".into(), Scalar::Int(now)),
        ]))
        .sort("queuedAtMs", Order::Asc)
        .sort("id", Order::Asc)
        .page(0, BATCH);
        for document in self.store.find(TICKET_NOTES, &due).await? {
            let Some(note) = QueuedNote::from_document(&document) else {
                tracing::error!("an unreadable ticket note is skipped");
                continue;
            };
            if self.claim(&note.id).await? {
                self.post(note).await?;
            }
        }
        let waiting = self
            .store
            .count(TICKET_NOTES, &Filter::eq("state", QUEUED))
            .await?;
        Ok(waiting > 0)
    }

    /// Lets go of this replica's claims (stopping mid-post). Without it the next replica waits
    /// out [`CLAIM`] — a minute — before it posts a note a restart cut short.
    async fn release_claims(&self) {
        let ours = Filter::And(vec![
            Filter::eq("claimedBy", self.holder.as_str()),
            Filter::eq("state", QUEUED),
        ]);
        let free = Update::default().set("claimUntil", 0);
        match self.store.update_many(TICKET_NOTES, &ours, &free).await {
            Ok(0) => {}
            Ok(released) => tracing::info!(released, "ticket notes released for another replica"),
            Err(error) => tracing::warn!(%error, "ticket-note claims not released; they lapse by themselves"),
        }
    }

    /// Takes note `id` for this replica, unless another holds it.
    async fn claim(&self, id: &str) -> Result<bool, StoreError> {
        let now = clock::unix_now_millis();
        let free = Filter::And(vec![
            Filter::id(id),
            Filter::eq("state", QUEUED),
            Filter::Lt("claimUntil".into(), Scalar::Int(now)),
        ]);
        let claim = Update::default()
            .set("claimUntil", now + CLAIM.as_millis() as i64)
            .set("claimedBy", self.holder.clone());
        self.store.update_one(TICKET_NOTES, &free, &claim).await
    }

    /// One attempt at a claimed note; records its outcome.
    async fn post(&self, note: QueuedNote) -> Result<(), StoreError> {
        let outcome = match self.upstream.client().await {
            Ok(client) => client
                .with_retry(RetryPolicy::once())
                .post_internal_note(note.ticket_id, &note.text)
                .await
                .map_err(SyncError::ConnectWise),
            Err(error) => Err(error),
        };
        let ours = Filter::And(vec![
            Filter::id(&note.id),
            Filter::eq("claimedBy", self.holder.as_str()),
        ]);
        let attempts = note.attempts + 1;
        let now = clock::unix_now_millis();
        let update = match outcome {
            Ok(()) => {
                tracing::info!(
                    ticket_id = note.ticket_id,
                    attempts,
                    "ticket note posted to ConnectWise"
                );
                Update::default()
                    .set("state", POSTED)
                    .set("postedAt", clock::now_iso())
                    .set("postedAtMs", now)
                    .set("attempts", attempts)
                    .set("claimUntil", 0)
                    .unset("lastError")
            }
            Err(error) => {
                let text: String = error.to_string().chars().take(MAX_ERROR_CHARS).collect();
                let lasting = matches!(
                    error,
                    SyncError::ConnectWise(ConnectWiseError::Rejected { status: 400, .. })
                );
                let expired = now.saturating_sub(note.queued_at_ms) >= self.give_up_after.as_millis() as i64;
                let update = Update::default()
                    .set("attempts", attempts)
                    .set("lastError", text.clone())
                    .set("lastAttemptAt", clock::now_iso())
                    .set("claimUntil", 0);
                if lasting || expired {
                    tracing::error!(
                        ticket_id = note.ticket_id,
                        attempts,
                        error = %text,
                        "a ticket note could not be posted to ConnectWise; it is kept as failed"
                    );
                    update.set("state", FAILED).set("failedAt", clock::now_iso())
                } else {
                    let retry = u32::try_from(note.attempts).unwrap_or(u32::MAX);
                    let wait = NOTE_BACKOFF.delay(retry);
                    tracing::warn!(
                        ticket_id = note.ticket_id,
                        attempts,
                        error = %text,
                        ?wait,
                        "posting a ticket note to ConnectWise failed; it is retried"
                    );
                    update.set("nextAt", now + wait.as_millis() as i64)
                }
            }
        };
        self.store
            .update_one(TICKET_NOTES, &ours, &update)
            .await
            .map(|_| ())
    }

    /// Removes posted notes older than [`POSTED_KEPT`].
    async fn sweep_posted(&self) -> Result<u64, StoreError> {
        let before = clock::unix_now_millis() - POSTED_KEPT.as_millis() as i64;
        self.store
            .delete_many(
                TICKET_NOTES,
                &Filter::And(vec![
                    Filter::eq("state", POSTED),
                    Filter::Lt("postedAtMs".into(), Scalar::Int(before)),
                ]),
            )
            .await
    }
}

fn invalid(field: &str, message: &str) -> WireError {
    WireError::validation(vec![FieldError::new(vec![json!(field)], message)])
}

/// Queues an internal note on a ticket; answers once it is stored.
impl ServiceOp<Service> for QueueTicketNote {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<(), WireError> {
        let key = self.key.trim();
        if key.is_empty() || key.chars().count() > MAX_KEY_CHARS || key.chars().any(char::is_control) {
            return Err(invalid(
                "key",
                &format!("a key is 1 to {MAX_KEY_CHARS} printable characters"),
            ));
        }
        if self.ticket_id == 0 || i64::try_from(self.ticket_id).is_err() {
            return Err(invalid("ticketId", "a ticket number is a positive integer"));
        }
        if self.text.trim().is_empty() || self.text.chars().count() > MAX_TEXT_CHARS {
            return Err(invalid(
                "text",
                &format!("a note is 1 to {MAX_TEXT_CHARS} characters"),
            ));
        }
        service
            .notes
            .queue(key, self.ticket_id, &self.text)
            .await
            .map_err(store_failed)
    }
}
