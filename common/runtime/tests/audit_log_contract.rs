//! The audit log contract: one suite, run against every adapter the bus and store can call for
//! — the embedded journal (in a temp dir), a MongoDB collection (on FerretDB), and the
//! JetStream write-ahead (on a real nats-server) in front of either — each log opened through
//! [`AuditLog::open`] as a service opens it. Then what only one adapter has: the journal's torn
//! tail, the write-ahead stream's copy and restarts.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;
use ttscm_contract::PrincipalKind;
use ttscm_contract::audit::{AuditActor, AuditEntry, AuditTarget, ListAuditEvents};
use ttscm_runtime::audit::{self, AuditHead, AuditLog, NewAuditEntry};
use ttscm_runtime::bus::{inproc::InProcBus, nats::NatsBus};
use ttscm_runtime::store::{mongo::MongoStore, sqlite::SqliteStore};
use ttscm_runtime::{Bus, Filter, Shutdown, Store, StoreError, Update};
use ttscm_testkit::{MongoFixture, NatsServer};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Adapter {
    /// In-process bus, embedded store: the journal.
    Journal,
    /// In-process bus, MongoDB: the collection.
    Mongo,
    /// NATS, MongoDB: the stream ahead of the collection.
    StreamMongo,
    /// NATS, embedded store: the stream ahead of the journal.
    StreamJournal,
}

