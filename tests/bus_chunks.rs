//! Replies larger than one NATS message, end to end (issue 20): in a mesh whose nats-server
//! carries at most 64 KiB per message (an operator's server may well keep a small limit), a
//! company's credentials list through HTTP whole, the reply crossing the bus in chunks; a reply
//! beyond the requester's cap (`TTSCM_NATS__MAX_REPLY_BYTES`) is a 413 naming `page` and `rpp`.

use crate::support;

use serde_json::json;
use support::{TestApp, spawn_mesh_with_nats_max_payload};

/// The nats-server's `max_payload` in this test.
const MAX_PAYLOAD: usize = 64 * 1024;
/// Credentials of the company.
const CREDENTIALS: usize = 40;
/// Bytes of each credential's note.
const NOTE: usize = 32 * 1024;

/// Creates a credential of `type_id` for `company` through the API, with a note of [`NOTE`]
/// bytes that differs from every other one.
async fn create_with_note(app: &TestApp, type_id: &str, company: &str, i: usize) -> String {
    let note = format!("{i:04}-").repeat(NOTE / 5);
    let (status, body) = app
        .post(
            "/v1/credential/credentials",
            &app.admin_token,
            &json!({
                "name": format!("Noted {i:04}"), "typeId": type_id, "companyId": company,
                "fields": [
                    {"fieldId": "accessKeyId", "value": format!("AKIA-{i}")},
                    {"fieldId": "secretAccessKey", "value": "s3cr3t"},
                    {"fieldId": "notes", "value": note}
                ]
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    note
}

#[tokio::test]
async fn a_list_larger_than_a_nats_message_arrives_whole_and_one_beyond_the_cap_is_413() {
    // The whole list is ~1.3 MB: beyond a 1 MiB cap; a page of 20 is ~650 KB, ten chunks.
    let app = spawn_mesh_with_nats_max_payload(MAX_PAYLOAD, |settings| {
        settings.nats.max_reply_bytes = 1024 * 1024;
    })
    .await;
    assert_eq!(
        app.nats_operator().await.server_info().max_payload,
        MAX_PAYLOAD,
        "the server runs with the small limit"
    );
    let (company, type_id) = app.company_and_aws_type("Chunky Co").await;
    let mut notes = Vec::new();
    for i in 0..CREDENTIALS {
        notes.push(create_with_note(&app, &type_id, &company, i).await);
    }
    let path = format!("/v1/credential/credentials/company/{company}");

    for page in 1..=2 {
        let response = app
            .http
            .get(format!("{}{path}?page={page}&rpp=20", app.address))
            .bearer_auth(&app.admin_token)
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), 200);
        let text = response.text().await.expect("a body");
        assert!(
            text.len() > 8 * MAX_PAYLOAD,
            "{} bytes: several messages",
            text.len()
        );
        let body: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let items = body["data"].as_array().expect("a list");
        assert_eq!(items.len(), 20);
        for item in items {
            let name = item["name"].as_str().expect("a name");
            let i: usize = name.trim_start_matches("Noted ").parse().expect("numbered");
            assert!(
                item["fields"]["notes"] == json!(notes[i]),
                "{name}'s note arrived changed"
            );
            assert_eq!(item["fields"]["accessKeyId"], json!(format!("AKIA-{i}")));
        }
    }

    let (status, body) = app.get(&path, Some(&app.admin_token)).await;
    assert_eq!(status, 413, "{}", body["message"]);
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("page and rpp")),
        "{body}"
    );
    assert_eq!(
        ttscm_runtime::bus::nats::permission_violations(),
        0,
        "chunks stay within the generated NATS permissions"
    );
}
