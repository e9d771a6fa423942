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

use secrecy::ExposeSecret;
use ttscm_contract::health::VaultHealth;
use ttscm_contract::subjects::VAULT_QUEUE;
use ttscm_contract::vault::{GenerateTotp, GetCheckpointKey, Reseal, Seal, SignAuditHead, Unseal};
use ttscm_contract::webhook::{OpenWebhookSecrets, SealWebhookSecret};
use ttscm_runtime::ed25519::Ed25519Key;
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
    let checkpoint_key = checkpoint_key(settings).map_err(|error| StartError::Config(error.to_string()))?;
    tracing::info!(
        key_id = checkpoint_key.key_id(),
        public_key = checkpoint_key.public_base64(),
        "audit checkpoints are signed with this key"
    );
    Ok(router()
        .serve(
            bus,
            Arc::new(SharedVault::new(vault, checkpoint_key)),
            None,
            shutdown,
        )
        .await?)
}

/// The file holding the embedded mode's generated checkpoint key, inside the data dir.
pub const CHECKPOINT_KEY_FILE: &str = "vault-checkpoint-key";

/// The key that signs audit checkpoints: `TTSCM_VAULT__CHECKPOINT_KEY`, or — where the key ring
/// lives in the data dir (embedded mode) — the data dir's, generated on first use. Wherever the
/// ring comes from settings or the store is MongoDB it is required: every vault replica must
/// sign with the same key, and verifiers pin its public half.
pub fn checkpoint_key(settings: &Settings) -> Result<Ed25519Key, ttscm_runtime::ed25519::KeyError> {
    if let Some(key) = &settings.vault.checkpoint_key {
        return Ed25519Key::from_base64("TTSCM_VAULT__CHECKPOINT_KEY", key.expose_secret());
    }
    if keyring::file_path(settings).is_none() {
        return Err(ttscm_runtime::ed25519::KeyError(
            "TTSCM_VAULT__CHECKPOINT_KEY is required where TTSCM_VAULT__KEYS or MongoDB is set (every \
             vault replica signs audit checkpoints with the same key); generate one with \
             `ttscm keys checkpoint-key`"
                .into(),
        ));
    }
    Ed25519Key::load_or_create(&settings.data_dir.join(CHECKPOINT_KEY_FILE))
}

/// Every operation vault serves (their handlers are in [`vault`]).
pub fn router() -> ServiceRouter<SharedVault> {
    ServiceRouter::new::<VaultHealth>("vault", VAULT_QUEUE)
        .op::<Seal>()
        .op::<Unseal>()
        .op::<GenerateTotp>()
        .op::<Reseal>()
        .op::<SignAuditHead>()
        .op::<GetCheckpointKey>()
        .op::<SealWebhookSecret>()
        .op::<OpenWebhookSecrets>()
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
