//! The `ttscm` command: parses arguments, loads settings, and runs a subcommand. Nothing else.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ttscm::{AppError, Component};
use ttscm_runtime::{Settings, Shutdown, connect};

/// mimalloc instead of glibc's malloc: the request path allocates and frees many small objects
/// across threads, and glibc's arenas spent about 15 % of the server's CPU on it under load
/// (see bench/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for invalid settings or usage (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(name = "ttscm", version, about = "TTSCM — a credential manager for MSPs")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run TTSCM (all components in one process unless --only is given).
    Serve {
        /// Run only this component (needs NATS and MongoDB).
        #[arg(long, value_parser = ttscm::parse_component)]
        only: Option<Component>,
    },
    /// Manage API tokens for machines.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage users who sign in with Microsoft Entra ID.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage companies kept by hand (without ConnectWise).
    Company {
        #[command(subcommand)]
        command: CompanyCommand,
    },
    /// Manage webhook endpoints (signed deliveries of events).
    Webhook {
        #[command(subcommand)]
        command: ttscm::webhook_cli::WebhookCommand,
    },
    /// Rotate and re-seal vault keys.
    Vault {
        #[command(subcommand)]
        command: VaultCommand,
    },
    /// Generate key material for mesh-mode settings.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The mesh's NATS users, permissions and principal keys.
    Mesh {
        #[command(subcommand)]
        command: MeshCommand,
    },
    /// Export the audit log, or verify an exported one offline.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum MeshCommand {
    /// Writes nats.conf (users and permissions generated from the code), one <component>.env
    /// per component (its NATS nkey seed and principal key: secret), mesh.env (the trusted
    /// public keys) and integrator.nk (the events reader's nkey seed) into a directory.
    Init {
        /// Where to write the files.
        #[arg(long)]
        out: std::path::PathBuf,
        /// Directory on the NATS server holding tls.crt, tls.key and ca.crt: adds a tls block.
        #[arg(long)]
        tls_dir: Option<String>,
    },
    /// Prints what each NATS user may publish and subscribe to.
    Permissions,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token; prints it once on stdout.
    Create {
        /// A name saying what uses the token.
        #[arg(long)]
        name: String,
        /// A role the token holds (repeat for more).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Lifetime, e.g. `30d`, `12h` (default: no expiry).
        #[arg(long)]
        expires_in: Option<humantime::Duration>,
        /// The e-mail of the user the token is made for (who has signed in): revoked with
        /// their tokens by `ttscm user offboard --revoke-tokens`.
        #[arg(long)]
        owner: Option<String>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id; the API refuses it within seconds.
    Revoke {
        /// The token's id.
        id: String,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Give a role to a user who has signed in at least once.
    Grant {
        /// The user's e-mail address.
        #[arg(long)]
        email: String,
        /// The role to give.
        #[arg(long)]
        role: String,
    },
    /// The day someone leaves: prints the user and the credentials they revealed whose values
    /// are still in use (JSON); optionally marks those due for rotation, ends the user's
    /// sessions and revokes the API tokens made for them.
    Offboard {
        /// The user's e-mail address.
        #[arg(long, required_unless_present = "tenant", conflicts_with = "tenant")]
        email: Option<String>,
        /// The user's Entra tenant id (with --object-id).
        #[arg(long, requires = "object_id")]
        tenant: Option<String>,
        /// The user's Entra object id (with --tenant).
        #[arg(long, requires = "tenant")]
        object_id: Option<String>,
        /// Only reveals at or after this time (RFC 3339; default: every reveal on record).
        #[arg(long)]
        since: Option<String>,
        /// Mark every exposed credential due for rotation.
        #[arg(long)]
        mark_due: bool,
        /// End the user's sessions (their refresh tokens stop working at once).
        #[arg(long)]
        end_sessions: bool,
        /// Revoke the API tokens made for the user (`ttscm token create --owner`).
        #[arg(long)]
        revoke_tokens: bool,
    },
}

#[derive(Subcommand)]
enum CompanyCommand {
    /// Add a company; prints its id.
    Add {
        /// The company's name.
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum VaultCommand {
    /// Make a new random key the active one (embedded mode; old keys keep opening old values).
    Rotate,
    /// Move every sealed value to the active key (idempotent, resumable, safe while serving).
    Reseal,
    /// Print the public half of the key that signs audit checkpoints (pin it where you verify).
    CheckpointKey,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Write the stored audit log, one JSON entry per line in sequence order.
    Export {
        /// Write here instead of to standard output.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Verify an exported log offline: its hash chain and, given a checkpoint signed by vault's
    /// checkpoint key, that it was neither cut short nor rewritten. Exits 1 when it does not
    /// verify.
    Verify {
        /// The exported log (`ttscm audit export`).
        #[arg(long)]
        file: std::path::PathBuf,
        /// The checkpoint key's public half, base64url (`ttscm vault checkpoint-key`).
        #[arg(long)]
        public_key: String,
        /// A checkpoint's token (`GET /v1/audit/checkpoint`, an `audit.checkpoint` event), or
        /// `@file` holding it.
        #[arg(long)]
        checkpoint: Option<String>,
    },
}

#[derive(Subcommand)]
#[allow(
    clippy::enum_variant_names,
    reason = "the commands are named for the keys they make"
)]
enum KeysCommand {
    /// A new Ed25519 signing key for TTSCM_IDENTITY__SIGNING_KEY.
    SigningKey,
    /// A new vault master key entry for TTSCM_VAULT__KEYS (`kid:base64`).
    VaultKey {
        /// The key id.
        #[arg(long, default_value = "v1")]
        kid: String,
    },
    /// A new Ed25519 key for TTSCM_VAULT__CHECKPOINT_KEY (signs audit checkpoints).
    CheckpointKey,
}

fn main() -> ExitCode {
    rustls::crypto::ring::default_provider()
        .install_default()
        .expect("no other rustls crypto provider is installed before main");
    let cli = Cli::parse();
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("ttscm: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve { only: None }) {
        Command::Serve { only } => serve(settings, only),
        Command::Token { command } => token(&settings, command),
        Command::Vault { command } => vault(settings, command),
        Command::Company { command } => company(&settings, command),
        Command::Webhook { command } => ttscm::webhook_cli::run_blocking(&settings, command),
        Command::User { command } => user(&settings, command),
        Command::Keys { command } => {
            keys(command);
            Ok(())
        }
        Command::Mesh { command } => mesh(command),
        Command::Audit { command } => audit(&settings, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(AppError::Config(message)) => {
            eprintln!("ttscm: {message}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(AppError::Runtime(message)) => {
            eprintln!("ttscm: {message}");
            ExitCode::FAILURE
        }
    }
}

fn serve(settings: Settings, only: Option<Component>) -> Result<(), AppError> {
    let name = only.map_or("ttscm".to_owned(), |c| format!("ttscm-{c:?}").to_lowercase());
    let _telemetry = ttscm_runtime::telemetry::init(&settings, &name).map_err(AppError::Config)?;
    let components = only.map_or_else(|| Component::ALL.to_vec(), |c| vec![c]);
    let shutdown = Shutdown::new();
    let signal = shutdown.clone();
    std::thread::spawn(move || wait_for_signal(signal));
    ttscm::run_blocking(settings, components, None, shutdown)
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C.
fn wait_for_signal(shutdown: Shutdown) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime can be built");
    runtime.block_on(async {
        #[cfg(unix)]
        {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM can be handled");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        shutdown.cancel();
    });
}

/// Runs an admin command against the store the settings name, on a small runtime of its own.
fn with_store<F, Fut>(settings: &Settings, command: F) -> Result<(), AppError>
where
    F: FnOnce(ttscm_runtime::Store) -> Fut,
    Fut: std::future::Future<Output = Result<(), AppError>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime can be built");
    runtime.block_on(async {
        let store = connect::store(settings)
            .await
            .map_err(|e| AppError::Runtime(e.to_string()))?;
        command(store).await
    })
}

/// Runs an admin command that changes something against the store, with the audit log it
/// records the change in (opened as `component` would, see [`ttscm::cli_audit`]).
fn with_store_and_audit<F, Fut>(settings: &Settings, component: Component, command: F) -> Result<(), AppError>
where
    F: FnOnce(ttscm_runtime::Store, ttscm_runtime::audit::AuditLog) -> Fut,
    Fut: std::future::Future<Output = Result<(), AppError>>,
{
    with_store(settings, |store| async move {
        let audit = ttscm::cli_audit(settings, component, &store).await?;
        command(store, audit).await
    })
}

/// A CLI command on identity's data that failed: the person's mistake (an unknown name,
/// invalid input: exit 64) or a runtime problem.
fn admin_failed(error: ttscm_identity::IdentityError) -> AppError {
    match error {
        ttscm_identity::IdentityError::NotFound(m) | ttscm_identity::IdentityError::Invalid(m) => {
            AppError::Config(m)
        }
        other => AppError::Runtime(other.to_string()),
    }
}

fn token(settings: &Settings, command: TokenCommand) -> Result<(), AppError> {
    use ttscm_runtime::audit::AuditRecord;
    with_store_and_audit(settings, Component::Identity, |store, audit| async move {
        match command {
            TokenCommand::Create {
                name,
                roles,
                expires_in,
                owner,
            } => {
                let expires_at = expires_in.map(|d| {
                    time::OffsetDateTime::now_utc()
                        + time::Duration::try_from(*d).unwrap_or(time::Duration::MAX)
                });
                let owner_id = match owner {
                    Some(email) => Some(
                        ttscm_identity::offboard::find_user(
                            &store,
                            &ttscm_identity::offboard::UserKey::Email(email),
                        )
                        .await
                        .map_err(admin_failed)?
                        .id,
                    ),
                    None => None,
                };
                let (info, secret) = ttscm_identity::admin::create_api_token_for(
                    &store,
                    &name,
                    &roles,
                    expires_at,
                    owner_id.as_deref(),
                )
                .await
                .map_err(admin_failed)?;
                let mut record = AuditRecord::new("api_token.created", "api_token", info.id.clone())
                    .detail("name", info.name.as_str())
                    .detail("roles", info.roles.join(","))
                    .detail("expiresAt", info.expires_at.as_deref().unwrap_or("never"));
                if let Some(owner_id) = &info.owner_id {
                    record = record.detail("owner", owner_id.as_str());
                }
                ttscm::record_cli(&audit, "token create", record).await?;
                println!("{secret}");
                eprintln!(
                    "created API token {} ({}) with roles {:?}, expires {}; it is shown only once",
                    info.id,
                    info.name,
                    info.roles,
                    info.expires_at.as_deref().unwrap_or("never")
                );
            }
            TokenCommand::List => {
                let tokens = ttscm_identity::admin::list_api_tokens(&store)
                    .await
                    .map_err(admin_failed)?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&tokens).expect("token infos serialize")
                );
            }
            TokenCommand::Revoke { id } => {
                ttscm_identity::admin::revoke_api_token(&store, &id)
                    .await
                    .map_err(admin_failed)?;
                let record = AuditRecord::new("api_token.revoked", "api_token", id.clone());
                ttscm::record_cli(&audit, "token revoke", record).await?;
                eprintln!("revoked API token {id}");
            }
        }
        Ok(())
    })
}

fn user(settings: &Settings, command: UserCommand) -> Result<(), AppError> {
    let (email, role) = match command {
        UserCommand::Grant { email, role } => (email, role),
        UserCommand::Offboard {
            email,
            tenant,
            object_id,
            since,
            mark_due,
            end_sessions,
            revoke_tokens,
        } => {
            let user = match (email, tenant, object_id) {
                (Some(email), _, _) => ttscm_identity::offboard::UserKey::Email(email),
                (None, Some(tid), Some(oid)) => ttscm_identity::offboard::UserKey::TenantObject { tid, oid },
                _ => {
                    return Err(AppError::Config(
                        "name the user with --email, or with --tenant and --object-id".into(),
                    ));
                }
            };
            let request = ttscm::offboard::OffboardRequest {
                user,
                since,
                mark_due,
                end_sessions,
                revoke_tokens,
            };
            return with_store(settings, |store| async move {
                let report = ttscm::offboard::offboard(settings, &store, request).await?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report.to_json()).expect("JSON values serialize")
                );
                eprintln!(
                    "{} ({}): {} credential(s) still exposed{}",
                    report.user.email,
                    report.user.id,
                    report.exposure.total,
                    report.marked.as_ref().map_or(String::new(), |m| format!(
                        ", {} marked due for rotation ({} due already)",
                        m.marked, m.already_due
                    ))
                );
                Ok(())
            });
        }
    };
    with_store_and_audit(settings, Component::Identity, |store, audit| async move {
        let (user_id, roles) = ttscm_identity::admin::grant_role(&store, &email, &role)
            .await
            .map_err(admin_failed)?;
        let record = ttscm_runtime::audit::AuditRecord::new("user.roles_updated", "user", user_id)
            .detail("roles", roles.join(","))
            .detail("granted", role.as_str());
        ttscm::record_cli(&audit, "user grant", record).await?;
        eprintln!("{email} now holds the roles {roles:?} (effective within seconds)");
        Ok(())
    })
}

