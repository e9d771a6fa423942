//! Path parameters end to end, in both modes: they reach the services percent-decoded (a
//! credential type fetched by a name with a space, with non-ASCII letters or with a `/`;
//! credentials, companies and roles by ids written with escapes), and a parameter that does not
//! decode — a malformed escape, bytes that are not UTF-8, a control character, a `/` in an id —
//! is a 400 in the spec's error envelope naming the parameter, never a 404 or a 500.

use crate::support;

use serde_json::{Value, json};
use support::{Mode, TestApp, spawn_app};

const TYPES: &str = "/v1/credential-type/credential-types";
const CREDS: &str = "/v1/credential/credentials";
const COMPANIES: &str = "/v1/company/companies";
const ROLES: &str = "/v1/role/roles";

/// Percent-encodes every byte of `value` but ASCII letters and digits (more than a client
/// must, to show that any escape decodes).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Percent-encodes every byte of `value`, letters and digits too (`c1` → `%63%31`).
fn encode_all(value: &str) -> String {
    value.bytes().map(|b| format!("%{b:02x}")).collect()
}

/// Creates a credential type named `name` with one plain field; answers its id.
async fn create_type(app: &TestApp, name: &str) -> String {
    let (status, body) = app
        .post(
            TYPES,
            &app.admin_token,
            &json!({
                "name": name,
                "fields": [{"id": "user", "name": "User", "required": true, "secure": false, "valueType": "plain_text"}]
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["data"]["id"].as_str().expect("type id").to_owned()
}

/// Asserts the 400 a bad path parameter gets: the spec's error envelope, naming `param`.
fn assert_bad_parameter(path: &str, (status, body): (u16, Value), param: &str) {
    assert_eq!(status, 400, "{path}: {body}");
    assert_eq!(body["status"], 400, "{path}: {body}");
    assert_eq!(body["successful"], false, "{path}: {body}");
    assert_eq!(body["message"], "Invalid path parameter", "{path}: {body}");
    assert_eq!(body["errors"][0]["path"], json!([param]), "{path}: {body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(&format!("the path parameter {param} "))),
        "{path}: {body}"
    );
}

async fn credential_types_are_fetched_by_names_with_spaces_non_ascii_and_slashes(mode: Mode) {
    let app = spawn_app(mode).await;
    for name in ["My Type", "Zugänge Büro", "AC/DC Admin", "50% off + more"] {
        let id = create_type(&app, name).await;
        for path in [
            format!("{TYPES}/{}", encode(name)),
            format!("{TYPES}/{}", encode(&name.to_uppercase())),
            format!("{TYPES}/{}", encode_all(&id)),
        ] {
            let (status, body) = app.get(&path, Some(&app.admin_token)).await;
            assert_eq!(status, 200, "{path}: {body}");
            assert_eq!(body["data"]["id"], id.as_str(), "{path}");
            assert_eq!(body["data"]["name"], name, "{path}");
        }
    }
    // Only a space, encoded, is no name of any type: not found, as the literal would be.
    let (status, body) = app.get(&format!("{TYPES}/%20"), Some(&app.admin_token)).await;
    assert_eq!(status, 404, "{body}");
    // A `+` is a plus in a path, not a space.
    let (status, _) = app.get(&format!("{TYPES}/My+Type"), Some(&app.admin_token)).await;
    assert_eq!(status, 404);
}

async fn ids_written_with_escapes_reach_credentials_companies_types_and_roles(mode: Mode) {
    let app = spawn_app(mode).await;
    let seeded = app.seed_aws_credential("Müller & Söhne GmbH", "s3cr3t").await;
    let token = &app.admin_token;
    let credential = encode_all(&seeded.id);
    for path in [
        format!("{CREDS}/{credential}"),
        format!("{CREDS}/{credential}/fields"),
        format!("{CREDS}/{credential}/secure-values"),
        format!("{CREDS}/company/{}", encode_all(&seeded.company)),
        format!("{COMPANIES}/{}", encode_all(&seeded.company)),
        format!("{TYPES}/{}/credentials", encode_all(&seeded.type_id)),
    ] {
        let (status, body) = app.get(&path, Some(token)).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, body) = app
        .patch(
            &format!("{CREDS}/{credential}"),
            token,
            &json!({"name": "Renamed"}),
        )
        .await;
    assert_eq!(
        (status, &body["data"]["name"]),
        (200, &json!("Renamed")),
        "{body}"
    );

    let (status, body) = app
        .post(
            ROLES,
            token,
            &json!({"name": "readers", "permissions": ["credential.fetch"]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let role = body["data"]["id"].as_str().expect("role id");
    let path = format!("{ROLES}/{}", encode_all(role));
    let (status, body) = app
        .patch(
            &path,
            token,
            &json!({"permissions": ["credential.fetch", "credential.fetch.many"]}),
        )
        .await;
    assert_eq!(status, 200, "{path}: {body}");
    assert_eq!(app.delete_status(&path, token).await, 200, "{path}");
    assert_eq!(
        app.delete_status(&format!("{CREDS}/{credential}"), token).await,
        200
    );
}

async fn malformed_path_parameters_are_a_400_in_the_envelope(mode: Mode) {
    let app = spawn_app(mode).await;
    let token = &app.admin_token;
    for (path, param) in [
        (format!("{TYPES}/%ZZ"), "identifier"),
        (format!("{TYPES}/%C3%28"), "identifier"),
        (format!("{TYPES}/Type%"), "identifier"),
        (format!("{TYPES}/Type%4"), "identifier"),
        (format!("{TYPES}/%FF%FE"), "identifier"),
        (format!("{TYPES}/a%00b"), "identifier"),
        (format!("{TYPES}/a%0Ab"), "identifier"),
        (format!("{TYPES}/%ZZ/credentials"), "id"),
        (format!("{CREDS}/%ZZ"), "id"),
        (format!("{CREDS}/%C3%28/fields"), "id"),
        (format!("{CREDS}/a%2Fb"), "id"),
        (format!("{CREDS}/a%2fb/secure-values"), "id"),
        (format!("{CREDS}/company/%C3%28"), "companyId"),
        (format!("{COMPANIES}/%ZZ"), "identifier"),
        (format!("{COMPANIES}/%E2%82/configurations"), "identifier"),
    ] {
        assert_bad_parameter(&path, app.get(&path, Some(token)).await, param);
    }
    let body = json!({"name": "x"});
    for (method, path, param) in [
        (reqwest::Method::PATCH, format!("{TYPES}/%ZZ"), "id"),
        (reqwest::Method::DELETE, format!("{TYPES}/%C3%28"), "id"),
        (reqwest::Method::PATCH, format!("{CREDS}/a%2Fb"), "id"),
        (reqwest::Method::PUT, format!("{CREDS}/%ZZ/fields"), "id"),
        (reqwest::Method::DELETE, format!("{CREDS}/%1F"), "id"),
        (reqwest::Method::PATCH, format!("{COMPANIES}/%C3%28"), "id"),
        (reqwest::Method::DELETE, format!("{COMPANIES}/%ZZ"), "id"),
        (reqwest::Method::PATCH, format!("{ROLES}/%ZZ"), "id"),
        (reqwest::Method::DELETE, format!("{ROLES}/%C3%28"), "id"),
        (reqwest::Method::PUT, "/v1/user/users/%ZZ/roles".to_owned(), "id"),
    ] {
        let answer = app.json(method.clone(), &path, token, &body).await;
        assert_bad_parameter(&format!("{method} {path}"), answer, param);
    }
    // The access check comes first: a caller without a token learns nothing about the path.
    let (status, body) = app.get(&format!("{CREDS}/%ZZ"), None).await;
    assert_eq!(status, 401, "{body}");
}

both_modes!(
    credential_types_are_fetched_by_names_with_spaces_non_ascii_and_slashes,
    ids_written_with_escapes_reach_credentials_companies_types_and_roles,
    malformed_path_parameters_are_a_400_in_the_envelope,
);
