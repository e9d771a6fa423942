//! A ConnectWise Manage fake on `wiremock`, with the real API's field names, headers, paging and
//! error bodies (see `integrations.md`'s ConnectWise section):
//!
//! - checks Basic auth (`companyId+publicKey:privateKey`) and `clientId` on every API call
//!   (401 with ConnectWise's error body otherwise);
//! - serves companies in navigable pages with `Link` headers, honouring `conditions`
//!   (`lastUpdated > [ts]`, `company/id=N`, `deletedFlag=false`), and configurations;
//! - serves service tickets (`GET /service/tickets/{id}`: `summary`, `company`, `board`,
//!   `status`, `closedFlag`; 404 for unknown ones), board statuses with `closedStatus`
//!   (`GET /service/boards/{id}/statuses[/{statusId}]`), and records ticket notes
//!   (`POST /service/tickets/{id}/notes`, checked as ConnectWise checks them: `text` required and
//!   at least one of the three flags true; 201 with the created note);
//! - fails on demand: chosen list pages once with chosen statuses, the notes endpoint for the
//!   next N calls or until told otherwise, or the whole site (a status, or no answer at all).
//!
//! `codebase` discovery (`/login/companyinfo/{companyId}`) needs no auth, as on the real site.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Value, json};
use ttscm_runtime::Settings;
use ttscm_runtime::settings::ConnectWiseSettings;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The company id the fake accepts in the login.
pub const COMPANY_ID: &str = "ttscm_test";
/// The public key the fake accepts.
pub const PUBLIC_KEY: &str = "pub1234";
/// The private key the fake accepts.
pub const PRIVATE_KEY: &str = "priv5678";
/// The integrator client id the fake accepts.
pub const CLIENT_ID: &str = "6d1b2c3a-0000-4000-8000-000000000001";
/// The codebase the fake serves under.
pub const CODEBASE: &str = "v4_6_release/";

/// How long a call waits when the site [`FakeState::hang`]s: beyond every client timeout.
const HANG: Duration = Duration::from_secs(30);

/// A note as it was POSTed.
#[derive(Debug, Clone, PartialEq)]
pub struct PostedNote {
    /// The ticket of the path.
    pub ticket_id: i64,
    /// The request body as sent.
    pub body: Value,
}

/// How the notes endpoint fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotesFailure {
    /// The status answered.
    pub status: u16,
    /// Calls left to fail (`None`: until cleared).
    pub remaining: Option<u32>,
}

/// What the fake holds; tests change it through [`ConnectWiseFake::with`].
#[derive(Default)]
pub struct FakeState {
    /// Company records as ConnectWise sends them.
    pub companies: Vec<Value>,
    /// Configurations by ConnectWise company id.
    pub configurations: HashMap<i64, Vec<Value>>,
    /// Service tickets by id, as ConnectWise sends them (see [`ticket`]).
    pub tickets: HashMap<i64, Value>,
    /// Statuses by board id (see [`board_status`]).
    pub board_statuses: HashMap<i64, Vec<Value>>,
    /// The notes POSTed (and accepted), in order.
    pub notes: Vec<PostedNote>,
    /// When set, the notes endpoint answers this status (ConnectWise's error body).
    pub notes_failure: Option<NotesFailure>,
    /// Per list page number: statuses to answer (once each) before serving the page.
    pub failures: HashMap<u64, VecDeque<u16>>,
    /// When set, every API call answers this status.
    pub down: Option<u16>,
    /// When true, every API call answers only after 30 s (an unreachable site, as a client
    /// with a timeout sees it).
    pub hang: bool,
    /// `conditions` of every company list call, in order.
    pub conditions_seen: Vec<Option<String>>,
}

/// A running fake; stopped on drop.
pub struct ConnectWiseFake {
    /// The wiremock server.
    pub server: MockServer,
    /// Its state.
    pub state: Arc<Mutex<FakeState>>,
}

