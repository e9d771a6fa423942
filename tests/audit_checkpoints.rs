//! Signed checkpoints of the audit chain (issue 18), in both modes: vault signs the head on
//! demand and periodically, `GET /v1/audit/checkpoint` returns the newest, checkpoints are
//! published as events, and `verify` reports a log cut short or rewritten-and-rehashed — which
//! the hash chain alone passes — against the newest stored checkpoint or one given; an exported
//! log verifies offline with only the public key and a checkpoint.

use crate::support;

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Mode, TestApp, spawn_app, spawn_app_with};
use ttscm::Component;
use ttscm_contract::audit::AuditEntry;

const CHECKPOINT: &str = "/v1/audit/checkpoint";
const BIN: &str = env!("CARGO_BIN_EXE_ttscm");

/// A credential revealed `n` times: `n + 2` entries (type, credential, reveals).
async fn some_entries(app: &TestApp, reveals: usize) {
    let company = format!("Checkpoint Co {}", ttscm_runtime::ids::new_id());
    let seeded = app.seed_aws_credential(&company, "hunter2").await;
    let path = format!("/v1/credential/credentials/{}/secure-values", seeded.id);
    for _ in 0..reveals {
        assert_eq!(app.get_status(&path, Some(&app.admin_token)).await, 200);
    }
}

async fn verify(app: &TestApp, query: &str) -> (u16, Value) {
    app.get(&format!("/v1/audit/verify{query}"), Some(&app.admin_token))
        .await
}

async fn sign_now(app: &TestApp) -> Value {
    let (status, body) = app.post(CHECKPOINT, &app.admin_token, &json!({})).await;
    assert_eq!(status, 201, "{body}");
    body["data"].clone()
}

/// Every stored entry, in sequence order.
async fn stored_entries(app: &TestApp, mode: Mode) -> Vec<AuditEntry> {
    match mode {
        Mode::Embedded => std::fs::read_to_string(journal(app))
            .expect("the journal")
            .lines()
            .map(|line| serde_json::from_str(line).expect("an entry"))
            .collect(),
        Mode::Mesh => {
            let settings = command_settings(app);
            let store = app.store().await;
            let mut out = Vec::new();
            ttscm::export_audit(&settings, &store, &mut out)
                .await
                .expect("exported");
            String::from_utf8(out)
                .expect("text")
                .lines()
                .map(|line| serde_json::from_str(line).expect("an entry"))
                .collect()
        }
    }
}

fn journal(app: &TestApp) -> std::path::PathBuf {
    ttscm_runtime::audit::journal_path(&app.settings.data_dir.join(ttscm_runtime::connect::SQLITE_FILE))
}

/// The settings of a `ttscm` command run beside `app` as the credential service.
fn command_settings(app: &TestApp) -> ttscm_runtime::Settings {
    let mut settings = app.settings.clone();
    if let Some(keys) = &app.mesh_keys {
        keys.apply(Component::Credential, &mut settings);
    }
    settings
}

/// What someone with write access to the storage does to hide entry 2: changes it (same
/// length, so the embedded server's index of the journal stays right) and rehashes every entry
/// from it on, so the chain verifies again.
async fn rewrite_and_rehash(app: &TestApp, mode: Mode) {
    let mut entries = stored_entries(app, mode).await;
    assert_eq!(entries[1].action, "credential.created");
    entries[1].action = "credential.updated".into();
    for i in 1..entries.len() {
        entries[i].prev_hash = entries[i - 1].hash.clone();
        entries[i].hash = ttscm_runtime::audit::entry_hash(&entries[i]);
    }
    match mode {
        Mode::Embedded => {
            let text: String = entries
                .iter()
                .map(|e| serde_json::to_string(e).expect("serializes") + "\n")
                .collect();
            std::fs::write(journal(app), text).expect("rewritten");
        }
        Mode::Mesh => {
            let store = app.store().await;
            for entry in &entries[1..] {
                store
                    .update_one(
                        ttscm_runtime::audit::COLLECTION,
                        &ttscm_runtime::Filter::eq("seq", entry.seq as i64),
                        &ttscm_runtime::Update::default()
                            .set("action", entry.action.as_str())
                            .set("prevHash", entry.prev_hash.as_str())
                            .set("hash", entry.hash.as_str()),
                    )
                    .await
                    .expect("rewritten");
            }
        }
    }
}

