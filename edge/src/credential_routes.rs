//! Credential list routes: the spec's whole list, or — with `page`/`rpp` — one page in the
//! companies' pagination envelope.

use ttscm_contract::WireError;
use ttscm_contract::credential::{
    CredentialList, ListCredentialsByCompany, ListCredentialsByType, ListWindow,
};
use warp::reply::Response;

use crate::envelope;
use crate::routes::{Input, RequestCtx, RouteSpec, page_and_rpp, page_of};

/// The window a list's query asks for: a page when `page` or `rpp` is given, else everything.
fn window(input: &Input) -> Result<ListWindow, WireError> {
    if input.query.contains_key("page") || input.query.contains_key("rpp") {
        Ok(ListWindow {
            page: Some(page_and_rpp(&input.query)?),
        })
    } else {
        Ok(ListWindow::default())
    }
}

fn answer(route: &'static RouteSpec, window: ListWindow, list: &CredentialList) -> Response {
    match window.page {
        Some(page) => page_of(route, page, list.total, &list.items),
        None => envelope::success(route.status, route.message, &list.items),
    }
}

/// `GET /v1/credential/credentials/company/:companyId[?page&rpp]`.
pub(crate) async fn by_company(
    ctx: RequestCtx,
    route: &'static RouteSpec,
    mut input: Input,
) -> Result<Response, WireError> {
    let window = window(&input)?;
    let op = ListCredentialsByCompany {
        company_id: input.param(),
        window,
    };
    Ok(answer(route, window, &ctx.call(&op).await?))
}

/// `GET /v1/credential-type/credential-types/:id/credentials[?page&rpp]`.
pub(crate) async fn by_type(
    ctx: RequestCtx,
    route: &'static RouteSpec,
    mut input: Input,
) -> Result<Response, WireError> {
    let window = window(&input)?;
    let op = ListCredentialsByType {
        id: input.param(),
        window,
    };
    Ok(answer(route, window, &ctx.call(&op).await?))
}
