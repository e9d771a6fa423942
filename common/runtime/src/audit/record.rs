//! What a component records about an action ([`AuditRecord`]) and how it becomes an entry of
//! the chain for its caller: the one way every writer — the credential service, identity, a
//! `ttscm` command — names the actor, the request and the client address.

use std::collections::BTreeMap;

use ttscm_contract::PrincipalKind;
use ttscm_contract::audit::{AuditActor, AuditEntry, AuditTarget};

use super::NewAuditEntry;
use crate::service::CallContext;
use crate::{clock, ids};

/// An action to record: what happened, to which target, with which credential, type and
/// company, and any details. Who did it and from where come from the call
/// ([`AuditRecord::entry_for`]) or are given ([`AuditRecord::entry`]).
#[derive(Debug, Clone)]
pub struct AuditRecord {
    /// e.g. `credential.revealed`, `role.updated`.
    pub action: &'static str,
    /// e.g. `credential`, `role` (see [`AuditTarget::kind`]).
    pub target_kind: &'static str,
    /// The target's id.
    pub target_id: String,
    /// The credential involved.
    pub credential_id: Option<String>,
    /// The type involved.
    pub type_id: Option<String>,
    /// The company involved.
    pub company_id: Option<String>,
    /// What else the entry says (never a secret).
    pub details: BTreeMap<String, String>,
}

impl AuditRecord {
    /// `action` on the `target_kind` `target_id`, with no credential, type, company or details.
    pub fn new(action: &'static str, target_kind: &'static str, target_id: impl Into<String>) -> Self {
        Self {
            action,
            target_kind,
            target_id: target_id.into(),
            credential_id: None,
            type_id: None,
            company_id: None,
            details: BTreeMap::new(),
        }
    }

    /// With the detail `key` = `value`.
    #[must_use]
    pub fn detail(mut self, key: &str, value: impl Into<String>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// The entry for the caller of `ctx` (its principal, request and address; the system when
    /// the call has no principal), with a new id and the time now.
    pub fn entry_for(self, ctx: &CallContext) -> NewAuditEntry {
        self.entry(actor_of(ctx), &ctx.request_id, ctx.client_ip.clone())
    }

    /// The entry for `actor` in request `request_id` from `client_ip`, with a new id and the
    /// time now.
    pub fn entry(self, actor: AuditActor, request_id: &str, client_ip: Option<String>) -> NewAuditEntry {
        NewAuditEntry::new(AuditEntry {
            id: ids::new_id(),
            seq: 0,
            at: clock::now_iso(),
            action: self.action.to_owned(),
            actor,
            target: AuditTarget {
                kind: self.target_kind.to_owned(),
                id: self.target_id,
            },
            credential_id: self.credential_id,
            type_id: self.type_id,
            company_id: self.company_id,
            request_id: request_id.to_owned(),
            client_ip,
            details: (!self.details.is_empty()).then_some(self.details),
            prev_hash: String::new(),
            hash: String::new(),
        })
    }
}

/// The caller of `ctx` as the audit log names it (the system when there is no principal).
pub fn actor_of(ctx: &CallContext) -> AuditActor {
    match &ctx.principal {
        Some(p) => AuditActor {
            id: p.id.clone(),
            kind: p.kind,
            name: p.name.clone(),
        },
        None => system_actor(),
    }
}

/// The actor of work nobody asked for (jobs, a call without a principal).
pub fn system_actor() -> AuditActor {
    AuditActor {
        id: "system".to_owned(),
        kind: PrincipalKind::Service,
        name: "system".to_owned(),
    }
}

/// The actor of a `ttscm` command run by an operator beside the server, e.g. `ttscm token create`.
pub fn cli_actor(command: &str) -> AuditActor {
    AuditActor {
        id: "cli".to_owned(),
        kind: PrincipalKind::Service,
        name: format!("ttscm {command}"),
    }
}

/// The actor of an anonymous request (a failed sign-in).
pub fn anonymous_actor() -> AuditActor {
    AuditActor {
        id: "anonymous".to_owned(),
        kind: PrincipalKind::Anonymous,
        name: "anonymous".to_owned(),
    }
}
