//! Benchmark: conditional updates on a MongoDB-wire store (FerretDB) as the collection grows.
//!
//! For each size in `--sizes`, a fresh collection of that many documents (~1.5 KB each, like a
//! credential) is written, then, one at a time:
//! - **get**: `--ops` reads by id — the baseline, measured in the same run;
//! - **update one**: `--ops` conditional updates (`id` and a field's value, as a credential's
//!   write checks its revision);
//! - **update many**: one update of `--many` documents picked by a field (as a webhook replay
//!   requeues a time range).
//!
//! Printed per size: operations per second and the updates' cost as a multiple of a get. On
//! FerretDB's SQLite backend a filter other than a lone `_id` decodes every document of the
//! collection, so what an update reads besides the document's id shows up as a ratio that
//! grows with the size.
//!
//! `cargo run --release -p ttscm-runtime --example store_update_bench -- --mongo
//! mongodb://127.0.0.1:27999/ --sizes 100,1000,5000 --ops 200 --many 100`

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use ttscm_runtime::store::mongo::MongoStore;
use ttscm_runtime::{Filter, Store, Update};

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Options {
    mongo: String,
    database: String,
    sizes: Vec<usize>,
    ops: usize,
    many: usize,
}

fn options() -> Result<Options, Error> {
    let mut options = Options {
        mongo: "mongodb://127.0.0.1:27999/".into(),
        database: format!("store_update_bench_{}", std::process::id()),
        sizes: vec![100, 1000, 5000],
        ops: 200,
        many: 100,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--mongo" => options.mongo = value,
            "--database" => options.database = value,
            "--sizes" => {
                options.sizes = value.split(',').map(str::parse).collect::<Result<_, _>>()?;
            }
            "--ops" => options.ops = value.parse()?,
            "--many" => options.many = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(options)
}

fn per_second(count: usize, took: Duration) -> f64 {
    count as f64 / took.as_secs_f64().max(1e-9)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let options = options()?;
    let store = Store::Mongo(MongoStore::connect(&options.mongo, &options.database).await?);
    let padding = "x".repeat(1400);
    for &size in &options.sizes {
        let collection = format!("things_{size}");
        let batch: Vec<_> = (0..size)
            .map(|i| {
                json!({"id": format!("d{i}"), "group": i % 10, "state": "idle", "padding": padding})
                    .as_object()
                    .cloned()
                    .expect("an object")
            })
            .collect();
        for chunk in batch.chunks(500) {
            store.insert_many(&collection, chunk.to_vec()).await?;
        }
        let ids: Vec<String> = (0..options.ops)
            .map(|i| format!("d{}", (i * 7919) % size))
            .collect();

        let started = Instant::now();
        for id in &ids {
            store.get(&collection, id).await?.ok_or("a document")?;
        }
        let get = per_second(ids.len(), started.elapsed());

        let started = Instant::now();
        for (n, id) in ids.iter().enumerate() {
            let matched = store
                .update_one(
                    &collection,
                    &Filter::And(vec![Filter::id(id), Filter::eq("state", "idle")]),
                    &Update::default().set("state", "idle").set("n", n as i64),
                )
                .await?;
            assert!(matched, "the conditional update matched");
        }
        let one = per_second(ids.len(), started.elapsed());

        let many = options.many.min(size);
        let started = Instant::now();
        let updated = store
            .update_many(
                &collection,
                &Filter::Lt("group".into(), ((many * 10).div_ceil(size) as i64).into()),
                &Update::default().set("state", "queued"),
            )
            .await?;
        let many_took = started.elapsed();
        println!(
            "size {size}: get {get:.0}/s; update one {one:.0}/s ({:.1}× a get); update many \
             {updated} documents in {:.0} ms ({:.0}/s, {:.1}× a get)",
            get / one,
            many_took.as_secs_f64() * 1000.0,
            per_second(updated as usize, many_took),
            get / per_second(updated as usize, many_took),
        );
        store.delete_many(&collection, &Filter::All).await?;
    }
    Ok(())
}
