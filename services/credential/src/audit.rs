//! The credential service's side of the audit log: what it records about an action
//! ([`AuditRecord`]) and how that becomes an entry of the chain, over the runtime's audit port
//! ([`ttscm_runtime::audit`]: group commit, hashing, storage, the JetStream write-ahead in mesh
//! mode, verification).

use ttscm_contract::audit::{
    AuditActor, AuditEntry, AuditPage, AuditTarget, AuditVerification, ListAuditEvents,
};
use ttscm_runtime::audit::NewAuditEntry;
use ttscm_runtime::service::CallContext;
use ttscm_runtime::{Bus, Shutdown, Store, StoreError, clock, ids};

/// What the credential service records about an action: what happened, to which target, with
/// which credential, type and company. The caller's identity, request and address come from
/// the call ([`AuditLog::append`]).
#[derive(Debug, Clone)]
pub struct AuditRecord {
    /// e.g. `credential.revealed`.
    pub action: &'static str,
    /// `credential` or `credential_type`.
    pub target_kind: &'static str,
    /// The target's id.
    pub target_id: String,
    /// The credential involved.
    pub credential_id: Option<String>,
    /// The type involved.
    pub type_id: Option<String>,
    /// The company involved.
    pub company_id: Option<String>,
}

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
        self.log.append(new_entry(ctx, record)).await
    }

    /// Waits until entries appended so far can be read (the mesh's copy from the stream).
    pub async fn settled(&self) -> Result<(), StoreError> {
        self.log.settled().await
    }

    /// A page of entries matching `query`, newest first, with the total that match; settles
    /// first (see [`Self::settled`]).
    pub async fn list(&self, query: &ListAuditEvents) -> Result<AuditPage, StoreError> {
        self.log.page(query).await
    }

    /// Checks every entry's hash and link, in sequence order; settles first.
    pub async fn verify(&self) -> Result<AuditVerification, StoreError> {
        self.log.verify().await
    }
}

/// The entry `record` makes for the caller of `ctx`, with a new id and the time now.
fn new_entry(ctx: &CallContext, record: AuditRecord) -> NewAuditEntry {
    let actor = match &ctx.principal {
        Some(p) => AuditActor {
            id: p.id.clone(),
            kind: p.kind,
            name: p.name.clone(),
        },
        None => AuditActor {
            id: "system".to_owned(),
            kind: ttscm_contract::PrincipalKind::ApiToken,
            name: "system".to_owned(),
        },
    };
    NewAuditEntry::new(AuditEntry {
        id: ids::new_id(),
        seq: 0,
        at: clock::now_iso(),
        action: record.action.to_owned(),
        actor,
        target: AuditTarget {
            kind: record.target_kind.to_owned(),
            id: record.target_id,
        },
        credential_id: record.credential_id,
        type_id: record.type_id,
        company_id: record.company_id,
        request_id: ctx.request_id.clone(),
        client_ip: ctx.client_ip.clone(),
        prev_hash: String::new(),
        hash: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AuditRecord {
        AuditRecord {
            action: "credential.revealed",
            target_kind: "credential",
            target_id: "c1".into(),
            credential_id: Some("c1".into()),
            type_id: None,
            company_id: Some("k1".into()),
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