/// What backs the logs of one test; every [`Self::handle`] is another writer (a replica, or a
/// command beside the server) on the same log.
struct Setup {
    adapter: Adapter,
    dir: tempfile::TempDir,
    mongo: Option<MongoFixture>,
    nats: Option<NatsServer>,
    shutdown: Shutdown,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Setup {
    fn new(adapter: Adapter) -> Self {
        ttscm_testkit::init_tracing();
        let mongo = matches!(adapter, Adapter::Mongo | Adapter::StreamMongo).then(MongoFixture::start);
        let nats = matches!(adapter, Adapter::StreamMongo | Adapter::StreamJournal).then(NatsServer::start);
        Self {
            adapter,
            dir: tempfile::tempdir().expect("temp dir"),
            mongo,
            nats,
            shutdown: Shutdown::new(),
        }
    }

    fn store_file(&self) -> PathBuf {
        self.dir.path().join("ttscm.sqlite3")
    }

    /// A store handle of its own, as another process has.
    async fn store(&self) -> Store {
        match &self.mongo {
            Some(mongo) => Store::Mongo(
                MongoStore::connect(&mongo.uri, &mongo.database)
                    .await
                    .expect("connects"),
            ),
            None => Store::Sqlite(SqliteStore::open(&self.store_file()).expect("opens")),
        }
    }

    async fn bus(&self) -> Bus {
        match &self.nats {
            Some(nats) => {
                let bus = NatsBus::connect(&nats.url(), "audit-test", &Default::default())
                    .await
                    .expect("connects");
                assert!(bus.wait_connected(Duration::from_secs(5)).await, "connected");
                Bus::Nats(Box::new(bus))
            }
            None => Bus::InProc(InProcBus::new()),
        }
    }

    /// Another writer on the log, with its own bus connection and store handle; over NATS with
    /// its copier running.
    async fn handle(&self) -> AuditLog {
        let log = self.handle_without_copier().await;
        drop(log.start_copier(self.shutdown.clone()));
        log
    }

    /// A writer straight to the storage, as before the bus was NATS (no stream).
    async fn direct_log(&self) -> AuditLog {
        AuditLog::open(&Bus::InProc(InProcBus::new()), &self.store().await)
            .await
            .expect("opens")
    }

    /// The audit write-ahead stream, read as an operator would with a NATS client.
    async fn audit_stream(&self) -> async_nats::jetstream::stream::Stream {
        let client = async_nats::connect(self.nats.as_ref().expect("nats").url())
            .await
            .expect("connects");
        async_nats::jetstream::new(client)
            .get_stream("TTSCM_AUDIT")
            .await
            .expect("the stream exists")
    }

    async fn handle_without_copier(&self) -> AuditLog {
        AuditLog::open(&self.bus().await, &self.store().await)
            .await
            .expect("the log opens")
    }

    /// Changes the action of the stored entry at `seq`, as someone editing the storage would:
    /// the journal file's bytes in place, or the MongoDB document.
    async fn tamper(&self, seq: u64) {
        match self.adapter {
            Adapter::Journal | Adapter::StreamJournal => {
                let path = audit::journal_path(&self.store_file());
                let text = std::fs::read_to_string(&path).expect("the journal");
                let lines: Vec<String> = text
                    .lines()
                    .map(|line| {
                        let entry: AuditEntry = serde_json::from_str(line).expect("an entry per line");
                        if entry.seq == seq {
                            // Same length: the offsets the log indexed stay right.
                            line.replacen("credential.revealed", "credential.REVEALED", 1)
                        } else {
                            line.to_owned()
                        }
                    })
                    .collect();
                std::fs::write(&path, lines.join("\n") + "\n").expect("edited");
            }
            Adapter::Mongo | Adapter::StreamMongo => {
                let changed = self
                    .store()
                    .await
                    .update_one(
                        audit::COLLECTION,
                        &Filter::eq("seq", i64::try_from(seq).expect("small")),
                        &Update::default().set("action", "credential.REVEALED"),
                    )
                    .await
                    .expect("edited");
                assert!(changed, "an entry at {seq}");
            }
        }
    }
}

/// An entry to append, by `actor`, about `target`, at second `second` of a day.
fn entry(n: usize, actor: &str, target: &str, action: &str, second: u32) -> NewAuditEntry {
    NewAuditEntry::new(AuditEntry {
        id: format!("e{n}-{}", ttscm_runtime::ids::new_id()),
        seq: 0,
        at: format!("2026-01-01T00:00:{second:02}.000Z"),
        action: action.to_owned(),
        actor: AuditActor {
            id: actor.to_owned(),
            kind: PrincipalKind::User,
            name: format!("{actor} \"quoted\" Zoë"),
        },
        target: AuditTarget {
            kind: "credential".into(),
            id: target.to_owned(),
        },
        credential_id: Some(target.to_owned()),
        type_id: None,
        company_id: Some("k1".into()),
        request_id: format!("r{n}"),
        client_ip: Some("::1".into()),
        details: None,
        prev_hash: String::new(),
        hash: String::new(),
    })
}

fn reveal(n: usize) -> NewAuditEntry {
    entry(n, "u1", &format!("c{n}"), "credential.revealed", 0)
}

/// Every stored entry, in sequence order.
async fn all(log: &AuditLog) -> Vec<AuditEntry> {
    log.settled().await.expect("settles");
    log.scan(1, usize::MAX).await.expect("scans")
}

async fn appended_entries_chain_onto_the_head(adapter: Adapter) {
    let setup = Setup::new(adapter);
    let log = setup.handle().await;
    assert_eq!(log.head().await.expect("head"), AuditHead::genesis());
    for n in 0..3 {
        log.append(reveal(n)).await.expect("appended");
    }
    log.append_all(vec![reveal(3), reveal(4)])
        .await
        .expect("appended together");
    let entries = all(&log).await;
    assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(entries[0].prev_hash, audit::GENESIS);
    for pair in entries.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    for entry in &entries {
        assert_eq!(audit::entry_hash(entry), entry.hash, "{entry:?}");
    }
    assert_eq!(entries[0].actor.name, "u1 \"quoted\" Zoë");
    let last = entries.last().expect("entries");
    let head = AuditHead {
        seq: 5,
        hash: last.hash.clone(),
    };
    assert_eq!(log.head().await.expect("head"), head);
    // Another writer opening the log finds the same head.
    assert_eq!(setup.handle().await.head().await.expect("head"), head);
}

async fn two_writers_appending_at_once_never_fork_the_chain(adapter: Adapter) {
    let setup = Setup::new(adapter);
    let (a, b) = (setup.handle().await, setup.handle().await);
    // Each writer learns the head first, so both then chain onto what they hold.
    a.append(reveal(0)).await.expect("appended");
    b.append(reveal(1)).await.expect("appended");
    let appends = (2..62).map(|n| {
        let log = if n % 2 == 0 { &a } else { &b };
        async move { log.append(reveal(n)).await.expect("appended") }
    });
    join_all(appends).await;
    let verification = a.verify().await.expect("verifies");
    assert!(verification.valid, "{verification:?}");
    assert_eq!(verification.entries, 62);
    let entries = all(&b).await;
    let mut ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 62, "each entry stored once");
}

