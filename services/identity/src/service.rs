//! identity's sign-in, session, user and role operations ([`ServiceOp`]s on shared state; each
//! request runs in its own task, the store does the coordination).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use ttscm_contract::identity::*;
use ttscm_contract::{ErrorCode, FieldError, Principal, PrincipalKind, WireError};
use ttscm_runtime::audit::{AuditLog, AuditRecord};
use ttscm_runtime::cache::Cache;
use ttscm_runtime::service::{CallContext, ServiceOp, store_failed};
use ttscm_runtime::{Bus, Headers, Settings, Store, Update};

use crate::auditing::user_actor;
use crate::failures::FailureLimits;
use crate::logins::{self, LoginError};
use crate::oidc::Oidc;
use crate::store::permissions_of;
use crate::users::{self, SessionError, SignInProfile, TokenSettings, USER_SCOPES, UserDoc};
use crate::{SigningKey, roles};

/// How long a replica answers `GET /user/@me` from its user cache. Changes made through this
/// replica apply at once; other replicas drop the user when they hear of the change on the bus
/// (normally within milliseconds); this bounds what a lost message or a CLI change can leave.
const USER_CACHE_TTL: Duration = Duration::from_secs(2);
/// Users kept in the cache at most.
const USER_CACHE_MAX: usize = 50_000;

/// Recently read users, by id.
#[derive(Debug)]
pub struct UserCache(Cache<String, Arc<UserDoc>>);

impl Default for UserCache {
    fn default() -> Self {
        Self(Cache::new(USER_CACHE_TTL, USER_CACHE_MAX))
    }
}

impl UserCache {
    fn get(&self, id: &str) -> Option<Arc<UserDoc>> {
        let cached = self.0.get(id);
        ttscm_runtime::metrics::cache_lookup("user", cached.is_some());
        cached
    }

    fn put(&self, user: Arc<UserDoc>) {
        self.0.insert(user.id.clone(), user);
    }

    /// Forgets a user (after a change here or elsewhere).
    pub fn forget(&self, id: &str) {
        self.0.remove(id);
    }
}

/// What identity's operations share.
#[derive(Debug)]
pub struct Identity {
    /// identity's collections.
    pub store: Store,
    /// Announces user changes to the other replicas.
    pub bus: Bus,
    /// Users recently read for `@me`.
    pub users: UserCache,
    /// The OpenID Connect client.
    pub oidc: Oidc,
    /// Token issuing.
    pub tokens: TokenSettings,
    /// Who the bootstrap settings make admin.
    bootstrap: BootstrapAdmins,
    /// The audit chain (see [`crate::auditing`]).
    pub audit: AuditLog,
    /// How many failed sign-ins are recorded (see [`crate::failures`]).
    pub failures: FailureLimits,
    /// The bound on pending sign-ins (`TTSCM_IDENTITY__MAX_PENDING_LOGINS`).
    pub pending_logins: logins::PendingLogins,
}

/// The bootstrap admins (`TTSCM_IDENTITY__ADMIN_OBJECT_IDS`, `TTSCM_IDENTITY__ADMIN_EMAILS`),
/// matched only in tenants they name:
///
/// - an object-id entry `tid:oid` matches that user of that tenant; a bare `oid` matches only
///   in `TTSCM_ENTRA__TENANT_ID`'s tenant (and nowhere when it is unset);
/// - an e-mail (the `email` claim, else `preferred_username`) matches only when
///   `TTSCM_ENTRA__TENANT_ID` is set, only in that tenant, and only at the user's first
///   sign-in — those claims are the user's to choose in many tenants, and a later sign-in under
///   the same address could be somebody else's account.
///
/// Either grants `admin` once per user ([`users::Bootstrap`]): an admin who demotes a
/// bootstrap admin is not overridden at its next sign-in.
#[derive(Debug, Default)]
pub struct BootstrapAdmins {
    /// `TTSCM_ENTRA__TENANT_ID`, lowercase.
    tenant: Option<String>,
    /// (tenant id, object id) pairs, lowercase.
    ids: Vec<(String, String)>,
    /// E-mails, lowercase.
    emails: Vec<String>,
}

