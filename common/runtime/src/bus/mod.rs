//! The bus port: request-reply with queue groups, publish, and wildcard subscriptions.
//!
//! Two adapters implement it: [`nats`] (production, `async-nats`) and [`inproc`] (the embedded
//! default, tokio channels). Payloads are bytes in both, so the same JSON codec runs in both
//! modes. [`Bus`] dispatches to the adapter with a `match` instead of a trait object: there are
//! exactly two, and the hot path stays free of boxing.

pub mod inproc;
pub mod nats;

use std::time::Duration;

use bytes::Bytes;

/// Default largest payload, the same as nats-server's default `max_payload` (1 MiB).
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// Message headers: a short ordered list of name/value pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// Sets `name` to `value`, replacing an earlier value.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// All pairs in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A message as received from a subscription or as a reply.
#[derive(Debug, Clone)]
pub struct Message {
    /// The subject it was published on.
    pub subject: String,
    /// Its headers.
    pub headers: Headers,
    /// Its payload.
    pub payload: Bytes,
}

/// Errors a bus caller can match on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// Nobody serves the subject (the edge answers 503 at once).
    #[error("no responders for {subject}")]
    NoResponders {
        /// The subject that had no responders.
        subject: String,
    },
    /// No reply arrived before the deadline (the edge answers 504).
    #[error("request on {subject} timed out")]
    TimedOut {
        /// The subject that timed out.
        subject: String,
    },
    /// The connection to the bus is down; requests fail fast until it comes back.
    #[error("the bus is disconnected")]
    Disconnected,
    /// The payload is larger than the bus accepts.
    #[error("payload of {size} bytes exceeds the bus limit of {max} bytes")]
    PayloadTooLarge {
        /// The payload's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The reply is larger than the requester accepts (`TTSCM_NATS__MAX_REPLY_BYTES`); the
    /// edge answers 413.
    #[error("a reply of {size} bytes exceeds the largest accepted, {max} bytes")]
    ReplyTooLarge {
        /// The reply's size (as its replier declared it).
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Anything else (an invalid subject, a server error).
    #[error("bus error: {0}")]
    Other(String),
}

impl BusError {
    /// The error's kind as one word, for metrics (`timed_out`); never its subject or sizes.
    pub fn kind(&self) -> &'static str {
        match self {
            BusError::NoResponders { .. } => "no_responders",
            BusError::TimedOut { .. } => "timed_out",
            BusError::Disconnected => "disconnected",
            BusError::PayloadTooLarge { .. } => "payload_too_large",
            BusError::ReplyTooLarge { .. } => "reply_too_large",
            BusError::Other(_) => "other",
        }
    }
}

/// A handle on the bus; cheap to clone.
#[derive(Clone, Debug)]
pub enum Bus {
    /// A real NATS server (boxed: the client and JetStream context are large).
    Nats(Box<nats::NatsBus>),
    /// The in-process bus of the embedded mode.
    InProc(inproc::InProcBus),
}

