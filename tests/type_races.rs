//! Type migrations racing credential writes (issue 18): a type change that makes a field secure
//! (or non-secure again) runs while `PUT …/fields` writes the same credentials. Afterwards
//! every stored value of a secure field is sealed, every value of a non-secure field is
//! plaintext, every write answers 200 (writes of one credential, the migration's among them,
//! take turns) and the last is what the credential holds.

use crate::support;

use serde_json::{Value, json};
use support::{Mode, TestApp, spawn_app};

const TYPES: &str = "/v1/credential-type/credential-types";
const CREDS: &str = "/v1/credential/credentials";
const CREDENTIALS: usize = 8;
const ITERATIONS: usize = 20;

fn aws_fields(notes_secure: bool) -> Value {
    json!([
        {"id": "accessKeyId", "name": "Access Key ID", "required": true, "secure": false, "valueType": "plain_text"},
        {"id": "secretAccessKey", "name": "Secret Access Key", "required": true, "secure": true, "valueType": "password"},
        {"id": "notes", "name": "Notes", "required": false, "secure": notes_secure, "valueType": "note"}
    ])
}

/// Writes `notes` on `id` twice; answers the value of the last write.
async fn write_notes(app: &TestApp, id: &str, round: usize) -> String {
    let mut last = String::new();
    for attempt in 0..2 {
        let notes = format!("notes-{round}-{attempt}-{id}");
        let body = json!({"fields": [
            {"fieldId": "accessKeyId", "value": "AKIAIOSFODNN7EXAMPLE"},
            {"fieldId": "secretAccessKey", "value": "secret"},
            {"fieldId": "notes", "value": notes}
        ]});
        let (status, answer) = app
            .put(&format!("{CREDS}/{id}/fields"), &app.admin_token, &body)
            .await;
        // Every write of the credential's values, the migration's included, takes the
        // process's turn for it: none loses a round to another, so none answers 409.
        assert_eq!(status, 200, "fields write: {answer}");
        last = notes;
    }
    last
}

async fn a_type_migration_neither_reverts_nor_leaks_concurrent_field_writes(mode: Mode) {
    let app = spawn_app(mode).await;
    let (company, type_id) = app.company_and_aws_type("Race Co").await;
    let mut ids = Vec::new();
    for _ in 0..CREDENTIALS {
        ids.push(app.create_aws_credential(&type_id, &company, "secret").await);
    }
    for round in 0..ITERATIONS {
        // Even rounds make `notes` secure, odd rounds make it plain again; the last one is secure.
        let secure = round % 2 == 0 || round == ITERATIONS - 1;
        let patch = async {
            let (status, body) = app
                .patch(
                    &format!("{TYPES}/{type_id}"),
                    &app.admin_token,
                    &json!({"fields": aws_fields(secure)}),
                )
                .await;
            assert_eq!(status, 200, "type change: {body}");
        };
        let writes = futures_util::future::join_all(ids.iter().map(|id| write_notes(&app, id, round)));
        let ((), written) = tokio::join!(patch, writes);
        for (id, notes) in ids.iter().zip(&written) {
            let (status, fields) = app
                .get(&format!("{CREDS}/{id}/fields"), Some(&app.admin_token))
                .await;
            assert_eq!(status, 200, "{fields}");
            let stored = fields["data"]
                .as_array()
                .expect("fields")
                .iter()
                .find(|v| v["fieldId"] == "notes")
                .unwrap_or_else(|| panic!("round {round}: {id} lost its notes: {fields}"));
            let stored = stored["value"].as_str().expect("text");
            if secure {
                assert_ne!(
                    stored, notes,
                    "round {round}: secure notes of {id} stored unsealed"
                );
                let (status, revealed) = app
                    .get(&format!("{CREDS}/{id}/secure-values"), Some(&app.admin_token))
                    .await;
                assert_eq!(status, 200, "{revealed}");
                assert_eq!(
                    revealed["data"]["notes"].as_str(),
                    Some(notes.as_str()),
                    "round {round}: the last accepted write to {id} was reverted"
                );
            } else {
                assert_eq!(
                    stored, notes,
                    "round {round}: plain notes of {id} are not the last accepted write"
                );
            }
        }
    }
}

both_modes!(a_type_migration_neither_reverts_nor_leaks_concurrent_field_writes);
