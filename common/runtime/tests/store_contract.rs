//! The store contract: one suite, run against the embedded SQLite adapter and against MongoDB
//! on a real FerretDB.

use serde_json::{Value, json};
use ttscm_runtime::store::{
    Document, DocumentKeys, Filter, FindOptions, IndexSpec, Order, Scalar, Store, StoreError, Update,
    mongo::MongoStore, sqlite::SqliteStore,
};
use ttscm_testkit::MongoFixture;

enum Adapter {
    Sqlite,
    Mongo,
}

/// Keeps whatever backs a store alive for the test.
#[allow(dead_code)]
enum Guard {
    Dir(tempfile::TempDir),
    Mongo(MongoFixture),
}

async fn store(adapter: &Adapter) -> (Store, Guard) {
    ttscm_testkit::init_tracing();
    match adapter {
        Adapter::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = SqliteStore::open(&dir.path().join("test.sqlite3")).expect("opens");
            (Store::Sqlite(store), Guard::Dir(dir))
        }
        Adapter::Mongo => {
            let fixture = MongoFixture::start();
            let store = MongoStore::connect(&fixture.uri, &fixture.database)
                .await
                .expect("connects");
            (Store::Mongo(store), Guard::Mongo(fixture))
        }
    }
}

/// A unique sequence index, as the append-log tests declare it.
const SEQ_UNIQUE: IndexSpec = IndexSpec {
    name: "seq_unique",
    fields: &["seq"],
    unique: true,
};

fn doc(value: Value) -> Document {
    match value {
        Value::Object(map) => map,
        _ => panic!("test documents are objects"),
    }
}

const THINGS: &str = "things";
const INDEXES: &[IndexSpec] = &[
    IndexSpec {
        name: "name_key_unique",
        fields: &["nameKey"],
        unique: true,
    },
    IndexSpec {
        name: "group",
        fields: &["group"],
        unique: false,
    },
];

