//! The zero-trust mesh, tried as an attacker holding some NATS credentials would: a real
//! nats-server runs the configuration `ttscm mesh init` generates (users and permissions derived
//! from the code), and every component signs and verifies principals.
//!
//! - The integrator (the NATS user other MSP tools get) replays events through a durable
//!   consumer of its own, and NATS refuses it everything else.
//! - A connection holding the edge's NATS credentials (allowed to publish on the reveal subject)
//!   but sending a missing, unsigned, forged, expired, altered or wrongly issued principal gets
//!   no plaintext and changes nothing; company-sync's credentials cannot publish there at all.

use crate::support;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use futures_util::StreamExt;
use serde_json::{Value, json};
use support::{Mode, Seeded, TestApp, spawn_app};
use ttscm::Component;
use ttscm_contract::subjects::{
    AUDIT_SUBJECT, CREDENTIAL_DELETE, CREDENTIAL_REVEAL, EDGE_LOGIN_DELIVERY_PREFIX, HEADER_PRINCIPAL,
    VAULT_SEAL,
};
use ttscm_contract::{Permission, PermissionSet, Principal, PrincipalKind};
use ttscm_runtime::principal::{MeshAuth, PrincipalKey, parse_trusted_keys};

/// A NATS connection with `options` whose server errors (permission violations) arrive on the
/// returned channel.
async fn watched(
    app: &TestApp,
    options: async_nats::ConnectOptions,
) -> (async_nats::Client, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (errors, received) = tokio::sync::mpsc::unbounded_channel();
    let client = options
        .event_callback(move |event| {
            let errors = errors.clone();
            async move {
                if let async_nats::Event::ServerError(error) = event {
                    let _ = errors.send(error.to_string());
                }
            }
        })
        .connect(app.nats.as_ref().expect("mesh has NATS").url())
        .await
        .expect("connects");
    (client, received)
}

/// Waits for NATS to report a permission violation naming `subject`.
async fn violation(errors: &mut tokio::sync::mpsc::UnboundedReceiver<String>, subject: &str) {
    let seen = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(error) = errors.recv().await {
            if error.to_ascii_lowercase().contains("permissions violation") && error.contains(subject) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(seen, Ok(true), "NATS refuses {subject}");
}

#[tokio::test]
async fn the_integrator_replays_events_and_is_refused_everything_else() {
    let app = spawn_app(Mode::Mesh).await;
    let keys = app.mesh_keys.clone().expect("mesh keys");
    let Seeded { id, .. } = app
        .seed_aws_credential("Integrated Co", "integrator-never-sees")
        .await;
    let (client, mut errors) = watched(
        &app,
        async_nats::ConnectOptions::with_nkey(keys.integrator_seed()),
    )
    .await;

    // A durable consumer of its own on TTSCM_EVENTS, replaying from the start.
    let jetstream = async_nats::jetstream::new(client.clone());
    let stream = jetstream
        .get_stream("TTSCM_EVENTS")
        .await
        .expect("the events stream is readable");
    let consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            "psa-automation",
            async_nats::jetstream::consumer::pull::Config {
                durable_name: Some("psa-automation".into()),
                deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::All,
                ..Default::default()
            },
        )
        .await
        .expect("the integrator creates a durable consumer");
    let mut seen = Vec::new();
    let mut messages = consumer
        .fetch()
        .max_messages(50)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .expect("fetches");
    while let Some(Ok(message)) = messages.next().await {
        message.ack().await.expect("acknowledges");
        seen.push(serde_json::from_slice::<Value>(&message.payload).expect("events are JSON"));
    }
    assert!(
        seen.iter()
            .any(|e| e["type"] == "ttscm.credential.created" && e["data"]["id"] == id.as_str()),
        "the credential's creation is replayed: {seen:?}"
    );
    assert!(
        !serde_json::to_string(&seen)
            .unwrap()
            .contains("integrator-never-sees")
    );

    // Everything else is refused by NATS itself.
    let reveal = tokio::time::timeout(
        Duration::from_secs(2),
        client.request(CREDENTIAL_REVEAL, json!({"id": id}).to_string().into()),
    )
    .await;
    assert!(!matches!(reveal, Ok(Ok(_))), "no answer to a reveal: {reveal:?}");
    violation(&mut errors, CREDENTIAL_REVEAL).await;
    for subject in [
        VAULT_SEAL.to_owned(),
        "_INBOX_edge.>".to_owned(),
        "_INBOX_credential.>".to_owned(),
        format!("{EDGE_LOGIN_DELIVERY_PREFIX}.*"),
    ] {
        let _subscription = client
            .subscribe(subject.clone())
            .await
            .expect("the client sends it");
        violation(&mut errors, &subject).await;
    }
    client
        .publish(AUDIT_SUBJECT, "{\"seq\":1}".into())
        .await
        .expect("the client sends it");
    violation(&mut errors, AUDIT_SUBJECT).await;
    client
        .publish("ttscm.events.credential.deleted", "{}".into())
        .await
        .expect("the client sends it");
    violation(&mut errors, "ttscm.events.credential.deleted").await;
    let purge = jetstream.get_stream("TTSCM_AUDIT").await;
    assert!(purge.is_err(), "the audit stream is not the integrator's");

    let (_, audit) = app.get("/v1/audit/verify", Some(&app.admin_token)).await;
    assert_eq!(audit["data"]["valid"], true, "{audit}");
}

