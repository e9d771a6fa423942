//! Benchmark: the audit log at millions of entries — how long it takes to fill, to reopen, to
//! verify in full and incrementally, to page through, and how much memory each step needs.
//! Run by `bench/verify.sh`; see `bench/README.md` ("Audit log at size").
//!
//! ```sh
//! cargo run --release -p ttscm-runtime --example audit_verify_bench -- journal <dir> <entries>
//! cargo run --release -p ttscm-runtime --example audit_verify_bench -- mongo <uri> <entries>
//! ```
//!
//! `AUDIT_BENCH_VERIFY_MAX=N` stops the full verification after `N` entries (on a store where
//! each batch of reads is slow, the time per batch is the figure), `AUDIT_BENCH_PAGE_RUNS`
//! sets the runs per page query (default 11 for the unfiltered pages, a third of that filtered)
//! and `AUDIT_BENCH_FILTERED=0` leaves the filtered pages out.
//!
//! The log is filled through the public API (`AuditLog::append_all`, batches of
//! [`FILL_BATCH`] entries: chained and hashed one by one, as the service does). Memory is the
//! process's peak RSS (`VmHWM`), reset before each step (`/proc/self/clear_refs`), and its RSS
//! after it. Prints one `key=value` line per figure.

use std::time::{Duration, Instant};

use ttscm_contract::PrincipalKind;
use ttscm_contract::audit::{AuditActor, AuditEntry, AuditTarget, ListAuditEvents};
use ttscm_runtime::audit::{AuditLog, AuditStorage, Journal, MongoEntries, NewAuditEntry};
use ttscm_runtime::store::mongo::MongoStore;
use ttscm_runtime::{Store, clock, ids};

/// The example's errors (it has no `anyhow`: not a dependency of this crate).
type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Entries per `append_all` while filling.
const FILL_BATCH: usize = 20_000;
/// Distinct actors (a filter by one matches 1 entry in this many).
const ACTORS: usize = 50;
/// Distinct targets (a filter by one matches 1 entry in this many).
const TARGETS: usize = 10_000;
/// Entries appended before the incremental verification.
const MORE: usize = 1_000;

/// A reveal as the credential service records it: the n-th entry of the bench.
fn entry(n: usize, at: &str) -> NewAuditEntry {
    NewAuditEntry::new(AuditEntry {
        id: ids::new_id(),
        seq: 0,
        at: at.to_owned(),
        action: "credential.revealed".into(),
        actor: AuditActor {
            id: format!("actor-{:04}", n % ACTORS),
            kind: PrincipalKind::User,
            name: format!("Technician {}", n % ACTORS),
        },
        target: AuditTarget {
            kind: "credential".into(),
            id: format!("credential-{:05}", n % TARGETS),
        },
        credential_id: Some(format!("credential-{:05}", n % TARGETS)),
        type_id: Some("type-0001".into()),
        company_id: Some(format!("company-{:04}", n % 1000)),
        request_id: ids::new_request_id(),
        client_ip: Some("203.0.113.7".into()),
        details: None,
        prev_hash: String::new(),
        hash: String::new(),
    })
}

/// A `key: value` line of `/proc/self/status`, in KiB.
fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix(key)?
                    .strip_prefix(':')?
                    .trim()
                    .trim_end_matches(" kB")
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

/// Resets the peak RSS (`VmHWM`) to the current RSS (Linux ≥ 4.0).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// Prints the step's time and memory figures.
fn report(step: &str, took: Duration) {
    println!(
        "{step}_secs={:.3} {step}_peak_rss_mib={} {step}_rss_mib={}",
        took.as_secs_f64(),
        mib(status_kib("VmHWM")),
        mib(status_kib("VmRSS"))
    );
}

async fn open(kind: &str, place: &str) -> Result<AuditLog> {
    let storage = match kind {
        "journal" => {
            std::fs::create_dir_all(place)?;
            AuditStorage::Journal(Journal::open(&std::path::Path::new(place).join("audit.jsonl"))?)
        }
        "mongo" => {
            let store = Store::Mongo(MongoStore::connect(place, "ttscm_verify_bench").await?);
            AuditStorage::Mongo(MongoEntries::open(&store).await?)
        }
        other => return Err(format!("unknown storage {other:?}: journal or mongo").into()),
    };
    Ok(AuditLog::new(storage, None))
}

