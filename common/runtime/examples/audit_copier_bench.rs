//! Benchmark: the audit copier (`TTSCM_AUDIT` stream → `audit_entries` collection) against a
//! real nats-server and a FerretDB, through the public [`AuditLog`] API as a service uses it.
//!
//! 1. **Drain**: with the copier stopped, `--writers` concurrent appenders append `--entries`
//!    entries (one per call, so the group commit forms messages as it does under load); then the
//!    copier starts and the stream is polled until it is empty: entries copied per second;
//!    then one count of the collection (timed: the audit list's total is such a count).
//! 2. **Steady** (`--rate` > 0): the copier running, the appenders append `--rate` entries per
//!    second for `--steady-secs`; every 250 ms the lag is sampled — messages waiting in the
//!    stream and the age of the oldest (`first_ts`) — then the time to drain what is left, and
//!    a read of the last entry by `seq` (timed).
//!
//! CPU seconds per phase are read from `/proc` for this process (TTSCM's side: appending and
//! copying) and for every `--watch NAME=PID` (e.g. FerretDB, the PostgreSQL postmaster; its
//! live children are added, and its finished children through `cutime`/`cstime`).
//!
//! `bench/copier.sh` starts the servers (FerretDB on SQLite and on PostgreSQL) and runs this;
//! alone: `cargo run --release -p ttscm-runtime --example audit_copier_bench -- --nats
//! nats://127.0.0.1:4222 --mongo mongodb://127.0.0.1:27017/ --entries 200000 --rate 5000`.
//! The lines starting `result ` are `key=value` pairs for the script.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use tokio::time::Instant;
use ttscm_contract::PrincipalKind;
use ttscm_contract::audit::{AuditActor, AuditEntry, AuditTarget};
use ttscm_contract::subjects::AUDIT_STREAM;
use ttscm_runtime::audit::{AuditLog, COLLECTION, NewAuditEntry};
use ttscm_runtime::bus::nats::NatsBus;
use ttscm_runtime::store::mongo::MongoStore;
use ttscm_runtime::{Bus, Filter, Shutdown, Store};

/// A tool's error: any error, printed as it is (no `anyhow` in this crate's dependencies).
type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, Error>;

/// Fails with `message` unless `condition` holds.
fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<()> {
    if condition { Ok(()) } else { Err(message().into()) }
}

/// How often the stream is looked at.
const POLL: Duration = Duration::from_millis(250);
/// The longest a drain may take before the run is called failed.
const DRAIN_LIMIT: Duration = Duration::from_secs(1800);

struct Options {
    nats: String,
    mongo: String,
    database: String,
    entries: u64,
    writers: u64,
    rate: u64,
    steady_secs: u64,
    label: String,
    watch: Vec<(String, u32)>,
}

fn options() -> Result<Options> {
    let mut options = Options {
        nats: "nats://127.0.0.1:4222".into(),
        mongo: "mongodb://127.0.0.1:27017/".into(),
        database: format!("copier{}", ttscm_runtime::ids::new_id()),
        entries: 200_000,
        writers: 32,
        rate: 0,
        steady_secs: 60,
        label: "run".into(),
        watch: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--nats" => options.nats = value,
            "--mongo" => options.mongo = value,
            "--database" => options.database = value,
            "--entries" => options.entries = value.parse()?,
            "--writers" => options.writers = value.parse::<u64>()?.max(1),
            "--rate" => options.rate = value.parse()?,
            "--steady-secs" => options.steady_secs = value.parse()?,
            "--label" => options.label = value,
            "--watch" => {
                let (name, pid) = value.split_once('=').ok_or("--watch NAME=PID")?;
                options.watch.push((name.to_owned(), pid.parse()?));
            }
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    Ok(options)
}

/// A reveal's entry, as the credential service records one (same fields, similar sizes).
fn reveal(n: u64) -> NewAuditEntry {
    NewAuditEntry::new(AuditEntry {
        id: ttscm_runtime::ids::new_id(),
        seq: 0,
        at: ttscm_runtime::clock::now_iso(),
        action: "credential.revealed".into(),
        actor: AuditActor {
            id: format!("tok_{:08}", n % 50),
            kind: PrincipalKind::ApiToken,
            name: "bench".into(),
        },
        target: AuditTarget {
            kind: "credential".into(),
            id: format!("c{:023}", n % 10_000),
        },
        credential_id: Some(format!("c{:023}", n % 10_000)),
        type_id: Some("t0000000000000000000001".into()),
        company_id: Some(format!("k{:023}", n % 500)),
        request_id: ttscm_runtime::ids::new_id(),
        client_ip: Some("127.0.0.1".into()),
        details: None,
        prev_hash: String::new(),
        hash: String::new(),
    })
}

/// CPU ticks (user + system) of `pid`, its finished children and its live children.
fn cpu_ticks(pid: u32) -> u64 {
    fn fields(pid: u32) -> Option<Vec<u64>> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after_name = stat.rsplit_once(')')?.1;
        Some(
            after_name
                .split_whitespace()
                .map(|field| field.parse().unwrap_or(0))
                .collect(),
        )
    }
    // After the name: state (index 0), ppid (1), …, utime (11), stime (12), cutime (13), cstime (14).
    let own = fields(pid).map_or(0, |f| f[11] + f[12] + f[13] + f[14]);
    let children: u64 = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|dir| dir.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(fields)
        .filter(|f| f[1] == u64::from(pid))
        .map(|f| f[11] + f[12])
        .sum();
    own + children
}

