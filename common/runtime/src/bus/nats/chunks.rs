//! Replies larger than the NATS server's `max_payload`, carried in chunks.
//!
//! **The single-message path is unchanged.** A request still goes through `async-nats`' muxed
//! inbox (`Client::send_request`: one wildcard subscription per connection, a one-shot channel
//! per request, no subscription per request); a reply that fits one message is published and
//! received exactly as before, and the requester only looks for [`HEADER_CHUNK_COUNT`] on it.
//!
//! **A larger reply** ([`respond`]) is split into chunks of at most `max_payload` bytes (headers
//! included). The first goes to the request's reply subject as usual, with headers saying the
//! chunk count and the whole reply's size; the others go, in order, to `<reply>.chunks`
//! ([`REPLY_CHUNKS_TOKEN`]). The muxed inbox takes one message per request, so the later chunks
//! need another subscription, and it must exist before they are sent (core NATS drops a message
//! nobody hears, and the requester has no way back to the replier to say "ready"): every
//! [`NatsBus`](super::NatsBus) subscribes once, at connect, to `<inbox prefix>.*.*.chunks` —
//! `async-nats` makes reply subjects `<inbox prefix>.<muxer id>.<token>`, so this matches the
//! chunks of every reply to this connection and nothing else. [`ChunkInbox`] routes them by
//! reply subject to the request collecting them; chunks that come before their request has seen
//! its first message (the two subscriptions are read by different tasks) wait in the inbox.
//! Every subject stays inside the requester's inbox prefix, which its NATS user subscribes to
//! and every replier may publish to: no permission changes.
//!
//! **Bounds.** The whole reply arrives within the request's deadline, or the request fails with
//! [`BusError::TimedOut`] (a lost chunk is a 504, never a hang, never a partial reply; a gap in
//! the indexes fails at once, a missing last chunk at the deadline). A
//! requester refuses a reply declaring more than its cap (`TTSCM_NATS__MAX_REPLY_BYTES`) before
//! collecting anything, and never holds more than the declared size per request, nor more than
//! one cap's worth of chunks nobody has claimed yet (those expire after [`EARLY_TTL`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use ttscm_contract::subjects::{
    HEADER_CHUNK_COUNT, HEADER_CHUNK_INDEX, HEADER_REPLY_BYTES, REPLY_CHUNKS_TOKEN,
};

use super::super::{BusError, Headers, Message};

/// How long chunks nobody has claimed are kept: longer than any request's deadline, so they can
/// only belong to a request that gave up (or to no request at all).
const EARLY_TTL: Duration = Duration::from_secs(120);

/// Bytes the chunk headers ([`HEADER_CHUNK_INDEX`], [`HEADER_CHUNK_COUNT`],
/// [`HEADER_REPLY_BYTES`]) take on the wire at most: each `name: value\r\n` with a value of up
/// to 20 digits, plus the `NATS/1.0\r\n` line and the closing `\r\n` if they are the only ones.
const CHUNK_HEADERS_MAX_LEN: usize = "NATS/1.0\r\n\r\n".len()
    + HEADER_CHUNK_INDEX.len()
    + HEADER_CHUNK_COUNT.len()
    + HEADER_REPLY_BYTES.len()
    + 3 * (": ".len() + 20 + "\r\n".len());

/// The subject a reply's chunks after the first travel on.
fn chunks_subject(reply: &str) -> String {
    format!("{reply}.{REPLY_CHUNKS_TOKEN}")
}

/// The subscription every connection makes for the chunks of its replies.
pub(super) fn chunks_pattern(inbox_prefix: &str) -> String {
    format!("{inbox_prefix}.*.*.{REPLY_CHUNKS_TOKEN}")
}

/// Bytes `headers` take on the wire (as `async-nats` counts them against `max_payload`: none
/// when empty, since it then sends a plain `PUB`).
fn headers_wire_len(headers: &Headers) -> usize {
    if headers.is_empty() {
        return 0;
    }
    headers
        .iter()
        .fold("NATS/1.0\r\n\r\n".len(), |len, (name, value)| {
            len + name.len() + ": ".len() + value.len() + "\r\n".len()
        })
}