impl BootstrapAdmins {
    /// The bootstrap admins `settings` name.
    pub fn new(settings: &Settings) -> Self {
        let tenant = settings
            .entra
            .tenant_id
            .as_deref()
            .map(|t| t.trim().to_lowercase())
            .filter(|t| !t.is_empty());
        let mut ids = Vec::new();
        for entry in &settings.identity.admin_object_ids {
            let entry = entry.trim().to_lowercase();
            match (entry.split_once(':'), &tenant) {
                (Some((tid, oid)), _) => ids.push((tid.trim().to_owned(), oid.trim().to_owned())),
                (None, Some(tenant)) => ids.push((tenant.clone(), entry)),
                (None, None) => tracing::warn!(
                    entry,
                    "TTSCM_IDENTITY__ADMIN_OBJECT_IDS: an object id without its tenant (tid:oid) \
                     matches nobody while TTSCM_ENTRA__TENANT_ID is unset"
                ),
            }
        }
        if tenant.is_none() && !settings.identity.admin_emails.is_empty() {
            tracing::warn!(
                "TTSCM_IDENTITY__ADMIN_EMAILS matches nobody while TTSCM_ENTRA__TENANT_ID is unset; \
                 name bootstrap admins as tid:oid in TTSCM_IDENTITY__ADMIN_OBJECT_IDS"
            );
        }
        Self {
            tenant,
            ids,
            emails: settings
                .identity
                .admin_emails
                .iter()
                .map(|e| e.trim().to_lowercase())
                .collect(),
        }
    }

    /// How the person `tid`/`oid` with e-mail `email` matches.
    pub fn matches(&self, tid: &str, oid: &str, email: &str) -> users::Bootstrap {
        let (tid, oid) = (tid.to_lowercase(), oid.to_lowercase());
        if self.ids.iter().any(|(t, o)| *t == tid && *o == oid) {
            return users::Bootstrap::ById;
        }
        let email = email.to_lowercase();
        if self.tenant.as_deref() == Some(tid.as_str()) && !email.is_empty() && self.emails.contains(&email) {
            return users::Bootstrap::ByEmail;
        }
        users::Bootstrap::No
    }
}

impl Identity {
    /// The state for `settings`.
    pub fn new(store: Store, bus: Bus, key: SigningKey, audit: AuditLog, settings: &Settings) -> Self {
        Self {
            store,
            bus,
            users: UserCache::default(),
            oidc: Oidc::new(&settings.entra),
            tokens: TokenSettings {
                key,
                issuer: settings.identity.issuer.clone(),
                audience: settings.identity.audience.clone(),
                access_ttl: settings.identity.access_token_ttl_secs,
                refresh_ttl: settings.identity.refresh_token_ttl_secs,
                session_ttl: settings.identity.session_ttl_secs,
            },
            bootstrap: BootstrapAdmins::new(settings),
            audit,
            failures: FailureLimits::new(settings),
            pending_logins: logins::PendingLogins::new(&settings.identity),
        }
    }
}

impl Identity {
    /// Applies `update` to a user, answers the user as stored, and announces the change.
    async fn update_user(&self, id: &str, update: Update) -> Result<User, WireError> {
        let user = users::update_user(&self.store, id, update)
            .await
            .map_err(store_failed)?
            .map(|u| u.to_user())
            .ok_or_else(|| WireError::not_found("User"))?;
        self.user_changed(&user.id).await;
        Ok(user)
    }

    /// Drops a changed user from this replica's cache and tells the other replicas.
    pub async fn user_changed(&self, id: &str) {
        self.users.forget(id);
        let published = self
            .bus
            .publish(
                ttscm_contract::subjects::IDENTITY_USER_CHANGED,
                Headers::new(),
                bytes::Bytes::from(id.to_owned()),
            )
            .await;
        if let Err(error) = published {
            tracing::warn!(%error, "could not announce a user change; other replicas catch up within their cache time");
        }
    }
}

fn unauthorized() -> WireError {
    WireError::new(ErrorCode::Unauthorized, "Unauthorized")
}

fn session_failed(error: SessionError) -> WireError {
    match error {
        SessionError::Invalid | SessionError::Reused { .. } => unauthorized(),
        SessionError::Store(e) => store_failed(e),
    }
}

