//! Authentication at the edge: bearer API tokens (resolved by identity, by hash) and access
//! tokens (JWTs verified locally with identity's published Ed25519 keys).
//!
//! Both are cached until they expire or for `token_cache_secs` (default 5 s), whichever is
//! sooner, so the hot path is a hash and a map lookup, and a revoked token, a signed-out
//! session or a changed role stops working within seconds: an access token's principal is
//! resolved by identity from its session (`sid`, must be live) and the user's current roles. JWT checks: algorithm pinned to EdDSA, `kid` known, `iss`,
//! `aud`, `exp`, `nbf` and `typ` (= `access`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::time::Instant;
use ttscm_contract::identity::{
    ACCESS_TOKEN_TYPE, AccessClaims, AuthenticateToken, GetPublicKeys, ResolveSession,
};
use ttscm_contract::token::{TokenDigest, is_api_token, token_digest};
use ttscm_contract::{ErrorCode, Principal, WireError};
use ttscm_runtime::cache::Cache;
use ttscm_runtime::principal::MAX_SIGNED_REUSE;
use ttscm_runtime::service::{BusClient, CallContext};

/// Lowercase hex SHA-256 (also of sign-in callback keys).
pub(crate) use ttscm_contract::token::token_hash as sha256_hex;

/// Tokens longer than this are refused before any parsing (absurd headers).
const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Entries kept per cache (bounds memory under token spraying; see [`Cache`] for what goes
/// when it is full).
const MAX_CACHE_ENTRIES: usize = 100_000;
/// How often an unknown `kid` may trigger a key refresh.
const KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 5;

struct KeySet {
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
    fetched: Instant,
}

/// A resolved caller with its bus-header encoding, computed once per cache entry.
#[derive(Debug)]
pub struct Authenticated {
    /// The caller.
    pub principal: Arc<Principal>,
    /// `principal` as the bus header carries it.
    pub header: Arc<str>,
}

impl Authenticated {
    /// `principal` with its header as `bus` carries it (signed by the edge in the mesh).
    fn new(bus: &ttscm_runtime::Bus, principal: Principal) -> Arc<Self> {
        let header = bus.principal_header(&principal).into();
        Arc::new(Self {
            principal: Arc::new(principal),
            header,
        })
    }
}

/// Callers by the SHA-256 of their token (never the token itself; hex-encoded only when it goes
/// to identity).
type TokenCache = Cache<TokenDigest, Arc<Authenticated>>;

/// Resolves bearer tokens to principals, with short-lived caches.
pub struct Authenticator {
    client: BusClient,
    /// SHA-256 of API token → principal.
    api_tokens: TokenCache,
    /// SHA-256 of access token → principal.
    access_tokens: TokenCache,
    keys: tokio::sync::RwLock<Option<KeySet>>,
}

/// What [`Authenticator::authenticate`] found out about a token, for its metric.
struct Checked {
    /// `api_token`, `access_token`, or `none` (no bearer token at all).
    kind: &'static str,
    /// A fresh cache entry answered.
    cached: bool,
}

fn unauthorized() -> WireError {
    WireError::new(ErrorCode::Unauthorized, "Unauthorized")
}

impl Authenticator {
    /// An authenticator calling identity through `client`.
    /// `ttl` is capped at [`MAX_SIGNED_REUSE`]: a cached caller's signed principal header must
    /// outlive the requests that carry it.
    pub fn new(client: BusClient, ttl: Duration) -> Self {
        let ttl = ttl.min(MAX_SIGNED_REUSE);
        Self {
            client,
            api_tokens: Cache::new(ttl, MAX_CACHE_ENTRIES),
            access_tokens: Cache::new(ttl, MAX_CACHE_ENTRIES),
            keys: tokio::sync::RwLock::new(None),
        }
    }

    /// The principal behind an `Authorization` header value, or 401 (503/504 when identity
    /// cannot be asked). Counted in `ttscm_token_verifications_total` by kind and outcome.
    pub async fn authenticate(
        &self,
        ctx: &CallContext,
        authorization: Option<&str>,
    ) -> Result<Arc<Authenticated>, WireError> {
        let mut checked = Checked {
            kind: "none",
            cached: false,
        };
        let resolved = self.resolve(ctx, authorization, &mut checked).await;
        let outcome = match &resolved {
            Ok(_) if checked.cached => "cached",
            Ok(_) => "accepted",
            Err(error) if error.code == ErrorCode::Unauthorized => "refused",
            Err(_) => "failed",
        };
        ttscm_runtime::metrics::token_verification(checked.kind, outcome);
        resolved
    }

    async fn resolve(
        &self,
        ctx: &CallContext,
        authorization: Option<&str>,
        checked: &mut Checked,
    ) -> Result<Arc<Authenticated>, WireError> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_LEN)
            .ok_or_else(unauthorized)?;
        let key = token_digest(token);
        if is_api_token(token) {
            checked.kind = "api_token";
            if let Some(principal) = self.api_tokens.get(&key) {
                checked.cached = true;
                return Ok(principal);
            }
            let resolved = self
                .client
                .call(
                    ctx,
                    &AuthenticateToken {
                        token_hash: hex::encode(key),
                    },
                )
                .await?;
            // Cached for the cache's time, or until the token expires if that is sooner.
            let left = resolved
                .expires_at
                .as_deref()
                .and_then(ttscm_runtime::clock::parse_iso)
                .map_or(Duration::MAX, |expiry| {
                    let left = (expiry - time::OffsetDateTime::now_utc()).max(time::Duration::ZERO);
                    Duration::try_from(left).unwrap_or_default()
                });
            let principal = Authenticated::new(self.client.bus(), resolved.principal);
            self.api_tokens.insert_for(key, principal.clone(), left);
            return Ok(principal);
        }
        checked.kind = "access_token";
        if let Some(principal) = self.access_tokens.get(&key) {
            checked.cached = true;
            return Ok(principal);
        }
        // A sign-out (`forget`) while this resolves must not be undone by caching the answer.
        let since = self.access_tokens.generation();
        let claims = self.verify_jwt(ctx, token).await?;
        if claims.sid.is_empty() {
            return Err(unauthorized());
        }
        // The session must still be live, and the user's roles as of now decide permissions.
        let mut resolved: Principal = self
            .client
            .call(
                ctx,
                &ResolveSession {
                    user_id: claims.sub.clone(),
                    session_id: claims.sid.clone(),
                },
            )
            .await?;
        resolved.scopes = claims.scope.split_whitespace().map(str::to_owned).collect();
        let principal = Authenticated::new(self.client.bus(), resolved);
        let left = claims.exp.saturating_sub(ttscm_runtime::clock::unix_now());
        self.access_tokens.insert_for_unless_changed(
            since,
            key,
            principal.clone(),
            Duration::from_secs(left),
        );
        Ok(principal)
    }

    /// Forgets a token at once (after sign-out on this replica; others forget it within the
    /// cache time).
    pub fn forget(&self, authorization: Option<&str>) {
        if let Some(token) =
            authorization.and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        {
            self.access_tokens.remove(&token_digest(token.trim()));
        }
    }

    async fn verify_jwt(&self, ctx: &CallContext, token: &str) -> Result<AccessClaims, WireError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| unauthorized())?;
        if header.alg != Algorithm::EdDSA {
            return Err(unauthorized());
        }
        let kid = header.kid.ok_or_else(unauthorized)?;
        self.refresh_keys_if_unknown(ctx, &kid).await?;
        let keys = self.keys.read().await;
        let set = keys.as_ref().ok_or_else(unauthorized)?;
        let key = set.keys.get(&kid).ok_or_else(unauthorized)?;
        let data =
            jsonwebtoken::decode::<AccessClaims>(token, key, &set.validation).map_err(|_| unauthorized())?;
        if data.claims.typ != ACCESS_TOKEN_TYPE {
            return Err(unauthorized());
        }
        Ok(data.claims)
    }

    async fn refresh_keys_if_unknown(&self, ctx: &CallContext, kid: &str) -> Result<(), WireError> {
        {
            let keys = self.keys.read().await;
            if let Some(set) = keys.as_ref()
                && (set.keys.contains_key(kid) || set.fetched.elapsed() < KEY_REFRESH_INTERVAL)
            {
                return Ok(());
            }
        }
        let published = self.client.call(ctx, &GetPublicKeys {}).await?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[published.issuer.as_str()]);
        validation.set_audience(&[published.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        let keys = published
            .keys
            .iter()
            .filter(|k| k.alg == "EdDSA")
            .filter_map(|k| {
                DecodingKey::from_ed_components(&k.x)
                    .ok()
                    .map(|d| (k.kid.clone(), d))
            })
            .collect();
        *self.keys.write().await = Some(KeySet {
            keys,
            validation,
            fetched: Instant::now(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use ttscm_contract::PrincipalKind;
    use ttscm_contract::identity::AuthenticatedToken;
    use ttscm_runtime::Bus;
    use ttscm_runtime::bus::inproc::InProcBus;

    use super::*;

    const TTL: Duration = Duration::from_secs(5);

    /// An authenticator whose identity answers every API token with a principal expiring
    /// `expires_in` from now (wall clock) or never, counting the calls.
    async fn authenticator(expires_in: Option<time::Duration>) -> (Authenticator, Arc<AtomicUsize>) {
        let bus = Bus::InProc(InProcBus::new());
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        ttscm_runtime::service::serve_fn::<AuthenticateToken, _, _>(
            &bus,
            "identity",
            ttscm_runtime::Shutdown::new(),
            move |_, _| {
                counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    Ok(AuthenticatedToken {
                        principal: Principal {
                            id: "t1".into(),
                            kind: PrincipalKind::ApiToken,
                            name: "ci".into(),
                            permissions: Default::default(),
                            scopes: Vec::new(),
                            session_id: None,
                        },
                        expires_at: expires_in.map(|left| {
                            ttscm_runtime::clock::format_iso(time::OffsetDateTime::now_utc() + left)
                        }),
                    })
                }
            },
        )
        .await
        .expect("served");
        (Authenticator::new(BusClient::new(bus, TTL), TTL), calls)
    }

    async fn authenticate(authenticator: &Authenticator) -> Arc<Authenticated> {
        authenticator
            .authenticate(&CallContext::new(None), Some("Bearer ttscm_token"))
            .await
            .expect("authenticated")
    }

    #[tokio::test(start_paused = true)]
    async fn an_api_token_is_asked_for_again_once_the_cache_time_has_passed() {
        let (authenticator, calls) = authenticator(None).await;
        let first = authenticate(&authenticator).await;
        let second = authenticate(&authenticator).await;
        assert!(
            Arc::ptr_eq(&first, &second),
            "the second answer is the cached one"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(TTL - Duration::from_millis(1)).await;
        authenticate(&authenticator).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(authenticate(&authenticator).await.principal.id, "t1");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_api_token_expiring_sooner_than_the_cache_time_is_cached_only_until_it_expires() {
        let (authenticator, calls) = authenticator(Some(time::Duration::seconds(2))).await;
        authenticate(&authenticator).await;
        authenticate(&authenticator).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        authenticate(&authenticator).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "asked again after 2 s, not 5");
    }
}
