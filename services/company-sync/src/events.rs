//! Company events as CloudEvents 1.0 JSON on `ttscm.events.company.<action>`: `created`,
//! `updated`, `deactivated` per company and `synced` (the report) per sync. Events carry ids,
//! names and counts. Publishing is best effort, off the sync's path: a bus outage logs and drops
//! events (the companies themselves are in the store).

use bytes::Bytes;
use serde_json::Value;
use ttscm_contract::event::CloudEvent;
use ttscm_runtime::{Bus, Headers, clock, ids};

/// One event to publish: `(action, subject id, data)`.
pub type Event = (&'static str, String, Value);

/// Publishes `events` in order, in the background.
pub fn publish_all(bus: &Bus, events: Vec<Event>) {
    if events.is_empty() {
        return;
    }
    let bus = bus.clone();
    tokio::spawn(async move {
        for (action, subject, data) in events {
            let event = CloudEvent::new(
                "ttscm/company-sync",
                "company",
                action,
                ids::new_id(),
                clock::now_iso(),
                &subject,
                data,
            );
            let payload = serde_json::to_vec(&event).expect("events serialize");
            let topic = CloudEvent::bus_subject("company", action);
            if let Err(error) = bus.publish(&topic, Headers::new(), Bytes::from(payload)).await {
                tracing::warn!(%error, topic, "company event not published");
            }
        }
    });
}
