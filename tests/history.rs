//! Credential versions end to end, in both modes: history across create, fields writes,
//! renames, a type migration and a restore; past-version reveals (policy and audit as a
//! reveal); `ETag`/`If-Match`; values bound to the version they were written in (a blob copied
//! from an older version does not open); retention; permissions.

use crate::support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Mode, Seeded, TestApp, spawn_app, spawn_app_with, text};

const CREDS: &str = "/v1/credential/credentials";
const TYPES: &str = "/v1/credential-type/credential-types";

/// Sends `method path` with the admin token, an optional JSON body and optional `If-Match`;
/// answers the status, the `ETag` and the body.
async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
    if_match: Option<&str>,
) -> (u16, Option<String>, Value) {
    let mut request = app
        .http
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(&app.admin_token);
    if let Some(body) = body {
        request = request.json(body);
    }
    if let Some(tag) = if_match {
        request = request.header("if-match", tag);
    }
    let response = request.send().await.expect("the request is answered");
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().expect("ASCII").to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, etag, body)
}

fn secret_body(secret: &str) -> Value {
    json!({"fields": [
        {"fieldId": "accessKeyId", "value": "AKIAIOSFODNN7EXAMPLE"},
        {"fieldId": "secretAccessKey", "value": secret}
    ]})
}

async fn history(app: &TestApp, id: &str) -> Vec<Value> {
    let (status, body) = app
        .get(&format!("{CREDS}/{id}/history"), Some(&app.admin_token))
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().expect("a list").clone()
}

async fn reveal_version(app: &TestApp, id: &str, version: u64) -> (u16, Value) {
    app.get(
        &format!("{CREDS}/{id}/history/{version}/secure-values"),
        Some(&app.admin_token),
    )
    .await
}

