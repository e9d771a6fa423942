//! Authenticated and encrypted NATS connections, against a real nats-server started with
//! authentication or TLS: the right secret connects, a wrong or missing one does not; a server
//! that verifies clients takes the configured client certificate and refuses a bus without it.

use std::time::Duration;

use secrecy::SecretString;
use ttscm_runtime::bus::nats::NatsBus;
use ttscm_runtime::settings::NatsSettings;
use ttscm_testkit::{NatsServer, TestPki};

/// Whether a bus with `security` gets connected to `url` (the first connection is retried in
/// the background, so a refused one shows as never connected).
async fn connects(url: &str, security: &NatsSettings, deadline: Duration) -> bool {
    let bus = NatsBus::connect(url, "security-test", security)
        .await
        .expect("the options are valid");
    bus.wait_connected(deadline).await
}

fn secret(text: &str) -> Option<SecretString> {
    Some(SecretString::from(text.to_owned()))
}

/// A connection refused by the server is given a short chance: it never succeeds later.
const REFUSED: Duration = Duration::from_millis(1500);
/// A connection the server accepts.
const ACCEPTED: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_user_and_password_connect_and_a_wrong_or_missing_password_does_not() {
    ttscm_testkit::init_tracing();
    let server = NatsServer::start_with(&["--user", "ttscm-edge", "--pass", "s3cret-pass"]);
    let right = NatsSettings {
        user: Some("ttscm-edge".into()),
        password: secret("s3cret-pass"),
        ..NatsSettings::default()
    };
    assert!(connects(&server.url(), &right, ACCEPTED).await);
    let wrong = NatsSettings {
        password: secret("guess"),
        ..right.clone()
    };
    assert!(!connects(&server.url(), &wrong, REFUSED).await);
    assert!(!connects(&server.url(), &NatsSettings::default(), REFUSED).await);
    assert!(
        !format!("{right:?}").contains("s3cret-pass"),
        "the password is never printed"
    );
}

#[tokio::test]
async fn a_token_connects_and_another_token_does_not() {
    ttscm_testkit::init_tracing();
    let server = NatsServer::start_with(&["--auth", "tok-7f3a"]);
    let right = NatsSettings {
        token: secret("tok-7f3a"),
        ..NatsSettings::default()
    };
    assert!(connects(&server.url(), &right, ACCEPTED).await);
    let wrong = NatsSettings {
        token: secret("tok-0000"),
        ..NatsSettings::default()
    };
    assert!(!connects(&server.url(), &wrong, REFUSED).await);
}

#[tokio::test]
async fn a_tls_url_with_the_ca_and_a_client_certificate_connects_to_a_verifying_server() {
    ttscm_testkit::init_tracing();
    let pki = TestPki::generate();
    let path = |file: &str| pki.path(file).display().to_string();
    let (cert, key, ca) = (path("server.pem"), path("server.key"), path("ca.pem"));
    let server = NatsServer::start_with(&[
        "--tlsverify",
        "--tlscert",
        &cert,
        "--tlskey",
        &key,
        "--tlscacert",
        &ca,
    ]);
    let url = format!("tls://127.0.0.1:{}", server.port());
    let mutual = NatsSettings {
        tls_ca: Some(pki.path("ca.pem")),
        tls_cert: Some(pki.path("client.pem")),
        tls_key: Some(pki.path("client.key")),
        tls_required: true,
        ..NatsSettings::default()
    };
    assert!(
        connects(&url, &mutual, ACCEPTED).await,
        "TLS with a client certificate"
    );
    let no_client_certificate = NatsSettings {
        tls_cert: None,
        tls_key: None,
        ..mutual.clone()
    };
    assert!(
        !connects(&url, &no_client_certificate, REFUSED).await,
        "a verifying server refuses a client without a certificate"
    );
    let untrusted = NatsSettings {
        tls_ca: None,
        ..mutual
    };
    assert!(
        !connects(&url, &untrusted, REFUSED).await,
        "the server's certificate is checked against the configured CA"
    );
}
