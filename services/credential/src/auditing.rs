//! What the credential service writes to the audit log (one entry per reveal and change,
//! before the answer leaves; a failed write fails the request) and the audit list it answers
//! (verification: [`crate::checkpoints`]).

use std::sync::Arc;

use ttscm_contract::audit::{AuditPage, ListAuditEvents};
use ttscm_contract::{ErrorCode, WireError};
use ttscm_runtime::service::{CallContext, ServiceOp};

use crate::audit::AuditRecord;
use crate::service::{Service, store_failed};
use crate::store::CredentialDoc;

impl Service {
    pub(crate) async fn record(&self, ctx: &CallContext, record: AuditRecord) -> Result<(), WireError> {
        self.audit.append(ctx, record).await.map_err(|error| {
            tracing::error!(%error, "audit write failed; failing the request");
            WireError::new(ErrorCode::Unavailable, "The audit log is unavailable")
        })
    }

    /// [`Self::record`], answering the entry's sequence number.
    pub(crate) async fn record_numbered(
        &self,
        ctx: &CallContext,
        record: AuditRecord,
    ) -> Result<u64, WireError> {
        self.audit.append_numbered(ctx, record).await.map_err(|error| {
            tracing::error!(%error, "audit write failed; failing the request");
            WireError::new(ErrorCode::Unavailable, "The audit log is unavailable")
        })
    }

    pub(crate) fn credential_record(action: &'static str, credential: &CredentialDoc) -> AuditRecord {
        AuditRecord {
            credential_id: Some(credential.id.clone()),
            type_id: Some(credential.type_id.clone()),
            company_id: Some(credential.company_id.clone()),
            ..AuditRecord::new(action, "credential", credential.id.clone())
        }
    }

    pub(crate) fn type_record(action: &'static str, id: &str) -> AuditRecord {
        AuditRecord {
            type_id: Some(id.to_owned()),
            ..AuditRecord::new(action, "credential_type", id)
        }
    }
}

impl ServiceOp<Service> for ListAuditEvents {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<AuditPage, WireError> {
        service.audit.list(&self).await.map_err(store_failed)
    }
}