async fn a_credentials_versions_are_kept_across_every_kind_of_change(mode: Mode) {
    let app = spawn_app(mode).await;
    let token = app.admin_token.clone();
    let Seeded { type_id, id, .. } = app.seed_aws_credential("History Co", "secret-one").await;
    let one = format!("{CREDS}/{id}");

    let (status, etag, created) = send(&app, reqwest::Method::GET, &one, None, None).await;
    assert_eq!((status, etag.as_deref()), (200, Some("\"1\"")), "{created}");
    assert_eq!(created["data"]["version"], 1);

    // v2: a new secret. v3: the same values again (a version, but no field written).
    let (status, etag, _) = send(
        &app,
        reqwest::Method::PUT,
        &format!("{one}/fields"),
        Some(&secret_body("secret-two")),
        None,
    )
    .await;
    assert_eq!((status, etag.as_deref()), (200, Some("\"2\"")));
    let (_, sealed_before) = app.get(&format!("{one}/fields"), Some(&token)).await;
    let (status, etag, _) = send(
        &app,
        reqwest::Method::PUT,
        &format!("{one}/fields"),
        Some(&secret_body("secret-two")),
        None,
    )
    .await;
    assert_eq!((status, etag.as_deref()), (200, Some("\"3\"")));
    let (_, sealed_after) = app.get(&format!("{one}/fields"), Some(&token)).await;
    assert_eq!(
        sealed_before["data"], sealed_after["data"],
        "an unchanged secure value keeps its blob: it is not sealed again"
    );
    // v4: renamed.
    let (status, etag, renamed) = send(
        &app,
        reqwest::Method::PATCH,
        &one,
        Some(&json!({"name": "Renamed AWS"})),
        None,
    )
    .await;
    assert_eq!((status, etag.as_deref()), (200, Some("\"4\"")), "{renamed}");
    // v5: the type makes `notes` secure... there is no notes value; make accessKeyId secure.
    let (_, ty) = app.get(&format!("{TYPES}/{type_id}"), Some(&token)).await;
    let mut fields = ty["data"]["fields"].clone();
    fields[0]["secure"] = json!(true);
    let (status, body) = app
        .patch(&format!("{TYPES}/{type_id}"), &token, &json!({"fields": fields}))
        .await;
    assert_eq!(status, 200, "{body}");
    // v6: version 1 restored.
    let (status, etag, restored) = send(
        &app,
        reqwest::Method::POST,
        &format!("{one}/history/1/restore"),
        None,
        None,
    )
    .await;
    assert_eq!((status, etag.as_deref()), (200, Some("\"6\"")), "{restored}");
    assert_eq!(restored["message"], "Credential Version Restored Successfully!");
    assert_eq!(
        restored["data"]["name"], "Renamed AWS",
        "a restore keeps the name"
    );

    let versions = history(&app, &id).await;
    let summary: Vec<(u64, &str, Vec<&str>, bool)> = versions
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().expect("version"),
                v["change"].as_str().expect("change"),
                v["fieldIds"]
                    .as_array()
                    .expect("fieldIds")
                    .iter()
                    .map(|f| f.as_str().expect("a field id"))
                    .collect(),
                v["current"].as_bool().expect("current"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (6, "restored", vec!["secretAccessKey"], true),
            (5, "migrated", vec!["accessKeyId"], false),
            (4, "renamed", vec![], false),
            (3, "fields_updated", vec![], false),
            (2, "fields_updated", vec!["secretAccessKey"], false),
            (1, "created", vec!["accessKeyId", "secretAccessKey"], false),
        ]
    );
    assert_eq!(versions[0]["restoredFrom"], 1);
    assert_eq!(versions[5]["name"], "Production AWS");
    assert_eq!(versions[5]["fields"]["accessKeyId"], "AKIAIOSFODNN7EXAMPLE");
    assert_eq!(versions[5]["secureFieldIds"], json!(["secretAccessKey"]));
    assert_eq!(
        versions[1]["secureFieldIds"],
        json!(["accessKeyId", "secretAccessKey"])
    );
    assert_eq!(versions[1]["actor"]["name"], versions[0]["actor"]["name"]);
    assert!(
        !serde_json::to_string(&versions)
            .expect("json")
            .contains("secret-"),
        "history shows no secure value"
    );

    // Every version's secure values, as they were.
    for (version, secret) in [
        (1, "secret-one"),
        (2, "secret-two"),
        (5, "secret-two"),
        (6, "secret-one"),
    ] {
        let (status, body) = reveal_version(&app, &id, version).await;
        assert_eq!(status, 200, "version {version}: {body}");
        assert_eq!(body["data"]["secretAccessKey"], secret, "version {version}");
    }
    let (status, body) = reveal_version(&app, &id, 5).await;
    assert_eq!(
        (status, &body["data"]["accessKeyId"]),
        (200, &json!("AKIAIOSFODNN7EXAMPLE"))
    );
    let (_, now) = app.get(&format!("{one}/secure-values"), Some(&token)).await;
    assert_eq!(now["data"]["secretAccessKey"], "secret-one");

    // Paged: newest first, the spec's pagination object.
    let (status, page) = app
        .get(&format!("{one}/history?page=2&rpp=4"), Some(&token))
        .await;
    assert_eq!(status, 200, "{page}");
    let on_page: Vec<u64> = page["data"]
        .as_array()
        .expect("items")
        .iter()
        .map(|v| v["version"].as_u64().expect("version"))
        .collect();
    assert_eq!(on_page, vec![2, 1]);
    assert_eq!(page["pagination"]["totalRecords"], 6, "{page}");

    // Unknown versions and credentials.
    assert_eq!(reveal_version(&app, &id, 7).await.0, 404);
    assert_eq!(reveal_version(&app, &id, 0).await.0, 404);
    let (status, body) = app
        .get(&format!("{one}/history/x/secure-values"), Some(&token))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["path"], json!(["version"]));
    assert_eq!(
        app.get(&format!("{CREDS}/nope/history"), Some(&token)).await.0,
        404
    );
    let (status, _, body) = send(
        &app,
        reqwest::Method::POST,
        &format!("{one}/history/6/restore"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 400, "the current version cannot be restored: {body}");

    // A deleted credential takes its history with it.
    app.assert_deleted(&one, &token, "Credential Deleted Successfully!")
        .await;
    let store = app.store().await;
    let left = store
        .count(
            "credential_versions",
            &ttscm_runtime::Filter::eq("credentialId", id.as_str()),
        )
        .await
        .expect("counted");
    assert_eq!(left, 0);
}

