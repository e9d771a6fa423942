//! The credential service's operations: each bus operation maps to one [`Service`] method.
//!
//! These run straight on the tokio worker pool, not through an actor: they only read shared
//! state (store handles, clients, caches), and routing them through one actor thread would add
//! two thread hops per request and serialize the whole service. The state that needs one owner —
//! the audit chain head with its group commit — is behind a lock and written by its callers in
//! turn ([`crate::audit::AuditLog`]).

use std::sync::Arc;

use ttscm_contract::WireError;
use ttscm_contract::audit::{AuditPage, AuditVerification, ListAuditEvents, VerifyAudit};
use ttscm_contract::credential::*;
use ttscm_runtime::service::{CallContext, ServiceOp};

use crate::service::{Service, store_failed};

impl ServiceOp<Service> for ListCredentialTypes {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<Vec<CredentialType>, WireError> {
        service.list_types().await
    }
}

impl ServiceOp<Service> for GetCredentialType {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<CredentialType, WireError> {
        service.get_type(&self.identifier).await
    }
}

impl ServiceOp<Service> for CreateCredentialType {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<CredentialType, WireError> {
        service.create_type(&ctx, self.input).await
    }
}

impl ServiceOp<Service> for UpdateCredentialType {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<CredentialType, WireError> {
        service.update_type(&ctx, &self.id, self.patch).await
    }
}

impl ServiceOp<Service> for DeleteCredentialType {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<(), WireError> {
        service.delete_type(&ctx, &self.id).await
    }
}

impl ServiceOp<Service> for ListCredentialsByType {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<Vec<Credential>, WireError> {
        service.list_by_type(&ctx, &self.id).await
    }
}

impl ServiceOp<Service> for ListCredentialsByCompany {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<Vec<Credential>, WireError> {
        service.list_by_company(&ctx, &self.company_id).await
    }
}

impl ServiceOp<Service> for CountCompanyCredentials {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<u64, WireError> {
        service.count_of_company(&self.company_id).await
    }
}

impl ServiceOp<Service> for GetCredential {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<Credential, WireError> {
        service.get(&ctx, &self.id).await
    }
}

impl ServiceOp<Service> for CreateCredential {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<Credential, WireError> {
        service.create(&ctx, self.input).await
    }
}

impl ServiceOp<Service> for UpdateCredential {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<Credential, WireError> {
        service.rename(&ctx, &self.id, self.patch).await
    }
}

impl ServiceOp<Service> for UpdateCredentialFields {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<Credential, WireError> {
        service.update_fields(&ctx, &self.id, self.input).await
    }
}

impl ServiceOp<Service> for GetCredentialFields {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<Vec<FieldValue>, WireError> {
        service.fields(&ctx, &self.id).await
    }
}

impl ServiceOp<Service> for RevealSecureValues {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<SecureValues, WireError> {
        service.reveal(&ctx, &self.id).await
    }
}

impl ServiceOp<Service> for DeleteCredential {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<(), WireError> {
        service.delete(&ctx, &self.id).await
    }
}

impl ServiceOp<Service> for ListAuditEvents {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<AuditPage, WireError> {
        service.audit.settled().await.map_err(store_failed)?;
        crate::audit::list(&service.store, &self)
            .await
            .map_err(store_failed)
    }
}

impl ServiceOp<Service> for VerifyAudit {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<AuditVerification, WireError> {
        service.audit.settled().await.map_err(store_failed)?;
        crate::audit::verify(&service.store).await.map_err(store_failed)
    }
}
