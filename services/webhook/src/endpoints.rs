//! The endpoint operations (`webhook.manage`): register, list, get, change, delete, rotate the
//! secret, the delivery log and replay. Every change is audited; URLs are checked for
//! server-side request forgery ([`crate::ssrf`]); secrets are made here, sealed by vault, and
//! shown only in the answer that made them.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use ttscm_contract::permission::names::WEBHOOK_MANAGE;
use ttscm_contract::webhook::{
    CreateWebhookEndpoint, DeleteWebhookEndpoint, GetWebhookEndpoint, ListWebhookDeliveries,
    ListWebhookEndpoints, ReplayWebhookDeliveries, ReplayWebhookDelivery, RotateWebhookSecret,
    SealWebhookSecret, UpdateWebhookEndpoint, WebhookDelivery, WebhookDeliveryPage, WebhookEndpoint,
    WebhookEndpointWithSecret, WebhookReplay,
};
use ttscm_contract::{ErrorCode, FieldError, WireError};
use ttscm_runtime::audit::AuditRecord;
use ttscm_runtime::service::{CallContext, ServiceOp, store_failed};
use ttscm_runtime::store::{Order, Scalar};
use ttscm_runtime::{Filter, FindOptions, Update, clock, ids};
use zeroize::Zeroizing;

use crate::Service;
use crate::store::{
    DELIVERIES, DeliveryDoc, ENDPOINTS, EndpointDoc, PENDING, SecretDoc, from_document, to_document,
};

/// Longest URL.
const MAX_URL: usize = 2000;
/// Longest description.
const MAX_DESCRIPTION: usize = 500;
/// Most filter entries of each kind.
const MAX_FILTERS: usize = 100;

fn invalid(field: &str, message: impl Into<String>) -> WireError {
    WireError::validation(vec![FieldError::new(vec![json!(field)], message)])
}

fn not_found() -> WireError {
    WireError::new(ErrorCode::NotFound, "Webhook endpoint not found")
}

fn audit_failed(error: ttscm_runtime::StoreError) -> WireError {
    tracing::error!(%error, "audit write failed; failing the request");
    WireError::new(ErrorCode::Unavailable, "The audit log is unavailable")
}

/// A new `whsec_` secret: 24 random bytes.
fn new_secret() -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; 24]);
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), bytes.as_mut())
        .expect("the system random source works");
    Zeroizing::new(format!("whsec_{}", STANDARD.encode(bytes.as_ref())))
}

