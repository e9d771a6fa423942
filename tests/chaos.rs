//! The chaos suite (issue 20): the mesh as real processes — nats-server with the generated
//! users, a FerretDB of its own, and one `ttscm serve --only <component>` process per component
//! (identity, company-sync, vault, webhook, two credential replicas, two edges) — under a reveal load
//! while one part at a time is killed with SIGKILL and, where it has no replica, started again:
//!
//! | fault | what is done |
//! |---|---|
//! | `credential-replica` | one of the two credential replicas killed (started again after `down`) |
//! | `vault`, `identity`, `company-sync`, `webhook` | the component killed, started again after `down` |
//! | `edge` | one of the two edges killed, started again after `down` |
//! | `nats` | nats-server killed, started again with the same JetStream store dir |
//! | `ferretdb` | FerretDB killed, started again on the same data |
//!
//! **The load**: `CHAOS_WORKERS` tasks (8) reveal credentials (`GET /v1/credential/credentials/
//! :id/secure-values`) through the edges with reqwest, each request with its own `x-request-id`,
//! recording its status, times and edge. The load generator is the load balancer in front of
//! the two edges: it sends round-robin to the edges it believes up, stops sending to an edge
//! whose connection is refused, and sends to it again once its public `/readyz` answers 200.
//!
//! **Per fault** it measures: the requests that failed, by status (only 503/504 are allowed,
//! and connection errors to a killed edge); the longest stretch without a successful reveal;
//! the seconds from the health check answering again (the edge's authenticated `/readyz` — the
//! killed edge's own for the edge fault — 200, which means every component answered its health
//! operation over the bus with a reachable store) to the first successful reveal sent after it
//! (≤ 2 s; through the restarted edge for the edge fault); the seconds from then until `GET
//! /v1/audit/events` answers 200 (≤ 10 s). **After the run** (load stopped): every 200 reveal's
//! request id has its `credential.revealed` audit entry (paged through `/v1/audit/events`) and
//! its `credential.revealed` event in `TTSCM_EVENTS` (events carry the request id in
//! `data.requestId`; read with an ordered consumer as the tests' NATS operator), and `GET
//! /v1/audit/verify` answers valid.
//!
//! The short version (the test command) runs each fault once with ~3 s of load around it; the
//! full one (`CHAOS_FULL=1`, `bench/chaos.sh`) runs longer load and three rounds per fault. Both
//! print the figures table with `eprintln!` (see it with `--nocapture`), then assert. Every
//! process is killed when the suite ends, also when it panics.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use ttscm::Component;
use ttscm::mesh::MeshKeys;
use ttscm_testkit::{MongoFixture, NatsServer, eventually};

const CREDS: &str = "/v1/credential/credentials";
/// Credentials the load reveals in turn.
const CREDENTIALS: usize = 4;
/// Longest wait for a restarted part to answer its health check.
const HEALTH_DEADLINE: Duration = Duration::from_secs(60);
/// The targets of issue 20.
const RECOVERY_TARGET: Duration = Duration::from_secs(2);
const AUDIT_TARGET: Duration = Duration::from_secs(10);

/// How long and how often (short by default; `CHAOS_FULL=1` for the full version).
#[derive(Debug, Clone)]
struct Plan {
    full: bool,
    /// The faults, in order (`CHAOS_FAULTS`, comma-separated names; default all).
    faults: Vec<Fault>,
    /// Concurrent reveal tasks (`CHAOS_WORKERS`, default 8).
    workers: usize,
    /// Rounds of every fault.
    rounds: usize,
    /// Load before the fault.
    before: Duration,
    /// How long a killed part stays down before it is started again.
    down: Duration,
    /// Load after the audit log is readable again.
    after: Duration,
}

impl Plan {
    fn from_env() -> Self {
        let full = std::env::var("CHAOS_FULL").is_ok_and(|v| v == "1");
        let faults = std::env::var("CHAOS_FAULTS").map_or_else(
            |_| Fault::ALL.to_vec(),
            |names| {
                names
                    .split(',')
                    .map(|name| {
                        *Fault::ALL
                            .iter()
                            .find(|f| f.name() == name.trim())
                            .unwrap_or_else(|| panic!("CHAOS_FAULTS: no fault {name}"))
                    })
                    .collect()
            },
        );
        let workers = std::env::var("CHAOS_WORKERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(8);
        if full {
            Self {
                full,
                faults,
                workers,
                rounds: 3,
                before: Duration::from_secs(5),
                down: Duration::from_secs(2),
                after: Duration::from_secs(5),
            }
        } else {
            Self {
                full,
                faults,
                workers,
                rounds: 1,
                before: Duration::from_millis(700),
                down: Duration::from_secs(2),
                after: Duration::from_millis(500),
            }
        }
    }
}

/// One fault of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    CredentialReplica,
    Vault,
    Identity,
    CompanySync,
    Webhook,
    Edge,
    Nats,
    Store,
}

