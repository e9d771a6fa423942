//! Delegation that cannot escalate (issue 18), in both modes: a caller creates, changes, grants
//! or deletes only roles whose permissions it holds entirely, nobody changes their own roles,
//! and deleting a credential type needs its scope and `credential.delete`; a type change that
//! makes secure values plaintext or removes them needs `credential.secure_values.read` and the
//! type's scope, and is audited per credential; bootstrap admins are matched by (tenant, object
//! id), by e-mail only in `TENANT_ID`'s tenant at the first sign-in, and granted once.

use crate::support;

use serde_json::{Value, json};
use support::{Mode, TestApp, spawn_app, spawn_app_with_sign_in};
use ttscm_testkit::oidc;

const ROLES: &str = "/v1/role/roles";
const TYPES: &str = "/v1/credential-type/credential-types";
const CREDS: &str = "/v1/credential/credentials";

/// What a role administrator without `*` holds.
const DELEGATE: &[&str] = &["user.roles.update", "user.fetch.many", "role.*"];

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", ttscm_runtime::ids::new_id())
}

/// The path of a user's roles.
fn roles_of(user_id: &str) -> String {
    format!("/v1/user/users/{user_id}/roles")
}

/// A user's roles as stored.
async fn stored_roles(app: &TestApp, user_id: &str) -> Vec<String> {
    ttscm_identity::users::get_user(&app.store().await, user_id)
        .await
        .expect("store answers")
        .expect("user exists")
        .roles
}

/// The id and permissions of the role `name`, as the API lists it (`None` when absent).
async fn role(app: &TestApp, name: &str) -> Option<(String, Value)> {
    let (status, body) = app.get(ROLES, Some(&app.admin_token)).await;
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|r| r["name"] == name)
        .map(|r| (r["id"].as_str().expect("id").to_owned(), r["permissions"].clone()))
}

/// Asserts a 403 in the spec's error shape whose message names `missing`.
fn assert_refused(status: u16, body: &Value, missing: &str) {
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["status"], 403, "{body}");
    assert_eq!(body["successful"], false, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("\"{missing}\"")),
        "the refusal names {missing}: {body}"
    );
}

