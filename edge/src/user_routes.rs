//! User routes, as far as they do more than forward one operation: the users list (paginated)
//! and the body of `PUT /v1/user/users/:id/roles`. The spec's `GET|PATCH /v1/user/@me` (scopes
//! `user.read` / `user.write` of a signed-in user's access token) and the role administration
//! (`/v1/role/roles`) are plain forwards in the table.

use serde::Deserialize;
use ttscm_contract::WireError;
use ttscm_contract::identity::ListUsers;
use warp::reply::Response;

use crate::routes::{Input, RequestCtx, RouteSpec, page_of, page_rpp_search};

/// Body of `PUT /v1/user/users/:id/roles`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RolesBody {
    pub(crate) roles: Vec<String>,
}

/// `GET /v1/user/users?page&rpp&search`.
pub(crate) async fn list(
    ctx: RequestCtx,
    route: &'static RouteSpec,
    input: Input,
) -> Result<Response, WireError> {
    let (page, rpp, search) = page_rpp_search(input.query)?;
    let reply = ctx.call(&ListUsers { page, rpp, search }).await?;
    Ok(page_of(route, (page, rpp), reply.total, &reply.users))
}
