//! The credential actor: owns the service's store handle and answers typed calls.

use actix::{Actor, Context, Handler, ResponseFuture};
use ttscm_contract::credential::{CredentialType, ListCredentialTypes};
use ttscm_contract::permission::names;
use ttscm_contract::{ErrorCode, WireError};
use ttscm_runtime::service::{Call, respond};
use ttscm_runtime::store::{FindOptions, Order};
use ttscm_runtime::{Filter, Store, StoreError};

use crate::store::{CREDENTIAL_TYPES, CREDENTIALS, to_credential_type};

/// State of the credential service.
pub struct CredentialActor {
    /// The service's collections.
    store: Store,
}

impl CredentialActor {
    /// A new actor.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

impl Actor for CredentialActor {
    type Context = Context<Self>;
}

fn store_failed(error: StoreError) -> WireError {
    tracing::error!(%error, "credential store failure");
    match error {
        StoreError::Unavailable(_) => WireError::new(ErrorCode::Unavailable, "The store is unavailable"),
        _ => WireError::internal(),
    }
}

impl Handler<Call<ListCredentialTypes>> for CredentialActor {
    type Result = ResponseFuture<Result<Vec<CredentialType>, WireError>>;

    fn handle(&mut self, call: Call<ListCredentialTypes>, _: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        respond(async move {
            call.ctx.require(&[names::CREDENTIAL_TYPE_FETCH_MANY])?;
            let documents = store
                .find(
                    CREDENTIAL_TYPES,
                    &FindOptions::new(Filter::All)
                        .sort("nameKey", Order::Asc)
                        .sort("id", Order::Asc),
                )
                .await
                .map_err(store_failed)?;
            let mut types = Vec::with_capacity(documents.len());
            for document in &documents {
                let id = document.get("id").and_then(|v| v.as_str()).unwrap_or_default();
                let count = store
                    .count(CREDENTIALS, &Filter::eq("typeId", id))
                    .await
                    .map_err(store_failed)?;
                types.push(to_credential_type(document, count).map_err(store_failed)?);
            }
            Ok(types)
        })
    }
}