async fn a_past_version_reveal_is_a_reveal_for_policy_and_audit(mode: Mode) {
    let app = spawn_app(mode).await;
    let token = app.admin_token.clone();
    let Seeded { type_id, id, .. } = app.seed_aws_credential("Audit Co", "first").await;
    let (status, _) = app
        .put(&format!("{CREDS}/{id}/fields"), &token, &secret_body("second"))
        .await;
    assert_eq!(status, 200);
    let (status, body) = app
        .patch(
            &format!("{TYPES}/{type_id}"),
            &token,
            &json!({"revealPolicy": {"require": "reason"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = reveal_version(&app, &id, 1).await;
    assert_eq!(status, 400, "the type's policy applies: {body}");
    assert!(!body.to_string().contains("first"));
    let (status, body) = app
        .get(
            &format!("{CREDS}/{id}/history/1/secure-values?reason=Customer%20asked"),
            Some(&token),
        )
        .await;
    assert_eq!(
        (status, &body["data"]["secretAccessKey"]),
        (200, &json!("first")),
        "{body}"
    );

    let entries = app.audit_entries("credential.revealed").await;
    let entry = entries
        .iter()
        .find(|e| e["details"]["pastVersion"] == "true")
        .expect("the past-version reveal is on record");
    assert_eq!(entry["credentialId"], id.as_str());
    assert_eq!(entry["details"]["version"], "1");
    assert_eq!(entry["details"]["fieldVersions"], "secretAccessKey@1");
    assert_eq!(entry["details"]["reason"], "Customer asked");
    // A current reveal says which versions it showed too.
    let (status, _) = app
        .get(&format!("{CREDS}/{id}/secure-values?reason=Again"), Some(&token))
        .await;
    assert_eq!(status, 200);
    let entries = app.audit_entries("credential.revealed").await;
    assert!(
        entries.iter().any(|e| e["details"]["version"] == "2"
            && e["details"]["fieldVersions"] == "secretAccessKey@2"
            && e["details"].get("pastVersion").is_none()),
        "{entries:?}"
    );
}

async fn if_match_stops_a_silent_overwrite(mode: Mode) {
    let app = spawn_app(mode).await;
    let Seeded { id, .. } = app.seed_aws_credential("Race Co", "one").await;
    let one = format!("{CREDS}/{id}");
    let fields = format!("{one}/fields");
    // Two technicians read version 1; the first writes, the second's write is refused.
    let (status, etag, _) = send(
        &app,
        reqwest::Method::PUT,
        &fields,
        Some(&secret_body("a")),
        Some("\"1\""),
    )
    .await;
    assert_eq!((status, etag.as_deref()), (200, Some("\"2\"")));
    let (status, _, body) = send(
        &app,
        reqwest::Method::PUT,
        &fields,
        Some(&secret_body("b")),
        Some("\"1\""),
    )
    .await;
    assert_eq!(status, 412, "{body}");
    assert_eq!(body["successful"], false);
    assert!(text(&body, "/message").contains("version 2"), "{body}");
    let (status, _, body) = send(
        &app,
        reqwest::Method::PATCH,
        &one,
        Some(&json!({"name": "Stale"})),
        Some("W/\"1\""),
    )
    .await;
    assert_eq!(status, 412, "{body}");
    let (status, _, body) = send(
        &app,
        reqwest::Method::POST,
        &format!("{one}/history/1/restore"),
        None,
        Some("\"1\""),
    )
    .await;
    assert_eq!(status, 412, "{body}");
    // Nothing was written by the refused requests.
    let (_, revealed) = app
        .get(&format!("{one}/secure-values"), Some(&app.admin_token))
        .await;
    assert_eq!(revealed["data"]["secretAccessKey"], "a");
    let (_, etag, current) = send(&app, reqwest::Method::GET, &one, None, None).await;
    assert_eq!(
        (etag.as_deref(), &current["data"]["name"]),
        (Some("\"2\""), &json!("Production AWS"))
    );
    // The right version, `*`, or none: written.
    let (status, etag, _) = send(
        &app,
        reqwest::Method::PATCH,
        &one,
        Some(&json!({"name": "Fresh"})),
        Some("\"2\""),
    )
    .await;
    assert_eq!((status, etag.as_deref()), (200, Some("\"3\"")));
    let (status, etag, _) = send(
        &app,
        reqwest::Method::PUT,
        &fields,
        Some(&secret_body("c")),
        Some("*"),
    )
    .await;
    assert_eq!((status, etag.as_deref()), (200, Some("\"4\"")));
    // A malformed one is a 400 naming it.
    let (status, _, body) = send(
        &app,
        reqwest::Method::PUT,
        &fields,
        Some(&secret_body("d")),
        Some("\"2\", \"3\""),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["path"], json!(["If-Match"]));
}

/// Someone who can write the store copies an older sealed value — or the whole older document —
/// over the current one: the value is bound to the version it was written in, so it does not
/// open in its place.
async fn a_value_copied_from_an_older_version_does_not_open(mode: Mode) {
    let app = spawn_app(mode).await;
    let token = app.admin_token.clone();
    let Seeded { id, .. } = app.seed_aws_credential("Rollback Co", "old-secret").await;
    let (status, _) = app
        .put(
            &format!("{CREDS}/{id}/fields"),
            &token,
            &secret_body("new-secret"),
        )
        .await;
    assert_eq!(status, 200);
    let store = app.store().await;
    let old = store
        .get("credential_versions", &format!("{id}.{:012}", 1))
        .await
        .expect("read")
        .expect("version 1 is kept");
    let current = store
        .get("credentials", &id)
        .await
        .expect("read")
        .expect("current");
    let old_blob = old["values"]
        .as_array()
        .expect("values")
        .iter()
        .find(|v| v["fieldId"] == "secretAccessKey")
        .expect("the old secret")["value"]
        .clone();
    let mut values = current["values"].clone();
    for value in values.as_array_mut().expect("values") {
        if value["fieldId"] == "secretAccessKey" {
            assert_eq!(value["version"], 2);
            value["value"] = old_blob.clone();
        }
    }
    store
        .update_one(
            "credentials",
            &ttscm_runtime::Filter::id(&id),
            &ttscm_runtime::Update::default().set("values", values),
        )
        .await
        .expect("the old blob is copied in");
    let (status, body) = app
        .get(&format!("{CREDS}/{id}/secure-values"), Some(&token))
        .await;
    assert_eq!(status, 500, "{body}");
    assert!(text(&body, "/message").contains("failed to open"), "{body}");
    assert!(!body.to_string().contains("old-secret"));
}

async fn verification_finds_an_older_document_or_value_copied_over_the_current_one(mode: Mode) {
    let app = spawn_app(mode).await;
    let token = app.admin_token.clone();
    let Seeded { id, .. } = app.seed_aws_credential("Verify Co", "old-secret").await;
    let Seeded { id: other, .. } = app.seed_aws_credential("Verify Two", "other-secret").await;
    for secret in ["new-secret", "newest-secret"] {
        let (status, _) = app
            .put(&format!("{CREDS}/{id}/fields"), &token, &secret_body(secret))
            .await;
        assert_eq!(status, 200);
    }
    let (status, _) = app
        .patch(&format!("{CREDS}/{other}"), &token, &json!({"name": "Renamed"}))
        .await;
    assert_eq!(status, 200);
    let verify = "/v1/audit/verify/credentials";
    let (status, body) = app.get(verify, Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["consistent"], true, "{body}");
    assert!(body["data"]["checked"].as_u64() >= Some(2), "{body}");

    // The old value with its old version tag opens — so verification must name it.
    let store = app.store().await;
    let old = store
        .get("credential_versions", &format!("{id}.{:012}", 1))
        .await
        .expect("read")
        .expect("version 1 is kept");
    let current = store
        .get("credentials", &id)
        .await
        .expect("read")
        .expect("current");
    let mut values = current["values"].clone();
    for value in values.as_array_mut().expect("values") {
        if value["fieldId"] == "secretAccessKey" {
            *value = old["values"]
                .as_array()
                .expect("values")
                .iter()
                .find(|v| v["fieldId"] == "secretAccessKey")
                .expect("the old secret")
                .clone();
        }
    }
    store
        .update_one(
            "credentials",
            &ttscm_runtime::Filter::id(&id),
            &ttscm_runtime::Update::default().set("values", values),
        )
        .await
        .expect("the old value is copied in");
    // And a whole older document over the other credential.
    let older = store
        .get("credential_versions", &format!("{other}.{:012}", 1))
        .await
        .expect("read")
        .expect("version 1 is kept");
    store
        .update_one(
            "credentials",
            &ttscm_runtime::Filter::id(&other),
            &ttscm_runtime::Update::default()
                .set("revision", 1i64)
                .set("name", older["name"].clone())
                .set("values", older["values"].clone()),
        )
        .await
        .expect("the older document is copied in");

    let (status, body) = app.get(verify, Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["consistent"], false, "{body}");
    let mismatches = body["data"]["mismatches"].as_array().expect("mismatches");
    let about = |credential: &str| {
        mismatches
            .iter()
            .find(|m| m["credentialId"] == credential)
            .map(|m| m["problem"].as_str().expect("problem").to_owned())
    };
    let value_problem = about(&id).expect("the copied value is named");
    assert!(
        value_problem.contains("secretAccessKey") && value_problem.contains("version 1"),
        "{value_problem}"
    );
    let document_problem = about(&other).expect("the older document is named");
    assert!(document_problem.contains("version 1"), "{document_problem}");
    assert!(
        !body.to_string().contains("-secret"),
        "no value in the report: {body}"
    );
    let nobody = app.token_with(&["credential.fetch"]).await;
    app.assert_get(verify, &nobody, 403).await;
}

async fn history_routes_need_their_permissions(mode: Mode) {
    let app = spawn_app(mode).await;
    let Seeded { id, .. } = app.seed_aws_credential("Perm Co", "s").await;
    let (status, _) = app
        .put(
            &format!("{CREDS}/{id}/fields"),
            &app.admin_token,
            &secret_body("t"),
        )
        .await;
    assert_eq!(status, 200);
    let list = format!("{CREDS}/{id}/history");
    let past = format!("{CREDS}/{id}/history/1/secure-values");
    let restore = format!("{CREDS}/{id}/history/1/restore");
    let fetch_only = app.token_with(&["credential.fetch"]).await;
    app.assert_get(&list, &fetch_only, 200).await;
    app.assert_get(&past, &fetch_only, 403).await;
    let (status, _) = app.post(&restore, &fetch_only, &json!({})).await;
    assert_eq!(status, 403);
    let update_only = app.token_with(&["credential.fetch", "credential.update"]).await;
    let (status, _) = app.post(&restore, &update_only, &json!({})).await;
    assert_eq!(
        status, 403,
        "a restore writes values: it needs credential.fields.update too"
    );
    let reader = app
        .token_with(&["credential.fetch", "credential.secure_values.read"])
        .await;
    app.assert_get(&past, &reader, 200).await;
    let nobody = app.token_with(&["company.fetch"]).await;
    app.assert_get(&list, &nobody, 403).await;

    // A type scope guards history as it guards the credential.
    let scoped_type = app.create_aws_type(Some("vip.credentials")).await;
    let company = app.seed_company("Scoped Co").await;
    let scoped = app.create_aws_credential(&scoped_type, &company, "vip").await;
    app.assert_get(&format!("{CREDS}/{scoped}/history"), &reader, 403)
        .await;
    app.assert_get(&format!("{CREDS}/{scoped}/history/1/secure-values"), &reader, 403)
        .await;
}

/// Writes the secret `v{n}` for each `n` of `versions`, each a new version.
async fn write_secrets(app: &TestApp, id: &str, versions: std::ops::RangeInclusive<u32>) {
    for n in versions {
        let (status, _) = app
            .put(
                &format!("{CREDS}/{id}/fields"),
                &app.admin_token,
                &secret_body(&format!("v{n}")),
            )
            .await;
        assert_eq!(status, 200);
    }
}

async fn old_versions_are_pruned_by_the_retention_settings(mode: Mode) {
    let app = spawn_app_with(mode, |settings| {
        settings.credential.history_keep_versions = 2;
        settings.credential.history_prune_secs = 1;
    })
    .await;
    let Seeded { id, .. } = app.seed_aws_credential("Prune Co", "v1").await;
    write_secrets(&app, &id, 2..=6).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let versions: Vec<u64> = history(&app, &id)
            .await
            .iter()
            .map(|v| v["version"].as_u64().expect("version"))
            .collect();
        if versions == vec![6, 5, 4] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still kept: {versions:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(reveal_version(&app, &id, 3).await.0, 404, "pruned");
    assert_eq!(
        reveal_version(&app, &id, 4).await.1["data"]["secretAccessKey"],
        "v4"
    );
}

/// `history_keep_versions` holds as versions are written, without waiting for a pruning run
/// (off here): a credential written many times keeps that many past versions, no more.
async fn the_version_limit_holds_as_versions_are_written(mode: Mode) {
    let app = spawn_app_with(mode, |settings| {
        settings.credential.history_keep_versions = 3;
        settings.credential.history_prune_secs = 0;
    })
    .await;
    let Seeded { id, .. } = app.seed_aws_credential("Limit Co", "v1").await;
    write_secrets(&app, &id, 2..=8).await;
    let versions: Vec<u64> = history(&app, &id)
        .await
        .iter()
        .map(|v| v["version"].as_u64().expect("version"))
        .collect();
    assert_eq!(versions, [8, 7, 6, 5], "the current version and three past ones");
    assert_eq!(reveal_version(&app, &id, 4).await.0, 404, "beyond the limit");
    assert_eq!(
        reveal_version(&app, &id, 5).await.1["data"]["secretAccessKey"],
        "v5"
    );
}

both_modes!(
    the_version_limit_holds_as_versions_are_written,
    a_credentials_versions_are_kept_across_every_kind_of_change,
    a_past_version_reveal_is_a_reveal_for_policy_and_audit,
    if_match_stops_a_silent_overwrite,
    a_value_copied_from_an_older_version_does_not_open,
    verification_finds_an_older_document_or_value_copied_over_the_current_one,
    history_routes_need_their_permissions,
    old_versions_are_pruned_by_the_retention_settings,
);
