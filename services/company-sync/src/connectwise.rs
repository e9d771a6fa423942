//! The ConnectWise Manage REST client: Basic auth `companyId+publicKey:privateKey` and the
//! `clientId` header on every call, `pageSize=1000` paging that follows `Link rel="next"`,
//! `Retry-After` on 429, bounded exponential backoff with full jitter
//! ([`ttscm_runtime::retry::Backoff`]) on 5xx and transport errors, and a clear stop on 401/403.
//! Both error-body shapes (`code` and `error`) are parsed. Every field of a record is optional:
//! ConnectWise omits nulls. Reads companies, configurations, service tickets and board statuses;
//! writes only internal ticket notes.
//!
//! The private key lives in a [`SecretString`] and in a header value marked sensitive (reqwest's
//! `basic_auth` marks it); neither is ever printed.

use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use ttscm_runtime::retry::Backoff;
use ttscm_runtime::settings::ConnectWiseSettings;

/// Records per page: ConnectWise's maximum.
pub const PAGE_SIZE: usize = 1000;
/// Most pages one listing follows (10 million records): a guard against a `next` link loop.
const MAX_PAGES: usize = 10_000;
/// The longest `Retry-After` honoured; longer waits are capped.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// The wait after a 429 without a usable `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why a ConnectWise call failed, by what a caller does about it.
#[derive(Debug, thiserror::Error)]
pub enum ConnectWiseError {
    /// The settings are incomplete or invalid; sync stays off.
    #[error("ConnectWise settings: {0}")]
    Config(String),
    /// 401 or 403: the keys, client id or the API member's security role are wrong. Retrying
    /// does not help.
    #[error("ConnectWise rejected the credentials (HTTP {status}): {message}")]
    Unauthorized {
        /// 401 or 403.
        status: u16,
        /// ConnectWise's message.
        message: String,
    },
    /// Another 4xx: the request is wrong (or, on cloud sites, a 404 may mean a wrong codebase).
    #[error("ConnectWise refused the request (HTTP {status}, {code}): {message}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// ConnectWise's error code (`code` or `error` of the body).
        code: String,
        /// ConnectWise's message.
        message: String,
    },
    /// 5xx, 429 or transport errors persisted through every retry.
    #[error("ConnectWise is unavailable: {0}")]
    Unavailable(String),
    /// A 2xx answer that is not what the API documents.
    #[error("ConnectWise answered something unexpected: {0}")]
    Malformed(String),
}

/// A reference to another record (`{id, name, identifier?}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CwRef {
    /// Id.
    pub id: Option<i64>,
    /// Name.
    pub name: Option<String>,
    /// Identifier (companies only).
    pub identifier: Option<String>,
}

/// The `_info` block of a record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CwInfo {
    /// When the record last changed (RFC 3339, UTC).
    pub last_updated: Option<String>,
    /// When the record was entered.
    pub date_entered: Option<String>,
}

/// A ConnectWise company record; the fields company-sync uses, all optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CwCompany {
    /// The ConnectWise company id.
    pub id: Option<i64>,
    /// The short identifier, e.g. `AcmeCorp`.
    pub identifier: Option<String>,
    /// The name.
    pub name: Option<String>,
    /// Status, e.g. `Active`, `Inactive`, `Not-Approved`.
    pub status: Option<CwRef>,
    /// Types, e.g. `Client`, `Prospect`.
    pub types: Option<Vec<CwRef>>,
    /// Whether the company is deleted.
    pub deleted_flag: Option<bool>,
    /// Whether the company is a lead.
    pub lead_flag: Option<bool>,
    /// The website.
    pub website: Option<String>,
    /// The phone number.
    pub phone_number: Option<String>,
    /// Record metadata.
    #[serde(rename = "_info")]
    pub info: Option<CwInfo>,
}

/// A service ticket (`GET /service/tickets/{id}`); the fields a ticket check uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CwTicket {
    /// The ticket number.
    pub id: Option<i64>,
    /// The summary line.
    pub summary: Option<String>,
    /// The company it is for.
    pub company: Option<CwRef>,
    /// Its status (ids are per board).
    pub status: Option<CwRef>,
    /// Its board.
    pub board: Option<CwRef>,
    /// Whether it is closed.
    pub closed_flag: Option<bool>,
}

/// A status of a service board (`GET /service/boards/{id}/statuses`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CwBoardStatus {
    /// The status id.
    pub id: Option<i64>,
    /// Its name.
    pub name: Option<String>,
    /// Whether a ticket in this status counts as closed (some MSPs close tickets this way
    /// rather than by `closedFlag`).
    pub closed_status: Option<bool>,
}

