//! The credential actor: owns the service's dependencies and hands each typed call to
//! [`Service`] on the tokio worker pool (the work reads shared state only, so it need not hold
//! the actor's thread). One generic handler serves every operation that implements [`CredentialOp`].

use std::future::Future;
use std::sync::Arc;

use actix::{Actor, Context, Handler, ResponseFuture};
use ttscm_contract::audit::{AuditPage, AuditVerification, ListAuditEvents, VerifyAudit};
use ttscm_contract::credential::*;
use ttscm_contract::{Operation, WireError};
use ttscm_runtime::service::{Call, CallContext, respond_send};

use crate::service::{Service, store_failed};

/// State of the credential service.
pub struct CredentialActor {
    /// Everything the operations need.
    service: Arc<Service>,
}

impl CredentialActor {
    /// A new actor.
    pub fn new(service: Service) -> Self {
        Self {
            service: Arc::new(service),
        }
    }
}

impl Actor for CredentialActor {
    type Context = Context<Self>;
}

/// An operation the credential service answers.
pub trait CredentialOp: Operation {
    /// Does the work.
    fn run(
        self,
        service: Arc<Service>,
        ctx: CallContext,
    ) -> impl Future<Output = Result<Self::Reply, WireError>> + Send + 'static;
}

impl<O: CredentialOp> Handler<Call<O>> for CredentialActor {
    type Result = ResponseFuture<Result<O::Reply, WireError>>;

    fn handle(&mut self, call: Call<O>, _: &mut Self::Context) -> Self::Result {
        respond_send(call.op.run(self.service.clone(), call.ctx))
    }
}

impl CredentialOp for ListCredentialTypes {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<Vec<CredentialType>, WireError> {
        service.list_types().await
    }
}

impl CredentialOp for GetCredentialType {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<CredentialType, WireError> {
        service.get_type(&self.identifier).await
    }
}

impl CredentialOp for CreateCredentialType {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<CredentialType, WireError> {
        service.create_type(&ctx, self.input).await
    }
}

impl CredentialOp for UpdateCredentialType {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<CredentialType, WireError> {
        service.update_type(&ctx, &self.id, self.patch).await
    }
}

impl CredentialOp for DeleteCredentialType {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<(), WireError> {
        service.delete_type(&ctx, &self.id).await
    }
}

impl CredentialOp for ListCredentialsByType {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<Vec<Credential>, WireError> {
        service.list_by_type(&ctx, &self.id).await
    }
}

impl CredentialOp for ListCredentialsByCompany {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<Vec<Credential>, WireError> {
        service.list_by_company(&ctx, &self.company_id).await
    }
}

impl CredentialOp for GetCredential {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<Credential, WireError> {
        service.get(&ctx, &self.id).await
    }
}

impl CredentialOp for CreateCredential {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<Credential, WireError> {
        service.create(&ctx, self.input).await
    }
}

impl CredentialOp for UpdateCredential {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<Credential, WireError> {
        service.rename(&ctx, &self.id, self.patch).await
    }
}

impl CredentialOp for UpdateCredentialFields {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<Credential, WireError> {
        service.update_fields(&ctx, &self.id, self.input).await
    }
}

impl CredentialOp for GetCredentialFields {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<Vec<FieldValue>, WireError> {
        service.fields(&ctx, &self.id).await
    }
}

impl CredentialOp for RevealSecureValues {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<SecureValues, WireError> {
        service.reveal(&ctx, &self.id).await
    }
}

impl CredentialOp for DeleteCredential {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<(), WireError> {
        service.delete(&ctx, &self.id).await
    }
}

impl CredentialOp for ListAuditEvents {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<AuditPage, WireError> {
        crate::audit::list(&service.store, &self)
            .await
            .map_err(store_failed)
    }
}

impl CredentialOp for VerifyAudit {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<AuditVerification, WireError> {
        crate::audit::verify(&service.store).await.map_err(store_failed)
    }
}
