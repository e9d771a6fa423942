//! What every TTSCM component shares at run time: settings, telemetry, the bus and store ports
//! with their adapters, the service router (bus requests to handlers), ids and clocks.

pub mod audit;
pub mod bus;
pub mod cache;
pub mod clock;
pub mod connect;
pub mod ed25519;
pub mod events;
pub mod idempotency;
pub mod ids;
pub mod metrics;
pub mod principal;
pub mod retry;
pub mod router;
pub mod service;
pub mod settings;
pub mod store;
pub mod telemetry;
pub mod totp;

pub use bus::{Bus, BusError, Headers};
pub use settings::Settings;
pub use store::{Filter, FindOptions, Store, StoreError, Update};
pub use tokio_util::sync::CancellationToken as Shutdown;