/// CPU use per process between [`Cpu::start`] and [`Cpu::seconds`].
struct Cpu {
    watched: Vec<(String, u32)>,
    at: Vec<u64>,
}

/// Clock ticks per second of `/proc/*/stat` (`getconf CLK_TCK`; 100 on every Linux build).
const TICKS_PER_SECOND: f64 = 100.0;

impl Cpu {
    fn start(watch: &[(String, u32)]) -> Self {
        let mut watched = vec![("ttscm".to_owned(), std::process::id())];
        watched.extend(watch.iter().cloned());
        let at = watched.iter().map(|(_, pid)| cpu_ticks(*pid)).collect();
        Self { watched, at }
    }

    /// CPU seconds per process since the start, as `cpu_NAME=SECONDS` pairs.
    fn seconds(&self) -> BTreeMap<String, f64> {
        self.watched
            .iter()
            .zip(&self.at)
            .map(|((name, pid), before)| {
                let ticks = cpu_ticks(*pid).saturating_sub(*before);
                (format!("cpu_{name}"), ticks as f64 / TICKS_PER_SECOND)
            })
            .collect()
    }
}

/// The write-ahead stream as an outside observer sees it.
struct Observer {
    jetstream: jetstream::Context,
}

#[derive(Debug, Clone, Copy)]
struct StreamState {
    messages: u64,
    last_sequence: u64,
    /// Age of the oldest message not yet copied (zero when none).
    oldest: Duration,
}

impl Observer {
    async fn state(&self) -> Result<StreamState> {
        let mut stream = self.jetstream.get_stream(AUDIT_STREAM).await?;
        let state = stream.info().await?.state.clone();
        let oldest = if state.messages == 0 {
            Duration::ZERO
        } else {
            let age = time::OffsetDateTime::now_utc() - state.first_timestamp;
            age.try_into().unwrap_or(Duration::ZERO)
        };
        Ok(StreamState {
            messages: state.messages,
            last_sequence: state.last_sequence,
            oldest,
        })
    }
}

/// Appends `total` entries from `writers` tasks, one entry per call; `rate` > 0 paces them to
/// that many entries per second in all. Answers how many were appended.
async fn append(log: &AuditLog, total: u64, writers: u64, rate: u64) -> Result<u64> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (log, next) = (log.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return Ok::<_, Error>(());
                }
                if rate > 0 {
                    // Entry n is due at n / rate seconds.
                    let due = started + Duration::from_secs_f64(n as f64 / rate as f64);
                    tokio::time::sleep_until(due).await;
                }
                log.append(reveal(n)).await?;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(total)
}

fn result_line(label: &str, phase: &str, values: &BTreeMap<String, f64>) {
    let pairs: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v:.3}")).collect();
    println!("result label={label} phase={phase} {}", pairs.join(" "));
}

