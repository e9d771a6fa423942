//! Ticket checks for ticket-bound reveals ([`CheckTicket`]): does ConnectWise service ticket
//! `n` exist, belong to the credential's company (by its ConnectWise id), and is it open —
//! neither `closedFlag` nor in a status whose `closedStatus` is true?
//!
//! - What ConnectWise says of a ticket is cached per ticket id for
//!   `TTSCM_CONNECTWISE__TICKET_CACHE_SECS` (default 10 s), so repeated reveals under one ticket
//!   cost no ConnectWise call; a board's statuses are cached for [`STATUSES_TTL`] (they rarely
//!   change; an unknown status id refetches them once).
//! - The check is on a reveal's path: ConnectWise calls use [`RetryPolicy::reveal`] and the whole
//!   check is bounded by [`CHECK_DEADLINE`], well under the bus deadline. ConnectWise failing
//!   (and nothing cached) is a 502 ([`ErrorCode::Upstream`]): the caller reveals nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ttscm_contract::company::{CheckTicket, TicketCheck, TicketOutcome};
use ttscm_contract::{ErrorCode, WireError};
use ttscm_runtime::cache::Cache;
use ttscm_runtime::service::{CallContext, ServiceOp};

use crate::connectwise::{ConnectWise, CwTicket, RetryPolicy};
use crate::service::Service;
use crate::sync::{SyncError, Upstream, upstream};

/// The longest a ticket check waits for ConnectWise (the bus deadline is 5 s).
pub const CHECK_DEADLINE: Duration = Duration::from_secs(2);
/// How long a board's statuses are reused.
pub const STATUSES_TTL: Duration = Duration::from_secs(5 * 60);
/// Most tickets cached.
const TICKETS_MAX: usize = 10_000;
/// Most boards whose statuses are cached.
const BOARDS_MAX: usize = 1_000;
/// How long a company's ConnectWise id is remembered (it never changes: a synced company keeps
/// its id, a manual one never gets one; the time bounds only how long a deleted one is known).
const COMPANY_IDS_TTL: Duration = Duration::from_secs(60);
/// Most companies whose ConnectWise id is remembered.
const COMPANY_IDS_MAX: usize = 50_000;
/// Longest summary passed on (it lands in an audit entry).
const MAX_SUMMARY_CHARS: usize = 200;

/// What ConnectWise says of a ticket, whichever company asks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Found {
    /// 404.
    Missing,
    /// The ticket.
    Ticket {
        /// Its company's ConnectWise id (`None`: it names none).
        cw_company_id: Option<i64>,
        /// `closedFlag`, or a status whose `closedStatus` is true.
        closed: bool,
        /// Its summary, shortened.
        summary: Option<String>,
    },
}

/// The ticket checker: ConnectWise and the two caches.
pub struct Tickets {
    upstream: Arc<Upstream>,
    /// What ConnectWise said of a ticket, by ticket id.
    tickets: Cache<u64, Arc<Found>>,
    /// `status id → closedStatus`, by board id.
    statuses: Cache<i64, Arc<HashMap<i64, bool>>>,
    /// A company's ConnectWise id (`None`: kept by hand), by TTSCM id: a check with a warm
    /// ticket cache then reads nothing (no store round trip on a reveal's path).
    company_ids: Cache<String, Option<i64>>,
}

impl std::fmt::Debug for Tickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tickets")
            .field("cached", &self.tickets.len())
            .finish_non_exhaustive()
    }
}

impl Tickets {
    /// A checker asking `upstream`, reusing a ticket's answer for `ticket_ttl`.
    pub fn new(upstream: Arc<Upstream>, ticket_ttl: Duration) -> Self {
        Self {
            upstream,
            tickets: Cache::new(ticket_ttl, TICKETS_MAX),
            statuses: Cache::new(STATUSES_TTL, BOARDS_MAX),
            company_ids: Cache::new(COMPANY_IDS_TTL, COMPANY_IDS_MAX),
        }
    }

