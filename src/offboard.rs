//! `ttscm user offboard`: the day someone leaves. Finds the user (by e-mail, or by Entra tenant
//! and object id), optionally ends their sessions and revokes the API tokens made for them
//! (first, so nothing new is revealed meanwhile), reports what they revealed that is still in
//! use, and optionally marks those credentials due for rotation.
//!
//! Like the other commands it works on the store beside the server, and appends to the one
//! audit chain as the credential service would (over NATS through the audit stream: run it with
//! the credential service's settings in the mesh); it sees every credential type, since it
//! runs with the store's own access. Its actions are audited like the API's:
//! `user.sessions_ended`, `api_token.revoked` (per token) and `credential.exposure_marked`, the
//! marked credentials' `credential.rotation_due` events included.

use ttscm_contract::audit::{ExposureMarked, ExposureReport};
use ttscm_contract::{ErrorCode, WireError};
use ttscm_credential::exposure::Sight;
use ttscm_credential::service::Service;
use ttscm_identity::IdentityError;
use ttscm_identity::admin::ApiTokenInfo;
use ttscm_identity::offboard::UserKey;
use ttscm_runtime::audit::AuditRecord;
use ttscm_runtime::service::CallContext;
use ttscm_runtime::{Settings, Store, clock};

use crate::{AppError, Component, cli_bus, record_cli};

/// The command as it names itself in the audit log.
const COMMAND: &str = "user offboard";

/// What `ttscm user offboard` is asked to do.
#[derive(Debug, Clone)]
pub struct OffboardRequest {
    /// Who leaves.
    pub user: UserKey,
    /// Only reveals at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Mark the exposed credentials due for rotation.
    pub mark_due: bool,
    /// End the user's sessions.
    pub end_sessions: bool,
    /// Revoke the API tokens made for the user.
    pub revoke_tokens: bool,
}

/// The user found.
#[derive(Debug, Clone)]
pub struct OffboardedUser {
    /// Id (the actor id of their audit entries).
    pub id: String,
    /// Display name.
    pub name: String,
    /// E-mail.
    pub email: String,
    /// Entra tenant id.
    pub tid: String,
    /// Entra object id.
    pub oid: String,
    /// Roles (unchanged by the command).
    pub roles: Vec<String>,
}

/// What the command found and did (printed as JSON: [`OffboardReport::to_json`]).
#[derive(Debug, Clone)]
pub struct OffboardReport {
    /// The user.
    pub user: OffboardedUser,
    /// Sessions ended (with `--end-sessions`).
    pub sessions_ended: Option<Vec<String>>,
    /// API tokens revoked (with `--revoke-tokens`).
    pub tokens_revoked: Option<Vec<ApiTokenInfo>>,
    /// The credentials they revealed whose values are still in use.
    pub exposure: ExposureReport,
    /// What the mark did (with `--mark-due`).
    pub marked: Option<ExposureMarked>,
}

impl OffboardReport {
    /// The report as the command prints it: `user`, `exposure`, and `sessionsEnded`,
    /// `tokensRevoked`, `marked` for the actions taken.
    pub fn to_json(&self) -> serde_json::Value {
        let user = &self.user;
        let mut report = serde_json::json!({
            "user": {
                "id": user.id, "name": user.name, "email": user.email,
                "tid": user.tid, "oid": user.oid, "roles": user.roles,
            },
            "exposure": self.exposure,
        });
        if let Some(ended) = &self.sessions_ended {
            report["sessionsEnded"] = serde_json::json!(ended);
        }
        if let Some(revoked) = &self.tokens_revoked {
            report["tokensRevoked"] = serde_json::json!(revoked);
        }
        if let Some(marked) = &self.marked {
            report["marked"] = serde_json::json!(marked);
        }
        report
    }
}

fn identity_failed(error: IdentityError) -> AppError {
    match error {
        IdentityError::NotFound(m) | IdentityError::Invalid(m) => AppError::Config(m),
        other => AppError::Runtime(other.to_string()),
    }
}

fn credential_failed(error: WireError) -> AppError {
    match error.code {
        ErrorCode::Validation => AppError::Config(
            error
                .errors
                .iter()
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
                .join("; "),
        ),
        _ => AppError::Runtime(error.message),
    }
}

/// Runs `request` against `store` (see the module docs).
pub async fn offboard(
    settings: &Settings,
    store: &Store,
    request: OffboardRequest,
) -> Result<OffboardReport, AppError> {
    let since = request
        .since
        .as_deref()
        .map(|s| {
            clock::parse_iso(s)
                .map(clock::format_iso)
                .ok_or_else(|| AppError::Config(format!("--since must be an RFC 3339 time, not '{s}'")))
        })
        .transpose()?;
    let user = ttscm_identity::offboard::find_user(store, &request.user)
        .await
        .map_err(identity_failed)?;
    let bus = cli_bus(settings, Component::Credential).await?;
    let audit = ttscm_runtime::audit::AuditLog::open(&bus, store)
        .await
        .map_err(|e| AppError::Runtime(format!("the audit log cannot be opened: {e}")))?;

    let sessions_ended = if request.end_sessions {
        let ended = ttscm_identity::offboard::end_sessions(store, &user.id)
            .await
            .map_err(identity_failed)?;
        let record = AuditRecord::new("user.sessions_ended", "user", user.id.as_str())
            .detail("sessions", ended.len().to_string())
            .detail("reason", "offboarded");
        record_cli(&audit, COMMAND, record).await?;
        Some(ended)
    } else {
        None
    };
    let tokens_revoked = if request.revoke_tokens {
        let revoked = ttscm_identity::offboard::revoke_tokens_of(store, &user.id)
            .await
            .map_err(identity_failed)?;
        for token in &revoked {
            let record = AuditRecord::new("api_token.revoked", "api_token", token.id.as_str())
                .detail("owner", user.id.as_str())
                .detail("reason", "offboarded");
            record_cli(&audit, COMMAND, record).await?;
        }
        Some(revoked)
    } else {
        None
    };

    let service = Service::for_command(&bus, store, audit.clone(), settings);
    let ctx = CallContext::new(None);
    let exposure = service
        .exposure(&ctx, &user.id, since.as_deref(), Sight::Everything)
        .await
        .map_err(credential_failed)?;
    let marked = if request.mark_due {
        let marked = service
            .mark_exposure(&ctx, &exposure)
            .await
            .map_err(credential_failed)?;
        record_cli(
            &audit,
            COMMAND,
            exposure.mark_record(&user.id, since.as_deref(), &marked),
        )
        .await?;
        Some(marked)
    } else {
        None
    };
    Ok(OffboardReport {
        user: OffboardedUser {
            id: user.id,
            name: user.name,
            email: user.email,
            tid: user.tid,
            oid: user.oid,
            roles: user.roles,
        },
        sessions_ended,
        tokens_revoked,
        exposure: exposure.report(Default::default()),
        marked,
    })
}