/// Checks an event-type filter: `*`, `<aggregate>.*` or `<aggregate>.<action>`.
fn valid_type_filter(filter: &str) -> bool {
    let short = filter.strip_prefix("ttscm.").unwrap_or(filter);
    if short == "*" {
        return true;
    }
    let mut parts = short.split('.');
    let (Some(aggregate), Some(action), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let word =
        |w: &str| !w.is_empty() && w.len() <= 64 && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    word(aggregate) && (action == "*" || word(action))
}

impl Service {
    /// Checks `url` (syntax, scheme, no credentials, address ranges); answers it normalized.
    async fn check_url(&self, url: &str) -> Result<String, WireError> {
        let trimmed = url.trim();
        if trimmed.is_empty() || trimmed.len() > MAX_URL {
            return Err(invalid("url", format!("url must be 1 to {MAX_URL} characters")));
        }
        let parsed = url::Url::parse(trimmed).map_err(|_| invalid("url", "url is not an absolute URL"))?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.settings.allow_http => {}
            _ => {
                return Err(invalid(
                    "url",
                    if self.settings.allow_http {
                        "url must be http:// or https://"
                    } else {
                        "url must be https://"
                    },
                ));
            }
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid("url", "url must not hold a user name or password"));
        }
        if parsed.fragment().is_some() {
            return Err(invalid("url", "url must not have a fragment"));
        }
        let Some(host) = parsed.host_str() else {
            return Err(invalid("url", "url must name a host"));
        };
        let port = parsed.port_or_known_default().unwrap_or(443);
        crate::ssrf::check_host(host, port, self.settings.allow_private)
            .await
            .map_err(|why| invalid("url", why))?;
        Ok(parsed.to_string())
    }

    fn check_description(description: Option<String>) -> Result<Option<String>, WireError> {
        let description = description.map(|d| d.trim().to_owned()).filter(|d| !d.is_empty());
        if description
            .as_ref()
            .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION || d.chars().any(char::is_control))
        {
            return Err(invalid(
                "description",
                format!(
                    "description must be at most {MAX_DESCRIPTION} characters, without control characters"
                ),
            ));
        }
        Ok(description)
    }

    fn check_types(types: Option<Vec<String>>) -> Result<Vec<String>, WireError> {
        let mut types = types.unwrap_or_default();
        if types.len() > MAX_FILTERS {
            return Err(invalid(
                "eventTypes",
                format!("eventTypes holds at most {MAX_FILTERS} entries"),
            ));
        }
        let mut errors = Vec::new();
        for (index, filter) in types.iter_mut().enumerate() {
            if let Some(short) = filter.strip_prefix("ttscm.") {
                *filter = short.to_owned();
            }
            if !valid_type_filter(filter) {
                errors.push(FieldError::new(
                    vec![json!("eventTypes"), json!(index)],
                    "an event type is `*`, `<aggregate>.*` or `<aggregate>.<action>`, e.g. `credential.created`",
                ));
            }
        }
        if !errors.is_empty() {
            return Err(WireError::validation(errors));
        }
        types.sort();
        types.dedup();
        Ok(types)
    }

    fn check_companies(companies: Option<Vec<String>>) -> Result<Vec<String>, WireError> {
        let mut companies = companies.unwrap_or_default();
        if companies.len() > MAX_FILTERS * 10 {
            return Err(invalid("companyIds", "companyIds holds at most 1000 entries"));
        }
        let mut errors = Vec::new();
        for (index, id) in companies.iter().enumerate() {
            if id.is_empty() || id.chars().count() > 100 || id.chars().any(char::is_control) {
                errors.push(FieldError::new(
                    vec![json!("companyIds"), json!(index)],
                    "a company id is 1 to 100 characters",
                ));
            }
        }
        if !errors.is_empty() {
            return Err(WireError::validation(errors));
        }
        companies.sort();
        companies.dedup();
        Ok(companies)
    }

    async fn endpoint(&self, id: &str) -> Result<EndpointDoc, WireError> {
        let document = self
            .store
            .get(ENDPOINTS, id)
            .await
            .map_err(store_failed)?
            .ok_or_else(not_found)?;
        from_document(document).map_err(store_failed)
    }

    /// Seals `secret` as the endpoint's secret `secret_id` (asked as the component itself: the
    /// secret is the component's material, whoever asked for it).
    async fn seal(&self, endpoint_id: &str, secret_id: &str, secret: &str) -> Result<String, WireError> {
        self.client
            .call(
                &self.client.bus().service_context(),
                &SealWebhookSecret {
                    endpoint_id: endpoint_id.to_owned(),
                    secret_id: secret_id.to_owned(),
                    plaintext: secret.to_owned(),
                },
            )
            .await
    }

    async fn record(&self, ctx: &CallContext, record: AuditRecord) -> Result<(), WireError> {
        self.audit
            .append(record.entry_for(ctx))
            .await
            .map_err(audit_failed)
    }

    /// The endpoints changed here: the in-process listener sees it at once.
    async fn changed(&self) {
        if let Err(error) = self.filters.reload(&self.store).await {
            tracing::warn!(%error, "webhook endpoints not reloaded after a change");
        }
    }
}

/// The host of a URL, for audit entries (a query may hold the receiver's token).
fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default()
}

impl ServiceOp<Service> for ListWebhookEndpoints {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<Vec<WebhookEndpoint>, WireError> {
        ctx.require(&[WEBHOOK_MANAGE])?;
        let options = FindOptions::new(Filter::All)
            .sort("createdAtMs", Order::Asc)
            .sort("id", Order::Asc);
        let documents = service
            .store
            .find(ENDPOINTS, &options)
            .await
            .map_err(store_failed)?;
        documents
            .into_iter()
            .map(|d| {
                from_document::<EndpointDoc>(d)
                    .map(|e| e.to_wire())
                    .map_err(store_failed)
            })
            .collect()
    }
}

impl ServiceOp<Service> for GetWebhookEndpoint {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<WebhookEndpoint, WireError> {
        ctx.require(&[WEBHOOK_MANAGE])?;
        Ok(service.endpoint(&self.id).await?.to_wire())
    }
}