/// A numbered append answers the place its own entry took, also when appends of two writers
/// are batched and interleaved.
async fn a_numbered_append_answers_its_own_sequence_number(adapter: Adapter) {
    let setup = Setup::new(adapter);
    let (a, b) = (setup.handle().await, setup.handle().await);
    let appends = (0..40).map(|n| {
        let log = if n % 2 == 0 { &a } else { &b };
        async move {
            let entry = reveal(n);
            let id = entry.id().to_owned();
            (id, log.append_numbered(entry).await.expect("appended"))
        }
    });
    let numbered = join_all(appends).await;
    let stored = all(&a).await;
    for (id, seq) in &numbered {
        let at = stored
            .iter()
            .find(|e| e.seq == *seq)
            .expect("an entry at that seq");
        assert_eq!(&at.id, id, "seq {seq}");
    }
}

async fn a_page_filters_counts_and_runs_newest_first(adapter: Adapter) {
    let setup = Setup::new(adapter);
    let log = setup.handle().await;
    // Entry n is stamped at second n + 1.
    let plan = [
        ("u1", "c1", "credential.revealed"),
        ("u2", "c1", "credential.updated"),
        ("u1", "c2", "credential.revealed"),
        ("u1", "c1", "credential.revealed"),
        ("u2", "c2", "credential.revealed"),
        ("u1", "c1", "credential.deleted"),
    ];
    for (n, (actor, target, action)) in plan.into_iter().enumerate() {
        let second = u32::try_from(n + 1).expect("a few seconds");
        log.append(entry(n, actor, target, action, second))
            .await
            .expect("appended");
    }
    let page = |query: ListAuditEvents| {
        let log = log.clone();
        async move {
            let page = log.page(&query).await.expect("a page");
            (page.items.iter().map(|e| e.seq).collect::<Vec<_>>(), page.total)
        }
    };
    let query = |rpp: u64| ListAuditEvents {
        page: 1,
        rpp,
        ..ListAuditEvents::default()
    };
    assert_eq!(page(query(100)).await, (vec![6, 5, 4, 3, 2, 1], 6));
    assert_eq!(
        page(ListAuditEvents { page: 2, ..query(4) }).await,
        (vec![2, 1], 6)
    );
    assert_eq!(page(ListAuditEvents { page: 3, ..query(4) }).await, (vec![], 6));
    let some = |value: &str| Some(value.to_owned());
    let filtered = [
        (
            ListAuditEvents {
                actor: some("u1"),
                target: some("c1"),
                ..query(100)
            },
            (vec![6, 4, 1], 3),
        ),
        (
            ListAuditEvents {
                action: some("credential.revealed"),
                page: 2,
                ..query(2)
            },
            (vec![3, 1], 4),
        ),
        // A full page, a part-filled last page and a page past the end all tell the total.
        (
            ListAuditEvents {
                action: some("credential.revealed"),
                ..query(2)
            },
            (vec![5, 4], 4),
        ),
        (
            ListAuditEvents {
                actor: some("u1"),
                page: 2,
                ..query(3)
            },
            (vec![1], 4),
        ),
        (
            ListAuditEvents {
                action: some("credential.revealed"),
                page: 3,
                ..query(2)
            },
            (vec![], 4),
        ),
        (
            ListAuditEvents {
                from: some("2026-01-01T00:00:02.000Z"),
                to: some("2026-01-01T00:00:05.000Z"),
                ..query(100)
            },
            (vec![4, 3, 2], 3),
        ),
        // A value is only ever a value: quotes and a field name as a needle match nothing.
        (
            ListAuditEvents {
                actor: some("u1\",\"x"),
                ..query(100)
            },
            (vec![], 0),
        ),
        (
            ListAuditEvents {
                target: some("u1"),
                ..query(100)
            },
            (vec![], 0),
        ),
    ];
    for (filter, expected) in filtered {
        assert_eq!(page(filter.clone()).await, expected, "{filter:?}");
    }
}

async fn a_scan_reads_from_a_sequence_number_in_order(adapter: Adapter) {
    let setup = Setup::new(adapter);
    let log = setup.handle().await;
    for n in 0..5 {
        log.append(reveal(n)).await.expect("appended");
    }
    log.settled().await.expect("settles");
    let seqs = |entries: Vec<AuditEntry>| entries.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(log.scan(3, 10).await.expect("scans")), [3, 4, 5]);
    assert_eq!(seqs(log.scan(2, 2).await.expect("scans")), [2, 3]);
    assert_eq!(seqs(log.scan(6, 10).await.expect("scans")), Vec::<u64>::new());
}

