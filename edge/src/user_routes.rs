//! User routes: the spec's `GET|PATCH /v1/user/@me` (scopes `user.read` / `user.write` of a
//! signed-in user's access token), and beyond the spec the administration a team needs to run
//! sign-in: `GET /v1/user/users`, `PUT /v1/user/users/:id/roles`, and
//! `GET|POST /v1/role/roles`, `PATCH|DELETE /v1/role/roles/:id`.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use ttscm_contract::identity::{
    CreateRole, DeleteRole, GetMe, ListRoles, ListUsers, SetUserRoles, UpdateMe, UpdateRole,
};
use ttscm_contract::permission::names;
use ttscm_contract::{ErrorCode, WireError};
use warp::Filter;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;

use crate::envelope::{self, Pagination, paginated};
use crate::routes::{Answer, RequestCtx, Route, answer, ctx, finish, page_and_rpp, parse_body, respond_with};
use crate::{EdgeState, body};

const LIST_USERS: &str = "Users Fetched Successfully!";
const SET_ROLES: Answer = answer(
    "user.roles_update",
    &[names::USER_ROLES_UPDATE],
    StatusCode::OK,
    "User Roles Updated Successfully!",
);
const LIST_ROLES: Answer = answer(
    "role.list",
    &[names::ROLE_FETCH_MANY],
    StatusCode::OK,
    "Roles Fetched Successfully!",
);
const CREATE_ROLE: Answer = answer(
    "role.create",
    &[names::ROLE_CREATE],
    StatusCode::CREATED,
    "Role Created Successfully!",
);
const UPDATE_ROLE: Answer = answer(
    "role.update",
    &[names::ROLE_UPDATE],
    StatusCode::OK,
    "Role Updated Successfully!",
);
const DELETE_ROLE: Answer = answer(
    "role.delete",
    &[names::ROLE_DELETE],
    StatusCode::OK,
    "Role Deleted Successfully!",
);

/// Body of `PUT /v1/user/users/:id/roles`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolesBody {
    roles: Vec<String>,
}

impl RequestCtx {
    /// Authenticates the caller and checks that its token carries every scope in `scopes`.
    pub async fn authorize_scopes(&mut self, scopes: &[&str]) -> Result<(), WireError> {
        self.authorize(&[]).await?;
        let principal = self.call.principal()?;
        if scopes
            .iter()
            .all(|s| principal.scopes.iter().any(|have| have == s))
        {
            Ok(())
        } else {
            Err(WireError::new(ErrorCode::Forbidden, "Insufficient scope"))
        }
    }
}

/// The user and role routes: `GET /v1/user/@me` (called on every app start and page load, so
/// the route table tries it early), and the rest.
pub fn routes(state: Arc<EdgeState>, body_limit: u64) -> (Route, Vec<Route>) {
    let c = move || ctx(state.clone());
    let user = warp::path("v1").and(warp::path("user"));
    let me = user.and(warp::path("@me")).and(warp::path::end());

    let get_me = me.and(warp::get()).and(c()).and_then(|ctx| {
        finish(ctx, "user.me", |mut ctx| async move {
            ctx.authorize_scopes(&[names::USER_READ]).await?;
            let user = ctx.call_raw(&GetMe {}).await?;
            Ok(envelope::success(StatusCode::OK, "Fetched user.", &user))
        })
    });
    let update_me = me
        .and(warp::patch())
        .and(c())
        .and(body::raw(body_limit))
        .and_then(|ctx, headers: HeaderMap, bytes: Bytes| {
            finish(ctx, "user.me_update", move |mut ctx| async move {
                ctx.authorize_scopes(&[names::USER_WRITE]).await?;
                let op: UpdateMe = parse_body(&headers, &bytes)?;
                let user = ctx.call(&op).await?;
                Ok(envelope::success(
                    StatusCode::OK,
                    "Successfully updated user.",
                    &user,
                ))
            })
        });

    let users = user.and(warp::path("users"));
    let list_users = users
        .and(warp::path::end())
        .and(warp::get())
        .and(c())
        .and(warp::query::<HashMap<String, String>>())
        .and_then(|ctx, query: HashMap<String, String>| {
            finish(ctx, "user.list", move |ctx| list(ctx, query))
        });
    let set_roles = users
        .and(warp::path::param::<String>())
        .and(warp::path("roles"))
        .and(warp::path::end())
        .and(warp::put())
        .and(c())
        .and(body::raw(body_limit))
        .and_then(|id: String, ctx, headers: HeaderMap, bytes: Bytes| {
            let op = parse_body::<RolesBody>(&headers, &bytes).map(|b| SetUserRoles { id, roles: b.roles });
            respond_with(ctx, SET_ROLES, op)
        });

    let roles = warp::path("v1").and(warp::path("role")).and(warp::path("roles"));
    let list_roles = roles
        .and(warp::path::end())
        .and(warp::get())
        .and(c())
        .and_then(|ctx| respond_with(ctx, LIST_ROLES, Ok(ListRoles {})));
    let create_role = roles
        .and(warp::path::end())
        .and(warp::post())
        .and(c())
        .and(body::raw(body_limit))
        .and_then(|ctx, headers: HeaderMap, bytes: Bytes| {
            let op = parse_body(&headers, &bytes).map(|input| CreateRole { input });
            respond_with(ctx, CREATE_ROLE, op)
        });
    let update_role = roles
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::patch())
        .and(c())
        .and(body::raw(body_limit))
        .and_then(|id: String, ctx, headers: HeaderMap, bytes: Bytes| {
            let op = parse_body(&headers, &bytes).map(|input| UpdateRole { id, input });
            respond_with(ctx, UPDATE_ROLE, op)
        });
    let delete_role = roles
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::delete())
        .and(c())
        .and_then(|id: String, ctx| respond_with(ctx, DELETE_ROLE, Ok(DeleteRole { id })));

    let rest = vec![
        update_me.boxed(),
        list_users.boxed(),
        set_roles.boxed(),
        list_roles.boxed(),
        create_role.boxed(),
        update_role.boxed(),
        delete_role.boxed(),
    ];
    (get_me.boxed(), rest)
}

/// `GET /v1/user/users?page&rpp&search`.
async fn list(mut ctx: RequestCtx, mut query: HashMap<String, String>) -> Result<Response, WireError> {
    ctx.authorize(&[names::USER_FETCH_MANY]).await?;
    let (page, rpp) = page_and_rpp(&query)?;
    let op = ListUsers {
        page,
        rpp,
        search: query.remove("search"),
    };
    let reply = ctx.call(&op).await?;
    let pagination = Pagination::new(page, rpp, reply.total, reply.users.len() as u64);
    Ok(paginated(LIST_USERS, &reply.users, &pagination))
}
