//! The in-process bus adapter: queue groups and subscriptions over bounded tokio channels.
//!
//! Requests go to one member of the first queue group serving the exact subject, round-robin;
//! serving wildcard subjects is not supported (no service does it). Subscriptions match
//! wildcards. A subscriber whose channel is full misses the message, as a slow NATS consumer
//! would. Payload limit as NATS's default.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::{
    BusError, DEFAULT_MAX_PAYLOAD, Headers, Message, Request, Requests, RequestsInner, Responder,
    Subscription, SubscriptionInner, subject_matches,
};

/// How many requests may wait for one queue member before senders wait (backpressure).
const MEMBER_BACKLOG: usize = 1024;
/// How many messages may wait for one subscriber before it misses messages.
const SUBSCRIBER_BACKLOG: usize = 4096;

/// The in-process bus; clones share one set of subjects.
#[derive(Clone, Debug, Default)]
pub struct InProcBus {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Served subjects → queue groups serving them.
    groups: RwLock<HashMap<String, Vec<QueueGroup>>>,
    /// Wildcard subscriptions.
    subscribers: RwLock<Vec<(String, mpsc::Sender<Message>)>>,
}

#[derive(Debug)]
struct QueueGroup {
    name: String,
    members: Vec<mpsc::Sender<Request>>,
    /// Round-robin cursor.
    next: AtomicUsize,
}

impl InProcBus {
    /// A new, empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    fn pick_member(&self, subject: &str) -> Option<mpsc::Sender<Request>> {
        let groups = self
            .inner
            .groups
            .read()
            .expect("bus lock is never poisoned: no panics under it");
        let group = groups
            .get(subject)?
            .iter()
            .find(|g| g.members.iter().any(|m| !m.is_closed()))?;
        let live: Vec<&mpsc::Sender<Request>> = group.members.iter().filter(|m| !m.is_closed()).collect();
        let index = group.next.fetch_add(1, Ordering::Relaxed) % live.len();
        Some(live[index].clone())
    }

    fn prune(&self, subject: &str) {
        let mut groups = self
            .inner
            .groups
            .write()
            .expect("bus lock is never poisoned: no panics under it");
        if let Some(list) = groups.get_mut(subject) {
            for group in list.iter_mut() {
                group.members.retain(|m| !m.is_closed());
            }
            list.retain(|g| !g.members.is_empty());
            if list.is_empty() {
                groups.remove(subject);
            }
        }
    }

    pub(super) async fn request(
        &self,
        subject: &str,
        headers: Headers,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Message, BusError> {
        if payload.len() > DEFAULT_MAX_PAYLOAD {
            return Err(BusError::PayloadTooLarge {
                size: payload.len(),
                max: DEFAULT_MAX_PAYLOAD,
            });
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let (reply_tx, reply_rx) = oneshot::channel();
        let mut request = Request {
            subject: subject.to_owned(),
            headers,
            payload,
            responder: Responder::InProc(reply_tx),
        };
        // A member may close between picking and sending; try the others before giving up.
        loop {
            let Some(member) = self.pick_member(subject) else {
                return Err(BusError::NoResponders {
                    subject: subject.to_owned(),
                });
            };
            match tokio::time::timeout_at(deadline, member.send(request)).await {
                Ok(Ok(())) => break,
                Ok(Err(mpsc::error::SendError(returned))) => {
                    request = returned;
                    self.prune(subject);
                }
                Err(_) => {
                    return Err(BusError::TimedOut {
                        subject: subject.to_owned(),
                    });
                }
            }
        }
        match tokio::time::timeout_at(deadline, reply_rx).await {
            Ok(Ok(reply)) => Ok(reply),
            // The responder dropped the request without answering: to the caller that is a
            // request that will never be answered, which NATS reports as a timeout too.
            Ok(Err(_)) => Err(BusError::TimedOut {
                subject: subject.to_owned(),
            }),
            Err(_) => Err(BusError::TimedOut {
                subject: subject.to_owned(),
            }),
        }
    }

    pub(super) fn serve(&self, subject: &str, queue: &str) -> Result<Requests, BusError> {
        validate_subject(subject, false)?;
        let (tx, rx) = mpsc::channel(MEMBER_BACKLOG);
        let mut groups = self
            .inner
            .groups
            .write()
            .expect("bus lock is never poisoned: no panics under it");
        let list = groups.entry(subject.to_owned()).or_default();
        match list.iter_mut().find(|g| g.name == queue) {
            Some(group) => group.members.push(tx),
            None => list.push(QueueGroup {
                name: queue.to_owned(),
                members: vec![tx],
                next: AtomicUsize::new(0),
            }),
        }
        Ok(Requests(RequestsInner::InProc(rx)))
    }

    pub(super) fn publish(&self, subject: &str, headers: Headers, payload: Bytes) -> Result<(), BusError> {
        validate_subject(subject, false)?;
        if payload.len() > DEFAULT_MAX_PAYLOAD {
            return Err(BusError::PayloadTooLarge {
                size: payload.len(),
                max: DEFAULT_MAX_PAYLOAD,
            });
        }
        let mut closed = false;
        {
            let subscribers = self
                .inner
                .subscribers
                .read()
                .expect("bus lock is never poisoned: no panics under it");
            for (pattern, sender) in subscribers.iter() {
                if !subject_matches(pattern, subject) {
                    continue;
                }
                let message = Message {
                    subject: subject.to_owned(),
                    headers: headers.clone(),
                    payload: payload.clone(),
                };
                match sender.try_send(message) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => closed = true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!(subject, pattern, "slow in-process subscriber missed a message");
                    }
                }
            }
        }
        if closed {
            self.inner
                .subscribers
                .write()
                .expect("bus lock is never poisoned: no panics under it")
                .retain(|(_, s)| !s.is_closed());
        }
        Ok(())
    }

    pub(super) fn subscribe(&self, pattern: &str) -> Result<Subscription, BusError> {
        validate_subject(pattern, true)?;
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BACKLOG);
        self.inner
            .subscribers
            .write()
            .expect("bus lock is never poisoned: no panics under it")
            .push((pattern.to_owned(), tx));
        Ok(Subscription(SubscriptionInner::InProc(rx)))
    }
}

/// Rejects subjects NATS would reject: empty tokens, spaces, wildcards where not allowed.
fn validate_subject(subject: &str, wildcards: bool) -> Result<(), BusError> {
    let tokens: Vec<&str> = subject.split('.').collect();
    let valid = !subject.is_empty()
        && tokens.iter().enumerate().all(|(i, t)| {
            !t.is_empty()
                && !t.contains(char::is_whitespace)
                && match *t {
                    "*" => wildcards,
                    ">" => wildcards && i + 1 == tokens.len(),
                    _ => !t.contains(['*', '>']),
                }
        });
    if valid {
        Ok(())
    } else {
        Err(BusError::Other(format!("invalid subject '{subject}'")))
    }
}
