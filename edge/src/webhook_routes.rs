//! Webhook routes (`/v1/webhook/…`, beyond the spec; `webhook.manage`), as far as they do more
//! than forward one operation: the paged delivery log of an endpoint.

use ttscm_contract::webhook::ListWebhookDeliveries;
use ttscm_contract::{FieldError, WireError};
use warp::reply::Response;

use crate::openapi::{In, Param};
use crate::routes::{Input, RequestCtx, RouteSpec, page_and_rpp, page_of};

/// `status` of the delivery log.
pub(crate) const STATUS: Param = Param {
    name: "status",
    location: In::Query,
    required: false,
    schema: || serde_json::json!({"type": "string", "enum": ["pending", "delivered", "failed"]}),
    description: "Only deliveries in this status.",
};

/// `GET /v1/webhook/endpoints/:id/deliveries?status&page&rpp`: newest first.
pub(crate) async fn deliveries(
    ctx: RequestCtx,
    route: &'static RouteSpec,
    mut input: Input,
) -> Result<Response, WireError> {
    let (page, rpp) = page_and_rpp(&input.query)?;
    let status = input.query.remove("status");
    if let Some(status) = &status
        && !["pending", "delivered", "failed"].contains(&status.as_str())
    {
        return Err(WireError::validation(vec![FieldError::new(
            vec![serde_json::json!("status")],
            "status is pending, delivered or failed",
        )]));
    }
    let reply = ctx
        .call(&ListWebhookDeliveries {
            id: input.param(),
            status,
            page,
            rpp,
        })
        .await?;
    Ok(page_of(route, (page, rpp), reply.total, &reply.items))
}
