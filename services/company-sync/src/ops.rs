//! The company-sync service's operations: each bus operation maps to one [`Service`] method.
//! They run straight on the worker pool (like the credential service's): they only read shared
//! handles.

use std::sync::Arc;

use ttscm_contract::WireError;
use ttscm_contract::company::*;
use ttscm_runtime::service::{CallContext, ServiceOp};

use crate::service::Service;

impl ServiceOp<Service> for GetCompanySummaries {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<Vec<CompanySummary>, WireError> {
        service.summaries(self.ids).await
    }
}

impl ServiceOp<Service> for ListCompanies {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<CompanyPage, WireError> {
        service.list(self).await
    }
}

impl ServiceOp<Service> for GetCompany {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<Company, WireError> {
        service.get(&self.id).await
    }
}

impl ServiceOp<Service> for CreateCompany {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<Company, WireError> {
        service.create(self.input).await
    }
}

impl ServiceOp<Service> for UpdateCompany {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<Company, WireError> {
        service.rename(&self.id, self.patch).await
    }
}

impl ServiceOp<Service> for DeleteCompany {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<(), WireError> {
        service.delete(&ctx, &self.id).await
    }
}

impl ServiceOp<Service> for RunCompanySync {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<SyncReport, WireError> {
        service.run_sync(self.full).await
    }
}

impl ServiceOp<Service> for GetCompanySyncStatus {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<SyncStatus, WireError> {
        service.sync_status().await
    }
}

impl ServiceOp<Service> for GetCompanyConfigurations {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<Vec<serde_json::Value>, WireError> {
        service.configurations(&self.id).await
    }
}