/// A company record with real field names; optional fields left out now and then, as
/// ConnectWise omits nulls.
pub fn company(id: i64, last_updated: &str) -> Value {
    let mut record = json!({
        "id": id,
        "identifier": format!("Company{id:05}"),
        "name": format!("Company {id:05} Ltd"),
        "status": {"id": 1, "name": "Active", "_info": {"status_href": "https://x/apis/3.0/company/companies/statuses/1"}},
        "types": [{"id": 1, "name": "Client", "_info": {"type_href": "https://x/apis/3.0/company/companies/types/1"}}],
        "addressLine1": "1 Main St",
        "city": "Tampa",
        "phoneNumber": "8135550100",
        "deletedFlag": false,
        "leadFlag": false,
        "isVendorFlag": false,
        "customFields": [],
        "_info": {
            "lastUpdated": last_updated,
            "updatedBy": "api",
            "dateEntered": "2020-01-01T00:00:00Z",
            "enteredBy": "api",
            "configurations_href": format!("https://x/apis/3.0/company/configurations?conditions=company/id={id}"),
        },
    });
    if id % 3 == 0 {
        record["website"] = json!(format!("https://company{id}.example"));
    }
    if id % 7 == 0 {
        // Empty strings do appear.
        record["addressLine1"] = json!("");
    }
    record
}

/// A service ticket record with real field names: `id`, `summary`, `board`, `status`,
/// `company {id,identifier,name}`, `closedFlag`, and some of the rest (`priority`, `contact`,
/// `_info`); `closedDate` only when closed (nulls are omitted).
pub fn ticket(id: i64, cw_company_id: i64, board_id: i64, status_id: i64, closed_flag: bool) -> Value {
    let mut record = json!({
        "id": id,
        "summary": format!("Ticket {id}: printer offline"),
        "recordType": "ServiceTicket",
        "board": {"id": board_id, "name": format!("Board {board_id}"), "_info": {"board_href": format!("https://x/apis/3.0/service/boards/{board_id}")}},
        "status": {"id": status_id, "name": format!("Status {status_id}"), "_info": {"status_href": format!("https://x/apis/3.0/service/boards/{board_id}/statuses/{status_id}")}},
        "company": {"id": cw_company_id, "identifier": format!("Company{cw_company_id:05}"), "name": format!("Company {cw_company_id:05} Ltd"), "_info": {"company_href": format!("https://x/apis/3.0/company/companies/{cw_company_id}")}},
        "contact": {"id": 7, "name": "Pat Doe"},
        "priority": {"id": 4, "name": "Priority 3 - Normal Response", "sort": 6},
        "owner": {"id": 12, "identifier": "tech1", "name": "Tech One"},
        "closedFlag": closed_flag,
        "_info": {"lastUpdated": "2025-06-01T12:00:00Z", "updatedBy": "tech1", "dateEntered": "2025-06-01T09:00:00Z", "enteredBy": "tech1"},
    });
    if closed_flag {
        record["closedDate"] = json!("2025-06-02T10:00:00Z");
        record["closedBy"] = json!("tech1");
    }
    record
}

/// A board status record: `id`, `name`, `board`, `closedStatus` and a few of the rest.
pub fn board_status(board_id: i64, status_id: i64, name: &str, closed_status: bool) -> Value {
    json!({
        "id": status_id,
        "name": name,
        "board": {"id": board_id, "name": format!("Board {board_id}")},
        "sortOrder": status_id,
        "displayOnBoard": true,
        "inactive": false,
        "closedStatus": closed_status,
        "timeEntryNotAllowed": false,
        "defaultFlag": false,
        "escalationStatus": "NotResponded",
        "_info": {"lastUpdated": "2024-01-01T00:00:00Z", "updatedBy": "admin"},
    })
}

/// The Basic auth value the fake accepts.
pub fn expected_auth() -> String {
    use base64::Engine;
    let login = format!("{COMPANY_ID}+{PUBLIC_KEY}:{PRIVATE_KEY}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(login)
    )
}

/// A site where nothing listens (a free loopback port): connections are refused.
pub fn unreachable_site() -> String {
    format!("http://127.0.0.1:{}", crate::free_port())
}

/// ConnectWise settings logging in to `site` with the fake's keys (codebase set, so no
/// discovery call).
pub fn settings_for(site: &str) -> ConnectWiseSettings {
    ConnectWiseSettings {
        site: Some(site.to_owned()),
        codebase: Some(CODEBASE.into()),
        company_id: Some(COMPANY_ID.into()),
        public_key: Some(PUBLIC_KEY.into()),
        private_key: Some(SecretString::from(PRIVATE_KEY)),
        client_id: Some(CLIENT_ID.into()),
        ..ConnectWiseSettings::default()
    }
}

