//! Ticket checks and the ticket-note queue, through the bus against company-sync as `run`
//! starts it, the ConnectWise fake and both store adapters (SQLite and FerretDB): the verdicts
//! (open, other company, closed by flag or by status, not found, no ConnectWise id, ConnectWise
//! off), the short cache and the 502 when ConnectWise fails, notes posted once per key with the
//! real body fields, retried while the notes endpoint fails, and kept across a restart.

use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use ttscm_company_sync::notes::TICKET_NOTES;
use ttscm_company_sync::service::new_manual;
use ttscm_company_sync::store::{COMPANIES, CompanyDoc, cw_key};
use ttscm_contract::company::{CheckTicket, CompanySource, QueueTicketNote, TicketCheck, TicketOutcome};
use ttscm_contract::{Component, ErrorCode, Principal, WireError};
use ttscm_runtime::bus::inproc::InProcBus;
use ttscm_runtime::service::{BusClient, CallContext};
use ttscm_runtime::{Bus, Settings, Shutdown, Store, connect};
use ttscm_testkit::MongoFixture;
use ttscm_testkit::connectwise::*;

/// ConnectWise id of the company the tickets belong to.
const ACME: i64 = 1;
/// ConnectWise id of another company.
const OTHER: i64 = 2;
/// The board of the tickets, and its statuses.
const BOARD: i64 = 10;
const STATUS_NEW: i64 = 100;
const STATUS_DONE: i64 = 101;

/// The store a test's services share, kept alive by the fixtures.
struct TestStore {
    store: Store,
    settings: Settings,
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
    TestStore {
        store,
        settings,
        _dir: dir,
        _mongo: fixture,
    }
}

