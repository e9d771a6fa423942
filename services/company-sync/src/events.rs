//! Company events as CloudEvents 1.0 JSON on `ttscm.events.company.<action>`, source
//! `ttscm/company-sync`:
//!
//! - from a sync, `created`, `updated`, `deactivated` per company and then `synced` (the
//!   report), published before the sync reports done;
//! - from the manual companies API, `created`, `updated` and `deleted`, published before the
//!   request answers (with the caller as `actor` and its `requestId`).
//!
//! They go through the runtime's durable publisher ([`ttscm_runtime::events`]): stored by
//! `TTSCM_EVENTS` (mesh), or kept in this service's outbox, the `company_event_outbox`
//! collection, while the bus cannot take them and published from there once it can. Events
//! carry ids, names, ConnectWise ids and counts — nothing secret.

use serde_json::Value;
use ttscm_runtime::events::NewEvent;
use ttscm_runtime::{Bus, Store, StoreError};

pub use ttscm_runtime::events::Events;

/// Company events that could not be published yet. Owned by company-sync.
pub const COMPANY_EVENT_OUTBOX: &str = "company_event_outbox";

/// The CloudEvent `source` of company events.
pub const SOURCE: &str = "ttscm/company-sync";

/// The aggregate of every company event.
pub const AGGREGATE: &str = "company";

/// One company event of a sync: `(action, subject id, data)`.
pub type Event = (&'static str, String, Value);

/// Declares the outbox an append log, before anything else uses it.
pub async fn prepare(store: &Store) -> Result<(), StoreError> {
    ttscm_runtime::events::prepare(store, COMPANY_EVENT_OUTBOX).await
}

/// Company events over `bus`, with the outbox in `store`.
pub fn events(bus: Bus, store: Store) -> Events {
    Events::new(bus, store, SOURCE, COMPANY_EVENT_OUTBOX)
}

/// A sync's events as the publisher takes them.
pub fn company_events(events: Vec<Event>) -> Vec<NewEvent> {
    events
        .into_iter()
        .map(|(action, subject, data)| NewEvent {
            aggregate: AGGREGATE,
            action,
            subject,
            data,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_sync_event_becomes_a_company_event_with_its_subject_and_data() {
        let events = company_events(vec![("created", "c1".into(), json!({"id": "c1"}))]);
        assert_eq!(
            events,
            [NewEvent {
                aggregate: "company",
                action: "created",
                subject: "c1".into(),
                data: json!({"id": "c1"}),
            }]
        );
    }
}
