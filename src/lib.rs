//! Composition of TTSCM's components into one process: all of them on embedded defaults
//! (`ttscm serve`), or one of them against NATS and MongoDB (`ttscm serve --only <component>`).
//!
//! This is the only crate that depends on every service; services never depend on each other.

pub mod mesh;
pub mod offboard;
pub mod webhook_cli;

use std::net::TcpListener as StdTcpListener;
use std::time::Duration;

use ttscm_runtime::{Settings, Shutdown, connect};

/// How long in-flight work may take to drain after shutdown is signalled.
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// A component of the mesh (`serve --only <component>`).
pub use ttscm_contract::Component;

/// Parses a component's name, for `--only` (clap).
pub fn parse_component(name: &str) -> Result<Component, String> {
    Component::from_name(name).ok_or_else(|| {
        let names: Vec<_> = Component::ALL.iter().map(|c| c.name()).collect();
        format!("unknown component `{name}`; one of: {}", names.join(", "))
    })
}

/// Why the app could not run.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Settings are missing or invalid (exit code 64).
    #[error("{0}")]
    Config(String),
    /// Something failed at start or while running (exit code 1).
    #[error("{0}")]
    Runtime(String),
}

/// A service that could not start: a configuration problem (exit 64) or a runtime one.
fn start_failed(error: ttscm_runtime::router::StartError) -> AppError {
    match error {
        ttscm_runtime::router::StartError::Config(message) => AppError::Config(message),
        other => AppError::Runtime(other.to_string()),
    }
}

fn config_or_runtime<E: std::fmt::Display>(is_config: bool) -> impl Fn(E) -> AppError {
    move |e| {
        if is_config {
            AppError::Config(e.to_string())
        } else {
            AppError::Runtime(e.to_string())
        }
    }
}

/// Runs `components` until `shutdown`, on a new actix system over a multi-thread tokio runtime
/// (the recipe in `shared/deps.md`). Blocks the calling thread.
pub fn run_blocking(
    settings: Settings,
    components: Vec<Component>,
    listener: Option<StdTcpListener>,
    shutdown: Shutdown,
) -> Result<(), AppError> {
    let runner = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("ttscm-worker")
            .build()
            .expect("a tokio runtime can be built")
    });
    runner.block_on(serve(&settings, &components, listener, shutdown))
}

