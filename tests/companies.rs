//! Companies end to end, in both modes: the spec's list (envelope, pagination edges, literal
//! case-insensitive search, 400s with paths) and get, permissions, and the manual companies API
//! (create, rename, delete; synced companies are read-only), the sync routes, and configurations
//! fetched live from a small ConnectWise stand-in (the full client and sync are tested against a
//! wiremock fake in `services/company-sync/tests`).

use crate::support;

use serde_json::{Value, json};
use support::{Mode, TestApp, error_paths, spawn_app, spawn_app_with, text};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const COMPANIES: &str = "/v1/company/companies";

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Writes companies straight into company-sync's collection (tests only): manual ones by name,
/// or synced ones when a ConnectWise id is given.
async fn insert_companies(app: &TestApp, companies: &[(&str, Option<(i64, &str)>)]) -> Vec<String> {
    let now = ttscm_runtime::clock::now_iso();
    let mut ids = Vec::new();
    let documents = companies
        .iter()
        .map(|(name, cw)| {
            let id = ttscm_runtime::ids::new_id();
            ids.push(id.clone());
            let document = match cw {
                None => json!({
                    "id": id, "name": name, "nameKey": name.to_lowercase(), "cwKey": format!("manual:{id}"),
                    "active": true, "source": "manual", "createdAt": now, "updatedAt": now,
                }),
                Some((cw_id, identifier)) => json!({
                    "id": id, "name": name, "nameKey": name.to_lowercase(), "cwKey": format!("cw:{cw_id}"),
                    "cwCompanyId": cw_id, "cwIdentifier": identifier,
                    "active": true, "source": "connectwise", "createdAt": now, "updatedAt": now,
                }),
            };
            let Value::Object(document) = document else {
                unreachable!("an object literal")
            };
            document
        })
        .collect();
    app.store()
        .await
        .insert_many("companies", documents)
        .await
        .expect("companies inserted");
    ids
}

fn names(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .expect("data is a list")
        .iter()
        .map(|c| c["name"].as_str().expect("name").to_owned())
        .collect()
}

async fn the_list_pages_in_the_spec_envelope_with_every_edge(mode: Mode) {
    let app = spawn_app(mode).await;
    let token = app.admin_token.clone();
    for name in ["Delta", "alpha", "Charlie", "bravo", "Echo"] {
        let (status, body) = app.post(COMPANIES, &token, &json!({"name": name})).await;
        assert_eq!(status, 201, "{body}");
    }

    let (status, first) = app.get(&format!("{COMPANIES}?page=1&rpp=2"), Some(&token)).await;
    assert_eq!(status, 200, "{first}");
    let keys: Vec<&String> = first.as_object().expect("object").keys().collect();
    assert_eq!(
        keys.len(),
        5,
        "status, message, data, pagination, successful: {keys:?}"
    );
    assert_eq!(first["status"], 200);
    assert_eq!(first["message"], "Companies Fetched Successfully!");
    assert_eq!(first["successful"], true);
    assert_eq!(names(&first), ["alpha", "bravo"]);
    assert_eq!(
        first["pagination"],
        json!({"previousPage": null, "currentPage": 1, "nextPage": 2, "totalPages": 3, "totalRecords": 5, "listedRecords": 2})
    );
    let company = &first["data"][0];
    for key in ["id", "name", "cw_CompanyId", "cw_Identifier"] {
        assert!(company.get(key).is_some(), "{key} missing in {company}");
    }

    let (_, last) = app.get(&format!("{COMPANIES}?page=3&rpp=2"), Some(&token)).await;
    assert_eq!(names(&last), ["Echo"]);
    assert_eq!(
        last["pagination"],
        json!({"previousPage": 2, "currentPage": 3, "nextPage": null, "totalPages": 3, "totalRecords": 5, "listedRecords": 1})
    );

    let (status, past) = app.get(&format!("{COMPANIES}?page=7&rpp=2"), Some(&token)).await;
    assert_eq!(status, 200, "{past}");
    assert_eq!(past["data"], json!([]));
    assert_eq!(
        past["pagination"],
        json!({"previousPage": 3, "currentPage": 7, "nextPage": null, "totalPages": 3, "totalRecords": 5, "listedRecords": 0})
    );

    // Defaults are page 1 with 30 records; rpp above 100 is capped at 100.
    let many: Vec<String> = (0..120).map(|i| format!("Bulk {i:03}")).collect();
    let many: Vec<(&str, Option<(i64, &str)>)> = many.iter().map(|n| (n.as_str(), None)).collect();
    insert_companies(&app, &many).await;
    // Written behind the service's back (as another replica would): visible within a second.
    let defaults = ttscm_testkit::eventually(std::time::Duration::from_secs(5), || async {
        let (_, page) = app.get(COMPANIES, Some(&token)).await;
        (page["pagination"]["totalRecords"] == 125).then_some(page)
    })
    .await
    .expect("the new companies show up");
    assert_eq!(
        defaults["pagination"],
        json!({"previousPage": null, "currentPage": 1, "nextPage": 2, "totalPages": 5, "totalRecords": 125, "listedRecords": 30})
    );
    let (status, capped) = app
        .get(&format!("{COMPANIES}?rpp=1000&page=2"), Some(&token))
        .await;
    assert_eq!(status, 200, "{capped}");
    assert_eq!(
        capped["pagination"],
        json!({"previousPage": 1, "currentPage": 2, "nextPage": null, "totalPages": 2, "totalRecords": 125, "listedRecords": 25})
    );

    // The order is stable across pages: every company exactly once, by name.
    let mut seen = Vec::new();
    for page in 1..=13 {
        let (_, body) = app
            .get(&format!("{COMPANIES}?page={page}&rpp=10"), Some(&token))
            .await;
        seen.extend(names(&body));
    }
    let mut sorted = seen.clone();
    sorted.sort_by_key(|n| n.to_lowercase());
    assert_eq!(seen.len(), 125);
    assert_eq!(seen, sorted);
}