fn login_failed(error: LoginError) -> WireError {
    match error {
        LoginError::Unknown => WireError::new(
            ErrorCode::Validation,
            "This sign-in is unknown, expired or already used; please start the sign-in again",
        ),
        LoginError::Claimed => WireError::new(
            ErrorCode::Conflict,
            "Another client is already waiting for this sign-in",
        ),
        LoginError::Store(e) => store_failed(e),
    }
}

/// The signed-in user behind the call (API tokens have no user).
fn user_principal(ctx: &CallContext) -> Result<&Principal, WireError> {
    let principal = ctx.principal()?;
    if principal.kind != PrincipalKind::User {
        return Err(WireError::new(
            ErrorCode::Forbidden,
            "Only a signed-in user has a profile and a session",
        ));
    }
    Ok(principal)
}

async fn user_or_404(store: &Store, id: &str) -> Result<UserDoc, WireError> {
    users::get_user(store, id)
        .await
        .map_err(store_failed)?
        .ok_or_else(|| WireError::not_found("User"))
}

impl ServiceOp<Identity> for BeginLogin {
    async fn run(self, identity: Arc<Identity>, _: CallContext) -> Result<LoginStart, WireError> {
        identity.oidc.configured()?;
        let callback_key = logins::new_callback_key();
        let native = matches!(self.binding, LoginBinding::Native { .. });
        let request = identity.oidc.authorize(&callback_key, native).await?;
        let expires_at = identity
            .pending_logins
            .start(
                &identity.store,
                &callback_key,
                &request.pkce_verifier,
                &request.nonce,
                &self.binding,
            )
            .await?;
        Ok(LoginStart {
            uri: request.url,
            callback_key,
            expires_at,
        })
    }
}

impl ServiceOp<Identity> for CheckLogin {
    async fn run(self, identity: Arc<Identity>, _: CallContext) -> Result<LoginPending, WireError> {
        identity.oidc.configured()?;
        let expires_at = logins::claim(&identity.store, &self.callback_key, &self.waiter)
            .await
            .map_err(login_failed)?;
        Ok(LoginPending { expires_at })
    }
}

impl ServiceOp<Identity> for ReleaseLogin {
    async fn run(self, identity: Arc<Identity>, _: CallContext) -> Result<(), WireError> {
        logins::release(&identity.store, &self.callback_key, &self.waiter)
            .await
            .map_err(store_failed)
    }
}

impl ServiceOp<Identity> for DescribeLogin {
    async fn run(self, identity: Arc<Identity>, _: CallContext) -> Result<LoginBinding, WireError> {
        identity.oidc.configured()?;
        logins::describe(&identity.store, &self.state)
            .await
            .map_err(login_failed)
    }
}

/// The refusal of a sign-in finished by another client than the one that started it: what a
/// phished person sees (nothing is delivered to the waiting socket).
pub const NOT_YOUR_SIGN_IN: &str = "This sign-in was started by another browser or app, so it cannot be finished here. \
     If you did not just start signing in to TTSCM yourself, someone may have sent you this link: \
     close this window";

/// Whether the finishing request proves it comes from the client `binding` names.
fn bound_client(binding: &LoginBinding, login: &CompleteLogin) -> Result<(), WireError> {
    let proven = match binding {
        // Hashes of 256-bit random values: comparing them in variable time reveals nothing useful.
        LoginBinding::Cookie { hash } => {
            !hash.is_empty() && login.cookie_hash.as_deref() == Some(hash.as_str())
        }
        // The completion code reaches only the opener's page; the socket checks it.
        LoginBinding::Opener { .. } => true,
        LoginBinding::Native { .. } => login.confirmed,
    };
    if proven {
        Ok(())
    } else {
        Err(WireError::new(ErrorCode::Forbidden, NOT_YOUR_SIGN_IN))
    }
}

/// The provider's `error` code if it is a plain OAuth error code (it is shown to the user).
fn safe_error_code(error: &str) -> &str {
    if !error.is_empty() && error.len() <= 64 && error.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        error
    } else {
        "unknown_error"
    }
}

/// Whether a failed request is the requester's failure (recorded as such) rather than ours (a
/// store or provider outage: logged, answered 503/502).
fn is_refusal(error: &WireError) -> bool {
    matches!(
        error.code,
        ErrorCode::Validation | ErrorCode::Unauthorized | ErrorCode::Forbidden | ErrorCode::NotFound
    )
}

