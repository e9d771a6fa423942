//! Reveal policies per credential type (`none`, `reason`, `ticket`), break-glass, and what a
//! reveal's audit entry and event say about why it happened. The ConnectWise side (tickets,
//! notes) runs against the ConnectWise fake.

use crate::support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Mode, TestApp, error_paths, spawn_app, spawn_app_with};
use ttscm_testkit::connectwise::{ConnectWiseFake, company};

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

/// The ConnectWise fake with companies 1 and 2, open, closed and other-company tickets, and
/// TTSCM synced from it; answers the fake, the app and TTSCM's id of ConnectWise company 1.
async fn with_connectwise(mode: Mode) -> (ConnectWiseFake, TestApp, String) {
    let fake = ConnectWiseFake::start(vec![
        company(1, "2025-01-01T00:00:00Z"),
        company(2, "2025-01-01T00:00:00Z"),
    ])
    .await;
    fake.add_board_status(10, 1, "New", false);
    fake.add_board_status(10, 5, "Completed", true);
    fake.add_ticket(101, 1, 10, 1, false);
    fake.add_ticket(102, 2, 10, 1, false);
    fake.add_ticket(103, 1, 10, 1, true);
    fake.add_ticket(104, 1, 10, 5, false);
    fake.add_ticket(105, 1, 10, 1, false);
    let app = spawn_app_with(mode, |settings| fake.configure(settings)).await;
    let found = ttscm_testkit::eventually(Duration::from_secs(15), || async {
        let (_, body) = app
            .get(
                "/v1/company/companies?search=Company00001",
                Some(&app.admin_token),
            )
            .await;
        body["data"][0]["id"].as_str().map(str::to_owned)
    })
    .await
    .expect("company 1 is synced");
    (fake, app, found)
}

async fn notes_on(fake: &ConnectWiseFake, ticket: i64) -> Vec<Value> {
    fake.notes()
        .into_iter()
        .filter(|n| n.ticket_id == ticket)
        .map(|n| n.body)
        .collect()
}

async fn a_ticket_policy_checks_the_ticket_live_and_notes_the_reveal(mode: Mode) {
    let (fake, app, company) = with_connectwise(mode).await;
    let (_, id) = guarded(&app, &company, json!({"require": "ticket"}), None).await;

    let (status, body) = app
        .get(
            &reveal(&id, "?ticket=101&reason=Printer%20setup"),
            Some(&app.admin_token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["password"], "policy-canary");
    let entries = app.audit_entries("credential.revealed").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["details"]["ticket"], "101");
    assert_eq!(
        entries[0]["details"]["ticketSummary"],
        "Ticket 101: printer offline"
    );
    let seq = entries[0]["seq"].as_u64().expect("seq");
    let notes = ttscm_testkit::eventually(Duration::from_secs(15), || async {
        let notes = notes_on(&fake, 101).await;
        (!notes.is_empty()).then_some(notes)
    })
    .await
    .expect("a note is posted on the ticket");
    assert_eq!(notes.len(), 1, "{notes:?}");
    let note = &notes[0];
    assert_eq!(note["internalAnalysisFlag"], true, "{note}");
    let text = note["text"].as_str().expect("text");
    assert!(
        text.contains("Domain admin") && text.contains(&format!("audit entry #{seq}")),
        "{text}"
    );
    assert!(text.contains("Printer setup"), "the reason: {text}");
    assert!(!note.to_string().contains("policy-canary"), "no value in a note");
    if mode == Mode::Mesh {
        let events = app.replay_events().await;
        let revealed = events
            .iter()
            .find(|(subject, _)| subject == "ttscm.events.credential.revealed")
            .expect("the reveal's event");
        assert_eq!(revealed.1["data"]["ticket"], 101);
    }

    // Another company's, closed (by flag or by status), unknown: refused, nothing revealed,
    // nothing noted.
    for (ticket, why) in [
        (102, "belongs to another company"),
        (103, "is closed"),
        (104, "is closed"),
        (999, "was not found"),
    ] {
        let (status, body) = app
            .get(&reveal(&id, &format!("?ticket={ticket}")), Some(&app.admin_token))
            .await;
        assert_eq!(status, 400, "{ticket}: {body}");
        assert_eq!(error_paths(&body), [json!(["ticket"])]);
        assert!(
            body["message"].as_str().unwrap_or_default().contains(why),
            "{ticket}: {body}"
        );
        assert!(!body.to_string().contains("policy-canary"));
    }
    assert_eq!(app.audit_entries("credential.revealed").await.len(), 1);

    // ConnectWise unreachable and the ticket not cached: 502, nothing revealed, no note.
    fake.set_down(Some(503));
    let (status, body) = app.get(&reveal(&id, "?ticket=105"), Some(&app.admin_token)).await;
    assert_eq!(status, 502, "{body}");
    assert!(!body.to_string().contains("policy-canary"));
    fake.set_down(None);
    assert!(notes_on(&fake, 105).await.is_empty());
    assert_eq!(app.audit_entries("credential.revealed").await.len(), 1);

    // The note endpoint failing after a reveal: the note is posted once it works again.
    fake.fail_notes(500, None);
    let (status, _) = app.get(&reveal(&id, "?ticket=105"), Some(&app.admin_token)).await;
    assert_eq!(status, 200);
    fake.notes_work();
    let later = ttscm_testkit::eventually(Duration::from_secs(30), || async {
        let notes = notes_on(&fake, 105).await;
        (!notes.is_empty()).then_some(notes)
    })
    .await
    .expect("the note is delivered later");
    assert_eq!(later.len(), 1);
}