impl Bus {
    /// Sends a request and waits for one reply until `timeout`.
    pub async fn request(
        &self,
        subject: &str,
        headers: Headers,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Message, BusError> {
        match self {
            Bus::Nats(bus) => bus.request(subject, headers, payload, timeout).await,
            Bus::InProc(bus) => bus.request(subject, headers, payload, timeout).await,
        }
    }

    /// Serves `subject` as a member of queue group `queue`: each request goes to one member.
    pub async fn serve(&self, subject: &str, queue: &str) -> Result<Requests, BusError> {
        match self {
            Bus::Nats(bus) => bus.serve(subject, queue).await,
            Bus::InProc(bus) => bus.serve(subject, queue),
        }
    }

    /// Publishes a message. Event subjects (`ttscm.events.…`) are stored durably where the adapter
    /// can (JetStream) and acknowledged before this returns.
    pub async fn publish(&self, subject: &str, headers: Headers, payload: Bytes) -> Result<(), BusError> {
        match self {
            Bus::Nats(bus) => bus.publish(subject, headers, payload).await,
            Bus::InProc(bus) => {
                let durable = bus.durable_for(subject);
                match durable {
                    None => bus.publish(subject, headers, payload),
                    Some(listener) => {
                        bus.publish(subject, headers.clone(), payload.clone())?;
                        listener
                            .take(Message {
                                subject: subject.to_owned(),
                                headers,
                                payload,
                            })
                            .await
                            .map_err(BusError::Other)
                    }
                }
            }
        }
    }

    /// Hands every message the listener wants to it, durably, before `publish` returns (in
    /// process only: over NATS, JetStream keeps events and consumers read them from there).
    /// Answers whether it was set.
    pub fn set_durable_listener(&self, listener: std::sync::Arc<dyn inproc::DurableListener>) -> bool {
        match self {
            Bus::Nats(_) => false,
            Bus::InProc(bus) => {
                bus.set_durable_listener(listener);
                true
            }
        }
    }

    /// Subscribes to a subject pattern (`*` matches one token, `>` the rest).
    pub async fn subscribe(&self, pattern: &str) -> Result<Subscription, BusError> {
        match self {
            Bus::Nats(bus) => bus.subscribe(pattern).await,
            Bus::InProc(bus) => bus.subscribe(pattern),
        }
    }

    /// Whether a message published on `subject` now could reach anyone. Always true over NATS
    /// (subscribers are other processes, and streams keep messages for later ones); in process,
    /// only when a subscription matches, since nothing keeps a message nobody took. Lets a
    /// publisher skip building a message that would be dropped.
    pub fn may_have_subscribers(&self, subject: &str) -> bool {
        match self {
            Bus::Nats(_) => true,
            Bus::InProc(bus) => bus.has_subscribers(subject),
        }
    }

    /// Whether the bus is connected now.
    pub fn is_connected(&self) -> bool {
        match self {
            Bus::Nats(bus) => bus.is_connected(),
            Bus::InProc(_) => true,
        }
    }

    /// How principals are signed and verified on this bus: NATS connections of the mesh sign
    /// and verify; the in-process bus carries principals unsigned (nothing outside the process
    /// reaches it).
    pub fn principal_auth(&self) -> Option<&std::sync::Arc<crate::principal::MeshAuth>> {
        match self {
            Bus::Nats(bus) => bus.auth(),
            Bus::InProc(_) => None,
        }
    }

    /// `principal` as the bus header carries it: signed by this component in the mesh, plain
    /// on the in-process bus.
    pub fn principal_header(&self, principal: &ttscm_contract::Principal) -> String {
        match self.principal_auth() {
            Some(auth) => auth.sign(principal),
            None => crate::service::CallContext::encode_principal(principal),
        }
    }

    /// A context for work this component starts itself (health checks, jobs): its service
    /// principal, signed, in the mesh; no principal on the in-process bus.
    pub fn service_context(&self) -> crate::service::CallContext {
        let mut ctx = crate::service::CallContext::new(None);
        if let Some(auth) = self.principal_auth() {
            ctx.principal = Some(std::sync::Arc::new(ttscm_contract::Principal::service(
                auth.component(),
            )));
            ctx.principal_header = Some(auth.service_header());
        }
        ctx
    }

    /// Which adapter this is, for logs and readiness reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Bus::Nats(_) => "nats",
            Bus::InProc(_) => "in-process",
        }
    }
}

/// One request to answer. Dropping it without answering lets the caller time out.
pub struct Request {
    /// The subject it was sent to.
    pub subject: String,
    /// Its headers.
    pub headers: Headers,
    /// Its payload.
    pub payload: Bytes,
    responder: Responder,
}

enum Responder {
    Nats {
        client: async_nats::Client,
        reply: Option<async_nats::Subject>,
        /// The largest reply sent (in chunks beyond the server's `max_payload`).
        max_reply: usize,
    },
    InProc(tokio::sync::oneshot::Sender<Message>),
}

