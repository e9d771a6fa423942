//! API-token authentication and the public keys access tokens are verified with (the edge asks
//! for both). Stateless operations on [`Identity`]: the store decides, nothing is held here.

use std::sync::Arc;

use ttscm_contract::identity::{AuthenticateToken, AuthenticatedToken, GetPublicKeys, PublicKeys};
use ttscm_contract::{ErrorCode, Principal, PrincipalKind, WireError};
use ttscm_runtime::clock;
use ttscm_runtime::service::{CallContext, ServiceOp, store_failed};
use ttscm_runtime::store::{Filter, text, texts};

use crate::service::Identity;
use crate::store::{API_TOKENS, permissions_of};

fn unauthorized() -> WireError {
    WireError::new(ErrorCode::Unauthorized, "Unauthorized")
}

impl ServiceOp<Identity> for AuthenticateToken {
    async fn run(self, identity: Arc<Identity>, _: CallContext) -> Result<AuthenticatedToken, WireError> {
        let store = &identity.store;
        let token = store
            .find_one(API_TOKENS, Filter::eq("tokenHash", self.token_hash.as_str()))
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
        let permissions = permissions_of(store, &roles).await.map_err(store_failed)?;
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
    }
}

impl ServiceOp<Identity> for GetPublicKeys {
    async fn run(self, identity: Arc<Identity>, _: CallContext) -> Result<PublicKeys, WireError> {
        Ok(PublicKeys {
            issuer: identity.tokens.issuer.clone(),
            audience: identity.tokens.audience.clone(),
            keys: vec![identity.tokens.key.public_key()],
        })
    }
}