impl ServiceOp<Service> for CreateWebhookEndpoint {
    async fn run(
        self,
        service: Arc<Service>,
        ctx: CallContext,
    ) -> Result<WebhookEndpointWithSecret, WireError> {
        ctx.require(&[WEBHOOK_MANAGE])?;
        let input = self.input;
        let description = Service::check_description(input.description)?;
        let event_types = Service::check_types(input.event_types)?;
        let company_ids = Service::check_companies(input.company_ids)?;
        let url = service.check_url(&input.url).await?;
        let id = ids::new_id();
        let secret = new_secret();
        let sealed = service.seal(&id, "s1", &secret).await?;
        let now = clock::now_iso();
        let endpoint = EndpointDoc {
            id: id.clone(),
            url,
            description,
            event_types,
            company_ids,
            enabled: input.enabled.unwrap_or(true),
            disabled_reason: None,
            failure_streak: 0,
            secrets: vec![SecretDoc {
                id: "s1".into(),
                sealed,
                expires_at_ms: None,
            }],
            secret_count: 1,
            secret_rotated_at: None,
            created_at: now.clone(),
            created_at_ms: clock::unix_now_millis(),
            updated_at: now,
        };
        service
            .store
            .insert(ENDPOINTS, to_document(&endpoint))
            .await
            .map_err(store_failed)?;
        service.changed().await;
        service
            .record(
                &ctx,
                AuditRecord::new("webhook.endpoint_created", "webhook_endpoint", &id)
                    .detail("host", host_of(&endpoint.url))
                    .detail("eventTypes", endpoint.event_types.join(","))
                    .detail("companies", endpoint.company_ids.len().to_string()),
            )
            .await?;
        Ok(WebhookEndpointWithSecret {
            endpoint: endpoint.to_wire(),
            secret: secret.to_string(),
        })
    }
}

impl ServiceOp<Service> for UpdateWebhookEndpoint {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<WebhookEndpoint, WireError> {
        ctx.require(&[WEBHOOK_MANAGE])?;
        let patch = self.patch;
        let current = service.endpoint(&self.id).await?;
        let mut next = current.clone();
        let mut changed = Vec::new();
        if let Some(description) = patch.description {
            next.description = Service::check_description(Some(description))?;
            changed.push("description");
        }
        if patch.event_types.is_some() {
            next.event_types = Service::check_types(patch.event_types)?;
            changed.push("eventTypes");
        }
        if patch.company_ids.is_some() {
            next.company_ids = Service::check_companies(patch.company_ids)?;
            changed.push("companyIds");
        }
        if let Some(url) = patch.url {
            next.url = service.check_url(&url).await?;
            changed.push("url");
        }
        if let Some(enabled) = patch.enabled {
            if enabled && !current.enabled {
                next.failure_streak = 0;
            }
            next.enabled = enabled;
            next.disabled_reason = None;
            changed.push("enabled");
        }
        next.updated_at = clock::now_iso();
        let update = Update::default()
            .set("url", next.url.clone())
            .set("description", json!(next.description))
            .set("eventTypes", json!(next.event_types))
            .set("companyIds", json!(next.company_ids))
            .set("enabled", next.enabled)
            .set("disabledReason", json!(next.disabled_reason))
            .set("failureStreak", next.failure_streak)
            .set("updatedAt", next.updated_at.clone());
        if !service
            .store
            .update_one(ENDPOINTS, &Filter::id(&self.id), &update)
            .await
            .map_err(store_failed)?
        {
            return Err(not_found());
        }
        service.changed().await;
        service
            .record(
                &ctx,
                AuditRecord::new("webhook.endpoint_updated", "webhook_endpoint", &self.id)
                    .detail("changed", changed.join(","))
                    .detail("enabled", next.enabled.to_string()),
            )
            .await?;
        Ok(next.to_wire())
    }
}

impl ServiceOp<Service> for DeleteWebhookEndpoint {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<(), WireError> {
        ctx.require(&[WEBHOOK_MANAGE])?;
        if !service
            .store
            .delete(ENDPOINTS, &self.id)
            .await
            .map_err(store_failed)?
        {
            return Err(not_found());
        }
        service.changed().await;
        let deliveries = service
            .store
            .delete_many(DELIVERIES, &Filter::eq("endpointId", self.id.as_str()))
            .await
            .map_err(store_failed)?;
        service
            .record(
                &ctx,
                AuditRecord::new("webhook.endpoint_deleted", "webhook_endpoint", &self.id)
                    .detail("deliveries", deliveries.to_string()),
            )
            .await
    }
}

