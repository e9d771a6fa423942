//! The in-process bus adapter: queue groups and subscriptions over bounded tokio channels.
//!
//! A queue member may also be a *direct handler* ([`InProcBus::serve_direct`]): the requester's
//! own task runs it, so a request costs a function call instead of a channel send, a task
//! spawn and two cross-thread wake-ups. A direct handler is never cancelled half-way: when the
//! requester times out or goes away, the rest of it moves to a task of its own and finishes.
//!
//! Requests go to one member of the first queue group serving the exact subject, round-robin;
//! serving wildcard subjects is not supported (no service does it). Subscriptions match
//! wildcards. A subscriber whose channel is full misses the message, as a slow NATS consumer
//! would. Payload limit as NATS's default.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use parking_lot::RwLock;
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
    /// The one durable listener, if any ([`DurableListener`]).
    durable: RwLock<Option<Arc<dyn DurableListener>>>,
}

/// A listener that keeps what it takes (the embedded mode's webhook deliveries): a message it
/// wants is handed to it inside `publish`, which returns only once the listener stored it — so
/// an event published in process is as durable as one JetStream acknowledged. Its error fails
/// the publish (the publisher keeps the event in its outbox and tries again).
pub trait DurableListener: Send + Sync + 'static {
    /// Whether it wants messages on `subject` (cheap: asked for every event, also to decide
    /// whether an event is built at all).
    fn wants(&self, subject: &str) -> bool;
    /// Stores `message`; `Err` says why it could not.
    fn take(&self, message: Message) -> BoxFuture<'static, Result<(), String>>;
}

impl std::fmt::Debug for dyn DurableListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DurableListener")
    }
}

#[derive(Debug)]
struct QueueGroup {
    name: String,
    members: Vec<Member>,
    /// Round-robin cursor.
    next: AtomicUsize,
}

/// A function that answers requests; it runs in the requester's task.
pub type DirectHandler = Arc<dyn Fn(Request) -> BoxFuture<'static, ()> + Send + Sync>;

/// One member of a queue group.
#[derive(Clone)]
enum Member {
    /// A consumer of a request stream (`serve`).
    Channel(mpsc::Sender<Request>),
    /// A handler called directly (`serve_direct`); serves while `live` holds.
    Direct {
        handler: DirectHandler,
        live: Arc<std::sync::atomic::AtomicBool>,
    },
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Member::Channel(_) => f.write_str("Channel"),
            Member::Direct { .. } => f.write_str("Direct"),
        }
    }
}

impl Member {
    fn is_closed(&self) -> bool {
        match self {
            Member::Channel(sender) => sender.is_closed(),
            Member::Direct { live, .. } => !live.load(Ordering::Acquire),
        }
    }
}

/// While held, a direct handler serves its subject; dropping it stops that.
#[derive(Debug)]
pub struct DirectRegistration {
    bus: InProcBus,
    subject: String,
    live: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for DirectRegistration {
    fn drop(&mut self) {
        self.live.store(false, Ordering::Release);
        self.bus.prune(&self.subject);
    }
}

/// Runs a handler's future to the end even if the requester stops polling it: on drop before
/// completion, the rest is spawned onto the runtime.
struct Detached(Option<BoxFuture<'static, ()>>);

impl std::future::Future for Detached {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        let Some(future) = self.0.as_mut() else {
            return std::task::Poll::Ready(());
        };
        let poll = future.as_mut().poll(cx);
        if poll.is_ready() {
            self.0 = None;
        }
        poll
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(rest) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(rest);
        }
    }
}

impl InProcBus {
    /// A new, empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    fn pick_member(&self, subject: &str) -> Option<Member> {
        let groups = self.inner.groups.read();
        let group = groups
            .get(subject)?
            .iter()
            .find(|g| g.members.iter().any(|m| !m.is_closed()))?;
        let live: Vec<&Member> = group.members.iter().filter(|m| !m.is_closed()).collect();
        let index = group.next.fetch_add(1, Ordering::Relaxed) % live.len();
        Some(live[index].clone())
    }

    fn prune(&self, subject: &str) {
        let mut groups = self.inner.groups.write();
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
            let member = match member {
                Member::Channel(sender) => sender,
                Member::Direct { handler, .. } => {
                    let mut run = Detached(Some(handler(request)));
                    if tokio::time::timeout_at(deadline, &mut run).await.is_err() {
                        return Err(BusError::TimedOut {
                            subject: subject.to_owned(),
                        });
                    }
                    break;
                }
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
        let mut groups = self.inner.groups.write();
        add_member(&mut groups, subject, queue, Member::Channel(tx));
        Ok(Requests(RequestsInner::InProc(rx)))
    }

    /// Serves `subject` in queue group `queue` with `handler`, called in each requester's task,
    /// until the registration is dropped.
    pub fn serve_direct(
        &self,
        subject: &str,
        queue: &str,
        handler: DirectHandler,
    ) -> Result<DirectRegistration, BusError> {
        validate_subject(subject, false)?;
        let live = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let mut groups = self.inner.groups.write();
        add_member(
            &mut groups,
            subject,
            queue,
            Member::Direct {
                handler,
                live: live.clone(),
            },
        );
        Ok(DirectRegistration {
            bus: self.clone(),
            subject: subject.to_owned(),
            live,
        })
    }

    /// Whether any open subscription matches `subject`.
    pub(super) fn has_subscribers(&self, subject: &str) -> bool {
        self.durable_for(subject).is_some()
            || self
                .inner
                .subscribers
                .read()
                .iter()
                .any(|(pattern, sender)| !sender.is_closed() && subject_matches(pattern, subject))
    }

    /// Sets the durable listener (one per bus; a second replaces the first).
    pub(super) fn set_durable_listener(&self, listener: Arc<dyn DurableListener>) {
        *self.inner.durable.write() = Some(listener);
    }

    /// The durable listener, when it wants `subject`.
    pub(super) fn durable_for(&self, subject: &str) -> Option<Arc<dyn DurableListener>> {
        self.inner
            .durable
            .read()
            .as_ref()
            .filter(|listener| listener.wants(subject))
            .cloned()
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
            let subscribers = self.inner.subscribers.read();
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
            self.inner.subscribers.write().retain(|(_, s)| !s.is_closed());
        }
        Ok(())
    }

    pub(super) fn subscribe(&self, pattern: &str) -> Result<Subscription, BusError> {
        validate_subject(pattern, true)?;
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BACKLOG);
        self.inner.subscribers.write().push((pattern.to_owned(), tx));
        Ok(Subscription(SubscriptionInner::InProc(rx)))
    }
}

fn add_member(groups: &mut HashMap<String, Vec<QueueGroup>>, subject: &str, queue: &str, member: Member) {
    let list = groups.entry(subject.to_owned()).or_default();
    match list.iter_mut().find(|g| g.name == queue) {
        Some(group) => group.members.push(member),
        None => list.push(QueueGroup {
            name: queue.to_owned(),
            members: vec![member],
            next: AtomicUsize::new(0),
        }),
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