/// Polls the stream until it is empty; answers the seconds it took. Prints progress.
async fn drain(observer: &Observer, since: Instant) -> Result<f64> {
    let mut last_report = Instant::now();
    loop {
        let state = observer.state().await?;
        if state.messages == 0 {
            return Ok(since.elapsed().as_secs_f64());
        }
        if since.elapsed() > DRAIN_LIMIT {
            return Err(format!(
                "the stream still holds {} messages after {DRAIN_LIMIT:?}",
                state.messages
            )
            .into());
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "  {:>6.1} s: {} messages waiting, oldest {:.1} s",
                since.elapsed().as_secs_f64(),
                state.messages,
                state.oldest.as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let options = options()?;
    let bus = NatsBus::connect(&options.nats, "audit-copier-bench", &Default::default()).await?;
    ensure(bus.wait_connected(Duration::from_secs(5)).await, || {
        "NATS not reachable".into()
    })?;
    let observer = Observer {
        jetstream: jetstream::new(bus.client().clone()),
    };
    let bus = Bus::Nats(Box::new(bus));
    let store = Store::Mongo(MongoStore::connect(&options.mongo, &options.database).await?);
    let log = AuditLog::open(&bus, &store).await?;
    let label = &options.label;

    // 1. Fill the stream with the copier stopped, then drain it.
    eprintln!(
        "{label}: appending {} entries from {} writers, copier stopped",
        options.entries, options.writers
    );
    let cpu = Cpu::start(&options.watch);
    let started = Instant::now();
    append(&log, options.entries, options.writers, 0).await?;
    let fill_secs = started.elapsed().as_secs_f64();
    let filled = observer.state().await?;
    ensure(filled.messages == filled.last_sequence, || {
        "the stream should hold every message while the copier is stopped".into()
    })?;
    let mut values = cpu.seconds();
    values.insert("entries".into(), options.entries as f64);
    values.insert("messages".into(), filled.messages as f64);
    values.insert(
        "entries_per_message".into(),
        options.entries as f64 / filled.messages as f64,
    );
    values.insert("secs".into(), fill_secs);
    values.insert("entries_per_sec".into(), options.entries as f64 / fill_secs);
    result_line(label, "fill", &values);

    eprintln!("{label}: copier started; draining {} messages", filled.messages);
    let shutdown = Shutdown::new();
    let cpu = Cpu::start(&options.watch);
    let started = Instant::now();
    let copier = log
        .start_copier(shutdown.clone())
        .ok_or("over NATS there is a copier")?;
    let drain_secs = drain(&observer, started).await?;
    let mut values = cpu.seconds();
    // Every entry stored, counted as the audit list counts its total (on FerretDB a count is
    // a scan of the collection: timed, it is what each `GET /v1/audit/events` pays).
    let counting = Instant::now();
    let stored = store.count(COLLECTION, &Filter::All).await?;
    values.insert("count_secs".into(), counting.elapsed().as_secs_f64());
    ensure(stored == options.entries, || {
        format!("{stored} entries stored, {} appended", options.entries)
    })?;
    values.insert("entries".into(), options.entries as f64);
    values.insert("secs".into(), drain_secs);
    values.insert("entries_per_sec".into(), options.entries as f64 / drain_secs);
    result_line(label, "drain", &values);

    // 2. Steady state: append at a fixed rate while the copier runs.
    if options.rate > 0 {
        let total = options.rate * options.steady_secs;
        eprintln!(
            "{label}: appending {} entries/s for {} s from {} writers while copying",
            options.rate, options.steady_secs, options.writers
        );
        let before = observer.state().await?;
        let cpu = Cpu::start(&options.watch);
        let started = Instant::now();
        let appending = {
            let log = log.clone();
            let writers = options.writers;
            let rate = options.rate;
            tokio::spawn(async move { append(&log, total, writers, rate).await })
        };
        let mut samples = Vec::new();
        while !appending.is_finished() {
            let state = observer.state().await?;
            // Skip the first second: the writers and the copier start up.
            if started.elapsed() > Duration::from_secs(1) {
                samples.push(state);
            }
            tokio::time::sleep(POLL).await;
        }
        appending.await??;
        let append_secs = started.elapsed().as_secs_f64();
        let after = observer.state().await?;
        let ended = Instant::now();
        let tail_secs = drain(&observer, ended).await?;
        let mut values = cpu.seconds();
        let messages = after.last_sequence - before.last_sequence;
        let per_message = total as f64 / messages.max(1) as f64;
        let max = |f: fn(&StreamState) -> f64| samples.iter().map(f).fold(0.0, f64::max);
        let mean =
            |f: fn(&StreamState) -> f64| samples.iter().map(f).sum::<f64>() / samples.len().max(1) as f64;
        values.insert("rate_target".into(), options.rate as f64);
        values.insert("rate_achieved".into(), total as f64 / append_secs);
        values.insert("entries_per_message".into(), per_message);
        values.insert("lag_messages_max".into(), max(|s| s.messages as f64));
        values.insert("lag_messages_mean".into(), mean(|s| s.messages as f64));
        values.insert("lag_secs_max".into(), max(|s| s.oldest.as_secs_f64()));
        values.insert("lag_secs_mean".into(), mean(|s| s.oldest.as_secs_f64()));
        values.insert("tail_secs".into(), tail_secs);
        values.insert("secs".into(), append_secs + tail_secs);
        // The last entry is stored (read as verification reads, by `seq`; timed).
        let last = options.entries + total;
        let seeking = Instant::now();
        let found = log.scan(last, 2).await?;
        values.insert("seek_secs".into(), seeking.elapsed().as_secs_f64());
        ensure(found.len() == 1 && found[0].seq == last, || {
            format!(
                "entry {last} is not the last stored: {:?}",
                found.first().map(|e| e.seq)
            )
        })?;
        result_line(label, "steady", &values);
    }
    shutdown.cancel();
    copier.await?;
    Ok(())
}
