//! Credential events as CloudEvents 1.0 JSON on `ttscm.events.<aggregate>.<action>`. Events carry
//! ids, names and field ids — never a value, sealed or not.
//!
//! **Durable before the answer**: a request publishes its event before it answers — in the mesh
//! a JetStream publish acknowledged by the `TTSCM_EVENTS` stream (one round trip to
//! nats-server), or, when the bus cannot take it, an insert into the `event_outbox` collection
//! that a background task publishes every few seconds. So a crash (`kill -9`) right after a 200
//! loses no event, and a bus outage loses nothing either. (Until issue 20 requests only queued
//! their events for a publisher task off the request path, which a crash could lose.) Events of
//! one request are published in order; events of concurrent requests may interleave. The outbox
//! is declared an append log of the store ([`prepare`]): the embedded store keeps it out of its
//! main file.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use ttscm_contract::event::CloudEvent;
use ttscm_runtime::service::CallContext;
use ttscm_runtime::store::{FindOptions, IndexSpec, Order};
use ttscm_runtime::{Bus, Filter, Headers, Shutdown, Store, StoreError, clock, ids};

use crate::store::EVENT_OUTBOX;

/// The outbox's index: it is read oldest first.
const OUTBOX_INDEXES: &[IndexSpec] = &[IndexSpec {
    name: "at",
    fields: &["at"],
    unique: false,
}];

/// Declares the outbox an append log (inserted when the bus is down, read oldest first, deleted
/// once published), before anything else uses it.
pub async fn prepare(store: &Store) -> Result<(), StoreError> {
    store.ensure_append_log(EVENT_OUTBOX, OUTBOX_INDEXES).await
}

/// How often the outbox is retried.
const OUTBOX_INTERVAL: Duration = Duration::from_secs(2);

/// One serialized event on its way out.
struct Outgoing {
    id: String,
    subject: String,
    payload: String,
    time: String,
}

/// Publishes events, falling back to the outbox.
#[derive(Clone)]
pub struct Events {
    bus: Bus,
    store: Store,
}

impl Events {
    /// Events over `bus`, with an outbox in `store`.
    pub fn new(bus: Bus, store: Store) -> Self {
        Self { bus, store }
    }

    async fn send_or_keep(&self, outgoing: Outgoing) {
        let published = self
            .bus
            .publish(
                &outgoing.subject,
                Headers::new(),
                Bytes::from(outgoing.payload.clone()),
            )
            .await;
        if let Err(error) = published {
            tracing::warn!(%error, subject = outgoing.subject, "event not published; keeping it in the outbox");
            let document = json!({"id": outgoing.id, "subject": outgoing.subject, "payload": outgoing.payload, "at": outgoing.time});
            if let Err(error) = self
                .store
                .insert(EVENT_OUTBOX, crate::store::to_document(&document))
                .await
            {
                tracing::error!(%error, "event lost: neither the bus nor the outbox took it");
            }
        }
    }

    /// Publishes `<aggregate>.<action>` about `subject` (the resource id) with the `data` it
    /// builds (only when someone may listen).
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
        let event = CloudEvent::new(
            "ttscm/credential",
            aggregate,
            action,
            ids::new_id(),
            clock::now_iso(),
            subject,
            data,
        );
        let payload = serde_json::to_string(&event).expect("events serialize");
        let outgoing = Outgoing {
            id: event.id,
            subject: bus_subject,
            payload,
            time: event.time,
        };
        self.send_or_keep(outgoing).await;
    }

    /// Publishes what waits in the outbox, oldest first, until `shutdown`.
    pub async fn drain_outbox_forever(self, shutdown: Shutdown) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(OUTBOX_INTERVAL) => {}
            }
            let Ok(waiting) = self
                .store
                .find(
                    EVENT_OUTBOX,
                    &FindOptions::new(Filter::All).sort("at", Order::Asc).page(0, 500),
                )
                .await
            else {
                continue;
            };
            for document in waiting {
                let text = |k: &str| ttscm_runtime::store::text(&document, k);
                let published = self
                    .bus
                    .publish(&text("subject"), Headers::new(), Bytes::from(text("payload")))
                    .await
                    .is_ok();
                if !published {
                    break;
                }
                let _ = self.store.delete(EVENT_OUTBOX, &text("id")).await;
            }
        }
    }
}
