//! TOTP codes computed in vault (`GET /v1/credential/credentials/:id/totp/:fieldId`): RFC 6238
//! codes from an `otpauth://` URI or a bare base32 seed, audited, scoped; the seed is withheld
//! from `secure-values` without `credential.totp.seed.read`; in the mesh no bus message on the
//! code path carries the seed.

use crate::support;

use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde_json::json;
use support::{Mode, TestApp, spawn_app};
use ttscm_runtime::totp::TotpSeed;

const CREDS: &str = "/v1/credential/credentials";
/// RFC 6238 appendix B's SHA-1 seed in base32.
const SEED: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// A type with a password and a TOTP field (scope `scope`), a company, and a credential holding
/// `otp`; answers (type id, credential id).
async fn mfa_credential(app: &TestApp, scope: Option<&str>, otp: &str) -> (String, String) {
    let company = app.seed_company("MFA Co").await;
    let (status, body) = app
        .post(
            "/v1/credential-type/credential-types",
            &app.admin_token,
            &json!({
                "name": format!("Shared MFA {}", ttscm_runtime::ids::new_id()),
                "permissionScope": scope,
                "fields": [
                    {"id": "password", "name": "Password", "required": true, "secure": true, "valueType": "password"},
                    {"id": "otp", "name": "One-time code", "required": true, "valueType": "totp"}
                ]
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let type_id = body["data"]["id"].as_str().expect("type id").to_owned();
    let (status, body) = app
        .post(
            CREDS,
            &app.admin_token,
            &json!({
                "name": "Microsoft 365 admin", "typeId": type_id, "companyId": company,
                "fields": [
                    {"fieldId": "password", "value": "hunter2-canary"},
                    {"fieldId": "otp", "value": otp}
                ]
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    (type_id, body["data"]["id"].as_str().expect("id").to_owned())
}

/// The raw secret [`SEED`] encodes (RFC 6238 appendix B).
const SEED_BYTES: &[u8] = b"12345678901234567890";

/// RFC 4226/6238 by hand over ring's HMAC-SHA-1: a second implementation to check the server's
/// (totp-rs) against.
fn hotp_sha1(key: &[u8], unix: u64, period: u64, digits: u32) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let mac = ring::hmac::sign(&key, &(unix / period).to_be_bytes());
    let mac = mac.as_ref();
    let offset = usize::from(mac[19] & 0x0f);
    let binary = u32::from_be_bytes([
        mac[offset] & 0x7f,
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]);
    format!("{:0width$}", binary % 10u32.pow(digits), width = digits as usize)
}

/// The codes [`SEED`] gives between `before` and `after` (a request may cross a period
/// boundary), by both implementations, which must agree.
fn expected_codes(before: u64, after: u64, period: u64, digits: u32) -> Vec<String> {
    (before..=after)
        .map(|t| {
            let by_hand = hotp_sha1(SEED_BYTES, t, period, digits);
            let uri = format!("otpauth://totp/x?secret={SEED}&period={period}&digits={digits}");
            assert_eq!(TotpSeed::parse(&uri).expect("a seed").code_at(t).code, by_hand);
            by_hand
        })
        .collect()
}

#[test]
fn the_second_implementation_gives_the_rfc_6238_vectors() {
    // Appendix B, SHA-1, 8 digits.
    assert_eq!(hotp_sha1(SEED_BYTES, 59, 30, 8), "94287082");
    assert_eq!(hotp_sha1(SEED_BYTES, 1_111_111_109, 30, 8), "07081804");
    assert_eq!(hotp_sha1(SEED_BYTES, 20_000_000_000, 30, 8), "65353130");
}

async fn a_totp_code_comes_from_vault_audited(mode: Mode) {
    let app = spawn_app(mode).await;
    let uri =
        format!("otpauth://totp/Contoso:admin%40contoso.com?secret={SEED}&issuer=Contoso&digits=8&period=60");
    let (_, id) = mfa_credential(&app, None, &uri).await;
    let before = now();
    let (status, body) = app
        .get(&format!("{CREDS}/{id}/totp/otp"), Some(&app.admin_token))
        .await;
    let after = now();
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    let code = data["code"].as_str().expect("a code");
    assert_eq!(code.len(), 8, "the URI's digits");
    assert!(
        expected_codes(before, after, 60, 8).iter().any(|c| c == code),
        "{body}"
    );
    assert_eq!(data["period"], 60);
    let expires_in = data["expiresIn"].as_u64().expect("expiresIn");
    assert!((1..=60).contains(&expires_in), "{body}");

    let entries = app.audit_entries("credential.totp_generated").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["credentialId"], id.as_str());
    assert_eq!(entries[0]["details"]["fieldId"], "otp");
    assert!(!entries[0].to_string().contains(SEED));

    // Not a TOTP field, no such field, no such credential: 404 in the spec's shape.
    for path in [
        format!("{CREDS}/{id}/totp/password"),
        format!("{CREDS}/{id}/totp/nope"),
        format!("{CREDS}/missing/totp/otp"),
    ] {
        let (status, body) = app.get(&path, Some(&app.admin_token)).await;
        assert_eq!(
            (status, body["successful"].clone()),
            (404, json!(false)),
            "{path}: {body}"
        );
    }
}

async fn a_bare_base32_seed_gives_six_digits_every_thirty_seconds(mode: Mode) {
    let app = spawn_app(mode).await;
    let pasted = "gezd gnbv gy3t qojq gezd gnbv gy3t qojq";
    let (_, id) = mfa_credential(&app, None, pasted).await;
    let before = now();
    let (status, body) = app
        .get(&format!("{CREDS}/{id}/totp/otp"), Some(&app.admin_token))
        .await;
    let after = now();
    assert_eq!(status, 200, "{body}");
    let code = body["data"]["code"].as_str().expect("a code");
    assert!(
        expected_codes(before, after, 30, 6).iter().any(|c| c == code),
        "{body}"
    );
    assert_eq!(body["data"]["period"], 30);
}

async fn seeds_are_checked_on_input(mode: Mode) {
    let app = spawn_app(mode).await;
    let (type_id, _) = mfa_credential(&app, None, SEED).await;
    let company = app.seed_company("Bad Seeds Co").await;
    for bad in [
        "not a seed!",
        "GEZDGNBV",
        "otpauth://hotp/x?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
        "otpauth://totp/x?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&digits=12",
    ] {
        let (status, body) = app
            .post(
                CREDS,
                &app.admin_token,
                &json!({
                    "name": "Bad", "typeId": type_id, "companyId": company,
                    "fields": [{"fieldId": "password", "value": "x"}, {"fieldId": "otp", "value": bad}]
                }),
            )
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            !body.to_string().contains("GEZDGNBV"),
            "the error repeats no seed: {body}"
        );
    }
}

async fn codes_and_seeds_need_their_permissions(mode: Mode) {
    let app = spawn_app(mode).await;
    let (_, id) = mfa_credential(&app, None, SEED).await;
    let (_, scoped) = mfa_credential(&app, Some("mfa.shared"), SEED).await;
    let path = |id: &str| format!("{CREDS}/{id}/totp/otp");

    let codes_only = app.token_with(&["credential.totp.read"]).await;
    assert_eq!(app.get_status(&path(&id), Some(&codes_only)).await, 200);
    assert_eq!(
        app.get_status(&path(&scoped), Some(&codes_only)).await,
        403,
        "the type's scope"
    );
    let scoped_codes = app.token_with(&["credential.totp.read", "mfa.shared"]).await;
    assert_eq!(app.get_status(&path(&scoped), Some(&scoped_codes)).await, 200);
    let revealer = app
        .token_with(&["credential.fetch", "credential.secure_values.read"])
        .await;
    assert_eq!(app.get_status(&path(&id), Some(&revealer)).await, 403);

    // A reveal without the seed permission leaves the seed out; with it (or `*`), it is there.
    let (status, body) = app
        .get(&format!("{CREDS}/{id}/secure-values"), Some(&revealer))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], json!({"password": "hunter2-canary"}));
    let seeds = app
        .token_with(&[
            "credential.fetch",
            "credential.secure_values.read",
            "credential.totp.seed.read",
        ])
        .await;
    for token in [&seeds, &app.admin_token] {
        let (_, body) = app.get(&format!("{CREDS}/{id}/secure-values"), Some(token)).await;
        assert_eq!(body["data"], json!({"password": "hunter2-canary", "otp": SEED}));
    }
}

/// In the mesh, watching every subject while a code is asked for: no message carries the seed
/// (vault gets it sealed and answers only the code).
#[tokio::test]
async fn in_the_mesh_the_seed_never_crosses_the_bus_on_the_code_path() {
    let app = spawn_app(Mode::Mesh).await;
    let (_, id) = mfa_credential(&app, None, SEED).await;
    let operator = app.nats_operator().await;
    let mut everything = operator.subscribe(">").await.expect("subscribes");
    operator.flush().await.expect("flushed");
    let (status, body) = app
        .get(&format!("{CREDS}/{id}/totp/otp"), Some(&app.admin_token))
        .await;
    assert_eq!(status, 200, "{body}");
    let code = body["data"]["code"].as_str().expect("a code").to_owned();
    operator.flush().await.expect("flushed");
    let mut seen = Vec::new();
    while let Ok(Some(message)) =
        tokio::time::timeout(std::time::Duration::from_millis(300), everything.next()).await
    {
        seen.push((
            message.subject.to_string(),
            String::from_utf8_lossy(&message.payload).into_owned(),
        ));
    }
    assert!(
        seen.iter().any(|(subject, _)| subject == "ttscm.vault.v1.totp"),
        "vault was asked: {:?}",
        seen.iter().map(|(s, _)| s).collect::<Vec<_>>()
    );
    assert!(
        seen.iter().any(|(_, payload)| payload.contains(&code)),
        "the code's reply was seen"
    );
    for (subject, payload) in &seen {
        assert!(!payload.contains(SEED), "{subject} carried the seed");
    }
}

/// The type's reveal policy applies to codes as to reveals.
async fn a_code_follows_the_reveal_policy(mode: Mode) {
    let app = spawn_app(mode).await;
    let (type_id, id) = mfa_credential(&app, None, SEED).await;
    let (status, body) = app
        .patch(
            &format!("/v1/credential-type/credential-types/{type_id}"),
            &app.admin_token,
            &json!({"revealPolicy": {"require": "reason"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let path = format!("{CREDS}/{id}/totp/otp");
    let (status, body) = app.get(&path, Some(&app.admin_token)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(support::error_paths(&body), [json!(["reason"])]);
    let (status, body) = app
        .get(
            &format!("{path}?reason=Tenant%20admin%20login"),
            Some(&app.admin_token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let entries = app.audit_entries("credential.totp_generated").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["details"]["reason"], "Tenant admin login");
}

both_modes!(
    a_code_follows_the_reveal_policy,
    a_totp_code_comes_from_vault_audited,
    a_bare_base32_seed_gives_six_digits_every_thirty_seconds,
    seeds_are_checked_on_input,
    codes_and_seeds_need_their_permissions,
);
