//! Company events in one process (the embedded mode's in-process bus, SQLite): the manual
//! companies API announces `company.created`, `company.updated` and `company.deleted` before it
//! answers, with the caller, and a refused change announces nothing.

use std::time::Duration;

use serde_json::{Value, json};
use ttscm_contract::company::{Company, CompanyInput, CreateCompany, DeleteCompany, UpdateCompany};
use ttscm_contract::credential::CountCompanyCredentials;
use ttscm_contract::{Component, Principal};
use ttscm_runtime::bus::inproc::InProcBus;
use ttscm_runtime::service::{BusClient, CallContext, serve_fn};
use ttscm_runtime::{Bus, Settings, Shutdown, connect};

/// The next event on `subscription`, or `None` when none comes within a short while.
async fn next_event(subscription: &mut ttscm_runtime::bus::Subscription) -> Option<(String, Value)> {
    let message = tokio::time::timeout(Duration::from_millis(200), subscription.next())
        .await
        .ok()??;
    let event = serde_json::from_slice(&message.payload).expect("events are JSON");
    Some((message.subject, event))
}

#[actix::test]
async fn manual_companies_created_renamed_and_deleted_are_announced_in_process() {
    ttscm_testkit::init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = Settings {
        data_dir: dir.path().to_path_buf(),
        ..Settings::default()
    };
    let store = connect::store(&settings).await.expect("store opens");
    let bus = Bus::InProc(InProcBus::new());
    let shutdown = Shutdown::new();
    let _guard = shutdown.clone().drop_guard();
    ttscm_company_sync::run(&bus, &store, &settings, shutdown.clone())
        .await
        .expect("company-sync starts");
    // The credential service's answer when a company is deleted: no credentials.
    serve_fn::<CountCompanyCredentials, _, _>(&bus, "credential", shutdown.clone(), |_, _| async { Ok(0) })
        .await
        .expect("served");
    let mut subscription = bus.subscribe("ttscm.events.company.>").await.expect("subscribed");
    let client = BusClient::new(bus.clone(), Duration::from_secs(5));
    let ctx = CallContext::new(Some(Principal::service(Component::Edge)));

    let company: Company = client
        .call(
            &ctx,
            &CreateCompany {
                input: CompanyInput {
                    name: "In Process Co".into(),
                },
            },
        )
        .await
        .expect("created");
    let rename = |name: &str| UpdateCompany {
        id: company.id.clone(),
        patch: CompanyInput { name: name.into() },
    };
    client.call(&ctx, &rename("Renamed Co")).await.expect("renamed");
    client
        .call(&ctx, &rename(""))
        .await
        .expect_err("an empty name is refused");
    client
        .call(
            &ctx,
            &DeleteCompany {
                id: company.id.clone(),
            },
        )
        .await
        .expect("deleted");

    let mut events = Vec::new();
    while let Some(event) = next_event(&mut subscription).await {
        events.push(event);
    }
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
    let data: Vec<&Value> = events.iter().map(|(_, e)| &e["data"]).collect();
    for (_, event) in &events {
        assert_eq!(event["source"], "ttscm/company-sync");
        assert_eq!(event["subject"], company.id.as_str());
        assert_eq!(event["data"]["actor"], json!({"id": "edge", "kind": "service"}));
    }
    assert_eq!(data[0]["name"], "In Process Co");
    assert_eq!(
        (&data[1]["name"], &data[1]["previousName"], &data[1]["changed"]),
        (&json!("Renamed Co"), &json!("In Process Co"), &json!(["name"]))
    );
    assert_eq!(data[2]["name"], "Renamed Co");
}
