//! Retries that cannot duplicate (issue 20), in both modes: a create sent again with the same
//! `Idempotency-Key` answers the first result and stores no second copy (credentials, types,
//! companies, roles); the same key with another body is 422; keys are scoped to the caller.

use crate::support;

use serde_json::{Value, json};
use support::{Mode, TestApp, spawn_app};

/// POSTs `body` to `path` as `token` with `key`: status and body.
async fn post_with_key(app: &TestApp, path: &str, token: &str, key: &str, body: &Value) -> (u16, Value) {
    let response = app
        .http
        .post(format!("{}{path}", app.address))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

async fn count(app: &TestApp, collection: &str, field: &str, value: &str) -> u64 {
    app.store()
        .await
        .count(collection, &ttscm_runtime::Filter::eq(field, value))
        .await
        .expect("counted")
}

async fn a_retried_create_answers_the_first_result_and_stores_one(mode: Mode) {
    let app = spawn_app(mode).await;
    let (company, type_id) = app.company_and_aws_type("Retry Co").await;
    let credential = json!({
        "name": "Retried", "typeId": type_id, "companyId": company,
        "fields": [{"fieldId": "accessKeyId", "value": "AKIA"}, {"fieldId": "secretAccessKey", "value": "s"}]
    });
    let path = "/v1/credential/credentials";
    let (first_status, first) = post_with_key(&app, path, &app.admin_token, "retry-1", &credential).await;
    assert_eq!(first_status, 201, "{first}");
    let (again_status, again) = post_with_key(&app, path, &app.admin_token, "retry-1", &credential).await;
    assert_eq!(again_status, 201, "{again}");
    assert_eq!(
        again["data"]["id"], first["data"]["id"],
        "the first result, not a second copy"
    );
    assert_eq!(count(&app, "credentials", "name", "Retried").await, 1);

    // The same key with another body is refused; a new key creates.
    let mut other = credential.clone();
    other["name"] = json!("Other");
    let (status, refused) = post_with_key(&app, path, &app.admin_token, "retry-1", &other).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["successful"], false);
    let (status, _) = post_with_key(&app, path, &app.admin_token, "retry-2", &other).await;
    assert_eq!(status, 201);

    // Keys are the caller's: another caller's same key is another request.
    let creator = app.token_with(&["credential.create", "company.fetch"]).await;
    let (status, theirs) = post_with_key(&app, path, &creator, "retry-1", &credential).await;
    assert_eq!(status, 201, "{theirs}");
    assert_ne!(theirs["data"]["id"], first["data"]["id"]);
    assert_eq!(count(&app, "credentials", "name", "Retried").await, 2);

    // A create that failed gives its key up: the corrected retry runs.
    let mut broken = credential.clone();
    broken["typeId"] = json!("no-such-type");
    let (status, _) = post_with_key(&app, path, &app.admin_token, "retry-3", &broken).await;
    assert_eq!(status, 400);
    let (status, _) = post_with_key(&app, path, &app.admin_token, "retry-3", &broken).await;
    assert_eq!(status, 400, "a failure is not stored as the answer");

    // A bad key is a 400 naming the header.
    let long = "k".repeat(300);
    let (status, body) = post_with_key(&app, path, &app.admin_token, &long, &credential).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["path"], json!(["Idempotency-Key"]));
}

async fn types_companies_and_roles_are_idempotent_too(mode: Mode) {
    let app = spawn_app(mode).await;
    let token = app.admin_token.clone();
    let type_body =
        json!({"name": "Idem Type", "fields": [{"id": "a", "name": "A", "valueType": "plain_text"}]});
    let company_body = json!({"name": "Idem Company"});
    let role_body = json!({"name": "idem-role", "permissions": ["company.fetch"]});
    for (path, body) in [
        ("/v1/credential-type/credential-types", &type_body),
        ("/v1/company/companies", &company_body),
        ("/v1/role/roles", &role_body),
    ] {
        let (first_status, first) = post_with_key(&app, path, &token, "same", body).await;
        assert_eq!(first_status, 201, "{path}: {first}");
        let (again_status, again) = post_with_key(&app, path, &token, "same", body).await;
        assert_eq!(again_status, 201, "{path}: {again}");
        assert_eq!(again["data"]["id"], first["data"]["id"], "{path}");
    }
    assert_eq!(count(&app, "credential_types", "name", "Idem Type").await, 1);
    assert_eq!(count(&app, "companies", "name", "Idem Company").await, 1);
    assert_eq!(count(&app, "roles", "name", "idem-role").await, 1);
}

both_modes!(
    a_retried_create_answers_the_first_result_and_stores_one,
    types_companies_and_roles_are_idempotent_too
);
