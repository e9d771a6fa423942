//! Webhook delivery driven by a clock of the test's own (`Service::deliver_due(now)`): a day of
//! retries on the Standard Webhooks schedule without waiting, the automatic disable and its
//! event, secret rotation (two signatures), and the address check at delivery. Real parts: the
//! embedded store, vault sealing and opening the secrets over the in-process bus, and a receiver
//! verifying every delivery with the Standard Webhooks reference library.

use crate::webhook_support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use ttscm_contract::event::CloudEvent;
use ttscm_contract::webhook::{
    CreateWebhookEndpoint, GetWebhookEndpoint, ListWebhookDeliveries, ReplayWebhookDelivery,
    RotateWebhookSecret, UpdateWebhookEndpoint, WebhookEndpointInput, WebhookEndpointPatch,
    WebhookEndpointWithSecret,
};
use ttscm_contract::{ErrorCode, Permission, PermissionSet, Principal, PrincipalKind};
use ttscm_runtime::service::{CallContext, ServiceOp};
use ttscm_runtime::{Bus, Settings, Shutdown, Store, clock, connect, ids};
use ttscm_webhook::Service;
use ttscm_webhook::deliver::SCHEDULE;
use webhook_support::Receiver;

/// Bus, store and vault of one process, and the webhook component opened on them (its jobs
/// not running: the test drives deliveries).
struct Rig {
    bus: Bus,
    store: Store,
    settings: Settings,
    _dir: tempfile::TempDir,
    shutdown: Shutdown,
}