async fn a_manual_company_cannot_satisfy_a_ticket_but_may_give_a_reason(mode: Mode) {
    let (_fake, app, _) = with_connectwise(mode).await;
    let manual = app.seed_company("Walk-in Client").await;
    let (_, strict) = guarded(&app, &manual, json!({"require": "ticket"}), None).await;
    let (status, body) = app
        .get(&reveal(&strict, "?ticket=101"), Some(&app.admin_token))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no ConnectWise id"),
        "{body}"
    );
    let (status, body) = app
        .get(&reveal(&strict, "?reason=Walk-in"), Some(&app.admin_token))
        .await;
    assert_eq!(
        (status, error_paths(&body)),
        (400, vec![json!(["ticket"])]),
        "{body}"
    );

    let (_, lenient) = guarded(
        &app,
        &manual,
        json!({"require": "ticket", "reasonWithoutConnectWise": true}),
        None,
    )
    .await;
    let (status, body) = app.get(&reveal(&lenient, ""), Some(&app.admin_token)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("reason instead"),
        "{body}"
    );
    assert_eq!(
        app.get_status(&reveal(&lenient, "?reason=Walk-in"), Some(&app.admin_token))
            .await,
        200
    );
}

/// A note whose posting fails is still posted after company-sync restarts (the queue is in the
/// store, not in memory).
#[tokio::test]
async fn a_pending_note_survives_a_company_sync_restart() {
    let (fake, mut app, company) = with_connectwise(Mode::Mesh).await;
    let (_, id) = guarded(&app, &company, json!({"require": "ticket"}), None).await;
    fake.fail_notes(503, None);
    assert_eq!(
        app.get_status(&reveal(&id, "?ticket=101"), Some(&app.admin_token))
            .await,
        200
    );
    app.stop(ttscm::Component::CompanySync);
    fake.notes_work();
    assert!(
        notes_on(&fake, 101).await.is_empty(),
        "not posted while company-sync is down"
    );
    app.restart(ttscm::Component::CompanySync);
    // The note waits out its backoff (exponential from 0.5 s, full jitter) after the attempts
    // that failed before the stop, and a post cut short by the stop keeps its claim for
    // `notes::CLAIM` (60 s): on a busy host the next attempt may be a minute away.
    let posted = ttscm_testkit::eventually(Duration::from_secs(120), || async {
        let notes = notes_on(&fake, 101).await;
        (!notes.is_empty()).then_some(notes)
    })
    .await
    .expect("posted after the restart");
    assert_eq!(posted.len(), 1);
}

both_modes!(
    a_ticket_policy_checks_the_ticket_live_and_notes_the_reveal,
    a_manual_company_cannot_satisfy_a_ticket_but_may_give_a_reason,
    a_reason_policy_needs_a_reason_and_records_it,
    a_policy_is_part_of_the_type_and_changing_it_is_audited,
    break_glass_needs_its_permission_and_a_reason_and_raises_the_alarm,
);
