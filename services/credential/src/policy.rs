//! Reveal policies: what a reveal (`secure-values`, a TOTP code) of a type's credentials must
//! carry — nothing, a reason, or an open ConnectWise ticket of the credential's company — and
//! break-glass, which bypasses them. company-sync owns every ConnectWise call: tickets are
//! checked and notes queued there, over the bus.
//!
//! Decisions the issue left open: a ticket given under any policy is checked (the record must
//! be true); a reason is 1–500 characters without control characters; a break-glass reveal
//! needs `credential.break_glass` and a reason, is recorded as `credential.break_glass` (not
//! `credential.revealed`, so the audit route's `action` filter lists them), emits the
//! `credential.break_glass` event at once and marks the credential for rotation; a type whose
//! policy needs a ticket refuses companies without a ConnectWise id unless it allows a reason
//! for them (`reasonWithoutConnectWise`).

use std::collections::BTreeMap;

use serde_json::json;
use ttscm_contract::company::{CheckTicket, GetCompany, QueueTicketNote, TicketOutcome};
use ttscm_contract::credential::{Justification, RevealRequirement};
use ttscm_contract::permission::names;
use ttscm_contract::{ErrorCode, FieldError, WireError};
use ttscm_runtime::service::CallContext;

use crate::audit::AuditRecord;
use crate::service::Service;
use crate::store::{CredentialDoc, TypeDoc};

/// The longest reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// A justification that passed the type's policy: what the reveal's audit entry and event say.
#[derive(Debug, Clone, Default)]
pub(crate) struct Justified {
    /// The checked ticket.
    pub ticket: Option<u64>,
    /// Its summary in ConnectWise.
    pub ticket_summary: Option<String>,
    /// The reason given.
    pub reason: Option<String>,
    /// A break-glass reveal.
    pub break_glass: bool,
    /// Whether to note the reveal on the ticket.
    pub note: bool,
}

fn refuse(path: &str, message: String) -> WireError {
    let mut error = WireError::validation(vec![FieldError::new(vec![json!(path)], message.clone())]);
    error.message = message;
    error
}

/// A trimmed reason, if one was given; 400 naming `reason` when it is empty, too long or holds
/// control characters.
fn clean_reason(reason: Option<String>) -> Result<Option<String>, WireError> {
    let Some(reason) = reason else { return Ok(None) };
    let reason = reason.trim().to_owned();
    if reason.is_empty() {
        return Err(refuse("reason", "The reason must not be empty".into()));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(refuse(
            "reason",
            format!("The reason must be at most {MAX_REASON_CHARS} characters"),
        ));
    }
    if reason.chars().any(char::is_control) {
        return Err(refuse(
            "reason",
            "The reason must not contain control characters".into(),
        ));
    }
    Ok(Some(reason))
}

impl Justified {
    /// What the audit entry records besides who and what.
    pub(crate) fn details(&self) -> BTreeMap<String, String> {
        let mut details = BTreeMap::new();
        if let Some(ticket) = self.ticket {
            details.insert("ticket".into(), ticket.to_string());
        }
        if let Some(summary) = &self.ticket_summary {
            details.insert("ticketSummary".into(), summary.clone());
        }
        if let Some(reason) = &self.reason {
            details.insert("reason".into(), reason.clone());
        }
        if self.break_glass {
            details.insert("breakGlass".into(), "true".into());
        }
        details
    }

    /// The audit record of a reveal (`action` for a plain one) with these details.
    pub(crate) fn record(&self, action: &'static str, credential: &CredentialDoc) -> AuditRecord {
        let action = if self.break_glass {
            "credential.break_glass"
        } else {
            action
        };
        let mut record = Service::credential_record(action, credential);
        record.details = self.details();
        record
    }
}