impl Fault {
    const ALL: [Fault; 8] = [
        Fault::CredentialReplica,
        Fault::Vault,
        Fault::Identity,
        Fault::CompanySync,
        Fault::Webhook,
        Fault::Edge,
        Fault::Nats,
        Fault::Store,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::CredentialReplica => "credential-replica",
            Fault::Vault => "vault",
            Fault::Identity => "identity",
            Fault::CompanySync => "company-sync",
            Fault::Webhook => "webhook",
            Fault::Edge => "edge",
            Fault::Nats => "nats",
            Fault::Store => "ferretdb",
        }
    }

    /// The process a component fault kills (its name in [`Mesh::procs`]): the second replica
    /// or edge, so the first edge stays the one the suite asks for health and audit.
    fn process(self) -> Option<&'static str> {
        match self {
            Fault::CredentialReplica => Some("credential-2"),
            Fault::Vault => Some("vault"),
            Fault::Identity => Some("identity"),
            Fault::CompanySync => Some("company-sync"),
            Fault::Webhook => Some("webhook"),
            Fault::Edge => Some("edge-2"),
            Fault::Nats | Fault::Store => None,
        }
    }
}

// ---- the mesh as processes ------------------------------------------------------------------

/// One `ttscm serve --only <component>` process, started again under the same name.
struct Proc {
    name: &'static str,
    component: Component,
    /// The edge's HTTP port (kept across restarts).
    port: Option<u16>,
    child: Option<Child>,
    log: PathBuf,
}

/// The mesh: nats-server, FerretDB and the component processes; dropping it kills them all.
struct Mesh {
    bin: PathBuf,
    dir: tempfile::TempDir,
    keys: MeshKeys,
    /// What every component gets (bus, store, keys), as `bench/run.sh` starts its mesh.
    env: Vec<(String, String)>,
    procs: Vec<Proc>,
    nats: NatsServer,
    store: MongoFixture,
}

/// `KEY=value` lines of a generated `.env` file.
fn env_lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn base64_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(ttscm_runtime::ids::random_bytes::<32>())
}

