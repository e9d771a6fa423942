//! Credential list routes: the spec's whole list, or — with `page`/`rpp` — one page in the
//! companies' pagination envelope.

use ttscm_contract::credential::{
    CredentialList, Justification, ListCredentialsByCompany, ListCredentialsByType, ListWindow,
};
use ttscm_contract::{FieldError, WireError};
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

/// Why a reveal happens, from its query: `ticket` (a ConnectWise ticket number), `reason` (free
/// text; the credential service checks its length) and `breakGlass` (`true`/`false`). Query
/// parameters rather than headers, so a browser link or `curl` carries them as easily; none of
/// them is a secret. A malformed one is a 400 naming it.
pub(crate) fn justification(input: &Input) -> Result<Justification, WireError> {
    let query = &input.query;
    let mut errors = Vec::new();
    let ticket = match query.get("ticket").map(|t| t.trim()) {
        None => None,
        Some(raw) => match raw.parse::<u64>() {
            Ok(n) if n >= 1 && i64::try_from(n).is_ok() => Some(n),
            _ => {
                errors.push(FieldError::new(
                    vec![serde_json::json!("ticket")],
                    "ticket must be a ConnectWise ticket number (a whole number from 1)",
                ));
                None
            }
        },
    };
    let break_glass = match query.get("breakGlass").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            errors.push(FieldError::new(
                vec![serde_json::json!("breakGlass")],
                "breakGlass must be true or false",
            ));
            false
        }
    };
    if !errors.is_empty() {
        return Err(WireError::validation(errors));
    }
    Ok(Justification {
        ticket,
        reason: query.get("reason").cloned(),
        break_glass,
    })
}
