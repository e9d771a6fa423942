//! The identity actor: owns the signing key and answers token and role questions.

use actix::{Actor, Context, Handler};
use ttscm_contract::identity::{AuthenticateToken, AuthenticatedToken, GetPublicKeys, PublicKeys};
use ttscm_contract::{ErrorCode, Principal, PrincipalKind, WireError};
use ttscm_runtime::service::{Call, respond, store_failed};
use ttscm_runtime::store::{Filter, text, texts};
use ttscm_runtime::{Settings, Store, clock};

use crate::SigningKey;
use crate::store::{API_TOKENS, permissions_of};

/// State of the identity service.
pub struct IdentityActor {
    /// identity's collections.
    store: Store,
    /// Signs access tokens; its public half is published to the edge.
    signing_key: SigningKey,
    /// Expected `iss` of access tokens.
    issuer: String,
    /// Expected `aud` of access tokens.
    audience: String,
}

impl IdentityActor {
    /// A new actor.
    pub fn new(store: Store, signing_key: SigningKey, settings: &Settings) -> Self {
        Self {
            store,
            signing_key,
            issuer: settings.identity.issuer.clone(),
            audience: settings.identity.audience.clone(),
        }
    }
}

impl Actor for IdentityActor {
    type Context = Context<Self>;
}

fn unauthorized() -> WireError {
    WireError::new(ErrorCode::Unauthorized, "Unauthorized")
}

impl Handler<Call<AuthenticateToken>> for IdentityActor {
    type Result = actix::ResponseFuture<Result<AuthenticatedToken, WireError>>;

    fn handle(&mut self, call: Call<AuthenticateToken>, _: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        respond(async move {
            let token = store
                .find_one(API_TOKENS, Filter::eq("tokenHash", call.op.token_hash.as_str()))
                .await
                .map_err(store_failed)?
                .ok_or_else(unauthorized)?;
            if token.get("revokedAt").is_some_and(|v| !v.is_null()) {
                return Err(unauthorized());
            }
            let expires_at = token.get("expiresAt").and_then(|v| v.as_str()).map(str::to_owned);
            if let Some(expiry) = expires_at.as_deref().and_then(clock::parse_iso)
                && expiry <= time::OffsetDateTime::now_utc()
            {
                return Err(unauthorized());
            }
            let roles = texts(&token, "roles");
            let permissions = permissions_of(&store, &roles).await.map_err(store_failed)?;
            let text = |key: &str| text(&token, key);
            Ok(AuthenticatedToken {
                principal: Principal {
                    id: text("id"),
                    kind: PrincipalKind::ApiToken,
                    name: text("name"),
                    permissions,
                    scopes: Vec::new(),
                    session_id: None,
                },
                expires_at,
            })
        })
    }
}

impl Handler<Call<GetPublicKeys>> for IdentityActor {
    type Result = Result<PublicKeys, WireError>;

    fn handle(&mut self, _: Call<GetPublicKeys>, _: &mut Self::Context) -> Self::Result {
        Ok(PublicKeys {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            keys: vec![self.signing_key.public_key()],
        })
    }
}