fn ids(documents: &[Document]) -> Vec<String> {
    documents
        .iter()
        .map(|d| d["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The `field` of document `id` in `collection`, when the document exists.
async fn field(store: &Store, collection: &str, id: &str, field: &str) -> Option<Value> {
    store
        .get(collection, id)
        .await
        .expect("read")
        .map(|d| d[field].clone())
}

async fn seeded(adapter: &Adapter) -> (Store, Guard) {
    let (store, guard) = store(adapter).await;
    store.ensure_indexes(THINGS, INDEXES).await.expect("indexes");
    for (id, name, group, n) in [
        ("a1", "Alpha", "x", 1),
        ("b2", "beta", "x", 2),
        ("c3", "Gamma ray", "y", 3),
        ("d4", "a.b*c", "y", 4),
        ("e5", "axb*c (paren", "z", 5),
        ("f6", "Straße", "z", 6),
    ] {
        store
            .insert(THINGS, doc(json!({"id": id, "name": name, "nameKey": name.to_lowercase(), "group": group, "n": n, "nested": {"k": n}})))
            .await
            .expect("inserted");
    }
    (store, guard)
}

async fn a_document_reads_back_as_written(adapter: Adapter) {
    let (store, _guard) = store(&adapter).await;
    let written = doc(
        json!({"id": "x1", "name": "N", "tags": ["a", "b"], "nested": {"deep": {"n": 3}}, "flag": true, "none": null}),
    );
    store.insert(THINGS, written.clone()).await.expect("inserted");
    assert_eq!(store.get(THINGS, "x1").await.expect("read"), Some(written));
    assert_eq!(store.get(THINGS, "nope").await.expect("read"), None);
}

/// Typed documents go in as their JSON (no `Document` built first on SQLite) and read back as
/// the same documents; a batch with a taken id or a non-object is refused.
async fn typed_documents_insert_as_their_json(adapter: Adapter) {
    #[derive(serde::Serialize)]
    struct Entry {
        id: String,
        seq: u64,
        tags: Vec<&'static str>,
        note: Option<String>,
    }
    let (store, _guard) = store(&adapter).await;
    let entries: Vec<Entry> = (1..=3)
        .map(|seq| Entry {
            id: format!("e{seq}"),
            seq,
            tags: vec!["a", "b"],
            note: (seq == 2).then(|| "two".to_owned()),
        })
        .collect();
    store
        .insert_many_as(THINGS, &entries, |e| DocumentKeys::id(&e.id))
        .await
        .expect("inserted");
    assert_eq!(
        store.get(THINGS, "e2").await.expect("read"),
        Some(doc(
            json!({"id": "e2", "seq": 2, "tags": ["a", "b"], "note": "two"})
        ))
    );
    let found = store
        .find(
            THINGS,
            &FindOptions::new(Filter::Gte("seq".into(), 2i64.into())).sort("seq", Order::Asc),
        )
        .await
        .expect("found");
    assert_eq!(found.len(), 2, "numbers stay numbers: {found:?}");
    let again = store
        .insert_many_as(THINGS, &entries[..1], |e| DocumentKeys::id(&e.id))
        .await;
    assert!(matches!(again, Err(StoreError::Conflict)), "{again:?}");
    let not_objects = store
        .insert_many_as(THINGS, &[7u8], |_| DocumentKeys::id("n1"))
        .await;
    assert!(
        matches!(not_objects, Err(StoreError::Invalid(_))),
        "{not_objects:?}"
    );
    assert_eq!(store.count(THINGS, &Filter::All).await.expect("count"), 3);

    // A caller holding the JSON text already hands it over instead of the document's own
    // serialization; both stores read it back as that document.
    let texts = [r#"{"id":"t1","seq":11,"tags":["x"],"note":null}"#];
    store
        .insert_many_as(THINGS, &texts, |text| DocumentKeys {
            id: "t1",
            json: Some(text),
        })
        .await
        .expect("inserted as text");
    assert_eq!(
        store.get(THINGS, "t1").await.expect("read"),
        Some(doc(json!({"id": "t1", "seq": 11, "tags": ["x"], "note": null})))
    );
    let found = store
        .find(THINGS, &FindOptions::new(Filter::Gte("seq".into(), 11i64.into())))
        .await
        .expect("found");
    assert_eq!(found.len(), 1, "the text's fields are queryable: {found:?}");
    let not_an_object = store
        .insert_many_as(THINGS, &["[1]"], |text| DocumentKeys {
            id: "t2",
            json: Some(text),
        })
        .await;
    assert!(
        matches!(not_an_object, Err(StoreError::Invalid(_))),
        "{not_an_object:?}"
    );
}

/// Collections declared append logs (stored differently on SQLite: a rowid table with an id
/// index, in the second file) keep the same contract: ids unique, lookups by id, unique
/// indexes, sorts, updates, deletes.
async fn append_logs_keep_the_contract(adapter: Adapter) {
    const LOG: &str = "things_log";
    let (store, _guard) = store(&adapter).await;
    store
        .ensure_append_log(LOG, &[SEQ_UNIQUE])
        .await
        .expect("declared");
    // Ids deliberately out of insertion order.
    let entries: Vec<Value> = [(1, "m"), (2, "c"), (3, "x"), (4, "a")]
        .into_iter()
        .map(|(seq, id)| json!({"id": id, "seq": seq}))
        .collect();
    store
        .insert_many_as(LOG, &entries, |e| {
            DocumentKeys::id(e["id"].as_str().unwrap_or_default())
        })
        .await
        .expect("inserted");
    assert_eq!(
        store.get(LOG, "x").await.expect("read"),
        Some(doc(json!({"id": "x", "seq": 3})))
    );
    let same_id = store.insert(LOG, doc(json!({"id": "c", "seq": 9}))).await;
    assert!(matches!(same_id, Err(StoreError::Conflict)), "{same_id:?}");
    let same_seq = store.insert(LOG, doc(json!({"id": "q", "seq": 4}))).await;
    assert!(matches!(same_seq, Err(StoreError::Conflict)), "{same_seq:?}");
    let by_seq = store
        .find(LOG, &FindOptions::new(Filter::All).sort("seq", Order::Desc))
        .await
        .expect("found");
    assert_eq!(ids(&by_seq), ["a", "x", "c", "m"]);
    let mut set = Update::default();
    set.set.push(("note".into(), json!("seen")));
    assert!(
        store
            .update_one(LOG, &Filter::id("c"), &set)
            .await
            .expect("updated")
    );
    assert_eq!(field(&store, LOG, "c", "note").await, Some(json!("seen")));
    assert_eq!(
        store.delete_many(LOG, &Filter::id("m")).await.expect("deleted"),
        1
    );
    assert_eq!(store.count(LOG, &Filter::All).await.expect("count"), 3);
    assert_eq!(store.get(LOG, "m").await.expect("read"), None);
}

/// A batch that hits a duplicate is a conflict. SQLite writes none of it (one transaction);
/// MongoDB stops at the duplicate, keeping the documents before it and writing none after.
async fn a_batch_with_a_duplicate_is_a_conflict(adapter: Adapter) {
    let (store, _guard) = seeded(&adapter).await;
    let batch = vec![
        doc(json!({"id": "n1", "nameKey": "n1"})),
        doc(json!({"id": "a1", "nameKey": "n-dup"})),
        doc(json!({"id": "n2", "nameKey": "n2"})),
    ];
    let result = store.insert_many(THINGS, batch).await;
    assert!(matches!(result, Err(StoreError::Conflict)), "{result:?}");
    let before = store.get(THINGS, "n1").await.expect("read").is_some();
    let after = store.get(THINGS, "n2").await.expect("read").is_some();
    match adapter {
        Adapter::Sqlite => assert_eq!((before, after), (false, false)),
        Adapter::Mongo => assert_eq!((before, after), (true, false)),
    }
    // A clean batch goes in whole, in one call.
    let clean: Vec<Document> = (3..=40)
        .map(|n| doc(json!({"id": format!("n{n}"), "nameKey": format!("n{n}")})))
        .collect();
    store.insert_many(THINGS, clean).await.expect("inserted");
    assert!(store.get(THINGS, "n40").await.expect("read").is_some());
}

async fn duplicate_ids_and_unique_values_are_conflicts(adapter: Adapter) {
    let (store, _guard) = seeded(&adapter).await;
    let same_id = store
        .insert(THINGS, doc(json!({"id": "a1", "nameKey": "other"})))
        .await;
    assert!(matches!(same_id, Err(StoreError::Conflict)), "{same_id:?}");
    let same_key = store
        .insert(THINGS, doc(json!({"id": "zz", "nameKey": "alpha"})))
        .await;
    assert!(matches!(same_key, Err(StoreError::Conflict)), "{same_key:?}");
    assert_eq!(store.count(THINGS, &Filter::All).await.expect("count"), 6);
}

async fn filters_sorts_and_pages_agree(adapter: Adapter) {
    let (store, _guard) = seeded(&adapter).await;
    let by_group = store
        .find(
            THINGS,
            &FindOptions::new(Filter::eq("group", "x")).sort("id", Order::Asc),
        )
        .await
        .expect("find");
    assert_eq!(ids(&by_group), ["a1", "b2"]);
    let in_groups = store
        .find(
            THINGS,
            &FindOptions::new(Filter::is_in("group", ["y", "z"])).sort("n", Order::Desc),
        )
        .await
        .expect("find");
    assert_eq!(ids(&in_groups), ["f6", "e5", "d4", "c3"]);
    let range = Filter::And(vec![
        Filter::Gte("n".into(), Scalar::Int(2)),
        Filter::Lt("n".into(), Scalar::Int(4)),
    ]);
    assert_eq!(
        ids(&store
            .find(THINGS, &FindOptions::new(range.clone()).sort("n", Order::Asc))
            .await
            .expect("find")),
        ["b2", "c3"]
    );
    assert_eq!(store.count(THINGS, &range).await.expect("count"), 2);
    let nested = store
        .find(THINGS, &FindOptions::new(Filter::eq("nested.k", 5i64)))
        .await
        .expect("find");
    assert_eq!(ids(&nested), ["e5"]);
    let either = Filter::Or(vec![Filter::id("a1"), Filter::eq("group", "z")]);
    assert_eq!(store.count(THINGS, &either).await.expect("count"), 3);
    let not_x = store
        .find(
            THINGS,
            &FindOptions::new(Filter::Ne("group".into(), "x".into())).sort("id", Order::Asc),
        )
        .await
        .expect("find");
    assert_eq!(ids(&not_x), ["c3", "d4", "e5", "f6"]);
    let paged = store
        .find(
            THINGS,
            &FindOptions::new(Filter::All).sort("n", Order::Asc).page(2, 3),
        )
        .await
        .expect("find");
    assert_eq!(ids(&paged), ["c3", "d4", "e5"]);
    let empty_in = store
        .count(THINGS, &Filter::is_in("group", Vec::<String>::new()))
        .await
        .expect("count");
    assert_eq!(empty_in, 0);
}

async fn case_insensitive_search_takes_metacharacters_literally(adapter: Adapter) {
    let (store, _guard) = seeded(&adapter).await;
    let search = |needle: &'static str| {
        let store = store.clone();
        async move {
            let found = store
                .find(
                    THINGS,
                    &FindOptions::new(Filter::contains_ci("name", needle)).sort("id", Order::Asc),
                )
                .await
                .expect("find");
            ids(&found)
        }
    };
    assert_eq!(search("a.b*").await, ["d4"]);
    assert_eq!(search("(").await, ["e5"]);
    assert_eq!(search("ALPHA").await, ["a1"]);
    assert_eq!(search("b*c").await, ["d4", "e5"]);
    assert_eq!(search("STRASSE").await, Vec::<String>::new());
    assert_eq!(search("straße").await, ["f6"]);
    assert_eq!(search(".*").await, Vec::<String>::new());
}

async fn operator_shaped_values_are_only_values(adapter: Adapter) {
    let (store, _guard) = seeded(&adapter).await;
    for value in [r#"{"$ne": null}"#, "$ne", "' OR 1=1 --"] {
        assert_eq!(
            store
                .count(THINGS, &Filter::eq("name", value))
                .await
                .expect("count"),
            0,
            "{value}"
        );
    }
}

async fn conditional_updates_report_whether_they_matched(adapter: Adapter) {
    let (store, _guard) = seeded(&adapter).await;
    let matched = store
        .update_one(
            THINGS,
            &Filter::And(vec![Filter::id("a1"), Filter::eq("n", 1i64)]),
            &Update::default()
                .set("n", 10)
                .set("extra", json!({"a": [1]}))
                .unset("nested"),
        )
        .await
        .expect("update");
    assert!(matched);
    let again = store
        .update_one(
            THINGS,
            &Filter::And(vec![Filter::id("a1"), Filter::eq("n", 1i64)]),
            &Update::default().set("n", 11),
        )
        .await
        .expect("update");
    assert!(!again);
    let after = store.get(THINGS, "a1").await.expect("read").expect("exists");
    assert_eq!(after["n"], json!(10));
    assert_eq!(after["extra"], json!({"a": [1]}));
    assert!(!after.contains_key("nested"));
    let many = store
        .update_many(
            THINGS,
            &Filter::eq("group", "z"),
            &Update::default().set("flag", true),
        )
        .await
        .expect("update");
    assert_eq!(many, 2);
    let clash = store
        .update_one(
            THINGS,
            &Filter::id("b2"),
            &Update::default().set("nameKey", "alpha"),
        )
        .await;
    assert!(matches!(clash, Err(StoreError::Conflict)), "{clash:?}");
}

async fn of_two_racing_conditional_updates_exactly_one_wins(adapter: Adapter) {
    let (store, _guard) = store(&adapter).await;
    for round in 0..20 {
        let id = format!("r{round}");
        store
            .insert(THINGS, doc(json!({"id": id, "version": 1})))
            .await
            .expect("inserted");
        let attempt = |who: &'static str| {
            let store = store.clone();
            let id = id.clone();
            tokio::spawn(async move {
                store
                    .update_one(
                        THINGS,
                        &Filter::And(vec![Filter::id(&id), Filter::eq("version", 1i64)]),
                        &Update::default().set("version", 2).set("winner", who),
                    )
                    .await
                    .expect("update")
            })
        };
        let (a, b) = (attempt("a"), attempt("b"));
        let (a, b) = (a.await.expect("joined"), b.await.expect("joined"));
        assert!(a ^ b, "round {round}: a={a} b={b}");
    }
}

/// A many-document update racing single-document updates of the same documents: every change
/// lands (FerretDB 1.24 writes whole documents after reading them, so unguarded, one write could
/// undo the other).
async fn an_update_of_many_racing_updates_of_one_loses_neither(adapter: Adapter) {
    let (store, _guard) = store(&adapter).await;
    const DOCS: usize = 12;
    for round in 0..6 {
        for i in 0..DOCS {
            store
                .insert(
                    THINGS,
                    doc(json!({"id": format!("m{round}-{i}"), "round": round})),
                )
                .await
                .expect("inserted");
        }
        let ones: Vec<_> = (0..DOCS)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .update_one(
                            THINGS,
                            &Filter::id(&format!("m{round}-{i}")),
                            &Update::default().set("one", true),
                        )
                        .await
                        .expect("update one")
                })
            })
            .collect();
        let many = store
            .update_many(
                THINGS,
                &Filter::eq("round", round),
                &Update::default().set("many", true),
            )
            .await
            .expect("update many");
        assert_eq!(many, DOCS as u64, "round {round}: every document matched");
        for one in ones {
            assert!(
                one.await.expect("joined"),
                "round {round}: each update of one matched"
            );
        }
        let both = Filter::And(vec![
            Filter::eq("round", round),
            Filter::eq("one", true),
            Filter::eq("many", true),
        ]);
        assert_eq!(
            store.count(THINGS, &both).await.expect("count"),
            DOCS as u64,
            "round {round}: both changes on every document"
        );
    }
}

