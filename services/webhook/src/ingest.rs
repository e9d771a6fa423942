//! Events in: each event becomes one stored delivery per endpoint that wants it, before the
//! event is acknowledged (mesh: the JetStream message; in process: the publish itself).

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use futures_util::future::BoxFuture;
use parking_lot::RwLock;
use serde_json::Value;
use ttscm_contract::subjects::{EVENTS_PREFIX, EVENTS_STREAM};
use ttscm_runtime::bus::Message;
use ttscm_runtime::bus::inproc::DurableListener;
use ttscm_runtime::store::Document;
use ttscm_runtime::{Bus, Filter, FindOptions, Shutdown, Store, StoreError, clock};

use crate::Service;
use crate::store::{DELIVERIES, DeliveryDoc, ENDPOINTS, EndpointDoc, PENDING, from_document, to_document};

/// The durable consumer every replica reads `TTSCM_EVENTS` through.
pub const CONSUMER: &str = "webhooks";
/// How long a replica may hold an event before the server hands it to another.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// Most events taken at once.
const BATCH: usize = 100;
/// How long a batch gathers once its first event arrived.
const GATHER: Duration = Duration::from_millis(5);
/// How long one pull request waits, and how often the server says it is alive.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
const PULL_HEARTBEAT: Duration = Duration::from_secs(2);
/// Pause before starting over after an error.
const RETRY: Duration = Duration::from_millis(500);

/// The endpoints as last read: what events are matched against.
#[derive(Debug, Default)]
pub struct Filters(RwLock<Arc<Vec<EndpointDoc>>>);

impl Filters {
    /// Reads the endpoints again.
    pub async fn reload(&self, store: &Store) -> Result<(), StoreError> {
        let documents = store.find(ENDPOINTS, &FindOptions::new(Filter::All)).await?;
        let endpoints = documents
            .into_iter()
            .filter_map(|d| from_document::<EndpointDoc>(d).ok())
            .collect();
        *self.0.write() = Arc::new(endpoints);
        Ok(())
    }

    /// The endpoints now.
    pub fn snapshot(&self) -> Arc<Vec<EndpointDoc>> {
        self.0.read().clone()
    }

    /// Whether any enabled endpoint may want events on the bus subject `subject`
    /// (`ttscm.events.credential.created`).
    pub fn wants_subject(&self, subject: &str) -> bool {
        let Some(short) = subject
            .strip_prefix(EVENTS_PREFIX)
            .and_then(|rest| rest.strip_prefix('.'))
        else {
            return false;
        };
        self.0.read().iter().any(|e| e.enabled && e.wants_type(short))
    }
}

/// What a delivery needs of an event.
struct Incoming<'a> {
    id: &'a str,
    kind: &'a str,
    company_id: Option<String>,
    time_ms: i64,
}

fn incoming(event: &Value) -> Option<Incoming<'_>> {
    let kind = event.get("type")?.as_str()?;
    let data_company = event
        .pointer("/data/companyId")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let company_id = data_company.or_else(|| {
        kind.starts_with("ttscm.company.")
            .then(|| event.get("subject").and_then(Value::as_str).map(str::to_owned))
            .flatten()
    });
    let time_ms = event
        .get("time")
        .and_then(Value::as_str)
        .and_then(clock::parse_iso)
        .map_or_else(clock::unix_now_millis, |at| {
            i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
        });
    Some(Incoming {
        id: event.get("id")?.as_str()?,
        kind,
        company_id,
        time_ms,
    })
}