impl Request {
    /// The largest reply the bus carries (`None`: no limit, in one process). Over NATS a reply
    /// larger than the server's `max_payload` travels in chunks, up to this cap.
    pub fn max_reply(&self) -> Option<usize> {
        match &self.responder {
            Responder::Nats { max_reply, .. } => Some(*max_reply),
            Responder::InProc(_) => None,
        }
    }

    /// Sends the reply.
    pub async fn respond(self, headers: Headers, payload: Bytes) -> Result<(), BusError> {
        match self.responder {
            Responder::Nats {
                client,
                reply,
                max_reply,
            } => {
                let Some(reply) = reply else { return Ok(()) };
                nats::respond(&client, reply, &headers, payload, max_reply).await
            }
            Responder::InProc(sender) => {
                // The caller may have timed out and gone; that is not the responder's error.
                let _ = sender.send(Message {
                    subject: self.subject,
                    headers,
                    payload,
                });
                Ok(())
            }
        }
    }
}

/// The stream of requests for one served subject.
pub struct Requests(RequestsInner);

enum RequestsInner {
    Nats {
        client: async_nats::Client,
        subscriber: async_nats::Subscriber,
        max_reply: usize,
    },
    InProc(tokio::sync::mpsc::Receiver<Request>),
}

impl Requests {
    /// The next request, or `None` when the subscription ended.
    pub async fn next(&mut self) -> Option<Request> {
        match &mut self.0 {
            RequestsInner::Nats {
                client,
                subscriber,
                max_reply,
            } => {
                use futures_util::StreamExt;
                let message = subscriber.next().await?;
                Some(Request {
                    subject: message.subject.to_string(),
                    headers: nats::from_nats_headers(message.headers.as_ref()),
                    payload: message.payload,
                    responder: Responder::Nats {
                        client: client.clone(),
                        reply: message.reply,
                        max_reply: *max_reply,
                    },
                })
            }
            RequestsInner::InProc(receiver) => receiver.recv().await,
        }
    }
}

/// The stream of messages for one subscription.
pub struct Subscription(SubscriptionInner);

enum SubscriptionInner {
    Nats(async_nats::Subscriber),
    InProc(tokio::sync::mpsc::Receiver<Message>),
}

impl Subscription {
    /// The next message, or `None` when the subscription ended.
    pub async fn next(&mut self) -> Option<Message> {
        match &mut self.0 {
            SubscriptionInner::Nats(subscriber) => {
                use futures_util::StreamExt;
                let message = subscriber.next().await?;
                Some(Message {
                    subject: message.subject.to_string(),
                    headers: nats::from_nats_headers(message.headers.as_ref()),
                    payload: message.payload,
                })
            }
            SubscriptionInner::InProc(receiver) => receiver.recv().await,
        }
    }

    /// Calls `handle` with each message until `shutdown` or the end of the subscription (for
    /// background listeners, e.g. cache invalidation).
    pub async fn for_each_until(mut self, shutdown: crate::Shutdown, mut handle: impl FnMut(Message)) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                message = self.next() => match message {
                    Some(message) => handle(message),
                    None => return,
                },
            }
        }
    }
}

/// Whether `subject` matches `pattern` with NATS wildcard rules.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut pattern_tokens = pattern.split('.');
    let mut subject_tokens = subject.split('.');
    loop {
        match (pattern_tokens.next(), subject_tokens.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(p), Some(s)) if p == s => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::subject_matches;

    #[test]
    fn wildcards_match_like_nats() {
        assert!(subject_matches(
            "ttscm.events.>",
            "ttscm.events.credential.created"
        ));
        assert!(!subject_matches("ttscm.events.>", "ttscm.events"));
        assert!(subject_matches("ttscm.*.v1.get", "ttscm.credential.v1.get"));
        assert!(!subject_matches("ttscm.*.v1.get", "ttscm.credential.v1.list"));
        assert!(subject_matches("a.b", "a.b"));
        assert!(!subject_matches("a.b", "a.b.c"));
    }
}
