//! Checking credentials against the audit log (`GET /v1/audit/verify/credentials`). Every write
//! of a credential records its new version and the fields it wrote (`Service::version_record`);
//! the log is hash-chained and its head signed by vault, so someone who can write the store but
//! not vault's keys cannot rewrite it unnoticed. A value copied from an older version under its
//! current version tag does not open (vault binds the version); one copied *with* its old tag —
//! or a whole older document — opens, but no longer matches what the log says was written last,
//! and this check names it.
//!
//! Cost: one pass over the log and one over the credentials (an on-demand or scheduled check,
//! not a per-request one: reveals stay as fast as before). A crash between a write and its
//! audit entry also shows as a mismatch; the next write of that credential settles it.

use std::collections::HashMap;
use std::sync::Arc;

use ttscm_contract::WireError;
use ttscm_contract::credential::{VerifyCredentialVersions, VersionMismatch, VersionVerification};
use ttscm_runtime::Filter;
use ttscm_runtime::service::{CallContext, ServiceOp};
use ttscm_runtime::store::{FindOptions, Order};

use crate::audit::AuditRecord;
use crate::service::{Service, store_failed};
use crate::store::{CREDENTIALS, CredentialDoc, from_document};

/// Actions that write a credential and say its new version.
const VERSIONED_WRITES: &[&str] = &[
    "credential.created",
    "credential.fields_updated",
    "credential.updated",
    "credential.restored",
    "credential.migrated",
];

/// Entries and credentials read per page.
const PAGE: usize = 1000;

/// What the log last said about one credential.
#[derive(Default)]
struct Said {
    version: u64,
    fields: HashMap<String, u64>,
}

impl Service {
    /// The audit record of a write that made `credential`'s current version: its version and the
    /// fields it wrote, for [`VerifyCredentialVersions`].
    pub(crate) fn version_record(action: &'static str, credential: &CredentialDoc) -> AuditRecord {
        let mut record = Service::credential_record(action, credential);
        record
            .details
            .insert("version".into(), credential.revision.to_string());
        let fields = credential
            .version_info
            .as_ref()
            .map(|i| i.field_ids.join(","))
            .unwrap_or_default();
        record.details.insert("fieldIds".into(), fields);
        record
    }

    async fn what_the_log_says(&self) -> Result<(HashMap<String, Said>, u64), WireError> {
        let log = self.audit.log();
        log.settled().await.map_err(store_failed)?;
        let mut said: HashMap<String, Said> = HashMap::new();
        let (mut from, mut read) = (1, 0);
        loop {
            let entries = log.scan(from, PAGE).await.map_err(store_failed)?;
            let Some(last) = entries.last() else { break };
            from = last.seq + 1;
            read += entries.len() as u64;
            for entry in entries {
                let Some(id) = entry.credential_id else { continue };
                if entry.action == "credential.deleted" {
                    said.remove(&id);
                    continue;
                }
                if !VERSIONED_WRITES.contains(&entry.action.as_str()) {
                    continue;
                }
                let details = entry.details.unwrap_or_default();
                let Some(version) = details.get("version").and_then(|v| v.parse::<u64>().ok()) else {
                    continue;
                };
                let state = said.entry(id).or_default();
                state.version = version;
                for field in details
                    .get("fieldIds")
                    .map(String::as_str)
                    .unwrap_or_default()
                    .split(',')
                    .filter(|f| !f.is_empty())
                {
                    state.fields.insert(field.to_owned(), version);
                }
            }
        }
        Ok((said, read))
    }
}

/// Every credential against what the audit log last recorded for it.
impl ServiceOp<Service> for VerifyCredentialVersions {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<VersionVerification, WireError> {
        let (said, entries_read) = service.what_the_log_says().await?;
        let mut outcome = VersionVerification {
            consistent: true,
            checked: 0,
            not_covered: 0,
            entries_read,
            mismatches: Vec::new(),
        };
        let mut offset = 0;
        loop {
            let page = service
                .store
                .find(
                    CREDENTIALS,
                    &FindOptions::new(Filter::All)
                        .sort("id", Order::Asc)
                        .page(offset, PAGE as u64),
                )
                .await
                .map_err(store_failed)?;
            if page.is_empty() {
                break;
            }
            offset += page.len() as u64;
            for document in page {
                let credential: CredentialDoc = from_document(document).map_err(store_failed)?;
                let Some(state) = said.get(&credential.id) else {
                    outcome.not_covered += 1;
                    continue;
                };
                outcome.checked += 1;
                let mismatch = |problem: String| VersionMismatch {
                    credential_id: credential.id.clone(),
                    problem,
                };
                if u64::try_from(credential.revision).ok() != Some(state.version) {
                    outcome.mismatches.push(mismatch(format!(
                        "the credential is at version {}, the audit log's last write made version {}",
                        credential.revision, state.version
                    )));
                    continue;
                }
                for value in &credential.values {
                    if let Some(&written) = state.fields.get(&value.field_id)
                        && written != value.version
                    {
                        outcome.mismatches.push(mismatch(format!(
                            "the value of field '{}' is from version {}, the audit log says version {} wrote it last",
                            value.field_id, value.version, written
                        )));
                    }
                }
            }
        }
        outcome.consistent = outcome.mismatches.is_empty();
        Ok(outcome)
    }
}
