//! The edge: the only component that speaks HTTP. Serves the `/v1` REST surface with warp,
//! authenticates callers (API tokens and access tokens), enforces the permissions the spec
//! names per route, forwards calls over the bus, and maps every outcome to the spec's envelope.
//!
//! **Architecture Invariant**: the edge is stateless apart from caches that expire within
//! seconds; any number of replicas can serve.

pub mod auth;
pub mod auth_routes;
pub mod body;
pub mod company_routes;
pub mod envelope;
pub mod error;
pub mod routes;
pub mod user_routes;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use ttscm_runtime::service::BusClient;
use ttscm_runtime::{Bus, Settings, Shutdown};

pub use auth::Authenticator;

/// What the edge's handlers share.
pub struct EdgeState {
    /// Calls services over the bus.
    pub client: BusClient,
    /// Resolves bearer tokens to principals.
    pub auth: Authenticator,
    /// Largest accepted request body.
    pub body_limit: u64,
    /// Cancelled when the edge stops (ends waiting WebSockets, so draining does not wait on them).
    pub shutdown: Shutdown,
}

impl EdgeState {
    /// State for the given bus and settings.
    pub fn new(bus: Bus, settings: &Settings, shutdown: Shutdown) -> Arc<Self> {
        let client = BusClient::new(bus, settings.request_timeout());
        Arc::new(Self {
            auth: Authenticator::new(
                client.clone(),
                std::time::Duration::from_secs(settings.edge.token_cache_secs),
            ),
            client,
            body_limit: settings.edge.body_limit,
            shutdown,
        })
    }
}

/// Serves the HTTP surface on `listener` until `shutdown`, then drains in-flight requests.
pub fn run(bus: Bus, settings: &Settings, listener: TcpListener, shutdown: Shutdown) -> JoinHandle<()> {
    let state = EdgeState::new(bus, settings, shutdown.clone());
    let filter = routes::routes(state);
    tokio::spawn(async move {
        warp::serve(filter)
            .incoming(listener)
            .graceful(async move { shutdown.cancelled().await })
            .run()
            .await;
    })
}
