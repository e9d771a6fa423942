//! Credentials and credential types end to end, in both modes: the spec's routes field for
//! field, validation with paths, scopes, sealing, type changes, cascades, audit.

use crate::support;

use serde_json::{Value, json};
use support::{Mode, Seeded, error_paths, first_error, spawn_app, spawn_app_with, strings, text};

const TYPES: &str = "/v1/credential-type/credential-types";
const CREDS: &str = "/v1/credential/credentials";

async fn a_credential_type_goes_through_its_whole_life(mode: Mode) {
    let app = spawn_app(mode).await;
    let token = app.admin_token.clone();
    let body = json!({
        "name": "GitHub", "permissionScope": "github.credentials", "icon": "https://github.com/favicon.ico",
        "fields": [
            {"id": "username", "name": "Username", "required": true, "secure": false, "valueType": "plain_text"},
            {"id": "personalAccessToken", "name": "Personal Access Token", "required": true, "secure": true, "valueType": "password"}
        ]
    });
    let (status, created) = app.post(TYPES, &token, &body).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["message"], "Credential Type Created Successfully!");
    assert_eq!(created["successful"], true);
    let data = &created["data"];
    assert_eq!(data["name"], "GitHub");
    assert_eq!(data["permissionScope"], "github.credentials");
    assert_eq!(data["fields"], body["fields"]);
    assert_eq!(data["credentialCount"], 0);
    let id = data["id"].as_str().expect("id").to_owned();

    let (status, by_name) = app.get(&format!("{TYPES}/github"), Some(&token)).await;
    assert_eq!((status, by_name["data"]["id"].as_str()), (200, Some(id.as_str())));
    assert_eq!(by_name["message"], "Credential Type Fetched Successfully!");
    let (status, _) = app.get(&format!("{TYPES}/{id}"), Some(&token)).await;
    assert_eq!(status, 200);

    let (status, duplicate) = app
        .post(TYPES, &token, &json!({"name": "GITHUB", "fields": []}))
        .await;
    assert_eq!(status, 409, "names are unique case-insensitively: {duplicate}");

    let (status, updated) = app
        .patch(
            &format!("{TYPES}/{id}"),
            &token,
            &json!({"name": "GitHub Enterprise", "icon": null}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["message"], "Credential Type Updated Successfully!");
    assert_eq!(updated["data"]["name"], "GitHub Enterprise");
    assert_eq!(updated["data"]["icon"], Value::Null);

    let (status, list) = app.get(TYPES, Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));

    app.assert_deleted(
        &format!("{TYPES}/{id}"),
        &token,
        "Credential Type Deleted Successfully!",
    )
    .await;
}