async fn paging_by_a_stable_order_visits_every_document_once(adapter: Adapter) {
    let (store, _guard) = store(&adapter).await;
    for i in 0..50 {
        // Many equal names, so only the id tie-break makes the order stable.
        store
            .insert(
                THINGS,
                doc(json!({"id": format!("p{i:02}"), "name": format!("n{}", i % 3)})),
            )
            .await
            .expect("inserted");
    }
    let mut seen = Vec::new();
    for page in 0..8 {
        let found = store
            .find(
                THINGS,
                &FindOptions::new(Filter::All)
                    .sort("name", Order::Asc)
                    .sort("id", Order::Asc)
                    .page(page * 7, 7),
            )
            .await
            .expect("find");
        seen.extend(ids(&found));
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen.len(), 50);
    assert_eq!(sorted.len(), 50);
}

async fn deletes_remove_what_they_match(adapter: Adapter) {
    let (store, _guard) = seeded(&adapter).await;
    assert!(store.delete(THINGS, "a1").await.expect("delete"));
    assert!(!store.delete(THINGS, "a1").await.expect("delete"));
    assert_eq!(
        store
            .delete_many(THINGS, &Filter::eq("group", "y"))
            .await
            .expect("delete"),
        2
    );
    assert_eq!(store.count(THINGS, &Filter::All).await.expect("count"), 3);
    store.ping().await.expect("ping");
}

