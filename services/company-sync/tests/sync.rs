//! Syncing companies from the ConnectWise fake into both store adapters (SQLite and FerretDB):
//! field mapping, incremental syncs, deletions turning inactive, no duplicates across
//! replicas, bad credentials in the status, and sync off without settings.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::Value;
use ttscm_company_sync::connectwise::{ConnectWiseConfig, RetryPolicy};
use ttscm_company_sync::store::{self as company_store, COMPANIES};
use ttscm_company_sync::sync::{SyncError, Syncer, Upstream};
use ttscm_runtime::bus::inproc::InProcBus;
use ttscm_runtime::settings::ConnectWiseSettings;
use ttscm_runtime::store::{FindOptions, Order};
use ttscm_runtime::{Bus, Filter, Settings, Store, StoreError, connect};
use ttscm_testkit::MongoFixture;
use ttscm_testkit::connectwise::*;

/// A store of the given kind, kept alive by the returned guard.
struct TestStore {
    store: Store,
    _dir: tempfile::TempDir,
    _mongo: Option<MongoFixture>,
}

async fn open(mongo: bool) -> TestStore {
    let _ = rustls::crypto::ring::default_provider().install_default();
    ttscm_testkit::init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings {
        data_dir: dir.path().to_path_buf(),
        ..Settings::default()
    };
    let fixture = mongo.then(MongoFixture::start);
    if let Some(fixture) = &fixture {
        settings.mongodb_uri = Some(SecretString::from(fixture.uri.clone()));
        settings.mongodb_database = fixture.database.clone();
    }
    let store = connect::store(&settings).await.expect("store opens");
    company_store::prepare(&store).await.expect("companies prepared");
    Syncer::prepare(&store).await.expect("sync state prepared");
    TestStore {
        store,
        _dir: dir,
        _mongo: fixture,
    }
}

fn syncer(store: &Store, bus: &Bus, site: &str, private_key: &str) -> Syncer {
    let settings = ConnectWiseSettings {
        site: Some(site.into()),
        codebase: Some(CODEBASE.into()),
        company_id: Some(COMPANY_ID.into()),
        public_key: Some(PUBLIC_KEY.into()),
        private_key: Some(SecretString::from(private_key)),
        client_id: Some(CLIENT_ID.into()),
        ..ConnectWiseSettings::default()
    };
    let config = ConnectWiseConfig::from_settings(&settings)
        .expect("complete")
        .expect("set");
    let retry = RetryPolicy {
        attempt_timeout: Duration::from_secs(10),
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    };
    Syncer::new(
        store.clone(),
        bus.clone(),
        Arc::new(Upstream::new(Some(config), retry)),
    )
}

fn bus() -> Bus {
    Bus::InProc(InProcBus::new())
}

fn records(n: i64) -> Vec<Value> {
    (1..=n).map(|id| company(id, "2025-01-01T00:00:00Z")).collect()
}

async fn by_cw_id(store: &Store, cw_id: i64) -> Value {
    let document = store
        .find_one(COMPANIES, Filter::eq("cwCompanyId", cw_id))
        .await
        .expect("store answers")
        .expect("company stored");
    Value::Object(document)
}

async fn a_full_sync_maps_every_company_and_a_second_changes_nothing(mongo: bool) {
    let db = open(mongo).await;
    let fake = ConnectWiseFake::start(records(2500)).await;
    fake.with(|s| {
        s.failures.insert(1, [429].into());
        s.failures.insert(2, [500].into());
    });
    let bus = bus();
    let mut events = bus
        .subscribe("ttscm.events.company.synced")
        .await
        .expect("subscribed");
    let syncer = syncer(&db.store, &bus, &fake.uri(), PRIVATE_KEY);
    let report = syncer.run(false).await.expect("synced");
    assert_eq!(report.error, None);
    assert_eq!(report.kind, "full", "the first sync is full");
    assert_eq!(
        (report.fetched, report.created, report.updated, report.deactivated),
        (2500, 2500, 0, 0)
    );
    assert_eq!(
        db.store.count(COMPANIES, &Filter::All).await.expect("count"),
        2500
    );

    let company = by_cw_id(&db.store, 42).await;
    assert_eq!(company["name"], "Company 00042 Ltd");
    assert_eq!(company["nameKey"], "company 00042 ltd");
    assert_eq!(company["cwIdentifier"], "Company00042");
    assert_eq!(company["cwKey"], "cw:42");
    assert_eq!(company["source"], "connectwise");
    assert_eq!(company["active"], true);

    let event = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("a synced event arrives")
        .expect("subscription open");
    let event: Value = serde_json::from_slice(&event.payload).expect("json");
    assert_eq!(event["type"], "ttscm.company.synced");
    assert_eq!(event["data"]["created"], 2500);

    let again = syncer.run(true).await.expect("synced again");
    assert_eq!(
        (again.fetched, again.created, again.updated, again.deactivated),
        (2500, 0, 0, 0)
    );
    let status = syncer.status().await.expect("status");
    assert!(status.enabled);
    assert_eq!(status.last, Some(again));
    assert!(status.last_success_at.is_some());
}