async fn verification_finds_the_first_edited_entry(adapter: Adapter) {
    let setup = Setup::new(adapter);
    let log = setup.handle().await;
    for n in 0..4 {
        log.append(reveal(n)).await.expect("appended");
    }
    let verified = log.verify().await.expect("verifies");
    assert_eq!(
        (verified.valid, verified.entries, verified.first_broken_seq),
        (true, 4, None)
    );
    let checkpoint = log.scan(2, 1).await.expect("scans").remove(0);
    let trusted = AuditHead {
        seq: checkpoint.seq,
        hash: checkpoint.hash,
    };
    let after = log.verify_from(Some(&trusted)).await.expect("verifies");
    assert_eq!((after.valid, after.entries), (true, 2));
    setup.tamper(3).await;
    let broken = log.verify().await.expect("verifies");
    assert_eq!(
        (broken.valid, broken.first_broken_seq),
        (false, Some(3)),
        "{broken:?}"
    );
    // A reader opened afterwards sees the same.
    let fresh = setup.handle().await.verify().await.expect("verifies");
    assert_eq!(fresh.first_broken_seq, Some(3));
}

ttscm_testkit::for_each_variant!(
    Adapter { journal: Journal, mongo: Mongo, stream_mongo: StreamMongo, stream_journal: StreamJournal } =>
    appended_entries_chain_onto_the_head,
    two_writers_appending_at_once_never_fork_the_chain,
    a_numbered_append_answers_its_own_sequence_number,
    a_page_filters_counts_and_runs_newest_first,
    a_scan_reads_from_a_sequence_number_in_order,
    verification_finds_the_first_edited_entry,
);

