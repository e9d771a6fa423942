//! The credential service: credential types and credentials validated against their type,
//! secure values sealed by vault (this service never holds a key), per-type permission scopes,
//! the hash-chained audit log, and credential events.
//!
//! Owns the `credential_types`, `credentials`, `audit_entries` and `event_outbox` collections.

pub mod audit;
pub mod domain;
pub mod events;
pub mod ops;
pub mod reseal;
pub mod service;
pub mod store;

use actix::Actor;
use tokio::task::JoinHandle;
use ttscm_contract::audit::{ListAuditEvents, VerifyAudit};
use ttscm_contract::credential::*;
use ttscm_contract::health::{CredentialHealth, HealthReply};
use ttscm_contract::subjects::CREDENTIAL_QUEUE;
use ttscm_runtime::service::{BusClient, serve_fn};
use ttscm_runtime::{Bus, BusError, Settings, Shutdown, Store, StoreError};

/// Why the credential service could not start.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Starts the credential service and serves its subjects until `shutdown`. Must be called on an
/// actix thread.
pub async fn run(
    bus: &Bus,
    store: &Store,
    settings: &Settings,
    shutdown: Shutdown,
) -> Result<Vec<JoinHandle<()>>, CredentialError> {
    store::prepare(store).await?;
    let (events, publisher) = events::Events::new(bus.clone(), store.clone());
    tokio::spawn(publisher.run());
    let audit = audit::AuditLog::new(store.clone()).start();
    let caches = std::sync::Arc::new(service::Caches::default());
    let service = service::Service {
        store: store.clone(),
        client: BusClient::new(bus.clone(), settings.request_timeout()),
        events: events.clone(),
        audit,
        caches: caches.clone(),
    };
    let service = std::sync::Arc::new(service);
    let q = CREDENTIAL_QUEUE;
    let mut tasks = vec![
        ops::serve_op::<ListCredentialTypes>(bus, q, service.clone(), shutdown.clone()).await?,
        ops::serve_op::<GetCredentialType>(bus, q, service.clone(), shutdown.clone()).await?,
        ops::serve_op::<CreateCredentialType>(bus, q, service.clone(), shutdown.clone()).await?,
        ops::serve_op::<UpdateCredentialType>(bus, q, service.clone(), shutdown.clone()).await?,
        ops::serve_op::<DeleteCredentialType>(bus, q, service.clone(), shutdown.clone()).await?,
        ops::serve_op::<ListCredentialsByType>(bus, q, service.clone(), shutdown.clone()).await?,
        ops::serve_op::<ListCredentialsByCompany>(bus, q, service.clone(), shutdown.clone()).await?,
        ops::serve_op::<CountCompanyCredentials>(bus, q, service.clone(), shutdown.clone()).await?,
        ops::serve_op::<GetCredential>(bus, q, service.clone(), shutdown.clone()).await?,
        ops::serve_op::<CreateCredential>(bus, q, service.clone(), shutdown.clone()).await?,
        ops::serve_op::<UpdateCredential>(bus, q, service.clone(), shutdown.clone()).await?,
        ops::serve_op::<UpdateCredentialFields>(bus, q, service.clone(), shutdown.clone()).await?,
        ops::serve_op::<GetCredentialFields>(bus, q, service.clone(), shutdown.clone()).await?,
        ops::serve_op::<RevealSecureValues>(bus, q, service.clone(), shutdown.clone()).await?,
        ops::serve_op::<DeleteCredential>(bus, q, service.clone(), shutdown.clone()).await?,
        ops::serve_op::<ListAuditEvents>(bus, q, service.clone(), shutdown.clone()).await?,
        ops::serve_op::<VerifyAudit>(bus, q, service.clone(), shutdown.clone()).await?,
    ];
    let health_store = store.clone();
    tasks.push(
        serve_fn::<CredentialHealth, _, _>(bus, q, shutdown.clone(), move |_, _| {
            let store = health_store.clone();
            async move {
                Ok(HealthReply {
                    service: "credential".into(),
                    store_ok: Some(store.ping().await.is_ok()),
                })
            }
        })
        .await?,
    );
    tasks.push(tokio::spawn(events.drain_outbox_forever(shutdown.clone())));
    tasks.push(tokio::spawn(forget_changed_types(
        bus.subscribe(TYPE_EVENTS).await?,
        caches,
        shutdown,
    )));
    Ok(tasks)
}

/// Type events from every replica; each clears this replica's type caches.
const TYPE_EVENTS: &str = "ttscm.events.credential_type.>";

async fn forget_changed_types(
    mut events: ttscm_runtime::bus::Subscription,
    caches: std::sync::Arc<service::Caches>,
    shutdown: Shutdown,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            event = events.next() => match event {
                Some(_) => caches.clear_types(),
                None => return,
            },
        }
    }
}