async fn bad_type_definitions_are_refused_with_paths(mode: Mode) {
    let app = spawn_app(mode).await;
    let (status, body) = app
        .post(
            TYPES,
            &app.admin_token,
            &json!({
                "name": " ", "permissionScope": "Not A Scope", "icon": "http://insecure.example/x.ico",
                "fields": [
                    {"id": "9lives", "name": "x", "valueType": "plain_text"},
                    {"id": "ok", "name": "", "valueType": "colour"},
                    {"id": "ok", "name": "dup", "valueType": "email"}
                ]
            }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let paths = error_paths(&body);
    for expected in [
        json!(["name"]),
        json!(["permissionScope"]),
        json!(["icon"]),
        json!(["fields", 0, "id"]),
        json!(["fields", 1, "name"]),
        json!(["fields", 1, "valueType"]),
        json!(["fields", 2, "id"]),
    ] {
        assert!(paths.contains(&expected), "missing {expected} in {paths:?}");
    }
}

async fn a_credential_goes_through_its_whole_life(mode: Mode) {
    let app = spawn_app(mode).await;
    let token = app.admin_token.clone();
    let (company, type_id) = app.company_and_aws_type("Acme Corp").await;
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let fields = json!([
        {"id": "ckx1", "fieldId": "accessKeyId", "value": "AKIAIOSFODNN7EXAMPLE"},
        {"id": "ckx2", "fieldId": "secretAccessKey", "value": secret}
    ]);
    let request = json!({"name": "Production AWS Credentials", "typeId": type_id, "companyId": company, "fields": fields});
    let (status, created) = app.post(CREDS, &token, &request).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["message"], "Credential Created Successfully!");
    assert_eq!(
        created["data"]["fields"],
        json!({"accessKeyId": "AKIAIOSFODNN7EXAMPLE"}),
        "secure values never in `fields`"
    );
    assert!(!created.to_string().contains(secret));
    let id = created["data"]["id"].as_str().expect("id").to_owned();

    let (status, fetched) = app.get(&format!("{CREDS}/{id}"), Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(fetched["message"], "Credential Fetched Successfully!");
    let data = &fetched["data"];
    assert_eq!(data["typeId"], type_id.as_str());
    assert_eq!(data["companyId"], company.as_str());
    assert_eq!(data["type"]["id"], type_id.as_str());
    assert_eq!(data["company"], json!({"id": company, "name": "Acme Corp"}));
    assert!(
        data["createdAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.len() == 24)
    );

    let (status, fields) = app.get(&format!("{CREDS}/{id}/fields"), Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(fields["message"], "Credential Fields Fetched Successfully!");
    let values = fields["data"].as_array().expect("values");
    assert_eq!(values.len(), 2);
    let sealed = values
        .iter()
        .find(|v| v["fieldId"] == "secretAccessKey")
        .expect("secure value listed");
    let blob = sealed["value"].as_str().expect("sealed blob");
    assert_ne!(blob, secret);
    assert!(base64_decodes(blob), "sealed values are base64: {blob}");
    assert!(
        values
            .iter()
            .all(|v| v["id"].as_str().is_some_and(|i| !i.is_empty()))
    );

    let response = app
        .http
        .get(format!("{}{CREDS}/{id}/secure-values", app.address))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent");
    assert_eq!(
        response.headers().get("cache-control").map(|v| v.as_bytes()),
        Some(&b"no-store"[..]),
        "revealed secrets must not be cached"
    );
    let status = response.status().as_u16();
    let revealed: Value = response.json().await.expect("json");
    assert_eq!(
        (status, revealed["message"].as_str()),
        (200, Some("Secure Values Fetched Successfully!"))
    );
    assert_eq!(revealed["data"], json!({"secretAccessKey": secret}));

    let (status, renamed) = app
        .patch(&format!("{CREDS}/{id}"), &token, &json!({"name": "Renamed"}))
        .await;
    assert_eq!((status, renamed["data"]["name"].as_str()), (200, Some("Renamed")));
    assert_eq!(renamed["message"], "Credential Updated Successfully!");
    let (status, refused) = app
        .patch(
            &format!("{CREDS}/{id}"),
            &token,
            &json!({"name": "x", "typeId": "other"}),
        )
        .await;
    assert_eq!(status, 400, "only the name may change: {refused}");
    assert!(first_error(&refused).contains("typeId"), "{refused}");

    let (status, put) = app
        .put(
            &format!("{CREDS}/{id}/fields"),
            &token,
            &json!({"fields": [
                {"fieldId": "accessKeyId", "value": "AKIANEW"},
                {"fieldId": "secretAccessKey", "value": "newSecret"},
                {"fieldId": "notes", "value": "line one\nline two"}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["message"], "Credential Fields Updated Successfully!");
    assert_eq!(
        put["data"]["fields"],
        json!({"accessKeyId": "AKIANEW", "notes": "line one\nline two"})
    );
    let (_, after) = app.get(&format!("{CREDS}/{id}/fields"), Some(&token)).await;
    let id_of = |body: &Value, field: &str| {
        body["data"]
            .as_array()
            .and_then(|a| a.iter().find(|v| v["fieldId"] == field))
            .map(|v| v["id"].clone())
    };
    assert_eq!(
        id_of(&after, "secretAccessKey"),
        id_of(&fields, "secretAccessKey"),
        "value ids are stable"
    );
    assert_eq!(
        app.get(&format!("{CREDS}/{id}/secure-values"), Some(&token))
            .await
            .1["data"],
        json!({"secretAccessKey": "newSecret"})
    );

    let (status, list) = app.get(&format!("{CREDS}/company/{company}"), Some(&token)).await;
    assert_eq!(
        (status, list["message"].as_str()),
        (200, Some("Company Credentials Fetched Successfully!"))
    );
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
    let (status, by_type) = app
        .get(&format!("{TYPES}/{type_id}/credentials"), Some(&token))
        .await;
    assert_eq!(
        (status, by_type["message"].as_str()),
        (200, Some("Credentials Fetched Successfully!"))
    );
    assert_eq!(by_type["data"][0]["id"], id.as_str());
    assert_eq!(
        app.get(&format!("{TYPES}/{type_id}"), Some(&token)).await.1["data"]["credentialCount"],
        1
    );

    app.assert_deleted(
        &format!("{CREDS}/{id}"),
        &token,
        "Credential Deleted Successfully!",
    )
    .await;
}

fn base64_decodes(text: &str) -> bool {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).is_ok()
}

async fn bad_credentials_are_refused_with_paths_and_nothing_is_written(mode: Mode) {
    let app = spawn_app(mode).await;
    let token = app.admin_token.clone();
    let (company, type_id) = app.company_and_aws_type("Acme").await;
    let create = |body: Value| {
        let (app, token) = (&app, &token);
        async move { app.post(CREDS, token, &body).await }
    };
    let (status, body) = create(json!({
        "name": "x", "typeId": type_id, "companyId": company,
        "fields": [
            {"fieldId": "accessKeyId", "value": "two\nlines"},
            {"fieldId": "nope", "value": "1"},
            {"fieldId": "accessKeyId", "value": "again"},
            {"fieldId": "notes", "value": 5}
        ]
    }))
    .await;
    assert_eq!(status, 400, "{body}");
    let paths = error_paths(&body);
    for expected in [
        json!(["fields", 0, "value"]),
        json!(["fields", 1, "fieldId"]),
        json!(["fields", 2, "fieldId"]),
        json!(["fields", 3, "value"]),
        json!(["fields"]),
    ] {
        assert!(paths.contains(&expected), "missing {expected} in {paths:?}");
    }
    let (status, body) = create(
        json!({"name": "x", "typeId": "cdoesnotexist000000000000", "companyId": "nope", "fields": []}),
    )
    .await;
    assert_eq!(status, 400);
    let paths = error_paths(&body);
    assert!(
        paths.contains(&json!(["typeId"])) && paths.contains(&json!(["companyId"])),
        "{paths:?}"
    );
    let big = "x".repeat(70 * 1024);
    let (status, _) = create(
        json!({"name": "x", "typeId": type_id, "companyId": company, "fields": [
            {"fieldId": "accessKeyId", "value": "a"}, {"fieldId": "secretAccessKey", "value": big}]}),
    )
    .await;
    assert_eq!(status, 400, "values over 64 KiB are refused");
    let (status, body) =
        create(json!({"name": {"$ne": null}, "typeId": {"$gt": ""}, "companyId": company, "fields": []}))
            .await;
    assert_eq!(status, 400, "operators are just bad values: {body}");
    let (status, body) =
        create(json!({"name": "x", "typeId": type_id, "companyId": company, "fields": [], "$where": "1"}))
            .await;
    assert_eq!(status, 400);
    assert!(
        first_error(&body).contains("$where"),
        "names the unknown field: {body}"
    );
    let (status, list) = app.get(&format!("{CREDS}/company/{company}"), Some(&token)).await;
    assert_eq!(
        (status, list["data"].as_array().map(Vec::len)),
        (200, Some(0)),
        "nothing was written"
    );
}

async fn malformed_bodies_get_clear_4xx_answers(mode: Mode) {
    let app = spawn_app(mode).await;
    let token = app.admin_token.clone();
    let (status, body) = app
        .post_raw(TYPES, &token, "application/json", b"{\"name\": ")
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(first_error(&body).starts_with("Malformed JSON"), "{body}");
    let (status, _) = app.post_raw(TYPES, &token, "text/plain", b"{}").await;
    assert_eq!(status, 415);
    // An oversized body is refused from its Content-Length, before it is read: the request
    // head alone must get the 413 (a client still uploading may see the connection close).
    let (status, body) = app.send_head_only("POST", TYPES, &token, 2 * 1024 * 1024).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["successful"], false);
    let (status, body) = app
        .post(
            TYPES,
            &token,
            &json!({"name": "T", "fields": [], "colour": "red"}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(first_error(&body).contains("colour"), "{body}");
    let (status, body) = app.post(TYPES, &token, &json!({"name": "T", "fields": [{"id": "a", "name": "A", "valueType": "plain_text", "extra": 1}]})).await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["path"], json!(["fields", 0, "extra"]), "{body}");
    for (path, expected) in [
        ("/v1/credential/credentials/nope", 404),
        // Not text once decoded: refused as such.
        ("/v1/credential/credentials/%00%ff", 400),
        ("/v1/credential-type/credential-types/%24ne", 404),
    ] {
        assert_eq!(app.get_status(path, Some(&token)).await, expected, "{path}");
    }
}

async fn a_type_scope_guards_every_access_to_its_credentials(mode: Mode) {
    let app = spawn_app(mode).await;
    let company = app.seed_company("Scoped Co").await;
    let scoped = app.create_aws_type(Some("aws.credentials")).await;
    let open = app.create_aws_type(None).await;
    let scoped_id = app.create_aws_credential(&scoped, &company, "s3cr3t").await;
    let open_id = app.create_aws_credential(&open, &company, "0pen").await;
    let all = ["credential.*", "credential_type.*"];
    let without = app.token_with(&all).await;
    let with = app
        .token_with(&["credential.*", "credential_type.*", "aws.*"])
        .await;
    for path in [
        format!("{CREDS}/{scoped_id}"),
        format!("{CREDS}/{scoped_id}/fields"),
        format!("{CREDS}/{scoped_id}/secure-values"),
        format!("{TYPES}/{scoped}/credentials"),
    ] {
        let lacking = app.get_status(&path, Some(&without)).await;
        let holding = app.get_status(&path, Some(&with)).await;
        assert_eq!((lacking, holding), (403, 200), "{path} without, with the scope");
    }
    assert_eq!(
        app.delete_status(&format!("{CREDS}/{scoped_id}"), &without).await,
        403
    );
    let (_, listed) = app
        .get(&format!("{CREDS}/company/{company}"), Some(&without))
        .await;
    let ids = strings(&listed["data"], "id");
    assert_eq!(
        ids,
        [open_id.as_str()],
        "credentials of a scope the caller lacks are left out"
    );
    let no_reveal = app
        .token_with(&["credential.fetch", "credential.fields.fetch"])
        .await;
    let open = format!("{CREDS}/{open_id}");
    app.assert_get(&format!("{open}/secure-values"), &no_reveal, 403)
        .await;
    app.assert_get(&format!("{open}/fields"), &no_reveal, 200).await;
}

async fn changing_a_type_migrates_or_refuses_existing_values(mode: Mode) {
    let app = spawn_app(mode).await;
    let token = app.admin_token.clone();
    let Seeded { type_id, id, .. } = app.seed_aws_credential("Migrate Co", "topsecret").await;
    let field = |id: &str, secure: bool, required: bool, value_type: &str| json!({"id": id, "name": id, "required": required, "secure": secure, "valueType": value_type});

    // accessKeyId becomes secure, secretAccessKey becomes plain, notes is removed.
    let (status, body) = app
        .patch(&format!("{TYPES}/{type_id}"), &token, &json!({"fields": [field("accessKeyId", true, true, "plain_text"), field("secretAccessKey", false, true, "password")]}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, fetched) = app.get(&format!("{CREDS}/{id}"), Some(&token)).await;
    assert_eq!(fetched["data"]["fields"], json!({"secretAccessKey": "topsecret"}));
    let (_, revealed) = app
        .get(&format!("{CREDS}/{id}/secure-values"), Some(&token))
        .await;
    assert_eq!(revealed["data"], json!({"accessKeyId": "AKIAIOSFODNN7EXAMPLE"}));

    let (status, body) = app
        .patch(&format!("{TYPES}/{type_id}"), &token, &json!({"fields": [field("accessKeyId", true, true, "plain_text"), field("secretAccessKey", false, true, "password"), field("region", false, true, "plain_text")]}))
        .await;
    assert_eq!(status, 409, "a new required field blocks: {body}");
    assert!(text(&body, "/message").starts_with("1 credential"), "{body}");
    let (status, body) = app
        .patch(&format!("{TYPES}/{type_id}"), &token, &json!({"fields": [field("accessKeyId", true, true, "email"), field("secretAccessKey", false, true, "password")]}))
        .await;
    assert_eq!(
        status, 409,
        "values that do not parse as the new type block: {body}"
    );
    let (_, unchanged) = app
        .get(&format!("{CREDS}/{id}/secure-values"), Some(&token))
        .await;
    assert_eq!(
        unchanged["data"],
        json!({"accessKeyId": "AKIAIOSFODNN7EXAMPLE"}),
        "a refused change writes nothing"
    );
}

async fn deleting_a_type_deletes_its_credentials(mode: Mode) {
    let app = spawn_app(mode).await;
    let token = app.admin_token.clone();
    let (company, type_id) = app.company_and_aws_type("Cascade Co").await;
    let first = app.create_aws_credential(&type_id, &company, "a").await;
    let second = app.create_aws_credential(&type_id, &company, "b").await;
    assert_eq!(
        app.delete_status(&format!("{TYPES}/{type_id}"), &token).await,
        200
    );
    for id in [first, second] {
        assert_eq!(app.get_status(&format!("{CREDS}/{id}"), Some(&token)).await, 404);
    }
    assert_eq!(
        app.delete_status(&format!("{TYPES}/{type_id}"), &token).await,
        404
    );
}

async fn reveals_and_changes_are_audited_in_a_verifiable_chain(mode: Mode) {
    let app = spawn_app(mode).await;
    let token = app.admin_token.clone();
    let Seeded { company, id, .. } = app.seed_aws_credential("Audit Co", "audited").await;
    assert_eq!(
        app.get_status(&format!("{CREDS}/{id}/secure-values"), Some(&token))
            .await,
        200
    );
    let response = app
        .http
        .get(format!(
            "{}/v1/audit/events?action=credential.revealed&target={id}",
            app.address
        ))
        .bearer_auth(&token)
        .header("x-request-id", "reveal-audit-1")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    // Read-your-own-writes: the reveal's entry is listed, none pending (in the mesh too, where
    // it travels through the stream first).
    assert_eq!(
        response
            .headers()
            .get("x-audit-pending")
            .and_then(|v| v.to_str().ok()),
        Some("0")
    );
    let page: Value = response.json().await.expect("json");
    assert_eq!(page["pagination"]["totalRecords"], 1, "{page}");
    let entry = &page["data"][0];
    assert_eq!(entry["action"], "credential.revealed");
    assert_eq!(entry["credentialId"], id.as_str());
    assert_eq!(entry["companyId"], company.as_str());
    assert_eq!(entry["actor"]["kind"], "api_token");
    assert_eq!(entry["clientIp"], "127.0.0.1");
    let (_, all) = app.get("/v1/audit/events?rpp=100", Some(&token)).await;
    let actions = strings(&all["data"], "action");
    assert_eq!(
        actions,
        [
            "credential.revealed",
            "credential.created",
            "credential_type.created"
        ]
    );
    // A time range splits the log at the reveal: from it (inclusive) and before it.
    let at = entry["at"].as_str().expect("a time");
    let (_, since) = app
        .get(&format!("/v1/audit/events?rpp=100&from={at}"), Some(&token))
        .await;
    let (_, before) = app
        .get(&format!("/v1/audit/events?rpp=100&to={at}"), Some(&token))
        .await;
    let times = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .expect("entries")
            .iter()
            .filter_map(|e| e["at"].as_str().map(str::to_owned))
            .collect()
    };
    assert!(times(&since).iter().all(|t| t.as_str() >= at), "{since}");
    assert!(times(&before).iter().all(|t| t.as_str() < at), "{before}");
    assert_eq!(since["data"][0]["action"], "credential.revealed", "{since}");
    assert_eq!(times(&since).len() + times(&before).len(), 3);
    assert_eq!(app.get_status("/v1/audit/events?page=0", Some(&token)).await, 400);
    let weak = app.token_with(&["credential.*"]).await;
    assert_eq!(app.get_status("/v1/audit/events", Some(&weak)).await, 403);

    let (status, verified) = app.get("/v1/audit/verify", Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(
        verified["data"],
        json!({"valid": true, "entries": 3, "firstBrokenSeq": null, "verifiedFrom": 1, "complete": true, "pending": 0})
    );
    // Someone with access to the storage edits entry 2.
    app.edit_audit_entry(mode, 2, "credential.created", "credential.updated")
        .await;
    // Entries before the last verified one are re-read by a full verification.
    let (_, broken) = app.get("/v1/audit/verify?full=true", Some(&token)).await;
    assert_eq!(broken["data"]["valid"], false);
    assert_eq!(broken["data"]["firstBrokenSeq"], 2);
}

async fn a_ciphertext_moved_to_another_credential_does_not_open(mode: Mode) {
    let app = spawn_app(mode).await;
    let token = app.admin_token.clone();
    let (company, type_id) = app.company_and_aws_type("Swap Co").await;
    let first = app
        .create_aws_credential(&type_id, &company, "first-secret")
        .await;
    let second = app
        .create_aws_credential(&type_id, &company, "second-secret")
        .await;
    let store = app.store().await;
    let a = store
        .get("credentials", &first)
        .await
        .expect("read")
        .expect("first");
    store
        .update_one(
            "credentials",
            &ttscm_runtime::Filter::id(&second),
            &ttscm_runtime::Update::default().set("values", a["values"].clone()),
        )
        .await
        .expect("swapped");
    let (status, body) = app
        .get(&format!("{CREDS}/{second}/secure-values"), Some(&token))
        .await;
    assert_eq!(status, 500, "{body}");
    assert!(!body.to_string().contains("first-secret"));
    assert!(text(&body, "/message").contains("failed to open"), "{body}");
    assert_eq!(
        app.get(&format!("{CREDS}/{first}/secure-values"), Some(&token))
            .await
            .1["data"]["secretAccessKey"],
        "first-secret"
    );
}

/// Two credential replicas, each caching credentials: a change made through either is seen
/// through both at once — renames, new values, a type change that seals a field, a delete —
/// never an old value from a warm cache.
#[tokio::test]
async fn every_credential_replica_sees_a_change_at_once() {
    let mut app = spawn_app(Mode::Mesh).await;
    app.start_extra_replica(ttscm::Component::Credential);
    let token = app.admin_token.clone();
    let Seeded { type_id, id, .. } = app.seed_aws_credential("Acme Corp", "secret-one").await;
    let reveal = format!("{CREDS}/{id}/secure-values");
    let fetch = format!("{CREDS}/{id}");
    // Warm both replicas' caches (NATS spreads the queue group's requests).
    for _ in 0..20 {
        assert_eq!(
            app.get(&reveal, Some(&token)).await.1["data"]["secretAccessKey"],
            "secret-one"
        );
        assert_eq!(app.get_status(&fetch, Some(&token)).await, 200);
    }

    for round in 2..5 {
        let secret = format!("secret-{round}");
        let (status, body) = app
            .put(
                &format!("{CREDS}/{id}/fields"),
                &token,
                &json!({"fields": [
                    {"fieldId": "accessKeyId", "value": format!("AKIA-{round}")},
                    {"fieldId": "secretAccessKey", "value": secret}
                ]}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let name = format!("Prod {round}");
        let (status, body) = app.patch(&fetch, &token, &json!({"name": name})).await;
        assert_eq!(status, 200, "{body}");
        for _ in 0..10 {
            let (_, revealed) = app.get(&reveal, Some(&token)).await;
            assert_eq!(
                revealed["data"]["secretAccessKey"],
                secret.as_str(),
                "a stale replica answered"
            );
            let (_, fetched) = app.get(&fetch, Some(&token)).await;
            assert_eq!(fetched["data"]["name"], name.as_str(), "a stale replica answered");
            assert_eq!(fetched["data"]["fields"]["accessKeyId"], format!("AKIA-{round}"));
        }
    }

    // A type change that makes `accessKeyId` secure migrates the credential on one replica.
    let (status, body) = app
        .patch(
            &format!("{TYPES}/{type_id}"),
            &token,
            &json!({"fields": [
                {"id": "accessKeyId", "name": "Access Key ID", "required": true, "secure": true, "valueType": "plain_text"},
                {"id": "secretAccessKey", "name": "Secret Access Key", "required": true, "secure": true, "valueType": "password"}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for _ in 0..10 {
        let (_, fetched) = app.get(&fetch, Some(&token)).await;
        assert_eq!(fetched["data"]["fields"], json!({}), "a stale replica answered");
        let (_, revealed) = app.get(&reveal, Some(&token)).await;
        assert_eq!(revealed["data"]["accessKeyId"], "AKIA-4", "{revealed}");
    }

    let (status, _) = app.delete(&fetch, &token).await;
    assert_eq!(status, 200);
    for _ in 0..10 {
        for path in [&reveal, &fetch] {
            let status = app.get_status(path, Some(&token)).await;
            assert_eq!(status, 404, "a stale replica answered {path}");
        }
    }
}

/// Many reveals at once (and, in the mesh, through two credential replicas racing for the next
/// sequence number): every one answers 200 and is audited exactly once, in one unbroken chain.
async fn concurrent_reveals_are_each_audited_once_in_one_chain(mode: Mode) {
    let mut app = spawn_app(mode).await;
    if mode == Mode::Mesh {
        app.start_extra_replica(ttscm::Component::Credential);
    }
    let token = app.admin_token.clone();
    let Seeded { id, .. } = app.seed_aws_credential("Busy Co", "busy").await;
    const REVEALS: usize = 200;
    let reveals = (0..REVEALS).map(|n| {
        let request = app
            .http
            .get(format!("{}{CREDS}/{id}/secure-values", app.address))
            .bearer_auth(&token)
            .header("x-request-id", format!("busy-{n}"))
            .send();
        async move {
            let response = request.await.expect("sent");
            (response.status().as_u16(), response.text().await.expect("body"))
        }
    });
    let answers = futures_util::future::join_all(reveals).await;
    let failed: Vec<&(u16, String)> = answers.iter().filter(|(status, _)| *status != 200).collect();
    assert!(failed.is_empty(), "{failed:?}");

    let (status, verified) = app.get("/v1/audit/verify", Some(&token)).await;
    assert_eq!(status, 200);
    // The type, the credential, and each reveal.
    assert_eq!(
        verified["data"],
        json!({"valid": true, "entries": REVEALS + 2, "firstBrokenSeq": null, "verifiedFrom": 1, "complete": true, "pending": 0})
    );
    let mut request_ids = Vec::new();
    for page in 1..=3 {
        let (_, entries) = app
            .get(
                &format!("/v1/audit/events?action=credential.revealed&rpp=100&page={page}"),
                Some(&token),
            )
            .await;
        for entry in entries["data"].as_array().expect("entries") {
            request_ids.push(entry["requestId"].as_str().expect("request id").to_owned());
        }
    }
    request_ids.sort();
    let mut expected: Vec<String> = (0..REVEALS).map(|n| format!("busy-{n}")).collect();
    expected.sort();
    assert_eq!(request_ids, expected, "each reveal audited exactly once");
}

/// A burst of renames of one credential: each waits its turn in the credential service and
/// then writes the credential as the one before left it, so every one answers 200 with its own
/// name and is audited; none runs out of attempts (409) because the others kept winning. In
/// the mesh through two credential replicas, whose writers do race for the conditional write:
/// a loser tries again until its deadline — with eight attempts, 150 renames ended in 409s.
/// The renames of one credential go one at a time, so the last waits for all the others: the
/// deadline is 30 s here, or a loaded machine turns the burst's tail into 504s (10 s did, with
/// one core kept busy beside the suite).
async fn a_burst_of_renames_of_one_credential_all_succeed(mode: Mode) {
    let mut app = spawn_app_with(mode, |settings| settings.request_timeout_ms = 30_000).await;
    if mode == Mode::Mesh {
        app.start_extra_replica(ttscm::Component::Credential);
    }
    let token = app.admin_token.clone();
    let Seeded { id, .. } = app.seed_aws_credential("Renamed Co", "renamed").await;
    const RENAMES: usize = 150;
    let renames = (0..RENAMES).map(|n| {
        let (app, token, id) = (&app, &token, &id);
        async move {
            let name = format!("Name {n}");
            let (status, body) = app
                .patch(&format!("{CREDS}/{id}"), token, &json!({ "name": name }))
                .await;
            (status, body["data"]["name"].clone(), name)
        }
    });
    let answers = futures_util::future::join_all(renames).await;
    let wrong: Vec<_> = answers
        .iter()
        .filter(|(status, answered, name)| *status != 200 || answered != name.as_str())
        .collect();
    assert!(wrong.is_empty(), "{wrong:?}");
    // Each audited (in the mesh the entries may still be on their way from the stream).
    let started = std::time::Instant::now();
    loop {
        let (_, entries) = app
            .get(
                &format!("/v1/audit/events?action=credential.updated&target={id}&rpp=100"),
                Some(&token),
            )
            .await;
        if entries["pagination"]["totalRecords"] == RENAMES {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{entries}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

both_modes!(
    a_burst_of_renames_of_one_credential_all_succeed,
    concurrent_reveals_are_each_audited_once_in_one_chain,
    a_credential_type_goes_through_its_whole_life,
    bad_type_definitions_are_refused_with_paths,
    a_credential_goes_through_its_whole_life,
    bad_credentials_are_refused_with_paths_and_nothing_is_written,
    malformed_bodies_get_clear_4xx_answers,
    a_type_scope_guards_every_access_to_its_credentials,
    changing_a_type_migrates_or_refuses_existing_values,
    deleting_a_type_deletes_its_credentials,
    reveals_and_changes_are_audited_in_a_verifiable_chain,
    a_ciphertext_moved_to_another_credential_does_not_open,
);