impl Mesh {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let keys = MeshKeys::generate();
        let nats = support::start_mesh_nats(&keys, dir.path(), None);
        let store = MongoFixture::start_own();
        let env = vec![
            ("TTSCM_NATS_URL".into(), nats.url()),
            ("TTSCM_MONGODB_URI".into(), store.uri.clone()),
            ("TTSCM_MONGODB_DATABASE".into(), store.database.clone()),
            (
                "TTSCM_IDENTITY__SIGNING_KEY".into(),
                ttscm_identity::SigningKey::generate("k1").to_base64(),
            ),
            ("TTSCM_VAULT__KEYS".into(), format!("v1:{}", base64_key())),
            (
                "TTSCM_VAULT__CHECKPOINT_KEY".into(),
                ttscm_runtime::ed25519::Ed25519Key::generate().to_base64(),
            ),
            (
                "TTSCM_LOG".into(),
                std::env::var("CHAOS_LOG").unwrap_or_else(|_| "warn".into()),
            ),
        ];
        let procs = [
            ("identity", Component::Identity),
            ("company-sync", Component::CompanySync),
            ("vault", Component::Vault),
            ("webhook", Component::Webhook),
            ("credential-1", Component::Credential),
            ("credential-2", Component::Credential),
            ("edge-1", Component::Edge),
            ("edge-2", Component::Edge),
        ]
        .into_iter()
        .map(|(name, component)| Proc {
            name,
            component,
            port: (component == Component::Edge).then(ttscm_testkit::free_port),
            child: None,
            log: dir.path().join(format!("{name}.log")),
        })
        .collect();
        let mut mesh = Self {
            bin: PathBuf::from(env!("CARGO_BIN_EXE_ttscm")),
            dir,
            keys,
            env,
            procs,
            nats,
            store,
        };
        for i in 0..mesh.procs.len() {
            mesh.spawn(i);
        }
        mesh
    }

    fn index(&self, name: &str) -> usize {
        self.procs
            .iter()
            .position(|p| p.name == name)
            .expect("a process of the mesh")
    }

    /// `component`'s own environment: its NATS user and principal key, and the trusted keys.
    fn component_env(&self, component: Component) -> Vec<(String, String)> {
        let mut env = env_lines(&self.keys.mesh_env());
        env.extend(env_lines(&self.keys.component_env(component)));
        env
    }

    fn spawn(&mut self, i: usize) {
        let own = self.component_env(self.procs[i].component);
        let proc = &mut self.procs[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&proc.log)
            .expect("the process log opens");
        let data_dir = self.dir.path().join(proc.name);
        let mut command = Command::new(&self.bin);
        command
            .args(["serve", "--only", proc.component.name()])
            .envs(self.env.iter().cloned())
            .envs(own)
            .env("TTSCM_DATA_DIR", data_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log handle clones"))
            .stderr(log);
        if let Some(port) = proc.port {
            command.env("TTSCM_LISTEN_ADDR", format!("127.0.0.1:{port}"));
            command.env("TTSCM_PUBLIC_URL", format!("http://127.0.0.1:{port}"));
        }
        proc.child = Some(command.spawn().expect("the ttscm binary starts"));
    }

    /// `kill -9` (`Child::kill` sends SIGKILL), and reaps it.
    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.procs[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn edge_urls(&self) -> Vec<String> {
        self.procs
            .iter()
            .filter_map(|p| p.port.map(|port| format!("http://127.0.0.1:{port}")))
            .collect()
    }

    /// Runs a `ttscm` command with the common environment plus `component`'s; its stdout.
    fn command(&self, component: Component, args: &[&str]) -> String {
        let output = Command::new(&self.bin)
            .args(args)
            .envs(self.env.iter().cloned())
            .envs(self.component_env(component))
            .output()
            .expect("the ttscm binary runs");
        assert!(
            output.status.success(),
            "ttscm {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .expect("UTF-8 output")
            .trim()
            .to_owned()
    }

    /// Copies every process log into `dir` (`CHAOS_LOGS`).
    fn save_logs(&self, dir: &str) {
        std::fs::create_dir_all(dir).expect("the logs dir is made");
        for proc in &self.procs {
            let _ = std::fs::copy(&proc.log, PathBuf::from(dir).join(format!("{}.log", proc.name)));
        }
    }

    /// The last lines of every process log, for a failure's message.
    fn log_tails(&self) -> String {
        let mut out = String::new();
        for proc in &self.procs {
            let text = std::fs::read_to_string(&proc.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let _ = writeln!(out, "---- {} (last lines) ----", proc.name);
            for line in &lines[lines.len().saturating_sub(15)..] {
                let _ = writeln!(out, "{line}");
            }
        }
        out
    }

    /// A NATS connection as the tests' operator user (may read every stream).
    async fn nats_operator(&self) -> async_nats::Client {
        async_nats::ConnectOptions::with_user_and_password(
            "operator".into(),
            support::NATS_OPERATOR_PASSWORD.into(),
        )
        .connect(self.nats.url())
        .await
        .expect("the operator connects")
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            self.kill(i);
        }
        // nats-server and FerretDB are killed by their own drops.
    }
}

// ---- the load -------------------------------------------------------------------------------

/// What one reveal got.
#[derive(Debug, Clone)]
enum Outcome {
    /// An HTTP answer; `ok` when it is a 200 with the credential's secret.
    Status { status: u16, ok: bool },
    /// No HTTP answer (connection refused or reset, timeout).
    Transport { connect: bool, error: String },
}

#[derive(Debug, Clone)]
struct Record {
    phase: usize,
    edge: usize,
    request_id: String,
    started: Instant,
    ended: Instant,
    outcome: Outcome,
}

impl Record {
    fn ok(&self) -> bool {
        matches!(self.outcome, Outcome::Status { ok: true, .. })
    }
}

/// The load generator's state, shared by its tasks and the suite.
struct Load {
    http: reqwest::Client,
    token: String,
    edges: Vec<String>,
    /// Per edge: whether the balancer sends to it.
    up: Vec<AtomicBool>,
    /// `(id, secret)` of the credentials revealed in turn.
    credentials: Vec<(String, String)>,
    /// The phase (fault and round, from 1) requests that end now belong to.
    phase: AtomicUsize,
    stop: AtomicBool,
    records: Mutex<Vec<Record>>,
}

impl Load {
    async fn worker(self: Arc<Self>, worker: usize) {
        let mut n = worker;
        while !self.stop.load(Ordering::Relaxed) {
            n += 1;
            let Some(edge) = (0..self.edges.len())
                .map(|k| (n + k) % self.edges.len())
                .find(|e| self.up[*e].load(Ordering::Relaxed))
            else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let record = self.reveal(edge, format!("chaos-{worker}-{n}"), n).await;
            if matches!(record.outcome, Outcome::Transport { connect: true, .. }) {
                self.up[edge].store(false, Ordering::Relaxed);
            }
            self.records.lock().expect("not poisoned").push(record);
        }
    }

    /// One reveal of the `n`th credential (in turn) through `edge`, recorded.
    async fn reveal(&self, edge: usize, request_id: String, n: usize) -> Record {
        let (id, secret) = &self.credentials[n % self.credentials.len()];
        let started = Instant::now();
        let sent = self
            .http
            .get(format!("{}{CREDS}/{id}/secure-values", self.edges[edge]))
            .bearer_auth(&self.token)
            .header("x-request-id", &request_id)
            .timeout(Duration::from_secs(15))
            .send()
            .await;
        let outcome = match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                let echoed = response
                    .headers()
                    .get("x-request-id")
                    .is_some_and(|v| v.as_bytes() == request_id.as_bytes());
                let body: Value = response.json().await.unwrap_or(Value::Null);
                let ok = status == 200 && echoed && body["data"]["secretAccessKey"].as_str() == Some(secret);
                Outcome::Status { status, ok }
            }
            Err(error) => Outcome::Transport {
                connect: error.is_connect(),
                error: error.to_string(),
            },
        };
        // A request belongs to the phase it ended in: a failure is the fault's doing then.
        Record {
            phase: self.phase.load(Ordering::Relaxed),
            edge,
            request_id,
            started,
            ended: Instant::now(),
            outcome,
        }
    }

    /// Reveals through `edge` one after another from now until one succeeds (at most
    /// `deadline`): when. The load's tasks may all be waiting for answers lost with the fault
    /// (504 after the bus deadline), so recovery is measured by a request sent after the
    /// health check answered, not by theirs. Its requests are recorded (and checked) too.
    async fn probe(&self, edge: usize, deadline: Duration) -> Option<Instant> {
        let started = Instant::now();
        for n in 0.. {
            let record = self
                .reveal(
                    edge,
                    format!("chaos-probe-{}-{n}", ttscm_runtime::ids::new_id()),
                    n,
                )
                .await;
            let ok = record.ok().then_some(record.ended);
            self.records.lock().expect("not poisoned").push(record);
            if ok.is_some() || started.elapsed() >= deadline {
                return ok;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// The balancer's readiness probe: an edge taken out is sent to again once its public
    /// `/readyz` answers 200.
    async fn balancer(self: Arc<Self>) {
        while !self.stop.load(Ordering::Relaxed) {
            for (edge, url) in self.edges.iter().enumerate() {
                if !self.up[edge].load(Ordering::Relaxed) {
                    let ready = self
                        .http
                        .get(format!("{url}/readyz"))
                        .timeout(Duration::from_secs(2))
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200);
                    if ready {
                        self.up[edge].store(true, Ordering::Relaxed);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn records(&self) -> Vec<Record> {
        self.records.lock().expect("not poisoned").clone()
    }
}

// ---- the suite ------------------------------------------------------------------------------

/// What one fault measured.
#[derive(Debug, Default)]
struct Figures {
    label: String,
    fault: Option<Fault>,
    reveals_ok: usize,
    /// Failed requests by kind: `503`, `504`, `conn-killed-edge`, or a disallowed kind.
    failed: BTreeMap<String, usize>,
    disallowed: Vec<String>,
    /// Longest time between two successful reveals during the phase.
    stall: Duration,
    /// From the kill to the first success of a new reveal sent right after it.
    new_reveal_after_kill: Option<Duration>,
    /// From the kill to the health check answering again.
    down_to_healthy: Option<Duration>,
    /// From the health check answering again to the first successful reveal sent after it.
    recovery: Option<Duration>,
    /// From the health check answering again to `GET /v1/audit/events` answering 200.
    audit_readable: Option<Duration>,
    /// 200 reveals whose audit entry is neither listed nor waiting in `TTSCM_AUDIT` (`None`
    /// when the audit log could not be listed at the end).
    audit_lost: Option<usize>,
    /// 200 reveals whose audit entry still waits in `TTSCM_AUDIT` (not lost, not listed yet).
    audit_uncopied: usize,
    events_lost: usize,
    /// 200 reveals whose request id is checked against the audit log and the events.
    checked: usize,
}

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "never".into(), |d| format!("{:.2}", d.as_secs_f64()))
}

fn table(figures: &[Figures]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| fault | reveals 200 | failed (by status) | longest stall s | kill→new reveal s | kill→healthy s | healthy→reveal s | healthy→audit 200 s | audit entries lost (still in stream) | events lost |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for f in figures {
        let failed = if f.failed.is_empty() {
            "0".to_owned()
        } else {
            f.failed
                .iter()
                .map(|(k, v)| format!("{k}×{v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} | {} | {} | {} | {} | {}/{} ({}) | {}/{} |",
            f.label,
            f.reveals_ok,
            failed,
            f.stall.as_secs_f64(),
            secs(f.new_reveal_after_kill),
            secs(f.down_to_healthy),
            secs(f.recovery),
            secs(f.audit_readable),
            f.audit_lost.map_or_else(|| "?".to_owned(), |n| n.to_string()),
            f.checked,
            f.audit_uncopied,
            f.events_lost,
            f.checked,
        );
    }
    out
}

/// The admin's authenticated `/readyz` on `edge`: 200 when the bus is connected and every
/// service answers its health operation with a reachable store.
async fn healthy(http: &reqwest::Client, edge: &str, token: &str) -> bool {
    http.get(format!("{edge}/readyz"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

async fn audit_status(http: &reqwest::Client, edge: &str, token: &str) -> Option<u16> {
    http.get(format!("{edge}/v1/audit/events?rpp=1"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// Every `credential.revealed` audit entry's request id, paged through the API; `None` while a
/// page does not answer 200.
async fn revealed_in_audit(http: &reqwest::Client, edge: &str, token: &str) -> Option<HashSet<String>> {
    let mut ids = HashSet::new();
    for page in 1.. {
        let response = http
            .get(format!(
                "{edge}/v1/audit/events?action=credential.revealed&rpp=100&page={page}"
            ))
            .bearer_auth(token)
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .ok()?;
        if response.status() != 200 {
            return None;
        }
        let body: Value = response.json().await.ok()?;
        let items = body["data"].as_array()?;
        ids.extend(
            items
                .iter()
                .filter_map(|e| e["requestId"].as_str().map(str::to_owned)),
        );
        if items.len() < 100 {
            break;
        }
    }
    Some(ids)
}

/// The request ids of the `credential.revealed` entries still waiting in `TTSCM_AUDIT` (the
/// write-ahead stream: one message per batch, an entry per line), read without taking them.
async fn revealed_in_audit_stream(mesh: &Mesh) -> HashSet<String> {
    let jetstream = async_nats::jetstream::new(mesh.nats_operator().await);
    let mut stream = jetstream
        .get_stream("TTSCM_AUDIT")
        .await
        .expect("the audit stream exists");
    let state = stream.info().await.expect("stream info").state.clone();
    let mut ids = HashSet::new();
    if state.messages == 0 {
        return ids;
    }
    for seq in state.first_sequence..=state.last_sequence {
        let Ok(message) = stream.get_raw_message(seq).await else {
            continue;
        };
        for line in String::from_utf8_lossy(&message.payload).lines() {
            let entry: Value = serde_json::from_str(line).unwrap_or(Value::Null);
            if entry["action"] == "credential.revealed"
                && let Some(id) = entry["requestId"].as_str()
            {
                ids.insert(id.to_owned());
            }
        }
    }
    ids
}

/// Every `credential.revealed` event's request id in `TTSCM_EVENTS`.
async fn revealed_in_events(mesh: &Mesh) -> HashSet<String> {
    use async_nats::jetstream::consumer::pull::OrderedConfig;
    let jetstream = async_nats::jetstream::new(mesh.nats_operator().await);
    let stream = jetstream
        .get_stream("TTSCM_EVENTS")
        .await
        .expect("the events stream exists");
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: "ttscm.events.credential.revealed".into(),
            ..OrderedConfig::default()
        })
        .await
        .expect("an ordered consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut ids = HashSet::new();
    while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_secs(10), messages.next()).await {
        let event: Value = serde_json::from_slice(&message.payload).expect("events are JSON");
        if let Some(id) = event["data"]["requestId"].as_str() {
            ids.insert(id.to_owned());
        }
        if message.info().map(|i| i.pending).unwrap_or(0) == 0 {
            break;
        }
    }
    ids
}

/// Seeds an admin token (`ttscm token create` with identity's settings, as `bench/run.sh`), a
/// company (`ttscm company add`), a credential type with a secure field and the credentials.
async fn seed(mesh: &Mesh, http: &reqwest::Client, edge: &str) -> (String, Vec<(String, String)>) {
    let token = tokio::task::block_in_place(|| {
        mesh.command(
            Component::Identity,
            &["token", "create", "--name", "chaos", "--role", "admin"],
        )
    });
    let company = tokio::task::block_in_place(|| {
        mesh.command(Component::CompanySync, &["company", "add", "--name", "Chaos Co"])
    });
    let post = |path: &'static str, body: Value| {
        let request = http.post(format!("{edge}{path}")).bearer_auth(&token).json(&body);
        async move {
            let response = request.send().await.expect("sent");
            let status = response.status().as_u16();
            let body: Value = response.json().await.expect("JSON");
            assert_eq!(status, 201, "{path}: {body}");
            body["data"]["id"].as_str().expect("an id").to_owned()
        }
    };
    let type_id = post(
        "/v1/credential-type/credential-types",
        json!({"name": "AWS", "fields": [
            {"id": "accessKeyId", "name": "Access Key ID", "required": true, "secure": false, "valueType": "plain_text"},
            {"id": "secretAccessKey", "name": "Secret Access Key", "required": true, "secure": true, "valueType": "password"}
        ]}),
    )
    .await;
    let mut credentials = Vec::new();
    for n in 0..CREDENTIALS {
        let secret = format!("chaos-secret-{n}-{}", ttscm_runtime::ids::new_id());
        let id = post(
            CREDS,
            json!({"name": format!("Chaos {n}"), "typeId": type_id, "companyId": company, "fields": [
                {"fieldId": "accessKeyId", "value": "AKIACHAOS"},
                {"fieldId": "secretAccessKey", "value": secret}
            ]}),
        )
        .await;
        credentials.push((id, secret));
    }
    (token, credentials)
}

/// Every request as CSV (`CHAOS_RECORDS=path`), times in seconds since the load started: to
/// see what a phase's figures come from.
fn write_records(path: &str, t0: Instant, records: &[Record]) {
    let mut csv = String::from("phase,edge,request_id,started,ended,outcome\n");
    for r in records {
        let outcome = match &r.outcome {
            Outcome::Status { status, ok } => format!("{status}{}", if *ok { "" } else { " (not ok)" }),
            Outcome::Transport { error, .. } => format!("\"{}\"", error.replace('"', "'")),
        };
        let _ = writeln!(
            csv,
            "{},{},{},{:.3},{:.3},{outcome}",
            r.phase,
            r.edge + 1,
            r.request_id,
            r.started.saturating_duration_since(t0).as_secs_f64(),
            r.ended.saturating_duration_since(t0).as_secs_f64(),
        );
    }
    std::fs::write(path, csv).expect("the records file is written");
}

/// Kills what `fault` names.
fn inject(mesh: &mut Mesh, fault: Fault) {
    match fault.process() {
        Some(name) => {
            let i = mesh.index(name);
            mesh.kill(i);
        }
        None if fault == Fault::Nats => mesh.nats.stop(),
        None => mesh.store.stop(),
    }
}

/// Starts again what `fault` killed.
fn repair(mesh: &mut Mesh, fault: Fault) {
    match fault.process() {
        Some(name) => {
            let i = mesh.index(name);
            mesh.spawn(i);
        }
        None if fault == Fault::Nats => mesh.nats.restart(),
        None => mesh.store.restart(),
    }
}

/// One fault of one round as it was run.
struct Phase {
    label: String,
    fault: Fault,
    /// Its number in [`Load::phase`].
    index: usize,
    /// The edge killed (the edge fault).
    killed_edge: Option<usize>,
    started: Instant,
    killed_at: Instant,
    /// When the first new reveal sent after the kill succeeded.
    first_after_kill: Option<Instant>,
    /// When the health check answered 200 again (never: `None`).
    healthy_at: Option<Instant>,
    /// When the first reveal sent after `healthy_at` succeeded.
    revealed_at: Option<Instant>,
    /// When `GET /v1/audit/events` answered 200 again.
    audit_at: Option<Instant>,
    ended: Instant,
}

/// The figures of one phase from its records.
fn figures_of(phase: Phase, records: &[Record]) -> Figures {
    let Phase {
        label,
        fault,
        index,
        killed_edge,
        started,
        killed_at,
        first_after_kill,
        healthy_at,
        revealed_at,
        audit_at,
        ended,
    } = phase;
    let phase = index;
    let mine: Vec<&Record> = records.iter().filter(|r| r.phase == phase).collect();
    let mut figures = Figures {
        label,
        fault: Some(fault),
        audit_lost: Some(0),
        ..Figures::default()
    };
    for record in &mine {
        let kind = match &record.outcome {
            Outcome::Status { ok: true, .. } => {
                figures.reveals_ok += 1;
                continue;
            }
            Outcome::Status { status, ok: false } => {
                if matches!(status, 503 | 504) {
                    status.to_string()
                } else {
                    figures.disallowed.push(format!(
                        "{}: status {status} (request {})",
                        fault.name(),
                        record.request_id
                    ));
                    format!("{status}!")
                }
            }
            Outcome::Transport { connect, error } => {
                if Some(record.edge) == killed_edge {
                    if *connect {
                        "conn-refused-killed-edge".into()
                    } else {
                        "conn-lost-killed-edge".into()
                    }
                } else {
                    figures.disallowed.push(format!(
                        "{}: no answer from edge {} ({error}; request {})",
                        fault.name(),
                        record.edge + 1,
                        record.request_id
                    ));
                    "no-answer!".into()
                }
            }
        };
        *figures.failed.entry(kind).or_default() += 1;
    }
    // The longest stretch of the phase without a successful reveal ending.
    let mut ends: Vec<Instant> = mine.iter().filter(|r| r.ok()).map(|r| r.ended).collect();
    ends.sort();
    let mut previous = started;
    for end in ends.iter().chain(std::iter::once(&ended)) {
        figures.stall = figures.stall.max(end.saturating_duration_since(previous));
        previous = previous.max(*end);
    }
    figures.down_to_healthy = healthy_at.map(|h| h - killed_at);
    figures.new_reveal_after_kill = first_after_kill.map(|r| r - killed_at);
    figures.recovery = healthy_at
        .zip(revealed_at)
        .map(|(h, r)| r.saturating_duration_since(h));
    figures.audit_readable = healthy_at
        .zip(audit_at)
        .map(|(h, a)| a.saturating_duration_since(h));
    figures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_recovers_from_each_single_fault_under_load_without_losing_audit_entries_or_events() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let plan = Plan::from_env();
    let mut mesh = tokio::task::block_in_place(Mesh::start);
    let edges = mesh.edge_urls();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.workers)
        .build()
        .expect("a client");
    for edge in &edges {
        let ready = eventually(HEALTH_DEADLINE, || async {
            http.get(format!("{edge}/readyz"))
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
                .map(|_| ())
        })
        .await;
        assert!(ready.is_some(), "edge {edge} never ready:\n{}", mesh.log_tails());
    }
    let (token, credentials) = seed(&mesh, &http, &edges[0]).await;
    eprintln!(
        "chaos: {} workers, {} round(s), {:?} load before each fault, parts down {:?}",
        plan.workers, plan.rounds, plan.before, plan.down
    );

    let load = Arc::new(Load {
        http: http.clone(),
        token: token.clone(),
        up: edges.iter().map(|_| AtomicBool::new(true)).collect(),
        edges: edges.clone(),
        credentials,
        phase: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        records: Mutex::new(Vec::new()),
    });
    let mut tasks: Vec<_> = (0..plan.workers)
        .map(|w| tokio::spawn(load.clone().worker(w)))
        .collect();
    tasks.push(tokio::spawn(load.clone().balancer()));
    let t0 = Instant::now();

    // Each phase: load, the fault, the part started again, its health check answering, the
    // audit log readable, more load. Its figures are computed once the load has stopped.
    let mut phases: Vec<Phase> = Vec::new();
    let mut phase = 0;
    for round in 1..=plan.rounds {
        for &fault in &plan.faults {
            phase += 1;
            load.phase.store(phase, Ordering::Relaxed);
            let started = Instant::now();
            let label = if plan.rounds > 1 {
                format!("{} #{round}", fault.name())
            } else {
                fault.name().to_owned()
            };
            tokio::time::sleep(plan.before).await;
            let killed_edge = (fault == Fault::Edge).then_some(1);
            let killed_at = Instant::now();
            tokio::task::block_in_place(|| inject(&mut mesh, fault));
            // A new request sent right after the kill, through the first edge (which no fault
            // kills), again until one succeeds: how long new reveals stop.
            let during = tokio::spawn({
                let load = load.clone();
                async move { load.probe(0, HEALTH_DEADLINE).await }
            });
            tokio::time::sleep(plan.down).await;
            tokio::task::block_in_place(|| repair(&mut mesh, fault));
            // The edge asked: the killed one for the edge fault (it must come back), else the
            // first, which no fault kills.
            let asked = &edges[killed_edge.unwrap_or(0)];
            let healthy_at = eventually(HEALTH_DEADLINE, || async {
                healthy(&http, asked, &token).await.then(Instant::now)
            })
            .await;
            // Then, at the same time: a reveal succeeding again, the audit log readable again.
            let probe = async {
                match healthy_at {
                    Some(_) => load.probe(killed_edge.unwrap_or(0), HEALTH_DEADLINE).await,
                    None => None,
                }
            };
            let audit = eventually(HEALTH_DEADLINE, || async {
                (audit_status(&http, &edges[0], &token).await == Some(200)).then(Instant::now)
            });
            let (revealed_at, audit_at) = tokio::join!(probe, audit);
            let first_after_kill = during.await.expect("the probe ends");
            eprintln!(
                "chaos: {label}: killed at {:.2} s, healthy {} s after the kill, a reveal {} s and the audit log {} s after that",
                (killed_at - t0).as_secs_f64(),
                secs(healthy_at.map(|h| h - killed_at)),
                secs(
                    healthy_at
                        .zip(revealed_at)
                        .map(|(h, r)| r.saturating_duration_since(h))
                ),
                secs(
                    healthy_at
                        .zip(audit_at)
                        .map(|(h, a)| a.saturating_duration_since(h))
                )
            );
            tokio::time::sleep(plan.after).await;
            phases.push(Phase {
                label,
                fault,
                index: phase,
                killed_edge,
                started,
                killed_at,
                first_after_kill,
                healthy_at,
                revealed_at,
                audit_at,
                ended: Instant::now(),
            });
        }
    }
    load.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a load task ends");
    }
    let records = load.records();
    if let Ok(dir) = std::env::var("CHAOS_LOGS") {
        mesh.save_logs(&dir);
    }
    if let Ok(path) = std::env::var("CHAOS_RECORDS") {
        write_records(&path, t0, &records);
    }

    let mut figures: Vec<Figures> = phases
        .into_iter()
        .map(|phase| figures_of(phase, &records))
        .collect();

    // After the run: every 200 reveal has its audit entry and its event. The audit log may
    // still be copying what the load wrote: wait for it (bounded), then compare.
    let wanted: HashMap<&str, usize> = records
        .iter()
        .filter(|r| r.ok())
        .map(|r| (r.request_id.as_str(), r.phase))
        .collect();
    let audit_wait = Instant::now();
    let complete = eventually(Duration::from_secs(60), || async {
        let ids = revealed_in_audit(&http, &edges[0], &token).await?;
        wanted.keys().all(|id| ids.contains(*id)).then_some(ids)
    })
    .await;
    eprintln!(
        "chaos: after the load, every 200 reveal's audit entry listed: {} ({:.2} s of waiting)",
        if complete.is_some() { "yes" } else { "no" },
        audit_wait.elapsed().as_secs_f64()
    );
    // When the listing is not complete yet: what still waits in the stream first, then the
    // listing again (the copier takes an entry from the stream only after storing it, so an
    // entry is in one or the other).
    let (uncopied, audited) = match complete {
        Some(ids) => (HashSet::new(), Some(ids)),
        None => {
            let uncopied = revealed_in_audit_stream(&mesh).await;
            let listed = revealed_in_audit(&http, &edges[0], &token).await;
            (uncopied, listed)
        }
    };
    if let Some(audited) = &audited {
        let unlisted: Vec<&&str> = wanted.keys().filter(|id| !audited.contains(**id)).collect();
        eprintln!(
            "chaos: {} 200 reveals not listed in the audit log, {} of them still in TTSCM_AUDIT ({} entries of reveals there in all)",
            unlisted.len(),
            unlisted.iter().filter(|id| uncopied.contains(***id)).count(),
            uncopied.len()
        );
    }
    let evented = revealed_in_events(&mesh).await;
    // Where answers that never came were lost: a reveal writes its audit entry, then opens
    // the values through vault, then publishes its event, then answers.
    let timed_out: Vec<&str> = records
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Status { status: 504, .. }))
        .map(|r| r.request_id.as_str())
        .collect();
    eprintln!(
        "chaos: of {} requests answered 504, {} have their audit entry and {} their event",
        timed_out.len(),
        audited.as_ref().map_or_else(
            || "?".to_owned(),
            |audited| timed_out
                .iter()
                .filter(|id| audited.contains(**id))
                .count()
                .to_string()
        ),
        timed_out.iter().filter(|id| evented.contains(**id)).count(),
    );
    let phase_index: HashMap<usize, usize> = (0..figures.len()).map(|i| (i + 1, i)).collect();
    for (id, phase) in &wanted {
        let Some(&i) = phase_index.get(phase) else {
            continue;
        };
        figures[i].checked += 1;
        let listed = audited.as_ref().map(|audited| audited.contains(*id));
        match (listed, uncopied.contains(*id)) {
            (Some(true), _) => {}
            (_, true) => figures[i].audit_uncopied += 1,
            (Some(false), false) => *figures[i].audit_lost.get_or_insert(0) += 1,
            (None, false) => figures[i].audit_lost = None,
        }
        if !evented.contains(*id) {
            figures[i].events_lost += 1;
        }
    }
    let verify = http
        .get(format!("{}/v1/audit/verify", edges[0]))
        .bearer_auth(&token)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("sent");
    let verify_status = verify.status().as_u16();
    let verification: Value = verify.json().await.unwrap_or(Value::Null);

    eprintln!(
        "\nchaos figures ({} version, {} workers):\n{}",
        if plan.full { "full" } else { "short" },
        plan.workers,
        table(&figures)
    );
    eprintln!("chaos: GET /v1/audit/verify → {verify_status} {verification}");

    let mut violations = Vec::new();
    for f in &figures {
        violations.extend(f.disallowed.iter().take(5).cloned());
        if f.reveals_ok == 0 {
            violations.push(format!("{}: no reveal succeeded", f.label));
        }
        match f.fault {
            Some(Fault::CredentialReplica) => {
                // A surviving replica answers: new reveals barely stop (those in flight on
                // the killed one get their 504 at the bus deadline).
                if f.new_reveal_after_kill.is_none_or(|r| r > RECOVERY_TARGET) {
                    violations.push(format!(
                        "{}: a new reveal succeeded {} s after the kill with a replica left",
                        f.label,
                        secs(f.new_reveal_after_kill)
                    ));
                }
            }
            _ => {
                if f.recovery.is_none_or(|r| r > RECOVERY_TARGET) {
                    violations.push(format!(
                        "{}: first reveal {} s after the health check answered (target ≤ 2 s)",
                        f.label,
                        secs(f.recovery)
                    ));
                }
            }
        }
        if f.audit_readable.is_none_or(|a| a > AUDIT_TARGET) {
            violations.push(format!(
                "{}: audit log readable {} s after the health check answered (target ≤ 10 s)",
                f.label,
                secs(f.audit_readable)
            ));
        }
        if f.audit_uncopied > 0 {
            violations.push(format!(
                "{}: {} of {} 200 reveals' audit entries still not copied from the stream",
                f.label, f.audit_uncopied, f.checked
            ));
        }
        match f.audit_lost {
            Some(0) => {}
            Some(lost) => violations.push(format!(
                "{}: {lost} of {} 200 reveals have no audit entry",
                f.label, f.checked
            )),
            None => violations.push(format!(
                "{}: the audit log could not be listed after the run",
                f.label
            )),
        }
        if f.events_lost > 0 {
            violations.push(format!(
                "{}: {} of {} 200 reveals have no event",
                f.label, f.events_lost, f.checked
            ));
        }
    }
    if verify_status != 200 || verification["data"]["valid"] != json!(true) {
        violations.push(format!("audit verify: {verify_status} {verification}"));
    }
    assert!(
        violations.is_empty(),
        "{} violation(s):\n{}\n{}",
        violations.len(),
        violations.join("\n"),
        mesh.log_tails()
    );
}
