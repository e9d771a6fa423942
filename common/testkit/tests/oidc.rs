//! The OpenID provider fixture: a full authorization-code flow with PKCE against a real
//! `oidc-provider`, and the Entra-shaped claims of its ID tokens.

use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::Value;
use ttscm_testkit::oidc::{self, OidcProvider, TEST_CLIENT_ID, TEST_CLIENT_SECRET, TEST_TENANT};
use url::Url;

const REDIRECT_URI: &str = "http://127.0.0.1:9/cb";

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).expect("random bytes");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// One relying-party authorization request: its URL and the secrets the RP keeps.
struct Request {
    url: String,
    state: String,
    nonce: String,
    verifier: String,
}

fn authorize_request(provider: &OidcProvider) -> Request {
    let (state, nonce, verifier) = (random_token(), random_token(), random_token());
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()));
    let mut url = Url::parse(&format!("{}/auth", provider.issuer)).expect("issuer URL");
    url.query_pairs_mut()
        .append_pair("client_id", TEST_CLIENT_ID)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid profile email")
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    Request {
        url: url.into(),
        state,
        nonce,
        verifier,
    }
}

fn query(url: &str) -> Vec<(String, String)> {
    Url::parse(url)
        .expect("absolute URL")
        .query_pairs()
        .into_owned()
        .collect()
}

fn param(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// Exchanges `code` at the token endpoint (`client_secret_post`); answers the response status
/// and body.
async fn exchange(provider: &OidcProvider, code: &str, verifier: &str) -> (u16, Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::Client::new()
        .post(format!("{}/token", provider.issuer))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(oidc::form_body(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("client_id", TEST_CLIENT_ID),
            ("client_secret", TEST_CLIENT_SECRET),
            ("code_verifier", verifier),
        ]))
        .send()
        .await
        .expect("token request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON token response"))
}

/// The ID token's payload (not verified: the test only looks at the claims).
fn id_token_claims(tokens: &Value) -> Value {
    let id_token = tokens["id_token"].as_str().expect("an id_token");
    let payload = id_token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON claims")
}

/// Signs in as `login` and answers the ID token's claims, checking the redirect on the way.
async fn sign_in_and_exchange(provider: &OidcProvider, login: &str) -> Value {
    let request = authorize_request(provider);
    let redirect = oidc::sign_in(&request.url, login).await;
    assert!(redirect.starts_with(&format!("{REDIRECT_URI}?")), "{redirect}");
    let pairs = query(&redirect);
    assert_eq!(param(&pairs, "state"), Some(request.state.clone()), "{redirect}");
    assert_eq!(param(&pairs, "iss"), Some(provider.issuer.clone()), "{redirect}");
    let code = param(&pairs, "code").unwrap_or_else(|| panic!("no code in {redirect}"));

    let (status, tokens) = exchange(provider, &code, &request.verifier).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer", "{tokens}");
    let claims = id_token_claims(&tokens);
    assert_eq!(claims["iss"], provider.issuer.as_str(), "{claims}");
    assert_eq!(claims["aud"], TEST_CLIENT_ID, "{claims}");
    assert_eq!(claims["nonce"], request.nonce.as_str(), "{claims}");

    // A code is good once.
    let (status, again) = exchange(provider, &code, &request.verifier).await;
    assert_eq!(
        (status, again["error"].as_str()),
        (400, Some("invalid_grant")),
        "{again}"
    );
    claims
}