async fn a_checkpoint_catches_a_log_rewritten_and_rehashed(mode: Mode) {
    let app = spawn_app(mode).await;
    some_entries(&app, 2).await;
    assert_eq!(app.get_status(CHECKPOINT, Some(&app.admin_token)).await, 404);
    let signed = sign_now(&app).await;
    assert_eq!(signed["seq"], 4, "{signed}");
    assert_eq!(signed["keyId"].as_str().map(str::len), Some(16));
    let token = signed["token"].as_str().expect("a token").to_owned();
    let (status, newest) = app.get(CHECKPOINT, Some(&app.admin_token)).await;
    assert_eq!(status, 200);
    assert_eq!(newest["data"], signed);
    // Signing again without new entries answers the same checkpoint.
    assert_eq!(sign_now(&app).await, signed);
    // Only those who may verify the log may ask.
    let weak = app.token_with(&["audit.fetch.many"]).await;
    assert_eq!(app.get_status(CHECKPOINT, Some(&weak)).await, 403);

    let (_, intact) = verify(&app, "").await;
    assert_eq!(
        intact["data"]["checkpoint"],
        json!({"seq": 4, "hash": signed["hash"], "at": signed["at"], "source": "stored", "outcome": "matches"})
    );
    assert_eq!(intact["data"]["valid"], true);

    rewrite_and_rehash(&app, mode).await;
    // The incremental check finds the entry it last verified through changed...
    let (_, incremental) = verify(&app, "").await;
    assert_eq!(incremental["data"]["firstBrokenSeq"], 4, "{incremental}");
    // ...and a full one finds the chain intact, but not the checkpoint.
    let (status, rewritten) = verify(&app, "?full=true").await;
    assert_eq!(status, 200, "{rewritten}");
    assert_eq!(rewritten["data"]["valid"], false, "{rewritten}");
    assert_eq!(
        rewritten["data"]["firstBrokenSeq"],
        Value::Null,
        "the chain itself verifies"
    );
    assert_eq!(rewritten["data"]["checkpoint"]["outcome"], "rewritten");

    // The writer deletes the stored checkpoints too: the chain alone passes the rewrite...
    app.store()
        .await
        .delete_many("audit_checkpoints", &ttscm_runtime::Filter::All)
        .await
        .expect("deleted");
    let (_, unanchored) = verify(&app, "?full=true").await;
    assert_eq!(unanchored["data"]["valid"], true, "{unanchored}");
    assert_eq!(unanchored["data"].get("checkpoint"), None);
    // ...but not a copy of the checkpoint kept elsewhere.
    let (_, given) = verify(&app, &format!("?full=true&checkpoint={token}")).await;
    assert_eq!(given["data"]["valid"], false, "{given}");
    assert_eq!(given["data"]["checkpoint"]["source"], "given");
    assert_eq!(given["data"]["checkpoint"]["outcome"], "rewritten");

    // A checkpoint not signed by this vault's key is refused.
    let stranger = ttscm_runtime::ed25519::Ed25519Key::generate();
    let forged = ttscm_runtime::audit::checkpoint::sign(
        &stranger,
        &ttscm_runtime::audit::AuditHead {
            seq: 4,
            hash: signed["hash"].as_str().expect("hash").to_owned(),
        },
    );
    for bad in [forged.token.as_str(), "not-a-checkpoint"] {
        let (status, body) = verify(&app, &format!("?checkpoint={bad}")).await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("The checkpoint is not valid")),
            "{body}"
        );
    }
}