/// Sends `payload` as the reply to `reply`: one message when it fits the server's `max_payload`
/// (exactly as a plain publish), otherwise in chunks (see the module documentation). A reply
/// larger than `max_reply` is not sent: the caller would refuse it.
pub(crate) async fn respond(
    client: &async_nats::Client,
    reply: async_nats::Subject,
    headers: &Headers,
    payload: Bytes,
    max_reply: usize,
) -> Result<(), BusError> {
    let publish_failed = |e: async_nats::PublishError| BusError::Other(e.to_string());
    let max_payload = client.server_info().max_payload;
    let user_headers = headers_wire_len(headers);
    if max_payload == 0 || user_headers + payload.len() <= max_payload {
        return client
            .publish_with_headers(reply, super::to_nats_headers(headers), payload)
            .await
            .map_err(publish_failed);
    }
    if payload.len() > max_reply {
        return Err(BusError::ReplyTooLarge {
            size: payload.len(),
            max: max_reply,
        });
    }
    // Room for the reply's own headers (on the first chunk) and the chunk headers (on each).
    let headroom = user_headers.max("NATS/1.0\r\n\r\n".len()) + CHUNK_HEADERS_MAX_LEN;
    let chunk_len = max_payload.checked_sub(headroom).filter(|len| *len > 0).ok_or_else(|| {
        BusError::Other(format!(
            "a reply's headers ({user_headers} bytes) leave no room for chunks of at most {max_payload} bytes"
        ))
    })?;
    let total = payload.len();
    let count = total.div_ceil(chunk_len);
    let rest = chunks_subject(&reply);
    for index in 0..count {
        let start = index * chunk_len;
        let chunk = payload.slice(start..total.min(start + chunk_len));
        let mut map = if index == 0 {
            let mut map = super::to_nats_headers(headers);
            map.insert(HEADER_REPLY_BYTES, total.to_string().as_str());
            map
        } else {
            async_nats::HeaderMap::new()
        };
        map.insert(HEADER_CHUNK_INDEX, index.to_string().as_str());
        map.insert(HEADER_CHUNK_COUNT, count.to_string().as_str());
        let subject = if index == 0 {
            reply.clone()
        } else {
            async_nats::Subject::from(rest.as_str())
        };
        client
            .publish_with_headers(subject, map, chunk)
            .await
            .map_err(publish_failed)?;
    }
    Ok(())
}

/// Whether a reply's first message starts a chunked reply.
pub(super) fn is_chunked(message: &async_nats::Message) -> bool {
    message
        .headers
        .as_ref()
        // A service's reply has no headers: no lookup (which builds the header's name) then.
        .is_some_and(|headers| !headers.is_empty() && headers.get(HEADER_CHUNK_COUNT).is_some())
}

/// Chunks on their way to the requests collecting them, by reply subject.
#[derive(Debug)]
pub(super) struct ChunkInbox {
    routes: Mutex<Routes>,
    /// The largest reply a request accepts; also the most bytes of unclaimed chunks kept.
    max_reply: usize,
}

#[derive(Debug, Default)]
struct Routes {
    by_reply: HashMap<String, Route>,
    /// Bytes held in [`Route::Early`] entries.
    early_bytes: usize,
}

#[derive(Debug)]
enum Route {
    /// Chunks that came before their request claimed them.
    Early {
        chunks: Vec<async_nats::Message>,
        bytes: usize,
        since: Instant,
    },
    /// A request collecting its chunks, which accepts at most `budget` more bytes.
    Claimed {
        sender: mpsc::UnboundedSender<async_nats::Message>,
        budget: usize,
    },
}

