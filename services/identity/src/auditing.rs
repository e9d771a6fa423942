//! What identity writes to the audit log (the one chain every component appends to, through
//! [`ttscm_runtime::audit`]): role changes, grants, sign-ins and their failures, refresh-token
//! reuse, logouts.
//!
//! A change is recorded after it is made and before the answer leaves; when the entry cannot be
//! stored the request fails (503) and the error is logged — the change itself stays (a store
//! write cannot be taken back atomically). A sign-in whose entry cannot be stored hands out no
//! tokens (its session is revoked). Failures of anonymous requests are recorded at a capped
//! rate ([`crate::failures`]) and never fail the answer.

use ttscm_contract::audit::AuditActor;
use ttscm_contract::{ErrorCode, PrincipalKind, WireError};
use ttscm_runtime::audit::{AuditRecord, anonymous_actor, system_actor};
use ttscm_runtime::service::CallContext;

use crate::failures::{Unrecorded, Verdict};
use crate::service::Identity;

fn unavailable() -> WireError {
    WireError::new(ErrorCode::Unavailable, "The audit log is unavailable")
}

/// The actor for a user known by id and name (a sign-in has no principal yet).
pub(crate) fn user_actor(id: &str, name: &str) -> AuditActor {
    AuditActor {
        id: id.to_owned(),
        kind: PrincipalKind::User,
        name: name.to_owned(),
    }
}

impl Identity {
    /// Records `record` by the caller of `ctx`; a failed write fails the request.
    pub(crate) async fn record(&self, ctx: &CallContext, record: AuditRecord) -> Result<(), WireError> {
        let action = record.action;
        self.audit.append(record.entry_for(ctx)).await.map_err(|error| {
            tracing::error!(%error, action, "audit write failed; failing the request");
            unavailable()
        })
    }

    /// Records `record` by `actor` in the request of `ctx`; a failed write fails the request.
    pub(crate) async fn record_as(
        &self,
        actor: AuditActor,
        ctx: &CallContext,
        record: AuditRecord,
    ) -> Result<(), WireError> {
        let action = record.action;
        self.audit
            .append(record.entry(actor, &ctx.request_id, ctx.client_ip.clone()))
            .await
            .map_err(|error| {
                tracing::error!(%error, action, "audit write failed; failing the request");
                unavailable()
            })
    }

    /// Records the anonymous failure `action` (`auth.sign_in_failed`, `auth.refresh_failed`)
    /// for the reason `error` gives — unless its client or everybody spent the allowance, then
    /// it is only counted. Never fails: the caller answers `error` anyway.
    pub(crate) async fn record_failure(&self, ctx: &CallContext, action: &'static str, error: &WireError) {
        let Verdict::Record(unrecorded) = self.failures.judge(ctx.client_ip.as_deref()) else {
            return;
        };
        let mut record = AuditRecord::new(action, "session", "-").detail("reason", error.message.as_str());
        if let Some(u) = &unrecorded {
            record = record
                .detail("unrecordedBefore", u.count.to_string())
                .detail("unrecordedSince", u.since.as_str());
        }
        let entry = record.entry(anonymous_actor(), &ctx.request_id, ctx.client_ip.clone());
        if let Err(error) = self.audit.append(entry).await {
            tracing::warn!(%error, action, "could not record a failed anonymous request");
            if let Some(u) = unrecorded {
                self.failures.restore(u);
            }
        }
    }

    /// Records the failures only counted so far, if any, in one `auth.failures_unrecorded`
    /// entry (every minute, see [`crate::run`]).
    pub(crate) async fn record_unrecorded(&self) {
        let Some(Unrecorded { count, since }) = self.failures.take_unrecorded() else {
            return;
        };
        let entry = AuditRecord::new("auth.failures_unrecorded", "session", "-")
            .detail("count", count.to_string())
            .detail("since", since.as_str())
            .entry(system_actor(), "-", None);
        if let Err(error) = self.audit.append(entry).await {
            tracing::warn!(%error, count, "could not record the count of unrecorded failed sign-ins");
            self.failures.restore(Unrecorded { count, since });
        }
    }
}