fn company(settings: &Settings, command: CompanyCommand) -> Result<(), AppError> {
    let CompanyCommand::Add { name } = command;
    with_store(settings, |store| async move {
        let id = ttscm_company_sync::admin::create_company(&store, &name)
            .await
            .map_err(|e| match e {
                ttscm_runtime::StoreError::Invalid(m) => AppError::Config(m),
                other => AppError::Runtime(other.to_string()),
            })?;
        println!("{id}");
        Ok(())
    })
}

fn vault(settings: Settings, command: VaultCommand) -> Result<(), AppError> {
    let _telemetry = ttscm_runtime::telemetry::init(&settings, "ttscm-vault").map_err(AppError::Config)?;
    match command {
        VaultCommand::Rotate => {
            let kid = ttscm_vault::rotate(&settings).map_err(|e| AppError::Config(e.to_string()))?;
            let record =
                ttscm_runtime::audit::AuditRecord::new("vault.key_rotated", "vault_key", kid.as_str());
            with_store_and_audit(&settings, Component::Vault, |_, audit| async move {
                ttscm::record_cli(&audit, "vault rotate", record).await
            })?;
            println!("{kid}");
            eprintln!(
                "new values are sealed with vault key {kid}; run `ttscm vault reseal` to move existing ones"
            );
        }
        VaultCommand::Reseal => {
            let report = ttscm::reseal_blocking(settings)?;
            println!("{}", serde_json::to_string(&report).expect("reports serialize"));
        }
        VaultCommand::CheckpointKey => {
            let key = ttscm_vault::checkpoint_key(&settings).map_err(|e| AppError::Config(e.to_string()))?;
            println!(
                "{}",
                serde_json::json!({"keyId": key.key_id(), "publicKey": key.public_base64()})
            );
        }
    }
    Ok(())
}

