//! The durable event publisher (`ttscm_runtime::events`) against a real nats-server and the
//! embedded store: events stored by `TTSCM_EVENTS` before `publish` returns, kept in the outbox
//! while the bus is down and published from there once it is back — once, even when a row is
//! published twice — and, in one process, delivered to subscribers with the caller added.

use std::time::Duration;

use serde_json::{Value, json};
use ttscm_contract::Principal;
use ttscm_contract::subjects::HEADER_EVENT_ID;
use ttscm_runtime::bus::inproc::InProcBus;
use ttscm_runtime::bus::nats::NatsBus;
use ttscm_runtime::events::{Events, NewEvent, prepare};
use ttscm_runtime::service::CallContext;
use ttscm_runtime::{Bus, Filter, Settings, Store, connect};
use ttscm_testkit::{NatsServer, eventually};

const OUTBOX: &str = "test_event_outbox";

async fn sqlite() -> (Store, tempfile::TempDir) {
    ttscm_testkit::init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = Settings {
        data_dir: dir.path().to_path_buf(),
        ..Settings::default()
    };
    let store = connect::store(&settings).await.expect("store opens");
    prepare(&store, OUTBOX).await.expect("outbox declared");
    (store, dir)
}

async fn nats(server: &NatsServer) -> Bus {
    let nats = NatsBus::connect(&server.url(), "events-test", &Default::default())
        .await
        .expect("connects");
    assert!(nats.wait_connected(Duration::from_secs(5)).await);
    nats.ensure_events_stream().await.expect("stream created");
    Bus::Nats(Box::new(nats))
}

/// The events stream's messages: subject, the event-id header and the payload.
async fn stored(server: &NatsServer) -> Vec<(String, Option<String>, Value)> {
    let client = async_nats::connect(server.url()).await.expect("connects");
    let jetstream = async_nats::jetstream::new(client);
    let mut stream = jetstream.get_stream("TTSCM_EVENTS").await.expect("stream");
    let last = stream.info().await.expect("info").state.last_sequence;
    let mut messages = Vec::new();
    for seq in 1..=last {
        if let Ok(message) = stream.get_raw_message(seq).await {
            let id = message
                .headers
                .get(HEADER_EVENT_ID)
                .map(|v| v.as_str().to_owned());
            let payload = serde_json::from_slice(&message.payload).expect("JSON");
            messages.push((message.subject.to_string(), id, payload));
        }
    }
    messages
}

async fn outbox_rows(store: &Store) -> u64 {
    store.count(OUTBOX, &Filter::All).await.expect("count")
}

fn created(subject: &str) -> NewEvent {
    NewEvent {
        aggregate: "company",
        action: "created",
        subject: subject.into(),
        data: json!({"id": subject}),
    }
}

#[tokio::test]
async fn an_event_the_bus_cannot_take_waits_in_the_outbox_and_is_published_once_when_it_can() {
    let (store, _dir) = sqlite().await;
    let mut server = NatsServer::start();
    let bus = nats(&server).await;
    let events = Events::new(bus.clone(), store.clone(), "ttscm/test", OUTBOX);
    let ctx = CallContext::new(None);

    events
        .publish(&ctx, "company", "created", "c1", || json!({"id": "c1"}))
        .await;
    let now = stored(&server).await;
    assert_eq!(now.len(), 1, "stored before publish returns: {now:?}");
    let (subject, header, event) = &now[0];
    assert_eq!(subject, "ttscm.events.company.created");
    assert_eq!(
        header.as_deref(),
        event["id"].as_str(),
        "the id travels as a header too"
    );
    assert_eq!(event["source"], "ttscm/test");
    assert_eq!(event["subject"], "c1");

    server.stop();
    let down = eventually(Duration::from_secs(10), || async {
        (!bus.is_connected()).then_some(())
    })
    .await;
    assert!(down.is_some(), "the client sees the outage");
    events
        .publish(&ctx, "company", "updated", "c1", || json!({"id": "c1"}))
        .await;
    assert_eq!(outbox_rows(&store).await, 1, "kept in the outbox");
    let row = store
        .find(OUTBOX, &ttscm_runtime::FindOptions::new(Filter::All))
        .await
        .expect("rows")
        .remove(0);

    server.restart();
    let drained = eventually(Duration::from_secs(20), || async {
        (events.drain_outbox().await.ok()? == 1).then_some(())
    })
    .await;
    assert!(
        drained.is_some(),
        "published from the outbox once the bus is back"
    );
    assert_eq!(outbox_rows(&store).await, 0);
    let after = stored(&server).await;
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(after[1].0, "ttscm.events.company.updated");
    assert_eq!(after[1].1.as_deref(), row["id"].as_str());

    // Another replica draining the same row publishes it again: JetStream keeps one copy.
    store.insert(OUTBOX, row).await.expect("row again");
    assert_eq!(events.drain_outbox().await.expect("drained"), 1);
    assert_eq!(stored(&server).await.len(), 2, "the copy is dropped by its id");
}

