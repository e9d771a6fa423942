//! The OpenID Connect client for Microsoft Entra ID (crate `openidconnect`): authorization URLs
//! with PKCE (S256) and a nonce, the code exchange (client secret in the body,
//! `client_secret_post`), and ID-token verification (signature with the provider's published
//! keys, issuer, audience, expiry, nonce).
//!
//! Provider metadata (discovery document + keys) is fetched on first use and kept for an hour;
//! an ID token whose key is not known yet refetches it once, so the provider's key rollover
//! needs no restart. HTTP goes through the workspace's reqwest 0.13 with redirects off (SSRF
//! guidance of `openidconnect`), via a small adapter (see `shared/deps.md`).
//!
//! Multi-tenant mode (an allowlist of tenant ids and no fixed tenant) uses the `organizations`
//! authority, whose discovery document names the literal issuer template
//! `https://login.microsoftonline.com/{tenantid}/v2.0`: there the metadata is read without the
//! issuer check, the verifier skips its issuer match, and [`check_tenant_issuer`] accepts only
//! `https://login.microsoftonline.com/{tid}/v2.0` with `tid` in the allowlist.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreTokenResponse};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
// tokio's clock: tests can pause it.
use tokio::time::Instant;
use ttscm_contract::{ErrorCode, WireError};
use ttscm_runtime::settings::EntraSettings;

/// Microsoft's authority host.
const ENTRA_AUTHORITY: &str = "https://login.microsoftonline.com";
/// How long fetched provider metadata is used before it is fetched again.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// Metadata younger than this is not refetched when a token's key is unknown.
const METADATA_MIN_AGE_FOR_REFRESH: Duration = Duration::from_secs(10);

/// Why a sign-in step failed.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// Sign-in is not configured; the message names the missing settings.
    #[error("{0}")]
    NotConfigured(String),
    /// The provider could not be reached or answered nonsense.
    #[error("the identity provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the code (expired, reused, PKCE mismatch, bad client secret…).
    #[error("the identity provider rejected the sign-in: {0}")]
    Rejected(String),
    /// The ID token failed verification (signature, issuer, audience, expiry, nonce, tenant).
    #[error("the ID token failed verification: {0}")]
    InvalidIdToken(String),
}

impl From<OidcError> for WireError {
    fn from(error: OidcError) -> Self {
        match error {
            OidcError::NotConfigured(message) => WireError::new(ErrorCode::Unavailable, message),
            OidcError::Unavailable(cause) => {
                tracing::warn!(%cause, "identity provider unavailable");
                WireError::new(ErrorCode::Unavailable, "The identity provider is unavailable")
            }
            OidcError::Rejected(cause) => {
                tracing::info!(%cause, "identity provider rejected a sign-in");
                WireError::new(
                    ErrorCode::Unauthorized,
                    "The identity provider rejected the sign-in; please sign in again",
                )
            }
            OidcError::InvalidIdToken(cause) => {
                tracing::warn!(%cause, "ID token failed verification");
                WireError::new(
                    ErrorCode::Unauthorized,
                    "The identity provider's answer failed verification; please sign in again",
                )
            }
        }
    }
}

/// What identity learns about the person from a verified ID token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPerson {
    /// Tenant id (`tid`).
    pub tid: String,
    /// Object id in the tenant (`oid`).
    pub oid: String,
    /// `name`.
    pub name: Option<String>,
    /// `email`.
    pub email: Option<String>,
    /// `preferred_username`.
    pub preferred_username: Option<String>,
}

/// An authorization request to send the browser to.
#[derive(Debug)]
pub struct AuthRequest {
    /// The provider's authorization URL.
    pub url: String,
    /// The PKCE verifier, kept with the pending login.
    pub pkce_verifier: String,
    /// The nonce, kept with the pending login.
    pub nonce: String,
}

struct Config {
    issuer: String,
    client_id: String,
    client_secret: SecretString,
    redirect_url: RedirectUrl,
    /// Non-empty in multi-tenant mode.
    allowed_tenants: Vec<String>,
}