impl ConnectWiseFake {
    /// A fake serving `companies` (and no tickets yet).
    pub async fn start(companies: Vec<Value>) -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(FakeState {
            companies,
            ..FakeState::default()
        }));
        Mock::given(method("GET"))
            .and(path_regex(r"^/login/companyinfo/[^/]+$"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "CompanyName": "Test MSP", "Codebase": CODEBASE, "VersionCode": "v2025.1",
                "VersionNumber": "v4.6.1", "CompanyID": COMPANY_ID, "IsCloud": false
            })))
            .mount(&server)
            .await;
        Mock::given(path_regex(format!("^/{CODEBASE}apis/3.0/")))
            .respond_with(Site {
                state: state.clone(),
                origin: server.uri(),
            })
            .mount(&server)
            .await;
        Self { server, state }
    }

    /// The fake's base URL (give it as `connectwise.site`).
    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// ConnectWise settings for this fake (see [`settings_for`]).
    pub fn connectwise_settings(&self) -> ConnectWiseSettings {
        settings_for(&self.uri())
    }

    /// Fills `settings.connectwise` so TTSCM talks to this fake (keeps its other fields, such
    /// as the sync interval and the ticket cache time).
    pub fn configure(&self, settings: &mut Settings) {
        let fake = self.connectwise_settings();
        let connectwise = &mut settings.connectwise;
        connectwise.site = fake.site;
        connectwise.codebase = fake.codebase;
        connectwise.company_id = fake.company_id;
        connectwise.public_key = fake.public_key;
        connectwise.private_key = fake.private_key;
        connectwise.client_id = fake.client_id;
    }

    /// Changes the state.
    pub fn with<T>(&self, change: impl FnOnce(&mut FakeState) -> T) -> T {
        change(&mut self.state.lock().expect("fake state lock"))
    }

    /// Adds (or replaces) a ticket of ConnectWise company `cw_company_id` (see [`ticket`]).
    pub fn add_ticket(&self, id: i64, cw_company_id: i64, board_id: i64, status_id: i64, closed_flag: bool) {
        self.with(|s| {
            s.tickets
                .insert(id, ticket(id, cw_company_id, board_id, status_id, closed_flag))
        });
    }

    /// Adds (or replaces) a status of a board.
    pub fn add_board_status(&self, board_id: i64, status_id: i64, name: &str, closed_status: bool) {
        self.with(|s| {
            let statuses = s.board_statuses.entry(board_id).or_default();
            statuses.retain(|status| status["id"] != status_id);
            statuses.push(board_status(board_id, status_id, name, closed_status));
        });
    }

    /// The notes POSTed and accepted so far.
    pub fn notes(&self) -> Vec<PostedNote> {
        self.with(|s| s.notes.clone())
    }

    /// Makes the notes endpoint answer `status` for the next `calls` calls (`None`: until
    /// [`ConnectWiseFake::notes_work`]).
    pub fn fail_notes(&self, status: u16, calls: Option<u32>) {
        self.with(|s| {
            s.notes_failure = Some(NotesFailure {
                status,
                remaining: calls,
            })
        });
    }

    /// Makes the notes endpoint work again.
    pub fn notes_work(&self) {
        self.with(|s| s.notes_failure = None);
    }

    /// Makes every API call answer `status` (`None`: serve again).
    pub fn set_down(&self, status: Option<u16>) {
        self.with(|s| s.down = status);
    }

    /// Makes every API call hang for 30 s (`false`: answer again).
    pub fn set_hanging(&self, hang: bool) {
        self.with(|s| s.hang = hang);
    }

    /// The API calls received so far (discovery excluded).
    pub async fn list_requests(&self) -> Vec<Request> {
        self.requests_to("/apis/3.0/").await
    }

    /// The calls received so far whose path contains `fragment`, e.g. `/service/tickets/`.
    pub async fn requests_to(&self, fragment: &str) -> Vec<Request> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path().contains(fragment))
            .collect()
    }
}

/// Answers every call under `/{codebase}apis/3.0/`.
struct Site {
    state: Arc<Mutex<FakeState>>,
    /// The server's own `http://127.0.0.1:port` (requests arrive with a path only).
    origin: String,
}

