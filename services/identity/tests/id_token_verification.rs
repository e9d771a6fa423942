//! ID-token verification of the OIDC client against a provider stand-in (wiremock) whose keys
//! the test controls: a token signed with the published key passes; one signed with another
//! key under the same `kid`, one with the wrong nonce, issuer or audience, or an expired one is
//! refused. (The end-to-end sign-in tests use the real `oidc-provider`; it cannot be made to
//! sign with a wrong key, hence this test.) The RSA keys in `fixtures/` are test-only.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::SecretString;
use serde_json::json;
use ttscm_identity::oidc::{Oidc, OidcError};
use ttscm_runtime::settings::EntraSettings;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY_A: &[u8] = include_bytes!("fixtures/key_a.pem");
const KEY_B: &[u8] = include_bytes!("fixtures/key_b.pem");
const JWKS_A: &str = include_str!("fixtures/jwks_a.json");
const CLIENT: &str = "client-1";
const NONCE: &str = "nonce-1";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// A provider stand-in whose token endpoint answers the ID token `build` makes for its issuer.
async fn provider(build: impl FnOnce(&str) -> String) -> MockServer {
    let server = MockServer::start().await;
    let issuer = server.uri();
    let id_token = build(&issuer);
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/jwks"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(JWKS_A, "application/json"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "opaque", "token_type": "Bearer", "expires_in": 3600, "id_token": id_token,
        })))
        .mount(&server)
        .await;
    server
}

fn claims(issuer: &str) -> serde_json::Value {
    json!({
        "iss": issuer, "aud": CLIENT, "sub": "s1", "oid": "oid-1", "tid": "tid-1", "name": "Alice",
        "preferred_username": "alice@contoso.example", "nonce": NONCE,
        "iat": now(), "nbf": now(), "exp": now() + 600,
    })
}

fn sign(key: &[u8], claims: &serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("a".into());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(key).expect("test key"),
    )
    .expect("signs")
}

/// Runs the code exchange against a provider answering the token `build` makes.
async fn exchange(build: impl FnOnce(&str) -> String) -> Result<String, OidcError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = provider(build).await;
    let oidc = Oidc::new(&EntraSettings {
        issuer: Some(server.uri()),
        client_id: Some(CLIENT.into()),
        client_secret: Some(SecretString::from("secret")),
        redirect_url: Some("https://ttscm.example/v1/auth/redirect".into()),
        ..EntraSettings::default()
    });
    oidc.exchange("code-1", "verifier-1", NONCE).await.map(|p| p.oid)
}

#[tokio::test]
async fn a_token_signed_with_the_published_key_passes() {
    let oid = exchange(|issuer| sign(KEY_A, &claims(issuer)))
        .await
        .expect("verifies");
    assert_eq!(oid, "oid-1");
}

/// [`claims`] for `issuer` with `field` set to `value`.
fn claims_with(issuer: &str, field: &str, value: serde_json::Value) -> serde_json::Value {
    let mut c = claims(issuer);
    c[field] = value;
    c
}

/// Makes an ID token for an issuer.
type Build = Box<dyn FnOnce(&str) -> String>;

#[tokio::test]
async fn forged_or_mismatched_id_tokens_are_refused() {
    let cases: Vec<(&str, Build)> = vec![
        (
            "signed with another key under the published kid",
            Box::new(|i: &str| sign(KEY_B, &claims(i))),
        ),
        (
            "another nonce",
            Box::new(|i: &str| sign(KEY_A, &claims_with(i, "nonce", json!("attacker")))),
        ),
        (
            "another issuer",
            Box::new(|_: &str| sign(KEY_A, &claims("https://evil.example"))),
        ),
        (
            "another audience",
            Box::new(|i: &str| sign(KEY_A, &claims_with(i, "aud", json!("someone-else")))),
        ),
        (
            "expired",
            Box::new(|i: &str| sign(KEY_A, &claims_with(i, "exp", json!(now() - 3600)))),
        ),
        (
            "no oid",
            Box::new(|i: &str| {
                let mut c = claims(i);
                c.as_object_mut().expect("object").remove("oid");
                sign(KEY_A, &c)
            }),
        ),
    ];
    for (what, build) in cases {
        let result = exchange(build).await;
        assert!(
            matches!(result, Err(OidcError::InvalidIdToken(_))),
            "{what}: {result:?}"
        );
    }
}