impl Service {
    /// Stores a delivery of `payload` (an event's CloudEvent JSON) for every endpoint of
    /// `endpoints` that wants it; answers how many. Stored twice is stored once (ids are
    /// `<endpoint>.<event>`), so a redelivered event adds nothing.
    pub async fn take_event(&self, payload: &[u8], endpoints: &[EndpointDoc]) -> Result<usize, StoreError> {
        let Ok(event) = serde_json::from_slice::<Value>(payload) else {
            tracing::error!("an event that is not JSON is not delivered");
            return Ok(0);
        };
        let Some(event) = incoming(&event) else {
            tracing::error!("an event without id or type is not delivered");
            return Ok(0);
        };
        let now = clock::unix_now_millis();
        let created_at = clock::now_iso();
        let body = String::from_utf8_lossy(payload);
        let rows: Vec<Document> = endpoints
            .iter()
            .filter(|e| e.wants(event.kind, event.company_id.as_deref(), event.time_ms))
            .map(|endpoint| {
                to_document(&DeliveryDoc {
                    id: format!("{}.{}", endpoint.id, event.id),
                    endpoint_id: endpoint.id.clone(),
                    event_id: event.id.to_owned(),
                    event_type: event.kind.to_owned(),
                    company_id: event.company_id.clone(),
                    payload: body.clone().into_owned(),
                    status: PENDING.to_owned(),
                    attempts: 0,
                    next_at_ms: now,
                    round_started_ms: now,
                    created_at: created_at.clone(),
                    created_at_ms: now,
                    delivered_at: None,
                    last_attempts: Vec::new(),
                    claim_until: 0,
                    claimed_by: String::new(),
                })
            })
            .collect();
        let count = rows.len();
        if count == 0 {
            return Ok(0);
        }
        match self.store.insert_many(DELIVERIES, rows.clone()).await {
            Ok(()) => {}
            // Taken before (a redelivery): keep what was stored, add what was not.
            Err(StoreError::Conflict) => {
                for row in rows {
                    match self.store.insert(DELIVERIES, row).await {
                        Ok(()) | Err(StoreError::Conflict) => {}
                        Err(error) => return Err(error),
                    }
                }
            }
            Err(error) => return Err(error),
        }
        crate::deliver::queued(count);
        self.deliverer.wake();
        Ok(count)
    }
}

/// The in-process bus's durable listener: events an endpoint wants are stored as deliveries
/// inside the publish. Holds the component weakly (the bus outlives it in tests).
pub struct InProcListener(pub Weak<Service>);

impl DurableListener for InProcListener {
    fn wants(&self, subject: &str) -> bool {
        self.0.upgrade().is_some_and(|s| s.filters.wants_subject(subject))
    }

    fn take(&self, message: Message) -> BoxFuture<'static, Result<(), String>> {
        let service = self.0.clone();
        Box::pin(async move {
            let Some(service) = service.upgrade() else {
                return Ok(());
            };
            let endpoints = service.filters.snapshot();
            service
                .take_event(&message.payload, &endpoints)
                .await
                .map(|_| ())
                .map_err(|e| format!("webhook deliveries not stored: {e}"))
        })
    }
}

/// Reads `TTSCM_EVENTS` through the shared durable consumer until `shutdown` (mesh only; in
/// process the events come through [`InProcListener`]).
pub async fn consume_forever(service: Arc<Service>, shutdown: Shutdown) {
    let Bus::Nats(bus) = &service.bus else {
        return;
    };
    let jetstream = jetstream::new(bus.client().clone());
    let mut warned: Option<Instant> = None;
    loop {
        match consume_until_error(&service, &jetstream, &shutdown).await {
            Ok(()) => return,
            Err(error) if warned.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) => {
                tracing::warn!(%error, "webhook event consumer paused; retrying");
                warned = Some(Instant::now());
            }
            Err(error) => tracing::debug!(%error, "webhook event consumer still paused"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

async fn consume_until_error(
    service: &Service,
    jetstream: &jetstream::Context,
    shutdown: &Shutdown,
) -> Result<(), String> {
    let stream = jetstream
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| e.to_string())?;
    let consumer = stream
        .get_or_create_consumer(
            CONSUMER,
            consumer::pull::Config {
                durable_name: Some(CONSUMER.to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                // From its creation on: no endpoint existed before the component did.
                deliver_policy: consumer::DeliverPolicy::New,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(BATCH)
        .expires(PULL_EXPIRES)
        .heartbeat(PULL_HEARTBEAT)
        .messages()
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let Some((batch, ended)) =
            ttscm_runtime::bus::nats::next_batch(&mut messages, BATCH, GATHER, shutdown).await
        else {
            return Ok(());
        };
        if !batch.is_empty() {
            // The endpoints as they are now: changes made through other replicas count.
            while let Err(error) = service.filters.reload(&service.store).await {
                tracing::warn!(%error, "webhook endpoints not readable; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(RETRY) => {}
                }
            }
            let endpoints = service.filters.snapshot();
            for message in batch {
                while let Err(error) = service.take_event(&message.payload, &endpoints).await {
                    tracing::warn!(%error, "webhook deliveries not stored yet; retrying");
                    message
                        .ack_with(jetstream::AckKind::Progress)
                        .await
                        .map_err(|e| e.to_string())?;
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(RETRY) => {}
                    }
                }
                message.ack().await.map_err(|e| e.to_string())?;
            }
        }
        if let Some(error) = ended {
            return Err(error);
        }
    }
}