fn query(request: &Request, key: &str) -> Option<String> {
    request
        .url
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// Whether `record` matches the `conditions` the fake understands.
fn matches(record: &Value, conditions: Option<&str>) -> bool {
    let Some(conditions) = conditions else { return true };
    conditions.split(" AND ").all(|condition| {
        let condition = condition.trim();
        if let Some(ts) = condition
            .strip_prefix("lastUpdated > [")
            .and_then(|r| r.strip_suffix(']'))
        {
            record["_info"]["lastUpdated"]
                .as_str()
                .is_some_and(|updated| updated > ts)
        } else if let Some(id) = condition.strip_prefix("company/id=") {
            record["company"]["id"].as_i64().map(|n| n.to_string()).as_deref() == Some(id)
        } else if condition == "deletedFlag=false" {
            record["deletedFlag"] != json!(true)
        } else {
            panic!("the fake does not understand the condition {condition}")
        }
    })
}

/// ConnectWise's error body: `{code, message, errors}`.
fn error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({"code": code, "message": message, "errors": null}))
}

fn not_found(what: &str) -> ResponseTemplate {
    error(404, "NotFound", &format!("{what} not found"))
}

impl Respond for Site {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        if header("clientId").as_deref() != Some(CLIENT_ID) {
            return error(401, "Unauthorized", "clientId missing or not registered");
        }
        if header("authorization") != Some(expected_auth()) {
            return error(401, "Unauthorized", "Password Expired or Invalid");
        }
        let mut state = self.state.lock().expect("fake state lock");
        if state.hang {
            return ResponseTemplate::new(503).set_delay(HANG);
        }
        if let Some(status) = state.down {
            return error(status, "Down", "The fake is down");
        }
        let path = request
            .url
            .path()
            .split_once("/apis/3.0/")
            .map(|(_, rest)| rest.to_owned())
            .unwrap_or_default();
        let segments: Vec<&str> = path.split('/').collect();
        let id = |i: usize| segments.get(i).and_then(|s| s.parse::<i64>().ok());
        let get = request.method.as_str() == "GET";
        match segments.as_slice() {
            ["company", "companies"] if get => self.list(request, &mut state, false),
            ["company", "configurations"] if get => self.list(request, &mut state, true),
            ["service", "tickets", _] if get => match id(2).and_then(|id| state.tickets.get(&id)) {
                Some(record) => ResponseTemplate::new(200).set_body_json(record),
                None => not_found("Ticket"),
            },
            ["service", "tickets", _, "notes"] if request.method.as_str() == "POST" => {
                post_note(request, &mut state, id(2))
            }
            ["service", "boards", _, "statuses"] if get => {
                match id(2).and_then(|board| state.board_statuses.get(&board)) {
                    Some(statuses) => ResponseTemplate::new(200)
                        .set_body_json(Value::Array(statuses.clone()))
                        .insert_header("Link", self.single_page_link(request)),
                    None => not_found("Board"),
                }
            }
            ["service", "boards", _, "statuses", _] if get => {
                let found = id(2)
                    .and_then(|board| state.board_statuses.get(&board))
                    .and_then(|statuses| statuses.iter().find(|s| s["id"].as_i64() == id(4)));
                match found {
                    Some(status) => ResponseTemplate::new(200).set_body_json(status),
                    None => not_found("Status"),
                }
            }
            _ => not_found("Resource"),
        }
    }
}