async fn bad_field_paths_are_refused(adapter: Adapter) {
    let (store, _guard) = store(&adapter).await;
    let error = store.count(THINGS, &Filter::eq("$where", "1")).await;
    assert!(matches!(error, Err(StoreError::Invalid(_))), "{error:?}");
    let error = store.count(THINGS, &Filter::eq("a') OR 1=1 --", "1")).await;
    assert!(matches!(error, Err(StoreError::Invalid(_))), "{error:?}");
}

ttscm_testkit::for_each_variant!(
    Adapter { sqlite: Sqlite, mongo: Mongo } =>
    a_document_reads_back_as_written,
    typed_documents_insert_as_their_json,
    append_logs_keep_the_contract,
    a_batch_with_a_duplicate_is_a_conflict,
    duplicate_ids_and_unique_values_are_conflicts,
    filters_sorts_and_pages_agree,
    case_insensitive_search_takes_metacharacters_literally,
    operator_shaped_values_are_only_values,
    conditional_updates_report_whether_they_matched,
    of_two_racing_conditional_updates_exactly_one_wins,
    an_update_of_many_racing_updates_of_one_loses_neither,
    paging_by_a_stable_order_visits_every_document_once,
    deletes_remove_what_they_match,
    bad_field_paths_are_refused,
);