/// A request's claim on its reply's chunks; dropping it (done, failed or abandoned) drops the
/// route, so chunks coming later are unclaimed and expire.
struct Claim<'a> {
    inbox: &'a ChunkInbox,
    reply: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.inbox.routes.lock().by_reply.remove(&self.reply);
    }
}

impl ChunkInbox {
    pub(super) fn new(max_reply: usize) -> Self {
        Self {
            routes: Mutex::new(Routes::default()),
            max_reply,
        }
    }

    /// The largest reply a request accepts.
    pub(super) fn max_reply(&self) -> usize {
        self.max_reply
    }

    /// Routes the chunks `subscriber` receives until `stop`.
    pub(super) async fn route(
        self: Arc<Self>,
        mut subscriber: async_nats::Subscriber,
        stop: CancellationToken,
    ) {
        use futures_util::StreamExt;
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => return,
                message = subscriber.next() => message,
            };
            let Some(message) = message else { return };
            self.deliver(message);
        }
    }

    fn deliver(&self, message: async_nats::Message) {
        let Some(reply) = message
            .subject
            .strip_suffix(REPLY_CHUNKS_TOKEN)
            .and_then(|rest| rest.strip_suffix('.'))
            .map(str::to_owned)
        else {
            return;
        };
        let len = message.payload.len();
        let mut routes = self.routes.lock();
        let routes = &mut *routes;
        match routes.by_reply.get_mut(&reply) {
            Some(Route::Claimed { sender, budget }) => {
                if len > *budget || sender.send(message).is_err() {
                    // More than the reply declared (or its request is gone): the request sees
                    // its channel close and fails.
                    routes.by_reply.remove(&reply);
                } else {
                    *budget -= len;
                }
            }
            Some(Route::Early { chunks, bytes, .. }) => {
                if routes.early_bytes + len <= self.max_reply {
                    routes.early_bytes += len;
                    *bytes += len;
                    chunks.push(message);
                }
            }
            None => {
                if routes.early_bytes + len > self.max_reply {
                    Self::expire(routes);
                }
                if routes.early_bytes + len <= self.max_reply {
                    routes.early_bytes += len;
                    routes.by_reply.insert(
                        reply,
                        Route::Early {
                            chunks: vec![message],
                            bytes: len,
                            since: Instant::now(),
                        },
                    );
                } else {
                    tracing::warn!("dropped a reply chunk: too many bytes of chunks nobody has asked for");
                }
            }
        }
    }

    /// Drops the unclaimed chunks older than [`EARLY_TTL`].
    fn expire(routes: &mut Routes) {
        let now = Instant::now();
        let mut freed = 0;
        routes.by_reply.retain(|_, route| match route {
            Route::Early { bytes, since, .. } if now.duration_since(*since) > EARLY_TTL => {
                freed += *bytes;
                false
            }
            _ => true,
        });
        routes.early_bytes -= freed;
    }

    /// Claims the chunks of `reply`, at most `budget` bytes: those already here and those to come.
    fn claim(&self, reply: &str, budget: usize) -> (mpsc::UnboundedReceiver<async_nats::Message>, Claim<'_>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let claim = Claim {
            inbox: self,
            reply: reply.to_owned(),
        };
        let mut routes = self.routes.lock();
        let mut budget = budget;
        if let Some(Route::Early { chunks, bytes, .. }) = routes.by_reply.remove(reply) {
            routes.early_bytes -= bytes;
            for chunk in chunks {
                let Some(left) = budget.checked_sub(chunk.payload.len()) else {
                    // More than the reply declared: no route, so the channel closes after the
                    // chunks within the budget and the collector fails.
                    return (receiver, claim);
                };
                budget = left;
                let _ = sender.send(chunk);
            }
        }
        routes
            .by_reply
            .insert(reply.to_owned(), Route::Claimed { sender, budget });
        (receiver, claim)
    }

    /// Collects the reply `first` starts (a message with [`HEADER_CHUNK_COUNT`]) by `deadline`.
    pub(super) async fn collect(
        &self,
        subject: &str,
        first: async_nats::Message,
        deadline: Instant,
    ) -> Result<Message, BusError> {
        let broken = |what: &str| BusError::Other(format!("a broken chunked reply on {subject}: {what}"));
        let header = |message: &async_nats::Message, name: &str| -> Option<usize> {
            message.headers.as_ref()?.get(name)?.as_str().parse().ok()
        };
        let (Some(count), Some(total), Some(0)) = (
            header(&first, HEADER_CHUNK_COUNT),
            header(&first, HEADER_REPLY_BYTES),
            header(&first, HEADER_CHUNK_INDEX),
        ) else {
            return Err(broken("its first message lacks the chunk headers"));
        };
        if total > self.max_reply {
            return Err(BusError::ReplyTooLarge {
                size: total,
                max: self.max_reply,
            });
        }
        // Chunks are never empty, so there are at most as many as bytes.
        if count == 0 || count > total.max(1) || first.payload.len() > total {
            return Err(broken("its chunk count or size does not add up"));
        }
        let reply = first.subject.to_string();
        let (mut receiver, _claim) = self.claim(&reply, total - first.payload.len());
        // The parts are kept as they came and joined once at the end: memory grows with what
        // arrives, not with what a replier declares.
        let mut received = first.payload.len();
        let mut parts = Vec::with_capacity(count.min(1024));
        let headers = reply_headers(first.headers.as_ref());
        parts.push(first.payload);
        for index in 1..count {
            let chunk = match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => return Err(broken("it is larger than it declared")),
                Err(_) => {
                    return Err(BusError::TimedOut {
                        subject: subject.to_owned(),
                    });
                }
            };
            if header(&chunk, HEADER_CHUNK_COUNT) != Some(count) {
                return Err(broken("its chunks disagree on their count"));
            }
            match header(&chunk, HEADER_CHUNK_INDEX) {
                Some(i) if i == index => {}
                // NATS keeps one publisher's order, so a gap is a chunk lost on the way (a slow
                // consumer's dropped message): the reply cannot complete, as if it timed out.
                Some(i) if i > index && i < count => {
                    tracing::warn!(subject, missing = index, "a chunk of a reply was lost");
                    return Err(BusError::TimedOut {
                        subject: subject.to_owned(),
                    });
                }
                _ => return Err(broken("its chunks came out of order")),
            }
            received += chunk.payload.len();
            parts.push(chunk.payload);
        }
        if received != total {
            return Err(broken("its chunks do not add up to its declared size"));
        }
        let mut body = BytesMut::with_capacity(total);
        for part in parts {
            body.extend_from_slice(&part);
        }
        Ok(Message {
            subject: reply,
            headers,
            payload: body.freeze(),
        })
    }
}

