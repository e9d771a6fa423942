//! Signed checkpoints of the audit chain (see [`ttscm_runtime::audit::checkpoint`]): the
//! credential service, owner of the audit log, asks vault to sign the head every
//! `TTSCM_AUDIT__CHECKPOINT_SECS` when it moved and on demand (`POST /v1/audit/checkpoint`),
//! keeps each checkpoint in `audit_checkpoints` and publishes it as the `audit.checkpoint`
//! event, so copies outside TTSCM outlive a store writer's edits. Verification checks the log
//! against the checkpoint a caller gives, else the newest stored one (its signature checked with
//! vault's public key: a forged stored checkpoint is ignored, and logged).
//!
//! Replicas may sign the same head twice; the first stored wins (keyed by `seq`) and only it is
//! published.

use std::sync::Arc;

use serde_json::json;
use ttscm_contract::audit::{
    AuditCheckpoint, AuditVerification, CreateAuditCheckpoint, GetAuditCheckpoint, VerifyAudit,
};
use ttscm_contract::vault::{CheckpointKey, GetCheckpointKey, SignAuditHead};
use ttscm_contract::{ErrorCode, WireError};
use ttscm_runtime::audit::AuditHead;
use ttscm_runtime::audit::checkpoint::{self, CheckAgainst};
use ttscm_runtime::service::{CallContext, ServiceOp};
use ttscm_runtime::store::{FindOptions, IndexSpec, Order};
use ttscm_runtime::{Filter, Shutdown, Store, StoreError};

use crate::service::{Service, store_failed};
use crate::store::{from_document, to_document};

/// The collection of checkpoints.
pub const CHECKPOINTS: &str = "audit_checkpoints";

const INDEXES: &[IndexSpec] = &[IndexSpec {
    name: "seq",
    fields: &["seq"],
    unique: true,
}];

/// Declares the collection's index.
pub async fn prepare(store: &Store) -> Result<(), StoreError> {
    store.ensure_indexes(CHECKPOINTS, INDEXES).await
}

/// The stored checkpoints kept newest first, at most this many looked at when verifying.
const STORED_TRIED: u64 = 8;

fn no_checkpoint() -> WireError {
    WireError::not_found("Audit checkpoint")
}

impl Service {
    /// The newest stored checkpoints, newest first.
    async fn stored_checkpoints(&self, limit: u64) -> Result<Vec<AuditCheckpoint>, WireError> {
        let documents = self
            .store
            .find(
                CHECKPOINTS,
                &FindOptions::new(Filter::All)
                    .sort("seq", Order::Desc)
                    .page(0, limit),
            )
            .await
            .map_err(store_failed)?;
        documents
            .into_iter()
            .map(|d| from_document(d).map_err(store_failed))
            .collect()
    }

    /// Signs the chain's head through vault and keeps the checkpoint, unless the newest stored
    /// one is of that head already; answers the newest checkpoint (`None`: the log is empty).
    pub(crate) async fn checkpoint(&self, ctx: &CallContext) -> Result<Option<AuditCheckpoint>, WireError> {
        let head = self.audit.log().head().await.map_err(store_failed)?;
        let newest = self.stored_checkpoints(1).await?.pop();
        if head.seq == 0 || newest.as_ref().is_some_and(|n| n.seq >= head.seq) {
            return Ok(newest);
        }
        let signed = self
            .client
            .call(
                ctx,
                &SignAuditHead {
                    seq: head.seq,
                    hash: head.hash,
                },
            )
            .await?;
        let mut document = to_document(&signed);
        document.insert("id".into(), json!(format!("{:020}", signed.seq)));
        match self.store.insert(CHECKPOINTS, document).await {
            Ok(()) => {
                tracing::info!(
                    seq = signed.seq,
                    key_id = signed.key_id,
                    "audit checkpoint signed"
                );
                let event = signed.clone();
                self.events
                    .publish(ctx, "audit", "checkpoint", &signed.seq.to_string(), move || {
                        serde_json::to_value(event).expect("checkpoints serialize")
                    })
                    .await;
                Ok(Some(signed))
            }
            // Another replica kept a checkpoint of this head first: answer that one.
            Err(StoreError::Conflict) => Ok(self.stored_checkpoints(1).await?.pop()),
            Err(other) => Err(store_failed(other)),
        }
    }