/// The body of an internal ticket note (`POST /service/tickets/{id}/notes`): not visible to the
/// customer, no e-mail to the ticket's contacts.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct NewTicketNote<'a> {
    text: &'a str,
    internal_analysis_flag: bool,
    detail_description_flag: bool,
    resolution_flag: bool,
    process_notifications: bool,
}

/// The two error-body shapes ConnectWise uses (`code` or, on 429, `error`).
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    code: Option<String>,
    error: Option<String>,
    message: Option<String>,
}

/// How failed calls are retried, and how long one attempt may take.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// The longest one attempt may take (connect, send, read the whole page).
    pub attempt_timeout: Duration,
    /// Attempts per request, the first included (5xx, transport errors and 429s all count).
    pub max_attempts: u32,
    /// The longest first backoff (full jitter: a wait is drawn from zero up to it); doubled
    /// per attempt.
    pub base_delay: Duration,
    /// The longest backoff.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_secs(60),
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// For calls a person waits for (configurations): two short attempts, so the answer (or
    /// the 502) comes in about ten seconds at most.
    pub fn interactive() -> Self {
        Self {
            attempt_timeout: Duration::from_secs(5),
            max_attempts: 2,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_millis(200),
        }
    }

    /// For the ticket check on a reveal's path (the bus deadline is 5 s): two attempts of at
    /// most 800 ms each. The caller also bounds the whole check (`tickets::CHECK_DEADLINE`).
    pub fn reveal() -> Self {
        Self {
            attempt_timeout: Duration::from_millis(800),
            max_attempts: 2,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(100),
        }
    }

    /// For posting a note: one attempt of at most 10 s. A POST that failed half-way may have
    /// created the note, so the note queue, not the client, decides when to try again.
    pub fn once() -> Self {
        Self {
            attempt_timeout: Duration::from_secs(10),
            max_attempts: 1,
            base_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
        }
    }

    /// The backoff between attempts: exponential from `base_delay`, capped at `max_delay`,
    /// full jitter, `max_attempts` in all.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.base_delay, self.max_delay).max_attempts(self.max_attempts)
    }
}

/// Where and how to reach ConnectWise, from settings.
#[derive(Clone)]
pub struct ConnectWiseConfig {
    /// `https://host` (or the full URL given as site).
    pub origin: String,
    /// Codebase such as `v4_6_release/`, if known.
    pub codebase: Option<String>,
    /// Company id used to log in.
    pub company_id: String,
    /// API member public key.
    pub public_key: String,
    /// API member private key.
    pub private_key: SecretString,
    /// Integrator client id.
    pub client_id: String,
}

impl std::fmt::Debug for ConnectWiseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectWiseConfig")
            .field("origin", &self.origin)
            .field("codebase", &self.codebase)
            .field("company_id", &self.company_id)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl ConnectWiseConfig {
    /// The configuration, or `None` when the settings leave ConnectWise off (nothing set).
    /// Partly set settings are an error naming what is missing.
    pub fn from_settings(settings: &ConnectWiseSettings) -> Result<Option<Self>, ConnectWiseError> {
        let text = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let site = text(&settings.site);
        let company_id = text(&settings.company_id);
        let public_key = text(&settings.public_key);
        let client_id = text(&settings.client_id);
        let private_key = settings
            .private_key
            .clone()
            .filter(|k| !k.expose_secret().trim().is_empty());
        let present = [
            site.is_some(),
            company_id.is_some(),
            public_key.is_some(),
            private_key.is_some(),
            client_id.is_some(),
        ];
        if present.iter().all(|p| !p) {
            return Ok(None);
        }
        let missing: Vec<&str> = ["site", "company_id", "public_key", "private_key", "client_id"]
            .into_iter()
            .zip(present)
            .filter(|(_, p)| !p)
            .map(|(name, _)| name)
            .collect();
        let (Some(site), Some(company_id), Some(public_key), Some(private_key), Some(client_id)) =
            (site, company_id, public_key, private_key, client_id)
        else {
            return Err(ConnectWiseError::Config(format!(
                "missing connectwise.{}",
                missing.join(", connectwise.")
            )));
        };
        let codebase = text(&settings.codebase).map(|c| {
            let c = c.trim_matches('/').to_owned();
            format!("{c}/")
        });
        Ok(Some(Self {
            origin: origin_of(&site)?,
            codebase,
            company_id,
            public_key,
            private_key,
            client_id,
        }))
    }
}