impl ServiceOp<Identity> for CompleteLogin {
    async fn run(self, identity: Arc<Identity>, ctx: CallContext) -> Result<LoginCompleted, WireError> {
        identity.oidc.configured()?;
        let (user, pair, session_id, binding) = match complete_login(&identity, self).await {
            Ok(done) => done,
            Err(error) => {
                if is_refusal(&error) {
                    identity.record_failure(&ctx, "auth.sign_in_failed", &error).await;
                }
                return Err(error);
            }
        };
        let record = AuditRecord::new("auth.signed_in", "user", user.id.clone())
            .detail("sessionId", session_id.as_str())
            .detail("roles", user.roles.join(","));
        if let Err(error) = identity
            .record_as(user_actor(&user.id, &user.name), &ctx, record)
            .await
        {
            // No tokens leave without their sign-in on record.
            if let Err(e) = users::revoke_session(&identity.store, &session_id, "audit unavailable").await {
                tracing::warn!(error = %e, "could not revoke an unrecorded session");
            }
            return Err(error);
        }
        tracing::info!(user = %user.id, "signed in");
        Ok(LoginCompleted {
            signed_in: SignedIn {
                access_token: pair.access_token,
                refresh_token: pair.refresh_token,
                token_type: "Bearer".into(),
                expires_in: identity.tokens.access_ttl,
                user: user.to_user(),
            },
            opener_origin: match binding {
                LoginBinding::Opener { origin } => Some(origin),
                _ => None,
            },
        })
    }
}

/// Completes a sign-in: the pending login taken (consumed whatever follows), its client
/// binding checked, the code exchanged, the user stored, a session started (answered with its
/// first tokens, its id and the binding).
async fn complete_login(
    identity: &Identity,
    login: CompleteLogin,
) -> Result<(UserDoc, TokenPair, String, LoginBinding), WireError> {
    let pending = logins::take(&identity.store, &login.state)
        .await
        .map_err(login_failed)?;
    bound_client(&pending.binding, &login)?;
    if let Some(error) = &login.error {
        let code = safe_error_code(error);
        tracing::info!(
            error = code,
            "the identity provider answered the sign-in with an error"
        );
        return Err(WireError::new(
            ErrorCode::Unauthorized,
            format!("The identity provider refused the sign-in ({code})"),
        ));
    }
    let code = login
        .code
        .filter(|c| !c.is_empty() && c.len() <= 4096)
        .ok_or_else(|| {
            WireError::new(
                ErrorCode::Validation,
                "The redirect carries no authorization code",
            )
        })?;
    let person = identity
        .oidc
        .exchange(&code, &pending.pkce_verifier, &pending.nonce)
        .await?;
    let email = person
        .email
        .clone()
        .or_else(|| person.preferred_username.clone())
        .unwrap_or_default();
    let bootstrap = identity.bootstrap.matches(&person.tid, &person.oid, &email);
    let profile = SignInProfile {
        name: person.name.clone().unwrap_or_else(|| users::login_of(&email)),
        tid: person.tid,
        oid: person.oid,
        email,
        bootstrap_admin: bootstrap == users::Bootstrap::ById,
    };
    let user = users::upsert_signed_in_as(&identity.store, &profile, bootstrap)
        .await
        .map_err(store_failed)?;
    identity.user_changed(&user.id).await;
    let (pair, session_id) = users::start_session(&identity.store, &identity.tokens, &user)
        .await
        .map_err(store_failed)?;
    Ok((user, pair, session_id, pending.binding))
}

impl ServiceOp<Identity> for RefreshSession {
    async fn run(self, identity: Arc<Identity>, ctx: CallContext) -> Result<TokenPair, WireError> {
        match users::refresh(&identity.store, &identity.tokens, &self.token_hash).await {
            Ok(pair) => Ok(pair),
            Err(SessionError::Reused {
                session_id,
                user_id,
                user_name,
            }) => {
                // A stolen refresh token racing its owner: the whole session is revoked, on record.
                let record = AuditRecord::new("auth.refresh_reused", "session", session_id.clone())
                    .detail("revoked", "session");
                identity
                    .record_as(user_actor(&user_id, &user_name), &ctx, record)
                    .await?;
                Err(unauthorized())
            }
            Err(SessionError::Invalid) => {
                let error = unauthorized();
                identity.record_failure(&ctx, "auth.refresh_failed", &error).await;
                Err(error)
            }
            Err(other) => Err(session_failed(other)),
        }
    }
}

