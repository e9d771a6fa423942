//! Webhook operations: endpoints an admin registers (`webhook.manage`), the delivery log, replay,
//! and the two vault operations that seal and open an endpoint's signing secrets.
//!
//! Deliveries follow the Standard Webhooks specification: the body is the event's CloudEvent
//! JSON (ids, names, counts — never a value), signed with the endpoint's `whsec_` secret.

use serde::{Deserialize, Serialize};

use crate::health::HealthReply;
use crate::subjects;

/// The rules the webhook component checks a request's fields against, for the API description
/// (`webhook::endpoints`' checks).
mod rules {
    use serde_json::{Value, json};
    use utoipa::openapi::Schema;

    fn schema(value: Value) -> Schema {
        serde_json::from_value(value).expect("a JSON Schema utoipa reads")
    }

    /// An endpoint URL (`check_url`): absolute `https://` (or `http://` where allowed), at most
    /// 2000 characters; it must also resolve to a public address, which no schema can say.
    pub fn url() -> Schema {
        schema(json!({"type": "string", "minLength": 1, "maxLength": 2000, "pattern": "^\\s*https?://"}))
    }

    /// [`url`], or absent (a patch).
    pub fn optional_url() -> Schema {
        schema(
            json!({"type": ["string", "null"], "minLength": 1, "maxLength": 2000, "pattern": "^\\s*https?://"}),
        )
    }

    /// A note (`check_description`): at most 500 characters, no control characters.
    pub fn description() -> Schema {
        schema(
            json!({"type": ["string", "null"], "maxLength": 500, "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]*$"}),
        )
    }

    /// Event-type filters (`check_types`): `*`, `<aggregate>.*` or `<aggregate>.<action>`.
    pub fn event_types() -> Schema {
        schema(json!({
            "type": ["array", "null"],
            "maxItems": 100,
            "items": {"type": "string", "pattern": "^(ttscm\\.)?(\\*|[a-z_]{1,64}\\.(\\*|[a-z_]{1,64}))$"},
        }))
    }

    /// Company ids (`check_companies`): 1 to 100 characters, no control characters.
    pub fn company_ids() -> Schema {
        schema(json!({
            "type": ["array", "null"],
            "maxItems": 1000,
            "items": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]*$"},
        }))
    }

    /// An RFC 3339 time (`clock::parse_iso`).
    pub fn time() -> Schema {
        schema(json!({"type": "string", "format": "date-time"}))
    }

    /// [`time`], or absent.
    pub fn optional_time() -> Schema {
        schema(json!({"type": ["string", "null"], "format": "date-time"}))
    }
}

/// An endpoint as the API answers it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpoint {
    /// Id.
    pub id: String,
    /// Where deliveries are POSTed (`https://`, or `http://` when allowed by a setting).
    pub url: String,
    /// What the admin wrote about it.
    pub description: Option<String>,
    /// Event types delivered (`credential.created`, `credential.*`, `*`); empty: every type.
    pub event_types: Vec<String>,
    /// Companies whose events are delivered; empty: every event, also those of no company.
    pub company_ids: Vec<String>,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// Why it was disabled automatically (`null` when enabled, or disabled by an admin).
    pub disabled_reason: Option<String>,
    /// Failed attempts in a row (reset by a success).
    pub failure_streak: u32,
    /// When the secret was last rotated (RFC 3339; `null`: never).
    pub secret_rotated_at: Option<String>,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Updated (RFC 3339).
    pub updated_at: String,
}

/// An endpoint together with its signing secret: the answer of creating one or rotating its
/// secret, the only times the secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpointWithSecret {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: WebhookEndpoint,
    /// The signing secret, `whsec_<base64>`: shown once.
    pub secret: String,
}

/// The body of creating an endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookEndpointInput {
    /// Where deliveries go.
    #[schema(schema_with = rules::url)]
    pub url: String,
    /// A note, up to 500 characters.
    #[serde(default)]
    #[schema(schema_with = rules::description)]
    pub description: Option<String>,
    /// Event types to deliver (absent or empty: all).
    #[serde(default)]
    #[schema(schema_with = rules::event_types)]
    pub event_types: Option<Vec<String>>,
    /// Companies whose events to deliver (absent or empty: all).
    #[serde(default)]
    #[schema(schema_with = rules::company_ids)]
    pub company_ids: Option<Vec<String>>,
    /// Whether to deliver (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// The body of changing an endpoint: absent keys are left as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookEndpointPatch {
    /// Where deliveries go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = rules::optional_url)]
    pub url: Option<String>,
    /// A note (`""` clears it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = rules::description)]
    pub description: Option<String>,
    /// Event types to deliver (empty: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = rules::event_types)]
    pub event_types: Option<Vec<String>>,
    /// Companies whose events to deliver (empty: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = rules::company_ids)]
    pub company_ids: Option<Vec<String>>,
    /// Enable (also after an automatic disable: the failure streak starts again) or disable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// One attempt to deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAttempt {
    /// When (RFC 3339).
    pub at: String,
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<u16>,
    /// Why it failed (no response body is kept), if it did.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
}

/// One event's delivery to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    /// Id (`<endpoint id>.<event id>`).
    pub id: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// The event's id: the `webhook-id` header, the same on every attempt and replay.
    pub event_id: String,
    /// The event's type, e.g. `ttscm.credential.created`.
    pub event_type: String,
    /// The company the event is about, if any.
    pub company_id: Option<String>,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due (pending only; RFC 3339).
    pub next_attempt_at: Option<String>,
    /// When the event reached the webhook component (RFC 3339).
    pub created_at: String,
    /// When a receiver accepted it (RFC 3339).
    pub delivered_at: Option<String>,
    /// The latest attempts, newest last (at most 10).
    pub last_attempts: Vec<WebhookAttempt>,
}