/// The headers the replier sent, without the chunk headers.
fn reply_headers(headers: Option<&async_nats::HeaderMap>) -> Headers {
    let mut out = Headers::new();
    for (name, value) in super::from_nats_headers(headers).iter() {
        if ![HEADER_CHUNK_INDEX, HEADER_CHUNK_COUNT, HEADER_REPLY_BYTES].contains(&name) {
            out.insert(name, value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lengths_are_counted_as_async_nats_counts_them() {
        assert_eq!(headers_wire_len(&Headers::new()), 0);
        let mut headers = Headers::new();
        headers.insert("a", "bc");
        // "NATS/1.0\r\n" "a: bc\r\n" "\r\n"
        assert_eq!(headers_wire_len(&headers), 10 + 7 + 2);
    }

    #[test]
    fn chunk_subjects_match_the_pattern_of_their_inbox_only() {
        let reply = "_INBOX_edge.abc.42";
        let pattern = chunks_pattern("_INBOX_edge");
        assert!(crate::bus::subject_matches(&pattern, &chunks_subject(reply)));
        assert!(!crate::bus::subject_matches(&pattern, reply));
        assert!(!crate::bus::subject_matches(
            &pattern,
            &chunks_subject("_INBOX_vault.abc.42")
        ));
    }
}
