//! The audit log covers every component's actions (issue 18), in both modes: identity's role
//! changes and grants, sign-ins and their failures (recorded at a capped rate per client, the
//! rest counted), refresh-token reuse and logouts, and what `ttscm` commands change (tokens,
//! grants, vault keys) — all on the one chain, which still verifies.

use crate::support;

use serde_json::{Value, json};
use support::{Mode, TestApp, spawn_app, spawn_app_with_sign_in, strings};
use ttscm::Component;
use ttscm_runtime::audit::AuditRecord;
use ttscm_testkit::oidc;

const ROLES: &str = "/v1/role/roles";

/// Asserts the whole chain verifies.
async fn assert_chain_intact(app: &TestApp) {
    let (status, body) = app.get("/v1/audit/verify", Some(&app.admin_token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["valid"], true, "{body}");
}

async fn role_changes_and_grants_are_recorded_with_their_actor(mode: Mode) {
    let app = spawn_app(mode).await;
    let name = format!("auditors-{}", ttscm_runtime::ids::new_id());
    let (status, body) = app
        .post(
            ROLES,
            &app.admin_token,
            &json!({"name": name, "permissions": ["audit.fetch.many"]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let role_id = body["data"]["id"].as_str().expect("id").to_owned();
    let (status, body) = app
        .patch(
            &format!("{ROLES}/{role_id}"),
            &app.admin_token,
            &json!({"permissions": ["audit.fetch.many", "audit.verify"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let alice = app.signed_in_user(&[]).await;
    let roles = format!("/v1/user/users/{}/roles", alice.user_id);
    let (status, body) = app.put(&roles, &app.admin_token, &json!({"roles": [name]})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.put(&roles, &app.admin_token, &json!({"roles": []})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.delete(&format!("{ROLES}/{role_id}"), &app.admin_token).await;
    assert_eq!(status, 200, "{body}");

    for (action, permissions) in [
        ("role.created", "audit.fetch.many"),
        ("role.updated", "audit.fetch.many,audit.verify"),
        ("role.deleted", "audit.fetch.many,audit.verify"),
    ] {
        let found = app.audit_entries(action).await;
        let entry = found
            .iter()
            .find(|e| e["target"]["id"] == role_id.as_str())
            .unwrap_or_else(|| panic!("a {action} entry for the role: {found:?}"));
        assert_eq!(entry["target"]["kind"], "role");
        assert_eq!(entry["details"]["name"], name.as_str());
        assert_eq!(entry["details"]["permissions"], permissions, "{entry}");
        assert_eq!(entry["actor"]["kind"], "api_token", "{entry}");
        assert_eq!(entry["clientIp"], "127.0.0.1");
    }
    let grants: Vec<Value> = app
        .audit_entries("user.roles_updated")
        .await
        .into_iter()
        .filter(|e| e["target"]["id"] == alice.user_id.as_str())
        .collect();
    assert_eq!(grants.len(), 2, "{grants:?}");
    // Newest first: taken away, then granted.
    assert_eq!(grants[0]["details"], json!({"roles": "", "previous": name}));
    assert_eq!(grants[1]["details"], json!({"roles": name, "previous": ""}));
    // A refused change is not recorded as done.
    let refused = app.token_with(&["role.create"]).await;
    let (status, _) = app
        .post(
            ROLES,
            &refused,
            &json!({"name": "too-much", "permissions": ["*"]}),
        )
        .await;
    assert_eq!(status, 403);
    let created = app.audit_entries("role.created").await;
    assert!(created.iter().all(|e| e["details"]["name"] != "too-much"));
    assert_chain_intact(&app).await;
}

/// Signs in as `login` through the JSON redirect: the answer's data.
async fn sign_in(app: &TestApp, login: &str) -> Value {
    let (status, body) = app.get("/v1/auth/uri", None).await;
    assert_eq!(status, 200, "{body}");
    let location = oidc::sign_in(body["data"]["uri"].as_str().expect("uri"), login).await;
    let response = app.follow_provider_redirect(&app.address, &location, true).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    body["data"].clone()
}

async fn sign_ins_refresh_reuse_and_logouts_are_recorded(mode: Mode) {
    let app = spawn_app_with_sign_in(mode, |_| {}).await;
    let data = sign_in(&app, "alice").await;
    let user_id = data["user"]["id"].as_str().expect("id").to_owned();
    let signed_in = app.audit_entries("auth.signed_in").await;
    let entry = signed_in
        .iter()
        .find(|e| e["actor"]["id"] == user_id.as_str())
        .unwrap_or_else(|| panic!("alice's sign-in is recorded: {signed_in:?}"));
    assert_eq!(entry["actor"]["kind"], "user");
    assert_eq!(entry["target"], json!({"kind": "user", "id": user_id}));
    assert!(
        entry["details"]["sessionId"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert_eq!(entry["clientIp"], "127.0.0.1");
    // Nothing secret in it: no token of the answer appears in the entry.
    let text = entry.to_string();
    for token in ["accessToken", "refreshToken"] {
        assert!(
            !text.contains(data[token].as_str().expect("token")),
            "{token} leaked"
        );
    }

    // A profile change (the name audit entries show) is on record.
    let access = data["accessToken"].as_str().expect("access");
    let (status, body) = app
        .patch("/v1/user/@me", access, &json!({"name": "Alice Renamed"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let renamed = app.audit_entries("user.profile_updated").await;
    assert_eq!(renamed.len(), 1, "{renamed:?}");
    assert_eq!(renamed[0]["details"]["name"], "Alice Renamed");
    assert_eq!(renamed[0]["actor"]["id"], user_id.as_str());

    // A spent refresh token presented again: the session is revoked, on record.
    let first = data["refreshToken"].as_str().expect("refresh").to_owned();
    assert!(app.post_refresh(&first).await.status().is_success());
    assert_eq!(app.post_refresh(&first).await.status(), 401);
    let reused = app.audit_entries("auth.refresh_reused").await;
    assert_eq!(reused.len(), 1, "{reused:?}");
    assert_eq!(reused[0]["actor"]["id"], user_id.as_str());
    assert_eq!(reused[0]["target"]["id"], entry["details"]["sessionId"]);

    // An unknown refresh token is an anonymous failure.
    assert_eq!(app.post_refresh("ttscmr_unknown").await.status(), 401);
    let failed = app.audit_entries("auth.refresh_failed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(
        failed[0]["actor"],
        json!({"id": "anonymous", "kind": "anonymous", "name": "anonymous"})
    );

    // Logout of a second session.
    let second = sign_in(&app, "alice").await;
    let (status, body) = app
        .post(
            "/v1/auth/logout",
            second["accessToken"].as_str().expect("access"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let logged_out = app.audit_entries("auth.logged_out").await;
    assert_eq!(logged_out.len(), 1, "{logged_out:?}");
    assert_eq!(logged_out[0]["actor"]["id"], user_id.as_str());
    assert_eq!(logged_out[0]["target"]["id"], body["data"]["sessionId"]);
    assert_chain_intact(&app).await;
}

/// A redirect with an unknown sign-in state from `client` (through the trusted proxy).
async fn failed_sign_in(app: &TestApp, client: &str) {
    let response = app
        .http
        .get(format!(
            "{}/v1/auth/redirect?state=forged-state-0123456789abcdef&code=x",
            app.address
        ))
        .header("accept", "application/json")
        .header("x-forwarded-for", client)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 400);
}

async fn failed_sign_ins_are_recorded_at_a_capped_rate_per_client(mode: Mode) {
    let app = spawn_app_with_sign_in(mode, |settings| {
        settings.edge.trusted_proxies = vec!["127.0.0.1/32".parse().expect("a network")];
        settings.audit.failed_sign_ins_per_client = 2;
    })
    .await;
    // A stranger fails 6 times: 2 recorded, 4 counted.
    for _ in 0..6 {
        failed_sign_in(&app, "203.0.113.5").await;
    }
    let failed = app.audit_entries("auth.sign_in_failed").await;
    assert_eq!(failed.len(), 2, "{failed:?}");
    for entry in &failed {
        assert_eq!(entry["actor"]["kind"], "anonymous");
        assert_eq!(entry["clientIp"], "203.0.113.5");
        assert_eq!(
            entry["details"]["reason"],
            "This sign-in is unknown, expired or already used; please start the sign-in again"
        );
    }
    // Another client's failure is recorded, carrying the count of those that were not.
    failed_sign_in(&app, "198.51.100.9").await;
    let failed = app.audit_entries("auth.sign_in_failed").await;
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert_eq!(failed[0]["clientIp"], "198.51.100.9");
    assert_eq!(failed[0]["details"]["unrecordedBefore"], "4", "{}", failed[0]);
    assert_chain_intact(&app).await;
}

/// The settings a `ttscm` command of `component` runs with beside `app` (in the mesh: that
/// component's NATS user and keys).
fn command_settings(app: &TestApp, component: Component) -> ttscm_runtime::Settings {
    let mut settings = app.settings.clone();
    if let Some(keys) = &app.mesh_keys {
        keys.apply(component, &mut settings);
    }
    settings
}

async fn commands_extend_the_one_chain_without_forking_it(mode: Mode) {
    let app = spawn_app(mode).await;
    let seeded = app.seed_aws_credential("Acme", "hunter2").await;
    let settings = command_settings(&app, Component::Identity);
    let store = app.store().await;
    let audit = ttscm::cli_audit(&settings, Component::Identity, &store)
        .await
        .expect("the command's audit log opens");
    // The command records while the server records reveals: one chain, no fork.
    let reveal = format!("/v1/credential/credentials/{}/secure-values", seeded.id);
    let reveals = async {
        for _ in 0..10 {
            assert_eq!(app.get_status(&reveal, Some(&app.admin_token)).await, 200);
        }
    };
    let records = async {
        for n in 0..10 {
            let record = AuditRecord::new("api_token.revoked", "api_token", format!("t{n}"));
            ttscm::record_cli(&audit, "token revoke", record)
                .await
                .expect("recorded");
        }
    };
    tokio::join!(reveals, records);
    let revoked = app.audit_entries("api_token.revoked").await;
    assert_eq!(revoked.len(), 10);
    assert_eq!(
        revoked[0]["actor"],
        json!({"id": "cli", "kind": "service", "name": "ttscm token revoke"})
    );
    let (_, all) = app.get("/v1/audit/events?rpp=100", Some(&app.admin_token)).await;
    let actions = strings(&all["data"], "action");
    assert_eq!(
        actions.iter().filter(|a| **a == "credential.revealed").count(),
        10
    );
    assert_chain_intact(&app).await;
}

both_modes!(
    role_changes_and_grants_are_recorded_with_their_actor,
    sign_ins_refresh_reuse_and_logouts_are_recorded,
    failed_sign_ins_are_recorded_at_a_capped_rate_per_client,
    commands_extend_the_one_chain_without_forking_it
);