async fn fill(log: &AuditLog, from: usize, count: usize) -> Result<()> {
    let mut n = from;
    while n < from + count {
        let at = clock::now_iso();
        let batch = FILL_BATCH.min(from + count - n);
        log.append_all((n..n + batch).map(|i| entry(i, &at)).collect())
            .await?;
        n += batch;
        if n % 1_000_000 < batch {
            eprintln!("filled {n}");
        }
    }
    Ok(())
}

/// The median time of `runs` pages of `query`.
async fn page_latency(log: &AuditLog, query: &ListAuditEvents, runs: usize) -> Result<(Duration, u64)> {
    let mut times = Vec::with_capacity(runs);
    let mut total = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let page = log.page(query).await?;
        times.push(started.elapsed());
        total = page.total;
        let expected = query.rpp.min(total.saturating_sub((query.page - 1) * query.rpp));
        if page.items.len() as u64 != expected {
            return Err(format!("a page of {} entries, not {expected}", page.items.len()).into());
        }
    }
    times.sort();
    Ok((times[runs / 2], total))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, kind, place, entries] = args.as_slice() else {
        return Err("usage: audit_verify_bench journal|mongo <dir|uri> <entries>".into());
    };
    let entries: usize = entries.parse()?;
    println!("storage={kind} entries={entries}");

    reset_peak();
    let started = Instant::now();
    let log = open(kind, place).await?;
    let existing = log.head().await?.seq as usize;
    fill(&log, existing, entries.saturating_sub(existing)).await?;
    report("fill", started.elapsed());
    drop(log);

    reset_peak();
    let started = Instant::now();
    let log = open(kind, place).await?;
    let head = log.head().await?;
    report("reopen", started.elapsed());
    println!("head_seq={}", head.seq);

    reset_peak();
    let started = Instant::now();
    let verify_max = std::env::var("AUDIT_BENCH_VERIFY_MAX")
        .ok()
        .and_then(|max| max.parse().ok())
        .unwrap_or(u64::MAX);
    let (verification, verified) = log.verify_incremental(None, verify_max, None).await?;
    report("verify_full", started.elapsed());
    println!(
        "verify_full_valid={} verify_full_entries={}",
        verification.valid, verification.entries
    );
    if !verification.valid {
        return Err("the filled log does not verify".into());
    }

    let verified = if verification.complete {
        verified
    } else {
        // Verified as far as the cap: the incremental step starts from the head.
        println!("verify_full_stopped_at={verify_max}");
        Some(head.clone())
    };
    fill(&log, head.seq as usize, MORE).await?;
    reset_peak();
    let started = Instant::now();
    let (verification, _) = log.verify_incremental(verified.as_ref(), u64::MAX, None).await?;
    report("verify_incremental", started.elapsed());
    println!(
        "verify_incremental_valid={} verify_incremental_entries={}",
        verification.valid, verification.entries
    );

    let newest = ListAuditEvents {
        page: 1,
        rpp: 25,
        ..ListAuditEvents::default()
    };
    let deep = ListAuditEvents {
        page: 10_000,
        ..newest.clone()
    };
    let by_actor = ListAuditEvents {
        actor: Some("actor-0007".into()),
        ..newest.clone()
    };
    let by_target = ListAuditEvents {
        target: Some("credential-00042".into()),
        ..newest.clone()
    };
    let runs: usize = std::env::var("AUDIT_BENCH_PAGE_RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(11)
        .max(1);
    // Filtered pages count and sort every entry on FerretDB (AUDIT_BENCH_FILTERED=0 skips them).
    let filtered = std::env::var("AUDIT_BENCH_FILTERED").map_or(true, |v| v != "0");
    reset_peak();
    for (name, query, runs) in [
        ("page_newest", &newest, runs),
        ("page_10000", &deep, runs),
        (
            "page_actor",
            &by_actor,
            if filtered { runs.div_ceil(3) } else { 0 },
        ),
        (
            "page_target",
            &by_target,
            if filtered { runs.div_ceil(3) } else { 0 },
        ),
    ] {
        if runs == 0 {
            continue;
        }
        let (median, total) = page_latency(&log, query, runs).await?;
        println!(
            "{name}_ms={:.3} {name}_total={total}",
            median.as_secs_f64() * 1000.0
        );
    }
    report("pages", Duration::ZERO);
    Ok(())
}