async fn a_checkpoint_catches_a_log_cut_short(mode: Mode) {
    let app = spawn_app(mode).await;
    some_entries(&app, 3).await;
    let signed = sign_now(&app).await;
    assert_eq!(signed["seq"], 5);
    // The newest two entries go (deleting a log's tail leaves its chain intact).
    let entries = stored_entries(&app, mode).await;
    let kept = &entries[..3];
    let path = std::env::temp_dir().join(format!("ttscm-export-{}.jsonl", ttscm_runtime::ids::new_id()));
    match mode {
        // The embedded server indexes its journal in memory; a cut shows in an export, which
        // is what is verified offline below.
        Mode::Embedded => {}
        Mode::Mesh => {
            app.store()
                .await
                .delete_many(
                    ttscm_runtime::audit::COLLECTION,
                    &ttscm_runtime::Filter::Gt("seq".into(), 3i64.into()),
                )
                .await
                .expect("deleted");
            let (_, cut) = verify(&app, "").await;
            assert_eq!(cut["data"]["valid"], false, "{cut}");
            assert_eq!(cut["data"]["firstBrokenSeq"], Value::Null, "{cut}");
            assert_eq!(cut["data"]["checkpoint"]["outcome"], "truncated");
        }
    }
    // Offline, with only the public key and the checkpoint.
    let text: String = kept
        .iter()
        .map(|e| serde_json::to_string(e).expect("serializes") + "\n")
        .collect();
    std::fs::write(&path, text).expect("written");
    let public_key = signed["publicKey"].as_str().expect("public key");
    let token = signed["token"].as_str().expect("token");
    let offline = ttscm::verify_export(&path, public_key, Some(token)).expect("verifies");
    assert!(!offline.valid);
    assert_eq!(
        offline.checkpoint.map(|c| c.outcome),
        Some(ttscm_contract::audit::CheckpointOutcome::Truncated)
    );
    let unanchored = ttscm::verify_export(&path, public_key, None).expect("verifies");
    assert!(unanchored.valid, "without a checkpoint a cut log passes");
    let _ = std::fs::remove_file(&path);
}

async fn the_head_is_signed_periodically_and_published(mode: Mode) {
    let app = spawn_app_with(mode, |settings| settings.audit.checkpoint_secs = 1).await;
    some_entries(&app, 1).await;
    let newest = ttscm_testkit::eventually(Duration::from_secs(10), || async {
        let (status, body) = app.get(CHECKPOINT, Some(&app.admin_token)).await;
        (status == 200 && body["data"]["seq"] == 3).then_some(body["data"].clone())
    })
    .await
    .expect("the moved head is signed within a period or two");
    let (_, verified) = verify(&app, "").await;
    assert_eq!(verified["data"]["checkpoint"]["outcome"], "matches");
    if mode == Mode::Mesh {
        // Published for outside tools, without anything secret.
        let published = ttscm_testkit::eventually(Duration::from_secs(5), || async {
            app.replay_events()
                .await
                .into_iter()
                .find(|(subject, _)| subject == "ttscm.events.audit.checkpoint")
        })
        .await
        .expect("an audit.checkpoint event");
        assert_eq!(published.1["data"]["token"], newest["token"], "{}", published.1);
        assert_eq!(published.1["data"]["seq"], 3);
    }
}

