//! `ttscm webhook add|list|remove|rotate-secret`: webhook endpoints from the command line, with
//! the same checks, sealing and audit entries as the API (`/v1/webhook/endpoints`).
//!
//! The command runs the webhook component's operations itself, beside the server: on the
//! embedded defaults with its own vault over the data dir's key file; in the mesh as the webhook
//! component (run it with `webhook.env`: vault seals secrets only for that component). A running
//! server picks an endpoint added here up within 2 seconds.

use std::sync::Arc;

use clap::Subcommand;
use ttscm_contract::webhook::{
    CreateWebhookEndpoint, DeleteWebhookEndpoint, ListWebhookEndpoints, RotateWebhookSecret,
    WebhookEndpointInput,
};
use ttscm_contract::{ErrorCode, Permission, PermissionSet, Principal, PrincipalKind, WireError};
use ttscm_runtime::service::{CallContext, ServiceOp};
use ttscm_runtime::{Bus, Settings, Shutdown, connect};

use crate::{AppError, Component, cli_bus};

/// `ttscm webhook …`.
#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Register an endpoint; prints it with its signing secret (shown once).
    Add {
        /// Where deliveries go (https://).
        #[arg(long)]
        url: String,
        /// Only these event types (`credential.created`, `credential.*`); repeat for more.
        #[arg(long = "event")]
        events: Vec<String>,
        /// Only events of these companies (ids); repeat for more.
        #[arg(long = "company")]
        companies: Vec<String>,
        /// A note.
        #[arg(long)]
        description: Option<String>,
    },
    /// List the endpoints (never their secrets).
    List,
    /// Delete an endpoint and its delivery log.
    Remove {
        /// The endpoint's id.
        id: String,
    },
    /// Give an endpoint a new secret; the previous one keeps signing for
    /// TTSCM_WEBHOOK__ROTATION_GRACE_SECS. Prints the new secret.
    RotateSecret {
        /// The endpoint's id.
        id: String,
    },
}

impl WebhookCommand {
    fn name(&self) -> &'static str {
        match self {
            WebhookCommand::Add { .. } => "webhook add",
            WebhookCommand::List => "webhook list",
            WebhookCommand::Remove { .. } => "webhook remove",
            WebhookCommand::RotateSecret { .. } => "webhook rotate-secret",
        }
    }
}

/// The command's own principal: `webhook.manage`, recorded as `ttscm webhook …`.
fn command_context(command: &str) -> CallContext {
    CallContext::new(Some(Principal {
        id: "cli".into(),
        kind: PrincipalKind::Service,
        name: format!("ttscm {command}"),
        permissions: PermissionSet::new(vec![
            Permission::parse(ttscm_contract::permission::names::WEBHOOK_MANAGE).expect("a valid permission"),
        ]),
        scopes: Vec::new(),
        session_id: None,
    }))
}

/// A refusal of the operation: the person's mistake (exit 64) or a runtime problem.
fn failed(error: WireError) -> AppError {
    let detail: Vec<String> = error.errors.iter().map(|e| e.message.clone()).collect();
    let message = if detail.is_empty() {
        error.message.clone()
    } else {
        format!("{}: {}", error.message, detail.join("; "))
    };
    match error.code {
        ErrorCode::Validation | ErrorCode::NotFound | ErrorCode::Conflict | ErrorCode::Forbidden => {
            AppError::Config(message)
        }
        _ => AppError::Runtime(message),
    }
}

/// Runs `command`; prints JSON.
pub fn run_blocking(settings: &Settings, command: WebhookCommand) -> Result<(), AppError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime can be built");
    runtime.block_on(run(settings, command))
}

async fn run(settings: &Settings, command: WebhookCommand) -> Result<(), AppError> {
    let store = connect::store(settings)
        .await
        .map_err(|e| AppError::Runtime(e.to_string()))?;
    let bus = cli_bus(settings, Component::Webhook).await?;
    let shutdown = Shutdown::new();
    let _stop = shutdown.clone().drop_guard();
    if matches!(bus, Bus::InProc(_)) {
        // Embedded: this process seals with the data dir's keys, as the server's vault does.
        ttscm_vault::run(&bus, settings, shutdown.clone())
            .await
            .map_err(|e| AppError::Runtime(format!("vault: {e}")))?;
    }
    let service = ttscm_webhook::open(&bus, &store, settings)
        .await
        .map_err(|e| AppError::Runtime(e.to_string()))?;
    let ctx = command_context(command.name());
    let printed = match command {
        WebhookCommand::Add {
            url,
            events,
            companies,
            description,
        } => {
            let created = CreateWebhookEndpoint {
                input: WebhookEndpointInput {
                    url,
                    description,
                    event_types: Some(events),
                    company_ids: Some(companies),
                    enabled: None,
                },
            }
            .run(Arc::clone(&service), ctx)
            .await
            .map_err(failed)?;
            eprintln!("keep the secret now: it is not shown again");
            serde_json::to_string_pretty(&created)
        }
        WebhookCommand::List => {
            let endpoints = ListWebhookEndpoints {}
                .run(Arc::clone(&service), ctx)
                .await
                .map_err(failed)?;
            serde_json::to_string_pretty(&endpoints)
        }
        WebhookCommand::Remove { id } => {
            DeleteWebhookEndpoint { id: id.clone() }
                .run(Arc::clone(&service), ctx)
                .await
                .map_err(failed)?;
            serde_json::to_string_pretty(&serde_json::json!({"deleted": id}))
        }
        WebhookCommand::RotateSecret { id } => {
            let rotated = RotateWebhookSecret { id }
                .run(Arc::clone(&service), ctx)
                .await
                .map_err(failed)?;
            eprintln!("keep the new secret now: it is not shown again");
            serde_json::to_string_pretty(&rotated)
        }
    };
    println!("{}", printed.expect("answers serialize"));
    Ok(())
}
