//! Events as CloudEvents 1.0 JSON on `ttscm.events.<aggregate>.<action>`, published durably: the
//! one publisher every service that emits events uses (credential, company-sync), each with an
//! outbox collection of its own.
//!
//! **Durable before the answer**: [`Events::publish`] returns once the event is stored — in the
//! mesh a JetStream publish acknowledged by the `TTSCM_EVENTS` stream (one round trip to
//! nats-server), or, when the bus cannot take it, an insert into the service's outbox
//! collection that [`Events::drain_outbox_forever`] publishes every [`OUTBOX_INTERVAL`]. So a
//! crash right after the caller answers loses no event, and a bus outage loses nothing either.
//!
//! **At least once**: every event carries its CloudEvent `id` in the [`HEADER_EVENT_ID`] header
//! too, so JetStream keeps one copy of an event published twice within its duplicate window (an
//! outbox row retried, two replicas draining one outbox); beyond it consumers dedupe by `id`.
//! Events of one call are published in order ([`Events::publish_all`]: concurrently, order not
//! kept); events kept in the outbox arrive after later ones that went straight through.
//!
//! Events carry ids, names, field ids and counts — never a value, sealed or not. The outbox is
//! declared an append log of the store ([`prepare`]): the embedded store keeps it out of its main
//! file.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};
use ttscm_contract::event::CloudEvent;
use ttscm_contract::subjects::HEADER_EVENT_ID;

use crate::service::CallContext;
use crate::store::{Document, FindOptions, IndexSpec, Order};
use crate::{Bus, Filter, Headers, Shutdown, Store, StoreError, clock, ids};

/// The outbox's index: it is read oldest first.
const OUTBOX_INDEXES: &[IndexSpec] = &[IndexSpec {
    name: "at",
    fields: &["at"],
    unique: false,
}];

/// How often an outbox is retried.
pub const OUTBOX_INTERVAL: Duration = Duration::from_secs(2);

/// Most outbox rows one retry reads.
const OUTBOX_PAGE: u64 = 500;

/// Most events of one [`Events::publish_all`] waiting for their acknowledgement at once (a full
/// sync may announce thousands of companies; one at a time would be one round trip each).
const PUBLISH_CONCURRENCY: usize = 32;

/// Declares `outbox` an append log (inserted when the bus is down, read oldest first, deleted
/// once published), before anything else uses it.
pub async fn prepare(store: &Store, outbox: &str) -> Result<(), StoreError> {
    store.ensure_append_log(outbox, OUTBOX_INDEXES).await
}

/// Stores `event` from `source` in `outbox` only, for the owning service's drain to publish: how a
/// command that changes the store directly, with no bus of the service's, announces the change.
/// `outbox` must have been declared ([`prepare`]) in this process.
pub async fn keep_for_later(
    store: &Store,
    outbox: &str,
    source: &str,
    event: NewEvent,
) -> Result<(), StoreError> {
    let bus_subject = CloudEvent::bus_subject(event.aggregate, event.action);
    let outgoing = Outgoing::new(
        source,
        event.aggregate,
        event.action,
        &event.subject,
        bus_subject,
        event.data,
    );
    store.insert(outbox, outgoing.row()).await
}

/// One event to publish: what a service knows when it happens.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The aggregate, e.g. `company`.
    pub aggregate: &'static str,
    /// What happened to it, in the past tense, e.g. `created`.
    pub action: &'static str,
    /// The resource's id (the CloudEvent `subject`).
    pub subject: String,
    /// The event's `data`: ids, names, counts — never a secret.
    pub data: Value,
}

/// One serialized event on its way out.
struct Outgoing {
    id: String,
    subject: String,
    payload: String,
    time: String,
}

impl Outgoing {
    /// The event `<aggregate>.<action>` from `source` about `subject`, made now.
    fn new(
        source: &str,
        aggregate: &str,
        action: &str,
        subject: &str,
        bus_subject: String,
        data: Value,
    ) -> Self {
        let event = CloudEvent::new(
            source,
            aggregate,
            action,
            ids::new_id(),
            clock::now_iso(),
            subject,
            data,
        );
        let payload = serde_json::to_string(&event).expect("events serialize: JSON values and strings");
        Self {
            id: event.id,
            subject: bus_subject,
            payload,
            time: event.time,
        }
    }

    fn headers(&self) -> Headers {
        let mut headers = Headers::new();
        headers.insert(HEADER_EVENT_ID, self.id.as_str());
        headers
    }

    /// The outbox row that keeps it (the row's id is the event's: a row is kept once).
    fn row(&self) -> Document {
        let mut row = Document::new();
        row.insert("id".into(), json!(self.id));
        row.insert("subject".into(), json!(self.subject));
        row.insert("payload".into(), json!(self.payload));
        row.insert("at".into(), json!(self.time));
        row
    }
}

/// Publishes events, falling back to an outbox.
#[derive(Clone)]
pub struct Events {
    /// Where events go.
    bus: Bus,
    /// Holds the outbox.
    store: Store,
    /// The CloudEvent `source`, e.g. `ttscm/credential`.
    source: &'static str,
    /// The outbox collection, owned by the publishing service.
    outbox: &'static str,
}

