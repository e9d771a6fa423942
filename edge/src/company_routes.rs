//! Company routes (`/v1/company/…`): the spec's list and get over the companies company-sync
//! keeps (from ConnectWise, or manual), and beyond the spec the manual companies API.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ttscm_contract::company::{
    CreateCompany, DeleteCompany, GetCompany, GetCompanyConfigurations, GetCompanySyncStatus, ListCompanies,
    RunCompanySync, UpdateCompany,
};
use ttscm_contract::permission::names;
use ttscm_contract::{FieldError, WireError};
use warp::Filter;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;

use crate::envelope::{Pagination, paginated};
use crate::routes::{
    Answer, MAX_RPP, RequestCtx, Route, answer, ctx, finish, page_and_rpp, parse_body, respond_with,
};
use crate::{EdgeState, body};

const GET: Answer = answer(
    "company.get",
    &[names::COMPANY_FETCH],
    StatusCode::OK,
    "Company Fetched Successfully!",
);
const CREATE: Answer = answer(
    "company.create",
    &[names::COMPANY_CREATE],
    StatusCode::CREATED,
    "Company Created Successfully!",
);
const UPDATE: Answer = answer(
    "company.update",
    &[names::COMPANY_UPDATE],
    StatusCode::OK,
    "Company Updated Successfully!",
);
const DELETE: Answer = answer(
    "company.delete",
    &[names::COMPANY_DELETE],
    StatusCode::OK,
    "Company Deleted Successfully!",
);

/// Route name and permissions of the configurations route (it waits longer than other calls,
/// so it does not go through `respond_with`).
struct Guard {
    route: &'static str,
    required: &'static [&'static str],
}

const CONFIGURATIONS: Guard = Guard {
    route: "company.configurations",
    required: &[names::COMPANY_FETCH, names::COMPANY_FETCH_CONFIGURATIONS],
};

/// How long the configurations route waits: company-sync tries ConnectWise twice with a 5 s
/// limit each, so its 502 arrives before this.
const CONFIGURATIONS_DEADLINE: Duration = Duration::from_secs(15);
const SYNC_STATUS: Answer = answer(
    "company.sync_status",
    &[names::COMPANY_SYNC],
    StatusCode::OK,
    "Company Sync Status Fetched Successfully!",
);

/// How long `POST /v1/company/sync` waits for the sync it starts (a full sync of a large
/// ConnectWise tenant, with rate limiting, takes a while).
const SYNC_DEADLINE: Duration = Duration::from_secs(300);

/// The company routes, to be tried before the rest of the table.
pub fn routes(state: Arc<EdgeState>, body_limit: u64) -> Vec<Route> {
    let sync_state = state.clone();
    let configurations_state = state.clone();
    let c = move || ctx(state.clone());
    let companies = warp::path("v1")
        .and(warp::path("company"))
        .and(warp::path("companies"));

    let list = companies
        .and(warp::path::end())
        .and(warp::get())
        .and(c())
        .and(warp::query::<HashMap<String, String>>())
        .and_then(|ctx, query: HashMap<String, String>| {
            finish(ctx, "company.list", move |ctx| list(ctx, query))
        });
    let create = companies
        .and(warp::path::end())
        .and(warp::post())
        .and(c())
        .and(body::raw(body_limit))
        .and_then(|ctx, headers: HeaderMap, bytes: Bytes| {
            let op = parse_body(&headers, &bytes).map(|input| CreateCompany { input });
            respond_with(ctx, CREATE, op)
        });
    let get = companies
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::get())
        .and(c())
        .and_then(|id: String, ctx| respond_with(ctx, GET, Ok(GetCompany { id })));
    let update = companies
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::patch())
        .and(c())
        .and(body::raw(body_limit))
        .and_then(|id: String, ctx, headers: HeaderMap, bytes: Bytes| {
            let op = parse_body(&headers, &bytes).map(|patch| UpdateCompany { id, patch });
            respond_with(ctx, UPDATE, op)
        });
    let delete = companies
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::delete())
        .and(c())
        .and_then(|id: String, ctx| respond_with(ctx, DELETE, Ok(DeleteCompany { id })));

    let configurations = companies
        .and(warp::path::param::<String>())
        .and(warp::path("configurations"))
        .and(warp::path::end())
        .and(warp::get())
        .and(c())
        .and_then(move |id: String, ctx| {
            let state = configurations_state.clone();
            finish(ctx, CONFIGURATIONS.route, move |mut ctx| async move {
                ctx.authorize(CONFIGURATIONS.required).await?;
                let op = GetCompanyConfigurations { id };
                let reply = state
                    .client
                    .call_with_timeout(&ctx.call, &op, CONFIGURATIONS_DEADLINE)
                    .await?;
                Ok(crate::envelope::success(
                    StatusCode::OK,
                    "Company Configurations Fetched Successfully!",
                    &reply,
                ))
            })
        });
    let sync = warp::path("v1")
        .and(warp::path("company"))
        .and(warp::path("sync"));
    let sync_status = sync
        .and(warp::path::end())
        .and(warp::get())
        .and(c())
        .and_then(|ctx| respond_with(ctx, SYNC_STATUS, Ok(GetCompanySyncStatus {})));
    let sync_run = sync
        .and(warp::path::end())
        .and(warp::post())
        .and(c())
        .and(warp::query::<HashMap<String, String>>())
        .and_then(move |ctx, query: HashMap<String, String>| {
            let state = sync_state.clone();
            finish(ctx, "company.sync_run", move |ctx| run_sync(ctx, state, query))
        });

    vec![
        list.boxed(),
        configurations.boxed(),
        sync_status.boxed(),
        sync_run.boxed(),
        create.boxed(),
        get.boxed(),
        update.boxed(),
        delete.boxed(),
    ]
}

/// `GET /v1/company/companies?page&rpp&search`: `rpp` above [`MAX_RPP`] is capped, not refused.
async fn list(mut ctx: RequestCtx, mut query: HashMap<String, String>) -> Result<Response, WireError> {
    ctx.authorize(&[names::COMPANY_FETCH_MANY]).await?;
    if let Some(rpp) = query.get_mut("rpp")
        && rpp.trim().parse::<u64>().is_ok_and(|n| n > MAX_RPP)
    {
        *rpp = MAX_RPP.to_string();
    }
    let (page, rpp) = page_and_rpp(&query)?;
    let op = ListCompanies {
        page,
        rpp,
        search: query.remove("search"),
    };
    let reply = ctx.call(&op).await?;
    let pagination = Pagination::new(page, rpp, reply.total, reply.items.len() as u64);
    Ok(paginated(
        "Companies Fetched Successfully!",
        &reply.items,
        &pagination,
    ))
}

/// `POST /v1/company/sync?full=true|false`: runs a sync now and answers its report.
async fn run_sync(
    mut ctx: RequestCtx,
    state: Arc<EdgeState>,
    query: HashMap<String, String>,
) -> Result<Response, WireError> {
    ctx.authorize(&[names::COMPANY_SYNC]).await?;
    let full = match query.get("full").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(WireError::validation(vec![FieldError::new(
                vec![serde_json::json!("full")],
                "full is true or false",
            )]));
        }
    };
    let report = state
        .client
        .call_with_timeout(&ctx.call, &RunCompanySync { full }, SYNC_DEADLINE)
        .await?;
    Ok(crate::envelope::success(
        StatusCode::OK,
        "Company Sync Finished!",
        &report,
    ))
}