/// The OpenID Connect client; cheap to share behind an `Arc`.
pub struct Oidc {
    config: Result<Config, String>,
    http: reqwest::Client,
    metadata: tokio::sync::RwLock<Option<(CoreProviderMetadata, Instant)>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.config.as_ref().map(|c| c.issuer.as_str()))
            .finish_non_exhaustive()
    }
}

/// The adapter from `openidconnect`'s HTTP requests to reqwest 0.13.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Transport or protocol failure.
    #[error(transparent)]
    Reqwest(#[from] reqwest::Error),
    /// The response could not be rebuilt.
    #[error(transparent)]
    Http(#[from] openidconnect::http::Error),
}

async fn send(
    client: reqwest::Client,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, HttpError> {
    let response = client.execute(reqwest::Request::try_from(request)?).await?;
    let mut builder = openidconnect::http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    Ok(builder.body(response.bytes().await?.to_vec())?)
}

impl Oidc {
    /// A client for the configured provider (or one that explains what is missing).
    pub fn new(settings: &EntraSettings) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .expect("the HTTP client builds (the rustls provider is installed at start)");
        Self {
            config: Self::config(settings),
            http,
            metadata: tokio::sync::RwLock::new(None),
        }
    }

    fn config(settings: &EntraSettings) -> Result<Config, String> {
        let mut missing = Vec::new();
        let multi_tenant = settings.tenant_id.is_none() && !settings.allowed_tenants.is_empty();
        let issuer = match (&settings.issuer, &settings.tenant_id) {
            (Some(issuer), _) => Some(issuer.trim_end_matches('/').to_owned()),
            (None, Some(tenant)) => Some(format!("{ENTRA_AUTHORITY}/{tenant}/v2.0")),
            (None, None) if multi_tenant => Some(format!("{ENTRA_AUTHORITY}/organizations/v2.0")),
            (None, None) => {
                missing.push("TTSCM_ENTRA__TENANT_ID (or TTSCM_ENTRA__ALLOWED_TENANTS)");
                None
            }
        };
        if settings.client_id.is_none() {
            missing.push("TTSCM_ENTRA__CLIENT_ID");
        }
        if settings.client_secret.is_none() {
            missing.push("TTSCM_ENTRA__CLIENT_SECRET");
        }
        if settings.redirect_url.is_none() {
            missing.push("TTSCM_ENTRA__REDIRECT_URL");
        }
        if !missing.is_empty() {
            return Err(format!("Sign-in is not configured: set {}", missing.join(", ")));
        }
        let redirect_url = RedirectUrl::new(settings.redirect_url.clone().unwrap_or_default())
            .map_err(|_| "Sign-in is not configured: TTSCM_ENTRA__REDIRECT_URL is not a URL".to_owned())?;
        Ok(Config {
            issuer: issuer.unwrap_or_default(),
            client_id: settings.client_id.clone().unwrap_or_default(),
            client_secret: settings
                .client_secret
                .clone()
                .unwrap_or_else(|| SecretString::from("")),
            redirect_url,
            allowed_tenants: if multi_tenant {
                settings.allowed_tenants.clone()
            } else {
                Vec::new()
            },
        })
    }

    /// Whether sign-in is configured (else [`OidcError::NotConfigured`] everywhere).
    pub fn configured(&self) -> Result<(), OidcError> {
        self.config
            .as_ref()
            .map(|_| ())
            .map_err(|m| OidcError::NotConfigured(m.clone()))
    }

    fn cfg(&self) -> Result<&Config, OidcError> {
        self.config
            .as_ref()
            .map_err(|m| OidcError::NotConfigured(m.clone()))
    }

    async fn fetch_metadata(&self, config: &Config) -> Result<CoreProviderMetadata, OidcError> {
        let unavailable = |e: &dyn std::fmt::Display| OidcError::Unavailable(e.to_string());
        let issuer = IssuerUrl::new(config.issuer.clone()).map_err(|e| unavailable(&e))?;
        let http = |request| send(self.http.clone(), request);
        if config.allowed_tenants.is_empty() {
            return CoreProviderMetadata::discover_async(issuer, &http)
                .await
                .map_err(|e| unavailable(&e));
        }
        // Multi-tenant: the discovery document's issuer is a template; read it without the
        // issuer check (tokens are checked against the tenant allowlist instead), then its keys.
        let url = format!("{}/.well-known/openid-configuration", config.issuer);
        let document = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| unavailable(&e))?
            .bytes()
            .await
            .map_err(|e| unavailable(&e))?;
        let metadata: CoreProviderMetadata =
            serde_json::from_slice(&document).map_err(|e| unavailable(&e))?;
        let keys = openidconnect::JsonWebKeySet::fetch_async(metadata.jwks_uri(), &http)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(metadata.set_jwks(keys))
    }

    async fn metadata(&self, config: &Config, refresh: bool) -> Result<CoreProviderMetadata, OidcError> {
        {
            let cached = self.metadata.read().await;
            if let Some((metadata, at)) = cached.as_ref() {
                let fresh = at.elapsed() < METADATA_TTL;
                let too_young_to_refresh = at.elapsed() < METADATA_MIN_AGE_FOR_REFRESH;
                if (fresh && !refresh) || (refresh && too_young_to_refresh) {
                    return Ok(metadata.clone());
                }
            }
        }
        let metadata = self.fetch_metadata(config).await?;
        *self.metadata.write().await = Some((metadata.clone(), Instant::now()));
        Ok(metadata)
    }

    fn client(config: &Config, metadata: CoreProviderMetadata) -> CoreClientSet {
        CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(config.client_id.clone()),
            Some(ClientSecret::new(config.client_secret.expose_secret().to_owned())),
        )
        .set_auth_type(openidconnect::AuthType::RequestBody)
        .set_redirect_uri(config.redirect_url.clone())
    }

    /// An authorization request whose `state` is `state`.
    pub async fn authorize(&self, state: &str, select_account: bool) -> Result<AuthRequest, OidcError> {
        let config = self.cfg()?;
        let client = Self::client(config, self.metadata(config, false).await?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = state.to_owned();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                Nonce::new_random,
            )
            .add_scope(Scope::new("profile".into()))
            .add_scope(Scope::new("email".into()))
            .set_pkce_challenge(challenge);
        if select_account {
            // The person picks the account, rather than a session silently finishing it.
            request = request.add_prompt(openidconnect::core::CoreAuthPrompt::SelectAccount);
        }
        let (url, _, nonce) = request.url();
        Ok(AuthRequest {
            url: url.to_string(),
            pkce_verifier: verifier.secret().clone(),
            nonce: nonce.secret().clone(),
        })
    }

    /// Exchanges `code` (with the login's PKCE verifier) and verifies the ID token against
    /// `nonce`.
    pub async fn exchange(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<VerifiedPerson, OidcError> {
        let config = self.cfg()?;
        let metadata = self.metadata(config, false).await?;
        let client = Self::client(config, metadata);
        let http = |request| send(self.http.clone(), request);
        let response: CoreTokenResponse = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Unavailable(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&http)
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(response) => {
                    OidcError::Rejected(response.error().to_string())
                }
                other => OidcError::Unavailable(other.to_string()),
            })?;
        let id_token = response
            .id_token()
            .ok_or_else(|| OidcError::InvalidIdToken("the token response has no ID token".into()))?;
        let nonce = Nonce::new(nonce.to_owned());
        let verify = |client: &CoreClientSet| {
            let verifier = client
                .id_token_verifier()
                .require_issuer_match(config.allowed_tenants.is_empty());
            id_token.claims(&verifier, &nonce).map(|_| ())
        };
        match verify(&client) {
            Ok(()) => {}
            Err(ClaimsVerificationError::SignatureVerification(_)) => {
                // Perhaps the provider rolled its keys: fetch them again once.
                let client = Self::client(config, self.metadata(config, true).await?);
                verify(&client).map_err(|e| OidcError::InvalidIdToken(e.to_string()))?;
            }
            Err(other) => return Err(OidcError::InvalidIdToken(other.to_string())),
        }
        // The token is verified; read the Entra claims `openidconnect`'s core types drop.
        let payload = payload_of(&id_token.to_string())?;
        let text = |key: &str| payload.get(key).and_then(Value::as_str).map(str::to_owned);
        let person = VerifiedPerson {
            tid: text("tid").ok_or_else(|| OidcError::InvalidIdToken("no tid claim".into()))?,
            oid: text("oid").ok_or_else(|| OidcError::InvalidIdToken("no oid claim".into()))?,
            name: text("name"),
            email: text("email"),
            preferred_username: text("preferred_username"),
        };
        if !config.allowed_tenants.is_empty() {
            check_tenant_issuer(
                &text("iss").unwrap_or_default(),
                &person.tid,
                &config.allowed_tenants,
            )?;
        }
        Ok(person)
    }
}