/// Company-sync serving on its own in-process bus; stopped by [`Running::stop`] or on drop.
struct Running {
    client: BusClient,
    shutdown: Shutdown,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Running {
    async fn start(db: &TestStore, fake: Option<&ConnectWiseFake>, ticket_cache_secs: u64) -> Self {
        let mut settings = db.settings.clone();
        if let Some(fake) = fake {
            fake.configure(&mut settings);
        }
        settings.connectwise.sync_interval_secs = 3600;
        settings.connectwise.ticket_cache_secs = ticket_cache_secs;
        let bus = Bus::InProc(InProcBus::new());
        let shutdown = Shutdown::new();
        let tasks = ttscm_company_sync::run(&bus, &db.store, &settings, shutdown.clone())
            .await
            .expect("company-sync starts");
        Self {
            client: BusClient::new(bus, Duration::from_secs(5)),
            shutdown,
            tasks,
        }
    }

    /// Stops serving and waits for every task (the note poster included) to end.
    async fn stop(mut self) {
        self.shutdown.cancel();
        for task in std::mem::take(&mut self.tasks) {
            task.await.expect("a task ends on shutdown");
        }
    }

    /// The call context of the credential service, the one caller of these operations.
    fn ctx() -> CallContext {
        CallContext::new(Some(Principal::service(Component::Credential)))
    }

    async fn check(&self, company_id: &str, ticket_id: u64) -> Result<TicketCheck, WireError> {
        let op = CheckTicket {
            company_id: company_id.to_owned(),
            ticket_id,
        };
        self.client.call(&Self::ctx(), &op).await
    }

    async fn outcome(&self, company_id: &str, ticket_id: u64) -> TicketOutcome {
        self.check(company_id, ticket_id)
            .await
            .unwrap_or_else(|e| panic!("ticket {ticket_id} checked: {e:?}"))
            .outcome
    }

    async fn queue(&self, key: &str, ticket_id: u64, text: &str) -> Result<(), WireError> {
        let op = QueueTicketNote {
            key: key.to_owned(),
            ticket_id,
            text: text.to_owned(),
        };
        self.client.call(&Self::ctx(), &op).await
    }
}

/// Stores a synced company with ConnectWise id `cw_id` (as a sync would); answers its id.
async fn synced_company(store: &Store, cw_id: i64) -> String {
    let mut doc: CompanyDoc = new_manual(format!("Company {cw_id:05} Ltd"));
    doc.cw_key = cw_key(cw_id);
    doc.cw_company_id = Some(cw_id);
    doc.cw_identifier = Some(format!("Company{cw_id:05}"));
    doc.source = CompanySource::Connectwise;
    store
        .insert(COMPANIES, doc.to_document())
        .await
        .expect("company stored");
    doc.id
}

/// A fake knowing companies 1 and 2, and board 10 with an open and a closed status.
async fn fake() -> ConnectWiseFake {
    let fake = ConnectWiseFake::start(vec![
        company(ACME, "2025-01-01T00:00:00Z"),
        company(OTHER, "2025-01-01T00:00:00Z"),
    ])
    .await;
    fake.add_board_status(BOARD, STATUS_NEW, "New", false);
    fake.add_board_status(BOARD, STATUS_DONE, "Completed", true);
    fake
}

async fn note_document(store: &Store, key: &str) -> Option<Value> {
    store
        .get(TICKET_NOTES, key)
        .await
        .expect("store answers")
        .map(Value::Object)
}

async fn a_ticket_is_open_only_for_its_company_and_while_neither_its_flag_nor_its_status_closes_it(
    mongo: bool,
) {
    let db = open(mongo).await;
    let fake = fake().await;
    fake.add_ticket(501, ACME, BOARD, STATUS_NEW, false);
    fake.add_ticket(502, OTHER, BOARD, STATUS_NEW, false);
    fake.add_ticket(503, ACME, BOARD, STATUS_NEW, true);
    fake.add_ticket(504, ACME, BOARD, STATUS_DONE, false);
    let acme = synced_company(&db.store, ACME).await;
    let service = Running::start(&db, Some(&fake), 10).await;

    let open = service.check(&acme, 501).await.expect("checked");
    assert_eq!(
        open,
        TicketCheck {
            outcome: TicketOutcome::Open,
            summary: Some("Ticket 501: printer offline".into()),
        }
    );
    let other = service.check(&acme, 502).await.expect("checked");
    assert_eq!(other.outcome, TicketOutcome::OtherCompany);
    assert_eq!(other.summary, None, "another company's summary is not passed on");
    assert_eq!(
        service.outcome(&acme, 503).await,
        TicketOutcome::Closed,
        "closedFlag"
    );
    assert_eq!(
        service.outcome(&acme, 504).await,
        TicketOutcome::Closed,
        "a status whose closedStatus is true"
    );
    assert_eq!(service.outcome(&acme, 505).await, TicketOutcome::NotFound);

    // Every call carried the real headers (the fake answers 401 otherwise), and a board's
    // statuses were asked once for the two tickets that needed them.
    let statuses = fake.requests_to("/service/boards/10/statuses").await;
    assert_eq!(statuses.len(), 1, "board statuses are cached");
    for request in fake.list_requests().await {
        let header = |n: &str| {
            request
                .headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(header("clientId").as_deref(), Some(CLIENT_ID));
        assert_eq!(header("authorization"), Some(expected_auth()));
    }

    // A status added to the board after its statuses were cached is found by asking again.
    fake.add_board_status(BOARD, 102, "Closed by customer", true);
    fake.add_ticket(506, ACME, BOARD, 102, false);
    assert_eq!(service.outcome(&acme, 506).await, TicketOutcome::Closed);
}

async fn manual_and_unknown_companies_and_a_server_without_connectwise_get_their_own_answers(mongo: bool) {
    let db = open(mongo).await;
    let fake = fake().await;
    fake.add_ticket(501, ACME, BOARD, STATUS_NEW, false);
    let acme = synced_company(&db.store, ACME).await;
    let manual = new_manual("Hand Kept Ltd".into());
    db.store
        .insert(COMPANIES, manual.to_document())
        .await
        .expect("manual company stored");
    let service = Running::start(&db, Some(&fake), 10).await;
    assert_eq!(
        service.outcome(&manual.id, 501).await,
        TicketOutcome::NoConnectWiseId
    );
    let unknown = service.check("no-such-company", 501).await.expect_err("404");
    assert_eq!(unknown.code, ErrorCode::NotFound);
    service.stop().await;

    let off = Running::start(&db, None, 10).await;
    assert_eq!(off.outcome(&acme, 501).await, TicketOutcome::ConnectWiseOff);
    assert_eq!(off.outcome(&manual.id, 501).await, TicketOutcome::NoConnectWiseId);
    assert!(
        fake.requests_to("/service/").await.is_empty(),
        "nothing asked ConnectWise about a ticket"
    );
}

async fn connectwise_failing_is_a_502_unless_a_fresh_answer_is_cached(mongo: bool) {
    let db = open(mongo).await;
    let fake = fake().await;
    fake.add_ticket(501, ACME, BOARD, STATUS_NEW, false);
    fake.add_ticket(502, ACME, BOARD, STATUS_NEW, false);
    let acme = synced_company(&db.store, ACME).await;
    let service = Running::start(&db, Some(&fake), 3).await;

    for _ in 0..5 {
        assert_eq!(service.outcome(&acme, 501).await, TicketOutcome::Open);
    }
    let asked = fake.requests_to("/service/tickets/501").await.len();
    assert_eq!(
        asked, 1,
        "repeated checks of one ticket cost one ConnectWise call"
    );

    fake.set_down(Some(503));
    let cached_at = Instant::now();
    assert_eq!(
        service.outcome(&acme, 501).await,
        TicketOutcome::Open,
        "a fresh answer is served while ConnectWise is down"
    );
    let started = Instant::now();
    let error = service.check(&acme, 502).await.expect_err("ConnectWise is down");
    assert_eq!(error.code, ErrorCode::Upstream, "{error:?}");
    assert!(error.message.contains("ConnectWise"), "{}", error.message);
    assert!(
        !error.message.contains(PRIVATE_KEY) && !error.message.contains(&fake.uri()),
        "{}",
        error.message
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Once the cached answer is stale, the outage is a 502 for that ticket too.
    let stale = ttscm_testkit::eventually(Duration::from_secs(10), || async {
        service
            .check(&acme, 501)
            .await
            .err()
            .filter(|e| e.code == ErrorCode::Upstream)
    })
    .await;
    assert!(stale.is_some(), "the cached answer expires");
    assert!(
        cached_at.elapsed() >= Duration::from_secs(2),
        "{:?}",
        cached_at.elapsed()
    );

    // A site that does not answer at all: the check gives up within its deadline.
    fake.set_down(None);
    fake.set_hanging(true);
    let started = Instant::now();
    let error = service.check(&acme, 502).await.expect_err("ConnectWise hangs");
    assert_eq!(error.code, ErrorCode::Upstream, "{error:?}");
    assert!(
        started.elapsed() < Duration::from_millis(2_700),
        "{:?}",
        started.elapsed()
    );
    fake.set_hanging(false);
    assert_eq!(service.outcome(&acme, 502).await, TicketOutcome::Open, "back up");
}

async fn a_site_nobody_listens_on_is_a_502(mongo: bool) {
    let db = open(mongo).await;
    let acme = synced_company(&db.store, ACME).await;
    let mut settings = db.settings.clone();
    settings.connectwise = settings_for(&unreachable_site());
    settings.connectwise.sync_interval_secs = 3600;
    let bus = Bus::InProc(InProcBus::new());
    let shutdown = Shutdown::new();
    let _tasks = ttscm_company_sync::run(&bus, &db.store, &settings, shutdown.clone())
        .await
        .expect("company-sync starts");
    let client = BusClient::new(bus, Duration::from_secs(5));
    let started = Instant::now();
    let error = client
        .call(
            &Running::ctx(),
            &CheckTicket {
                company_id: acme,
                ticket_id: 1,
            },
        )
        .await
        .expect_err("refused connection");
    shutdown.cancel();
    assert_eq!(error.code, ErrorCode::Upstream, "{error:?}");
    assert!(error.message.starts_with("ConnectWise"), "{}", error.message);
    assert!(!error.message.contains("127.0.0.1"), "{}", error.message);
    assert!(started.elapsed() < Duration::from_secs(3));
}

async fn a_note_queued_twice_under_one_key_is_posted_once_as_an_internal_note(mongo: bool) {
    let db = open(mongo).await;
    let fake = fake().await;
    fake.add_ticket(501, ACME, BOARD, STATUS_NEW, false);
    fake.add_ticket(502, ACME, BOARD, STATUS_NEW, false);
    let service = Running::start(&db, Some(&fake), 10).await;
    let text = "Credential Firewall admin (Password) revealed by Alice, audit entry #42";
    service.queue("audit-42", 501, text).await.expect("queued");
    service.queue("audit-42", 501, text).await.expect("queued again");

    let posted = ttscm_testkit::eventually(Duration::from_secs(10), || async {
        let notes = fake.notes();
        (!notes.is_empty()).then_some(notes)
    })
    .await
    .expect("the note is posted");
    assert_eq!(posted[0].ticket_id, 501);
    assert_eq!(
        posted[0].body,
        json!({
            "text": text,
            "internalAnalysisFlag": true,
            "detailDescriptionFlag": false,
            "resolutionFlag": false,
            "processNotifications": false,
        })
    );

    // Queued again after it was posted: still one note. A later note is posted after any
    // earlier one (oldest first), so once it is there a second post of the first would be too.
    let document = ttscm_testkit::eventually(Duration::from_secs(5), || async {
        note_document(&db.store, "audit-42")
            .await
            .filter(|d| d["state"] == "posted")
    })
    .await
    .expect("the note is marked posted");
    assert_eq!(document["attempts"], 1);
    service
        .queue("audit-42", 501, text)
        .await
        .expect("queued a third time");
    service.queue("audit-43", 502, "second").await.expect("queued");
    ttscm_testkit::eventually(Duration::from_secs(10), || async {
        (fake.notes().len() >= 2).then_some(())
    })
    .await
    .expect("the second note is posted");
    let tickets: Vec<i64> = fake.notes().iter().map(|n| n.ticket_id).collect();
    assert_eq!(tickets, [501, 502]);

    let refused = service
        .queue("audit-44", 501, "  ")
        .await
        .expect_err("empty text");
    assert_eq!(refused.code, ErrorCode::Validation);
    let refused = service.queue("", 501, "x").await.expect_err("empty key");
    assert_eq!(refused.code, ErrorCode::Validation);
}

async fn a_note_is_posted_once_the_failing_notes_endpoint_recovers(mongo: bool) {
    let db = open(mongo).await;
    let fake = fake().await;
    fake.add_ticket(501, ACME, BOARD, STATUS_NEW, false);
    let service = Running::start(&db, Some(&fake), 10).await;
    fake.fail_notes(503, None);
    service.queue("audit-7", 501, "revealed").await.expect("queued");

    let failing = ttscm_testkit::eventually(Duration::from_secs(10), || async {
        note_document(&db.store, "audit-7")
            .await
            .filter(|d| d["attempts"].as_u64() >= Some(2))
    })
    .await
    .expect("attempts are recorded");
    assert_eq!(failing["state"], "queued");
    let last_error = failing["lastError"].as_str().expect("the last error is recorded");
    assert!(
        last_error.contains("ConnectWise") && last_error.contains("503"),
        "{last_error}"
    );
    assert!(!last_error.contains(PRIVATE_KEY), "{last_error}");
    assert!(fake.notes().is_empty());

    fake.notes_work();
    ttscm_testkit::eventually(Duration::from_secs(20), || async {
        (fake.notes().len() == 1).then_some(())
    })
    .await
    .expect("the note is posted once the endpoint works");
    let posted = ttscm_testkit::eventually(Duration::from_secs(5), || async {
        note_document(&db.store, "audit-7")
            .await
            .filter(|d| d["state"] == "posted")
    })
    .await
    .expect("marked posted");
    assert!(posted["attempts"].as_u64() >= Some(3), "{posted}");
    assert!(posted.get("lastError").is_none(), "{posted}");
}

async fn a_queued_note_is_posted_by_the_next_service_after_a_restart(mongo: bool) {
    let db = open(mongo).await;
    let fake = fake().await;
    fake.add_ticket(501, ACME, BOARD, STATUS_NEW, false);
    let first = Running::start(&db, Some(&fake), 10).await;
    fake.fail_notes(500, None);
    first.queue("audit-9", 501, "revealed").await.expect("queued");
    ttscm_testkit::eventually(Duration::from_secs(10), || async {
        note_document(&db.store, "audit-9")
            .await
            .filter(|d| d["attempts"].as_u64() >= Some(1))
    })
    .await
    .expect("a first attempt failed");
    first.stop().await;
    assert!(fake.notes().is_empty());

    fake.notes_work();
    let _second = Running::start(&db, Some(&fake), 10).await;
    ttscm_testkit::eventually(Duration::from_secs(20), || async {
        (fake.notes().len() == 1).then_some(())
    })
    .await
    .expect("the new service posts the stored note");
    assert_eq!(fake.notes()[0].ticket_id, 501);
}

/// A service stopped while a post hangs lets go of its claim: the next one posts the note at
/// once, not after the claim's minute.
async fn a_post_cut_short_by_a_stop_is_made_by_the_next_service_at_once(mongo: bool) {
    let db = open(mongo).await;
    let fake = fake().await;
    fake.add_ticket(501, ACME, BOARD, STATUS_NEW, false);
    let first = Running::start(&db, Some(&fake), 10).await;
    fake.set_hanging(true);
    first.queue("audit-10", 501, "revealed").await.expect("queued");
    ttscm_testkit::eventually(Duration::from_secs(10), || async {
        note_document(&db.store, "audit-10")
            .await
            .filter(|d| d["claimUntil"].as_i64() > Some(0))
    })
    .await
    .expect("the first service took the note");
    first.stop().await;
    fake.set_hanging(false);

    let _second = Running::start(&db, Some(&fake), 10).await;
    ttscm_testkit::eventually(Duration::from_secs(20), || async {
        (fake.notes().len() == 1).then_some(())
    })
    .await
    .expect("the new service posts the note within the first's claim (60 s)");
    ttscm_testkit::eventually(Duration::from_secs(5), || async {
        note_document(&db.store, "audit-10")
            .await
            .filter(|d| d["state"] == "posted")
    })
    .await
    .expect("marked posted");
}

async fn a_note_connectwise_refuses_as_malformed_is_kept_as_failed_and_not_retried(mongo: bool) {
    let db = open(mongo).await;
    let fake = fake().await;
    fake.add_ticket(501, ACME, BOARD, STATUS_NEW, false);
    let service = Running::start(&db, Some(&fake), 10).await;
    fake.fail_notes(400, None);
    service.queue("audit-1", 501, "refused").await.expect("queued");
    let failed = ttscm_testkit::eventually(Duration::from_secs(10), || async {
        note_document(&db.store, "audit-1")
            .await
            .filter(|d| d["state"] == "failed")
    })
    .await
    .expect("a 400 is not retried");
    assert_eq!(failed["attempts"], 1, "{failed}");
    assert!(
        failed["lastError"].as_str().is_some_and(|e| e.contains("400")),
        "{failed}"
    );

    // Once the endpoint works, a newer note is posted and the failed one is not.
    fake.notes_work();
    service.queue("audit-2", 501, "accepted").await.expect("queued");
    ttscm_testkit::eventually(Duration::from_secs(10), || async {
        (!fake.notes().is_empty()).then_some(())
    })
    .await
    .expect("the newer note is posted");
    let texts: Vec<Value> = fake.notes().iter().map(|n| n.body["text"].clone()).collect();
    assert_eq!(texts, [json!("accepted")]);
    assert!(
        note_document(&db.store, "audit-1").await.is_some(),
        "failed notes are kept"
    );
}

async fn a_note_failing_past_the_retry_window_is_kept_as_failed(mongo: bool) {
    use std::sync::Arc;
    use ttscm_company_sync::connectwise::{ConnectWiseConfig, RetryPolicy};
    use ttscm_company_sync::notes::NoteQueue;
    use ttscm_company_sync::sync::Upstream;

    let db = open(mongo).await;
    let fake = fake().await;
    fake.add_ticket(501, ACME, BOARD, STATUS_NEW, false);
    NoteQueue::prepare(&db.store).await.expect("prepared");
    let config = ConnectWiseConfig::from_settings(&fake.connectwise_settings())
        .expect("complete")
        .expect("set");
    let upstream = Arc::new(Upstream::new(Some(config), RetryPolicy::default()));
    let queue = NoteQueue::new(db.store.clone(), upstream).give_up_after(Duration::from_secs(2));
    fake.fail_notes(503, None);
    queue.queue("audit-5", 501, "late").await.expect("queued");

    assert!(
        queue.post_due().await.expect("a pass"),
        "retried within the window"
    );
    let first = note_document(&db.store, "audit-5").await.expect("kept");
    assert_eq!(
        (&first["state"], &first["attempts"]),
        (&json!("queued"), &json!(1))
    );

    let failed = ttscm_testkit::eventually(Duration::from_secs(10), || async {
        queue.post_due().await.expect("a pass");
        note_document(&db.store, "audit-5")
            .await
            .filter(|d| d["state"] == "failed")
    })
    .await
    .expect("given up after the window");
    assert!(failed["attempts"].as_u64() >= Some(2), "{failed}");
    assert!(
        !queue.post_due().await.expect("a pass"),
        "a failed note no longer waits"
    );
    fake.notes_work();
    queue.post_due().await.expect("a pass");
    assert!(fake.notes().is_empty(), "a failed note is not posted");
}

macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[actix::test] async fn $name() { super::$name(false).await } )*
        }
        mod ferretdb {
            $( #[actix::test] async fn $name() { super::$name(true).await } )*
        }
    };
}

both_stores!(
    a_ticket_is_open_only_for_its_company_and_while_neither_its_flag_nor_its_status_closes_it,
    manual_and_unknown_companies_and_a_server_without_connectwise_get_their_own_answers,
    connectwise_failing_is_a_502_unless_a_fresh_answer_is_cached,
    a_site_nobody_listens_on_is_a_502,
    a_note_queued_twice_under_one_key_is_posted_once_as_an_internal_note,
    a_note_is_posted_once_the_failing_notes_endpoint_recovers,
    a_queued_note_is_posted_by_the_next_service_after_a_restart,
    a_post_cut_short_by_a_stop_is_made_by_the_next_service_at_once,
    a_note_connectwise_refuses_as_malformed_is_kept_as_failed_and_not_retried,
    a_note_failing_past_the_retry_window_is_kept_as_failed,
);
