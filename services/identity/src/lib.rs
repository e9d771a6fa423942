//! The identity service: roles and permissions, API tokens for machines, and the Ed25519 key
//! that signs access tokens (whose public half the edge verifies with).
//!
//! `run` serves identity's bus subjects until shutdown; [`admin`] holds the operations the CLI
//! runs directly against the store (create/list/revoke API tokens).

pub mod admin;
mod auditing;
pub mod error;
pub mod failures;
pub mod keys;
pub mod logins;
pub mod offboard;
pub mod oidc;
pub mod roles;
pub mod service;
pub mod store;
pub mod tokens;
pub mod users;

use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use ttscm_contract::health::IdentityHealth;
use ttscm_contract::identity::*;
use ttscm_contract::subjects::{IDENTITY_QUEUE, IDENTITY_USER_CHANGED};
use ttscm_runtime::router::{ServiceRouter, StartError};
use ttscm_runtime::{Bus, Settings, Shutdown, Store};

pub use error::IdentityError;
pub use keys::SigningKey;

/// Starts the identity service: prepares its collections, loads the signing key, and serves
/// its subjects until `shutdown`.
pub async fn run(
    bus: &Bus,
    store: &Store,
    settings: &Settings,
    shutdown: Shutdown,
) -> Result<Vec<JoinHandle<()>>, StartError> {
    store::prepare(store).await?;
    users::prepare(store).await?;
    let signing_key = SigningKey::load(settings)?;
    // Identity's actions go into the one audit chain (over NATS through the `TTSCM_AUDIT`
    // stream; the credential service copies them into the store).
    let audit = ttscm_runtime::audit::AuditLog::open(bus, store).await?;
    let identity = Arc::new(service::Identity::new(
        store.clone(),
        bus.clone(),
        signing_key,
        audit,
        settings,
    ));
    Ok(router()
        .serve(bus, identity, Some(store.clone()), shutdown)
        .await?)
}

/// Every operation identity serves.
pub fn router() -> ServiceRouter<service::Identity> {
    ServiceRouter::new::<IdentityHealth>("identity", IDENTITY_QUEUE)
        .op::<AuthenticateToken>()
        .op::<GetPublicKeys>()
        .op::<BeginLogin>()
        .op::<CheckLogin>()
        .op::<CompleteLogin>()
        .op::<ReleaseLogin>()
        .op::<DescribeLogin>()
        .op::<RefreshSession>()
        .op::<Logout>()
        .op::<ResolveSession>()
        .op::<GetMe>()
        .op::<UpdateMe>()
        .op::<ListUsers>()
        .op::<SetUserRoles>()
        .op::<ListRoles>()
        .op::<CreateRole>()
        .op::<UpdateRole>()
        .op::<DeleteRole>()
        .background(|identity, shutdown| Box::pin(sweep_expired(identity.store.clone(), shutdown)))
        .background(|identity, shutdown| Box::pin(record_unrecorded_failures(identity, shutdown)))
        // User changes made through other replicas: drop them from this replica's user cache.
        .listen(IDENTITY_USER_CHANGED, |identity, message| {
            identity.users.forget(&String::from_utf8_lossy(&message.payload));
        })
        .publishes(IDENTITY_USER_CHANGED)
        // Audit entries, appended to the write-ahead stream (read: its last message, the head).
        .publishes(ttscm_contract::subjects::AUDIT_SUBJECT)
        .stream(ttscm_contract::subjects::AUDIT_STREAM, false)
}

/// How often failed sign-ins that were only counted are recorded as one entry.
const UNRECORDED_INTERVAL: Duration = Duration::from_secs(60);

/// Records the count of failed sign-ins beyond the allowances every minute until `shutdown`.
async fn record_unrecorded_failures(identity: Arc<service::Identity>, shutdown: Shutdown) {
    let mut interval = tokio::time::interval(UNRECORDED_INTERVAL);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = interval.tick() => identity.record_unrecorded().await,
        }
    }
}

/// How often expired pending logins, refresh tokens and sessions are deleted.
const SWEEP_INTERVAL: Duration = Duration::from_secs(600);

/// Deletes expired sign-in state now and then until `shutdown` (every replica does; deleting
/// twice is harmless).
async fn sweep_expired(store: Store, shutdown: Shutdown) {
    let mut interval = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let swept = async {
            Ok::<_, ttscm_runtime::StoreError>(logins::sweep(&store).await? + users::sweep(&store).await?)
        };
        match swept.await {
            Ok(0) => {}
            Ok(removed) => tracing::debug!(removed, "expired sign-in state deleted"),
            Err(error) => tracing::warn!(%error, "could not delete expired sign-in state"),
        }
    }
}