impl Service {
    /// Checks `justification` against `credential_type`'s reveal policy (and the caller's
    /// permission for break-glass); answers what to record, or the 4xx naming what is missing
    /// (502 when ConnectWise cannot be asked: nothing is revealed).
    pub(crate) async fn justify(
        &self,
        ctx: &CallContext,
        credential: &CredentialDoc,
        credential_type: &TypeDoc,
        justification: Justification,
    ) -> Result<Justified, WireError> {
        let policy = &credential_type.reveal_policy;
        let reason = clean_reason(justification.reason)?;
        if justification.break_glass {
            if !ctx.principal()?.permissions.grants(names::CREDENTIAL_BREAK_GLASS) {
                return Err(WireError::new(
                    ErrorCode::Forbidden,
                    format!(
                        "A break-glass reveal needs \"{}\", which you do not hold",
                        names::CREDENTIAL_BREAK_GLASS
                    ),
                ));
            }
            if reason.is_none() {
                return Err(refuse("reason", "A break-glass reveal needs a reason".into()));
            }
        }
        let mut justified = Justified {
            reason,
            break_glass: justification.break_glass,
            ..Justified::default()
        };
        if let Some(ticket) = justification.ticket {
            justified.ticket_summary = self.check_ticket(ctx, credential, ticket).await?;
            justified.ticket = Some(ticket);
            justified.note = policy.ticket_note && policy.require == RevealRequirement::Ticket;
        }
        if justified.break_glass {
            return Ok(justified);
        }
        let named = &credential_type.name;
        match policy.require {
            RevealRequirement::None => {}
            RevealRequirement::Reason if justified.reason.is_none() => {
                return Err(refuse(
                    "reason",
                    format!("Revealing credentials of type \"{named}\" needs a reason (reason=…)"),
                ));
            }
            RevealRequirement::Reason => {}
            RevealRequirement::Ticket if justified.ticket.is_some() => {}
            RevealRequirement::Ticket => {
                let fallback = policy.reason_without_connect_wise;
                if fallback
                    && justified.reason.is_some()
                    && !self.has_connect_wise_id(ctx, credential).await?
                {
                    return Ok(justified);
                }
                let otherwise = if fallback {
                    " (for a company without a ConnectWise id, a reason instead: reason=…)"
                } else {
                    ""
                };
                return Err(refuse(
                    "ticket",
                    format!(
                        "Revealing credentials of type \"{named}\" needs an open ConnectWise ticket of the credential's company (ticket=…){otherwise}"
                    ),
                ));
            }
        }
        Ok(justified)
    }

    /// Asks company-sync whether `ticket` is an open ticket of the credential's company;
    /// answers its summary, or the 400 naming `ticket` saying why not.
    async fn check_ticket(
        &self,
        ctx: &CallContext,
        credential: &CredentialDoc,
        ticket: u64,
    ) -> Result<Option<String>, WireError> {
        let check = self
            .client
            .call(
                ctx,
                &CheckTicket {
                    company_id: credential.company_id.clone(),
                    ticket_id: ticket,
                },
            )
            .await?;
        let why = match check.outcome {
            TicketOutcome::Open => return Ok(check.summary),
            TicketOutcome::Closed => format!("Ticket #{ticket} is closed"),
            TicketOutcome::OtherCompany => format!("Ticket #{ticket} belongs to another company"),
            TicketOutcome::NotFound => format!("Ticket #{ticket} was not found in ConnectWise"),
            TicketOutcome::NoConnectWiseId => format!(
                "The credential's company has no ConnectWise id, so ticket #{ticket} cannot be checked"
            ),
            TicketOutcome::ConnectWiseOff => {
                format!("ConnectWise is not configured, so ticket #{ticket} cannot be checked")
            }
        };
        Err(refuse("ticket", why))
    }

    /// Whether the credential's company comes from ConnectWise.
    async fn has_connect_wise_id(
        &self,
        ctx: &CallContext,
        credential: &CredentialDoc,
    ) -> Result<bool, WireError> {
        let company = self
            .client
            .call(
                ctx,
                &GetCompany {
                    id: credential.company_id.clone(),
                },
            )
            .await?;
        Ok(company.cw_company_id.is_some())
    }

    /// After a reveal: queues the ticket note (durably, in company-sync: a failure fails the
    /// request, so no reveal under a ticket goes un-noted), and for break-glass marks the
    /// credential for rotation and emits `credential.break_glass` at once.
    pub(crate) async fn after_reveal(
        &self,
        ctx: &CallContext,
        credential: &CredentialDoc,
        credential_type: &TypeDoc,
        justified: &Justified,
        seq: u64,
        what: &str,
    ) -> Result<(), WireError> {
        if let (Some(ticket), true) = (justified.ticket, justified.note) {
            let by = ctx
                .principal
                .as_ref()
                .map_or_else(|| "TTSCM".to_owned(), |p| p.name.clone());
            let mut text = format!(
                "Credential \"{}\" ({}) {what} by {by} in TTSCM, audit entry #{seq}.",
                credential.name, credential_type.name
            );
            if let Some(reason) = &justified.reason {
                text.push_str(&format!(" Reason: {reason}"));
            }
            self.client
                .call(
                    ctx,
                    &QueueTicketNote {
                        key: format!("audit-{seq}"),
                        ticket_id: ticket,
                        text,
                    },
                )
                .await?;
        }
        if justified.break_glass {
            self.mark_due(ctx, credential, "break_glass").await?;
            self.events
                .publish(ctx, "credential", "break_glass", &credential.id, || {
                    let mut data = Service::event_data(credential);
                    data["auditSeq"] = json!(seq);
                    data["ticket"] = json!(justified.ticket);
                    data
                })
                .await;
        }
        Ok(())
    }
}