async fn an_incremental_sync_picks_up_only_changed_companies(mongo: bool) {
    let db = open(mongo).await;
    let fake = ConnectWiseFake::start(records(20)).await;
    let syncer = syncer(&db.store, &bus(), &fake.uri(), PRIVATE_KEY);
    syncer.run(true).await.expect("full sync");
    fake.with(|s| {
        s.companies[3]["name"] = "Renamed Four".into();
        s.companies[3]["_info"]["lastUpdated"] = "2025-06-01T00:00:00Z".into();
        s.companies[4]["deletedFlag"] = true.into();
        s.companies[4]["_info"]["lastUpdated"] = "2025-06-02T00:00:00Z".into();
    });
    let report = syncer.run(false).await.expect("incremental sync");
    assert_eq!(report.kind, "incremental");
    assert_eq!(
        (report.fetched, report.created, report.updated, report.deactivated),
        (2, 0, 1, 1)
    );
    let seen = fake.with(|s| s.conditions_seen.last().cloned().flatten());
    assert_eq!(seen.as_deref(), Some("lastUpdated > [2025-01-01T00:00:00Z]"));
    assert_eq!(by_cw_id(&db.store, 4).await["name"], "Renamed Four");
    assert_eq!(by_cw_id(&db.store, 5).await["active"], false);

    // The next incremental sync starts from the newest change seen.
    let report = syncer.run(false).await.expect("incremental sync");
    assert_eq!(report.fetched, 0);
    let seen = fake.with(|s| s.conditions_seen.last().cloned().flatten());
    assert_eq!(seen.as_deref(), Some("lastUpdated > [2025-06-02T00:00:00Z]"));
}

async fn a_company_gone_from_connectwise_turns_inactive_and_is_kept(mongo: bool) {
    let db = open(mongo).await;
    let fake = ConnectWiseFake::start(records(10)).await;
    let syncer = syncer(&db.store, &bus(), &fake.uri(), PRIVATE_KEY);
    syncer.run(true).await.expect("full sync");
    fake.with(|s| s.companies.retain(|c| c["id"] != 3));
    let report = syncer.run(true).await.expect("full sync");
    assert_eq!((report.fetched, report.deactivated), (9, 1));
    assert_eq!(by_cw_id(&db.store, 3).await["active"], false);
    assert_eq!(db.store.count(COMPANIES, &Filter::All).await.expect("count"), 10);

    // It comes back active when ConnectWise lists it again.
    fake.with(|s| s.companies.push(company(3, "2025-07-01T00:00:00Z")));
    let report = syncer.run(true).await.expect("full sync");
    assert_eq!(report.updated, 1);
    assert_eq!(by_cw_id(&db.store, 3).await["active"], true);
}

