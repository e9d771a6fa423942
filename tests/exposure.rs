//! Exposure after a leaver (`GET`/`POST /v1/audit/exposure`), in both modes: the credentials an
//! actor revealed — current or past versions — whose revealed values are still in use; values
//! changed since, TOTP codes, deleted credentials and other actors' reveals do not count;
//! credentials of a scope the caller lacks are hidden; the mark makes them due for rotation once,
//! audited; permissions and malformed queries.

use crate::support;

use std::collections::BTreeSet;

use serde_json::{Value, json};
use support::{Mode, TestApp, error_paths, spawn_app};

const CREDS: &str = "/v1/credential/credentials";
const EXPOSURE: &str = "/v1/audit/exposure";

/// What the leaver's role holds: reveals and TOTP codes (not seeds), and the `vip.only` scope.
const LEAVER_PERMISSIONS: &[&str] = &[
    "credential.fetch",
    "credential.secure_values.read",
    "credential.totp.read",
    "vip.only",
];

/// What an auditor needs to read the report and to mark it.
const AUDITOR_PERMISSIONS: &[&str] = &["audit.fetch.many", "credential.fetch.many", "credential.update"];

fn secret_body(access_key: &str, secret: &str) -> Value {
    json!({"fields": [
        {"fieldId": "accessKeyId", "value": access_key},
        {"fieldId": "secretAccessKey", "value": secret}
    ]})
}

/// `POST path` with `token` and no body; answers status and body.
async fn post_empty(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    app.send(
        reqwest::Method::POST,
        path,
        Some(token),
        "application/json",
        Vec::new(),
    )
    .await
}

/// The exposure report of `actor` as `token` sees it (the whole of it).
async fn exposure(app: &TestApp, actor: &str, token: &str) -> Value {
    let (status, body) = app
        .get(&format!("{EXPOSURE}?actor={actor}&rpp=100"), Some(token))
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

fn ids(report: &Value) -> BTreeSet<String> {
    report["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["credential"]["id"].as_str().expect("an id").to_owned())
        .collect()
}

fn item<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|item| item["credential"]["id"] == id)
        .unwrap_or_else(|| panic!("{id} is in {report}"))
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|id| (*id).clone()).collect()
}