/// `https://api-…` for a cloud host without the prefix; a full URL is kept as given.
fn origin_of(site: &str) -> Result<String, ConnectWiseError> {
    if site.starts_with("http://") || site.starts_with("https://") {
        let url = url::Url::parse(site)
            .map_err(|e| ConnectWiseError::Config(format!("connectwise.site is not a URL: {e}")))?;
        return Ok(url.as_str().trim_end_matches('/').to_owned());
    }
    let host = site.trim_end_matches('/');
    if host.is_empty() || host.contains('/') || host.contains('@') {
        return Err(ConnectWiseError::Config(
            "connectwise.site is a host name such as na.myconnectwise.net".into(),
        ));
    }
    let cloud = host.ends_with(".myconnectwise.net") && !host.starts_with("api-");
    Ok(if cloud {
        format!("https://api-{host}")
    } else {
        format!("https://{host}")
    })
}

/// A ConnectWise Manage API client; cheap to clone.
#[derive(Clone)]
pub struct ConnectWise {
    http: reqwest::Client,
    /// `{origin}/{codebase}apis/3.0`.
    base: String,
    /// The origin every `next` link must stay on (the auth header goes nowhere else).
    origin: String,
    /// `companyId+publicKey`, the Basic auth user name.
    login: String,
    /// The Basic auth password.
    private_key: SecretString,
    /// `clientId` and `Accept`.
    headers: HeaderMap,
    retry: RetryPolicy,
}

impl std::fmt::Debug for ConnectWise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectWise")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CompanyInfo {
    codebase: Option<String>,
}