async fn two_replicas_syncing_at_once_do_not_duplicate(mongo: bool) {
    let db = open(mongo).await;
    let fake = ConnectWiseFake::start(records(1500)).await;
    let first = syncer(&db.store, &bus(), &fake.uri(), PRIVATE_KEY);
    let second = syncer(&db.store, &bus(), &fake.uri(), PRIVATE_KEY);
    let (a, b) = tokio::join!(first.run(true), second.run(true));
    let busy = [&a, &b]
        .iter()
        .filter(|r| matches!(r, Err(SyncError::Busy)))
        .count();
    let ran = [&a, &b].iter().filter(|r| r.is_ok()).count();
    assert_eq!(busy + ran, 2, "{a:?} {b:?}");
    assert!(ran >= 1);
    assert_eq!(
        db.store.count(COMPANIES, &Filter::All).await.expect("count"),
        1500
    );

    // Whatever the lease, the unique key refuses a second copy of a ConnectWise company.
    let mut copy = db
        .store
        .find(
            COMPANIES,
            &FindOptions::new(Filter::eq("cwCompanyId", 7i64)).sort("id", Order::Asc),
        )
        .await
        .expect("found")
        .remove(0);
    copy.insert("id".into(), Value::String(ttscm_runtime::ids::new_id()));
    let duplicate = db.store.insert(COMPANIES, copy).await;
    assert!(matches!(duplicate, Err(StoreError::Conflict)), "{duplicate:?}");

    // The lease was released: the other replica syncs next.
    let report = second.run(true).await.expect("second replica syncs");
    assert_eq!(report.created, 0);
}

async fn bad_credentials_surface_in_the_sync_status(mongo: bool) {
    let db = open(mongo).await;
    let fake = ConnectWiseFake::start(records(5)).await;
    let syncer = syncer(&db.store, &bus(), &fake.uri(), "not-the-key");
    let report = syncer.run(true).await.expect("the sync ran");
    let error = report.error.expect("an error");
    assert!(
        error.contains("401") && error.contains("Password Expired or Invalid"),
        "{error}"
    );
    assert!(!error.contains("not-the-key"));
    let status = syncer.status().await.expect("status");
    assert_eq!(status.last.and_then(|l| l.error), Some(error));
    assert_eq!(status.last_success_at, None);
    assert_eq!(db.store.count(COMPANIES, &Filter::All).await.expect("count"), 0);
}

async fn sync_is_off_without_settings(mongo: bool) {
    let db = open(mongo).await;
    let off = Syncer::new(
        db.store.clone(),
        bus(),
        Arc::new(Upstream::new(None, RetryPolicy::default())),
    );
    assert!(matches!(off.run(true).await, Err(SyncError::Off)));
    let status = off.status().await.expect("status");
    assert!(!status.enabled);
    assert_eq!(status.last, None);
}

#[tokio::test]
async fn configurations_are_cached_briefly_and_an_outage_is_an_upstream_error() {
    let db = open(false).await;
    let fake = ConnectWiseFake::start(records(5)).await;
    let configuration = serde_json::json!({"id": 1, "name": "SRV-01", "company": {"id": 4}});
    fake.with(|s| {
        s.configurations.insert(4, vec![configuration.clone()]);
    });
    let syncer = syncer(&db.store, &bus(), &fake.uri(), PRIVATE_KEY);
    let upstream = syncer.upstream();
    assert_eq!(
        upstream.configurations(4).await.expect("fetched"),
        std::slice::from_ref(&configuration)
    );
    fake.with(|s| s.down = Some(503));
    assert_eq!(
        upstream.configurations(4).await.expect("cached"),
        [configuration],
        "a short cache answers while ConnectWise is down"
    );
    let error = upstream.configurations(5).await.expect_err("down");
    let SyncError::ConnectWise(error) = error else {
        panic!("expected a ConnectWise error, got {error:?}")
    };
    let wire = ttscm_company_sync::sync::upstream(&error);
    assert_eq!(wire.code, ttscm_contract::ErrorCode::Upstream);
    assert!(
        wire.message.contains("ConnectWise is unavailable"),
        "{}",
        wire.message
    );
}

macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $name() { super::$name(false).await } )*
        }
        mod ferretdb {
            $( #[tokio::test] async fn $name() { super::$name(true).await } )*
        }
    };
}

both_stores!(
    a_full_sync_maps_every_company_and_a_second_changes_nothing,
    an_incremental_sync_picks_up_only_changed_companies,
    a_company_gone_from_connectwise_turns_inactive_and_is_kept,
    two_replicas_syncing_at_once_do_not_duplicate,
    bad_credentials_surface_in_the_sync_status,
    sync_is_off_without_settings,
);