    /// The verdict on `ticket_id` for the company with ConnectWise id `cw_company_id`.
    pub async fn check(&self, cw_company_id: i64, ticket_id: u64) -> Result<TicketCheck, WireError> {
        if !self.upstream.enabled() {
            return Ok(verdict(TicketOutcome::ConnectWiseOff, None));
        }
        let found = tokio::time::timeout(CHECK_DEADLINE, self.found(ticket_id))
            .await
            .map_err(|_| {
                tracing::warn!(ticket_id, "ConnectWise did not answer a ticket check in time");
                WireError::new(
                    ErrorCode::Upstream,
                    format!("ConnectWise did not answer within {} s", CHECK_DEADLINE.as_secs()),
                )
            })?
            .map_err(|error| match error {
                SyncError::ConnectWise(error) => upstream(&error),
                other => other.to_wire(),
            })?;
        Ok(match found.as_ref() {
            Found::Missing => verdict(TicketOutcome::NotFound, None),
            Found::Ticket {
                cw_company_id: theirs,
                closed,
                summary,
            } => {
                let outcome = if *theirs != Some(cw_company_id) {
                    TicketOutcome::OtherCompany
                } else if *closed {
                    TicketOutcome::Closed
                } else {
                    TicketOutcome::Open
                };
                // Another company's ticket summary is not passed on.
                let summary = (outcome != TicketOutcome::OtherCompany)
                    .then(|| summary.clone())
                    .flatten();
                verdict(outcome, summary)
            }
        })
    }

    /// What ConnectWise says of `ticket_id`, cached.
    async fn found(&self, ticket_id: u64) -> Result<Arc<Found>, SyncError> {
        self.tickets
            .get_or_try_insert_with(ticket_id, || async {
                let client = self.upstream.client().await?.with_retry(RetryPolicy::reveal());
                let Some(ticket) = client.ticket(ticket_id).await? else {
                    return Ok(Arc::new(Found::Missing));
                };
                let closed = ticket.closed_flag == Some(true) || self.closed_status(&client, &ticket).await?;
                Ok(Arc::new(Found::Ticket {
                    cw_company_id: ticket.company.as_ref().and_then(|c| c.id),
                    closed,
                    summary: ticket
                        .summary
                        .map(|s| s.trim().chars().take(MAX_SUMMARY_CHARS).collect()),
                }))
            })
            .await
    }

    /// Whether the ticket's status is a closed one on its board.
    async fn closed_status(&self, client: &ConnectWise, ticket: &CwTicket) -> Result<bool, SyncError> {
        let board = ticket.board.as_ref().and_then(|b| b.id);
        let status = ticket.status.as_ref().and_then(|s| s.id);
        let (Some(board), Some(status)) = (board, status) else {
            return Ok(false);
        };
        let statuses = self.board_statuses(client, board).await?;
        if let Some(closed) = statuses.get(&status) {
            return Ok(*closed);
        }
        // A status added since the statuses were cached: ask once more.
        self.statuses.remove(&board);
        let statuses = self.board_statuses(client, board).await?;
        let closed = statuses.get(&status).copied();
        if closed.is_none() {
            tracing::warn!(
                board,
                status,
                "a ticket's status is not among its board's statuses; taken as open"
            );
        }
        Ok(closed.unwrap_or(false))
    }

    async fn board_statuses(
        &self,
        client: &ConnectWise,
        board: i64,
    ) -> Result<Arc<HashMap<i64, bool>>, SyncError> {
        self.statuses
            .get_or_try_insert_with(board, || async {
                let statuses = client.board_statuses(board).await?;
                Ok(Arc::new(
                    statuses
                        .into_iter()
                        .filter_map(|s| Some((s.id?, s.closed_status == Some(true))))
                        .collect(),
                ))
            })
            .await
    }
}

fn verdict(outcome: TicketOutcome, summary: Option<String>) -> TicketCheck {
    TicketCheck { outcome, summary }
}

/// Checks a ticket for a reveal of a credential of company `company_id` (404 when the company
/// is unknown).
impl ServiceOp<Service> for CheckTicket {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<TicketCheck, WireError> {
        let known = service.tickets.company_ids.get(&self.company_id);
        let cw_id = match known {
            Some(cw_id) => cw_id,
            None => {
                let company = service
                    .doc(&self.company_id)
                    .await?
                    .ok_or_else(crate::service::not_found)?;
                service
                    .tickets
                    .company_ids
                    .insert(self.company_id.clone(), company.cw_company_id);
                company.cw_company_id
            }
        };
        let Some(cw_company_id) = cw_id else {
            return Ok(verdict(TicketOutcome::NoConnectWiseId, None));
        };
        let check = service.tickets.check(cw_company_id, self.ticket_id).await?;
        tracing::debug!(ticket_id = self.ticket_id, outcome = ?check.outcome, "ticket checked");
        Ok(check)
    }
}