/// A crash mid-write leaves part of a line: the next writer cuts it off and goes on; a complete
/// line that is not an entry is reported, never skipped.
#[tokio::test]
async fn a_torn_journal_tail_is_cut_off_and_a_corrupt_line_is_reported() {
    let setup = Setup::new(Adapter::Journal);
    let path = audit::journal_path(&setup.store_file());
    {
        let log = setup.handle().await;
        log.append_all(vec![reveal(0), reveal(1)])
            .await
            .expect("appended");
    }
    let intact = std::fs::read(&path).expect("read");
    std::fs::write(&path, [intact.as_slice(), br#"{"id":"c","se"#].concat()).expect("torn");
    let log = setup.handle().await;
    assert_eq!(std::fs::read(&path).expect("read"), intact, "the tail is cut off");
    assert_eq!(log.head().await.expect("head").seq, 2);
    log.append(reveal(2)).await.expect("appends after it");
    assert!(log.verify().await.expect("verifies").valid);
    drop(log);
    let mut damaged = std::fs::read(&path).expect("read");
    damaged.splice(0..0, b"not json\n".iter().copied());
    std::fs::write(&path, damaged).expect("damaged");
    let refused = AuditLog::open(&setup.bus().await, &setup.store().await).await;
    assert!(matches!(refused, Err(StoreError::Corrupt(_))), "{refused:?}");
}

/// The journal is the file the README names, one entry per line as it was hashed.
#[tokio::test]
async fn the_journal_is_a_file_of_entries_as_they_were_hashed() {
    let setup = Setup::new(Adapter::Journal);
    let log = setup.handle().await;
    log.append_all(vec![reveal(0), reveal(1)])
        .await
        .expect("appended");
    let path = setup.dir.path().join("ttscm-audit_entries.jsonl");
    let text = std::fs::read_to_string(&path).expect("the journal");
    let entries = all(&log).await;
    let expected: Vec<String> = entries
        .iter()
        .map(|e| serde_json::to_string(e).expect("serializes"))
        .collect();
    assert_eq!(text.lines().collect::<Vec<_>>(), expected);
}

/// With NATS, a log whose entries so far were written straight to the storage (say, before the
/// bus was NATS) goes on through the stream, in one chain.
#[tokio::test]
async fn a_chain_begun_in_the_storage_continues_through_the_stream() {
    let setup = Setup::new(Adapter::StreamMongo);
    let direct = setup.direct_log().await;
    for n in 0..3 {
        direct.append(reveal(n)).await.expect("appended");
    }
    let streamed = setup.handle().await;
    for n in 3..5 {
        streamed.append(reveal(n)).await.expect("appended");
    }
    let verification = streamed.verify().await.expect("verifies");
    assert_eq!((verification.valid, verification.entries), (true, 5));
}

/// A copier that stopped after storing some entries but before acknowledging their message gets
/// the message again: it stores the rest and skips what is stored.
#[tokio::test]
async fn a_half_finished_copy_is_finished_without_duplicates() {
    let setup = Setup::new(Adapter::StreamMongo);
    let log = setup.handle_without_copier().await;
    for n in 0..3 {
        log.append(reveal(n)).await.expect("appended");
    }
    let store = setup.store().await;
    let stored = || async {
        store
            .count(audit::COLLECTION, &Filter::All)
            .await
            .expect("counts")
    };
    assert_eq!(stored().await, 0, "nothing copied without a copier");
    // Copy the first entry by hand, as the stopped copier had.
    let stream = setup.audit_stream().await;
    let first = stream.get_raw_message(1).await.expect("first message");
    let entry: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&first.payload).expect("one entry per message here");
    store
        .insert(audit::COLLECTION, with_block(entry))
        .await
        .expect("inserted");
    drop(setup.handle().await);
    let verification = log.verify().await.expect("verifies");
    assert_eq!((verification.valid, verification.entries), (true, 3));
    assert_eq!(stored().await, 3);
}

/// A streamed entry as the copier stores it: with its block.
fn with_block(
    mut entry: serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    let seq = entry["seq"].as_u64().expect("a seq");
    entry.insert(audit::BLOCK_FIELD.into(), audit::block_of(seq).into());
    entry
}

/// The first page of every entry (up to 100).
fn everything() -> ListAuditEvents {
    ListAuditEvents {
        page: 1,
        rpp: 100,
        ..ListAuditEvents::default()
    }
}

/// A message of several entries, some of which a stopped copier had stored (in no particular
/// order), is finished on redelivery: the missing ones are stored, none twice.
#[tokio::test]
async fn a_half_finished_batch_is_finished_without_duplicates() {
    let setup = Setup::new(Adapter::StreamMongo);
    let log = setup.handle_without_copier().await;
    log.append_all((0..6).map(reveal).collect())
        .await
        .expect("appended");
    let store = setup.store().await;
    let stream = setup.audit_stream().await;
    let message = stream
        .get_raw_message(1)
        .await
        .expect("one message for the batch");
    let text = std::str::from_utf8(&message.payload).expect("UTF-8");
    let entries: Vec<serde_json::Map<String, serde_json::Value>> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("an entry"))
        .collect();
    assert_eq!(entries.len(), 6, "the batch is one message");
    // The copier had stored the second and fifth when it stopped.
    for at in [1, 4] {
        store
            .insert(audit::COLLECTION, with_block(entries[at].clone()))
            .await
            .expect("inserted");
    }
    drop(setup.handle().await);
    let verification = log.verify().await.expect("verifies");
    assert_eq!((verification.valid, verification.entries), (true, 6));
    assert_eq!(
        store
            .count(audit::COLLECTION, &Filter::All)
            .await
            .expect("counts"),
        6
    );
}

/// A copier stopped after storing a message's entries but before raising MongoDB's stored head
/// (which an unfiltered page counts from) gets the message again: it finds every entry stored
/// and raises the head, so pages show them (a lagging head once hid them until the next entry).
#[tokio::test]
async fn a_copy_stopped_before_raising_the_head_raises_it_when_redelivered() {
    let setup = Setup::new(Adapter::StreamMongo);
    let direct = setup.direct_log().await;
    for n in 0..2 {
        direct.append(reveal(n)).await.expect("appended");
    }
    let log = setup.handle_without_copier().await;
    for n in 2..5 {
        log.append(reveal(n)).await.expect("appended");
    }
    let mut stream = setup.audit_stream().await;
    let messages = stream.info().await.expect("stream info").state.last_sequence;
    let store = setup.store().await;
    let mut inserted = Vec::new();
    for message in 1..=messages {
        let message = stream.get_raw_message(message).await.expect("a message");
        for line in std::str::from_utf8(&message.payload).expect("UTF-8").lines() {
            let entry: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(line).expect("an entry");
            inserted.push(entry["seq"].as_u64().expect("a seq"));
            store
                .insert(audit::COLLECTION, with_block(entry))
                .await
                .expect("inserted");
        }
    }
    assert_eq!(inserted, [3, 4, 5], "the stream holds the three entries");
    // Stored, but the stored head still says 2.
    assert_eq!(page_seqs(&log, 1, 100).await, (vec![2, 1], 2));
    drop(setup.handle().await);
    let raised = ttscm_testkit::eventually(Duration::from_secs(10), || async {
        let page = log.page(&everything()).await.expect("a page");
        (page.pending == 0 && page.total == 5).then_some(page)
    })
    .await
    .expect("the redelivered copy raises the head");
    assert_eq!(
        raised.items.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [5, 4, 3, 2, 1]
    );
    let verification = log.verify().await.expect("verifies");
    assert_eq!((verification.valid, verification.entries), (true, 5));
}

