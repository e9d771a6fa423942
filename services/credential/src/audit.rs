//! The credential service's side of the audit log: its records ([`AuditRecord`], the runtime's)
//! appended for the caller, over the runtime's audit port
//! ([`ttscm_runtime::audit`]: group commit, hashing, storage, the JetStream write-ahead in mesh
//! mode, verification).

use ttscm_contract::audit::{AuditPage, AuditVerification, ListAuditEvents};
pub use ttscm_runtime::audit::AuditRecord;
use ttscm_runtime::service::CallContext;
use ttscm_runtime::{Bus, Shutdown, Store, StoreError};

/// The audit log as the credential service uses it; clones share it.
#[derive(Debug, Clone)]
pub struct AuditLog {
    log: ttscm_runtime::audit::AuditLog,
}

impl AuditLog {
    /// The log the bus and store call for (see [`ttscm_runtime::audit`]); over NATS it also
    /// starts copying from the write-ahead stream into the store until `shutdown`.
    pub async fn open(bus: &Bus, store: &Store, shutdown: Shutdown) -> Result<Self, StoreError> {
        let log = ttscm_runtime::audit::AuditLog::open(bus, store).await?;
        // The copier stops on `shutdown`; nobody waits for it.
        drop(log.start_copier(shutdown));
        Ok(Self::new(log))
    }

    /// The credential service's view of `log`.
    pub fn new(log: ttscm_runtime::audit::AuditLog) -> Self {
        Self { log }
    }

    /// The port underneath (head, scan, …).
    pub fn log(&self) -> &ttscm_runtime::audit::AuditLog {
        &self.log
    }

    /// Appends an entry for `record` by the caller of `ctx`; answers once it is stored (and
    /// fails if it could not be).
    pub async fn append(&self, ctx: &CallContext, record: AuditRecord) -> Result<(), StoreError> {
        // Serialized here, in the caller's task, so the batch's leader only places and hashes it.
        self.log.append(record.entry_for(ctx)).await
    }

    /// [`Self::append`], answering the entry's sequence number.
    pub async fn append_numbered(&self, ctx: &CallContext, record: AuditRecord) -> Result<u64, StoreError> {
        self.log.append_numbered(record.entry_for(ctx)).await
    }

    /// Waits until entries appended so far can be read (the mesh's copy from the stream).
    pub async fn settled(&self) -> Result<(), StoreError> {
        self.log.settled().await
    }

    /// A page of entries matching `query`, newest first, with the total that match and how many
    /// appended entries are not readable yet (the runtime's `AuditLog::page`).
    pub async fn list(&self, query: &ListAuditEvents) -> Result<AuditPage, StoreError> {
        self.log.page(query).await
    }

    /// Checks every entry's hash and link, in sequence order; settles first.
    pub async fn verify(&self) -> Result<AuditVerification, StoreError> {
        self.log.verify().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ttscm_runtime::ids;

    fn record() -> AuditRecord {
        AuditRecord {
            credential_id: Some("c1".into()),
            company_id: Some("k1".into()),
            ..AuditRecord::new("credential.revealed", "credential", "c1")
        }
    }

    /// The entry names the caller, its request and address, and what the record says; a call
    /// without a principal is the system's.
    #[tokio::test]
    async fn a_record_becomes_an_entry_of_its_caller() {
        let path = std::env::temp_dir().join(format!("ttscm-audit-test-{}.jsonl", ids::new_id()));
        let journal = ttscm_runtime::audit::Journal::open(&path).expect("opens");
        let log =
            ttscm_runtime::audit::AuditLog::new(ttscm_runtime::audit::AuditStorage::Journal(journal), None);
        let audit = AuditLog::new(log.clone());
        let ctx = CallContext {
            principal: Some(std::sync::Arc::new(ttscm_contract::Principal {
                id: "u1".into(),
                kind: ttscm_contract::PrincipalKind::User,
                name: "Zoë".into(),
                permissions: Default::default(),
                scopes: Vec::new(),
                session_id: None,
            })),
            request_id: "r1".into(),
            client_ip: Some("::1".into()),
            ..CallContext::default()
        };
        audit.append(&ctx, record()).await.expect("appended");
        audit
            .append(&CallContext::default(), record())
            .await
            .expect("appended");
        let entries = log.scan(1, 10).await.expect("scans");
        let first = &entries[0];
        assert_eq!(
            (
                first.actor.id.as_str(),
                first.actor.name.as_str(),
                first.request_id.as_str()
            ),
            ("u1", "Zoë", "r1")
        );
        assert_eq!(first.client_ip.as_deref(), Some("::1"));
        assert_eq!(
            (
                first.target.kind.as_str(),
                first.target.id.as_str(),
                first.company_id.as_deref()
            ),
            ("credential", "c1", Some("k1"))
        );
        assert_eq!(entries[1].actor.id, "system");
        assert!(audit.verify().await.expect("verifies").valid);
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(path.with_extension("lock"));
    }
}