impl ConnectWise {
    /// A client for `config`; discovers the codebase through `/login/companyinfo/{companyId}`
    /// when the settings leave it out.
    pub async fn connect(config: &ConnectWiseConfig, retry: RetryPolicy) -> Result<Self, ConnectWiseError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConnectWiseError::Config(format!("HTTP client: {e}")))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            "clientId",
            HeaderValue::from_str(&config.client_id).map_err(|_| {
                ConnectWiseError::Config("connectwise.client_id is not a header value".into())
            })?,
        );
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let mut client = Self {
            http,
            base: String::new(),
            origin: config.origin.clone(),
            login: format!("{}+{}", config.company_id, config.public_key),
            private_key: config.private_key.clone(),
            headers,
            retry,
        };
        let codebase = match &config.codebase {
            Some(codebase) => codebase.clone(),
            None => {
                let url = format!("{}/login/companyinfo/{}", config.origin, config.company_id);
                let (info, _): (CompanyInfo, _) = client.get_json(&url).await?;
                let codebase = info
                    .codebase
                    .filter(|c| !c.trim().is_empty())
                    .ok_or_else(|| ConnectWiseError::Malformed("companyinfo has no Codebase".into()))?;
                format!("{}/", codebase.trim().trim_matches('/'))
            }
        };
        client.base = format!("{}/{codebase}apis/3.0", config.origin);
        Ok(client)
    }

    /// The same client with another retry policy.
    pub fn with_retry(&self, retry: RetryPolicy) -> Self {
        Self {
            retry,
            ..self.clone()
        }
    }

    /// Every company matching `conditions` (all pages).
    pub async fn companies(&self, conditions: Option<&str>) -> Result<Vec<CwCompany>, ConnectWiseError> {
        self.list("/company/companies", conditions).await
    }

    /// Every configuration of ConnectWise company `cw_company_id` (all pages), as ConnectWise
    /// sends them.
    pub async fn configurations(
        &self,
        cw_company_id: i64,
    ) -> Result<Vec<serde_json::Value>, ConnectWiseError> {
        let conditions = format!("company/id={cw_company_id}");
        self.list("/company/configurations", Some(&conditions)).await
    }

    /// Service ticket `ticket_id`; `None` when ConnectWise answers 404.
    pub async fn ticket(&self, ticket_id: u64) -> Result<Option<CwTicket>, ConnectWiseError> {
        let url = format!("{}/service/tickets/{ticket_id}", self.base);
        match self.get_json(&url).await {
            Ok((ticket, _)) => Ok(Some(ticket)),
            Err(ConnectWiseError::Rejected { status: 404, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Every status of service board `board_id` (all pages).
    pub async fn board_statuses(&self, board_id: i64) -> Result<Vec<CwBoardStatus>, ConnectWiseError> {
        self.list(&format!("/service/boards/{board_id}/statuses"), None)
            .await
    }

    /// Adds an internal note (`internalAnalysisFlag`, no notifications) with `text` to ticket
    /// `ticket_id`.
    pub async fn post_internal_note(&self, ticket_id: u64, text: &str) -> Result<(), ConnectWiseError> {
        let url = format!("{}/service/tickets/{ticket_id}/notes", self.base);
        let note = NewTicketNote {
            text,
            internal_analysis_flag: true,
            detail_description_flag: false,
            resolution_flag: false,
            process_notifications: false,
        };
        let body = serde_json::to_vec(&note).expect("a note serializes");
        let _created: (serde_json::Value, _) = self.send_json(Method::POST, &url, Some(body)).await?;
        Ok(())
    }

    /// Every record of `path` matching `conditions`, following `Link rel="next"` until it is
    /// gone or a page is short.
    pub async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        conditions: Option<&str>,
    ) -> Result<Vec<T>, ConnectWiseError> {
        let mut url = url::Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| ConnectWiseError::Config(format!("bad ConnectWise URL: {e}")))?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(conditions) = conditions {
                query.append_pair("conditions", conditions);
            }
            query.append_pair("page", "1");
            query.append_pair("pageSize", &PAGE_SIZE.to_string());
        }
        let mut next = Some(url.to_string());
        let mut records = Vec::new();
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(ConnectWiseError::Malformed("too many pages".into()));
            }
            let (page, headers): (Vec<T>, HeaderMap) = self.get_json(&url).await?;
            let short = page.len() < PAGE_SIZE;
            records.extend(page);
            if short {
                break;
            }
            next = match next_link(&headers) {
                Some(link) if same_origin(&link, &self.origin) => Some(link),
                Some(_) => {
                    return Err(ConnectWiseError::Malformed(
                        "a next link points to another host".into(),
                    ));
                }
                None => None,
            };
        }
        Ok(records)
    }

    /// A request to `url` with the credentials, headers and attempt timeout of every call.
    fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, url)
            .basic_auth(&self.login, Some(self.private_key.expose_secret()))
            .headers(self.headers.clone())
            .timeout(self.retry.attempt_timeout)
    }

    /// GETs `url` with retries; answers the parsed body and the headers.
    async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<(T, HeaderMap), ConnectWiseError> {
        self.send_json(Method::GET, url, None).await
    }

    /// Sends `method` to `url` (with a JSON `body`) with retries; answers the parsed body and
    /// the headers.
    async fn send_json<T: DeserializeOwned>(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(T, HeaderMap), ConnectWiseError> {
        let mut retries = self.retry.backoff().start();
        loop {
            let mut request = self.request(method.clone(), url);
            if let Some(body) = &body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let sent = request.send().await;
            // Why this attempt failed, and the wait the server asked for (429).
            let (problem, asked): (String, Option<Duration>) = match sent {
                Err(error) => (format!("transport error: {}", without_url(&error)), None),
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    if status.is_success() {
                        let bytes = response
                            .bytes()
                            .await
                            .map_err(|e| ConnectWiseError::Unavailable(without_url(&e)))?;
                        let body = serde_json::from_slice(&bytes)
                            .map_err(|e| ConnectWiseError::Malformed(e.to_string()))?;
                        return Ok((body, headers));
                    }
                    let body: ErrorBody = response
                        .bytes()
                        .await
                        .ok()
                        .and_then(|b| serde_json::from_slice(&b).ok())
                        .unwrap_or_default();
                    let message = body.message.clone().unwrap_or_default();
                    let code = body.code.or(body.error).unwrap_or_default();
                    match status {
                        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                            return Err(ConnectWiseError::Unauthorized {
                                status: status.as_u16(),
                                message,
                            });
                        }
                        StatusCode::TOO_MANY_REQUESTS => (
                            format!("rate limited (429 {code}): {message}"),
                            Some(retry_after(&headers)),
                        ),
                        s if s.is_server_error() => (format!("HTTP {} {code}: {message}", s.as_u16()), None),
                        s => {
                            return Err(ConnectWiseError::Rejected {
                                status: s.as_u16(),
                                code,
                                message,
                            });
                        }
                    }
                }
            };
            let Some(backoff) = retries.next_delay() else {
                return Err(ConnectWiseError::Unavailable(problem));
            };
            let wait = asked.unwrap_or(backoff);
            tracing::debug!(failures = retries.failures(), ?wait, %problem, "retrying a ConnectWise call");
            tokio::time::sleep(wait).await;
        }
    }
}

/// A transport error's text without the URL (which may carry query conditions).
fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    text
}

/// Whether `link` is on `origin` (scheme, host and port), so the credentials go nowhere else.
fn same_origin(link: &str, origin: &str) -> bool {
    match (url::Url::parse(link), url::Url::parse(origin)) {
        (Ok(link), Ok(origin)) => link.origin() == origin.origin(),
        _ => false,
    }
}

