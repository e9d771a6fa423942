//! The audit log's write-ahead stream, used when the bus is NATS: entries are appended to the
//! JetStream stream `TTSCM_AUDIT` (file storage) and copied from there into the storage (the
//! MongoDB collection, or the journal when NATS runs with the embedded store), where they are
//! listed and verified.
//!
//! Why: an acknowledged JetStream publish is one round trip to nats-server, which a reveal
//! already depends on; a MongoDB insert (with the `seq` and `at` indexes) is a slower one. The
//! reveal still waits for its entry to be stored durably before its values leave (fail closed) —
//! stored in the stream. Nothing is lost while the storage is down: entries wait in the stream
//! until the copier writes them.
//!
//! - **One chain across writers.** Each batch of entries is one message, published with
//!   `Nats-Expected-Last-Sequence` = the stream sequence of the message that holds the head the
//!   writer chained onto. If another writer appended first, the server refuses the publish
//!   (nothing stored) and the writer reloads the head and retries — the same optimistic scheme
//!   as the `seq` unique index on the direct path.
//! - **Work queue.** The stream keeps an entry until the copier (a durable pull consumer,
//!   shared by all replicas) has stored it and acknowledged it; then the server removes it. So
//!   the stream holds only entries not yet copied, and when it is empty the storage holds them
//!   all.
//! - **The head**, when a writer does not know it: the last message of the stream, or — when
//!   the stream is empty (everything copied) — the storage's last entry.
//! - **Reads settle first, briefly.** Listing and verifying wait a moment (up to half a second) for
//!   every entry in the stream when they start to be copied, so a client reads its own writes;
//!   when copying lags behind (a store that was down, a burst), they serve what is stored and
//!   say how many entries are still on their way (`pending`) rather than fail.
//! - **A redelivered message** (the copier stopped between insert and acknowledgement) finds
//!   some entries already stored: one read of the batch's range finds which, and the rest are
//!   stored in one insert (not one lookup per entry: a redelivered burst is copied as fast as a
//!   new one).
//!
//! Entries carry no secret (who, what, which ids, when): they may travel on the bus.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use tokio::time::Instant;
use ttscm_contract::subjects::{AUDIT_STREAM, AUDIT_SUBJECT};

use super::chain::AuditEntryText;
use super::{AuditHead, AuditStorage};
use crate::Shutdown;
use crate::store::StoreError;

/// The durable consumer that copies entries into the storage.
const COPIER: &str = "audit-copier";
/// How long an append waits for the server's acknowledgement (below the bus request timeout).
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long [`AuditStream::settled`] waits for earlier entries to reach the storage (well below
/// the bus request timeout, so a storage outage answers 503, not 504).
const SETTLE_DEADLINE: Duration = Duration::from_secs(2);
/// Entries per message (a batch larger than this is several messages).
pub const ENTRIES_PER_MESSAGE: usize = 256;
/// How long the copier gathers arriving messages before it stores them (one insert for all).
const GATHER: Duration = Duration::from_millis(20);
/// The most messages the copier stores at once.
const GATHER_MESSAGES: usize = 64;
/// Pause before the copier retries after an error.
const COPY_RETRY: Duration = Duration::from_millis(250);
/// How long a copier may hold a message without acknowledging it before the server hands it
/// to another copier.
const ACK_WAIT: Duration = Duration::from_secs(10);
/// How long one pull request waits for messages before the copier asks again.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// How often the server says a pull request is still alive (two missed: the copier starts over).
const PULL_HEARTBEAT: Duration = Duration::from_secs(2);
/// While the storage refuses a batch, the copier tells the server it is still working on its
/// messages every this many retries (well within `ACK_WAIT`).
const PROGRESS_EVERY: u32 = 8;

/// Where the next batch goes: after the chain's head, and — ahead of a stream — after the
/// message holding it (its stream sequence is what the next publish expects; 0 on the direct
/// path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppendPoint {
    pub(crate) head: AuditHead,
    pub(crate) stream_seq: u64,
}

/// Why an append did not happen.
#[derive(Debug)]
pub(crate) enum AppendError {
    /// Another writer appended after the expected message: nothing was stored.
    Conflict,
    /// The stream could not be reached or did not answer; the entries may or may not be stored.
    Unavailable(String),
}

