//! Company events in the mesh as an outside tool sees them in `TTSCM_EVENTS`: manual companies
//! created, renamed and deleted through the API are announced (`company.created|updated|
//! deleted`) before the request answers, and a change made while the events stream takes
//! nothing is announced once it takes events again (company-sync's outbox), once; a company
//! added by the CLI (straight into the store) is announced by the running service.

use crate::support;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use support::{Mode, TestApp, spawn_app};

const COMPANIES: &str = "/v1/company/companies";

/// The company events about `id` in `TTSCM_EVENTS`, in order.
async fn company_events(app: &TestApp, id: &str) -> Vec<(String, Value)> {
    app.replay_events()
        .await
        .into_iter()
        .filter(|(subject, event)| subject.starts_with("ttscm.events.company.") && event["subject"] == id)
        .collect()
}

/// Creates a manual company named `name`; answers its id.
async fn create_company(app: &TestApp, name: &str) -> String {
    let (status, body) = app
        .post(COMPANIES, &app.admin_token, &json!({"name": name}))
        .await;
    assert_eq!(status, 201, "{body}");
    body["data"]["id"].as_str().expect("an id").to_owned()
}

#[tokio::test]
async fn an_outside_durable_consumer_sees_manual_companies_created_renamed_and_deleted() {
    let app = spawn_app(Mode::Mesh).await;
    let token = app.admin_token.clone();
    // The integrator's durable consumer of company events, made before anything happens.
    let jetstream = async_nats::jetstream::new(app.nats_integrator().await);
    let stream = jetstream
        .get_stream("TTSCM_EVENTS")
        .await
        .expect("the events stream exists once the services run");
    let consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            "psa-companies",
            async_nats::jetstream::consumer::pull::Config {
                durable_name: Some("psa-companies".into()),
                filter_subject: "ttscm.events.company.>".into(),
                ..Default::default()
            },
        )
        .await
        .expect("the integrator creates a durable consumer");

    let id = create_company(&app, "Manual Events Co").await;
    let path = format!("{COMPANIES}/{id}");
    let (status, body) = app
        .patch(&path, &token, &json!({"name": "Renamed Events Co"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.delete_status(&path, &token).await, 200);

    // Each event is stored by the stream before its request answers: all three are there now.
    let events = company_events(&app, &id).await;
    let subjects: Vec<&str> = events.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "ttscm.events.company.created",
            "ttscm.events.company.updated",
            "ttscm.events.company.deleted",
        ],
        "{events:?}"
    );

    let mut seen = Vec::new();
    let mut messages = consumer
        .fetch()
        .max_messages(10)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .expect("fetches");
    while let Some(Ok(message)) = messages.next().await {
        message.ack().await.expect("acknowledges");
        seen.push(serde_json::from_slice::<Value>(&message.payload).expect("events are JSON"));
    }
    let types: Vec<&str> = seen.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        types,
        [
            "ttscm.company.created",
            "ttscm.company.updated",
            "ttscm.company.deleted",
        ],
        "{seen:?}"
    );
    let (created, updated, deleted) = (&seen[0], &seen[1], &seen[2]);
    for event in &seen {
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["source"], "ttscm/company-sync");
        assert_eq!(event["subject"], id.as_str());
        assert_eq!(event["data"]["id"], id.as_str());
        assert_eq!(event["data"]["source"], "manual");
        assert_eq!(event["data"]["actor"]["kind"], "api_token", "{event}");
        assert!(event["data"]["requestId"].is_string(), "{event}");
    }
    assert_eq!(created["data"]["name"], "Manual Events Co");
    assert_eq!(updated["data"]["name"], "Renamed Events Co");
    assert_eq!(updated["data"]["previousName"], "Manual Events Co");
    assert_eq!(updated["data"]["changed"], json!(["name"]));
    assert_eq!(deleted["data"]["name"], "Renamed Events Co");
    let ids: std::collections::HashSet<&str> = seen.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), 3, "each event has an id of its own");
}

/// The stream is pointed elsewhere, as an operator might by mistake (the bus is up but takes no
/// events): the company is still created, its event waits in company-sync's outbox, and once
/// the stream takes events again it arrives — once — without restarting anything.
#[tokio::test]
async fn a_company_created_while_the_events_stream_takes_nothing_is_announced_once_it_does() {
    let app = spawn_app(Mode::Mesh).await;
    let jetstream = async_nats::jetstream::new(app.nats_operator().await);
    let mut stream = jetstream
        .get_stream("TTSCM_EVENTS")
        .await
        .expect("the stream exists");
    let config = stream.info().await.expect("info").config.clone();
    let parked = async_nats::jetstream::stream::Config {
        subjects: vec!["ttscm.parked.events".into()],
        ..config.clone()
    };
    jetstream.update_stream(&parked).await.expect("stream parked");

    let id = create_company(&app, "Outbox Co").await;
    assert_eq!(
        company_events(&app, &id).await.len(),
        0,
        "no stream took the event"
    );

    jetstream.update_stream(&config).await.expect("stream restored");
    let events = ttscm_testkit::eventually(Duration::from_secs(20), || async {
        let events = company_events(&app, &id).await;
        (!events.is_empty()).then_some(events)
    })
    .await
    .expect("the event is published from the outbox once the stream takes events");
    assert_eq!(events[0].0, "ttscm.events.company.created");
    assert_eq!(events[0].1["data"]["name"], "Outbox Co");

    // The outbox is empty afterwards, and the event is there once.
    let store = app.store().await;
    let drained = ttscm_testkit::eventually(Duration::from_secs(10), || async {
        let waiting = store
            .count("company_event_outbox", &ttscm_runtime::Filter::All)
            .await
            .ok()?;
        (waiting == 0).then_some(())
    })
    .await;
    assert!(drained.is_some(), "the outbox is drained");
    assert_eq!(company_events(&app, &id).await.len(), 1, "published once");
}

/// `ttscm company add` writes the store directly (no bus): its event waits in company-sync's
/// outbox, and the running company-sync publishes it.
#[tokio::test]
async fn a_company_added_by_the_cli_is_announced_by_the_running_service() {
    let app = spawn_app(Mode::Mesh).await;
    let id = ttscm_company_sync::admin::create_company(&app.store().await, "Command Line Co")
        .await
        .expect("added as the CLI adds it");
    let events = ttscm_testkit::eventually(Duration::from_secs(20), || async {
        let events = company_events(&app, &id).await;
        (!events.is_empty()).then_some(events)
    })
    .await
    .expect("company-sync publishes the kept event");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "ttscm.events.company.created");
    assert_eq!(
        events[0].1["data"],
        json!({"id": id, "name": "Command Line Co", "source": "manual"})
    );
}
