//! Vault through the bus, as the credential service calls it: seal, unseal and reseal on an
//! in-process bus, with the key ring in a fresh data dir per test.

mod support;

use ttscm_contract::ErrorCode;
use ttscm_runtime::Settings;
use ttscm_vault::vault::{MAX_VALUE_LEN, NOT_SEALED_HERE};

use support::{all_at, kid_of, place, sealed_at, spawn_vault};

#[tokio::test]
async fn sealed_values_come_back_when_opened_at_their_places() {
    let vault = spawn_vault().await;
    let largest = "é".repeat(MAX_VALUE_LEN / 2);
    let places = [
        place("c1", "password"),
        place("c1", "pin"),
        place("c2", "password"),
        place("c2", "note"),
    ];
    let plaintexts = ["hunter2", "", "pässwörd ✓", largest.as_str()];

    let sealed = vault.seal(&places, &plaintexts).await.expect("seals");
    assert_eq!(sealed.len(), 4);
    assert!(sealed.iter().all(|s| !s.contains("hunter2")));

    let opened = vault.unseal(all_at(&places, &sealed)).await.expect("opens");
    assert_eq!(opened, plaintexts);
}

#[tokio::test]
async fn a_sealed_value_swapped_between_places_fails_with_a_clear_message() {
    let vault = spawn_vault().await;
    let (first, second, other_field) = (
        place("c1", "password"),
        place("c2", "password"),
        place("c1", "pin"),
    );
    let sealed = vault
        .seal(
            &[first.clone(), second.clone()],
            &["first secret", "second secret"],
        )
        .await
        .expect("seals");

    for attempt in [
        vec![sealed_at(&first, &sealed[1])],
        vec![sealed_at(&second, &sealed[0])],
        vec![sealed_at(&other_field, &sealed[0])],
        // One bad value fails the whole call: nothing is half-answered.
        vec![sealed_at(&first, &sealed[0]), sealed_at(&first, &sealed[1])],
    ] {
        let error = vault.unseal(attempt).await.unwrap_err();
        assert_eq!(error.code, ErrorCode::Internal);
        assert_eq!(error.message, NOT_SEALED_HERE);
    }
}

#[tokio::test]
async fn reseal_after_rotate_moves_values_to_the_new_key_and_keeps_active_ones() {
    let vault = spawn_vault().await;
    let places = [
        place("c1", "password"),
        place("c1", "pin"),
        place("c2", "password"),
    ];
    let plaintexts = ["one", "two", ""];
    let before = vault.seal(&places, &plaintexts).await.expect("seals");
    let old_kid = kid_of(&before[0]);

    let unchanged = vault.reseal(all_at(&places, &before)).await.expect("reseals");
    assert_eq!(
        unchanged, before,
        "values under the active key come back unchanged"
    );

    let new_kid = vault.rotate();
    assert_ne!(new_kid, old_kid);
    let after = vault
        .reseal_until_moved_to(&new_kid, all_at(&places, &before))
        .await;
    assert_ne!(after, before);

    let opened_new = vault
        .unseal(all_at(&places, &after))
        .await
        .expect("new blobs open");
    let opened_old = vault
        .unseal(all_at(&places, &before))
        .await
        .expect("old blobs still open");
    assert_eq!(opened_new, plaintexts);
    assert_eq!(opened_old, plaintexts);

    let again = vault.reseal(all_at(&places, &after)).await.expect("reseals");
    assert_eq!(again, after, "resealing is idempotent");

    let fresh = vault.seal(&places[..1], &["three"]).await.expect("seals");
    assert_eq!(kid_of(&fresh[0]), new_kid);
}

#[tokio::test]
async fn a_value_over_64_kib_is_a_validation_error() {
    let vault = spawn_vault().await;
    let here = place("c1", "note");
    let too_large = "x".repeat(MAX_VALUE_LEN + 1);
    let error = vault
        .seal(&[here.clone(), here], &["fine", &too_large])
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::Validation);
    assert_eq!(error.errors.len(), 1);
    assert_eq!(
        error.errors[0].path,
        vec![
            serde_json::json!("items"),
            serde_json::json!(1),
            serde_json::json!("plaintext")
        ]
    );
}

#[test]
fn rotate_in_mesh_mode_explains_how_to_rotate_keys_in_settings() {
    let settings = Settings {
        vault: ttscm_runtime::settings::VaultSettings {
            keys: Some("k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into()),
            ..Default::default()
        },
        ..Settings::default()
    };
    let error = ttscm_vault::rotate(&settings).unwrap_err().to_string();
    assert!(error.contains("TTSCM_VAULT__KEYS"), "{error}");
    assert!(error.contains("TTSCM_VAULT__ACTIVE_KID"), "{error}");
    assert!(error.contains("ttscm keys vault-key"), "{error}");
}

/// Webhook secrets live in a key domain of their own: they open only as the endpoint's secret
/// they were sealed as, and the webhook operations cannot open a credential's value even when
/// given its blob and place.
#[tokio::test]
async fn webhook_secrets_open_only_as_themselves_and_never_a_credential_value() {
    use ttscm_contract::webhook::{OpenWebhookSecrets, SealWebhookSecret, SealedWebhookSecret};
    let vault = spawn_vault().await;
    let sealed = vault
        .call(&SealWebhookSecret {
            endpoint_id: "e1".into(),
            secret_id: "s1".into(),
            plaintext: "whsec_c2VjcmV0".into(),
        })
        .await
        .expect("seals");
    let open = |endpoint: &str, secret: &str, blob: &str| OpenWebhookSecrets {
        endpoint_id: endpoint.into(),
        secrets: vec![SealedWebhookSecret {
            secret_id: secret.into(),
            sealed: blob.into(),
        }],
    };
    let opened = vault.call(&open("e1", "s1", &sealed)).await.expect("opens");
    assert_eq!(opened.0, ["whsec_c2VjcmV0"]);
    for (endpoint, secret) in [("e2", "s1"), ("e1", "s2")] {
        let error = vault.call(&open(endpoint, secret, &sealed)).await.unwrap_err();
        assert_eq!(error.message, NOT_SEALED_HERE, "{endpoint}/{secret}");
    }
    // A credential's value, asked for through the webhook operations at "its" place.
    let value = vault
        .seal(&[place("c1", "password")], &["hunter2"])
        .await
        .expect("seals");
    let error = vault.call(&open("c1", "password", &value[0])).await.unwrap_err();
    assert_eq!(error.message, NOT_SEALED_HERE);
    // And the credential operations do not open a webhook secret.
    let error = vault
        .unseal(vec![sealed_at(&place("webhook/e1", "s1"), &sealed)])
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::Validation);
}
