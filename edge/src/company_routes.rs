//! Company routes (`/v1/company/…`), as far as they do more than forward one operation: the
//! spec's list over the companies company-sync keeps (from ConnectWise, or manual), and the
//! `full` flag of `POST /v1/company/sync`.

use std::collections::HashMap;

use ttscm_contract::company::ListCompanies;
use ttscm_contract::{FieldError, WireError};
use warp::reply::Response;

use crate::routes::{Input, MAX_RPP, RequestCtx, RouteSpec, page_of, page_rpp_search};

/// `GET /v1/company/companies?page&rpp&search`: `rpp` above [`MAX_RPP`] is capped, not refused.
pub(crate) async fn list(
    ctx: RequestCtx,
    route: &'static RouteSpec,
    input: Input,
) -> Result<Response, WireError> {
    let mut query = input.query;
    if let Some(rpp) = query.get_mut("rpp")
        && rpp.trim().parse::<u64>().is_ok_and(|n| n > MAX_RPP)
    {
        *rpp = MAX_RPP.to_string();
    }
    let (page, rpp, search) = page_rpp_search(query)?;
    let reply = ctx.call(&ListCompanies { page, rpp, search }).await?;
    Ok(page_of(route, (page, rpp), reply.total, &reply.items))
}

/// `full=true|false` of `POST /v1/company/sync` (absent: false).
pub(crate) fn full_sync(query: &HashMap<String, String>) -> Result<bool, WireError> {
    match query.get("full").map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(WireError::validation(vec![FieldError::new(
            vec![serde_json::json!("full")],
            "full is true or false",
        )])),
    }
}
