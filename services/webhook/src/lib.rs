//! The webhook component: delivers events to the HTTP endpoints admins register, following the
//! Standard Webhooks specification (`webhook-id`, `webhook-timestamp`, `webhook-signature:
//! v1,<base64 HMAC-SHA256 of id.timestamp.body>`, `whsec_` secrets).
//!
//! - **Where events come from** ([`ingest`]): in the mesh, a durable JetStream consumer
//!   (`webhooks`) on `TTSCM_EVENTS` shared by every replica, so each event is taken by one; in
//!   one process, the in-process bus hands every event an endpoint wants to this component
//!   *inside the publish* ([`ttscm_runtime::bus::inproc::DurableListener`]), before the
//!   publisher answers. Either way an event becomes one stored delivery per endpoint that
//!   wants it before it is acknowledged: nothing is lost across restarts.
//! - **Delivery** ([`deliver`]): every replica claims due deliveries (a conditional write; a
//!   claim lapses after a minute), POSTs them and records the attempt; failures are retried on
//!   the Standard Webhooks schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: the last attempt
//!   27 h after the first), and an endpoint failing a configurable number of attempts in a row
//!   is disabled, with a `webhook.endpoint_disabled` event. At least once: a receiver dedupes by
//!   `webhook-id` (the event's id).
//! - **Endpoints** ([`endpoints`]): `webhook.manage`; secrets sealed by vault in a key domain of
//!   their own; URLs checked against internal address ranges ([`ssrf`]) at registration and
//!   at every delivery.

pub mod deliver;
pub mod endpoints;
pub mod ingest;
pub mod ssrf;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use ttscm_contract::subjects::{AUDIT_STREAM, AUDIT_SUBJECT, EVENTS_ALL, EVENTS_STREAM, WEBHOOK_QUEUE};
use ttscm_contract::webhook::{
    CreateWebhookEndpoint, DeleteWebhookEndpoint, GetWebhookEndpoint, ListWebhookDeliveries,
    ListWebhookEndpoints, ReplayWebhookDeliveries, ReplayWebhookDelivery, RotateWebhookSecret,
    UpdateWebhookEndpoint, WebhookHealth,
};
use ttscm_runtime::audit::AuditLog;
use ttscm_runtime::events::Events;
use ttscm_runtime::router::{ServiceRouter, StartError};
use ttscm_runtime::service::BusClient;
use ttscm_runtime::settings::WebhookSettings;
use ttscm_runtime::{Bus, Settings, Shutdown, Store};

/// The component's state, shared by its operations and jobs.
pub struct Service {
    /// The bus (the mesh's event consumer reads through its connection).
    pub bus: Bus,
    /// Endpoints and deliveries.
    pub store: Store,
    /// Vault calls (sealing and opening secrets).
    pub client: BusClient,
    /// The component's own events (`webhook.endpoint_disabled`).
    pub events: Events,
    /// Admin actions and automatic disables.
    pub audit: AuditLog,
    /// The settings.
    pub settings: WebhookSettings,
    /// Deliveries: the HTTP client, the claims, the opened secrets.
    pub deliverer: deliver::Deliverer,
    /// The endpoints the in-process listener matches events against.
    pub filters: ingest::Filters,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("webhook::Service").finish_non_exhaustive()
    }
}

/// Opens the component's state (collections prepared): what `run` serves, and what a test
/// holds to drive deliveries with a clock of its own ([`Service::deliver_due`]).
pub async fn open(bus: &Bus, store: &Store, settings: &Settings) -> Result<Arc<Service>, StartError> {
    store::prepare(store).await?;
    let audit = AuditLog::open(bus, store).await?;
    let service = Arc::new(Service {
        bus: bus.clone(),
        store: store.clone(),
        client: BusClient::new(bus.clone(), settings.request_timeout()),
        events: Events::new(bus.clone(), store.clone(), "ttscm/webhook", store::OUTBOX),
        audit,
        settings: settings.webhook.clone(),
        deliverer: deliver::Deliverer::new(&settings.webhook),
        filters: ingest::Filters::default(),
    });
    service.filters.reload(store).await?;
    Ok(service)
}

/// Starts the webhook component and serves until `shutdown`.
pub async fn run(
    bus: &Bus,
    store: &Store,
    settings: &Settings,
    shutdown: Shutdown,
) -> Result<Vec<JoinHandle<()>>, StartError> {
    let service = open(bus, store, settings).await?;
    // In one process events come straight from the publishers (see `ingest`).
    bus.set_durable_listener(Arc::new(ingest::InProcListener(Arc::downgrade(&service))));
    Ok(router()
        .serve(bus, service, Some(store.clone()), shutdown)
        .await?)
}

/// How often the endpoint filters of the in-process listener are read again (endpoints
/// changed by a command beside the server).
const FILTERS_RELOAD: Duration = Duration::from_secs(2);

/// Every operation the component serves, and its jobs.
pub fn router() -> ServiceRouter<Service> {
    ServiceRouter::new::<WebhookHealth>("webhook", WEBHOOK_QUEUE)
        .op::<ListWebhookEndpoints>()
        .op::<GetWebhookEndpoint>()
        .op::<CreateWebhookEndpoint>()
        .op::<UpdateWebhookEndpoint>()
        .op::<DeleteWebhookEndpoint>()
        .op::<RotateWebhookSecret>()
        .op::<ListWebhookDeliveries>()
        .op::<ReplayWebhookDelivery>()
        .op::<ReplayWebhookDeliveries>()
        .background(|service, shutdown| Box::pin(ingest::consume_forever(service, shutdown)))
        .background(|service, shutdown| Box::pin(deliver::deliver_forever(service, shutdown)))
        .background(|service, shutdown| Box::pin(deliver::prune_forever(service, shutdown)))
        .background(|service, shutdown| {
            Box::pin(async move {
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(FILTERS_RELOAD) => {}
                    }
                    if let Err(error) = service.filters.reload(&service.store).await {
                        tracing::debug!(%error, "webhook endpoints not reloaded");
                    }
                }
            })
        })
        .background(|service, shutdown| Box::pin(service.events.clone().drain_outbox_forever(shutdown)))
        .publishes(EVENTS_ALL)
        .stream(EVENTS_STREAM, true)
        .publishes(AUDIT_SUBJECT)
        .stream(AUDIT_STREAM, false)
}
