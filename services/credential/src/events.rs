//! Credential events (`credential.*`, `credential_type.*`, `audit.checkpoint`): the runtime's
//! durable publisher ([`ttscm_runtime::events`] — stored by `TTSCM_EVENTS` before a request
//! answers, or kept in the outbox while the bus cannot take it) with source `ttscm/credential`
//! and this service's outbox, the `event_outbox` collection. Events carry ids, names and field
//! ids — never a value, sealed or not.

use serde_json::Value;
use ttscm_runtime::service::CallContext;
use ttscm_runtime::{Bus, Shutdown, Store, StoreError};

use crate::store::EVENT_OUTBOX;

/// The CloudEvent `source` of this service's events.
pub const SOURCE: &str = "ttscm/credential";

/// Declares the outbox an append log, before anything else uses it.
pub async fn prepare(store: &Store) -> Result<(), StoreError> {
    ttscm_runtime::events::prepare(store, EVENT_OUTBOX).await
}

/// Publishes this service's events, falling back to `event_outbox`.
#[derive(Clone)]
pub struct Events(ttscm_runtime::events::Events);

impl Events {
    /// Events over `bus`, with the outbox in `store`.
    pub fn new(bus: Bus, store: Store) -> Self {
        Self(ttscm_runtime::events::Events::new(
            bus,
            store,
            SOURCE,
            EVENT_OUTBOX,
        ))
    }

    /// Publishes `<aggregate>.<action>` about `subject` (see
    /// [`ttscm_runtime::events::Events::publish`]).
    pub async fn publish(
        &self,
        ctx: &CallContext,
        aggregate: &str,
        action: &str,
        subject: &str,
        data: impl FnOnce() -> Value,
    ) {
        self.0.publish(ctx, aggregate, action, subject, data).await;
    }

    /// Publishes what waits in the outbox until `shutdown`.
    pub async fn drain_outbox_forever(self, shutdown: Shutdown) {
        self.0.drain_outbox_forever(shutdown).await;
    }
}