/// One page of an endpoint's deliveries, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDeliveryPage {
    /// The deliveries.
    pub items: Vec<WebhookDelivery>,
    /// How many match.
    pub total: u64,
}

/// How many deliveries a replay queued again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookReplay {
    /// Deliveries queued again.
    pub requeued: u64,
}

/// The body of replaying an endpoint's deliveries made in a time range.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookReplayInput {
    /// From (RFC 3339, inclusive).
    #[schema(schema_with = rules::time)]
    pub since: String,
    /// Until (RFC 3339, exclusive; absent: now).
    #[serde(default)]
    #[schema(schema_with = rules::optional_time)]
    pub until: Option<String>,
}

/// List endpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListWebhookEndpoints {}

crate::operation!(ListWebhookEndpoints => subjects::WEBHOOK_LIST, Vec<WebhookEndpoint>);

/// Get one endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetWebhookEndpoint {
    /// The endpoint id.
    pub id: String,
}

crate::operation!(GetWebhookEndpoint => subjects::WEBHOOK_GET, WebhookEndpoint);

/// Register an endpoint; answers its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateWebhookEndpoint {
    /// What to register.
    pub input: WebhookEndpointInput,
}

crate::operation!(CreateWebhookEndpoint => subjects::WEBHOOK_CREATE, WebhookEndpointWithSecret);

/// Change an endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateWebhookEndpoint {
    /// The endpoint id.
    pub id: String,
    /// The change.
    pub patch: WebhookEndpointPatch,
}

crate::operation!(UpdateWebhookEndpoint => subjects::WEBHOOK_UPDATE, WebhookEndpoint);

/// Delete an endpoint and its delivery log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteWebhookEndpoint {
    /// The endpoint id.
    pub id: String,
}

crate::operation!(DeleteWebhookEndpoint => subjects::WEBHOOK_DELETE, ());

/// Give an endpoint a new secret; the previous one keeps signing (a second signature) for the
/// rotation's grace period.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotateWebhookSecret {
    /// The endpoint id.
    pub id: String,
}

crate::operation!(RotateWebhookSecret => subjects::WEBHOOK_ROTATE, WebhookEndpointWithSecret);

/// An endpoint's deliveries, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListWebhookDeliveries {
    /// The endpoint id.
    pub id: String,
    /// Only deliveries in this status.
    pub status: Option<String>,
    /// Page, from 1.
    pub page: u64,
    /// Records per page.
    pub rpp: u64,
}

crate::operation!(ListWebhookDeliveries => subjects::WEBHOOK_DELIVERIES, WebhookDeliveryPage);

/// Deliver one delivery again now (same `webhook-id`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplayWebhookDelivery {
    /// The endpoint id.
    pub id: String,
    /// The delivery id.
    pub delivery_id: String,
}

crate::operation!(ReplayWebhookDelivery => subjects::WEBHOOK_REPLAY_ONE, WebhookDelivery);

/// Deliver again every delivery of an endpoint created in a time range.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplayWebhookDeliveries {
    /// The endpoint id.
    pub id: String,
    /// The range.
    pub input: WebhookReplayInput,
}

crate::operation!(ReplayWebhookDeliveries => subjects::WEBHOOK_REPLAY_RANGE, WebhookReplay);

/// The webhook component's health.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookHealth {}

crate::operation!(WebhookHealth => subjects::WEBHOOK_HEALTH, HealthReply, anonymous: true);

/// Seal an endpoint's signing secret (vault; only the webhook component asks). The secret is
/// bound to its endpoint and secret id in a key domain of its own, so a webhook secret's
/// operations can never open a credential's value.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealWebhookSecret {
    /// The endpoint id.
    pub endpoint_id: String,
    /// The secret's id within the endpoint.
    pub secret_id: String,
    /// The secret.
    pub plaintext: String,
}

impl Drop for SealWebhookSecret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.plaintext);
    }
}

impl std::fmt::Debug for SealWebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealWebhookSecret")
            .field("endpoint_id", &self.endpoint_id)
            .field("secret_id", &self.secret_id)
            .finish_non_exhaustive()
    }
}

crate::operation!(SealWebhookSecret => subjects::VAULT_WEBHOOK_SEAL, String, callers: [crate::Component::Webhook]);

/// One sealed webhook secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedWebhookSecret {
    /// The secret's id within the endpoint.
    pub secret_id: String,
    /// The blob.
    pub sealed: String,
}

/// Open an endpoint's sealed secrets (vault; only the webhook component asks).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenWebhookSecrets {
    /// The endpoint id.
    pub endpoint_id: String,
    /// Its secrets.
    pub secrets: Vec<SealedWebhookSecret>,
}

/// Opened secrets, in the request's order.
#[derive(Clone, Serialize, Deserialize)]
pub struct WebhookSecrets(pub Vec<String>);

impl Drop for WebhookSecrets {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookSecrets({} secrets)", self.0.len())
    }
}

crate::operation!(OpenWebhookSecrets => subjects::VAULT_WEBHOOK_OPEN, WebhookSecrets, callers: [crate::Component::Webhook]);