/// Under writes with reads always in flight, the WAL never gets a moment to start over by itself;
/// the checkpointer restarts it, so its file stays far below what was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_wal_stays_bounded_under_constant_reads_and_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("wal.sqlite3");
    let store = Store::Sqlite(SqliteStore::open(&path).expect("opens"));
    store.ensure_indexes(THINGS, INDEXES).await.expect("indexes");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, stop) = (store.clone(), stop.clone());
            tokio::task::spawn_blocking(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("runtime");
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    runtime
                        .block_on(store.find(THINGS, &FindOptions::new(Filter::All).page(0, 1)))
                        .expect("read");
                }
            })
        })
        .collect();
    let filler = "x".repeat(16 * 1024);
    const WRITTEN_MIB: usize = 96;
    for batch in 0..WRITTEN_MIB * 64 / 50 {
        let documents = (0..50)
            .map(|n| doc(json!({"id": format!("w{batch}-{n}"), "fill": filler})))
            .collect();
        store.insert_many(THINGS, documents).await.expect("inserted");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in readers {
        reader.await.expect("reader");
    }
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal_bytes = std::fs::metadata(&wal).expect("the WAL exists").len();
    assert!(
        wal_bytes < (WRITTEN_MIB as u64 / 2) << 20,
        "the WAL file holds {} MiB after {WRITTEN_MIB} MiB were written",
        wal_bytes >> 20
    );
}