/// Starts `components` and serves until `shutdown`, then drains. Must run on the actix system.
pub async fn serve(
    settings: &Settings,
    components: &[Component],
    listener: Option<StdTcpListener>,
    shutdown: Shutdown,
) -> Result<(), AppError> {
    let everything = Component::ALL.iter().all(|c| components.contains(c));
    let needs_store = components.iter().any(|c| {
        matches!(
            c,
            Component::Identity | Component::CompanySync | Component::Credential | Component::Webhook
        )
    });
    if !everything && (settings.nats_url.is_none() || (needs_store && settings.mongodb_uri.is_none())) {
        return Err(AppError::Config(
            "running single components (--only) needs TTSCM_NATS_URL (components find each other \
             over NATS) and, for identity, company-sync, credential and webhook, TTSCM_MONGODB_URI"
                .into(),
        ));
    }
    // Key material is checked before anything connects, so a bad setting fails at once.
    if components.contains(&Component::Identity) {
        ttscm_identity::SigningKey::load(settings).map_err(config_or_runtime(true))?;
    }
    if components.contains(&Component::Vault) {
        ttscm_vault::KeyRing::load(settings).map_err(config_or_runtime(true))?;
    }
    let one = match components {
        [one] => Some(*one),
        _ => None,
    };
    let bus = connect::bus(settings, one)
        .await
        .map_err(config_or_runtime(true))?;
    let store = if needs_store {
        Some(connect::store(settings).await.map_err(config_or_runtime(false))?)
    } else {
        None
    };
    tracing::info!(
        bus = bus.kind(),
        store = store.as_ref().map(|s| s.kind()),
        ?components,
        "starting"
    );

    let mut tasks = Vec::new();
    // Metrics first: a taken port fails before any component starts. One endpoint per process
    // (a second call for the same address in this process shares the first one's).
    if let Some(address) = settings.metrics_addr {
        let served = ttscm_runtime::metrics::serve(address, shutdown.clone())
            .await
            .map_err(|e| AppError::Config(format!("cannot serve metrics on {address}: {e}")))?;
        if let Some((bound, task)) = served {
            tasks.push(task);
            tracing::info!(%bound, "metrics at http://{bound}/metrics");
        }
    }
    for component in components {
        let store = || {
            store
                .as_ref()
                .expect("the components that need the store opened it above")
        };
        let started = match component {
            Component::Edge => continue,
            Component::Identity => ttscm_identity::run(&bus, store(), settings, shutdown.clone()).await,
            Component::CompanySync => {
                ttscm_company_sync::run(&bus, store(), settings, shutdown.clone()).await
            }
            Component::Credential => ttscm_credential::run(&bus, store(), settings, shutdown.clone()).await,
            Component::Vault => ttscm_vault::run(&bus, settings, shutdown.clone()).await,
            Component::Webhook => ttscm_webhook::run(&bus, store(), settings, shutdown.clone()).await,
        };
        tasks.extend(started.map_err(start_failed)?);
    }
    // The edge starts last, so the first request finds the services serving.
    if components.contains(&Component::Edge) {
        let listener = match listener {
            Some(listener) => listener,
            None => StdTcpListener::bind(settings.listen_addr)
                .map_err(|e| AppError::Config(format!("cannot listen on {}: {e}", settings.listen_addr)))?,
        };
        listener.set_nonblocking(true).map_err(config_or_runtime(false))?;
        let address = listener.local_addr().map_err(config_or_runtime(false))?;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(config_or_runtime(false))?;
        tasks.push(ttscm_edge::run(bus.clone(), settings, listener, shutdown.clone()));
        tracing::info!(%address, "edge listening; API at http://{address}/v1");
    }

    shutdown.cancelled().await;
    tracing::info!("shutting down: draining in-flight requests");
    let drained = tokio::time::timeout(DRAIN_DEADLINE, futures_util::future::join_all(tasks)).await;
    if drained.is_err() {
        tracing::warn!("in-flight work did not drain within {DRAIN_DEADLINE:?}");
    }
    Ok(())
}

/// The audit log a `ttscm` command appends to, beside `store`: as the server would (see
/// [`ttscm_runtime::audit`]) — over NATS through the `TTSCM_AUDIT` stream, connected as
/// `component` when the mesh's keys are set (so that component's NATS user and inbox apply;
/// run the command where that component's settings are), else the journal or the collection
/// directly. Either way the command extends the one chain, never a fork of it.
pub async fn cli_audit(
    settings: &Settings,
    component: Component,
    store: &ttscm_runtime::Store,
) -> Result<ttscm_runtime::audit::AuditLog, AppError> {
    let bus = cli_bus(settings, component).await?;
    ttscm_runtime::audit::AuditLog::open(&bus, store)
        .await
        .map_err(|e| AppError::Runtime(format!("the audit log cannot be opened: {e}")))
}

/// The bus a `ttscm` command uses beside the store: over NATS connected as `component` when the
/// mesh's keys are set (see [`cli_audit`]), else a bus of its own in this process.
pub async fn cli_bus(settings: &Settings, component: Component) -> Result<ttscm_runtime::Bus, AppError> {
    let as_component = settings.mesh.principal_key.is_some().then_some(component);
    connect::bus(settings, as_component)
        .await
        .map_err(config_or_runtime(true))
}

/// Records `record` as done by the `ttscm` command `command` (e.g. `token create`); a failure
/// is the command's (exit 1) and says the action itself was done.
pub async fn record_cli(
    audit: &ttscm_runtime::audit::AuditLog,
    command: &str,
    record: ttscm_runtime::audit::AuditRecord,
) -> Result<(), AppError> {
    let entry = record.entry(
        ttscm_runtime::audit::cli_actor(command),
        &ttscm_runtime::ids::new_id(),
        None,
    );
    audit.append(entry).await.map_err(|e| {
        AppError::Runtime(format!(
            "`ttscm {command}` was done, but its audit entry could not be stored: {e}"
        ))
    })
}

