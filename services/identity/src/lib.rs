//! The identity service: roles and permissions, API tokens for machines, and the Ed25519 key
//! that signs access tokens (whose public half the edge verifies with).
//!
//! `run` serves identity's bus subjects until shutdown; [`admin`] holds the operations the CLI
//! runs directly against the store (create/list/revoke API tokens).

pub mod actor;
pub mod admin;
pub mod error;
pub mod keys;
pub mod store;

use actix::Actor;
use tokio::task::JoinHandle;
use ttscm_contract::health::{HealthReply, IdentityHealth};
use ttscm_contract::identity::{AuthenticateToken, GetPublicKeys, ResolveRoles};
use ttscm_contract::subjects::IDENTITY_QUEUE;
use ttscm_runtime::service::{serve, serve_fn};
use ttscm_runtime::{Bus, Settings, Shutdown, Store};

pub use error::IdentityError;
pub use keys::SigningKey;

/// Starts the identity service: prepares its collections, loads the signing key, and serves
/// its subjects until `shutdown`. Must be called on an actix thread (the actor starts there).
pub async fn run(
    bus: &Bus,
    store: &Store,
    settings: &Settings,
    shutdown: Shutdown,
) -> Result<Vec<JoinHandle<()>>, IdentityError> {
    store::prepare(store).await?;
    let signing_key = SigningKey::load(settings)?;
    let addr = actor::IdentityActor::new(store.clone(), signing_key, settings).start();
    let mut tasks = vec![
        serve::<AuthenticateToken, _>(bus, IDENTITY_QUEUE, addr.clone(), shutdown.clone()).await?,
        serve::<GetPublicKeys, _>(bus, IDENTITY_QUEUE, addr.clone(), shutdown.clone()).await?,
        serve::<ResolveRoles, _>(bus, IDENTITY_QUEUE, addr, shutdown.clone()).await?,
    ];
    let health_store = store.clone();
    tasks.push(
        serve_fn::<IdentityHealth, _, _>(bus, IDENTITY_QUEUE, shutdown, move |_, _| {
            let store = health_store.clone();
            async move {
                Ok(HealthReply {
                    service: "identity".into(),
                    store_ok: Some(store.ping().await.is_ok()),
                })
            }
        })
        .await?,
    );
    Ok(tasks)
}
