//! What the webhook component keeps: `webhook_endpoints` (each endpoint with its sealed secrets)
//! and `webhook_deliveries` (one row per event and endpoint: the queue and the delivery log).

use serde::{Deserialize, Serialize};
use ttscm_contract::webhook::{WebhookAttempt, WebhookDelivery, WebhookEndpoint};
use ttscm_runtime::store::{Document, IndexSpec};
use ttscm_runtime::{Store, StoreError, clock};

/// The endpoints.
pub const ENDPOINTS: &str = "webhook_endpoints";
/// The deliveries: queue and log.
pub const DELIVERIES: &str = "webhook_deliveries";
/// The component's own events that could not be published at once.
pub const OUTBOX: &str = "webhook_event_outbox";

/// A delivery waiting for its next attempt.
pub const PENDING: &str = "pending";
/// A delivery a receiver accepted.
pub const DELIVERED: &str = "delivered";
/// A delivery given up on (its retries spent, or its endpoint disabled).
pub const FAILED: &str = "failed";

const DELIVERY_INDEXES: &[IndexSpec] = &[
    IndexSpec {
        name: "status_next",
        fields: &["status", "nextAtMs"],
        unique: false,
    },
    IndexSpec {
        name: "endpoint_created",
        fields: &["endpointId", "createdAtMs"],
        unique: false,
    },
];

/// Declares the collections and their indexes.
pub async fn prepare(store: &Store) -> Result<(), StoreError> {
    ttscm_runtime::events::prepare(store, OUTBOX).await?;
    store.ensure_indexes(ENDPOINTS, &[]).await?;
    store.ensure_indexes(DELIVERIES, DELIVERY_INDEXES).await
}

/// One signing secret, sealed by vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretDoc {
    /// Its id within the endpoint (`s1`, `s2`…), bound into its seal.
    pub id: String,
    /// The sealed `whsec_…` text.
    pub sealed: String,
    /// Until when it still signs (set on the previous secret at a rotation; `None`: current).
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
}

/// An endpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointDoc {
    pub id: String,
    pub url: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub event_types: Vec<String>,
    #[serde(default)]
    pub company_ids: Vec<String>,
    pub enabled: bool,
    #[serde(default)]
    pub disabled_reason: Option<String>,
    #[serde(default)]
    pub failure_streak: u32,
    /// Newest last.
    pub secrets: Vec<SecretDoc>,
    /// How many secrets it ever had (the next one's id).
    pub secret_count: u32,
    #[serde(default)]
    pub secret_rotated_at: Option<String>,
    pub created_at: String,
    /// `created_at` in milliseconds: events older than the endpoint are not delivered to it.
    pub created_at_ms: i64,
    pub updated_at: String,
}

impl EndpointDoc {
    /// As the API answers it.
    pub fn to_wire(&self) -> WebhookEndpoint {
        WebhookEndpoint {
            id: self.id.clone(),
            url: self.url.clone(),
            description: self.description.clone(),
            event_types: self.event_types.clone(),
            company_ids: self.company_ids.clone(),
            enabled: self.enabled,
            disabled_reason: self.disabled_reason.clone(),
            failure_streak: self.failure_streak,
            secret_rotated_at: self.secret_rotated_at.clone(),
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
        }
    }

    /// The secrets that sign at `now_ms`, newest first.
    pub fn signing_secrets(&self, now_ms: i64) -> Vec<&SecretDoc> {
        self.secrets
            .iter()
            .rev()
            .filter(|s| s.expires_at_ms.is_none_or(|until| until > now_ms))
            .collect()
    }

    /// Whether an event of `event_type` (`ttscm.credential.created`) about `company_id` made
    /// at `time_ms` goes to this endpoint.
    pub fn wants(&self, event_type: &str, company_id: Option<&str>, time_ms: i64) -> bool {
        self.enabled
            && time_ms >= self.created_at_ms
            && self.wants_type(event_type)
            && (self.company_ids.is_empty()
                || company_id.is_some_and(|c| self.company_ids.iter().any(|id| id == c)))
    }

    /// Whether its type filter lets `event_type` through.
    pub fn wants_type(&self, event_type: &str) -> bool {
        let short = event_type.strip_prefix("ttscm.").unwrap_or(event_type);
        self.event_types.is_empty() || self.event_types.iter().any(|filter| type_matches(filter, short))
    }
}

/// Whether `filter` (`credential.created`, `credential.*`, `*`) matches the type `short`
/// (`credential.created`).
pub fn type_matches(filter: &str, short: &str) -> bool {
    match filter.strip_suffix('*') {
        None => filter == short,
        Some(prefix) => short.starts_with(prefix),
    }
}

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryDoc {
    pub id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    #[serde(default)]
    pub company_id: Option<String>,
    /// The body sent: the event's CloudEvent JSON, as published.
    pub payload: String,
    pub status: String,
    pub attempts: u32,
    /// When the next attempt is due (pending).
    pub next_at_ms: i64,
    /// When the current round of attempts began (creation, or the latest replay).
    pub round_started_ms: i64,
    pub created_at: String,
    pub created_at_ms: i64,
    #[serde(default)]
    pub delivered_at: Option<String>,
    #[serde(default)]
    pub last_attempts: Vec<WebhookAttempt>,
    /// Until when a replica holds it (0: free).
    #[serde(default)]
    pub claim_until: i64,
    #[serde(default)]
    pub claimed_by: String,
}

impl DeliveryDoc {
    /// As the API answers it.
    pub fn to_wire(&self) -> WebhookDelivery {
        WebhookDelivery {
            id: self.id.clone(),
            endpoint_id: self.endpoint_id.clone(),
            event_id: self.event_id.clone(),
            event_type: self.event_type.clone(),
            company_id: self.company_id.clone(),
            status: self.status.clone(),
            attempts: self.attempts,
            next_attempt_at: (self.status == PENDING).then(|| format_ms(self.next_at_ms)),
            created_at: self.created_at.clone(),
            delivered_at: self.delivered_at.clone(),
            last_attempts: self.last_attempts.clone(),
        }
    }
}

/// `ms` since the epoch as RFC 3339.
pub fn format_ms(ms: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    clock::format_iso(at)
}

/// A document as `T`.
pub fn from_document<T: serde::de::DeserializeOwned>(document: Document) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::Object(document))
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// `value` as a document.
pub fn to_document<T: Serialize>(value: &T) -> Document {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => unreachable!("the component's documents are structs"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_filters_match_exact_types_prefixes_and_everything() {
        assert!(type_matches("credential.created", "credential.created"));
        assert!(!type_matches("credential.created", "credential.deleted"));
        assert!(type_matches("credential.*", "credential.deleted"));
        assert!(!type_matches("credential.*", "credential_type.created"));
        assert!(type_matches("*", "company.updated"));
    }
}
