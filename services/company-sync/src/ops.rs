//! The company-sync service's operations: each bus operation maps to one [`Service`] method.
//! They run straight on the worker pool (like the credential service's): they only read shared
//! handles.

use std::future::Future;
use std::sync::Arc;

use tokio::task::JoinHandle;
use ttscm_contract::company::*;
use ttscm_contract::{Operation, WireError};
use ttscm_runtime::service::{CallContext, serve_fn};
use ttscm_runtime::{Bus, BusError, Shutdown};

use crate::service::Service;

/// Serves operation `O` with `service` in queue group `queue`.
pub async fn serve_op<O: CompanyOp>(
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

/// An operation the company-sync service answers.
pub trait CompanyOp: Operation {
    /// Does the work.
    fn run(
        self,
        service: Arc<Service>,
        ctx: CallContext,
    ) -> impl Future<Output = Result<Self::Reply, WireError>> + Send + 'static;
}

impl CompanyOp for GetCompanySummaries {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<Vec<CompanySummary>, WireError> {
        service.summaries(self.ids).await
    }
}

impl CompanyOp for ListCompanies {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<CompanyPage, WireError> {
        service.list(self).await
    }
}

impl CompanyOp for GetCompany {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<Company, WireError> {
        service.get(&self.id).await
    }
}

impl CompanyOp for CreateCompany {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<Company, WireError> {
        service.create(self.input).await
    }
}

impl CompanyOp for UpdateCompany {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<Company, WireError> {
        service.rename(&self.id, self.patch).await
    }
}

impl CompanyOp for DeleteCompany {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<(), WireError> {
        service.delete(&ctx, &self.id).await
    }
}

impl CompanyOp for RunCompanySync {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<SyncReport, WireError> {
        service.run_sync(self.full).await
    }
}

impl CompanyOp for GetCompanySyncStatus {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<SyncStatus, WireError> {
        service.sync_status().await
    }
}

impl CompanyOp for GetCompanyConfigurations {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<Vec<serde_json::Value>, WireError> {
        service.configurations(&self.id).await
    }
}
