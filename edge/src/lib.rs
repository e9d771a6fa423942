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
pub mod credential_routes;
pub mod envelope;
pub mod error;
pub mod limits;
pub mod misc_routes;
pub mod openapi;
pub mod readiness;
pub mod routes;
pub mod table;
pub mod user_routes;
pub mod webhook_routes;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use ttscm_runtime::service::BusClient;
use ttscm_runtime::{Bus, Settings, Shutdown};

pub use auth::Authenticator;

/// How long a stopping edge waits for its WebSockets to finish closing.
const SOCKET_DRAIN: std::time::Duration = std::time::Duration::from_secs(3);

/// What the edge does on the bus besides calling operations (their callers are declared in the
/// contract): it serves and sends the sign-in deliveries between its replicas.
pub fn bus_use() -> ttscm_runtime::router::BusUse {
    const DELIVERIES: &str = "ttscm.edge.v1.login.*";
    debug_assert!(DELIVERIES.starts_with(ttscm_contract::subjects::EDGE_LOGIN_DELIVERY_PREFIX));
    ttscm_runtime::router::BusUse {
        subscribes: vec![DELIVERIES],
        publishes: vec![DELIVERIES],
        streams: Vec::new(),
        // Another edge replica asks the one holding the socket; it answers into edge inboxes.
        answers: vec![ttscm_contract::Component::Edge],
    }
}

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
    /// The WebSocket tasks. An upgraded connection runs outside the HTTP server's graceful
    /// drain, so [`run`] waits for these too: a waiting socket gets its "restarting" message
    /// and a close frame before the edge's runtime goes away, not a reset.
    pub sockets: TaskTracker,
    /// Proxies whose `X-Forwarded-For` names the client (`TTSCM_EDGE__TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<ttscm_runtime::settings::IpNet>,
    /// Rate limits, the waiting-socket cap and the sign-in socket's Origin allow-list.
    pub limits: limits::Limits,
    /// The public `/readyz` outcome, reused briefly.
    pub readiness: readiness::Readiness,
    /// Whether the sign-in cookie is `Secure` (the public URL is `https`).
    pub secure_cookies: bool,
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
            sockets: TaskTracker::new(),
            trusted_proxies: settings.edge.trusted_proxies.clone(),
            limits: limits::Limits::new(settings),
            readiness: readiness::Readiness::new(std::time::Duration::from_millis(
                settings.edge.readiness_cache_ms,
            )),
            secure_cookies: settings.public_url.starts_with("https://"),
        })
    }
}

/// Serves the HTTP surface on `listener` until `shutdown`, then drains in-flight requests.
pub fn run(bus: Bus, settings: &Settings, listener: TcpListener, shutdown: Shutdown) -> JoinHandle<()> {
    let state = EdgeState::new(bus, settings, shutdown.clone());
    let sockets = state.sockets.clone();
    tokio::spawn(prune_limits(state.clone()));
    let filter = routes::routes(state);
    tokio::spawn(async move {
        warp::serve(filter)
            .incoming(listener)
            .graceful(async move { shutdown.cancelled().await })
            .run()
            .await;
        // Waiting sockets end at once on shutdown (they send a message and close); the bound
        // only guards against a client that never reads.
        sockets.close();
        let _ = tokio::time::timeout(SOCKET_DRAIN, sockets.wait()).await;
    })
}

/// Forgets rate-limit keys whose allowance is full again, every [`limits::PRUNE_INTERVAL`],
/// until the edge stops.
async fn prune_limits(state: Arc<EdgeState>) {
    let mut interval = tokio::time::interval(limits::PRUNE_INTERVAL);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = interval.tick() => state.limits.prune(),
        }
    }
}
