//! Deliveries out: claimed by one replica at a time, POSTed with Standard Webhooks headers,
//! retried on a fixed schedule, and the endpoint disabled after a run of failures.
//!
//! The schedule's clock is a parameter ([`Service::deliver_due`] takes `now`), so tests walk
//! a delivery through a day of retries without waiting; the signed `webhook-timestamp` is
//! always the real time of sending (receivers check it against their clock).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::Notify;
use ttscm_contract::webhook::{OpenWebhookSecrets, SealedWebhookSecret, WebhookAttempt};
use ttscm_runtime::audit::{AuditRecord, system_actor};
use ttscm_runtime::settings::WebhookSettings;
use ttscm_runtime::store::{Order, Scalar};
use ttscm_runtime::{Filter, FindOptions, Shutdown, StoreError, Update, clock, ids};
use zeroize::Zeroizing;

use crate::Service;
use crate::ssrf::{self, CheckedResolver};
use crate::store::{
    DELIVERED, DELIVERIES, DeliveryDoc, ENDPOINTS, EndpointDoc, FAILED, PENDING, from_document,
};

/// Waits after each failed attempt (the Standard Webhooks schedule): eight attempts, the last
/// 27 h 35 min after the first.
pub const SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];
/// Attempts before a delivery is given up.
pub const MAX_ATTEMPTS: u32 = SCHEDULE.len() as u32 + 1;
/// How long a replica's claim holds beyond an attempt's timeout (a replica killed mid-attempt
/// holds its deliveries this long; one stopped gracefully lets them go at once).
const CLAIM_MARGIN: Duration = Duration::from_secs(20);
/// Most deliveries one pass takes.
const BATCH: u64 = 256;
/// How often due deliveries are looked for when nothing woke the deliverer.
const POLL: Duration = Duration::from_millis(500);
/// Attempts kept per delivery in its log.
const KEEP_ATTEMPTS: usize = 10;
/// How long opened secrets are kept in memory.
const SECRETS_TTL: Duration = Duration::from_secs(60);
/// How often old deliveries are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How often the pending deliveries are counted for the metrics.
const SAMPLE_EVERY: Duration = Duration::from_secs(15);

/// A delivery queued (counted).
pub fn queued(count: usize) {
    ttscm_runtime::metrics::webhook_queued(count);
}

/// Opened secrets of one endpoint: the sealed texts they came from, when, and the keys.
type OpenedSecrets = (Vec<String>, Instant, Arc<Vec<Zeroizing<Vec<u8>>>>);

/// What delivering needs besides the store.
pub struct Deliverer {
    http: reqwest::Client,
    wake: Notify,
    /// This replica's name on its claims.
    holder: String,
    allow_http: bool,
    allow_private: bool,
    /// How long a claim holds.
    claim: Duration,
    /// Opened secrets by endpoint.
    secrets: Mutex<HashMap<String, OpenedSecrets>>,
}

impl Deliverer {
    /// A deliverer with the settings' timeout and address policy.
    pub fn new(settings: &WebhookSettings) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_secs.max(1)))
            .redirect(reqwest::redirect::Policy::none())
            // Direct connections only: through a proxy (HTTPS_PROXY) the proxy would resolve
            // the name, and the address check below would not see where the request goes.
            .no_proxy()
            .user_agent("TTSCM-Webhooks/1")
            .dns_resolver(Arc::new(CheckedResolver {
                allow_private: settings.allow_private,
            }))
            .build()
            .expect("a client with a timeout and a resolver builds");
        Self {
            http,
            wake: Notify::new(),
            holder: ids::new_id(),
            allow_http: settings.allow_http,
            allow_private: settings.allow_private,
            claim: Duration::from_secs(settings.timeout_secs.max(1)) + CLAIM_MARGIN,
            secrets: Mutex::new(HashMap::new()),
        }
    }

    /// Wakes the delivery loop (a delivery was queued or replayed here).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// `v1,<base64 HMAC-SHA256 over id.timestamp.body>` with `key`.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(id.as_bytes());
    context.update(b".");
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(context.sign().as_ref()))
}

/// The key bytes of a `whsec_<base64>` secret.
pub fn secret_key(secret: &str) -> Option<Zeroizing<Vec<u8>>> {
    let encoded = secret.strip_prefix("whsec_")?;
    STANDARD.decode(encoded).ok().map(Zeroizing::new)
}

/// What one attempt came to.
enum Outcome {
    /// Accepted, with the receiver's status.
    Delivered(u16),
    /// Failed: the status, if the receiver answered, and why.
    Failed(Option<u16>, String),
    /// The address was refused (SSRF).
    Refused(String),
}

