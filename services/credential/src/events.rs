//! Credential events as CloudEvents 1.0 JSON on `ttscm.events.<aggregate>.<action>`. Events carry
//! ids, names and field ids — never a value, sealed or not.
//!
//! An event that cannot be published (bus down) goes to the `event_outbox` collection, and a
//! background task publishes the outbox every few seconds, so a bus outage loses nothing.

use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Value, json};
use ttscm_runtime::service::CallContext;
use ttscm_runtime::store::{FindOptions, Order};
use ttscm_runtime::{Bus, Filter, Headers, Shutdown, Store, clock, ids};

use crate::store::EVENT_OUTBOX;

/// How often the outbox is retried.
const OUTBOX_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Serialize)]
struct CloudEvent<'a> {
    specversion: &'static str,
    id: String,
    source: &'static str,
    #[serde(rename = "type")]
    kind: String,
    time: String,
    subject: &'a str,
    datacontenttype: &'static str,
    data: Value,
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

    /// Publishes `<aggregate>.<action>` about `subject` (the resource id) with `data`.
    pub async fn publish(
        &self,
        ctx: &CallContext,
        aggregate: &str,
        action: &str,
        subject: &str,
        mut data: Value,
    ) {
        if let (Some(principal), Value::Object(map)) = (&ctx.principal, &mut data) {
            map.insert(
                "actor".into(),
                json!({"id": principal.id, "kind": principal.kind}),
            );
            map.insert("requestId".into(), json!(ctx.request_id));
        }
        let event = CloudEvent {
            specversion: "1.0",
            id: ids::new_id(),
            source: "ttscm/credential",
            kind: format!("ttscm.{aggregate}.{action}"),
            time: clock::now_iso(),
            subject,
            datacontenttype: "application/json",
            data,
        };
        let bus_subject = format!("{}.{aggregate}.{action}", ttscm_contract::subjects::EVENTS_PREFIX);
        let payload = serde_json::to_string(&event).expect("events serialize");
        if let Err(error) = self
            .bus
            .publish(&bus_subject, Headers::new(), Bytes::from(payload.clone()))
            .await
        {
            tracing::warn!(%error, subject = bus_subject, "event not published; keeping it in the outbox");
            let document =
                json!({"id": event.id, "subject": bus_subject, "payload": payload, "at": event.time});
            if let Err(error) = self
                .store
                .insert(EVENT_OUTBOX, crate::store::to_document(&document))
                .await
            {
                tracing::error!(%error, "event lost: neither the bus nor the outbox took it");
            }
        }
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
                let text = |k: &str| {
                    document
                        .get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
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
