//! Rotation due dates: a credential is due for rotation when its secure values should be
//! changed — marked by a break-glass reveal, an exposure mark, or (once built) the type's
//! `rotationDays` passing. `credential.rotation_due` is emitted once per transition from not
//! due to due (the conditional write's winner emits it); a changed secure value clears the mark
//! (`Service::write_version`).

use serde_json::json;
use ttscm_contract::WireError;
use ttscm_runtime::service::CallContext;
use ttscm_runtime::{Filter, Update};

use crate::service::{Service, store_failed};
use crate::store::{CREDENTIALS, CredentialDoc};

impl Service {
    /// Marks `credential` due for rotation because of `reason` (`break_glass`, `exposure`,
    /// `schedule`); answers whether this call made it due (then `credential.rotation_due` was
    /// emitted, durably, before answering). Already due: nothing happens.
    pub(crate) async fn mark_due(
        &self,
        ctx: &CallContext,
        credential: &CredentialDoc,
        reason: &str,
    ) -> Result<bool, WireError> {
        let not_due = Filter::And(vec![
            Filter::id(&credential.id),
            Filter::Ne("rotationDue".into(), true.into()),
        ]);
        let marked = self
            .store
            .update_one(CREDENTIALS, &not_due, &Update::default().set("rotationDue", true))
            .await;
        self.credentials_changed(Some(&credential.id)).await;
        if !marked.map_err(store_failed)? {
            return Ok(false);
        }
        self.events
            .publish(ctx, "credential", "rotation_due", &credential.id, || {
                let mut data = Service::event_data(credential);
                data["reason"] = json!(reason);
                data
            })
            .await;
        Ok(true)
    }
}