async fn search_ignores_case_and_takes_regex_characters_literally(mode: Mode) {
    let app = spawn_app(mode).await;
    let token = app.admin_token.clone();
    insert_companies(
        &app,
        &[
            ("A.B* Holdings", None),
            ("AXBBB Holdings", None),
            ("Paren (Group)", None),
            ("Other", None),
            ("Totally Different", Some((12345, "AcmeCorp"))),
        ],
    )
    .await;
    let search = |text: &str| format!("{COMPANIES}?search={}", encode(text));

    let (status, body) = app.get(&search("a.b*"), Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body), ["A.B* Holdings"]);
    assert_eq!(body["pagination"]["totalRecords"], 1);

    let (_, body) = app.get(&search("("), Some(&token)).await;
    assert_eq!(names(&body), ["Paren (Group)"]);

    let (_, body) = app.get(&search("HOLDINGS"), Some(&token)).await;
    assert_eq!(names(&body), ["A.B* Holdings", "AXBBB Holdings"]);

    let (_, body) = app.get(&search("acmecorp"), Some(&token)).await;
    assert_eq!(names(&body), ["Totally Different"]);
    assert_eq!(body["data"][0]["cw_CompanyId"], 12345);
    assert_eq!(body["data"][0]["cw_Identifier"], "AcmeCorp");

    let (_, body) = app.get(&search(".*"), Some(&token)).await;
    assert_eq!(body["data"], json!([]));
    assert_eq!(
        body["pagination"],
        json!({"previousPage": null, "currentPage": 1, "nextPage": null, "totalPages": 0, "totalRecords": 0, "listedRecords": 0})
    );
}

async fn bad_paging_parameters_are_refused_with_paths(mode: Mode) {
    let app = spawn_app(mode).await;
    let token = app.admin_token.clone();
    for (query, expected) in [
        ("page=0", vec![json!(["page"])]),
        ("rpp=-1", vec![json!(["rpp"])]),
        ("rpp=abc", vec![json!(["rpp"])]),
        ("page=0&rpp=abc", vec![json!(["page"]), json!(["rpp"])]),
    ] {
        let (status, body) = app.get(&format!("{COMPANIES}?{query}"), Some(&token)).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["successful"], false);
        let paths = error_paths(&body);
        assert_eq!(paths, expected, "{query}");
    }
}