/// Runs passes until `shutdown`: due deliveries now, then again when woken or after [`POLL`].
pub async fn deliver_forever(service: Arc<Service>, shutdown: Shutdown) {
    let mut sampled: Option<Instant> = None;
    loop {
        if sampled.is_none_or(|at| at.elapsed() >= SAMPLE_EVERY) {
            sampled = Some(Instant::now());
            if let Ok(pending) = service
                .store
                .count(DELIVERIES, &Filter::eq("status", PENDING))
                .await
            {
                ttscm_runtime::metrics::webhook_pending(pending);
            }
        }
        let pass = tokio::select! {
            () = shutdown.cancelled() => {
                service.release_claims().await;
                return;
            }
            pass = service.deliver_due(clock::unix_now_millis()) => pass,
        };
        let more = match pass {
            Ok(taken) => taken as u64 >= BATCH,
            Err(error) => {
                tracing::warn!(%error, "webhook deliveries could not be read");
                false
            }
        };
        if more {
            continue;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = service.deliverer.wake.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Deletes deliveries older than the settings' `keep_days` (finished ones) every hour.
pub async fn prune_forever(service: Arc<Service>, shutdown: Shutdown) {
    loop {
        let before = clock::unix_now_millis()
            - i64::try_from(service.settings.keep_days.saturating_mul(86_400_000)).unwrap_or(i64::MAX);
        let old = Filter::And(vec![
            Filter::Lt("createdAtMs".into(), Scalar::Int(before)),
            Filter::Ne("status".into(), Scalar::Str(PENDING.into())),
        ]);
        match service.store.delete_many(DELIVERIES, &old).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "old webhook deliveries pruned"),
            Err(error) => tracing::warn!(%error, "old webhook deliveries not pruned"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}

impl Service {
    /// Lets go of this replica's claims (stopping: attempts cut short are made again by whoever
    /// comes next — at least once).
    pub async fn release_claims(&self) {
        let ours = Filter::And(vec![
            Filter::eq("claimedBy", self.deliverer.holder.as_str()),
            Filter::eq("status", PENDING),
        ]);
        let free = Update::default().set("claimUntil", 0);
        match self.store.update_many(DELIVERIES, &ours, &free).await {
            Ok(0) => {}
            Ok(released) => tracing::info!(released, "webhook deliveries released for another replica"),
            Err(error) => tracing::warn!(%error, "webhook claims not released; they lapse by themselves"),
        }
    }

    /// Attempts every delivery due at `now_ms` (milliseconds since the epoch) that no replica
    /// holds; answers how many it took.
    pub async fn deliver_due(&self, now_ms: i64) -> Result<usize, StoreError> {
        let due = FindOptions::new(Filter::And(vec![
            Filter::eq("status", PENDING),
            Filter::Lte("nextAtMs".into(), Scalar::Int(now_ms)),
            Filter::Lt("claimUntil".into(), Scalar::Int(now_ms)),
        ]))
        .sort("nextAtMs", Order::Asc)
        .page(0, BATCH);
        let documents = self.store.find(DELIVERIES, &due).await?;
        if documents.is_empty() {
            return Ok(0);
        }
        let taken = documents.len();
        let endpoints: HashMap<String, EndpointDoc> = self
            .store
            .find(ENDPOINTS, &FindOptions::new(Filter::All))
            .await?
            .into_iter()
            .filter_map(|d| from_document::<EndpointDoc>(d).ok())
            .map(|e| (e.id.clone(), e))
            .collect();
        let endpoints = &endpoints;
        let results: Vec<Result<(), StoreError>> = futures_util::stream::iter(documents)
            .map(|document| async move {
                let Ok(delivery) = from_document::<DeliveryDoc>(document) else {
                    tracing::error!("an unreadable webhook delivery is skipped");
                    return Ok(());
                };
                self.attempt(delivery, endpoints, now_ms).await
            })
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        Ok(taken)
    }

    /// Claims `delivery` and makes one attempt, recording it.
    async fn attempt(
        &self,
        delivery: DeliveryDoc,
        endpoints: &HashMap<String, EndpointDoc>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let claim_until = now_ms + self.deliverer.claim.as_millis() as i64;
        let free = Filter::And(vec![
            Filter::id(&delivery.id),
            Filter::eq("status", PENDING),
            Filter::Lt("claimUntil".into(), Scalar::Int(now_ms)),
        ]);
        let claim = Update::default()
            .set("claimUntil", claim_until)
            .set("claimedBy", self.deliverer.holder.clone());
        if !self.store.update_one(DELIVERIES, &free, &claim).await? {
            return Ok(());
        }
        let ours = Filter::And(vec![
            Filter::id(&delivery.id),
            Filter::eq("claimedBy", self.deliverer.holder.as_str()),
            Filter::eq("claimUntil", claim_until),
        ]);
        let Some(endpoint) = endpoints.get(&delivery.endpoint_id).filter(|e| e.enabled) else {
            // Kept in the log as failed: replayed once the endpoint is enabled again.
            let mut log = delivery.last_attempts.clone();
            log.push(WebhookAttempt {
                at: crate::store::format_ms(now_ms),
                status_code: None,
                error: Some("the endpoint is disabled".into()),
                duration_ms: 0,
            });
            let update = Update::default()
                .set("status", FAILED)
                .set("claimUntil", 0)
                .set("lastAttempts", json!(log));
            self.store.update_one(DELIVERIES, &ours, &update).await?;
            return Ok(());
        };
        let started = Instant::now();
        let outcome = self.send(endpoint, &delivery).await;
        let attempt = WebhookAttempt {
            at: crate::store::format_ms(now_ms),
            status_code: match &outcome {
                Outcome::Failed(status, _) => *status,
                Outcome::Delivered(status) => Some(*status),
                Outcome::Refused(_) => None,
            },
            error: match &outcome {
                Outcome::Delivered(_) => None,
                Outcome::Failed(_, why) | Outcome::Refused(why) => Some(why.clone()),
            },
            duration_ms: started.elapsed().as_millis() as u64,
        };
        let mut attempts_log = delivery.last_attempts.clone();
        attempts_log.push(attempt);
        if attempts_log.len() > KEEP_ATTEMPTS {
            attempts_log.drain(..attempts_log.len() - KEEP_ATTEMPTS);
        }
        let attempts = delivery.attempts + 1;
        let mut update = Update::default()
            .set("attempts", attempts)
            .set("claimUntil", 0)
            .set("lastAttempts", json!(attempts_log));
        let delivered = matches!(outcome, Outcome::Delivered(_));
        if delivered {
            update = update
                .set("status", DELIVERED)
                .set("deliveredAt", crate::store::format_ms(now_ms));
            let delay = (delivery.attempts == 0).then(|| {
                Duration::from_millis(
                    u64::try_from(clock::unix_now_millis() - delivery.next_at_ms).unwrap_or(0),
                )
            });
            ttscm_runtime::metrics::webhook_attempt("delivered", delay);
        } else if attempts >= MAX_ATTEMPTS {
            update = update.set("status", FAILED);
            ttscm_runtime::metrics::webhook_attempt("gave_up", None);
        } else {
            let wait = SCHEDULE[(attempts - 1) as usize];
            update = update.set("nextAtMs", now_ms + wait.as_millis() as i64);
            let outcome = if matches!(outcome, Outcome::Refused(_)) {
                "refused"
            } else {
                "failed"
            };
            ttscm_runtime::metrics::webhook_attempt(outcome, None);
        }
        if !self.store.update_one(DELIVERIES, &ours, &update).await? {
            // A replay freed the claim meanwhile (the delivery goes again), or the claim lapsed
            // (a very slow attempt) and another replica took it: that record stands.
            tracing::info!(
                delivery = delivery.id,
                "a webhook attempt's record was superseded"
            );
        }
        self.count_streak(endpoint, delivered).await
    }

    /// POSTs the delivery, signed with every current secret of `endpoint`.
    async fn send(&self, endpoint: &EndpointDoc, delivery: &DeliveryDoc) -> Outcome {
        let url = match url::Url::parse(&endpoint.url) {
            Ok(url) => url,
            Err(_) => return Outcome::Refused("the URL does not parse".into()),
        };
        if url.scheme() != "https" && !(url.scheme() == "http" && self.deliverer.allow_http) {
            return Outcome::Refused("the URL's scheme is not allowed".into());
        }
        // A literal address never reaches the resolver: checked here.
        if let Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) = url.host()
            && !self.deliverer.allow_private
            && let Err(why) = ssrf::check_host(url.host_str().unwrap_or_default(), 0, false).await
        {
            return Outcome::Refused(why);
        }
        let keys = match self.secrets_of(endpoint).await {
            Ok(keys) => keys,
            Err(why) => return Outcome::Failed(None, why),
        };
        let timestamp = clock::unix_now_millis() / 1000;
        let signatures: Vec<String> = keys
            .iter()
            .map(|key| signature(key, &delivery.event_id, timestamp, &delivery.payload))
            .collect();
        let sent = self
            .deliverer
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signatures.join(" "))
            .body(delivery.payload.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => Outcome::Delivered(response.status().as_u16()),
            Ok(response) => Outcome::Failed(
                Some(response.status().as_u16()),
                format!("the receiver answered {}", response.status().as_u16()),
            ),
            Err(error) => {
                // Without the URL: its query may hold the receiver's own token.
                let error = error.without_url();
                let why = error_chain(&error);
                if why.contains("resolves to") {
                    Outcome::Refused(why)
                } else {
                    Outcome::Failed(None, why)
                }
            }
        }
    }

    /// The keys `endpoint` signs with now, opened by vault (kept a minute).
    async fn secrets_of(&self, endpoint: &EndpointDoc) -> Result<Arc<Vec<Zeroizing<Vec<u8>>>>, String> {
        let now_ms = clock::unix_now_millis();
        let current: Vec<_> = endpoint.signing_secrets(now_ms);
        let sealed: Vec<String> = current.iter().map(|s| s.sealed.clone()).collect();
        if let Some((was, at, keys)) = self.deliverer.secrets.lock().get(&endpoint.id)
            && *was == sealed
            && at.elapsed() < SECRETS_TTL
        {
            return Ok(keys.clone());
        }
        let ctx = self.client.bus().service_context();
        let opened = self
            .client
            .call(
                &ctx,
                &OpenWebhookSecrets {
                    endpoint_id: endpoint.id.clone(),
                    secrets: current
                        .iter()
                        .map(|s| SealedWebhookSecret {
                            secret_id: s.id.clone(),
                            sealed: s.sealed.clone(),
                        })
                        .collect(),
                },
            )
            .await
            .map_err(|e| format!("the signing secret could not be opened ({})", e.message))?;
        let keys: Vec<Zeroizing<Vec<u8>>> = opened.0.iter().filter_map(|s| secret_key(s)).collect();
        let keys = Arc::new(keys);
        self.deliverer
            .secrets
            .lock()
            .insert(endpoint.id.clone(), (sealed, Instant::now(), keys.clone()));
        Ok(keys)
    }

    /// Counts a failed attempt against `endpoint`'s streak (disabling it at the limit), or
    /// resets the streak after a success.
    async fn count_streak(&self, endpoint: &EndpointDoc, delivered: bool) -> Result<(), StoreError> {
        if delivered {
            if endpoint.failure_streak > 0 {
                let update = Update::default().set("failureStreak", 0);
                self.store
                    .update_one(ENDPOINTS, &Filter::id(&endpoint.id), &update)
                    .await?;
            }
            return Ok(());
        }
        let limit = self.settings.disable_after_failures;
        // A read and a conditional write, retried: concurrent failures each count.
        for _ in 0..16 {
            let Some(document) = self.store.get(ENDPOINTS, &endpoint.id).await? else {
                return Ok(());
            };
            let current: EndpointDoc = from_document(document)?;
            if !current.enabled {
                return Ok(());
            }
            let streak = current.failure_streak + 1;
            let disable = limit > 0 && streak >= limit;
            let mut update = Update::default().set("failureStreak", streak);
            let reason = format!("{streak} failed delivery attempts in a row");
            if disable {
                update = update
                    .set("enabled", false)
                    .set("disabledReason", reason.clone())
                    .set("updatedAt", clock::now_iso());
            }
            let unchanged = Filter::And(vec![
                Filter::id(&endpoint.id),
                Filter::eq("failureStreak", i64::from(current.failure_streak)),
                Filter::eq("enabled", true),
            ]);
            if self.store.update_one(ENDPOINTS, &unchanged, &update).await? {
                if disable {
                    self.disabled(&current, &reason).await;
                }
                return Ok(());
            }
        }
        Ok(())
    }

    /// Announces that `endpoint` was disabled automatically: an event and an audit entry.
    async fn disabled(&self, endpoint: &EndpointDoc, reason: &str) {
        tracing::warn!(endpoint = endpoint.id, reason, "webhook endpoint disabled");
        let _ = self.filters.reload(&self.store).await;
        let ctx = ttscm_runtime::service::CallContext::new(None);
        self.events
            .publish(&ctx, "webhook", "endpoint_disabled", &endpoint.id, || {
                json!({
                    "endpointId": endpoint.id,
                    "reason": reason,
                    "failureStreak": self.settings.disable_after_failures,
                })
            })
            .await;
        let record = AuditRecord::new("webhook.endpoint_disabled", "webhook_endpoint", &endpoint.id)
            .detail("reason", reason);
        if let Err(error) = self
            .audit
            .append(record.entry(system_actor(), &ids::new_id(), None))
            .await
        {
            tracing::error!(%error, "the automatic disable of a webhook endpoint was not recorded");
        }
    }
}

/// An error and its causes, as one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification's reference libraries.
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("a whsec secret");
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn the_schedule_retries_for_more_than_a_day() {
        let total: Duration = SCHEDULE.iter().sum();
        assert!(total > Duration::from_secs(24 * 3600), "{total:?}");
        assert_eq!(MAX_ATTEMPTS, 8);
    }
}