/// The wait a 429 asks for: `Retry-After` seconds, capped.
fn retry_after(headers: &HeaderMap) -> Duration {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_RETRY_AFTER)
        .min(MAX_RETRY_AFTER)
}

/// The `rel="next"` target of an RFC 5988 `Link` header.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(text) = value.to_str() else { continue };
        let mut rest = text;
        while let Some(start) = rest.find('<') {
            let Some(end) = rest[start..].find('>') else { break };
            let target = &rest[start + 1..start + end];
            let after = &rest[start + end + 1..];
            let params_end = after.find('<').unwrap_or(after.len());
            let params = &after[..params_end];
            let is_next = params.split(';').any(|p| {
                let p = p.trim().trim_end_matches(',').trim();
                p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
            });
            if is_next {
                return Some(target.to_owned());
            }
            rest = after;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_call_carries_basic_auth_marked_sensitive_and_the_client_id() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = ConnectWiseConfig {
            origin: "http://127.0.0.1:9".into(),
            codebase: Some("v4_6_release/".into()),
            company_id: "a".into(),
            public_key: "b".into(),
            private_key: SecretString::from("c"),
            client_id: "client".into(),
        };
        let client = ConnectWise::connect(&config, RetryPolicy::default())
            .await
            .expect("no discovery with a codebase");
        let request = client
            .request(
                Method::GET,
                "http://127.0.0.1:9/v4_6_release/apis/3.0/company/companies",
            )
            .build()
            .expect("a valid request");
        let auth = &request.headers()[reqwest::header::AUTHORIZATION];
        assert_eq!(auth, "Basic YStiOmM=", "standard base64 of a+b:c");
        assert!(auth.is_sensitive());
        assert_eq!(request.headers()["clientId"], "client");
    }

    #[test]
    fn the_next_link_is_found_among_the_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::LINK,
            HeaderValue::from_static(
                "<https://x/apis/3.0/company/companies?page=1&pageSize=1000>; rel=\"first\", \
                 <https://x/apis/3.0/company/companies?page=3&pageSize=1000>; rel=\"next\", \
                 <https://x/apis/3.0/company/companies?page=9&pageSize=1000>; rel=\"last\"",
            ),
        );
        assert_eq!(
            next_link(&headers).as_deref(),
            Some("https://x/apis/3.0/company/companies?page=3&pageSize=1000")
        );
        headers.insert(
            reqwest::header::LINK,
            HeaderValue::from_static("<https://x/a?page=1>; rel=\"first\""),
        );
        assert_eq!(next_link(&headers), None);
    }

    #[test]
    fn cloud_sites_get_the_api_prefix_once() {
        assert_eq!(
            origin_of("na.myconnectwise.net").ok().as_deref(),
            Some("https://api-na.myconnectwise.net")
        );
        assert_eq!(
            origin_of("api-eu.myconnectwise.net").ok().as_deref(),
            Some("https://api-eu.myconnectwise.net")
        );
        assert_eq!(
            origin_of("cw.example.com").ok().as_deref(),
            Some("https://cw.example.com")
        );
        assert_eq!(
            origin_of("http://127.0.0.1:9/").ok().as_deref(),
            Some("http://127.0.0.1:9")
        );
        assert!(origin_of("evil.com/path").is_err());
    }

    #[test]
    fn partial_settings_name_what_is_missing_and_none_mean_off() {
        assert!(matches!(
            ConnectWiseConfig::from_settings(&ConnectWiseSettings::default()),
            Ok(None)
        ));
        let settings = ConnectWiseSettings {
            site: Some("na.myconnectwise.net".into()),
            private_key: Some(SecretString::from("hunter2")),
            ..ConnectWiseSettings::default()
        };
        let error = ConnectWiseConfig::from_settings(&settings).expect_err("incomplete");
        let text = error.to_string();
        assert!(
            text.contains("connectwise.company_id") && text.contains("connectwise.client_id"),
            "{text}"
        );
        assert!(!text.contains("hunter2"));
    }

    #[test]
    fn backoff_grows_from_the_base_delay_and_stays_bounded() {
        let policy = RetryPolicy {
            attempt_timeout: Duration::from_secs(1),
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        let backoff = policy.backoff();
        assert_eq!(backoff.ceiling(0), Duration::from_millis(100));
        assert_eq!(backoff.ceiling(9), Duration::from_secs(1));
        assert_eq!(backoff.max_attempts, 10);
        assert!((0..100).all(|_| backoff.delay(9) <= Duration::from_secs(1)));
    }
}