/// While the copy lags (here: no copier runs), reads do not fail: a page and a verification
/// serve what is stored and count the entries still on their way; once copied, none are
/// pending.
#[tokio::test]
async fn reads_while_the_copy_lags_serve_what_is_stored_and_count_the_rest() {
    let setup = Setup::new(Adapter::StreamMongo);
    let direct = setup.direct_log().await;
    for n in 0..2 {
        direct.append(reveal(n)).await.expect("appended");
    }
    let log = setup.handle_without_copier().await;
    for n in 2..5 {
        log.append(reveal(n)).await.expect("appended");
    }
    let page = log.page(&everything()).await.expect("a page, not an error");
    assert_eq!((page.items.len(), page.total, page.pending), (2, 2, 3));
    let (verification, _) = log
        .verify_incremental(None, u64::MAX, None)
        .await
        .expect("a verification, not an error");
    assert_eq!(
        (verification.valid, verification.entries, verification.pending),
        (true, 2, 3)
    );
    drop(setup.handle().await);
    let caught_up = ttscm_testkit::eventually(Duration::from_secs(10), || async {
        let page = log.page(&everything()).await.expect("a page");
        (page.pending == 0 && page.total == 5).then_some(page)
    })
    .await;
    assert!(caught_up.is_some(), "the copy catches up");
    let (verification, _) = log
        .verify_incremental(None, u64::MAX, None)
        .await
        .expect("verifies");
    assert_eq!(
        (verification.valid, verification.entries, verification.pending),
        (true, 5, 0)
    );
}

/// Entries in the stream survive a NATS restart, and appends work again once the client has
/// reconnected.
#[tokio::test]
async fn entries_survive_a_nats_restart_and_the_chain_goes_on() {
    let mut setup = Setup::new(Adapter::StreamMongo);
    let log = setup.handle_without_copier().await;
    log.append(reveal(0)).await.expect("appended");
    log.append(reveal(1)).await.expect("appended");
    setup.nats.as_mut().expect("nats").restart();
    // Appends fail fast while the client reconnects, then work again.
    let appended = ttscm_testkit::eventually(Duration::from_secs(20), || async {
        log.append(reveal(2)).await.ok()
    })
    .await;
    assert!(appended.is_some(), "appends work again after the restart");
    // The copier starts only now: the entries from before the restart are still in the stream.
    drop(setup.handle().await);
    // An append that failed on an unanswered publish may still have been stored (the log errs
    // on the side of recording), so there are at least three entries, in one chain.
    let verification = log.verify().await.expect("verifies");
    assert!(
        verification.valid && verification.entries >= 3,
        "{verification:?}"
    );
    assert_eq!(json!(verification.first_broken_seq), json!(null));
}

/// Sequence numbers in a page of the log, newest first.
async fn page_seqs(log: &AuditLog, page: u64, rpp: u64) -> (Vec<u64>, u64) {
    let page = log
        .page(&ListAuditEvents {
            page,
            rpp,
            ..ListAuditEvents::default()
        })
        .await
        .expect("a page");
    (page.items.iter().map(|e| e.seq).collect(), page.total)
}