async fn a_company_is_fetched_by_id_and_an_unknown_one_is_404(mode: Mode) {
    let app = spawn_app(mode).await;
    let token = app.admin_token.clone();
    let ids = insert_companies(&app, &[("Acme Corp", Some((12345, "AcmeCorp")))]).await;
    let (status, body) = app.get(&format!("{COMPANIES}/{}", ids[0]), Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "Company Fetched Successfully!");
    assert_eq!(body["data"]["id"], ids[0].as_str());
    assert_eq!(body["data"]["name"], "Acme Corp");
    assert_eq!(body["data"]["cw_CompanyId"], 12345);
    assert_eq!(body["data"]["cw_Identifier"], "AcmeCorp");

    let (status, body) = app.get(&format!("{COMPANIES}/nope"), Some(&token)).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["successful"], false);
}

async fn manual_companies_are_created_renamed_and_deleted(mode: Mode) {
    let app = spawn_app(mode).await;
    let token = app.admin_token.clone();
    let (status, created) = app
        .post(COMPANIES, &token, &json!({"name": "  Manual Co  "}))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["message"], "Company Created Successfully!");
    assert_eq!(created["data"]["name"], "Manual Co");
    assert_eq!(created["data"]["cw_CompanyId"], Value::Null);
    assert_eq!(created["data"]["source"], "manual");
    let id = created["data"]["id"].as_str().expect("id").to_owned();

    for bad in [json!({"name": "  "}), json!({"name": "x".repeat(201)})] {
        let (status, body) = app.post(COMPANIES, &token, &bad).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["errors"][0]["path"], json!(["name"]));
    }
    let (status, body) = app.post(COMPANIES, &token, &json!({"name": 5})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["path"], json!(["name"]));

    let (_, listed) = app.get(&format!("{COMPANIES}?search=manual"), Some(&token)).await;
    assert_eq!(names(&listed), ["Manual Co"]);

    let (status, renamed) = app
        .patch(
            &format!("{COMPANIES}/{id}"),
            &token,
            &json!({"name": "Renamed Co"}),
        )
        .await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["message"], "Company Updated Successfully!");
    assert_eq!(renamed["data"]["name"], "Renamed Co");
    let (_, fetched) = app.get(&format!("{COMPANIES}/{id}"), Some(&token)).await;
    assert_eq!(fetched["data"]["name"], "Renamed Co");
    let (_, found) = app
        .get(&format!("{COMPANIES}?search=renamed"), Some(&token))
        .await;
    assert_eq!(names(&found), ["Renamed Co"]);
    let (_, stale) = app.get(&format!("{COMPANIES}?search=manual"), Some(&token)).await;
    assert_eq!(stale["data"], json!([]), "the list sees the rename at once");

    app.assert_deleted(
        &format!("{COMPANIES}/{id}"),
        &token,
        "Company Deleted Successfully!",
    )
    .await;
    assert_eq!(app.delete_status(&format!("{COMPANIES}/{id}"), &token).await, 404);
    let (status, _) = app
        .patch(&format!("{COMPANIES}/{id}"), &token, &json!({"name": "Ghost"}))
        .await;
    assert_eq!(status, 404);
}

async fn synced_companies_cannot_be_changed_through_the_api(mode: Mode) {
    let app = spawn_app(mode).await;
    let token = app.admin_token.clone();
    let ids = insert_companies(&app, &[("Synced Co", Some((77, "SyncedCo")))]).await;
    let path = format!("{COMPANIES}/{}", ids[0]);
    let (status, body) = app.patch(&path, &token, &json!({"name": "Hijacked"})).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = app.delete(&path, &token).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = app.get(&path, Some(&token)).await;
    assert_eq!((status, &body["data"]["name"]), (200, &json!("Synced Co")));
}

async fn company_routes_need_their_permissions(mode: Mode) {
    let app = spawn_app(mode).await;
    let ids = insert_companies(&app, &[("Guarded Co", None)]).await;
    let one = format!("{COMPANIES}/{}", ids[0]);
    assert_eq!(app.get_status(COMPANIES, None).await, 401);

    let fetch_one = app.token_with(&["company.fetch"]).await;
    assert_eq!(app.get_status(COMPANIES, Some(&fetch_one)).await, 403);
    assert_eq!(app.get_status(&one, Some(&fetch_one)).await, 200);

    let fetch_many = app.token_with(&["company.fetch.many"]).await;
    assert_eq!(app.get_status(COMPANIES, Some(&fetch_many)).await, 200);
    assert_eq!(app.get_status(&one, Some(&fetch_many)).await, 403);
    let body = json!({"name": "Nope"});
    assert_eq!(app.post(COMPANIES, &fetch_many, &body).await.0, 403);
    assert_eq!(app.patch(&one, &fetch_many, &body).await.0, 403);
    assert_eq!(app.delete_status(&one, &fetch_many).await, 403);

    let writer = app
        .token_with(&["company.create", "company.update", "company.delete"])
        .await;
    assert_eq!(app.post(COMPANIES, &writer, &body).await.0, 201);
    assert_eq!(app.patch(&one, &writer, &body).await.0, 200);
    assert_eq!(app.delete_status(&one, &writer).await, 200);
}