fn audit(settings: &Settings, command: AuditCommand) -> Result<(), AppError> {
    match command {
        AuditCommand::Export { out } => with_store(settings, |store| async move {
            let mut writer: Box<dyn std::io::Write> = match &out {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .map_err(|e| AppError::Config(format!("cannot write {}: {e}", path.display())))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let exported = ttscm::export_audit(settings, &store, &mut writer).await?;
            writer
                .flush()
                .map_err(|e| AppError::Runtime(format!("cannot write the export: {e}")))?;
            eprintln!("exported {exported} audit entries");
            Ok(())
        }),
        AuditCommand::Verify {
            file,
            public_key,
            checkpoint,
        } => {
            let verification = ttscm::verify_export(&file, &public_key, checkpoint.as_deref())?;
            println!(
                "{}",
                serde_json::to_string_pretty(&verification).expect("verifications serialize")
            );
            if verification.valid {
                Ok(())
            } else {
                Err(AppError::Runtime("the audit log does not verify".into()))
            }
        }
    }
}

fn keys(command: KeysCommand) {
    match command {
        KeysCommand::SigningKey => println!("{}", ttscm_identity::SigningKey::generate("k1").to_base64()),
        KeysCommand::CheckpointKey => {
            println!("{}", ttscm_runtime::ed25519::Ed25519Key::generate().to_base64())
        }
        KeysCommand::VaultKey { kid } => {
            use base64::Engine;
            let key = ttscm_runtime::ids::random_bytes::<32>();
            println!("{kid}:{}", base64::engine::general_purpose::STANDARD.encode(key));
        }
    }
}

fn mesh(command: MeshCommand) -> Result<(), AppError> {
    match command {
        MeshCommand::Init { out, tls_dir } => {
            let keys = ttscm::mesh::MeshKeys::generate();
            let written = keys
                .write(&out, tls_dir.as_deref())
                .map_err(|e| AppError::Config(format!("cannot write into {}: {e}", out.display())))?;
            for name in written {
                println!("{}", out.join(name).display());
            }
            eprintln!(
                "run nats-server with nats.conf; give each component its <component>.env and mesh.env; \
                 hand integrator.nk to the tool that reads events (never commit the .env and .nk files)"
            );
            Ok(())
        }
        MeshCommand::Permissions => {
            print!("{}", ttscm::mesh::describe());
            Ok(())
        }
    }
}