impl ServiceOp<Service> for RotateWebhookSecret {
    async fn run(
        self,
        service: Arc<Service>,
        ctx: CallContext,
    ) -> Result<WebhookEndpointWithSecret, WireError> {
        ctx.require(&[WEBHOOK_MANAGE])?;
        let current = service.endpoint(&self.id).await?;
        let now_ms = clock::unix_now_millis();
        let grace_ms =
            i64::try_from(service.settings.rotation_grace_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let secret_id = format!("s{}", current.secret_count + 1);
        let secret = new_secret();
        let sealed = service.seal(&self.id, &secret_id, &secret).await?;
        // The previous secrets keep signing for the grace period; expired ones go.
        let mut secrets: Vec<SecretDoc> = current
            .secrets
            .iter()
            .filter(|s| s.expires_at_ms.is_none_or(|until| until > now_ms))
            .cloned()
            .map(|mut s| {
                s.expires_at_ms = Some(s.expires_at_ms.unwrap_or(now_ms.saturating_add(grace_ms)));
                s
            })
            .collect();
        secrets.push(SecretDoc {
            id: secret_id,
            sealed,
            expires_at_ms: None,
        });
        let mut next = current.clone();
        next.secrets = secrets;
        next.secret_count = current.secret_count + 1;
        next.secret_rotated_at = Some(clock::now_iso());
        next.updated_at = clock::now_iso();
        // Conditional: two rotations at once cannot both keep their secret.
        let unchanged = Filter::And(vec![
            Filter::id(&self.id),
            Filter::eq("secretCount", i64::from(current.secret_count)),
        ]);
        let update = Update::default()
            .set("secrets", json!(next.secrets))
            .set("secretCount", next.secret_count)
            .set("secretRotatedAt", json!(next.secret_rotated_at))
            .set("updatedAt", next.updated_at.clone());
        if !service
            .store
            .update_one(ENDPOINTS, &unchanged, &update)
            .await
            .map_err(store_failed)?
        {
            return Err(WireError::new(
                ErrorCode::Conflict,
                "The endpoint changed meanwhile (another rotation?); try again",
            ));
        }
        service.changed().await;
        service
            .record(
                &ctx,
                AuditRecord::new("webhook.secret_rotated", "webhook_endpoint", &self.id)
                    .detail("graceSecs", service.settings.rotation_grace_secs.to_string()),
            )
            .await?;
        Ok(WebhookEndpointWithSecret {
            endpoint: next.to_wire(),
            secret: secret.to_string(),
        })
    }
}

impl ServiceOp<Service> for ListWebhookDeliveries {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<WebhookDeliveryPage, WireError> {
        ctx.require(&[WEBHOOK_MANAGE])?;
        service.endpoint(&self.id).await?;
        let mut filters = vec![Filter::eq("endpointId", self.id.as_str())];
        if let Some(status) = &self.status {
            if ![PENDING, crate::store::DELIVERED, crate::store::FAILED].contains(&status.as_str()) {
                return Err(invalid("status", "status is pending, delivered or failed"));
            }
            filters.push(Filter::eq("status", status.as_str()));
        }
        let filter = Filter::And(filters);
        let total = service
            .store
            .count(DELIVERIES, &filter)
            .await
            .map_err(store_failed)?;
        let options = FindOptions::new(filter)
            .sort("createdAtMs", Order::Desc)
            .sort("id", Order::Desc)
            .page(self.page.saturating_sub(1).saturating_mul(self.rpp), self.rpp);
        let items = service
            .store
            .find(DELIVERIES, &options)
            .await
            .map_err(store_failed)?
            .into_iter()
            .map(|d| {
                from_document::<DeliveryDoc>(d)
                    .map(|d| d.to_wire())
                    .map_err(store_failed)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(WebhookDeliveryPage { items, total })
    }
}

/// What queueing a delivery again sets: due now, a fresh round of attempts.
fn requeue(now_ms: i64) -> Update {
    Update::default()
        .set("status", PENDING)
        .set("nextAtMs", now_ms)
        .set("roundStartedMs", now_ms)
        .set("attempts", 0)
        .set("claimUntil", 0)
}

fn disabled_conflict() -> WireError {
    WireError::new(
        ErrorCode::Conflict,
        "The endpoint is disabled; enable it before replaying deliveries",
    )
}

impl ServiceOp<Service> for ReplayWebhookDelivery {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<WebhookDelivery, WireError> {
        ctx.require(&[WEBHOOK_MANAGE])?;
        let endpoint = service.endpoint(&self.id).await?;
        let delivery: DeliveryDoc = match service
            .store
            .get(DELIVERIES, &self.delivery_id)
            .await
            .map_err(store_failed)?
        {
            Some(document) => from_document(document).map_err(store_failed)?,
            None => return Err(WireError::new(ErrorCode::NotFound, "Webhook delivery not found")),
        };
        if delivery.endpoint_id != endpoint.id {
            return Err(WireError::new(ErrorCode::NotFound, "Webhook delivery not found"));
        }
        if !endpoint.enabled {
            return Err(disabled_conflict());
        }
        let now_ms = clock::unix_now_millis();
        // Also while an attempt runs: the replay frees the claim, so that attempt's record is
        // dropped and the delivery goes again (at least once), rather than the replay being
        // refused or lost.
        if !service
            .store
            .update_one(DELIVERIES, &Filter::id(&delivery.id), &requeue(now_ms))
            .await
            .map_err(store_failed)?
        {
            return Err(WireError::new(ErrorCode::NotFound, "Webhook delivery not found"));
        }
        service.deliverer.wake();
        service
            .record(
                &ctx,
                AuditRecord::new("webhook.replayed", "webhook_endpoint", &endpoint.id)
                    .detail("delivery", delivery.id.clone())
                    .detail("deliveries", "1"),
            )
            .await?;
        let mut replayed = delivery;
        replayed.status = PENDING.to_owned();
        replayed.attempts = 0;
        replayed.next_at_ms = now_ms;
        Ok(replayed.to_wire())
    }
}

/// `text` as milliseconds since the epoch, or a 400 naming `field`.
fn millis(field: &str, text: &str) -> Result<i64, WireError> {
    clock::parse_iso(text)
        .and_then(|at| i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok())
        .ok_or_else(|| {
            invalid(
                field,
                format!("{field} must be an RFC 3339 time, e.g. 2026-12-01T00:00:00Z"),
            )
        })
}

impl ServiceOp<Service> for ReplayWebhookDeliveries {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<WebhookReplay, WireError> {
        ctx.require(&[WEBHOOK_MANAGE])?;
        let since = millis("since", &self.input.since)?;
        let now_ms = clock::unix_now_millis();
        let until = match &self.input.until {
            Some(until) => millis("until", until)?,
            None => now_ms + 1,
        };
        if until <= since {
            return Err(invalid("until", "until must be after since"));
        }
        let endpoint = service.endpoint(&self.id).await?;
        if !endpoint.enabled {
            return Err(disabled_conflict());
        }
        let range = Filter::And(vec![
            Filter::eq("endpointId", endpoint.id.as_str()),
            Filter::Gte("createdAtMs".into(), Scalar::Int(since)),
            Filter::Lt("createdAtMs".into(), Scalar::Int(until)),
        ]);
        let requeued = service
            .store
            .update_many(DELIVERIES, &range, &requeue(now_ms))
            .await
            .map_err(store_failed)?;
        service.deliverer.wake();
        service
            .record(
                &ctx,
                AuditRecord::new("webhook.replayed", "webhook_endpoint", &endpoint.id)
                    .detail("since", self.input.since.clone())
                    .detail("until", self.input.until.clone().unwrap_or_default())
                    .detail("deliveries", requeued.to_string()),
            )
            .await?;
        Ok(WebhookReplay { requeued })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_filters_are_checked() {
        for good in [
            "*",
            "credential.*",
            "credential.created",
            "credential_type.deleted",
        ] {
            assert!(valid_type_filter(good), "{good}");
        }
        for bad in [
            "",
            "credential",
            "Credential.created",
            "a.b.c",
            ".x",
            "credential.",
            "x.*.y",
        ] {
            assert!(!valid_type_filter(bad), "{bad}");
        }
    }

    #[test]
    fn secrets_are_whsec_and_24_bytes() {
        let secret = new_secret();
        let key = crate::deliver::secret_key(&secret).expect("whsec_ base64");
        assert_eq!(key.len(), 24);
        assert_ne!(*new_secret(), *secret);
    }
}