impl Events {
    /// Events from `source` over `bus`, with the outbox `outbox` in `store` (declared with
    /// [`prepare`]).
    pub fn new(bus: Bus, store: Store, source: &'static str, outbox: &'static str) -> Self {
        Self {
            bus,
            store,
            source,
            outbox,
        }
    }

    /// Publishes `<aggregate>.<action>` about `subject` (the resource id) with the `data` it
    /// builds (only when someone may listen), adding the caller (`actor`) and `requestId` to
    /// `data` when the call has a principal. Returns once the event is stored (see the module).
    pub async fn publish(
        &self,
        ctx: &CallContext,
        aggregate: &str,
        action: &str,
        subject: &str,
        data: impl FnOnce() -> Value,
    ) {
        let bus_subject = CloudEvent::bus_subject(aggregate, action);
        if !self.bus.may_have_subscribers(&bus_subject) {
            // In one process with nobody listening the event would be dropped: skip building it.
            return;
        }
        let mut data = data();
        if let (Some(principal), Value::Object(map)) = (&ctx.principal, &mut data) {
            map.insert(
                "actor".into(),
                json!({"id": principal.id, "kind": principal.kind}),
            );
            map.insert("requestId".into(), json!(ctx.request_id));
        }
        let outgoing = self.outgoing(aggregate, action, subject, bus_subject, data);
        if let Err(error) = self.try_send(&outgoing).await {
            tracing::warn!(%error, subject = outgoing.subject, "event not published; keeping it in the outbox");
            self.keep(&outgoing).await;
        }
    }

    /// Publishes `events` (of background work: no caller), up to [`PUBLISH_CONCURRENCY`] at
    /// once, so their order is not kept. Returns once every one is stored; after the first the
    /// bus refuses, the rest go straight to the outbox.
    pub async fn publish_all(&self, events: Vec<NewEvent>) {
        let outgoing: Vec<Outgoing> = events
            .into_iter()
            .filter_map(|event| {
                let bus_subject = CloudEvent::bus_subject(event.aggregate, event.action);
                self.bus.may_have_subscribers(&bus_subject).then(|| {
                    self.outgoing(
                        event.aggregate,
                        event.action,
                        &event.subject,
                        bus_subject,
                        event.data,
                    )
                })
            })
            .collect();
        let outage = AtomicBool::new(false);
        let outage = &outage;
        futures_util::stream::iter(outgoing)
            .map(|outgoing| async move {
                if !outage.load(Ordering::Relaxed) {
                    match self.try_send(&outgoing).await {
                        Ok(()) => return,
                        Err(error) => {
                            if !outage.swap(true, Ordering::Relaxed) {
                                tracing::warn!(%error, subject = outgoing.subject, "events not published; keeping them in the outbox");
                            }
                        }
                    }
                }
                self.keep(&outgoing).await;
            })
            .buffer_unordered(PUBLISH_CONCURRENCY)
            .collect::<()>()
            .await;
    }

    fn outgoing(
        &self,
        aggregate: &str,
        action: &str,
        subject: &str,
        bus_subject: String,
        data: Value,
    ) -> Outgoing {
        Outgoing::new(self.source, aggregate, action, subject, bus_subject, data)
    }

    async fn try_send(&self, outgoing: &Outgoing) -> Result<(), crate::BusError> {
        self.bus
            .publish(
                &outgoing.subject,
                outgoing.headers(),
                Bytes::from(outgoing.payload.clone()),
            )
            .await
    }

    async fn keep(&self, outgoing: &Outgoing) {
        if let Err(error) = self.store.insert(self.outbox, outgoing.row()).await {
            tracing::error!(%error, subject = outgoing.subject, "event lost: neither the bus nor the outbox took it");
        }
    }

    /// Publishes what waits in the outbox, oldest first, every [`OUTBOX_INTERVAL`] until
    /// `shutdown`.
    pub async fn drain_outbox_forever(self, shutdown: Shutdown) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(OUTBOX_INTERVAL) => {}
            }
            if let Err(error) = self.drain_outbox().await {
                tracing::debug!(%error, outbox = self.outbox, "outbox not read; retrying");
            }
        }
    }

    /// One pass over the outbox, oldest first, stopping at the first event the bus refuses;
    /// answers how many were published.
    pub async fn drain_outbox(&self) -> Result<usize, StoreError> {
        let options = FindOptions::new(Filter::All)
            .sort("at", Order::Asc)
            .page(0, OUTBOX_PAGE);
        let waiting = self.store.find(self.outbox, &options).await?;
        let read = waiting.len();
        let mut published = 0;
        for row in waiting {
            let text = |k: &str| crate::store::text(&row, k);
            let outgoing = Outgoing {
                id: text("id"),
                subject: text("subject"),
                payload: text("payload"),
                time: text("at"),
            };
            if self.try_send(&outgoing).await.is_err() {
                break;
            }
            published += 1;
            self.store.delete(self.outbox, &outgoing.id).await?;
        }
        if published > 0 {
            tracing::info!(
                published,
                outbox = self.outbox,
                "events from the outbox published"
            );
        }
        let left = if read as u64 >= OUTBOX_PAGE {
            self.store.count(self.outbox, &Filter::All).await?
        } else {
            (read - published) as u64
        };
        crate::metrics::event_outbox_length(self.outbox, usize::try_from(left).unwrap_or(usize::MAX));
        Ok(published)
    }
}