/// A type with a password and a TOTP field, and a credential of it; answers the credential's id.
async fn mfa_credential(app: &TestApp, company: &str) -> String {
    let (status, body) = app
        .post(
            "/v1/credential-type/credential-types",
            &app.admin_token,
            &json!({
                "name": format!("Shared MFA {}", ttscm_runtime::ids::new_id()),
                "fields": [
                    {"id": "password", "name": "Password", "required": true, "secure": true, "valueType": "password"},
                    {"id": "otp", "name": "One-time code", "required": true, "valueType": "totp"}
                ]
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app
        .post(
            CREDS,
            &app.admin_token,
            &json!({
                "name": "Microsoft 365 admin", "typeId": body["data"]["id"], "companyId": company,
                "fields": [
                    {"fieldId": "password", "value": "mfa-password"},
                    {"fieldId": "otp", "value": "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"}
                ]
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["data"]["id"].as_str().expect("id").to_owned()
}

async fn stored_rotation_due(app: &TestApp, id: &str) -> bool {
    let stored = app
        .store()
        .await
        .get("credentials", id)
        .await
        .expect("reads")
        .expect("stored");
    stored.get("rotationDue") == Some(&json!(true))
}

async fn a_leavers_exposure_is_what_they_revealed_that_is_still_in_use(mode: Mode) {
    let app = spawn_app(mode).await;
    let company = app.seed_company("Leaver Co").await;
    let type_id = app.create_aws_type(None).await;
    let vip_type = app.create_aws_type(Some("vip.only")).await;
    let mut created = Vec::new();
    for n in 0..6 {
        created.push(
            app.create_aws_credential(&type_id, &company, &format!("secret-{n}"))
                .await,
        );
    }
    let [a, b, c, d, e, g] = <[String; 6]>::try_from(created).expect("six");
    let vip = app.create_aws_credential(&vip_type, &company, "vip-secret").await;
    let mfa = mfa_credential(&app, &company).await;

    app.create_role("leaver", LEAVER_PERMISSIONS).await;
    let leaver = app.signed_in_user(&["leaver"]).await;
    let as_leaver = Some(leaver.access_token.as_str());
    let reveal = |id: &String| format!("{CREDS}/{id}/secure-values");

    // D is renamed (version 2, same secret), then the leaver reveals its version 1; E's secret
    // changes, then the leaver reveals the old one (version 1), already replaced.
    let (status, body) = app
        .patch(
            &format!("{CREDS}/{d}"),
            &app.admin_token,
            &json!({"name": "D renamed"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .put(
            &format!("{CREDS}/{e}/fields"),
            &app.admin_token,
            &secret_body("AKIAIOSFODNN7EXAMPLE", "e-rotated"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for id in [&a, &b, &b, &c, &g, &vip] {
        let (status, body) = app.get(&reveal(id), as_leaver).await;
        assert_eq!(status, 200, "{body}");
    }
    for id in [&d, &e] {
        let (status, body) = app
            .get(&format!("{CREDS}/{id}/history/1/secure-values"), as_leaver)
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(body["data"]["secretAccessKey"].is_string(), "{body}");
    }
    // A TOTP code is not a reveal: the seed never left vault.
    let (status, body) = app.get(&format!("{CREDS}/{mfa}/totp/otp"), as_leaver).await;
    assert_eq!(status, 200, "{body}");

    // Then: A's secret changes; B is only renamed; C's plain field only changes; G is deleted.
    let (status, body) = app
        .put(
            &format!("{CREDS}/{a}/fields"),
            &app.admin_token,
            &secret_body("AKIAIOSFODNN7EXAMPLE", "a-rotated"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .patch(
            &format!("{CREDS}/{b}"),
            &app.admin_token,
            &json!({"name": "B renamed"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .put(
            &format!("{CREDS}/{c}/fields"),
            &app.admin_token,
            &secret_body("AKIAI-NEW-ACCESS-KEY", "secret-2"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    app.assert_deleted(
        &format!("{CREDS}/{g}"),
        &app.admin_token,
        "Credential Deleted Successfully!",
    )
    .await;

    // The admin (every scope) sees B, C, D and the VIP one; not A, E, G or the MFA credential.
    let report = exposure(&app, &leaver.user_id, &app.admin_token).await;
    assert_eq!(ids(&report), set(&[&b, &c, &d, &vip]), "{report}");
    assert_eq!(report["total"], 4, "{report}");
    assert_eq!(report["hidden"], 0, "{report}");
    assert_eq!(report["deleted"], 1, "{report}");
    assert_eq!(report["reveals"], 8, "{report}");
    let b_item = item(&report, &b);
    assert_eq!(b_item["fieldIds"], json!(["secretAccessKey"]), "{report}");
    assert_eq!(b_item["reveals"], 2, "{report}");
    assert_eq!(b_item["versions"], json!([1]), "{report}");
    assert_eq!(b_item["credential"]["name"], "B renamed", "{report}");
    assert_eq!(b_item["credential"]["typeId"], type_id.as_str(), "{report}");
    assert_eq!(b_item["credential"]["companyId"], company.as_str(), "{report}");
    assert_eq!(b_item["credential"]["companyName"], "Leaver Co", "{report}");
    assert_eq!(b_item["rotationDue"], false, "{report}");
    assert_eq!(item(&report, &d)["versions"], json!([1]), "{report}");
    assert!(item(&report, &d)["revealedAt"].is_string(), "{report}");

    // Pages of it, with the spec's pagination.
    let (status, page) = app
        .get(
            &format!("{EXPOSURE}?actor={}&page=2&rpp=3", leaver.user_id),
            Some(&app.admin_token),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        page["data"]["items"].as_array().expect("items").len(),
        1,
        "{page}"
    );
    assert_eq!(page["pagination"]["totalRecords"], 4, "{page}");

    // An auditor without the VIP scope: that one is hidden, counted.
    let auditor = app.token_with(AUDITOR_PERMISSIONS).await;
    let report = exposure(&app, &leaver.user_id, &auditor).await;
    assert_eq!(ids(&report), set(&[&b, &c, &d]), "{report}");
    assert_eq!(report["hidden"], 1, "{report}");

    // Since after every reveal: nothing.
    let (status, body) = app
        .get(
            &format!("{EXPOSURE}?actor={}&since=2999-01-01T00:00:00Z", leaver.user_id),
            Some(&app.admin_token),
        )
        .await;
    assert_eq!((status, &body["data"]["total"]), (200, &json!(0)), "{body}");

    // Another actor's exposure: a user who revealed nothing, and a token that revealed A after
    // its change (only A).
    let other = app.signed_in_user(&["leaver"]).await;
    assert_eq!(exposure(&app, &other.user_id, &app.admin_token).await["total"], 0);
    let token = app.token_with(LEAVER_PERMISSIONS).await;
    assert_eq!(app.get(&reveal(&a), Some(&token)).await.0, 200);
    let entry = app
        .audit_entries("credential.revealed")
        .await
        .into_iter()
        .find(|e| e["actor"]["kind"] == "api_token")
        .expect("the token's reveal");
    let token_id = entry["actor"]["id"].as_str().expect("an id").to_owned();
    assert_eq!(
        ids(&exposure(&app, &token_id, &app.admin_token).await),
        set(&[&a])
    );

    // The mark, by the auditor: B, C and D become due (the hidden one is left alone), once.
    let mark = format!("{EXPOSURE}?actor={}", leaver.user_id);
    let (status, body) = post_empty(&app, &mark, &auditor).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["marked"], 3, "{body}");
    assert_eq!(body["data"]["alreadyDue"], 0, "{body}");
    assert_eq!(body["data"]["hidden"], 1, "{body}");
    let marked: BTreeSet<String> = body["data"]["credentials"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|id| id.as_str().expect("an id").to_owned())
        .collect();
    assert_eq!(marked, set(&[&b, &c, &d]));
    for id in [&b, &c, &d] {
        assert!(stored_rotation_due(&app, id).await, "{id} is due");
    }
    for id in [&a, &vip, &mfa] {
        assert!(!stored_rotation_due(&app, id).await, "{id} is not due");
    }
    let (status, body) = post_empty(&app, &mark, &auditor).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["data"]["marked"], &body["data"]["alreadyDue"]),
        (&json!(0), &json!(3))
    );
    let report = exposure(&app, &leaver.user_id, &auditor).await;
    assert!(
        report["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|item| item["rotationDue"] == true),
        "{report}"
    );

    // Audited: one entry per mark, naming the actor and what it did.
    let entries = app.audit_entries("credential.exposure_marked").await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    let first = &entries[1];
    assert_eq!(first["target"]["id"], leaver.user_id.as_str(), "{first}");
    assert_eq!(first["details"]["actor"], leaver.user_id.as_str(), "{first}");
    assert_eq!(first["details"]["count"], "3", "{first}");
    assert_eq!(first["details"]["marked"], "3", "{first}");
    assert_eq!(first["details"]["hidden"], "1", "{first}");
    assert_eq!(
        first["actor"]["kind"], "api_token",
        "the auditor is a token: {first}"
    );
    if mode == Mode::Mesh {
        let due: Vec<Value> = app
            .replay_events()
            .await
            .into_iter()
            .filter(|(subject, _)| subject == "ttscm.events.credential.rotation_due")
            .map(|(_, event)| event)
            .collect();
        let due_ids: Vec<&str> = due
            .iter()
            .map(|event| event["data"]["id"].as_str().expect("an id"))
            .collect();
        assert_eq!(due_ids.len(), 3, "one event per credential made due: {due:?}");
        assert_eq!(
            due_ids.iter().map(|id| (*id).to_owned()).collect::<BTreeSet<_>>(),
            set(&[&b, &c, &d])
        );
        assert!(
            due.iter().all(|event| event["data"]["reason"] == "exposure"),
            "{due:?}"
        );
        assert!(!format!("{due:?}").contains("secret-"), "no value in an event");
    }
}

async fn the_exposure_routes_need_their_permissions_and_a_well_formed_query(mode: Mode) {
    let app = spawn_app(mode).await;
    let get = format!("{EXPOSURE}?actor=someone");
    assert_eq!(app.get_status(&get, None).await, 401);
    for permissions in [
        &["audit.fetch.many"][..],
        &["credential.fetch.many"],
        &["credential.update", "credential.fetch.many"],
    ] {
        let token = app.token_with(permissions).await;
        assert_eq!(app.get_status(&get, Some(&token)).await, 403, "{permissions:?}");
        assert_eq!(post_empty(&app, &get, &token).await.0, 403, "{permissions:?}");
    }
    // Reading is not marking.
    let reader = app
        .token_with(&["audit.fetch.many", "credential.fetch.many"])
        .await;
    assert_eq!(app.get_status(&get, Some(&reader)).await, 200);
    assert_eq!(post_empty(&app, &get, &reader).await.0, 403);
    let auditor = app.token_with(AUDITOR_PERMISSIONS).await;
    let (status, body) = post_empty(&app, &get, &auditor).await;
    assert_eq!((status, &body["data"]["marked"]), (200, &json!(0)), "{body}");

    for (query, path) in [
        ("", "actor"),
        ("?actor=", "actor"),
        ("?actor=someone&since=yesterday", "since"),
        ("?actor=someone&since=2026-13-01T00:00:00Z", "since"),
    ] {
        let (status, body) = app.get(&format!("{EXPOSURE}{query}"), Some(&auditor)).await;
        assert_eq!(
            (status, error_paths(&body)),
            (400, vec![json!([path])]),
            "GET {query}: {body}"
        );
        let (status, body) = post_empty(&app, &format!("{EXPOSURE}{query}"), &auditor).await;
        assert_eq!(
            (status, error_paths(&body)),
            (400, vec![json!([path])]),
            "POST {query}: {body}"
        );
    }
    let (status, body) = app
        .get(&format!("{EXPOSURE}?actor=someone&rpp=0"), Some(&auditor))
        .await;
    assert_eq!(
        (status, error_paths(&body)),
        (400, vec![json!(["rpp"])]),
        "{body}"
    );
}

both_modes!(
    a_leavers_exposure_is_what_they_revealed_that_is_still_in_use,
    the_exposure_routes_need_their_permissions_and_a_well_formed_query,
);
