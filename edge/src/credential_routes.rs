//! Credential routes with more than one operation's plumbing: the lists (the spec's whole list,
//! or — with `page`/`rpp` — one page in the companies' pagination envelope), a credential's
//! `ETag` (its version) and `If-Match` on writes, and its history.

use ttscm_contract::credential::{
    Credential, CredentialList, GetCredential, Justification, ListCredentialHistory, ListCredentials,
    ListCredentialsByCompany, ListCredentialsByType, ListWindow, RestoreCredentialVersion, UpdateCredential,
    UpdateCredentialFields,
};
use ttscm_contract::{FieldError, WireError};
use warp::http::HeaderValue;
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

/// `rotationDue=true` (only credentials due for rotation); left out: every credential. Any
/// other value is a 400 naming `rotationDue`.
fn rotation_due(input: &Input) -> Result<bool, WireError> {
    match input.query.get("rotationDue").map(String::as_str) {
        None => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(WireError::validation(vec![FieldError::new(
            vec![serde_json::json!("rotationDue")],
            "rotationDue must be true (or left out for every credential)",
        )])),
    }
}

fn answer(route: &'static RouteSpec, window: ListWindow, list: &CredentialList) -> Response {
    match window.page {
        Some(page) => page_of(route, page, list.total, &list.items),
        None => envelope::success(route.status, route.message, &list.items),
    }
}

/// `GET /v1/credential/credentials/company/:companyId[?page&rpp&rotationDue=true]`.
pub(crate) async fn by_company(
    ctx: RequestCtx,
    route: &'static RouteSpec,
    mut input: Input,
) -> Result<Response, WireError> {
    let window = window(&input)?;
    let op = ListCredentialsByCompany {
        rotation_due: rotation_due(&input)?,
        company_id: input.param(),
        window,
    };
    Ok(answer(route, window, &ctx.call(&op).await?))
}

/// `GET /v1/credential-type/credential-types/:id/credentials[?page&rpp&rotationDue=true]`.
pub(crate) async fn by_type(
    ctx: RequestCtx,
    route: &'static RouteSpec,
    mut input: Input,
) -> Result<Response, WireError> {
    let window = window(&input)?;
    let op = ListCredentialsByType {
        rotation_due: rotation_due(&input)?,
        id: input.param(),
        window,
    };
    Ok(answer(route, window, &ctx.call(&op).await?))
}

/// `GET /v1/credential/credentials[?rotationDue=true&page&rpp]` (beyond the spec): across every
/// company, scope-filtered like a company's list.
pub(crate) async fn across_companies(
    ctx: RequestCtx,
    route: &'static RouteSpec,
    input: Input,
) -> Result<Response, WireError> {
    let window = window(&input)?;
    let op = ListCredentials {
        rotation_due: rotation_due(&input)?,
        window,
    };
    Ok(answer(route, window, &ctx.call(&op).await?))
}

/// A credential in the route's envelope, with its version as a strong `ETag` (`"7"`).
fn with_etag(route: &'static RouteSpec, credential: &Credential) -> Response {
    let mut response = envelope::success(route.status, route.message, credential);
    response.headers_mut().insert(
        warp::http::header::ETAG,
        HeaderValue::from_str(&format!("\"{}\"", credential.version)).expect("digits and quotes"),
    );
    response
}

/// The version an `If-Match` header names: `"7"` (or `W/"7"`, or bare `7`); `*` or no header
/// asks for no check. Several tags, or one that is not a version, is a 400 naming `If-Match`.
pub(crate) fn if_match(header: Option<&str>) -> Result<Option<u64>, WireError> {
    let Some(raw) = header.map(str::trim) else {
        return Ok(None);
    };
    if raw == "*" {
        return Ok(None);
    }
    let tag = raw.strip_prefix("W/").unwrap_or(raw);
    let tag = tag
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(tag);
    tag.parse::<u64>().map(Some).map_err(|_| {
        WireError::validation(vec![FieldError::new(
            vec![serde_json::json!("If-Match")],
            "If-Match must be one ETag of this credential, e.g. \"3\" (or *)",
        )])
    })
}

/// `GET /v1/credential/credentials/:id`, with the `ETag`.
pub(crate) async fn get(
    ctx: RequestCtx,
    route: &'static RouteSpec,
    mut input: Input,
) -> Result<Response, WireError> {
    let credential = ctx.call(&GetCredential { id: input.param() }).await?;
    Ok(with_etag(route, &credential))
}

/// `PATCH /v1/credential/credentials/:id` (optional `If-Match`), answering the new `ETag`.
pub(crate) async fn rename(
    ctx: RequestCtx,
    route: &'static RouteSpec,
    mut input: Input,
) -> Result<Response, WireError> {
    let op = UpdateCredential {
        if_match: if_match(input.body_header("if-match"))?,
        patch: input.body()?,
        id: input.param(),
    };
    Ok(with_etag(route, &ctx.call(&op).await?))
}

/// `PUT /v1/credential/credentials/:id/fields` (optional `If-Match`), answering the new `ETag`.
pub(crate) async fn put_fields(
    ctx: RequestCtx,
    route: &'static RouteSpec,
    mut input: Input,
) -> Result<Response, WireError> {
    let op = UpdateCredentialFields {
        if_match: if_match(input.body_header("if-match"))?,
        input: input.body()?,
        id: input.param(),
    };
    Ok(with_etag(route, &ctx.call(&op).await?))
}

/// A version path parameter: a whole number (400 naming `version` otherwise).
pub(crate) fn version(input: &mut Input) -> Result<u64, WireError> {
    input.param().parse::<u64>().map_err(|_| {
        WireError::validation(vec![FieldError::new(
            vec![serde_json::json!("version")],
            "version must be a whole number",
        )])
    })
}

/// `GET /v1/credential/credentials/:id/history[?page&rpp]`: newest first.
pub(crate) async fn history(
    ctx: RequestCtx,
    route: &'static RouteSpec,
    mut input: Input,
) -> Result<Response, WireError> {
    let window = window(&input)?;
    let op = ListCredentialHistory {
        id: input.param(),
        window,
    };
    let history = ctx.call(&op).await?;
    Ok(match window.page {
        Some(page) => page_of(route, page, history.total, &history.items),
        None => envelope::success(route.status, route.message, &history.items),
    })
}

/// `POST /v1/credential/credentials/:id/history/:version/restore` (optional `If-Match`).
pub(crate) async fn restore(
    ctx: RequestCtx,
    route: &'static RouteSpec,
    mut input: Input,
) -> Result<Response, WireError> {
    let op = RestoreCredentialVersion {
        if_match: if_match(input.header.as_deref())?,
        id: input.param(),
        version: version(&mut input)?,
    };
    Ok(with_etag(route, &ctx.call(&op).await?))
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
