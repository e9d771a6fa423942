//! Lists that scale (issue 20), in both modes: a company with 10,000 credentials and a type used
//! by 5,000 companies list whole and in pages (`page`/`rpp`, the companies' pagination object);
//! a whole list beyond the configured cap is a 400 naming `page`; an answer larger than the bus
//! carries is a clear 413, never a 504.

use crate::support;

use serde_json::{Value, json};
use support::{Mode, TestApp, spawn_app_with};
use ttscm_runtime::store::Document;

const CREDS: &str = "/v1/credential/credentials";

/// `count` copies of the stored credential `template`, each with a new id and name and the
/// company `company(i)`, inserted straight into the store (the API would take minutes).
async fn clone_credential(
    app: &TestApp,
    template: &str,
    count: usize,
    company: impl Fn(usize) -> String,
    note: &str,
) {
    let store = app.store().await;
    let original = store
        .get("credentials", template)
        .await
        .expect("read")
        .expect("stored");
    let mut batch: Vec<Document> = Vec::new();
    for i in 0..count {
        let mut copy = original.clone();
        copy.insert("id".into(), json!(ttscm_runtime::ids::new_id()));
        copy.insert("name".into(), json!(format!("Copy {i:05}")));
        copy.insert("companyId".into(), json!(company(i)));
        if !note.is_empty()
            && let Some(Value::Array(values)) = copy.get_mut("values")
        {
            values.push(json!({"id": ttscm_runtime::ids::new_id(), "fieldId": "notes", "value": note, "sealed": false}));
        }
        batch.push(copy);
        if batch.len() == 1000 {
            store
                .insert_many("credentials", std::mem::take(&mut batch))
                .await
                .expect("inserted");
        }
    }
    if !batch.is_empty() {
        store.insert_many("credentials", batch).await.expect("inserted");
    }
}

fn names(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| c["name"].as_str().expect("name").to_owned())
        .collect()
}

/// The bus deadline of the lists at size: a debug build on FerretDB's SQLite backend takes
/// ~8 s to read, sort and encode 10,000 credentials whole (~3 s embedded) — what is tested here
/// is that they list at all, and correctly; their speed is the benchmark's business.
fn patient(settings: &mut ttscm_runtime::Settings) {
    settings.request_timeout_ms = 30_000;
}

async fn a_company_with_ten_thousand_credentials_lists_whole_and_in_pages(mode: Mode) {
    let app = spawn_app_with(mode, patient).await;
    let seeded = app.seed_aws_credential("Big Co", "s3cr3t").await;
    let company = seeded.company.clone();
    clone_credential(&app, &seeded.id, 9_999, |_| company.clone(), "").await;
    let path = format!("{CREDS}/company/{}", seeded.company);
    let (status, whole) = app.get(&path, Some(&app.admin_token)).await;
    assert_eq!(status, 200, "{}", whole["message"]);
    assert_eq!(whole["data"].as_array().map(Vec::len), Some(10_000));
    assert!(
        whole.get("pagination").is_none(),
        "the spec's shape without page/rpp"
    );
    assert_eq!(whole["data"][0]["company"]["name"], "Big Co");

    let (status, page) = app
        .get(&format!("{path}?page=3&rpp=100"), Some(&app.admin_token))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        names(&page),
        names(&whole)[200..300].to_vec(),
        "page 3 is items 201–300 of the whole"
    );
    assert_eq!(page["pagination"]["totalRecords"], 10_000);
    assert_eq!(page["pagination"]["totalPages"], 100);
    assert_eq!(page["pagination"]["listedRecords"], 100);
    let (status, last) = app
        .get(&format!("{path}?page=100&rpp=100"), Some(&app.admin_token))
        .await;
    assert_eq!(status, 200);
    assert_eq!(last["pagination"]["nextPage"], Value::Null);
    // The total of a page that is not full comes from the page; past the end, from a count.
    for (query, listed) in [("page=105&rpp=96", 16), ("page=106&rpp=96", 0)] {
        let (status, partial) = app.get(&format!("{path}?{query}"), Some(&app.admin_token)).await;
        assert_eq!(status, 200, "{partial}");
        assert_eq!(partial["pagination"]["totalRecords"], 10_000, "{query}");
        assert_eq!(partial["pagination"]["listedRecords"], listed, "{query}");
    }
    let (status, bad) = app.get(&format!("{path}?rpp=0"), Some(&app.admin_token)).await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["errors"][0]["path"], json!(["rpp"]));
}