async fn a_delegate_cannot_grant_admin_to_anyone_or_itself(mode: Mode) {
    let app = spawn_app(mode).await;
    let token = app.token_with(DELEGATE).await;
    let alice = app.signed_in_user(&[]).await;
    let (status, body) = app
        .put(&roles_of(&alice.user_id), &token, &json!({"roles": ["admin"]}))
        .await;
    assert_refused(status, &body, "*");
    assert_eq!(
        body["message"],
        "You cannot grant role \"admin\": it holds \"*\", which you do not hold"
    );
    assert!(stored_roles(&app, &alice.user_id).await.is_empty());
    // Nor take it away from an admin (taking a role away needs its permissions as well).
    let boss = app.signed_in_user(&["admin"]).await;
    let (status, body) = app
        .put(&roles_of(&boss.user_id), &token, &json!({"roles": []}))
        .await;
    assert_refused(status, &body, "*");
    assert_eq!(stored_roles(&app, &boss.user_id).await, ["admin"]);

    // A signed-in delegate cannot make itself admin either.
    let delegate_role = unique("delegate");
    app.create_role(&delegate_role, DELEGATE).await;
    let bob = app.signed_in_user(&[&delegate_role]).await;
    let (status, body) = app
        .put(
            &roles_of(&bob.user_id),
            &bob.access_token,
            &json!({"roles": [delegate_role, "admin"]}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(stored_roles(&app, &bob.user_id).await, [delegate_role]);
}

async fn a_delegate_cannot_create_a_role_it_lacks_or_grant_one(mode: Mode) {
    let app = spawn_app(mode).await;
    let token = app.token_with(DELEGATE).await;
    let ops = unique("ops");
    let (status, body) = app
        .post(
            ROLES,
            &token,
            &json!({"name": ops, "permissions": ["role.fetch.many", "credential.delete"]}),
        )
        .await;
    assert_refused(status, &body, "credential.delete");
    assert!(role(&app, &ops).await.is_none(), "a refused role is not created");

    // The same role made by an admin cannot be granted by the delegate.
    app.create_role(&ops, &["credential.delete"]).await;
    let alice = app.signed_in_user(&[]).await;
    let (status, body) = app
        .put(&roles_of(&alice.user_id), &token, &json!({"roles": [ops]}))
        .await;
    assert_refused(status, &body, "credential.delete");
    assert_eq!(
        body["message"],
        format!("You cannot grant role \"{ops}\": it holds \"credential.delete\", which you do not hold")
    );
    assert!(stored_roles(&app, &alice.user_id).await.is_empty());
}

async fn a_delegate_cannot_widen_or_remove_a_role_beyond_its_own(mode: Mode) {
    let app = spawn_app(mode).await;
    let own = unique("delegate");
    app.create_role(&own, DELEGATE).await;
    let token = app.create_token("delegate", &[&own], None).await;
    let (own_id, _) = role(&app, &own).await.expect("the role exists");
    let own_path = format!("{ROLES}/{own_id}");

    // Adding `*` (or any permission it lacks) to the role it holds itself.
    let mut widened: Vec<&str> = DELEGATE.to_vec();
    widened.push("*");
    let (status, body) = app
        .patch(&own_path, &token, &json!({"permissions": widened}))
        .await;
    assert_refused(status, &body, "*");
    let mut widened: Vec<&str> = DELEGATE.to_vec();
    widened.push("credential.fetch");
    let (status, body) = app
        .patch(&own_path, &token, &json!({"permissions": widened}))
        .await;
    assert_refused(status, &body, "credential.fetch");
    assert_eq!(
        role(&app, &own).await.expect("still there").1,
        json!(DELEGATE),
        "a refused change writes nothing"
    );
    assert_eq!(
        app.get_status(TYPES, Some(&token)).await,
        403,
        "the token gained nothing"
    );

    // A role holding more than the caller can be neither narrowed nor deleted by it.
    let big = unique("big");
    app.create_role(&big, &["credential.delete"]).await;
    let (big_id, _) = role(&app, &big).await.expect("the role exists");
    let big_path = format!("{ROLES}/{big_id}");
    let (status, body) = app.patch(&big_path, &token, &json!({"permissions": []})).await;
    assert_refused(status, &body, "credential.delete");
    let (status, body) = app.delete(&big_path, &token).await;
    assert_refused(status, &body, "credential.delete");
    assert_eq!(
        role(&app, &big).await.expect("still there").1,
        json!(["credential.delete"])
    );
}

async fn a_user_cannot_change_their_own_roles(mode: Mode) {
    let app = spawn_app(mode).await;
    // Not even an admin: neither adding nor dropping.
    let boss = app.signed_in_user(&["admin"]).await;
    for roles in [json!([]), json!(["admin"])] {
        let (status, body) = app
            .put(
                &roles_of(&boss.user_id),
                &boss.access_token,
                &json!({ "roles": roles }),
            )
            .await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["successful"], false, "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("your own roles"),
            "{body}"
        );
    }
    assert_eq!(stored_roles(&app, &boss.user_id).await, ["admin"]);
    // The same admin changes someone else's roles.
    let alice = app.signed_in_user(&[]).await;
    let (status, body) = app
        .put(
            &roles_of(&alice.user_id),
            &boss.access_token,
            &json!({"roles": ["admin"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn a_caller_holding_every_permission_of_a_role_can_grant_it(mode: Mode) {
    let app = spawn_app(mode).await;
    let mut held: Vec<&str> = DELEGATE.to_vec();
    held.push("credential.*");
    let token = app.token_with(&held).await;

    // Wildcards: `credential.*` covers `credential.fetch` and `credential.*` itself.
    let reader = unique("reader");
    app.create_role(&reader, &["credential.fetch", "credential.*"])
        .await;
    let alice = app.signed_in_user(&[]).await;
    let (status, body) = app
        .put(&roles_of(&alice.user_id), &token, &json!({"roles": [reader]}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        stored_roles(&app, &alice.user_id).await,
        std::slice::from_ref(&reader)
    );

    let made = unique("made");
    let (status, body) = app
        .post(
            ROLES,
            &token,
            &json!({"name": made, "permissions": ["credential.fetch.many"]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let path = format!("{ROLES}/{}", body["data"]["id"].as_str().expect("id"));
    let (status, body) = app
        .patch(
            &path,
            &token,
            &json!({"permissions": ["credential.delete", "role.fetch.many"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.delete_status(&path, &token).await, 200);
}

async fn deleting_a_scoped_type_needs_its_scope_and_credential_delete(mode: Mode) {
    let app = spawn_app(mode).await;
    let company = app.seed_company("Scoped Delete Co").await;
    let type_id = app.create_aws_type(Some("aws.credentials")).await;
    let credential = app.create_aws_credential(&type_id, &company, "s3cr3t").await;
    let type_path = format!("{TYPES}/{type_id}");
    let credential_path = format!("{CREDS}/{credential}");

    let no_scope = app.token_with(&["credential_type.*", "credential.delete"]).await;
    let (status, body) = app.delete(&type_path, &no_scope).await;
    assert_refused(status, &body, "aws.credentials");
    let no_delete = app.token_with(&["credential_type.*", "aws.*"]).await;
    let (status, body) = app.delete(&type_path, &no_delete).await;
    assert_refused(status, &body, "credential.delete");
    for what in [&type_path, &credential_path] {
        assert_eq!(
            app.get_status(what, Some(&app.admin_token)).await,
            200,
            "{what} remains after refused deletes"
        );
    }

    let both = app
        .token_with(&["credential_type.*", "credential.delete", "aws.*"])
        .await;
    assert_eq!(app.delete_status(&type_path, &both).await, 200);
    for what in [&type_path, &credential_path] {
        assert_eq!(app.get_status(what, Some(&app.admin_token)).await, 404, "{what}");
    }
}

/// The AWS-like type's fields with `secretAccessKey` made non-secure (`Some(false)`) or removed
/// (`None`).
fn aws_fields_with_secret(secure: Option<bool>) -> Value {
    let mut fields = vec![
        json!({"id": "accessKeyId", "name": "Access Key ID", "required": true, "secure": false, "valueType": "plain_text"}),
        json!({"id": "notes", "name": "Notes", "required": false, "secure": false, "valueType": "note"}),
    ];
    if let Some(secure) = secure {
        fields.push(json!({"id": "secretAccessKey", "name": "Secret Access Key", "required": true, "secure": secure, "valueType": "password"}));
    }
    Value::Array(fields)
}

/// The stored value of `field_id` as `GET …/fields` shows it (`None` when absent).
async fn field_value(app: &TestApp, credential: &str, field_id: &str) -> Option<String> {
    let (status, body) = app
        .get(&format!("{CREDS}/{credential}/fields"), Some(&app.admin_token))
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|v| v["fieldId"] == field_id)
        .map(|v| v["value"].as_str().expect("a string").to_owned())
}

/// The credentials the audit log names for `action` (newest first).
async fn audited(app: &TestApp, action: &str) -> Vec<String> {
    let mut ids: Vec<String> = app
        .audit_entries(action)
        .await
        .iter()
        .map(|e| e["credentialId"].as_str().expect("credential id").to_owned())
        .collect();
    ids.sort();
    ids
}

/// Two credentials of a fresh AWS-like type (scope `scope`) holding `s3cr3t-1` and `s3cr3t-2`,
/// and a third of another type; answers the type and the two.
async fn two_sealed_credentials(app: &TestApp, scope: Option<&str>) -> (String, Vec<String>) {
    let company = app.seed_company("Unsealing Co").await;
    let type_id = app.create_aws_type(scope).await;
    let mut credentials = Vec::new();
    for secret in ["s3cr3t-1", "s3cr3t-2"] {
        credentials.push(app.create_aws_credential(&type_id, &company, secret).await);
    }
    let other = app.create_aws_type(None).await;
    app.create_aws_credential(&other, &company, "elsewhere").await;
    credentials.sort();
    (type_id, credentials)
}

async fn making_a_secure_field_plain_needs_secure_values_read_and_is_audited_per_credential(mode: Mode) {
    let app = spawn_app(mode).await;
    let (type_id, credentials) = two_sealed_credentials(&app, Some("aws.credentials")).await;
    let path = format!("{TYPES}/{type_id}");
    let change = json!({"fields": aws_fields_with_secret(Some(false))});

    for (token, missing) in [
        (
            app.token_with(&["credential_type.*", "credential.fetch", "aws.*"])
                .await,
            "credential.secure_values.read",
        ),
        (
            app.token_with(&["credential_type.*", "credential.*"]).await,
            "aws.credentials",
        ),
    ] {
        let (status, body) = app.patch(&path, &token, &change).await;
        assert_refused(status, &body, missing);
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("\"secretAccessKey\""),
            "the refusal names the field: {body}"
        );
    }
    for (credential, secret) in credentials.iter().zip(["s3cr3t-1", "s3cr3t-2"]) {
        let stored = field_value(&app, credential, "secretAccessKey")
            .await
            .expect("the value remains");
        assert!(!stored.is_empty());
        assert!(
            !stored.contains(secret),
            "a refused change leaves the value sealed: {stored}"
        );
    }
    let (_, got) = app.get(&path, Some(&app.admin_token)).await;
    assert_eq!(got["data"]["fields"][1]["secure"], true, "{got}");
    assert!(audited(&app, "credential.unsealed").await.is_empty());

    let allowed = app
        .token_with(&["credential_type.*", "credential.secure_values.read", "aws.*"])
        .await;
    let (status, body) = app.patch(&path, &allowed, &change).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(audited(&app, "credential.unsealed").await, credentials);
    let mut opened = Vec::new();
    for credential in &credentials {
        opened.push(
            field_value(&app, credential, "secretAccessKey")
                .await
                .expect("kept"),
        );
    }
    opened.sort();
    assert_eq!(
        opened,
        ["s3cr3t-1", "s3cr3t-2"],
        "now plaintext at rest, on record"
    );
}

async fn removing_a_secure_field_needs_secure_values_read_and_is_audited_per_credential(mode: Mode) {
    let app = spawn_app(mode).await;
    let (type_id, credentials) = two_sealed_credentials(&app, None).await;
    let path = format!("{TYPES}/{type_id}");
    let change = json!({"fields": aws_fields_with_secret(None)});

    let token = app.token_with(&["credential_type.*", "credential.*"]).await;
    let without = app
        .token_with(&["credential_type.update", "credential.fetch", "credential.delete"])
        .await;
    let (status, body) = app.patch(&path, &without, &change).await;
    assert_refused(status, &body, "credential.secure_values.read");
    for credential in &credentials {
        let stored = field_value(&app, credential, "secretAccessKey").await;
        assert!(
            stored.is_some_and(|v| !v.is_empty() && !v.starts_with("s3cr3t")),
            "a refused change leaves the sealed value in place"
        );
    }
    assert!(audited(&app, "credential.values_removed").await.is_empty());

    let (status, body) = app.patch(&path, &token, &change).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(audited(&app, "credential.values_removed").await, credentials);
    for credential in &credentials {
        assert_eq!(field_value(&app, credential, "secretAccessKey").await, None);
    }

    // Changes that keep secure fields secure need nothing more and record no such entry.
    let other = app.create_aws_type(None).await;
    let renamed = app
        .patch(
            &format!("{TYPES}/{other}"),
            &without,
            &json!({"name": unique("Renamed")}),
        )
        .await;
    assert_eq!(renamed.0, 200, "{}", renamed.1);
}

/// Signs in as `login` at the test provider (JSON answer of the redirect): the data.
async fn sign_in(app: &TestApp, login: &str) -> Value {
    let (status, body) = app.get("/v1/auth/uri", None).await;
    assert_eq!(status, 200, "{body}");
    let location = oidc::sign_in(body["data"]["uri"].as_str().expect("uri"), login).await;
    let response = app.follow_provider_redirect(&app.address, &location, true).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    body["data"].clone()
}

/// Signs in as `login`: its user id and roles.
async fn signed_in_roles(app: &TestApp, login: &str) -> (String, Value) {
    let data = sign_in(app, login).await;
    (
        data["user"]["id"].as_str().expect("id").to_owned(),
        data["user"]["roles"].clone(),
    )
}

async fn bootstrap_admins_are_granted_once_and_a_demotion_sticks(mode: Mode) {
    let app = spawn_app_with_sign_in(mode, |settings| {
        settings.entra.tenant_id = Some(oidc::TEST_TENANT.into());
        settings.identity.admin_object_ids = vec![
            format!("{}:{}", oidc::TEST_TENANT, oidc::object_id("boss")),
            oidc::object_id("carol"),
        ];
        settings.identity.admin_emails = vec!["Chief@Contoso.example".into()];
    })
    .await;
    // `tid:oid`, a bare oid in TENANT_ID's tenant, an e-mail in it at the first sign-in.
    let mut admins = Vec::new();
    for login in ["boss", "carol", "chief"] {
        let (id, roles) = signed_in_roles(&app, login).await;
        assert_eq!(roles, json!(["admin"]), "{login} is a bootstrap admin");
        admins.push(id);
    }
    let (_, roles) = signed_in_roles(&app, "alice").await;
    assert_eq!(roles, json!([]));

    // Another admin demotes them all; signing in again grants nothing.
    for id in &admins {
        let (status, body) = app
            .put(&roles_of(id), &app.admin_token, &json!({"roles": []}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    for (login, id) in ["boss", "carol", "chief"].into_iter().zip(&admins) {
        let (again, roles) = signed_in_roles(&app, login).await;
        assert_eq!(&again, id);
        assert_eq!(roles, json!([]), "{login} stays demoted");
        assert!(stored_roles(&app, id).await.is_empty());
    }
}

async fn bootstrap_entries_match_only_in_the_configured_tenant(mode: Mode) {
    const OTHER_TENANT: &str = "99999999-8888-7777-6666-555555555555";
    let app = spawn_app_with_sign_in(mode, |settings| {
        // The provider's accounts are of TEST_TENANT, not TENANT_ID's.
        settings.entra.tenant_id = Some(OTHER_TENANT.into());
        settings.identity.admin_emails = vec!["boss@contoso.example".into()];
        settings.identity.admin_object_ids = vec![
            oidc::object_id("carol"),
            format!("{OTHER_TENANT}:{}", oidc::object_id("dave")),
        ];
    })
    .await;
    for login in ["boss", "carol", "dave"] {
        let (id, roles) = signed_in_roles(&app, login).await;
        assert_eq!(roles, json!([]), "{login} of another tenant is not an admin");
        assert!(stored_roles(&app, &id).await.is_empty());
    }
}

async fn bootstrap_e_mails_match_nobody_without_a_tenant_id(mode: Mode) {
    let app = spawn_app_with_sign_in(mode, |settings| {
        settings.entra.tenant_id = None;
        settings.identity.admin_emails = vec!["boss@contoso.example".into()];
        settings.identity.admin_object_ids = vec![oidc::object_id("carol")];
    })
    .await;
    for login in ["boss", "carol"] {
        let (_, roles) = signed_in_roles(&app, login).await;
        assert_eq!(roles, json!([]), "{login}");
    }
}

/// A role is deleted only while nobody holds it, and its name is never reused: a grant racing the
/// delete either makes the delete answer 409, or leaves at most a dead name that grants nothing,
/// and no later role of that name can be created (so nobody silently gains it).
async fn a_grant_racing_a_role_delete_never_gains_a_later_role_of_that_name(mode: Mode) {
    let app = spawn_app(mode).await;
    let store = app.store().await;
    let alice = app.signed_in_user(&[]).await;
    let (mut refused, mut deleted) = (0, 0);
    for _ in 0..12 {
        let name = unique("racy");
        app.create_role(&name, &["credential.delete"]).await;
        let (id, _) = role(&app, &name).await.expect("the role exists");
        let path = format!("{ROLES}/{id}");
        let roles_path = roles_of(&alice.user_id);
        let grant_body = json!({"roles": [name]});
        let grant = app.put(&roles_path, &app.admin_token, &grant_body);
        let delete = app.delete(&path, &app.admin_token);
        let ((grant_status, grant_body), (delete_status, delete_body)) = tokio::join!(grant, delete);
        assert!(grant_status < 500, "{grant_body}");
        let held = stored_roles(&app, &alice.user_id).await;
        let permissions = ttscm_identity::store::permissions_of(&store, &held)
            .await
            .expect("store answers");
        if delete_status == 409 {
            refused += 1;
            assert!(held.contains(&name), "a 409 means alice holds the role: {held:?}");
            assert!(permissions.grants("credential.delete"));
        } else {
            deleted += 1;
            assert_eq!(delete_status, 200, "{delete_body}");
            assert!(
                !permissions.grants("credential.delete"),
                "a deleted role grants nothing (alice holds {held:?})"
            );
            assert!(role(&app, &name).await.is_none(), "a deleted role is not listed");
            // The name cannot be reused, so a dead name alice may hold never comes alive.
            let (status, body) = app
                .post(
                    ROLES,
                    &app.admin_token,
                    &json!({"name": name, "permissions": ["credential.delete"]}),
                )
                .await;
            assert_eq!(status, 409, "{body}");
            assert!(
                body["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("deleted role"),
                "{body}"
            );
            let permissions = ttscm_identity::store::permissions_of(&store, &held)
                .await
                .expect("store answers");
            assert!(!permissions.grants("credential.delete"));
            // Nor can the delete be granted afresh.
            let (status, body) = app.put(&roles_path, &app.admin_token, &grant_body).await;
            assert_eq!(status, 400, "{body}");
        }
        let (status, body) = app
            .put(&roles_path, &app.admin_token, &json!({"roles": []}))
            .await;
        assert_eq!(status, 200, "taking away a live or dead role works: {body}");
    }
    eprintln!("{refused} delete(s) refused, {deleted} deleted");
}

both_modes!(
    a_delegate_cannot_grant_admin_to_anyone_or_itself,
    a_delegate_cannot_create_a_role_it_lacks_or_grant_one,
    a_delegate_cannot_widen_or_remove_a_role_beyond_its_own,
    a_user_cannot_change_their_own_roles,
    a_caller_holding_every_permission_of_a_role_can_grant_it,
    deleting_a_scoped_type_needs_its_scope_and_credential_delete,
    making_a_secure_field_plain_needs_secure_values_read_and_is_audited_per_credential,
    removing_a_secure_field_needs_secure_values_read_and_is_audited_per_credential,
    bootstrap_admins_are_granted_once_and_a_demotion_sticks,
    bootstrap_entries_match_only_in_the_configured_tenant,
    bootstrap_e_mails_match_nobody_without_a_tenant_id,
    a_grant_racing_a_role_delete_never_gains_a_later_role_of_that_name,
);