/// The client id the stand-in expects.
const CLIENT_ID: &str = "6d1b2c3a-0000-4000-8000-000000000001";

/// A minimal ConnectWise stand-in on a loopback port: three companies; configurations for
/// ConnectWise company 2; a 401 for company 3's configurations; 401 without the `clientId`.
async fn connectwise_stand_in() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let request = String::from_utf8_lossy(&request).to_string();
                let target = request.split(' ').nth(1).unwrap_or_default().to_owned();
                let target = target.replace("%2F", "/").replace("%3D", "=");
                let has_client_id = request
                    .lines()
                    .any(|l| l.to_ascii_lowercase() == format!("clientid: {CLIENT_ID}"));
                let unauthorized = (
                    401,
                    json!({"code": "Unauthorized", "message": "Password Expired or Invalid"}),
                );
                let (status, body) = if !has_client_id {
                    unauthorized
                } else if target.contains("/apis/3.0/company/companies") {
                    (
                        200,
                        json!([
                            {"id": 1, "identifier": "Alpha", "name": "Alpha Inc", "status": {"id": 1, "name": "Active"}, "_info": {"lastUpdated": "2025-01-01T00:00:00Z"}},
                            {"id": 2, "identifier": "Bravo", "name": "Bravo LLC", "_info": {"lastUpdated": "2025-01-01T00:00:00Z"}},
                            {"id": 3, "identifier": "Charlie", "name": "Charlie Co"}
                        ]),
                    )
                } else if target.contains("/apis/3.0/company/configurations")
                    && target.contains("company/id=2&")
                {
                    (
                        200,
                        json!([{"id": 900, "name": "FW-01", "type": {"id": 2, "name": "Firewall"}, "company": {"id": 2, "identifier": "Bravo"}}]),
                    )
                } else if target.contains("/apis/3.0/company/configurations") {
                    unauthorized
                } else {
                    (404, json!({"code": "NotFound", "message": "no such path"}))
                };
                let body = body.to_string();
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://{address}")
}

async fn sync_is_off_without_connectwise_settings(mode: Mode) {
    let app = spawn_app(mode).await;
    let token = app.admin_token.clone();
    let (status, body) = app.get("/v1/company/sync", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"],
        json!({"enabled": false, "last": null, "lastSuccessAt": null})
    );
    let (status, body) = app.post("/v1/company/sync", &token, &json!({})).await;
    assert_eq!(status, 409, "{body}");

    let reader = app.token_with(&["company.fetch", "company.fetch.many"]).await;
    assert_eq!(app.get_status("/v1/company/sync", Some(&reader)).await, 403);
    assert_eq!(app.post("/v1/company/sync", &reader, &json!({})).await.0, 403);

    // Configurations of a company without a ConnectWise id are an empty list.
    let ids = insert_companies(&app, &[("No CW", None)]).await;
    let (status, body) = app
        .get(&format!("{COMPANIES}/{}/configurations", ids[0]), Some(&token))
        .await;
    assert_eq!((status, &body["data"]), (200, &json!([])), "{body}");
}