impl Rig {
    async fn new() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut settings = Settings {
            data_dir: dir.path().to_path_buf(),
            ..Settings::default()
        };
        settings.webhook.allow_private = true;
        settings.webhook.allow_http = true;
        let bus = connect::bus(&settings, None).await.expect("the in-process bus");
        let store = connect::store(&settings).await.expect("the embedded store");
        let shutdown = Shutdown::new();
        ttscm_vault::run(&bus, &settings, shutdown.clone())
            .await
            .expect("vault serves");
        Self {
            bus,
            store,
            settings,
            _dir: dir,
            shutdown,
        }
    }

    /// The webhook component with the rig's settings changed by `configure`.
    async fn webhook(&self, configure: impl FnOnce(&mut Settings)) -> Arc<Service> {
        let mut settings = self.settings.clone();
        configure(&mut settings);
        ttscm_webhook::open(&self.bus, &self.store, &settings)
            .await
            .expect("the webhook component opens")
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn admin() -> CallContext {
    CallContext::new(Some(Principal {
        id: "admin-1".into(),
        kind: PrincipalKind::User,
        name: "Admin".into(),
        permissions: PermissionSet::new(vec![Permission::parse("webhook.manage").expect("valid")]),
        scopes: Vec::new(),
        session_id: None,
    }))
}

async fn create(
    service: &Arc<Service>,
    url: &str,
    types: &[&str],
    companies: &[&str],
) -> WebhookEndpointWithSecret {
    CreateWebhookEndpoint {
        input: WebhookEndpointInput {
            url: url.to_owned(),
            description: Some("test receiver".into()),
            event_types: Some(types.iter().map(|t| (*t).to_owned()).collect()),
            company_ids: Some(companies.iter().map(|c| (*c).to_owned()).collect()),
            enabled: None,
        },
    }
    .run(service.clone(), admin())
    .await
    .expect("the endpoint is created")
}

/// A CloudEvent as the credential service publishes it.
fn event(aggregate: &str, action: &str, subject: &str, data: Value) -> (String, Vec<u8>) {
    let id = ids::new_id();
    let event = CloudEvent::new(
        "ttscm/credential",
        aggregate,
        action,
        id.clone(),
        clock::now_iso(),
        subject,
        data,
    );
    (id, serde_json::to_vec(&event).expect("JSON"))
}

async fn take(service: &Arc<Service>, payload: &[u8]) -> usize {
    service
        .filters
        .reload(&service.store)
        .await
        .expect("endpoints read");
    let endpoints = service.filters.snapshot();
    service.take_event(payload, &endpoints).await.expect("stored")
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).expect("fits")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_is_retried_for_more_than_a_day_then_a_replay_delivers() {
    let rig = Rig::new().await;
    let service = rig.webhook(|_| {}).await;
    let receiver = Receiver::start();
    receiver.fail(500, -1).await;
    let endpoint = create(&service, &receiver.url(), &["credential.*"], &[]).await;
    assert!(endpoint.secret.starts_with("whsec_"));
    receiver.secrets(&[&endpoint.secret]).await;

    let (event_id, payload) = event(
        "credential",
        "created",
        "cred-1",
        json!({"id": "cred-1", "companyId": "c1"}),
    );
    assert_eq!(take(&service, &payload).await, 1);
    // The same event again (a redelivery) is stored once.
    assert_eq!(take(&service, &payload).await, 1);

    let first = clock::unix_now_millis();
    let mut now = first;
    for attempt in 1..=8 {
        assert_eq!(
            service.deliver_due(now).await.expect("delivers"),
            1,
            "attempt {attempt} is due"
        );
        if attempt < 8 {
            let wait = ms(SCHEDULE[attempt - 1]);
            assert_eq!(
                service.deliver_due(now + wait - 1000).await.expect("delivers"),
                0,
                "attempt {} is not due a second early",
                attempt + 1
            );
            now += wait;
        }
    }
    assert!(now - first > 24 * 3600 * 1000, "retried for more than a day");
    assert_eq!(
        service
            .deliver_due(now + ms(Duration::from_secs(48 * 3600)))
            .await
            .expect("delivers"),
        0
    );

    let received = receiver.received().await;
    assert_eq!(received.len(), 8, "eight attempts reached the receiver");
    for delivery in &received {
        assert_eq!(
            delivery["id"],
            json!(event_id),
            "the same webhook-id on every attempt"
        );
        assert_eq!(
            delivery["verifiedWith"],
            json!([0]),
            "verified by the reference library"
        );
        assert_eq!(delivery["status"], json!(500));
    }
    let log = ListWebhookDeliveries {
        id: endpoint.endpoint.id.clone(),
        status: None,
        page: 1,
        rpp: 30,
    }
    .run(service.clone(), admin())
    .await
    .expect("the log");
    assert_eq!(log.total, 1, "one delivery for the event taken twice");
    let delivery = &log.items[0];
    assert_eq!(delivery.status, "failed");
    assert_eq!(delivery.attempts, 8);
    assert_eq!(delivery.event_id, event_id);
    assert_eq!(delivery.last_attempts.len(), 8);
    assert!(delivery.last_attempts.iter().all(|a| a.status_code == Some(500)));

    // The receiver is fixed; a replay delivers the same message.
    receiver.fail(500, 0).await;
    let replayed = ReplayWebhookDelivery {
        id: endpoint.endpoint.id.clone(),
        delivery_id: delivery.id.clone(),
    }
    .run(service.clone(), admin())
    .await
    .expect("replayed");
    assert_eq!(replayed.status, "pending");
    assert_eq!(
        service
            .deliver_due(clock::unix_now_millis())
            .await
            .expect("delivers"),
        1
    );
    let received = receiver.received().await;
    assert_eq!(received.len(), 9);
    assert_eq!(received[8]["id"], json!(event_id));
    assert_eq!(received[8]["status"], json!(204));
    let log = ListWebhookDeliveries {
        id: endpoint.endpoint.id.clone(),
        status: Some("delivered".into()),
        page: 1,
        rpp: 30,
    }
    .run(service.clone(), admin())
    .await
    .expect("the log");
    assert_eq!(log.total, 1);
    assert!(log.items[0].delivered_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_failures_disables_the_endpoint_with_an_event() {
    let rig = Rig::new().await;
    let service = rig.webhook(|s| s.webhook.disable_after_failures = 3).await;
    let mut disabled_events = rig
        .bus
        .subscribe("ttscm.events.webhook.>")
        .await
        .expect("subscribes");
    let receiver = Receiver::start();
    receiver.fail(503, -1).await;
    let endpoint = create(&service, &receiver.url(), &[], &[]).await;
    let id = endpoint.endpoint.id.clone();
    for n in 0..3 {
        let (_, payload) = event(
            "credential",
            "deleted",
            &format!("cred-{n}"),
            json!({"companyId": "c1"}),
        );
        assert_eq!(take(&service, &payload).await, 1);
    }
    assert_eq!(
        service
            .deliver_due(clock::unix_now_millis())
            .await
            .expect("delivers"),
        3
    );

    let now = GetWebhookEndpoint { id: id.clone() }
        .run(service.clone(), admin())
        .await
        .expect("the endpoint");
    assert!(!now.enabled, "disabled after 3 failed attempts in a row");
    assert_eq!(now.failure_streak, 3);
    assert!(
        now.disabled_reason
            .as_deref()
            .is_some_and(|r| r.contains("3 failed")),
        "{:?}",
        now.disabled_reason
    );
    let message = tokio::time::timeout(Duration::from_secs(5), disabled_events.next())
        .await
        .expect("the disable is announced")
        .expect("a message");
    let announced: Value = serde_json::from_slice(&message.payload).expect("JSON");
    assert_eq!(announced["type"], json!("ttscm.webhook.endpoint_disabled"));
    assert_eq!(announced["subject"], json!(id));
    assert_eq!(announced["data"]["endpointId"], json!(id));

    // Nothing more is queued for it, and its retries end as failed.
    let (_, payload) = event("credential", "created", "cred-9", json!({"companyId": "c1"}));
    assert_eq!(
        take(&service, &payload).await,
        0,
        "a disabled endpoint takes no events"
    );
    let later = clock::unix_now_millis() + 3_600_000;
    assert_eq!(service.deliver_due(later).await.expect("delivers"), 3);
    assert_eq!(
        receiver.received().await.len(),
        3,
        "no attempt at a disabled endpoint"
    );
    let failed = ListWebhookDeliveries {
        id: id.clone(),
        status: Some("failed".into()),
        page: 1,
        rpp: 30,
    }
    .run(service.clone(), admin())
    .await
    .expect("the log");
    assert_eq!(failed.total, 3);

    // A replay waits for the endpoint to be enabled again.
    let refused = ReplayWebhookDelivery {
        id: id.clone(),
        delivery_id: failed.items[0].id.clone(),
    }
    .run(service.clone(), admin())
    .await
    .expect_err("refused while disabled");
    assert_eq!(refused.code, ErrorCode::Conflict);
    let enabled = UpdateWebhookEndpoint {
        id: id.clone(),
        patch: WebhookEndpointPatch {
            enabled: Some(true),
            ..Default::default()
        },
    }
    .run(service.clone(), admin())
    .await
    .expect("enabled");
    assert!(enabled.enabled);
    assert_eq!(enabled.failure_streak, 0);
    assert_eq!(enabled.disabled_reason, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_signs_beside_the_previous_one_during_its_grace() {
    let rig = Rig::new().await;
    let service = rig.webhook(|_| {}).await;
    let receiver = Receiver::start();
    let endpoint = create(&service, &receiver.url(), &[], &[]).await;
    let rotated = RotateWebhookSecret {
        id: endpoint.endpoint.id.clone(),
    }
    .run(service.clone(), admin())
    .await
    .expect("rotated");
    assert_ne!(rotated.secret, endpoint.secret);
    assert!(rotated.endpoint.secret_rotated_at.is_some());
    receiver.secrets(&[&endpoint.secret, &rotated.secret]).await;
    let (_, payload) = event("credential", "created", "cred-1", json!({}));
    assert_eq!(take(&service, &payload).await, 1);
    assert_eq!(
        service
            .deliver_due(clock::unix_now_millis())
            .await
            .expect("delivers"),
        1
    );
    let received = receiver.received().await;
    assert_eq!(
        received[0]["signatures"],
        json!(2),
        "both secrets sign during the grace"
    );
    assert_eq!(
        received[0]["verifiedWith"],
        json!([0, 1]),
        "each signature verifies on its own"
    );

    // Without a grace the secret rotated away stops at once (the first one keeps the grace its
    // own rotation gave it).
    let strict = rig.webhook(|s| s.webhook.rotation_grace_secs = 0).await;
    let again = RotateWebhookSecret {
        id: endpoint.endpoint.id.clone(),
    }
    .run(strict.clone(), admin())
    .await
    .expect("rotated");
    receiver
        .secrets(&[&endpoint.secret, &rotated.secret, &again.secret])
        .await;
    let (_, payload) = event("credential", "created", "cred-2", json!({}));
    assert_eq!(take(&strict, &payload).await, 1);
    assert_eq!(
        strict
            .deliver_due(clock::unix_now_millis())
            .await
            .expect("delivers"),
        1
    );
    let received = receiver.received().await;
    assert_eq!(received[1]["signatures"], json!(2));
    assert_eq!(
        received[1]["verifiedWith"],
        json!([0, 2]),
        "the newest and the first (still in its grace) sign; the second no longer does"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_pick_the_events_an_endpoint_gets() {
    let rig = Rig::new().await;
    let service = rig.webhook(|_| {}).await;
    let receiver = Receiver::start();
    create(
        &service,
        &receiver.url(),
        &["credential.created", "company.*"],
        &["c1"],
    )
    .await;
    let cases = [
        ("credential", "created", "x", json!({"companyId": "c1"}), 1),
        ("credential", "created", "x", json!({"companyId": "c2"}), 0),
        ("credential", "deleted", "x", json!({"companyId": "c1"}), 0),
        ("credential_type", "created", "t", json!({"id": "t"}), 0),
        ("company", "updated", "c1", json!({"id": "c1"}), 1),
        ("company", "updated", "c2", json!({"id": "c2"}), 0),
    ];
    for (aggregate, action, subject, data, expected) in cases {
        let (_, payload) = event(aggregate, action, subject, data.clone());
        assert_eq!(
            take(&service, &payload).await,
            expected,
            "{aggregate}.{action} about {subject} {data}"
        );
    }
    // An event older than the endpoint is not delivered to it.
    let old = CloudEvent::new(
        "ttscm/credential",
        "credential",
        "created",
        ids::new_id(),
        "2020-01-01T00:00:00Z".into(),
        "x",
        json!({"companyId": "c1"}),
    );
    assert_eq!(take(&service, &serde_json::to_vec(&old).expect("JSON")).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_are_checked_again_at_delivery() {
    let rig = Rig::new().await;
    let lenient = rig.webhook(|_| {}).await;
    let receiver = Receiver::start();
    let endpoint = create(&lenient, &receiver.url(), &[], &[]).await;
    // The same store served by a replica that refuses internal addresses (as in production,
    // where the URL's name may have been pointed at one after it was registered).
    let strict = rig.webhook(|s| s.webhook.allow_private = false).await;
    let (_, payload) = event("credential", "created", "cred-1", json!({}));
    assert_eq!(take(&strict, &payload).await, 1);
    assert_eq!(
        strict
            .deliver_due(clock::unix_now_millis())
            .await
            .expect("delivers"),
        1
    );
    assert!(
        receiver.received().await.is_empty(),
        "nothing was sent to a loopback address"
    );
    let log = ListWebhookDeliveries {
        id: endpoint.endpoint.id.clone(),
        status: None,
        page: 1,
        rpp: 30,
    }
    .run(strict.clone(), admin())
    .await
    .expect("the log");
    let attempt = &log.items[0].last_attempts[0];
    assert_eq!(attempt.status_code, None);
    assert!(
        attempt.error.as_deref().is_some_and(|e| e.contains("loopback")),
        "{attempt:?}"
    );

    // Registration refuses them too, by literal address and by name.
    for url in [
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.0.0.7/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::ffff:192.168.0.1]/",
    ] {
        let error = CreateWebhookEndpoint {
            input: WebhookEndpointInput {
                url: url.into(),
                description: None,
                event_types: None,
                company_ids: None,
                enabled: None,
            },
        }
        .run(strict.clone(), admin())
        .await
        .expect_err("refused");
        assert_eq!(error.code, ErrorCode::Validation, "{url}: {error:?}");
        assert_eq!(error.errors[0].path, vec![json!("url")], "{url}");
    }
}
