//! Routes of no area: the audit log (beyond the spec), readiness, and the spec's teapot.

use std::time::Duration;

use ttscm_contract::audit::{GetExposure, ListAuditEvents, MarkExposureDue};
use ttscm_contract::health::{CompanySyncHealth, CredentialHealth, HealthReply, IdentityHealth, VaultHealth};
use ttscm_contract::webhook::WebhookHealth;
use ttscm_contract::{FieldError, WireError};
use ttscm_runtime::clock::{format_iso, parse_iso};
use warp::http::StatusCode;
use warp::reply::Response;

use crate::envelope;
use crate::routes::{Input, RequestCtx, RouteSpec, page_and_rpp, page_of};

/// `GET /v1/teapot`: the spec's 418, in the error envelope.
pub(crate) async fn teapot(
    _: RequestCtx,
    route: &'static RouteSpec,
    _: Input,
) -> Result<Response, WireError> {
    Ok(envelope::error(route.status, route.message, &[]))
}

/// `GET /v1/audit/events?page&rpp&actor&target&action&from&to`.
pub(crate) async fn audit_events(
    ctx: RequestCtx,
    route: &'static RouteSpec,
    input: Input,
) -> Result<Response, WireError> {
    let query = input.query;
    let (page, rpp) = page_and_rpp(&query)?;
    let mut errors = Vec::new();
    for key in ["from", "to"] {
        if let Some(value) = query.get(key)
            && parse_iso(value).is_none()
        {
            errors.push(FieldError::new(
                vec![serde_json::json!(key)],
                format!("{key} must be an RFC 3339 time"),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(WireError::validation(errors));
    }
    let op = ListAuditEvents {
        actor: query.get("actor").cloned(),
        target: query.get("target").cloned(),
        action: query.get("action").cloned(),
        from: query.get("from").and_then(|v| parse_iso(v)).map(format_iso),
        to: query.get("to").and_then(|v| parse_iso(v)).map(format_iso),
        page,
        rpp,
    };
    let reply = ctx.call(&op).await?;
    let mut response = page_of(route, (page, rpp), reply.total, &reply.items);
    // Entries appended but not yet readable (the mesh's copy lagging): the page is what is
    // stored, and says so rather than failing.
    response
        .headers_mut()
        .insert(AUDIT_PENDING_HEADER, warp::http::HeaderValue::from(reply.pending));
    Ok(response)
}

/// `actor` (required) and `since` (optional, RFC 3339) of an exposure route's query; a 400
/// names the one that is missing or malformed.
fn exposure_query(
    query: &std::collections::HashMap<String, String>,
) -> Result<(String, Option<String>), WireError> {
    let mut errors = Vec::new();
    let actor = query.get("actor").map(|a| a.trim()).filter(|a| !a.is_empty());
    if actor.is_none() {
        errors.push(FieldError::new(
            vec![serde_json::json!("actor")],
            "actor is required: the id of a user or an API token",
        ));
    }
    let since = match query.get("since") {
        None => None,
        Some(value) => match parse_iso(value) {
            Some(at) => Some(format_iso(at)),
            None => {
                errors.push(FieldError::new(
                    vec![serde_json::json!("since")],
                    "since must be an RFC 3339 time",
                ));
                None
            }
        },
    };
    match actor {
        Some(actor) if errors.is_empty() => Ok((actor.to_owned(), since)),
        _ => Err(WireError::validation(errors)),
    }
}

/// `GET /v1/audit/exposure?actor&since&page&rpp`: the credentials `actor` revealed whose
/// revealed values are still in use; `data` is the report (`items`, `total`, `hidden`,
/// `deleted`, `reveals`) with the spec's pagination beside it.
pub(crate) async fn exposure(
    ctx: RequestCtx,
    route: &'static RouteSpec,
    input: Input,
) -> Result<Response, WireError> {
    let (page, rpp) = page_and_rpp(&input.query)?;
    let (actor, since) = exposure_query(&input.query)?;
    let op = GetExposure {
        actor,
        since,
        window: ttscm_contract::credential::ListWindow {
            page: Some((page, rpp)),
        },
    };
    let report = ctx.call(&op).await?;
    let pagination = envelope::Pagination::new(page, rpp, report.total, report.items.len() as u64);
    Ok(envelope::paginated(route.message, &report, &pagination))
}

/// `POST /v1/audit/exposure?actor&since`: marks the exposed credentials due for rotation.
pub(crate) async fn mark_exposure(
    ctx: RequestCtx,
    route: &'static RouteSpec,
    input: Input,
) -> Result<Response, WireError> {
    let (actor, since) = exposure_query(&input.query)?;
    let marked = ctx.call(&MarkExposureDue { actor, since }).await?;
    Ok(envelope::success(route.status, route.message, &marked))
}

/// The response header of `GET /v1/audit/events` counting entries appended but not yet
/// listed (0: the page includes every entry appended before the request).
pub const AUDIT_PENDING_HEADER: &str = "x-audit-pending";

/// `GET /readyz`: ready when the bus is connected and every service answers with a reachable
/// store; 503 "Not ready" with the same report otherwise.
pub(crate) async fn readiness(
    ctx: RequestCtx,
    route: &'static RouteSpec,
    _: Input,
) -> Result<Response, WireError> {
    let client = &ctx.state.client;
    let timeout = Duration::from_secs(1);
    let bus_ok = client.bus().is_connected();
    // Health checks are the edge's own work: they carry its service principal.
    let mut call = client.bus().service_context();
    call.request_id.clone_from(&ctx.call.request_id);
    let (identity, company_sync, credential, vault, webhook) = tokio::join!(
        client.call_with_timeout(&call, &IdentityHealth {}, timeout),
        client.call_with_timeout(&call, &CompanySyncHealth {}, timeout),
        client.call_with_timeout(&call, &CredentialHealth {}, timeout),
        client.call_with_timeout(&call, &VaultHealth {}, timeout),
        client.call_with_timeout(&call, &WebhookHealth {}, timeout),
    );
    let mut report = serde_json::Map::new();
    report.insert(
        "bus".into(),
        serde_json::json!({"kind": client.bus().kind(), "ok": bus_ok}),
    );
    let mut ready = bus_ok;
    for (name, result) in [
        ("identity", identity),
        ("company-sync", company_sync),
        ("credential", credential),
        ("vault", vault),
        ("webhook", webhook),
    ] {
        let entry = match result {
            Ok(HealthReply { store_ok, .. }) => {
                ready &= store_ok != Some(false);
                serde_json::json!({"ok": store_ok != Some(false), "store": store_ok})
            }
            Err(error) => {
                ready = false;
                serde_json::json!({"ok": false, "error": error.message})
            }
        };
        report.insert(name.into(), entry);
    }
    if ready {
        Ok(envelope::success(route.status, route.message, &report))
    } else {
        Ok(envelope::failure_with(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not ready",
            &report,
        ))
    }
}