/// A log of several blocks in MongoDB: its head, pages across a block's end and verification
/// read by block; a log stored before blocks existed (no `block`, no marker) is read by `seq`
/// while the entries are given their blocks in the background, then by block.
#[tokio::test]
async fn a_mongo_log_is_read_by_block_and_an_older_one_is_given_blocks() {
    let setup = Setup::new(Adapter::Mongo);
    let log = setup.handle().await;
    // Blocks 0 (seq 1–1023) and 1 (1024–1124).
    let count = audit::BLOCK as usize + 100;
    for chunk in (0..count).collect::<Vec<_>>().chunks(500) {
        log.append_all(chunk.iter().map(|&n| reveal(n)).collect())
            .await
            .expect("appended");
    }
    let count = count as u64;
    let check = |log: AuditLog| async move {
        let head = log.head().await.expect("head");
        assert_eq!(head.seq, count);
        let verification = log.verify().await.expect("verifies");
        assert_eq!(
            (verification.valid, verification.entries),
            (true, count),
            "{verification:?}"
        );
        let (newest, total) = page_seqs(&log, 1, 3).await;
        assert_eq!((newest, total), (vec![count, count - 1, count - 2], count));
        // Page 2 of 100 holds seq 1024 down to 925: across block 0's end (1023).
        let (across, _) = page_seqs(&log, 2, 100).await;
        assert_eq!(across, (count - 199..=count - 100).rev().collect::<Vec<_>>());
        assert!(
            page_seqs(&log, 1000, 100).await.0.is_empty(),
            "past the first entry"
        );
        let from = log.scan(audit::BLOCK - 2, 5).await.expect("scans");
        assert_eq!(
            from.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (audit::BLOCK - 2..audit::BLOCK + 3).collect::<Vec<_>>()
        );
    };
    check(setup.handle().await).await;

    // The same entries as an older TTSCM stored them.
    let store = setup.store().await;
    let no_block = Filter::eq(audit::BLOCK_FIELD, ttscm_runtime::store::Scalar::Null);
    store
        .update_many(
            audit::COLLECTION,
            &Filter::All,
            &Update::default().unset(audit::BLOCK_FIELD),
        )
        .await
        .expect("blocks removed");
    store
        .delete_many("audit_layout", &Filter::All)
        .await
        .expect("marker removed");
    assert_eq!(
        store.count(audit::COLLECTION, &no_block).await.expect("counts"),
        count
    );
    let older = setup.handle().await;
    check(older.clone()).await;
    // FerretDB updates the documents of an `update_many` one by one: ~10 s per block here.
    let given = ttscm_testkit::eventually(Duration::from_secs(120), || async {
        (store.count(audit::COLLECTION, &no_block).await.ok() == Some(0)
            && store.get("audit_layout", "blocks").await.ok().flatten().is_some())
        .then_some(())
    })
    .await;
    assert!(given.is_some(), "every entry got its block, then the marker");
    check(older).await;
    let log = setup.handle().await;
    check(log.clone()).await;

    // A deleted block is a gap in the chain, not the end of the log.
    let deleted = store
        .delete_many(audit::COLLECTION, &Filter::eq(audit::BLOCK_FIELD, 0i64))
        .await
        .expect("deleted");
    assert_eq!(deleted, audit::BLOCK - 1);
    let verification = log.verify().await.expect("verifies");
    assert!(!verification.valid, "{verification:?}");
    // Broken at the first entry after the gap (it does not follow the genesis).
    assert_eq!(verification.first_broken_seq, Some(audit::BLOCK));
    assert_eq!(
        log.head().await.expect("head").seq,
        count,
        "the head is where it was"
    );
}

/// A verification with a time budget stops after the batch that used it up (`complete`
/// false) and the next goes on from the head it answered, until the end.
#[tokio::test]
async fn a_verification_out_of_time_goes_on_where_it_stopped() {
    let setup = Setup::new(Adapter::Journal);
    let log = setup.handle().await;
    let count = 2 * audit::BLOCK + 10;
    log.append_all((0..count as usize).map(reveal).collect())
        .await
        .expect("appended");
    let mut verified = None;
    let mut calls = Vec::new();
    loop {
        let (verification, head) = log
            .verify_incremental_within(verified.as_ref(), u64::MAX, Some(Duration::ZERO), None)
            .await
            .expect("verifies");
        assert!(verification.valid, "{verification:?}");
        calls.push((verification.entries, verification.complete));
        verified = head;
        if verification.complete {
            break;
        }
        assert!(calls.len() < 10, "{calls:?}");
    }
    // One batch per call, each ending where a block ends; the last finds the end.
    assert_eq!(
        calls,
        [
            (audit::BLOCK - 1, false),
            (audit::BLOCK, false),
            (11, false),
            (0, true)
        ]
    );
    assert_eq!(verified.expect("verified through").seq, count);
}
