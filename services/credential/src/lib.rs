//! The credential service: credential types and credentials validated against their type,
//! secure values sealed by vault (this service never holds a key), per-type permission scopes,
//! the hash-chained audit log, and credential events.
//!
//! Owns the `credential_types`, `credentials`, `audit_entries` (with `audit_layout`) and `event_outbox` collections.

pub mod audit;
pub mod auditing;
pub mod caches;
pub mod checkpoints;
pub mod credentials;
pub mod domain;
pub mod events;
pub mod exposure;
pub mod history;
pub mod policy;
pub mod reseal;
pub mod rotation;
pub mod sealing;
pub mod service;
pub mod siem;
pub mod store;
pub mod turns;
pub mod types;
pub mod versions_check;

use tokio::task::JoinHandle;
use ttscm_contract::audit::{
    CreateAuditCheckpoint, GetAuditCheckpoint, GetExposure, ListAuditEvents, MarkExposureDue, VerifyAudit,
};
use ttscm_contract::credential::*;
use ttscm_contract::health::CredentialHealth;
use ttscm_contract::subjects::{CREDENTIAL_CHANGED, CREDENTIAL_QUEUE};
use ttscm_runtime::router::{ServiceRouter, StartError};
use ttscm_runtime::service::BusClient;
use ttscm_runtime::{Bus, Settings, Shutdown, Store};

/// Starts the credential service and serves its subjects until `shutdown`.
pub async fn run(
    bus: &Bus,
    store: &Store,
    settings: &Settings,
    shutdown: Shutdown,
) -> Result<Vec<JoinHandle<()>>, StartError> {
    let service = open(bus, store, settings, shutdown.clone()).await?;
    Ok(router()
        .serve(bus, service, Some(store.clone()), shutdown)
        .await?)
}

/// The credential service's state over `bus` and `store`, its collections prepared: what
/// [`run`] serves. Tests hold one as another replica would, to drive work directly (e.g.
/// `Service::sweep_rotation` with a clock of their own).
pub async fn open(
    bus: &Bus,
    store: &Store,
    settings: &Settings,
    shutdown: Shutdown,
) -> Result<std::sync::Arc<service::Service>, StartError> {
    // Declared before `store::prepare` touches the outbox (see `events::prepare`).
    events::prepare(store).await?;
    store::prepare(store).await?;
    checkpoints::prepare(store).await?;
    let events = events::Events::new(bus.clone(), store.clone());
    // Over NATS, audit entries are appended to a JetStream stream and copied into the store.
    let audit = audit::AuditLog::open(bus, store, shutdown.clone()).await?;
    let service = service::Service {
        store: store.clone(),
        client: BusClient::new(bus.clone(), settings.request_timeout()),
        events,
        audit,
        caches: std::sync::Arc::new(caches::Caches::default()),
        checkpoint_every: (settings.audit.checkpoint_secs > 0)
            .then(|| std::time::Duration::from_secs(settings.audit.checkpoint_secs)),
        verify_max_entries: settings.audit.verify_max_entries.max(1),
        list_max_unpaged: settings.credential.list_max_unpaged,
        credential_settings: settings.credential.clone(),
        audit_settings: settings.audit.clone(),
        turns: turns::WriteTurns::default(),
        turn_wait: settings.request_timeout(),
    };
    Ok(std::sync::Arc::new(service))
}

/// Every operation the credential service serves.
pub fn router() -> ServiceRouter<service::Service> {
    ServiceRouter::new::<CredentialHealth>("credential", CREDENTIAL_QUEUE)
        .op::<GetCredential>()
        .op::<RevealSecureValues>()
        .op::<GetTotpCode>()
        .op::<ListCredentialHistory>()
        .op::<RevealPastSecureValues>()
        .op::<RestoreCredentialVersion>()
        .op::<VerifyCredentialVersions>()
        .op::<GetCredentialFields>()
        .op::<ListCredentialsByType>()
        .op::<ListCredentialsByCompany>()
        .op::<ListCredentials>()
        .op::<CreateCredential>()
        .op::<UpdateCredential>()
        .op::<UpdateCredentialFields>()
        .op::<DeleteCredential>()
        .op::<CountCompanyCredentials>()
        .op::<ListCredentialTypes>()
        .op::<GetCredentialType>()
        .op::<CreateCredentialType>()
        .op::<UpdateCredentialType>()
        .op::<DeleteCredentialType>()
        .op::<ListAuditEvents>()
        .op::<VerifyAudit>()
        .op::<GetAuditCheckpoint>()
        .op::<CreateAuditCheckpoint>()
        .op::<GetExposure>()
        .op::<MarkExposureDue>()
        // Events (kept by the events stream), changes announced to the other replicas, and the
        // audit entries on their way through `TTSCM_AUDIT` to the store.
        .publishes(ttscm_contract::subjects::EVENTS_ALL)
        .publishes(CREDENTIAL_CHANGED)
        .publishes(ttscm_contract::subjects::AUDIT_SUBJECT)
        .stream(ttscm_contract::subjects::EVENTS_STREAM, false)
        .stream(ttscm_contract::subjects::AUDIT_STREAM, true)
        // Events that could not be published when they happened, retried until delivered.
        .background(|service, shutdown| Box::pin(service.events.clone().drain_outbox_forever(shutdown)))
        // The audit log to the configured SIEM sinks (syslog, Splunk HEC), from durable cursors.
        .background(|service, shutdown| Box::pin(service.export_audit_forever(shutdown)))
        // Past versions beyond the retention settings.
        .background(|service, shutdown| Box::pin(service.prune_history_forever(shutdown)))
        // Signed checkpoints of the audit chain's head while it moves.
        .background(|service, shutdown| Box::pin(service.checkpoint_forever(shutdown)))
        // Credentials whose type's rotationDays passed marked due (one replica at a time).
        .background(|service, shutdown| Box::pin(service.rotation_forever(shutdown)))
        // Type events from every replica clear this replica's type caches; credential changes
        // announced by every replica (this one included) forget the credential, or for `*` all.
        .listen(TYPE_EVENTS, |service, _| service.caches.clear_types())
        .listen(CREDENTIAL_CHANGED, |service, change| {
            match std::str::from_utf8(&change.payload) {
                Ok(id) if id != "*" => service.caches.credentials.forget(id),
                _ => service.caches.credentials.clear(),
            }
        })
}

/// Type events from every replica.
const TYPE_EVENTS: &str = "ttscm.events.credential_type.>";
