//! Retries that cannot duplicate: a create sent with an `Idempotency-Key` runs once per key and
//! caller; a retry (after a timeout, a dropped connection) gets the first answer, never a second
//! copy. Kept in the owning service's store (`idempotency_keys`), one document per key:
//! `{id: sha256(caller, operation, key), bodyHash, state: pending|done, reply, expiresAt}`.
//!
//! - The first request claims the key (an insert: two racing requests cannot both win), runs,
//!   and stores its answer; a failure gives the key up, so a retry runs again.
//! - A retry with the same body gets the stored answer; while the first still runs, 409.
//! - The same key with another body is 422: a key names one request.
//! - Keys are kept for [`KEEP`] (then treated as unused; expired documents are deleted when met).
//!
//! Keys are scoped to the calling principal and the operation, so two callers (or two kinds of
//! create) never see each other's answers. Answers hold no secret values (creates answer
//! metadata and plain fields only).

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use ttscm_contract::{ErrorCode, FieldError, WireError};

use crate::service::{CallContext, store_failed};
use crate::store::{Document, Store, StoreError};
use crate::{Filter, Update, clock};

/// The collection of keys (in each service's own store).
pub const COLLECTION: &str = "idempotency_keys";
/// How long a key is remembered.
pub const KEEP: Duration = Duration::from_secs(24 * 3600);
/// Longest accepted key.
pub const MAX_KEY_LEN: usize = 255;

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// Runs `create` once per (caller, `operation`, key) when the call carries an
/// `Idempotency-Key`, answering a retry with the first answer (see the module docs); without a
/// key, just runs it. `request` is the operation as received, serialized (its body is what a
/// key names).
pub async fn once<R, F, Fut>(
    store: &Store,
    ctx: &CallContext,
    operation: &str,
    request: &[u8],
    create: F,
) -> Result<R, WireError>
where
    R: Serialize + DeserializeOwned,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<R, WireError>>,
{
    let Some(key) = &ctx.idempotency_key else {
        return create().await;
    };
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(WireError::validation(vec![FieldError::new(
            vec![json!("Idempotency-Key")],
            format!("Idempotency-Key is 1 to {MAX_KEY_LEN} visible ASCII characters"),
        )]));
    }
    let caller = ctx.principal.as_ref().map_or("-", |p| p.id.as_str());
    let id = sha256_hex(format!("{caller}\n{operation}\n{key}").as_bytes());
    let body_hash = sha256_hex(request);
    let expires_at = clock::format_iso(time::OffsetDateTime::now_utc() + KEEP);
    let claim = || {
        let Value::Object(document) =
            json!({"id": id, "bodyHash": body_hash, "state": "pending", "expiresAt": expires_at})
        else {
            unreachable!("an object literal")
        };
        document
    };
    let mut claimed = store.insert(COLLECTION, claim()).await;
    if matches!(claimed, Err(StoreError::Conflict)) {
        let stored = store.get(COLLECTION, &id).await.map_err(store_failed)?;
        match stored {
            Some(stored) if !crate::store::is_expired(&stored) => return answer_from(&stored, &body_hash),
            // Expired (or gone meanwhile): forget it and claim it afresh.
            _ => {
                store.delete(COLLECTION, &id).await.map_err(store_failed)?;
                claimed = store.insert(COLLECTION, claim()).await;
            }
        }
    }
    match claimed {
        Ok(()) => {}
        Err(StoreError::Conflict) => return Err(in_progress()),
        Err(other) => return Err(store_failed(other)),
    }
    let result = create().await;
    let stored = match &result {
        Ok(reply) => {
            let update = Update::default()
                .set("state", "done")
                .set("reply", serde_json::to_value(reply).expect("replies serialize"));
            store
                .update_one(COLLECTION, &Filter::id(&id), &update)
                .await
                .map(|_| ())
        }
        // Nothing was created: a retry may run again.
        Err(_) => store.delete(COLLECTION, &id).await.map(|_| ()),
    };
    if let Err(error) = stored {
        tracing::warn!(%error, operation, "could not record an idempotency key's outcome");
    }
    result
}

/// [`once`] for an operation: `op` (serialized, it is what the key names) and the call go to
/// `create`.
pub async fn once_op<O, R, F, Fut>(
    store: &Store,
    ctx: CallContext,
    operation: &str,
    op: O,
    create: F,
) -> Result<R, WireError>
where
    O: Serialize,
    R: Serialize + DeserializeOwned,
    F: FnOnce(O, CallContext) -> Fut,
    Fut: Future<Output = Result<R, WireError>>,
{
    let body = serde_json::to_vec(&op).expect("operations serialize");
    let call = ctx.clone();
    once(store, &call, operation, &body, move || create(op, ctx)).await
}

fn in_progress() -> WireError {
    WireError::new(
        ErrorCode::Conflict,
        "A request with this Idempotency-Key is still being processed; retry in a moment",
    )
}

/// The answer a retry gets from the stored key.
fn answer_from<R: DeserializeOwned>(stored: &Document, body_hash: &str) -> Result<R, WireError> {
    if stored.get("bodyHash").and_then(Value::as_str) != Some(body_hash) {
        return Err(WireError::new(
            ErrorCode::Unprocessable,
            "This Idempotency-Key was used with another request body; use a new key for a new request",
        ));
    }
    match (stored.get("state").and_then(Value::as_str), stored.get("reply")) {
        (Some("done"), Some(reply)) => serde_json::from_value(reply.clone()).map_err(|error| {
            tracing::error!(%error, "a stored idempotent answer does not read back");
            WireError::internal()
        }),
        _ => Err(in_progress()),
    }
}