/// The write-ahead stream on a NATS connection.
#[derive(Clone)]
pub struct AuditStream {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    replicas: usize,
}

impl std::fmt::Debug for AuditStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditStream").finish_non_exhaustive()
    }
}

fn unavailable(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("the audit stream: {what}: {error}"))
}

impl AuditStream {
    /// The stream over `client`, created with `replicas` copies (at least 1) when absent.
    pub fn new(client: async_nats::Client, replicas: usize) -> Self {
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(ACK_TIMEOUT);
        Self {
            client,
            jetstream,
            replicas: replicas.max(1),
        }
    }

    fn connected(&self) -> Result<(), StoreError> {
        if self.client.connection_state() == async_nats::connection::State::Connected {
            Ok(())
        } else {
            Err(StoreError::Unavailable("the bus is disconnected".into()))
        }
    }

    /// The stream, created if absent.
    async fn stream(&self) -> Result<stream::Stream, StoreError> {
        self.connected()?;
        self.jetstream
            .get_or_create_stream(stream::Config {
                name: AUDIT_STREAM.to_owned(),
                subjects: vec![AUDIT_SUBJECT.to_owned()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                num_replicas: self.replicas,
                deny_delete: true,
                deny_purge: true,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable("cannot open", e))
    }

    /// The head of the chain: the later of the stream's last message and `storage`'s last
    /// entry (the storage's alone when every message has been copied).
    ///
    /// Why the storage too: nats-server acknowledges a publish before its file store has
    /// written it out, and the copier may receive (and store) a message in that window; killed
    /// then, the server restarts without the message, and a head read from the stream alone
    /// would be behind the storage — the next entries would take sequence numbers the storage
    /// already holds under other ids (a fork: the copier could not store them). While the
    /// storage cannot be read the stream's head is used (appends go on through a store
    /// outage); that window is what remains.
    pub(crate) async fn head(&self, storage: &AuditStorage) -> Result<AppendPoint, StoreError> {
        let stream = self.stream().await?;
        let state = stream
            .get_info()
            .await
            .map_err(|e| unavailable("no stream info", e))?
            .state;
        let stream_seq = state.last_sequence;
        if state.messages > 0 {
            match stream.get_raw_message(stream_seq).await {
                Ok(message) => {
                    let last = parse_entries(&message.payload)?
                        .pop()
                        .ok_or_else(|| StoreError::Corrupt("an empty audit stream message".into()))?;
                    let streamed = AuditHead {
                        seq: last.seq,
                        hash: last.hash,
                    };
                    let head = match storage.head().await {
                        Ok(stored) if stored.seq > streamed.seq => {
                            tracing::warn!(
                                stream = streamed.seq,
                                stored = stored.seq,
                                "the audit stream lost entries the store holds (a nats-server crash?); chaining after the store's"
                            );
                            stored
                        }
                        Ok(_) => streamed,
                        Err(error) => {
                            tracing::debug!(%error, "the audit store's head is unknown; chaining after the stream's");
                            streamed
                        }
                    };
                    return Ok(AppendPoint { head, stream_seq });
                }
                // Copied (and removed) since the info: the storage holds it now.
                Err(error) if error.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {}
                Err(error) => return Err(unavailable("cannot read the last message", error)),
            }
        }
        Ok(AppendPoint {
            head: storage.head().await?,
            stream_seq,
        })
    }

    /// Appends `entries` (already chained after the head in message `after`) as one message;
    /// answers the message's stream sequence.
    pub(crate) async fn append(&self, after: u64, entries: &[AuditEntryText]) -> Result<u64, AppendError> {
        if self.connected().is_err() {
            return Err(AppendError::Unavailable(
                "the audit stream: the bus is disconnected".into(),
            ));
        }
        let mut payload = Vec::with_capacity(entries.iter().map(|e| e.json.len() + 1).sum());
        for entry in entries {
            payload.extend_from_slice(entry.json.as_bytes());
            payload.push(b'\n');
        }
        let message = jetstream::message::PublishMessage::build()
            .payload(Bytes::from(payload))
            .expected_last_sequence(after);
        let mut created = false;
        loop {
            let ack = match self.jetstream.send_publish(AUDIT_SUBJECT, message.clone()).await {
                Ok(ack) => ack.await,
                Err(error) => return Err(AppendError::Unavailable(format!("the audit stream: {error}"))),
            };
            return match ack {
                Ok(ack) => Ok(ack.sequence),
                Err(error) => match error.kind() {
                    jetstream::context::PublishErrorKind::WrongLastSequence => Err(AppendError::Conflict),
                    jetstream::context::PublishErrorKind::StreamNotFound if !created => {
                        // First append of a new deployment (or the stream was removed).
                        self.stream()
                            .await
                            .map_err(|e| AppendError::Unavailable(e.to_string()))?;
                        created = true;
                        continue;
                    }
                    _ => Err(AppendError::Unavailable(format!("the audit stream: {error}"))),
                },
            };
        }
    }

    /// Waits until every entry in the stream now has been copied into the storage; fails
    /// (unavailable) when some are still on their way after a moment.
    pub(crate) async fn settled(&self) -> Result<(), StoreError> {
        match self.pending_after(SETTLE_DEADLINE).await? {
            0 => Ok(()),
            pending => Err(StoreError::Unavailable(format!(
                "{pending} audit entries are still being copied to the store; try again"
            ))),
        }
    }

    /// Waits at most `wait` until every entry in the stream now has been copied into the
    /// storage; answers how many entries are still on their way then (0: all are stored).
    pub(crate) async fn pending_after(&self, wait: Duration) -> Result<u64, StoreError> {
        let stream = self.stream().await?;
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_micros(500);
        let mut target = None;
        loop {
            let state = stream
                .get_info()
                .await
                .map_err(|e| unavailable("no stream info", e))?
                .state;
            let target = *target.get_or_insert(state.last_sequence);
            if state.messages == 0 || state.first_sequence > target {
                return Ok(0);
            }
            if Instant::now() >= deadline {
                return self.entries_in(&stream, &state).await;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// How many entries the messages still in the stream hold: from the first entry of its
    /// first message to the last of its last (with several copiers finishing messages out of
    /// order, an upper bound). Reads the stream only, so it answers while the storage is down.
    async fn entries_in(&self, stream: &stream::Stream, state: &stream::State) -> Result<u64, StoreError> {
        let entry_at = |seq: u64, last: bool| async move {
            match stream.get_raw_message(seq).await {
                Ok(message) => {
                    let mut entries = parse_entries(&message.payload)?;
                    Ok(if last {
                        entries.pop()
                    } else {
                        entries.into_iter().next()
                    }
                    .map(|e| e.seq))
                }
                // Copied (and removed) since the info.
                Err(error) if error.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
                Err(error) => Err(unavailable("cannot read a message", error)),
            }
        };
        let first = entry_at(state.first_sequence, false).await?;
        let last = entry_at(state.last_sequence, true).await?;
        Ok(match (first, last) {
            (Some(first), Some(last)) => last.saturating_sub(first).saturating_add(1),
            // The last message is gone: everything was copied meanwhile.
            (_, None) => 0,
            // The first is gone, the last is not: at least the last message's entries wait.
            (None, Some(_)) => 1,
        })
    }

    /// Sets the pending-entries gauge ([`crate::metrics::AUDIT_COPY_PENDING`]) every
    /// [`crate::metrics::AUDIT_SAMPLE_INTERVAL`] until `shutdown`: the entries the stream still
    /// holds (an upper bound, see [`Self::entries_in`]). While the stream cannot be read the
    /// gauge keeps its last value.
    pub(crate) async fn sample_pending_forever(self, shutdown: Shutdown) {
        let mut interval = tokio::time::interval(crate::metrics::AUDIT_SAMPLE_INTERVAL);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = interval.tick() => {}
            }
            match self.pending_now().await {
                Ok(pending) => crate::metrics::audit_copy_pending(pending),
                Err(error) => tracing::debug!(%error, "audit pending entries not sampled"),
            }
        }
    }

    /// How many entries the stream holds now (0 when it is empty).
    async fn pending_now(&self) -> Result<u64, StoreError> {
        let stream = self.stream().await?;
        let state = stream
            .get_info()
            .await
            .map_err(|e| unavailable("no stream info", e))?
            .state;
        if state.messages == 0 {
            return Ok(0);
        }
        self.entries_in(&stream, &state).await
    }

    /// Copies entries from the stream into `storage` until `shutdown`, riding out NATS and
    /// storage outages.
    pub(crate) async fn copy_forever(self, storage: AuditStorage, shutdown: Shutdown) {
        let mut warned: Option<Instant> = None;
        loop {
            match self.copy_until_error(&storage, &shutdown).await {
                Ok(()) => return,
                // Said once a minute at most, not every retry.
                Err(error) if warned.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) => {
                    tracing::warn!(%error, "audit copier paused; retrying");
                    warned = Some(Instant::now());
                }
                Err(error) => tracing::debug!(%error, "audit copier still paused"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(COPY_RETRY) => {}
            }
        }
    }

    async fn copy_until_error(&self, storage: &AuditStorage, shutdown: &Shutdown) -> Result<(), String> {
        let stream = self.stream().await.map_err(|e| e.to_string())?;
        let copier = stream
            .get_or_create_consumer(
                COPIER,
                consumer::pull::Config {
                    durable_name: Some(COPIER.to_owned()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        // A small prefetch: messages this copier holds when it stops reach another copier (or
        // this one, restarted) only after `ACK_WAIT`.
        // Short pull requests with heartbeats: a pull request the server lost (say, in a restart)
        // is noticed within seconds and the stream errs, and this copier starts over.
        let mut messages = copier
            .stream()
            .max_messages_per_batch(GATHER_MESSAGES)
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_HEARTBEAT)
            .messages()
            .await
            .map_err(|e| e.to_string())?;
        loop {
            // Gather what arrives for a moment, up to a limit: one insert for many entries.
            let Some((batch, ended)) =
                crate::bus::nats::next_batch(&mut messages, GATHER_MESSAGES, GATHER, shutdown).await
            else {
                return Ok(());
            };
            let mut entries = Vec::new();
            let mut copied = Vec::with_capacity(batch.len());
            for message in batch {
                match parse_entries(&message.payload) {
                    Ok(parsed) => {
                        entries.extend(parsed);
                        copied.push(message);
                    }
                    Err(error) => {
                        // Not written by TTSCM: reported, and not left to block the rest.
                        tracing::error!(%error, "an audit stream message is not a batch of entries; dropping it");
                        message
                            .ack_with(jetstream::AckKind::Term)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
            let mut retries = 0u32;
            while let Err(error) = storage.copy(&entries).await {
                if retries == 0 {
                    tracing::warn!(%error, "audit entries not copied yet (the store?); retrying");
                }
                retries = retries.saturating_add(1);
                if retries.is_multiple_of(PROGRESS_EVERY) {
                    // Still working on them: keep them from being handed to another copier.
                    for message in &copied {
                        message
                            .ack_with(jetstream::AckKind::Progress)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(COPY_RETRY) => {}
                }
            }
            if retries > 0 {
                tracing::info!(retries, "audit entries copied again");
            }
            for message in copied {
                message.ack().await.map_err(|e| e.to_string())?;
            }
            crate::metrics::audit_copied(entries.len());
            if let Some(error) = ended {
                return Err(error);
            }
        }
    }
}

/// The entries of one message: one JSON entry per line.
fn parse_entries(payload: &[u8]) -> Result<Vec<AuditEntryText>, StoreError> {
    let text = std::str::from_utf8(payload).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    text.lines()
        .filter(|line| !line.is_empty())
        .map(AuditEntryText::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_reads_back_as_its_entries_and_junk_is_refused() {
        let payload = b"{\"id\":\"a\",\"seq\":1,\"hash\":\"h1\"}\n{\"id\":\"b\",\"seq\":2,\"hash\":\"h2\"}\n";
        let entries = parse_entries(payload).expect("entries");
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[1].id.as_str(), entries[1].seq), ("b", 2));
        assert_eq!(entries[1].hash, "h2");
        assert!(matches!(
            parse_entries(b"{\"id\":\"a\"}\n"),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(parse_entries(b"not json"), Err(StoreError::Corrupt(_))));
    }
}