#[tokio::test]
async fn code_flow_with_pkce_issues_entra_shaped_id_tokens() {
    let started = Instant::now();
    let provider = OidcProvider::start(&[REDIRECT_URI.to_owned()]);
    eprintln!("provider up in {:?} at {}", started.elapsed(), provider.issuer);
    assert!(
        provider.issuer.starts_with("http://127.0.0.1:"),
        "{}",
        provider.issuer
    );

    let claims = sign_in_and_exchange(&provider, "alice").await;
    assert_eq!(claims["sub"], "alice", "{claims}");
    assert_eq!(claims["oid"], oidc::object_id("alice").as_str(), "{claims}");
    assert_eq!(claims["tid"], TEST_TENANT, "{claims}");
    assert_eq!(claims["name"], "Alice", "{claims}");
    assert_eq!(claims["preferred_username"], "alice@contoso.example", "{claims}");
    assert_eq!(claims["email"], "alice@contoso.example", "{claims}");

    let claims = sign_in_and_exchange(&provider, "noemail1").await;
    assert_eq!(
        claims["preferred_username"], "noemail1@contoso.example",
        "{claims}"
    );
    assert_eq!(claims["tid"], TEST_TENANT, "{claims}");
    assert_eq!(claims["oid"], oidc::object_id("noemail1").as_str(), "{claims}");
    assert!(claims.get("email").is_none(), "{claims}");
    assert_ne!(oidc::object_id("alice"), oidc::object_id("noemail1"));
}

#[tokio::test]
async fn rejected_and_aborted_requests_redirect_with_an_error() {
    let provider = OidcProvider::start(&[REDIRECT_URI.to_owned()]);

    // The user cancels on the login page.
    let request = authorize_request(&provider);
    let redirect = oidc::abort(&request.url).await;
    let pairs = query(&redirect);
    assert!(redirect.starts_with(&format!("{REDIRECT_URI}?")), "{redirect}");
    assert_eq!(
        param(&pairs, "error").as_deref(),
        Some("access_denied"),
        "{redirect}"
    );
    assert_eq!(param(&pairs, "state"), Some(request.state), "{redirect}");

    // PKCE is required.
    let request = authorize_request(&provider);
    let mut url = Url::parse(&request.url).expect("URL");
    let without_pkce: Vec<(String, String)> = url
        .query_pairs()
        .into_owned()
        .filter(|(k, _)| !k.starts_with("code_challenge"))
        .collect();
    url.query_pairs_mut().clear().extend_pairs(without_pkce);
    let redirect = oidc::sign_in(url.as_str(), "alice").await;
    let pairs = query(&redirect);
    assert_eq!(
        param(&pairs, "error").as_deref(),
        Some("invalid_request"),
        "{redirect}"
    );
    assert_eq!(param(&pairs, "state"), Some(request.state), "{redirect}");
}

#[test]
fn object_ids_are_version_8_uuids() {
    let oid = oidc::object_id("alice");
    assert_eq!(oid.len(), 36);
    assert_eq!(&oid[14..15], "8", "{oid}");
    assert!(matches!(&oid[19..20], "8" | "9" | "a" | "b"), "{oid}");
    assert_eq!(oid, oidc::object_id("alice"));
}

#[test]
fn browser_harness_signs_in_through_the_popup() {
    let screenshots = tempfile::tempdir().expect("temp dir");
    let result = oidc::browser_self_test(screenshots.path());
    assert_eq!(result["popupClosed"], true, "{result}");
    assert_eq!(result["message"]["type"], "authenticated", "{result}");
    assert_eq!(
        result["message"]["user"]["oid"],
        oidc::object_id("alice").as_str(),
        "{result}"
    );
    assert!(result["error"].is_null(), "{result}");
    let screenshot = result["screenshot"].as_str().expect("a screenshot path");
    assert!(std::path::Path::new(screenshot).is_file(), "{result}");
}

#[tokio::test]
async fn select_account_prompt_is_tolerated_like_entra() {
    let provider = OidcProvider::start(&[REDIRECT_URI.to_owned()]);
    let request = authorize_request(&provider);
    let url = format!("{}&prompt=select_account", request.url);
    let redirect = oidc::sign_in(&url, "bob").await;
    let pairs = query(&redirect);
    let code = param(&pairs, "code").unwrap_or_else(|| panic!("no code in {redirect}"));
    let (status, tokens) = exchange(&provider, &code, &request.verifier).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(id_token_claims(&tokens)["sub"], "bob");
}