    /// Signs the head every [`Service::checkpoint_every`] while it moves, until `shutdown`
    /// (never when that is `None`).
    pub(crate) async fn checkpoint_forever(self: Arc<Self>, shutdown: Shutdown) {
        let Some(every) = self.checkpoint_every else {
            return;
        };
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate; the log has just been opened, leave it a period.
        interval.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = interval.tick() => {}
            }
            let ctx = self.client.bus().service_context();
            if let Err(error) = self.checkpoint(&ctx).await {
                tracing::warn!(code = ?error.code, message = error.message, "could not sign an audit checkpoint; retrying next period");
            }
        }
    }

    /// What to check the log against: `given` (a checkpoint's token), else the newest stored
    /// checkpoint whose signature verifies with vault's key.
    async fn check_against(
        &self,
        ctx: &CallContext,
        given: Option<&str>,
    ) -> Result<Option<CheckAgainst>, WireError> {
        let key: CheckpointKey = self.client.call(ctx, &GetCheckpointKey {}).await?;
        let (public, _) = ttscm_runtime::ed25519::public_key("vault's checkpoint key", &key.public_key)
            .map_err(|error| {
                tracing::error!(%error, "vault answered an unusable checkpoint key");
                WireError::internal()
            })?;
        if let Some(token) = given {
            let checkpoint = checkpoint::open(token.trim(), &public).map_err(|error| {
                WireError::new(
                    ErrorCode::Validation,
                    format!("The checkpoint is not valid: {error}"),
                )
            })?;
            return Ok(Some(CheckAgainst {
                checkpoint,
                source: "given",
            }));
        }
        for stored in self.stored_checkpoints(STORED_TRIED).await? {
            match checkpoint::open(&stored.token, &public) {
                Ok(checkpoint) if checkpoint.head.seq == stored.seq => {
                    return Ok(Some(CheckAgainst {
                        checkpoint,
                        source: "stored",
                    }));
                }
                _ if stored.key_id != key.key_id => {
                    tracing::info!(
                        seq = stored.seq,
                        key_id = stored.key_id,
                        "a stored checkpoint of another checkpoint key is skipped"
                    );
                }
                _ => tracing::error!(
                    seq = stored.seq,
                    "a stored audit checkpoint does not verify with vault's key: the store was written to outside TTSCM"
                ),
            }
        }
        Ok(None)
    }
}

impl ServiceOp<Service> for GetAuditCheckpoint {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<AuditCheckpoint, WireError> {
        service
            .stored_checkpoints(1)
            .await?
            .pop()
            .ok_or_else(no_checkpoint)
    }
}

impl ServiceOp<Service> for CreateAuditCheckpoint {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<AuditCheckpoint, WireError> {
        // Vault is asked as this service, whoever asked for the checkpoint.
        let own = service.client.bus().service_context();
        service.checkpoint(&own).await?.ok_or_else(|| {
            WireError::new(
                ErrorCode::Conflict,
                "The audit log is empty: there is no head to sign",
            )
        })
    }
}

/// The collection remembering how far the log has been verified (one document, [`VERIFIED`]).
pub const VERIFICATION: &str = "audit_verification";
/// The id of the document holding the head verified through.
const VERIFIED: &str = "verified";

impl Service {
    /// The head the log was verified through before (`None`: never, or forgotten).
    async fn verified_head(&self) -> Result<Option<AuditHead>, WireError> {
        let Some(document) = self
            .store
            .get(VERIFICATION, VERIFIED)
            .await
            .map_err(store_failed)?
        else {
            return Ok(None);
        };
        let seq = document.get("seq").and_then(serde_json::Value::as_u64);
        let hash = document.get("hash").and_then(serde_json::Value::as_str);
        Ok(match (seq, hash) {
            (Some(seq), Some(hash)) if seq > 0 && checkpoint::is_entry_hash(hash) => Some(AuditHead {
                seq,
                hash: hash.to_owned(),
            }),
            _ => None,
        })
    }

    /// Remembers `head` as verified through.
    async fn remember_verified(&self, head: &AuditHead) -> Result<(), WireError> {
        let update = ttscm_runtime::Update::default()
            .set("seq", head.seq)
            .set("hash", head.hash.as_str())
            .set("at", ttscm_runtime::clock::now_iso());
        let updated = self
            .store
            .update_one(VERIFICATION, &Filter::id(VERIFIED), &update)
            .await
            .map_err(store_failed)?;
        if !updated {
            let document = json!({"id": VERIFIED, "seq": head.seq, "hash": head.hash, "at": ttscm_runtime::clock::now_iso()});
            match self.store.insert(VERIFICATION, to_document(&document)).await {
                Ok(()) | Err(StoreError::Conflict) => {}
                Err(other) => return Err(store_failed(other)),
            }
        }
        Ok(())
    }
}

/// How long one `GET /v1/audit/verify` goes on reading entries: well inside the bus's request
/// deadline (5 s by default), so on a slow store a verification advances call by call.
const VERIFY_BUDGET: std::time::Duration = std::time::Duration::from_millis(1500);

/// Verifies the entries appended since the last verification (all of them with `full`), at most
/// `TTSCM_AUDIT__VERIFY_MAX_ENTRIES` per call and reading for at most [`VERIFY_BUDGET`], and the
/// log against a checkpoint; remembers how far it got while the log is intact (`complete: false`:
/// call again to go on).
impl ServiceOp<Service> for VerifyAudit {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<AuditVerification, WireError> {
        let own = service.client.bus().service_context();
        let against = service.check_against(&own, self.checkpoint.as_deref()).await?;
        let verified = if self.full {
            None
        } else {
            service.verified_head().await?
        };
        let (verification, head) = service
            .audit
            .log()
            .verify_incremental_within(
                verified.as_ref(),
                service.verify_max_entries,
                Some(VERIFY_BUDGET),
                against.as_ref(),
            )
            .await
            .map_err(store_failed)?;
        if verification.valid
            && let Some(head) = head
            && verified.as_ref() != Some(&head)
        {
            service.remember_verified(&head).await?;
        }
        Ok(verification)
    }
}
