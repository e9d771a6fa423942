//! The vault service: the only holder of key material. Seals, opens and re-seals field values
//! over the bus ([`vault`]), in the format of [`seal`], with the keys of [`keyring`].
//!
//! `run` serves vault's subjects until shutdown; [`rotate`] is what `ttscm vault rotate` runs
//! (embedded mode: a new active key in the data dir's key file, picked up by a running vault
//! within seconds).

pub mod keyring;
pub mod seal;
pub mod vault;

use std::sync::Arc;
use tokio::task::JoinHandle;

use ttscm_contract::health::VaultHealth;
use ttscm_contract::subjects::VAULT_QUEUE;
use ttscm_contract::vault::{Reseal, Seal, Unseal};
use ttscm_runtime::router::{ServiceRouter, StartError};
use ttscm_runtime::{Bus, Settings, Shutdown};

pub use keyring::{KeyRing, KeyRingError};
pub use seal::SealError;
pub use vault::{SharedVault, Vault};

/// Why a key could not be rotated.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The key ring could not be loaded or changed (the CLI exits with code 64).
    #[error(transparent)]
    KeyRing(#[from] KeyRingError),
}

/// Starts vault and serves its subjects until `shutdown`.
pub async fn run(
    bus: &Bus,
    settings: &Settings,
    shutdown: Shutdown,
) -> Result<Vec<JoinHandle<()>>, StartError> {
    let vault = Vault::from_settings(settings, vault::RELOAD_INTERVAL)
        .map_err(|error| StartError::Config(error.to_string()))?;
    tracing::info!(
        active_kid = vault.active_kid(),
        keys = vault.key_count(),
        key_file = vault.key_file().map(|p| p.display().to_string()),
        "vault key ring loaded"
    );
    Ok(router()
        .serve(bus, Arc::new(SharedVault::new(vault)), None, shutdown)
        .await?)
}

/// Every operation vault serves (their handlers are in [`vault`]).
pub fn router() -> ServiceRouter<SharedVault> {
    ServiceRouter::new::<VaultHealth>("vault", VAULT_QUEUE)
        .op::<Seal>()
        .op::<Unseal>()
        .op::<Reseal>()
}

/// Makes a new random key the active one (`ttscm vault rotate`) and returns its kid.
///
/// Embedded mode only: the key is added to `<data_dir>/vault-keys.json`, every old key stays
/// (values sealed with them keep opening), and a running vault picks the change up within
/// seconds. In mesh mode keys come from settings, and this returns a
/// [`KeyRingError::Config`] saying how to rotate there.
pub fn rotate(settings: &Settings) -> Result<String, VaultError> {
    let Some(path) = keyring::file_path(settings) else {
        return Err(KeyRingError::Config(
            "vault keys come from settings here (TTSCM_VAULT__KEYS), so rotate them there: \
             generate a key with `ttscm keys vault-key --kid <new kid>`, append it to \
             TTSCM_VAULT__KEYS (keep the old keys: values sealed with them must keep opening), \
             set TTSCM_VAULT__ACTIVE_KID to the new kid and restart the vault replicas; \
             then run `ttscm vault reseal`"
                .into(),
        )
        .into());
    };
    let kid = keyring::rotate_file(&path)?;
    tracing::info!(
        kid,
        path = %path.display(),
        "rotated the vault key: new values are sealed with it, old keys still open old values"
    );
    Ok(kid)
}