impl ServiceOp<Identity> for Logout {
    async fn run(self, identity: Arc<Identity>, ctx: CallContext) -> Result<LoggedOut, WireError> {
        let principal = user_principal(&ctx)?;
        let session_id = principal.session_id.clone().ok_or_else(unauthorized)?;
        users::revoke_session(&identity.store, &session_id, "logout")
            .await
            .map_err(store_failed)?;
        identity
            .record(
                &ctx,
                AuditRecord::new("auth.logged_out", "session", session_id.clone()),
            )
            .await?;
        Ok(LoggedOut { session_id })
    }
}

impl ServiceOp<Identity> for ResolveSession {
    async fn run(self, identity: Arc<Identity>, _: CallContext) -> Result<Principal, WireError> {
        let store = &identity.store;
        users::live_session(store, &self.session_id, &self.user_id)
            .await
            .map_err(store_failed)?
            .ok_or_else(unauthorized)?;
        let user = users::get_user(store, &self.user_id)
            .await
            .map_err(store_failed)?
            .ok_or_else(unauthorized)?;
        let permissions = permissions_of(store, &user.roles).await.map_err(store_failed)?;
        Ok(Principal {
            id: user.id,
            kind: PrincipalKind::User,
            name: user.name,
            permissions,
            scopes: USER_SCOPES.split(' ').map(str::to_owned).collect(),
            session_id: Some(self.session_id),
        })
    }
}

impl ServiceOp<Identity> for GetMe {
    async fn run(self, identity: Arc<Identity>, ctx: CallContext) -> Result<User, WireError> {
        let principal = user_principal(&ctx)?;
        if let Some(user) = identity.users.get(&principal.id) {
            return Ok(user.to_user());
        }
        let user = Arc::new(user_or_404(&identity.store, &principal.id).await?);
        identity.users.put(user.clone());
        Ok(user.to_user())
    }
}

