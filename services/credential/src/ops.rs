//! The credential service's operations: each bus operation maps to one [`Service`] method.
//!
//! These run straight on the tokio worker pool, not through an actor: they only read shared
//! state (store handles, clients, caches), and routing them through one actor thread would add
//! two thread hops per request and serialize the whole service. The state that needs one owner —
//! the audit chain head with its group commit — is an actor ([`crate::audit::AuditLog`]).

use std::future::Future;
use std::sync::Arc;

use tokio::task::JoinHandle;
use ttscm_contract::audit::{AuditPage, AuditVerification, ListAuditEvents, VerifyAudit};
use ttscm_contract::credential::*;
use ttscm_contract::{Operation, WireError};
use ttscm_runtime::service::{CallContext, serve_fn};
use ttscm_runtime::{Bus, BusError, Shutdown};

use crate::service::{Service, store_failed};

/// Serves operation `O` with `service` in queue group `queue`.
pub async fn serve_op<O: CredentialOp>(
    bus: &Bus,
    queue: &str,
    service: Arc<Service>,
    shutdown: Shutdown,
) -> Result<JoinHandle<()>, BusError> {
    serve_fn::<O, _, _>(bus, queue, shutdown, move |ctx, op: O| {
        op.run(service.clone(), ctx)
    })
    .await
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

impl CredentialOp for CountCompanyCredentials {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<u64, WireError> {
        service.count_of_company(&self.company_id).await
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