async fn companies_sync_on_demand_and_configurations_come_live_from_connectwise(mode: Mode) {
    let site = connectwise_stand_in().await;
    let app = spawn_app_with(mode, |settings| {
        settings.connectwise.site = Some(site);
        settings.connectwise.codebase = Some("v4_6_release/".into());
        settings.connectwise.company_id = Some("ttscm_test".into());
        settings.connectwise.public_key = Some("pub".into());
        settings.connectwise.private_key = Some(secrecy::SecretString::from("priv"));
        settings.connectwise.client_id = Some(CLIENT_ID.into());
    })
    .await;
    let token = app.admin_token.clone();

    // The sync at start finishes on its own; an on-demand one then finds nothing new.
    let last = ttscm_testkit::eventually(std::time::Duration::from_secs(10), || async {
        let (_, body) = app.get("/v1/company/sync", Some(&token)).await;
        (!body["data"]["last"].is_null()).then(|| body["data"]["last"].clone())
    })
    .await
    .expect("the start-up sync reports");
    assert_eq!(
        (last["kind"].as_str(), last["created"].as_u64()),
        (Some("full"), Some(3)),
        "{last}"
    );
    let (status, body) = app.post("/v1/company/sync?full=true", &token, &json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["fetched"], 3);
    assert_eq!(body["data"]["created"], 0);
    assert_eq!(body["data"]["error"], Value::Null);
    let (_, status_body) = app.get("/v1/company/sync", Some(&token)).await;
    assert_eq!(status_body["data"]["last"], body["data"]);
    assert_eq!(status_body["data"]["enabled"], true);
    assert_eq!(
        app.post("/v1/company/sync?full=maybe", &token, &json!({}))
            .await
            .0,
        400
    );

    let (_, list) = app.get(&format!("{COMPANIES}?search=bravo"), Some(&token)).await;
    assert_eq!(names(&list), ["Bravo LLC"]);
    let bravo = list["data"][0].clone();
    assert_eq!(
        (&bravo["cw_CompanyId"], &bravo["cw_Identifier"]),
        (&json!(2), &json!("Bravo"))
    );
    let bravo_id = bravo["id"].as_str().expect("id");
    let (status, body) = app
        .patch(&format!("{COMPANIES}/{bravo_id}"), &token, &json!({"name": "X"}))
        .await;
    assert_eq!(status, 409, "{body}");

    let path = format!("{COMPANIES}/{bravo_id}/configurations");
    let (status, body) = app.get(&path, Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "Company Configurations Fetched Successfully!");
    assert_eq!(body["data"][0]["name"], "FW-01");
    assert_eq!(body["data"][0]["type"]["name"], "Firewall");

    let fetch_only = app.token_with(&["company.fetch"]).await;
    assert_eq!(app.get_status(&path, Some(&fetch_only)).await, 403);

    let (_, charlie) = app
        .get(&format!("{COMPANIES}?search=charlie"), Some(&token))
        .await;
    let charlie_id = charlie["data"][0]["id"].as_str().expect("id");
    let (status, body) = app
        .get(&format!("{COMPANIES}/{charlie_id}/configurations"), Some(&token))
        .await;
    assert_eq!(status, 502, "{body}");
    assert!(text(&body, "/message").contains("ConnectWise"), "{body}");
    app.assert_get(&format!("{COMPANIES}/nope/configurations"), &token, 404)
        .await;
}

async fn a_company_with_credentials_cannot_be_deleted(mode: Mode) {
    let app = spawn_app(mode).await;
    let token = app.admin_token.clone();
    let (status, created) = app
        .post("/v1/company/companies", &token, &json!({"name": "Keep Co"}))
        .await;
    assert_eq!(status, 201, "{created}");
    let company = created["data"]["id"].as_str().expect("id").to_owned();
    let type_id = app.create_aws_type(None).await;
    let credential = app.create_aws_credential(&type_id, &company, "kept").await;
    let (status, body) = app
        .delete(&format!("/v1/company/companies/{company}"), &token)
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(text(&body, "/message").contains("1 credential"), "{body}");
    assert_eq!(
        app.delete_status(&format!("/v1/credential/credentials/{credential}"), &token)
            .await,
        200
    );
    assert_eq!(
        app.delete_status(&format!("/v1/company/companies/{company}"), &token)
            .await,
        200
    );
}

both_modes!(
    a_company_with_credentials_cannot_be_deleted,
    sync_is_off_without_connectwise_settings,
    companies_sync_on_demand_and_configurations_come_live_from_connectwise,
    the_list_pages_in_the_spec_envelope_with_every_edge,
    search_ignores_case_and_takes_regex_characters_literally,
    bad_paging_parameters_are_refused_with_paths,
    a_company_is_fetched_by_id_and_an_unknown_one_is_404,
    manual_companies_are_created_renamed_and_deleted,
    synced_companies_cannot_be_changed_through_the_api,
    company_routes_need_their_permissions,
);
