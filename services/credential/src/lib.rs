//! The credential service: credential types and credentials, validated against their type,
//! with secure values sealed by vault (it never holds a key).
//!
//! Owns the `credential_types` and `credentials` collections.

pub mod actor;
pub mod store;

use actix::Actor;
use tokio::task::JoinHandle;
use ttscm_contract::credential::ListCredentialTypes;
use ttscm_contract::health::{CredentialHealth, HealthReply};
use ttscm_contract::subjects::CREDENTIAL_QUEUE;
use ttscm_runtime::service::{serve, serve_fn};
use ttscm_runtime::{Bus, BusError, Shutdown, Store, StoreError};

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
    shutdown: Shutdown,
) -> Result<Vec<JoinHandle<()>>, CredentialError> {
    store::prepare(store).await?;
    let addr = actor::CredentialActor::new(store.clone()).start();
    let health_store = store.clone();
    Ok(vec![
        serve::<ListCredentialTypes, _>(bus, CREDENTIAL_QUEUE, addr, shutdown.clone()).await?,
        serve_fn::<CredentialHealth, _, _>(bus, CREDENTIAL_QUEUE, shutdown, move |_, _| {
            let store = health_store.clone();
            async move {
                Ok(HealthReply {
                    service: "credential".into(),
                    store_ok: Some(store.ping().await.is_ok()),
                })
            }
        })
        .await?,
    ])
}