/// Whether `c` can make text read differently from what it holds: a control character (new
/// lines, terminal escapes, NUL) or a bidirectional formatting character (RLO and friends).
fn spoofs_text(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Whether `text` is an absolute `https` URL of reasonable length.
pub fn is_https_url(text: &str) -> bool {
    text.len() <= 2048
        && url::Url::parse(text)
            .is_ok_and(|u| u.scheme() == "https" && u.host_str().is_some_and(|h| !h.is_empty()))
}

impl ServiceOp<Identity> for UpdateMe {
    async fn run(self, identity: Arc<Identity>, ctx: CallContext) -> Result<User, WireError> {
        let principal = user_principal(&ctx)?;
        let mut errors = Vec::new();
        let mut update = Update::default();
        if let Some(name) = &self.name {
            let name = name.trim();
            if name.is_empty() || name.chars().count() > 100 {
                errors.push(FieldError::new(
                    vec![json!("name")],
                    "A name is 1 to 100 characters",
                ));
            } else if name.chars().any(spoofs_text) {
                // A name lands in logs, audit entries and other people's screens.
                errors.push(FieldError::new(
                    vec![json!("name")],
                    "A name cannot hold control characters or text-direction overrides",
                ));
            } else {
                update = update.set("name", name);
            }
        }
        match &self.image {
            Some(Some(image)) if !is_https_url(image) => errors.push(FieldError::new(
                vec![json!("image")],
                "The image must be an https URL",
            )),
            Some(Some(image)) => update = update.set("image", image.as_str()),
            Some(None) => update = update.set("image", serde_json::Value::Null),
            None => {}
        }
        if !errors.is_empty() {
            return Err(WireError::validation(errors));
        }
        let user = identity.update_user(&principal.id, update).await?;
        // The display name is what audit entries and other people's screens show for this user.
        let mut record = AuditRecord::new("user.profile_updated", "user", user.id.clone())
            .detail("name", user.name.as_str());
        if let Some(image) = &user.image {
            record = record.detail("image", image.as_str());
        }
        identity.record(&ctx, record).await?;
        Ok(user)
    }
}

impl ServiceOp<Identity> for ListUsers {
    async fn run(self, identity: Arc<Identity>, _: CallContext) -> Result<UserPage, WireError> {
        let (found, total) = users::list_users(&identity.store, self.page, self.rpp, self.search.as_deref())
            .await
            .map_err(store_failed)?;
        Ok(UserPage {
            users: found.iter().map(UserDoc::to_user).collect(),
            total,
        })
    }
}

/// Sets a user's roles. Nobody changes their own; a caller grants or takes away only roles
/// whose permissions it holds entirely (so only holders of `*` grant `admin`).
impl ServiceOp<Identity> for SetUserRoles {
    async fn run(self, identity: Arc<Identity>, ctx: CallContext) -> Result<User, WireError> {
        let principal = ctx.principal()?;
        let user = user_or_404(&identity.store, &self.id).await?;
        if principal.kind == PrincipalKind::User && principal.id == user.id {
            return Err(WireError::new(
                ErrorCode::Forbidden,
                "You cannot change your own roles; ask another administrator",
            ));
        }
        let names = roles::existing_names(&identity.store, &self.roles, &user.roles).await?;
        roles::require_may_change(&identity.store, &principal.permissions, &user.roles, &names).await?;
        let updated = identity
            .update_user(&self.id, Update::default().set("roles", names.clone()))
            .await?;
        // A role deleted while this grant was being written is taken out again (it would grant
        // nothing anyway: its name is dead for good; see roles.rs).
        let dead = roles::deleted_meanwhile(&identity.store, &names).await?;
        let granted = |roles: &[String]| {
            AuditRecord::new("user.roles_updated", "user", user.id.clone())
                .detail("roles", roles.join(","))
                .detail("previous", user.roles.join(","))
        };
        if dead.is_empty() {
            identity.record(&ctx, granted(&names)).await?;
            return Ok(updated);
        }
        let live: Vec<String> = names.into_iter().filter(|n| !dead.contains(n)).collect();
        identity
            .update_user(&self.id, Update::default().set("roles", live.clone()))
            .await?;
        identity.record(&ctx, granted(&live)).await?;
        Err(WireError::new(
            ErrorCode::Conflict,
            format!(
                "Role '{}' was deleted while being granted; it was not granted",
                dead.join("', '")
            ),
        ))
    }
}

impl ServiceOp<Identity> for ListRoles {
    async fn run(self, identity: Arc<Identity>, _: CallContext) -> Result<Vec<Role>, WireError> {
        roles::list(&identity.store).await
    }
}

/// The entry for `action` on `role`: its name and permissions as they are now.
fn role_record(action: &'static str, role: &Role) -> AuditRecord {
    AuditRecord::new(action, "role", role.id.clone())
        .detail("name", role.name.as_str())
        .detail("permissions", role.permissions.join(","))
}

impl ServiceOp<Identity> for CreateRole {
    async fn run(self, identity: Arc<Identity>, ctx: CallContext) -> Result<Role, WireError> {
        let store = identity.store.clone();
        ttscm_runtime::idempotency::once_op(&store, ctx, "role.create", self, |op, ctx| {
            create_role(op, identity, ctx)
        })
        .await
    }
}

/// The create itself (run once per `Idempotency-Key`).
async fn create_role(op: CreateRole, identity: Arc<Identity>, ctx: CallContext) -> Result<Role, WireError> {
    let role = roles::create(&identity.store, &ctx.principal()?.permissions, op.input).await?;
    identity.record(&ctx, role_record("role.created", &role)).await?;
    Ok(role)
}

impl ServiceOp<Identity> for UpdateRole {
    async fn run(self, identity: Arc<Identity>, ctx: CallContext) -> Result<Role, WireError> {
        let role = roles::update(
            &identity.store,
            &ctx.principal()?.permissions,
            &self.id,
            self.input,
        )
        .await?;
        identity.record(&ctx, role_record("role.updated", &role)).await?;
        Ok(role)
    }
}

impl ServiceOp<Identity> for DeleteRole {
    async fn run(self, identity: Arc<Identity>, ctx: CallContext) -> Result<Role, WireError> {
        let role = roles::delete(&identity.store, &ctx.principal()?.permissions, &self.id).await?;
        identity.record(&ctx, role_record("role.deleted", &role)).await?;
        Ok(role)
    }
}
