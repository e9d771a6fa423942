//! Rotation due dates (issue 22): a type's `rotationDays`, a credential's `rotationDue` and
//! `rotationDueAt`, the scheduler that marks passed credentials due (one `credential.rotation_due`
//! event each, across replicas), what clears and what keeps the mark, break-glass marks, and the
//! `rotationDue=true` lists (across companies and per company, paged and scope-filtered).
//!
//! Time is moved by backdating `secretsChangedAt` in the store, or by sweeping with a `now` in
//! the future through a service handle of the test's own (another replica, as far as the store
//! and the bus can tell).

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Mode, TestApp, error_paths, spawn_app, spawn_app_with, strings};
use ttscm::Component;
use ttscm_runtime::{Filter, Shutdown, Update, clock, connect};

const CREDS: &str = "/v1/credential/credentials";
const TYPES: &str = "/v1/credential-type/credential-types";
const DUE_EVENT: &str = "ttscm.events.credential.rotation_due";
const DAY: i64 = 86_400;

/// Creates a type with a plain `username` and a secure `password` field, the given schedule and
/// scope; answers its id.
async fn scheduled_type(app: &TestApp, rotation_days: Option<u32>, scope: Option<&str>) -> String {
    let (status, body) = app
        .post(
            TYPES,
            &app.admin_token,
            &json!({
                "name": format!("Rotated {}", ttscm_runtime::ids::new_id()),
                "permissionScope": scope,
                "rotationDays": rotation_days,
                "fields": [
                    {"id": "username", "name": "Username", "required": true, "valueType": "plain_text"},
                    {"id": "password", "name": "Password", "required": true, "secure": true, "valueType": "password"}
                ]
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["data"]["id"].as_str().expect("type id").to_owned()
}

/// Creates a credential named `name`; answers its id.
async fn credential(app: &TestApp, type_id: &str, company: &str, name: &str) -> String {
    let (status, body) = app
        .post(
            CREDS,
            &app.admin_token,
            &json!({"name": name, "typeId": type_id, "companyId": company, "fields": [
                {"fieldId": "username", "value": "admin"},
                {"fieldId": "password", "value": "rotation-canary"}
            ]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["data"]["id"].as_str().expect("credential id").to_owned()
}

/// Sets what the store says about `id` directly (backdating, or a mark made before).
async fn set_stored(app: &TestApp, id: &str, update: Update) {
    let updated = app
        .store()
        .await
        .update_one("credentials", &Filter::id(id), &update)
        .await
        .expect("the store takes the update");
    assert!(updated, "credential {id} is stored");
}

/// Makes `id`'s secure values look `days` old.
async fn backdate(app: &TestApp, id: &str, days: i64) {
    set_stored(
        app,
        id,
        Update::default().set("secretsChangedAt", clock::now_offset(-days * DAY)),
    )
    .await;
}

async fn stored_due(app: &TestApp, id: &str) -> bool {
    let stored = app
        .store()
        .await
        .get("credentials", id)
        .await
        .expect("reads")
        .expect("stored");
    stored.get("rotationDue") == Some(&json!(true))
}

/// The credential as `GET` shows it, once `check` holds (the service caches credentials for a
/// moment, so a change made in the store shows within that).
async fn shown_when(app: &TestApp, id: &str, check: impl Fn(&Value) -> bool) -> Value {
    let path = format!("{CREDS}/{id}");
    ttscm_testkit::eventually(Duration::from_secs(10), || async {
        let (status, body) = app.get(&path, Some(&app.admin_token)).await;
        (status == 200 && check(&body["data"])).then(|| body["data"].clone())
    })
    .await
    .unwrap_or_else(|| panic!("{path} never showed what was expected"))
}

/// The `credential.rotation_due` events about `id` in `TTSCM_EVENTS` (mesh mode).
async fn due_events(app: &TestApp, id: &str) -> Vec<Value> {
    app.replay_events()
        .await
        .into_iter()
        .filter(|(subject, event)| subject == DUE_EVENT && event["data"]["id"] == id)
        .map(|(_, event)| event)
        .collect()
}

/// A credential service of the test's own over the app's store and bus: another replica, as
/// far as they can tell, whose sweeps the test runs with any `now`.
async fn replica(app: &TestApp) -> Arc<ttscm_credential::service::Service> {
    let mut settings = app.settings.clone();
    if let Some(keys) = &app.mesh_keys {
        keys.apply(Component::Credential, &mut settings);
    }
    let bus = connect::bus(&settings, Some(Component::Credential))
        .await
        .expect("the bus connects");
    let store = connect::store(&settings).await.expect("the store opens");
    ttscm_credential::open(&bus, &store, &settings, Shutdown::new())
        .await
        .expect("the service opens")
}

fn list(path: &str, query: &str) -> String {
    format!("{path}?{query}")
}

async fn rotation_days_is_validated_shown_changed_and_audited(mode: Mode) {
    let app = spawn_app(mode).await;
    for (days, what) in [
        (json!(0), "zero"),
        (json!(3651), "over ten years"),
        (json!("ten"), "text"),
        (json!(-5), "negative"),
    ] {
        let (status, body) = app
            .post(
                TYPES,
                &app.admin_token,
                &json!({"name": format!("Bad {what}"), "rotationDays": days, "fields": [
                    {"id": "password", "name": "Password", "secure": true, "valueType": "password"}
                ]}),
            )
            .await;
        assert_eq!(
            (status, error_paths(&body)),
            (400, vec![json!(["rotationDays"])]),
            "{what}: {body}"
        );
    }

    let plain = scheduled_type(&app, None, None).await;
    let (_, shown) = app.get(&format!("{TYPES}/{plain}"), Some(&app.admin_token)).await;
    assert!(
        shown["data"].get("rotationDays").is_none(),
        "left out when unset: {shown}"
    );

    let id = scheduled_type(&app, Some(90), None).await;
    let path = format!("{TYPES}/{id}");
    let (_, shown) = app.get(&path, Some(&app.admin_token)).await;
    assert_eq!(shown["data"]["rotationDays"], 90);

    let (status, body) = app
        .patch(&path, &app.admin_token, &json!({"rotationDays": 0}))
        .await;
    assert_eq!(
        (status, error_paths(&body)),
        (400, vec![json!(["rotationDays"])]),
        "{body}"
    );
    let (status, body) = app
        .patch(&path, &app.admin_token, &json!({"rotationDays": 30}))
        .await;
    assert_eq!(
        (status, &body["data"]["rotationDays"]),
        (200, &json!(30)),
        "{body}"
    );
    let updated = app.audit_entries("credential_type.updated").await;
    assert_eq!(updated[0]["details"]["rotationDays"], "30", "{updated:?}");
    assert_eq!(updated[0]["details"]["previousRotationDays"], "90");

    // `null` removes the schedule; a patch without the key keeps it.
    let (status, body) = app
        .patch(&path, &app.admin_token, &json!({"rotationDays": null}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"].get("rotationDays").is_none(), "{body}");
    let updated = app.audit_entries("credential_type.updated").await;
    assert_eq!(updated[0]["details"]["rotationDays"], "none");
    let (status, body) = app
        .patch(&path, &app.admin_token, &json!({"rotationDays": 7}))
        .await;
    assert_eq!(
        (status, &body["data"]["rotationDays"]),
        (200, &json!(7)),
        "{body}"
    );
    let (_, body) = app.patch(&path, &app.admin_token, &json!({"icon": null})).await;
    assert_eq!(body["data"]["rotationDays"], 7, "{body}");
    // Keys left out stay as they are (the patch crosses the bus without them).
    let scoped = scheduled_type(&app, Some(5), Some("credential.scope.kept")).await;
    let scoped_path = format!("{TYPES}/{scoped}");
    let (status, body) = app
        .patch(
            &scoped_path,
            &app.admin_token,
            &json!({"name": format!("Renamed {scoped}")}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["permissionScope"], "credential.scope.kept", "{body}");
    assert_eq!(body["data"]["rotationDays"], 5, "{body}");

    let no_update = app.token_with(&["credential_type.fetch"]).await;
    let (status, _) = app.patch(&path, &no_update, &json!({"rotationDays": 1})).await;
    assert_eq!(status, 403);
}

async fn a_credential_shows_when_it_is_due_and_is_due_once_the_days_passed(mode: Mode) {
    let app = spawn_app(mode).await;
    let company = app.seed_company("Due Co").await;
    let type_id = scheduled_type(&app, Some(30), None).await;
    let id = credential(&app, &type_id, &company, "Router").await;
    let (_, body) = app.get(&format!("{CREDS}/{id}"), Some(&app.admin_token)).await;
    let shown = &body["data"];
    assert_eq!(shown["rotationDue"], false, "{body}");
    let created = clock::parse_iso(shown["createdAt"].as_str().expect("createdAt")).expect("a time");
    let due_at = clock::parse_iso(shown["rotationDueAt"].as_str().expect("rotationDueAt")).expect("a time");
    assert_eq!(due_at - created, time::Duration::days(30));

    // Without a schedule there is no due date.
    let plain = scheduled_type(&app, None, None).await;
    let unscheduled = credential(&app, &plain, &company, "Switch").await;
    let (_, body) = app
        .get(&format!("{CREDS}/{unscheduled}"), Some(&app.admin_token))
        .await;
    assert_eq!(body["data"]["rotationDue"], false);
    assert!(body["data"].get("rotationDueAt").is_none(), "{body}");

    // 31 days later it reads due at once — before any sweep marked it.
    backdate(&app, &id, 31).await;
    shown_when(&app, &id, |c| c["rotationDue"] == true).await;
    assert!(
        !stored_due(&app, &id).await,
        "not marked yet: the date alone makes it due"
    );
    let (_, listed) = app
        .get(&list(CREDS, "rotationDue=true"), Some(&app.admin_token))
        .await;
    assert_eq!(strings(&listed["data"], "id"), vec![id.as_str()], "{listed}");
}

async fn a_sweep_marks_each_passed_credential_once_even_when_sweeps_overlap(mode: Mode) {
    let app = spawn_app(mode).await;
    let company = app.seed_company("Sweep Co").await;
    let type_id = scheduled_type(&app, Some(30), None).await;
    let plain = scheduled_type(&app, None, None).await;
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(credential(&app, &type_id, &company, &format!("Scheduled {n}")).await);
    }
    let unscheduled = credential(&app, &plain, &company, "Never due").await;
    let (first, second) = (replica(&app).await, replica(&app).await);

    // Today nothing is due; 29 days on neither.
    assert_eq!(first.sweep_rotation(&clock::now_iso()).await.expect("sweeps"), 0);
    assert_eq!(
        first
            .sweep_rotation(&clock::now_offset(29 * DAY))
            .await
            .expect("sweeps"),
        0
    );
    // 31 days on every scheduled credential is: two replicas sweeping at once mark each once.
    let later = clock::now_offset(31 * DAY);
    let (a, b) = tokio::join!(first.sweep_rotation(&later), second.sweep_rotation(&later));
    assert_eq!(a.expect("sweeps") + b.expect("sweeps"), 4);
    assert_eq!(
        second.sweep_rotation(&later).await.expect("sweeps"),
        0,
        "already marked"
    );
    for id in &ids {
        assert!(stored_due(&app, id).await, "{id} marked");
    }
    assert!(!stored_due(&app, &unscheduled).await);
    let bad = first.sweep_rotation("next tuesday").await.expect_err("refused");
    assert_eq!(bad.errors[0].path, vec![json!("now")]);

    if mode == Mode::Mesh {
        for id in &ids {
            let events = due_events(&app, id).await;
            assert_eq!(events.len(), 1, "{id}: {events:?}");
            assert_eq!(events[0]["data"]["reason"], "schedule");
            assert_eq!(events[0]["data"]["typeId"], type_id.as_str());
            assert!(!events[0].to_string().contains("rotation-canary"));
        }
        assert!(due_events(&app, &unscheduled).await.is_empty());
    }
}

async fn the_scheduler_marks_passed_credentials_due_in_the_background(mode: Mode) {
    let app = spawn_app_with(mode, |settings| settings.credential.rotation_check_secs = 1).await;
    let company = app.seed_company("Schedule Co").await;
    let type_id = scheduled_type(&app, Some(1), None).await;
    let passed = credential(&app, &type_id, &company, "Passed").await;
    let fresh = credential(&app, &type_id, &company, "Fresh").await;
    backdate(&app, &passed, 2).await;
    let marked = ttscm_testkit::eventually(Duration::from_secs(15), || async {
        stored_due(&app, &passed).await.then_some(())
    })
    .await;
    assert!(marked.is_some(), "the scheduler marked the passed credential");
    assert!(
        !stored_due(&app, &fresh).await,
        "a day has not passed for the other"
    );
    if mode == Mode::Mesh {
        assert_eq!(due_events(&app, &passed).await.len(), 1);
    }
}

/// Two credential replicas run the scheduler every second; each passed credential becomes due
/// once, with one event, however many sweeps follow (mesh only: replicas are processes there).
#[tokio::test]
async fn two_credential_replicas_scheduling_emit_one_event_per_credential() {
    let mut app = spawn_app_with(Mode::Mesh, |settings| settings.credential.rotation_check_secs = 1).await;
    app.start_extra_replica(Component::Credential);
    let company = app.seed_company("Replica Co").await;
    let type_id = scheduled_type(&app, Some(10), None).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let id = credential(&app, &type_id, &company, &format!("Replicated {n}")).await;
        backdate(&app, &id, 11).await;
        ids.push(id);
    }
    let all_marked = ttscm_testkit::eventually(Duration::from_secs(20), || async {
        for id in &ids {
            if !stored_due(&app, id).await {
                return None;
            }
        }
        Some(())
    })
    .await;
    assert!(all_marked.is_some(), "every passed credential was marked");
    // Let at least two more sweeps run (the lease's end moves on at each), then count.
    let store = app.store().await;
    let lease_until = || async {
        store
            .get("credential_rotation_state", "lease")
            .await
            .expect("reads")
            .and_then(|lease| lease.get("until").and_then(Value::as_i64))
    };
    let mut seen = lease_until().await;
    for _ in 0..2 {
        let before = seen;
        seen = ttscm_testkit::eventually(Duration::from_secs(10), || async {
            let now = lease_until().await;
            (now != before).then_some(now)
        })
        .await
        .expect("the scheduler keeps sweeping");
    }
    for id in &ids {
        let events = due_events(&app, id).await;
        assert_eq!(events.len(), 1, "{id}: {events:?}");
        assert_eq!(events[0]["data"]["reason"], "schedule");
    }
}

async fn a_changed_secure_value_clears_the_mark_and_an_unchanged_one_does_not(mode: Mode) {
    let app = spawn_app(mode).await;
    let company = app.seed_company("Clear Co").await;
    let type_id = scheduled_type(&app, Some(30), None).await;
    let id = credential(&app, &type_id, &company, "Firewall").await;
    backdate(&app, &id, 40).await;
    set_stored(&app, &id, Update::default().set("rotationDue", true)).await;
    let due = shown_when(&app, &id, |c| c["rotationDue"] == true).await;
    let due_at = due["rotationDueAt"].clone();

    // Only the plain value changes: the secure one keeps its version, so still due.
    let fields = format!("{CREDS}/{id}/fields");
    let (status, body) = app
        .put(
            &fields,
            &app.admin_token,
            &json!({"fields": [
                {"fieldId": "username", "value": "root"},
                {"fieldId": "password", "value": "rotation-canary"}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["rotationDue"], true, "{body}");
    assert_eq!(body["data"]["rotationDueAt"], due_at);
    assert!(stored_due(&app, &id).await);

    // A new password: no longer due, and the next due date counts from now.
    let (status, body) = app
        .put(
            &fields,
            &app.admin_token,
            &json!({"fields": [
                {"fieldId": "username", "value": "root"},
                {"fieldId": "password", "value": "rotated-canary"}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["rotationDue"], false, "{body}");
    assert!(!stored_due(&app, &id).await);
    let next = clock::parse_iso(body["data"]["rotationDueAt"].as_str().expect("a due date")).expect("a time");
    let updated = clock::parse_iso(body["data"]["updatedAt"].as_str().expect("updatedAt")).expect("a time");
    assert_eq!(next - updated, time::Duration::days(30));
    let (_, listed) = app
        .get(&list(CREDS, "rotationDue=true"), Some(&app.admin_token))
        .await;
    assert_eq!(listed["data"], json!([]), "{listed}");
}

async fn a_break_glass_reveal_makes_the_credential_due(mode: Mode) {
    let app = spawn_app(mode).await;
    let company = app.seed_company("Glass Co").await;
    // No schedule: the break-glass mark alone makes it due.
    let type_id = scheduled_type(&app, None, None).await;
    let id = credential(&app, &type_id, &company, "Domain admin").await;
    let responder = app
        .token_with(&[
            "credential.fetch",
            "credential.secure_values.read",
            "credential.break_glass",
        ])
        .await;
    let (status, body) = app
        .get(
            &format!("{CREDS}/{id}/secure-values?breakGlass=true&reason=Outage"),
            Some(&responder),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let shown = shown_when(&app, &id, |c| c["rotationDue"] == true).await;
    assert!(shown.get("rotationDueAt").is_none(), "{shown}");
    let (_, listed) = app
        .get(
            &list(&format!("{CREDS}/company/{company}"), "rotationDue=true"),
            Some(&app.admin_token),
        )
        .await;
    assert_eq!(strings(&listed["data"], "id"), vec![id.as_str()], "{listed}");
    // A second break-glass reveal while due emits no second event.
    app.get(
        &format!("{CREDS}/{id}/secure-values?breakGlass=true&reason=Still%20down"),
        Some(&responder),
    )
    .await;
    if mode == Mode::Mesh {
        let events = due_events(&app, &id).await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["data"]["reason"], "break_glass");
    }
}

async fn due_lists_span_companies_or_one_company_paged_and_scope_filtered(mode: Mode) {
    let app = spawn_app(mode).await;
    let (north, south) = (app.seed_company("North").await, app.seed_company("South").await);
    let open = scheduled_type(&app, Some(30), None).await;
    let secret = scheduled_type(&app, Some(30), Some("credential.scope.vip")).await;
    let plain = scheduled_type(&app, None, None).await;
    // Due: by date (A, S), marked without a schedule (C), marked with one (D).
    let a = credential(&app, &open, &north, "A north passed").await;
    let s = credential(&app, &secret, &north, "B north secret").await;
    let c = credential(&app, &plain, &south, "C south marked").await;
    let d = credential(&app, &open, &south, "D south marked").await;
    // Not due.
    let fresh_north = credential(&app, &open, &north, "E north fresh").await;
    credential(&app, &plain, &south, "F south unscheduled").await;
    backdate(&app, &a, 31).await;
    backdate(&app, &s, 31).await;
    set_stored(&app, &c, Update::default().set("rotationDue", true)).await;
    set_stored(&app, &d, Update::default().set("rotationDue", true)).await;

    let viewer = app.token_with(&["credential.fetch.many"]).await;
    let (status, body) = app.get(&list(CREDS, "rotationDue=true"), Some(&viewer)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "Credentials Fetched Successfully!");
    assert_eq!(
        strings(&body["data"], "id"),
        vec![a.as_str(), c.as_str(), d.as_str()],
        "{body}"
    );
    assert!(
        body["data"]
            .as_array()
            .expect("a list")
            .iter()
            .all(|c| c["rotationDue"] == true)
    );
    assert_eq!(body["data"][1]["company"]["name"], "South", "companies are named");
    let (_, body) = app
        .get(&list(CREDS, "rotationDue=true"), Some(&app.admin_token))
        .await;
    assert_eq!(
        strings(&body["data"], "id"),
        vec![a.as_str(), s.as_str(), c.as_str(), d.as_str()],
        "the scope's holder sees its credential too"
    );

    // Paged: the companies' pagination object, totals counting what the caller may see.
    let (_, page) = app
        .get(&list(CREDS, "rotationDue=true&page=2&rpp=2"), Some(&viewer))
        .await;
    assert_eq!(strings(&page["data"], "id"), vec![d.as_str()], "{page}");
    assert_eq!(page["pagination"]["totalRecords"], 3);
    assert_eq!(page["pagination"]["totalPages"], 2);
    assert_eq!(page["pagination"]["currentPage"], 2);

    // Without the filter: every credential the caller may see, across companies.
    let (_, all) = app.get(CREDS, Some(&viewer)).await;
    assert_eq!(all["data"].as_array().expect("a list").len(), 5, "{all}");

    // One company's list.
    let north_list = format!("{CREDS}/company/{north}");
    let (_, body) = app
        .get(&list(&north_list, "rotationDue=true"), Some(&viewer))
        .await;
    assert_eq!(strings(&body["data"], "id"), vec![a.as_str()], "{body}");
    let (_, body) = app
        .get(
            &list(&north_list, "rotationDue=true&page=1&rpp=10"),
            Some(&app.admin_token),
        )
        .await;
    assert_eq!(
        strings(&body["data"], "id"),
        vec![a.as_str(), s.as_str()],
        "{body}"
    );
    assert_eq!(body["pagination"]["totalRecords"], 2);
    let (_, body) = app.get(&north_list, Some(&viewer)).await;
    assert_eq!(
        body["data"].as_array().expect("a list").len(),
        2,
        "unfiltered: {body}"
    );
    assert!(strings(&body["data"], "id").contains(&fresh_north.as_str()));

    // A type's list takes the filter too.
    let type_list = format!("{TYPES}/{open}/credentials");
    let (_, body) = app
        .get(&list(&type_list, "rotationDue=true"), Some(&app.admin_token))
        .await;
    assert_eq!(
        strings(&body["data"], "id"),
        vec![a.as_str(), d.as_str()],
        "{body}"
    );

    for path in [CREDS, north_list.as_str(), type_list.as_str()] {
        let (status, body) = app
            .get(&list(path, "rotationDue=yes"), Some(&app.admin_token))
            .await;
        assert_eq!(
            (status, error_paths(&body)),
            (400, vec![json!(["rotationDue"])]),
            "{path}: {body}"
        );
    }
    let (status, body) = app
        .get(&list(CREDS, "rotationDue=true&rpp=0"), Some(&viewer))
        .await;
    assert_eq!(
        (status, error_paths(&body)),
        (400, vec![json!(["rpp"])]),
        "{body}"
    );
}

async fn the_cross_company_list_needs_credential_fetch_many(mode: Mode) {
    let app = spawn_app(mode).await;
    let path = list(CREDS, "rotationDue=true");
    let without = app
        .token_with(&[
            "credential.fetch",
            "credential_type.fetch.many",
            "company.fetch.many",
        ])
        .await;
    let (status, body) = app.get(&path, Some(&without)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(app.get_status(CREDS, Some(&without)).await, 403);
    assert_eq!(app.get_status(&path, None).await, 401);
    let with = app.token_with(&["credential.fetch.many"]).await;
    assert_eq!(app.get_status(&path, Some(&with)).await, 200);
}

both_modes!(
    rotation_days_is_validated_shown_changed_and_audited,
    a_credential_shows_when_it_is_due_and_is_due_once_the_days_passed,
    a_sweep_marks_each_passed_credential_once_even_when_sweeps_overlap,
    the_scheduler_marks_passed_credentials_due_in_the_background,
    a_changed_secure_value_clears_the_mark_and_an_unchanged_one_does_not,
    a_break_glass_reveal_makes_the_credential_due,
    due_lists_span_companies_or_one_company_paged_and_scope_filtered,
    the_cross_company_list_needs_credential_fetch_many,
);