/// `verify` checks only what was appended since the last verification (at most
/// `TTSCM_AUDIT__VERIFY_MAX_ENTRIES` per call, going on at the next), re-checks that the last
/// verified entry is unchanged, and starts over with `full=true`.
async fn verification_is_incremental_and_resumable(mode: Mode) {
    let app = spawn_app_with(mode, |s| s.audit.verify_max_entries = 3).await;
    some_entries(&app, 2).await;
    let fields = |v: &Value| {
        (
            v["data"]["valid"].clone(),
            v["data"]["entries"].clone(),
            v["data"]["verifiedFrom"].clone(),
            v["data"]["complete"].clone(),
        )
    };
    let (_, first) = verify(&app, "").await;
    assert_eq!(
        fields(&first),
        (json!(true), json!(3), json!(1), json!(false)),
        "{first}"
    );
    let (_, second) = verify(&app, "").await;
    assert_eq!(
        fields(&second),
        (json!(true), json!(1), json!(4), json!(true)),
        "{second}"
    );
    let (_, nothing_new) = verify(&app, "").await;
    assert_eq!(
        fields(&nothing_new),
        (json!(true), json!(0), json!(5), json!(true)),
        "{nothing_new}"
    );
    some_entries(&app, 1).await;
    let (_, appended) = verify(&app, "").await;
    assert_eq!(
        fields(&appended),
        (json!(true), json!(3), json!(5), json!(true)),
        "{appended}"
    );

    // An edit before the verified head is found by a full re-verification...
    app.edit_audit_entry(mode, 2, "credential.created", "credential.updated")
        .await;
    let (_, full) = verify(&app, "?full=true").await;
    assert_eq!(full["data"]["valid"], false, "{full}");
    assert_eq!(full["data"]["firstBrokenSeq"], 2, "{full}");
    assert_eq!(full["data"]["verifiedFrom"], 1);
    // ...and an edit of the verified head itself by the next incremental one.
    app.edit_audit_entry(mode, 7, "credential.revealed", "credential.reveale_")
        .await;
    let (_, head) = verify(&app, "").await;
    assert_eq!(head["data"]["valid"], false, "{head}");
    assert_eq!(head["data"]["firstBrokenSeq"], 7, "{head}");
}

/// The binary as an operator runs it: export, verify offline, print the public key.
#[tokio::test]
async fn the_cli_exports_and_verifies_a_log_offline() {
    let app = spawn_app(Mode::Embedded).await;
    some_entries(&app, 2).await;
    let signed = sign_now(&app).await;
    let dir = tempfile::tempdir().expect("dir");
    let export = dir.path().join("audit.jsonl");
    let ttscm = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("TTSCM_DATA_DIR", &app.settings.data_dir)
            .env("TTSCM_LOG", "warn")
            .output()
            .expect("ttscm runs")
    };
    let key: Value = serde_json::from_str(&support::stdout_of(
        ttscm(&["vault", "checkpoint-key"]),
        "checkpoint-key",
    ))
    .expect("json");
    assert_eq!(key["publicKey"], signed["publicKey"], "the running vault's key");
    let exported = ttscm(&["audit", "export", "--out", export.to_str().expect("path")]);
    assert!(exported.status.success(), "{exported:?}");
    assert_eq!(
        std::fs::read_to_string(&export).expect("export").lines().count(),
        4
    );
    let token_file = dir.path().join("checkpoint.jwt");
    std::fs::write(&token_file, signed["token"].as_str().expect("token")).expect("written");
    let public_key = key["publicKey"].as_str().expect("key");
    let checkpoint = format!("@{}", token_file.display());
    let args = [
        "audit",
        "verify",
        "--file",
        export.to_str().expect("path"),
        "--public-key",
        public_key,
        "--checkpoint",
        &checkpoint,
    ];
    let verified = ttscm(&args);
    assert!(verified.status.success(), "{verified:?}");
    let report: Value = serde_json::from_slice(&verified.stdout).expect("json");
    assert_eq!(report["checkpoint"]["outcome"], "matches");
    // Cut short: exit 1, and the report says so.
    let text = std::fs::read_to_string(&export).expect("export");
    let cut: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
    std::fs::write(&export, cut).expect("cut");
    let refused = ttscm(&args);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let report: Value = serde_json::from_slice(&refused.stdout).expect("json");
    assert_eq!(report["checkpoint"]["outcome"], "truncated");
    // Another key: the checkpoint is refused (exit 64).
    let other = ttscm_runtime::ed25519::Ed25519Key::generate().public_base64();
    let mut wrong = args;
    wrong[5] = &other;
    assert_eq!(ttscm(&wrong).status.code(), Some(64));
}

both_modes!(
    a_checkpoint_catches_a_log_rewritten_and_rehashed,
    a_checkpoint_catches_a_log_cut_short,
    the_head_is_signed_periodically_and_published,
    verification_is_incremental_and_resumable
);
