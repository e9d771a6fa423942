//! Access tokens (JWTs) at the edge: a valid one works; every forged, expired or misused one
//! answers 401. Run in both modes.

use crate::support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use support::{Mode, TestApp, spawn_app};
use ttscm_contract::identity::AccessClaims;

const PATH: &str = "/v1/credential-type/credential-types";

/// Makes valid claims invalid in one way.
type Change = fn(&mut AccessClaims);

async fn status_with(app: &TestApp, token: &str) -> u16 {
    app.get_status(PATH, Some(token)).await
}

fn b64(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("json"))
}

async fn a_valid_access_token_is_accepted_and_its_roles_apply(mode: Mode) {
    let app = spawn_app(mode).await;
    let key = app.signing_key();
    assert_eq!(
        status_with(&app, &key.sign(&app.claims(&["admin"]).await)).await,
        200
    );
    assert_eq!(status_with(&app, &key.sign(&app.claims(&[]).await)).await, 403);
}

async fn forged_and_misused_access_tokens_are_refused(mode: Mode) {
    let app = spawn_app(mode).await;
    let key = app.signing_key();
    let good = app.claims(&["admin"]).await;
    let mut cases: Vec<(&str, String)> = Vec::new();

    let changes: [(&str, Change); 6] = [
        ("expired", |c| c.exp = c.iat - 120),
        ("nbf in the future", |c| c.nbf += 3600),
        ("wrong iss", |c| c.iss = "someone-else".into()),
        ("wrong aud", |c| c.aud = "another-api".into()),
        ("refresh token as access token", |c| c.typ = "refresh".into()),
        ("id token as access token", |c| c.typ = "id".into()),
    ];
    for (case, change) in changes {
        let mut claims = good.clone();
        change(&mut claims);
        cases.push((case, key.sign(&claims)));
    }

    let other_key = ttscm_identity::SigningKey::generate(key.kid());
    cases.push(("signed by another key with the same kid", other_key.sign(&good)));
    let unknown_kid = ttscm_identity::SigningKey::generate("unknown");
    cases.push(("unknown kid", unknown_kid.sign(&good)));

    let claims_part = b64(&serde_json::to_value(&good).expect("claims"));
    cases.push((
        "alg none",
        format!(
            "{}.{claims_part}.",
            b64(&json!({"alg": "none", "typ": "JWT", "kid": key.kid()}))
        ),
    ));
    let public_x = key.public_key().x;
    let hs_header = b64(&json!({"alg": "HS256", "typ": "JWT", "kid": key.kid()}));
    let signing_input = format!("{hs_header}.{claims_part}");
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, public_x.as_bytes()),
        signing_input.as_bytes(),
    );
    cases.push((
        "HS256 with the public key",
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref())),
    ));

    let valid = key.sign(&good);
    let (head, signature) = valid.rsplit_once('.').expect("three parts");
    cases.push((
        "truncated signature",
        format!("{head}.{}", &signature[..signature.len() / 2]),
    ));
    let mut flipped = URL_SAFE_NO_PAD.decode(signature).expect("signature decodes");
    flipped[0] ^= 1;
    cases.push((
        "bit-flipped signature",
        format!("{head}.{}", URL_SAFE_NO_PAD.encode(flipped)),
    ));
    let huge_header = b64(&json!({"alg": "EdDSA", "kid": "x".repeat(20_000)}));
    cases.push((
        "absurdly large header",
        format!("{huge_header}.{claims_part}.{signature}"),
    ));

    for (what, token) in &cases {
        assert_eq!(status_with(&app, token).await, 401, "{what} must be refused");
    }
    assert_eq!(
        status_with(&app, &valid).await,
        200,
        "the untampered token still works"
    );
}

both_modes!(
    a_valid_access_token_is_accepted_and_its_roles_apply,
    forged_and_misused_access_tokens_are_refused
);