type CoreClientSet = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

fn payload_of(jwt: &str) -> Result<Value, OidcError> {
    let bad = || OidcError::InvalidIdToken("the ID token's payload cannot be read".into());
    let payload = jwt.split('.').nth(1).ok_or_else(bad)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| bad())?;
    serde_json::from_slice(&bytes).map_err(|_| bad())
}

/// Multi-tenant issuer check: `iss` must be Entra's issuer for the token's own `tid`, and `tid`
/// must be allowed.
pub fn check_tenant_issuer(iss: &str, tid: &str, allowed: &[String]) -> Result<(), OidcError> {
    if !allowed.iter().any(|t| t.eq_ignore_ascii_case(tid)) {
        return Err(OidcError::InvalidIdToken(format!("tenant {tid} is not allowed")));
    }
    if iss != format!("{ENTRA_AUTHORITY}/{tid}/v2.0") {
        return Err(OidcError::InvalidIdToken(
            "the issuer does not match the token's tenant".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "11111111-2222-3333-4444-555555555555";

    #[test]
    fn multi_tenant_issuer_must_match_an_allowed_tid() {
        let allowed = vec![T1.to_owned()];
        let iss = format!("{ENTRA_AUTHORITY}/{T1}/v2.0");
        assert!(check_tenant_issuer(&iss, T1, &allowed).is_ok());
        assert!(check_tenant_issuer(&iss, "99999999-2222-3333-4444-555555555555", &allowed).is_err());
        let other = format!("{ENTRA_AUTHORITY}/99999999-2222-3333-4444-555555555555/v2.0");
        assert!(check_tenant_issuer(&other, T1, &allowed).is_err());
        assert!(check_tenant_issuer("https://evil.example/v2.0", T1, &allowed).is_err());
    }

    #[test]
    fn missing_settings_are_named() {
        let Err(message) = Oidc::config(&EntraSettings::default()) else {
            panic!("unconfigured sign-in must say so")
        };
        for name in ["TENANT_ID", "CLIENT_ID", "CLIENT_SECRET", "REDIRECT_URL"] {
            assert!(message.contains(name), "{message} names {name}");
        }
    }

    #[test]
    fn a_tenant_id_gives_entras_issuer_and_an_allowlist_alone_means_multi_tenant() {
        let mut settings = EntraSettings {
            tenant_id: Some(T1.into()),
            client_id: Some("c".into()),
            client_secret: Some(SecretString::from("s")),
            redirect_url: Some("https://ttscm.example/v1/auth/redirect".into()),
            ..EntraSettings::default()
        };
        let config = Oidc::config(&settings).expect("configured");
        assert_eq!(config.issuer, format!("{ENTRA_AUTHORITY}/{T1}/v2.0"));
        assert!(config.allowed_tenants.is_empty());
        settings.tenant_id = None;
        settings.allowed_tenants = vec![T1.into()];
        let config = Oidc::config(&settings).expect("configured");
        assert_eq!(config.issuer, format!("{ENTRA_AUTHORITY}/organizations/v2.0"));
        assert_eq!(config.allowed_tenants, vec![T1.to_owned()]);
    }
}