#[tokio::test]
async fn a_batch_published_while_the_bus_is_down_is_kept_whole_in_the_outbox() {
    let (store, _dir) = sqlite().await;
    let mut server = NatsServer::start();
    let bus = nats(&server).await;
    let events = Events::new(bus.clone(), store.clone(), "ttscm/test", OUTBOX);
    server.stop();
    let down = eventually(Duration::from_secs(10), || async {
        (!bus.is_connected()).then_some(())
    })
    .await;
    assert!(down.is_some(), "the client sees the outage");

    let batch = (0..100).map(|i| created(&format!("c{i}"))).collect();
    events.publish_all(batch).await;
    assert_eq!(outbox_rows(&store).await, 100);

    server.restart();
    let drained = eventually(Duration::from_secs(20), || async {
        events.drain_outbox().await.ok()?;
        (outbox_rows(&store).await == 0).then_some(())
    })
    .await;
    assert!(drained.is_some(), "the outbox drains once the bus is back");
    let subjects: std::collections::HashSet<String> = stored(&server)
        .await
        .into_iter()
        .map(|(_, _, event)| event["subject"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(subjects.len(), 100, "every event arrives, once");
}

#[tokio::test]
async fn in_one_process_subscribers_get_the_event_with_its_caller() {
    let (store, _dir) = sqlite().await;
    let bus = Bus::InProc(InProcBus::new());
    let events = Events::new(bus.clone(), store.clone(), "ttscm/test", OUTBOX);
    let mut subscription = bus.subscribe("ttscm.events.company.>").await.expect("subscribed");
    let ctx = CallContext::new(Some(Principal::service(ttscm_contract::Component::Edge)));

    events
        .publish(&ctx, "company", "deleted", "c9", || json!({"id": "c9"}))
        .await;
    events.publish_all(vec![created("c10")]).await;

    let message = tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .expect("delivered")
        .expect("open");
    let event: Value = serde_json::from_slice(&message.payload).expect("JSON");
    assert_eq!(message.subject, "ttscm.events.company.deleted");
    assert_eq!(message.headers.get(HEADER_EVENT_ID), event["id"].as_str());
    assert_eq!(event["data"]["actor"], json!({"id": "edge", "kind": "service"}));
    assert_eq!(event["data"]["requestId"], ctx.request_id.as_str());
    let message = tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .expect("delivered")
        .expect("open");
    let event: Value = serde_json::from_slice(&message.payload).expect("JSON");
    assert_eq!(event["type"], "ttscm.company.created");
    assert_eq!(
        event["data"],
        json!({"id": "c10"}),
        "background events carry no caller"
    );
    assert_eq!(outbox_rows(&store).await, 0);
}

/// A publish that finds no stream for its subject (the stream deleted) creates it and stores
/// the event there, not in the outbox.
#[tokio::test]
async fn a_publish_without_the_stream_creates_it() {
    let (store, _dir) = sqlite().await;
    let server = NatsServer::start();
    let bus = nats(&server).await;
    let client = async_nats::connect(server.url()).await.expect("connects");
    async_nats::jetstream::new(client)
        .delete_stream("TTSCM_EVENTS")
        .await
        .expect("deleted");
    let events = Events::new(bus, store.clone(), "ttscm/test", OUTBOX);
    events
        .publish(
            &CallContext::new(None),
            "company",
            "created",
            "c1",
            || json!({"id": "c1"}),
        )
        .await;
    let now = stored(&server).await;
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(outbox_rows(&store).await, 0);
}