/// The claims of a signed principal, as `ttscm_runtime::principal` writes them.
fn signed_by(key: &PrincipalKey, issuer: &str, principal: &Principal, expires_in: i64) -> String {
    let now = ttscm_runtime::clock::unix_now() as i64;
    let claims =
        json!({"iss": issuer, "aud": "ttscm-mesh", "iat": now, "exp": now + expires_in, "prn": principal});
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.typ = Some("ttscm-principal+jwt".into());
    header.kid = Some(issuer.into());
    let der = STANDARD.decode(key.to_base64()).expect("base64");
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ed_der(&der)).expect("signs")
}

fn everything() -> Principal {
    Principal {
        id: "attacker".into(),
        kind: PrincipalKind::ApiToken,
        name: "attacker".into(),
        permissions: PermissionSet::new(vec![Permission::parse("*").expect("a permission")]),
        scopes: Vec::new(),
        session_id: None,
    }
}

/// Sends `payload` on `subject` with `principal` as the principal header (if any) over `client`
/// and answers the decoded reply.
async fn ask(
    client: &async_nats::Client,
    subject: &'static str,
    payload: &Value,
    principal: Option<&str>,
) -> Value {
    let mut headers = async_nats::HeaderMap::new();
    if let Some(principal) = principal {
        headers.insert(HEADER_PRINCIPAL, principal);
    }
    let reply = client
        .request_with_headers(subject, headers, payload.to_string().into())
        .await
        .expect("the service answers");
    serde_json::from_slice(&reply.payload).expect("a JSON reply")
}

#[tokio::test]
async fn the_edges_bus_credentials_with_a_bad_principal_get_no_plaintext_and_change_nothing() {
    let app = spawn_app(Mode::Mesh).await;
    let keys = app.mesh_keys.clone().expect("mesh keys");
    let secret = "only-for-verified-principals";
    let Seeded { id, .. } = app.seed_aws_credential("Targeted Co", secret).await;
    let edge = app.nats_as(Component::Edge).await;
    let trusted = parse_trusted_keys(&keys.trusted_keys()).expect("trusted keys");
    let edge_key = keys.principal_key(Component::Edge);
    let reveal = json!({"id": id});

    // The control: a principal the edge really signed gets the values, so the refusals below
    // are the signature's doing.
    let genuine = MeshAuth::new(Component::Edge, edge_key, &trusted).expect("edge auth");
    let ok = ask(
        &edge,
        CREDENTIAL_REVEAL,
        &reveal,
        Some(&genuine.sign(&everything())),
    )
    .await;
    assert_eq!(ok["ok"]["secretAccessKey"], secret, "{ok}");

    // Altered: a genuine principal holding nothing, its payload swapped for one holding `*`.
    let mut nobody = everything();
    nobody.permissions = PermissionSet::default();
    let real = genuine.sign(&nobody);
    let parts: Vec<&str> = real.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
    claims["prn"]["permissions"] = json!(["*"]);
    let altered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );

    let stranger = PrincipalKey::generate();
    let unsigned = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&everything()).expect("json"));
    let bad = [
        ("missing", None),
        ("unsigned (the embedded form)", Some(unsigned)),
        (
            "forged (a key nobody trusts)",
            Some(signed_by(&stranger, "edge", &everything(), 60)),
        ),
        ("expired", Some(signed_by(edge_key, "edge", &everything(), -120))),
        ("altered", Some(altered)),
        (
            "a user vouched for by credential",
            Some(signed_by(
                keys.principal_key(Component::Credential),
                "credential",
                &everything(),
                60,
            )),
        ),
    ];
    for (what, principal) in &bad {
        for (subject, payload) in [(CREDENTIAL_REVEAL, &reveal), (CREDENTIAL_DELETE, &reveal)] {
            let reply = ask(&edge, subject, payload, principal.as_deref()).await;
            assert_eq!(
                reply["err"]["code"], "unauthorized",
                "{what} on {subject}: {reply}"
            );
            assert!(!reply.to_string().contains(secret), "{what}: {reply}");
        }
    }

    // Nothing was revealed or written: one reveal on record (the control), the credential is there.
    let token = &app.admin_token;
    let (_, revealed) = app
        .get("/v1/audit/events?action=credential.revealed", Some(token))
        .await;
    assert_eq!(revealed["data"].as_array().map(Vec::len), Some(1), "{revealed}");
    let (_, deleted) = app
        .get("/v1/audit/events?action=credential.deleted", Some(token))
        .await;
    assert_eq!(deleted["data"].as_array().map(Vec::len), Some(0), "{deleted}");
    app.assert_get(&format!("/v1/credential/credentials/{id}"), token, 200)
        .await;

    // company-sync's credentials may not even publish on the reveal subject.
    let (company_sync, mut errors) = watched(
        &app,
        async_nats::ConnectOptions::with_nkey(keys.nkey_seed(Component::CompanySync))
            .custom_inbox_prefix(Component::CompanySync.inbox_prefix()),
    )
    .await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(HEADER_PRINCIPAL, genuine.sign(&everything()).as_str());
    let answer = tokio::time::timeout(
        Duration::from_secs(3),
        company_sync.request_with_headers(CREDENTIAL_REVEAL, headers, reveal.to_string().into()),
    )
    .await;
    assert!(!matches!(answer, Ok(Ok(_))), "company-sync gets no answer");
    violation(&mut errors, CREDENTIAL_REVEAL).await;

    // The product's own connections never hit a permission they lack.
    assert_eq!(ttscm_runtime::bus::nats::permission_violations(), 0);
}
