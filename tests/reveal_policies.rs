//! Reveal policies per credential type (`none`, `reason`, `ticket`), break-glass, and what a
//! reveal's audit entry and event say about why it happened. The ConnectWise side (tickets,
//! notes) runs against the ConnectWise fake.

#[macro_use]
mod support;

use serde_json::{Value, json};
use support::{Mode, TestApp, error_paths, spawn_app};

const CREDS: &str = "/v1/credential/credentials";
const TYPES: &str = "/v1/credential-type/credential-types";

/// A type with one secure field and the given policy (and scope), a credential of it for
/// `company`; answers (type id, credential id).
async fn guarded(app: &TestApp, company: &str, policy: Value, scope: Option<&str>) -> (String, String) {
    let (status, body) = app
        .post(
            TYPES,
            &app.admin_token,
            &json!({
                "name": format!("Guarded {}", ttscm_runtime::ids::new_id()),
                "permissionScope": scope,
                "revealPolicy": policy,
                "fields": [{"id": "password", "name": "Password", "required": true, "secure": true, "valueType": "password"}]
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let type_id = body["data"]["id"].as_str().expect("type id").to_owned();
    let (status, body) = app
        .post(
            CREDS,
            &app.admin_token,
            &json!({"name": "Domain admin", "typeId": type_id, "companyId": company,
                    "fields": [{"fieldId": "password", "value": "policy-canary"}]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    (type_id, body["data"]["id"].as_str().expect("id").to_owned())
}

fn reveal(id: &str, query: &str) -> String {
    format!("{CREDS}/{id}/secure-values{query}")
}

async fn a_reason_policy_needs_a_reason_and_records_it(mode: Mode) {
    let app = spawn_app(mode).await;
    let company = app.seed_company("Reason Co").await;
    let (type_id, id) = guarded(&app, &company, json!({"require": "reason"}), None).await;
    let (_, shown) = app
        .get(&format!("{TYPES}/{type_id}"), Some(&app.admin_token))
        .await;
    assert_eq!(
        shown["data"]["revealPolicy"],
        json!({"require": "reason", "reasonWithoutConnectWise": false, "ticketNote": true})
    );

    let (status, body) = app.get(&reveal(&id, ""), Some(&app.admin_token)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_paths(&body), [json!(["reason"])], "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("needs a reason"),
        "{body}"
    );
    for bad in ["%20%20", &"x".repeat(501), "a%0Ab"] {
        let (status, body) = app
            .get(&reveal(&id, &format!("?reason={bad}")), Some(&app.admin_token))
            .await;
        assert_eq!(
            (status, error_paths(&body)),
            (400, vec![json!(["reason"])]),
            "{bad}: {body}"
        );
    }
    assert!(
        app.audit_entries("credential.revealed").await.is_empty(),
        "refusals reveal nothing"
    );

    let (status, body) = app
        .get(
            &reveal(&id, "?reason=Password%20reset%20for%20J.%20Doe"),
            Some(&app.admin_token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["password"], "policy-canary");
    let entries = app.audit_entries("credential.revealed").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["details"]["reason"], "Password reset for J. Doe");
}

async fn a_policy_is_part_of_the_type_and_changing_it_is_audited(mode: Mode) {
    let app = spawn_app(mode).await;
    let company = app.seed_company("Policy Co").await;
    let (type_id, id) = guarded(&app, &company, json!({"require": "none"}), Some("vip.creds")).await;
    let path = format!("{TYPES}/{type_id}");
    let (_, shown) = app.get(&path, Some(&app.admin_token)).await;
    assert!(
        shown["data"].get("revealPolicy").is_none(),
        "the default is left out: {shown}"
    );
    assert_eq!(
        app.get_status(&reveal(&id, ""), Some(&app.admin_token)).await,
        200
    );

    // Bad policies are 400s naming the path; changing one needs the type's scope.
    for bad in [
        json!({"require": "maybe"}),
        json!({"require": "ticket", "extra": 1}),
        json!("ticket"),
    ] {
        let (status, body) = app
            .patch(&path, &app.admin_token, &json!({"revealPolicy": bad}))
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let unscoped = app
        .token_with(&["credential_type.update", "credential_type.fetch"])
        .await;
    let tighten = json!({"revealPolicy": {"require": "ticket", "reasonWithoutConnectWise": true}});
    assert_eq!(app.patch(&path, &unscoped, &tighten).await.0, 403);
    let (status, body) = app.patch(&path, &app.admin_token, &tighten).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["revealPolicy"]["require"], "ticket");
    let updates = app.audit_entries("credential_type.updated").await;
    let details = &updates[0]["details"];
    assert!(
        details["revealPolicy"]
            .as_str()
            .unwrap_or_default()
            .contains("\"ticket\""),
        "{details}"
    );
    assert!(
        details["previousRevealPolicy"]
            .as_str()
            .unwrap_or_default()
            .contains("\"none\""),
        "{details}"
    );

    // Now a bare reveal names the ticket it needs.
    let (status, body) = app.get(&reveal(&id, ""), Some(&app.admin_token)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_paths(&body), [json!(["ticket"])], "{body}");
    // Malformed query values are 400s naming them.
    for (query, path) in [
        ("?ticket=abc", "ticket"),
        ("?ticket=0", "ticket"),
        ("?breakGlass=yes", "breakGlass"),
    ] {
        let (status, body) = app.get(&reveal(&id, query), Some(&app.admin_token)).await;
        assert_eq!(
            (status, error_paths(&body)),
            (400, vec![json!([path])]),
            "{query}: {body}"
        );
    }
}

async fn break_glass_needs_its_permission_and_a_reason_and_raises_the_alarm(mode: Mode) {
    let app = spawn_app(mode).await;
    let company = app.seed_company("Glass Co").await;
    let (_, id) = guarded(&app, &company, json!({"require": "ticket"}), None).await;
    let technician = app
        .token_with(&["credential.fetch", "credential.secure_values.read"])
        .await;
    let (status, body) = app
        .get(&reveal(&id, "?breakGlass=true&reason=Outage"), Some(&technician))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("credential.break_glass"),
        "{body}"
    );

    let responder = app
        .token_with(&[
            "credential.fetch",
            "credential.secure_values.read",
            "credential.break_glass",
        ])
        .await;
    let (status, body) = app.get(&reveal(&id, "?breakGlass=true"), Some(&responder)).await;
    assert_eq!(
        (status, error_paths(&body)),
        (400, vec![json!(["reason"])]),
        "{body}"
    );
    let (status, body) = app
        .get(
            &reveal(&id, "?breakGlass=true&reason=Site%20down%2C%20no%20ticket%20yet"),
            Some(&responder),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["password"], "policy-canary");

    // Listed by the audit route's action filter, with its reason; not as a plain reveal.
    let entries = app.audit_entries("credential.break_glass").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["details"]["breakGlass"], "true");
    assert_eq!(entries[0]["details"]["reason"], "Site down, no ticket yet");
    assert!(app.audit_entries("credential.revealed").await.is_empty());
    if mode == Mode::Mesh {
        let events = app.replay_events().await;
        let alarm = events
            .iter()
            .find(|(subject, _)| subject == "ttscm.events.credential.break_glass")
            .expect("the break-glass event");
        assert_eq!(alarm.1["data"]["id"], id.as_str());
        assert!(!alarm.1.to_string().contains("policy-canary"));
    }
    // The credential is marked for rotation until its values are written again.
    let store = app.store().await;
    let stored = store
        .get("credentials", &id)
        .await
        .expect("reads")
        .expect("stored");
    assert_eq!(stored.get("rotationDue"), Some(&json!(true)));
    let (status, _) = app
        .put(
            &format!("{CREDS}/{id}/fields"),
            &app.admin_token,
            &json!({"fields": [{"fieldId": "password", "value": "rotated"}]}),
        )
        .await;
    assert_eq!(status, 200);
    let stored = store
        .get("credentials", &id)
        .await
        .expect("reads")
        .expect("stored");
    assert_ne!(stored.get("rotationDue"), Some(&json!(true)));
}

both_modes!(
    a_reason_policy_needs_a_reason_and_records_it,
    a_policy_is_part_of_the_type_and_changing_it_is_audited,
    break_glass_needs_its_permission_and_a_reason_and_raises_the_alarm,
);
