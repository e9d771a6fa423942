//! A ConnectWise Manage fake on `wiremock`: checks Basic auth and `clientId` on every call,
//! serves companies with real field names (nulls omitted; nested `status`, `types`, `_info`)
//! in navigable pages with `Link` headers, honours `conditions` (`lastUpdated > [ts]`,
//! `company/id=N`), serves configurations, and fails chosen pages once with chosen statuses.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

// The login values the fake accepts: company id, public and private key, client id.
pub const COMPANY_ID: &str = "ttscm_test";
pub const PUBLIC_KEY: &str = "pub1234";
pub const PRIVATE_KEY: &str = "priv5678";
pub const CLIENT_ID: &str = "6d1b2c3a-0000-4000-8000-000000000001";

/// What the fake holds; tests change it between syncs.
#[derive(Default)]
pub struct FakeState {
    /// Company records as ConnectWise sends them.
    pub companies: Vec<Value>,
    /// Configurations by ConnectWise company id.
    pub configurations: HashMap<i64, Vec<Value>>,
    /// Per page number: statuses to answer (once each) before serving the page.
    pub failures: HashMap<u64, VecDeque<u16>>,
    /// When set, every call answers this status.
    pub down: Option<u16>,
    /// `conditions` of every list call, in order.
    pub conditions_seen: Vec<Option<String>>,
}

/// A running fake.
pub struct ConnectWiseFake {
    /// The wiremock server.
    pub server: MockServer,
    /// Its state.
    pub state: Arc<Mutex<FakeState>>,
}

/// The codebase the fake serves under.
pub const CODEBASE: &str = "v4_6_release/";

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

impl ConnectWiseFake {
    /// A fake serving `companies`.
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
        for (list, configurations) in [("companies", false), ("configurations", true)] {
            Mock::given(method("GET"))
                .and(path(format!("/{CODEBASE}apis/3.0/company/{list}")))
                .respond_with(Lister {
                    state: state.clone(),
                    origin: server.uri(),
                    configurations,
                })
                .mount(&server)
                .await;
        }
        Self { server, state }
    }

    /// The fake's base URL (give it as `connectwise.site`).
    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// Changes the state.
    pub fn with<T>(&self, change: impl FnOnce(&mut FakeState) -> T) -> T {
        change(&mut self.state.lock().expect("fake state lock"))
    }

    /// The list calls received so far.
    pub async fn list_requests(&self) -> Vec<Request> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path().contains("/apis/3.0/"))
            .collect()
    }
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

struct Lister {
    state: Arc<Mutex<FakeState>>,
    /// The server's own `http://127.0.0.1:port` (requests arrive with a path only).
    origin: String,
    configurations: bool,
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

fn error(status: u16, body: Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(body)
}

impl Respond for Lister {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        if header("clientId").as_deref() != Some(CLIENT_ID) {
            return error(
                401,
                json!({"code": "Unauthorized", "message": "clientId missing or not registered", "errors": null}),
            );
        }
        if header("authorization") != Some(expected_auth()) {
            return error(
                401,
                json!({"code": "Unauthorized", "message": "Password Expired or Invalid", "errors": null}),
            );
        }
        let page: u64 = query(request, "page").and_then(|p| p.parse().ok()).unwrap_or(1);
        let size: usize = query(request, "pageSize")
            .and_then(|p| p.parse().ok())
            .unwrap_or(25)
            .min(1000);
        let conditions = query(request, "conditions");
        let mut state = self.state.lock().expect("fake state lock");
        if let Some(status) = state.down {
            return error(
                status,
                json!({"code": "Down", "message": "The fake is down", "errors": null}),
            );
        }
        if let Some(status) = state.failures.get_mut(&page).and_then(VecDeque::pop_front) {
            return match status {
                429 => error(
                    429,
                    json!({"error": "TooManyRequests", "message": "Rate limit exceeded", "errors": null}),
                )
                .insert_header("Retry-After", "1"),
                other => error(
                    other,
                    json!({"code": "InternalServerError", "message": "Something broke", "errors": null}),
                ),
            };
        }
        if !self.configurations {
            state.conditions_seen.push(conditions.clone());
        }
        let all: Vec<Value> = if self.configurations {
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
        let link = |n: u64| {
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
        };
        let mut links = vec![format!("<{}>; rel=\"first\"", link(1))];
        if page > 1 {
            links.push(format!("<{}>; rel=\"prev\"", link(page - 1)));
        }
        if page < pages {
            links.push(format!("<{}>; rel=\"next\"", link(page + 1)));
        }
        links.push(format!("<{}>; rel=\"last\"", link(pages)));
        ResponseTemplate::new(200)
            .set_body_json(Value::Array(all[start..end].to_vec()))
            .insert_header("Link", links.join(", "))
    }
}
