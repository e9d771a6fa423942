//! The vault service: the only holder of key material. Loads the key ring (from settings in
//! mesh mode, from the data dir in embedded mode, generated on first start) and answers health.
//! Sealing and unsealing over the bus build on this key ring.

pub mod keyring;

use tokio::task::JoinHandle;
use ttscm_contract::health::{HealthReply, VaultHealth};
use ttscm_contract::subjects::VAULT_QUEUE;
use ttscm_runtime::service::serve_fn;
use ttscm_runtime::{Bus, BusError, Settings, Shutdown};

pub use keyring::{KeyRing, KeyRingError};

/// Why vault could not start.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The key ring could not be loaded (the CLI exits with code 64).
    #[error(transparent)]
    KeyRing(#[from] KeyRingError),
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Starts vault and serves its subjects until `shutdown`.
pub async fn run(
    bus: &Bus,
    settings: &Settings,
    shutdown: Shutdown,
) -> Result<Vec<JoinHandle<()>>, VaultError> {
    let ring = KeyRing::load(settings)?;
    tracing::info!(
        active_kid = ring.active_kid(),
        keys = ring.len(),
        "vault key ring loaded"
    );
    Ok(vec![
        serve_fn::<VaultHealth, _, _>(bus, VAULT_QUEUE, shutdown, move |_, _| async move {
            Ok(HealthReply {
                service: "vault".into(),
                store_ok: None,
            })
        })
        .await?,
    ])
}