#[tokio::test]
async fn the_embedded_store_keeps_documents_across_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("restart.sqlite3");
    {
        let store = Store::Sqlite(SqliteStore::open(&path).expect("opens"));
        store.ensure_indexes(THINGS, INDEXES).await.expect("indexes");
        store
            .insert(THINGS, doc(json!({"id": "k1", "nameKey": "kept"})))
            .await
            .expect("inserted");
    }
    let reopened = Store::Sqlite(SqliteStore::open(&path).expect("reopens"));
    assert_eq!(
        field(&reopened, THINGS, "k1", "nameKey").await,
        Some(json!("kept"))
    );
    let dup = reopened
        .insert(THINGS, doc(json!({"id": "k2", "nameKey": "kept"})))
        .await;
    assert!(
        matches!(dup, Err(StoreError::Conflict)),
        "unique index survives too: {dup:?}"
    );
}

/// A commit by another connection to the same file (as by a `ttscm` command run beside the
/// server) moves the embedded store's change epoch, so caches can drop what they hold.
#[tokio::test]
async fn another_process_commit_moves_the_embedded_change_epoch() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("shared.sqlite3");
    let server = Store::Sqlite(SqliteStore::open(&path).expect("opens"));
    let other = Store::Sqlite(SqliteStore::open(&path).expect("opens again"));
    let before = server.change_epoch();
    other
        .insert(THINGS, doc(json!({"id": "w1"})))
        .await
        .expect("written elsewhere");
    // The checkpointer notices within 100 ms; the deadline is generous for a loaded machine.
    ttscm_testkit::eventually(std::time::Duration::from_secs(10), || async {
        (server.change_epoch() != before).then_some(())
    })
    .await
    .expect("the epoch moved");
    assert_eq!(field(&server, THINGS, "w1", "id").await, Some(json!("w1")));
}

/// The rows of an embedded log-file table, in the order of its integer primary key.
fn log_rows(dir: &std::path::Path, table: &str, key: &str) -> Vec<(i64, String)> {
    let log = rusqlite::Connection::open(dir.join("new-log.sqlite3")).expect("opens");
    log.prepare(&format!(r#"SELECT {key}, id FROM "{table}" ORDER BY {key}"#))
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .expect("a table with an integer key")
}

/// Whether the embedded file `file` (in `dir`) holds a table named `table`.
fn table_exists(dir: &std::path::Path, file: &str, table: &str) -> bool {
    let connection = rusqlite::Connection::open(dir.join(file)).expect("opens");
    connection
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )
        .expect("schema")
}

/// An embedded append log (the event outbox, as its owner declares it) is a rowid table in the
/// second file, appended in rowid order; an undeclared collection is an ordinary table in the
/// main file, and cannot become an append log once used.
#[tokio::test]
async fn an_embedded_append_log_is_a_rowid_table_in_the_log_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::Sqlite(SqliteStore::open(&dir.path().join("new.sqlite3")).expect("opens"));
    store.ensure_append_log("outbox", &[]).await.expect("declared");
    for id in ["z", "a"] {
        store
            .insert("outbox", doc(json!({ "id": id })))
            .await
            .expect("appended");
    }
    assert_eq!(
        log_rows(dir.path(), "outbox", "rid"),
        [(1, "z".to_owned()), (2, "a".to_owned())]
    );
    assert!(!table_exists(dir.path(), "new.sqlite3", "outbox"));
    store
        .insert("plain", doc(json!({ "id": "p" })))
        .await
        .expect("inserted");
    assert!(table_exists(dir.path(), "new.sqlite3", "plain"));
    assert!(!table_exists(dir.path(), "new-log.sqlite3", "plain"));
    let late = store.ensure_append_log("plain", &[]).await;
    assert!(matches!(late, Err(StoreError::Invalid(_))), "{late:?}");
}

#[tokio::test]
async fn an_unreachable_mongodb_fails_fast_as_unavailable() {
    let port = ttscm_testkit::free_port();
    let store = MongoStore::connect(&format!("mongodb://127.0.0.1:{port}/"), "x")
        .await
        .expect("lazy connect");
    let started = std::time::Instant::now();
    let error = Store::Mongo(store).ping().await;
    assert!(matches!(error, Err(StoreError::Unavailable(_))), "{error:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
}
