//! The company-sync service: owns the `companies` collection — companies synced from
//! ConnectWise Manage and manual ones — and answers the company operations (list with search
//! and pagination, get, and create/rename/delete of manual companies), syncs from ConnectWise
//! ([`sync`]), fetches configurations live, checks tickets for ticket-bound reveals
//! ([`tickets`]) and posts internal notes on them from a durable queue ([`notes`]).

pub mod admin;
pub mod connectwise;
pub mod events;
pub mod listing;
pub mod notes;
pub mod service;
pub mod store;
pub mod sync;
pub mod tickets;

use std::sync::Arc;
use std::time::Duration;

use actix::Actor;

use tokio::task::JoinHandle;
use ttscm_contract::company::{
    CheckTicket, CreateCompany, DeleteCompany, GetCompany, GetCompanyConfigurations, GetCompanySummaries,
    GetCompanySyncStatus, ListCompanies, QueueTicketNote, RunCompanySync, UpdateCompany,
};
use ttscm_contract::health::CompanySyncHealth;
use ttscm_contract::subjects::COMPANY_SYNC_QUEUE;
use ttscm_runtime::router::{ServiceRouter, StartError};
use ttscm_runtime::{Bus, Settings, Shutdown, Store};

pub use store::COMPANIES;

/// Starts company-sync and serves its subjects until `shutdown`.
pub async fn run(
    bus: &Bus,
    store: &Store,
    settings: &Settings,
    shutdown: Shutdown,
) -> Result<Vec<JoinHandle<()>>, StartError> {
    // Declared before anything inserts into the outbox (see `events::prepare`).
    events::prepare(store).await?;
    store::prepare(store).await?;
    sync::Syncer::prepare(store).await?;
    notes::NoteQueue::prepare(store).await?;
    let config = connectwise::ConnectWiseConfig::from_settings(&settings.connectwise)
        .map_err(|error| StartError::Config(error.to_string()))?;
    let upstream = Arc::new(sync::Upstream::new(config, connectwise::RetryPolicy::default()));
    let syncer = Arc::new(sync::Syncer::new(store.clone(), bus.clone(), upstream.clone()));
    let interval = Duration::from_secs(settings.connectwise.sync_interval_secs.max(10));
    let sync = sync::SyncActor::new(syncer.clone(), interval).start();
    let ticket_ttl = Duration::from_secs(settings.connectwise.ticket_cache_secs);
    let service = Arc::new(service::Service {
        store: store.clone(),
        events: events::events(bus.clone(), store.clone()),
        tickets: tickets::Tickets::new(upstream.clone(), ticket_ttl),
        notes: Arc::new(notes::NoteQueue::new(store.clone(), upstream.clone())),
        upstream,
        syncer,
        sync,
        listing: listing::Listing::default(),
        client: ttscm_runtime::service::BusClient::new(bus.clone(), settings.request_timeout()),
    });
    Ok(router()
        .serve(bus, service, Some(store.clone()), shutdown)
        .await?)
}

/// Every operation company-sync serves.
pub fn router() -> ServiceRouter<service::Service> {
    ServiceRouter::new::<CompanySyncHealth>("company-sync", COMPANY_SYNC_QUEUE)
        .op::<GetCompanySummaries>()
        .op::<ListCompanies>()
        .op::<GetCompany>()
        .op::<CreateCompany>()
        .op::<UpdateCompany>()
        .op::<DeleteCompany>()
        .op::<RunCompanySync>()
        .op::<GetCompanySyncStatus>()
        .op::<GetCompanyConfigurations>()
        .op::<CheckTicket>()
        .op::<QueueTicketNote>()
        .background(|service, shutdown| Box::pin(service.notes.clone().run_forever(shutdown)))
        // Company events that could not be published when they happened, retried until
        // delivered.
        .background(|service, shutdown| Box::pin(service.events.clone().drain_outbox_forever(shutdown)))
        .publishes(ttscm_contract::subjects::EVENTS_ALL)
        .stream(ttscm_contract::subjects::EVENTS_STREAM, false)
}