async fn a_type_used_by_five_thousand_companies_lists_whole_and_in_pages(mode: Mode) {
    let app = spawn_app_with(mode, patient).await;
    let seeded = app.seed_aws_credential("Company 00000", "s3cr3t").await;
    let store = app.store().await;
    let now = ttscm_runtime::clock::now_iso();
    let ids: Vec<String> = (0..4_999).map(|_| ttscm_runtime::ids::new_id()).collect();
    let companies: Vec<Document> =
        ids.iter()
            .enumerate()
            .map(|(i, id)| {
                let name = format!("Company {:05}", i + 1);
                let Value::Object(document) = json!({"id": id, "name": name, "nameKey": name.to_lowercase(),
                "cwKey": format!("manual:{id}"), "active": true, "createdAt": now, "updatedAt": now}) else {
                    unreachable!("an object literal")
                };
                document
            })
            .collect();
    for chunk in companies.chunks(1000) {
        store
            .insert_many("companies", chunk.to_vec())
            .await
            .expect("inserted");
    }
    clone_credential(&app, &seeded.id, 4_999, |i| ids[i].clone(), "").await;
    let path = format!(
        "/v1/credential-type/credential-types/{}/credentials",
        seeded.type_id
    );
    let (status, whole) = app.get(&path, Some(&app.admin_token)).await;
    assert_eq!(status, 200, "{}", whole["message"]);
    let items = whole["data"].as_array().expect("a list");
    assert_eq!(items.len(), 5_000);
    // Every company's name is there: more than one summaries call's worth (1,000 ids).
    let named = items
        .iter()
        .filter(|c| {
            c["company"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("Company "))
        })
        .count();
    assert_eq!(named, 5_000);
    let (status, page) = app
        .get(&format!("{path}?page=50&rpp=100"), Some(&app.admin_token))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["pagination"]["totalRecords"], 5_000);
    assert_eq!(page["data"].as_array().map(Vec::len), Some(100));
}

async fn a_whole_list_beyond_the_cap_names_page_and_rpp(mode: Mode) {
    let app = spawn_app_with(mode, |s| s.credential.list_max_unpaged = 50).await;
    let seeded = app.seed_aws_credential("Capped Co", "s3cr3t").await;
    let company = seeded.company.clone();
    clone_credential(&app, &seeded.id, 60, |_| company.clone(), "").await;
    let path = format!("{CREDS}/company/{}", seeded.company);
    let (status, body) = app.get(&path, Some(&app.admin_token)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["path"], json!(["page"]));
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("61 credentials") && message.contains("page and rpp"),
        "{message}"
    );
    let (status, _) = app
        .get(&format!("{path}?page=1&rpp=100"), Some(&app.admin_token))
        .await;
    assert_eq!(status, 200);
}

/// In the mesh a reply is bounded by the reply cap (`TTSCM_NATS__MAX_REPLY_BYTES`, here 4 MiB;
/// beyond NATS' `max_payload` it travels in chunks): a whole list larger than that is answered
/// 413 saying to page it — not left to time out. (The bus deadline is raised so that reading
/// 9 MB from FerretDB on a loaded test host cannot turn the answer into a 504 either way: a reply
/// the bus refused would still never arrive.)
#[tokio::test]
async fn an_answer_larger_than_the_bus_carries_is_413_not_504() {
    let app = spawn_app_with(Mode::Mesh, |settings| {
        settings.nats.max_reply_bytes = 4 * 1024 * 1024;
        settings.request_timeout_ms = 30_000;
    })
    .await;
    let seeded = app.seed_aws_credential("Notes Co", "s3cr3t").await;
    let company = seeded.company.clone();
    let note = "n".repeat(64 * 1024);
    clone_credential(&app, &seeded.id, 140, |_| company.clone(), &note).await;
    let path = format!("{CREDS}/company/{}", seeded.company);
    let (status, body) = app.get(&path, Some(&app.admin_token)).await;
    assert_eq!(status, 413, "{}", body["message"]);
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("page and rpp")),
        "{body}"
    );
    let (status, page) = app
        .get(&format!("{path}?page=1&rpp=50"), Some(&app.admin_token))
        .await;
    assert_eq!(status, 200, "{}", page["message"]);
    assert_eq!(page["data"].as_array().map(Vec::len), Some(50));
}

both_modes!(
    a_company_with_ten_thousand_credentials_lists_whole_and_in_pages,
    a_type_used_by_five_thousand_companies_lists_whole_and_in_pages,
    a_whole_list_beyond_the_cap_names_page_and_rpp
);
