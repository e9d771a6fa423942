//! The CloudEvents 1.0 envelope of every event on `ttscm.events.<aggregate>.<action>`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One event as subscribers receive it (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    /// Always `1.0`.
    pub specversion: String,
    /// Unique per event.
    pub id: String,
    /// The emitting service, e.g. `ttscm/credential`.
    pub source: String,
    /// `ttscm.<aggregate>.<action>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When (ISO-8601 UTC).
    pub time: String,
    /// The resource's id.
    pub subject: String,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// Ids, names and counts; never a secret value.
    pub data: Value,
}

impl CloudEvent {
    /// An event `ttscm.<aggregate>.<action>` from `source` about `subject`.
    pub fn new(
        source: &str,
        aggregate: &str,
        action: &str,
        id: String,
        time: String,
        subject: &str,
        data: Value,
    ) -> Self {
        Self {
            specversion: "1.0".into(),
            id,
            source: source.into(),
            kind: format!("ttscm.{aggregate}.{action}"),
            time,
            subject: subject.into(),
            datacontenttype: "application/json".into(),
            data,
        }
    }

    /// The bus subject it is published on.
    pub fn bus_subject(aggregate: &str, action: &str) -> String {
        // Concatenated rather than formatted: every credential write and reveal asks.
        [crate::subjects::EVENTS_PREFIX, ".", aggregate, ".", action].concat()
    }
}