/// Writes every stored audit entry to `out`, one JSON line each in sequence order
/// (`ttscm audit export`); over NATS, first waits until entries still in the write-ahead stream
/// are copied. Answers how many were written.
pub async fn export_audit(
    settings: &Settings,
    store: &ttscm_runtime::Store,
    out: &mut dyn std::io::Write,
) -> Result<u64, AppError> {
    let audit = cli_audit(settings, Component::Credential, store).await?;
    let failed = |e: ttscm_runtime::StoreError| AppError::Runtime(format!("cannot read the audit log: {e}"));
    audit.settled().await.map_err(failed)?;
    let mut next = 1;
    let mut written = 0;
    loop {
        let batch = audit.scan(next, 1000).await.map_err(failed)?;
        let Some(last) = batch.last() else {
            return Ok(written);
        };
        next = last.seq + 1;
        for entry in &batch {
            serde_json::to_writer(&mut *out, entry).expect("audit entries serialize");
            out.write_all(b"\n")
                .map_err(|e| AppError::Runtime(format!("cannot write the export: {e}")))?;
            written += 1;
        }
    }
}

/// Verifies an exported log offline (`ttscm audit verify`): the chain, and against `checkpoint`
/// (a token, or `@file` holding one) when given, whose signature must verify with `public_key`.
pub fn verify_export(
    file: &std::path::Path,
    public_key: &str,
    checkpoint: Option<&str>,
) -> Result<ttscm_contract::audit::AuditVerification, AppError> {
    use ttscm_runtime::audit::checkpoint;
    let (public, _) = ttscm_runtime::ed25519::public_key("--public-key", public_key)
        .map_err(|e| AppError::Config(e.to_string()))?;
    let against = match checkpoint {
        None => None,
        Some(given) => {
            let token = match given.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| AppError::Config(format!("cannot read {path}: {e}")))?,
                None => given.to_owned(),
            };
            let opened = checkpoint::open(token.trim(), &public)
                .map_err(|e| AppError::Config(format!("--checkpoint: {e}")))?;
            Some(checkpoint::CheckAgainst {
                checkpoint: opened,
                source: "given",
            })
        }
    };
    let reader = std::fs::File::open(file)
        .map_err(|e| AppError::Config(format!("cannot read {}: {e}", file.display())))?;
    checkpoint::verify_lines(std::io::BufReader::new(reader), against.as_ref())
        .map_err(|e| AppError::Config(format!("cannot read {}: {e}", file.display())))
}

/// Moves every sealed value to vault's active key (`ttscm vault reseal`): runs a vault of its own
/// (same key ring as the settings give the server) on an in-process bus next to the store, so it
/// works in both modes and while the API serves traffic. Blocks the calling thread.
pub fn reseal_blocking(settings: Settings) -> Result<ttscm_credential::reseal::ResealReport, AppError> {
    let runner = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime can be built")
    });
    runner.block_on(async move {
        let bus = ttscm_runtime::Bus::InProc(ttscm_runtime::bus::inproc::InProcBus::new());
        let shutdown = Shutdown::new();
        ttscm_vault::run(&bus, &settings, shutdown.clone())
            .await
            .map_err(start_failed)?;
        let store = connect::store(&settings)
            .await
            .map_err(config_or_runtime(false))?;
        let client = ttscm_runtime::service::BusClient::new(bus, settings.request_timeout());
        let ctx = ttscm_runtime::service::CallContext::new(None);
        let report = ttscm_credential::reseal::reseal_all(&store, &client, &ctx).await;
        shutdown.cancel();
        let report = report.map_err(|e| AppError::Runtime(e.message))?;
        let audit = cli_audit(&settings, Component::Credential, &store).await?;
        let record = ttscm_runtime::audit::AuditRecord::new("vault.resealed", "vault_key", "active")
            .detail("scanned", report.scanned.to_string())
            .detail("resealed", report.resealed.to_string())
            .detail("skipped", report.skipped.to_string())
            .detail("failed", report.failed.to_string());
        record_cli(&audit, "vault reseal", record).await?;
        Ok(report)
    })
}