/// `POST /service/tickets/{id}/notes`, checked as ConnectWise does.
fn post_note(request: &Request, state: &mut FakeState, ticket_id: Option<i64>) -> ResponseTemplate {
    if let Some(failure) = state.notes_failure.as_mut() {
        let status = failure.status;
        match &mut failure.remaining {
            Some(0) => state.notes_failure = None,
            Some(left) => {
                *left -= 1;
                if *left == 0 {
                    state.notes_failure = None;
                }
                return error(status, "InternalServerError", "An error occurred");
            }
            None => return error(status, "InternalServerError", "An error occurred"),
        }
    }
    let Some(ticket_id) = ticket_id.filter(|id| state.tickets.contains_key(id)) else {
        return not_found("Ticket");
    };
    let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
        return error(400, "InvalidObject", "The request body is not JSON");
    };
    let invalid = |field: &str, message: &str| {
        ResponseTemplate::new(400).set_body_json(json!({
            "code": "InvalidObject", "message": "ticketNote object is invalid",
            "errors": [{"code": "InvalidField", "message": message, "resource": "ticketNote", "field": field}],
        }))
    };
    if body["text"].as_str().is_none_or(|t| t.trim().is_empty()) {
        return invalid("text", "The text field is required.");
    }
    let flagged = ["detailDescriptionFlag", "internalAnalysisFlag", "resolutionFlag"]
        .iter()
        .any(|flag| body[*flag] == json!(true));
    if !flagged {
        return invalid(
            "detailDescriptionFlag",
            "At least one of detailDescriptionFlag, internalAnalysisFlag or resolutionFlag must be true.",
        );
    }
    state.notes.push(PostedNote {
        ticket_id,
        body: body.clone(),
    });
    let note_id = state.notes.len() as i64;
    ResponseTemplate::new(201).set_body_json(json!({
        "id": note_id,
        "ticketId": ticket_id,
        "text": body["text"],
        "detailDescriptionFlag": body["detailDescriptionFlag"].as_bool().unwrap_or(false),
        "internalAnalysisFlag": body["internalAnalysisFlag"].as_bool().unwrap_or(false),
        "resolutionFlag": body["resolutionFlag"].as_bool().unwrap_or(false),
        "dateCreated": "2025-06-01T12:00:00Z",
        "createdBy": COMPANY_ID,
        "_info": {"lastUpdated": "2025-06-01T12:00:00Z", "updatedBy": COMPANY_ID},
    }))
}

impl Site {
    /// `url` of this request on page `n` (the fake's own origin).
    fn page_link(&self, request: &Request, n: u64) -> String {
        let mut url: url::Url = format!("{}{}", self.origin, request.url.path())
            .parse()
            .expect("the fake's own URL parses");
        let pairs: Vec<(String, String)> = request
            .url
            .query_pairs()
            .filter(|(k, _)| k != "page")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(pairs)
            .append_pair("page", &n.to_string());
        url.to_string()
    }

    /// The `Link` header of a one-page listing.
    fn single_page_link(&self, request: &Request) -> String {
        format!(
            "<{}>; rel=\"first\", <{}>; rel=\"last\"",
            self.page_link(request, 1),
            self.page_link(request, 1)
        )
    }

    /// A navigable page of companies or configurations.
    fn list(&self, request: &Request, state: &mut FakeState, configurations: bool) -> ResponseTemplate {
        let page: u64 = query(request, "page")
            .and_then(|p| p.parse().ok())
            .unwrap_or(1)
            .max(1);
        let size: usize = query(request, "pageSize")
            .and_then(|p| p.parse().ok())
            .unwrap_or(25)
            .clamp(1, 1000);
        let conditions = query(request, "conditions");
        if let Some(status) = state.failures.get_mut(&page).and_then(VecDeque::pop_front) {
            return match status {
                429 => ResponseTemplate::new(429)
                    .set_body_json(
                        json!({"error": "TooManyRequests", "message": "Rate limit exceeded", "errors": null}),
                    )
                    .insert_header("Retry-After", "1"),
                other => error(other, "InternalServerError", "Something broke"),
            };
        }
        if !configurations {
            state.conditions_seen.push(conditions.clone());
        }
        let all: Vec<Value> = if configurations {
            state.configurations.values().flatten().cloned().collect()
        } else {
            state.companies.clone()
        };
        let mut all: Vec<Value> = all
            .into_iter()
            .filter(|r| matches(r, conditions.as_deref()))
            .collect();
        all.sort_by_key(|r| r["id"].as_i64());
        let pages = all.len().div_ceil(size).max(1) as u64;
        let start = (page as usize - 1).saturating_mul(size).min(all.len());
        let end = (start + size).min(all.len());
        let mut links = vec![format!("<{}>; rel=\"first\"", self.page_link(request, 1))];
        if page > 1 {
            links.push(format!("<{}>; rel=\"prev\"", self.page_link(request, page - 1)));
        }
        if page < pages {
            links.push(format!("<{}>; rel=\"next\"", self.page_link(request, page + 1)));
        }
        links.push(format!("<{}>; rel=\"last\"", self.page_link(request, pages)));
        ResponseTemplate::new(200)
            .set_body_json(Value::Array(all[start..end].to_vec()))
            .insert_header("Link", links.join(", "))
    }
}
