//! SIEM export of the audit log: every entry, in sequence order, to each configured sink — RFC
//! 5424 syslog over TCP (`TTSCM_AUDIT__SYSLOG_ADDR`) and/or JSON events to a Splunk HTTP Event
//! Collector (`TTSCM_AUDIT__HEC_URL`, `TTSCM_AUDIT__HEC_TOKEN`).
//!
//! - **At least once, never a gap**: each sink has a durable cursor (the last `seq` it took, in
//!   `audit_export_cursors`); a batch is sent first and the cursor moved after, by a write
//!   conditional on the cursor being where it was read. A crash or restart between the two sends
//!   that batch again; nothing is skipped. With several credential replicas each may send a batch
//!   before one of them moves the cursor, so a sink can see an entry twice: every record carries
//!   its `seq` and chain `hash` (and `prevHash`), so the SIEM drops repeats and checks continuity.
//! - A sink that fails (down, refusing, a non-2xx answer) is retried every
//!   `TTSCM_AUDIT__EXPORT_INTERVAL_MS` from the same cursor; the others go on.
//! - Records are the audit entries as the API shows them: ids, actions, details — never a value.
//! - Syslog: `<110>1` (facility 13 "log audit", severity 6), the entry's time, the host, app
//!   `ttscm`, MSGID the action (at most 32 characters), structured data
//!   `[ttscm@32473 seq=".." hash=".." prevHash=".."]`, then the entry as JSON; octet-counted
//!   framing (RFC 6587 §3.4.1). TCP only: for TLS put a TLS-terminating relay (e.g. rsyslog,
//!   stunnel) beside TTSCM, or use HEC over `https://`.

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use ttscm_contract::audit::AuditEntry;
use ttscm_runtime::store::IndexSpec;
use ttscm_runtime::{Filter, Shutdown, Store, StoreError, Update, clock};

use crate::service::Service;

/// Each sink's cursor: `{id: <sink>, seq}`. Owned by the credential service.
pub const EXPORT_CURSORS: &str = "audit_export_cursors";

/// The IANA private enterprise number used in the structured data's id (an example number
/// reserved for documentation, RFC 5612).
const SD_ID: &str = "ttscm@32473";

/// Why a batch was not delivered (said in a log line; never holds an entry).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The store failed.
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    /// The sink could not be reached or refused the batch.
    #[error("the sink failed: {0}")]
    Sink(String),
}

/// Where entries go.
#[derive(Clone)]
pub enum Sink {
    /// RFC 5424 over TCP to `host:port`.
    Syslog {
        /// `host:port`.
        addr: String,
    },
    /// Splunk HEC.
    Hec {
        /// The collector's event endpoint.
        url: String,
        /// `Splunk <token>`.
        authorization: String,
        /// The HTTP client.
        client: reqwest::Client,
    },
}

impl Sink {
    /// The cursor's id.
    fn name(&self) -> &'static str {
        match self {
            Sink::Syslog { .. } => "syslog",
            Sink::Hec { .. } => "hec",
        }
    }

    /// The sinks `settings` configure.
    pub fn configured(settings: &ttscm_runtime::settings::AuditSettings) -> Vec<Sink> {
        let mut sinks = Vec::new();
        if let Some(addr) = &settings.syslog_addr {
            sinks.push(Sink::Syslog { addr: addr.clone() });
        }
        if let Some(url) = &settings.hec_url {
            let token = settings
                .hec_token
                .as_ref()
                .map(|t| t.expose_secret().to_owned())
                .unwrap_or_default();
            sinks.push(Sink::Hec {
                url: url.clone(),
                authorization: format!("Splunk {token}"),
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .expect("a client with a timeout builds"),
            });
        }
        sinks
    }

    async fn send(&self, entries: &[AuditEntry]) -> Result<(), ExportError> {
        match self {
            Sink::Syslog { addr } => {
                let mut frames = Vec::new();
                for entry in entries {
                    let message = syslog_message(entry);
                    frames.extend_from_slice(format!("{} {message}", message.len()).as_bytes());
                }
                let mut stream = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| ExportError::Sink(format!("syslog {addr}: {e}")))?;
                stream
                    .write_all(&frames)
                    .await
                    .map_err(|e| ExportError::Sink(format!("syslog {addr}: {e}")))?;
                stream
                    .shutdown()
                    .await
                    .map_err(|e| ExportError::Sink(format!("syslog {addr}: {e}")))?;
                Ok(())
            }
            Sink::Hec {
                url,
                authorization,
                client,
            } => {
                let body: String = entries
                    .iter()
                    .map(|entry| hec_event(entry).to_string() + "\n")
                    .collect();
                let response = client
                    .post(url)
                    .header("authorization", authorization)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| ExportError::Sink(format!("HEC: {}", e.without_url())))?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(ExportError::Sink(format!("HEC answered {}", response.status())))
                }
            }
        }
    }
}

/// One entry as an RFC 5424 message (without its octet count).
pub fn syslog_message(entry: &AuditEntry) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty() && h.is_ascii() && !h.contains(' '))
        .unwrap_or_else(|| "-".to_owned());
    let msgid: String = entry
        .action
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect();
    let msgid = if msgid.is_empty() { "-".to_owned() } else { msgid };
    let json = serde_json::to_string(entry).expect("entries serialize");
    format!(
        "<110>1 {at} {host} ttscm - {msgid} [{SD_ID} seq=\"{seq}\" hash=\"{hash}\" prevHash=\"{prev}\"] {json}",
        at = entry.at,
        seq = entry.seq,
        hash = sd_escape(&entry.hash),
        prev = sd_escape(&entry.prev_hash),
    )
}

/// An SD-PARAM value with `"`, `\` and `]` escaped (RFC 5424 §6.3.3).
fn sd_escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace(']', "\\]")
}

/// One entry as a Splunk HEC event.
pub fn hec_event(entry: &AuditEntry) -> Value {
    let time = clock::parse_iso(&entry.at)
        .map(|t| t.unix_timestamp_nanos() as f64 / 1e9)
        .unwrap_or_default();
    json!({
        "time": time,
        "source": "ttscm",
        "sourcetype": "ttscm:audit",
        "event": entry,
    })
}

/// Declares the cursors' collection.
pub async fn prepare(store: &Store) -> Result<(), StoreError> {
    const NONE: &[IndexSpec] = &[];
    store.ensure_indexes(EXPORT_CURSORS, NONE).await
}

impl Service {
    /// Where `sink`'s cursor is: the last `seq` it took (0: none yet).
    async fn cursor(&self, sink: &str) -> Result<u64, StoreError> {
        match self.store.get(EXPORT_CURSORS, sink).await? {
            Some(document) => Ok(document.get("seq").and_then(Value::as_u64).unwrap_or(0)),
            None => {
                let start = json!({"id": sink, "seq": 0});
                let Value::Object(document) = start else {
                    unreachable!("an object literal")
                };
                match self.store.insert(EXPORT_CURSORS, document).await {
                    Ok(()) | Err(StoreError::Conflict) => Ok(0),
                    Err(error) => Err(error),
                }
            }
        }
    }

    /// Sends the next batch to `sink` and moves its cursor; answers how many entries went.
    pub async fn export_batch(&self, sink: &Sink) -> Result<usize, ExportError> {
        let from = self.cursor(sink.name()).await?;
        let batch = usize::try_from(self.audit_settings.export_batch.max(1)).unwrap_or(500);
        let entries = self.audit.log().scan(from + 1, batch).await?;
        let Some(last) = entries.last().map(|e| e.seq) else {
            return Ok(0);
        };
        sink.send(&entries).await?;
        let at_cursor = Filter::And(vec![
            Filter::id(sink.name()),
            Filter::eq("seq", i64::try_from(from).unwrap_or(i64::MAX)),
        ]);
        let moved = Update::default().set("seq", i64::try_from(last).unwrap_or(i64::MAX));
        // Not moved: another replica moved it meanwhile (this batch went twice; at least once).
        self.store.update_one(EXPORT_CURSORS, &at_cursor, &moved).await?;
        Ok(entries.len())
    }

    /// Exports to every configured sink until `shutdown`.
    pub(crate) async fn export_audit_forever(self: Arc<Self>, shutdown: Shutdown) {
        let sinks = Sink::configured(&self.audit_settings);
        if sinks.is_empty() {
            return;
        }
        if let Err(error) = prepare(&self.store).await {
            tracing::error!(%error, "the audit export's cursors cannot be prepared; no SIEM export");
            return;
        }
        let interval = Duration::from_millis(self.audit_settings.export_interval_ms.max(10));
        let jobs = sinks.into_iter().map(|sink| {
            let service = self.clone();
            let shutdown = shutdown.clone();
            async move {
                loop {
                    let wait = match service.export_batch(&sink).await {
                        // A full batch: more are likely waiting.
                        Ok(sent) if sent as u64 >= service.audit_settings.export_batch.max(1) => {
                            Duration::ZERO
                        }
                        Ok(_) => interval,
                        Err(error) => {
                            tracing::warn!(sink = sink.name(), %error, "audit export failed; trying again");
                            interval
                        }
                    };
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        });
        futures_util::future::join_all(jobs).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ttscm_contract::PrincipalKind;
    use ttscm_contract::audit::{AuditActor, AuditTarget};

    fn entry() -> AuditEntry {
        AuditEntry {
            id: "e1".into(),
            seq: 7,
            at: "2026-12-06T10:00:00.123Z".into(),
            action: "credential.revealed".into(),
            actor: AuditActor {
                id: "u1".into(),
                kind: PrincipalKind::User,
                name: "Alex".into(),
            },
            target: AuditTarget {
                kind: "credential".into(),
                id: "c1".into(),
            },
            credential_id: Some("c1".into()),
            type_id: None,
            company_id: None,
            request_id: "r1".into(),
            client_ip: None,
            details: None,
            prev_hash: "ab".repeat(32),
            hash: "cd".repeat(32),
        }
    }

    #[test]
    fn a_syslog_record_carries_sequence_and_hashes_in_structured_data() {
        let message = syslog_message(&entry());
        assert!(
            message.starts_with("<110>1 2026-12-06T10:00:00.123Z "),
            "{message}"
        );
        assert!(message.contains(" ttscm - credential.revealed [ttscm@32473 seq=\"7\" hash=\""));
        let json = &message[message.find("] ").expect("after the structured data") + 2..];
        let parsed: Value = serde_json::from_str(json).expect("the entry as JSON");
        assert_eq!(parsed["seq"], 7);
    }

    #[test]
    fn a_hec_event_has_the_entrys_time_in_seconds() {
        let event = hec_event(&entry());
        assert_eq!(event["sourcetype"], "ttscm:audit");
        assert_eq!(event["event"]["hash"], "cd".repeat(32));
        let time = event["time"].as_f64().expect("seconds");
        assert!((time - 1_796_551_200.123).abs() < 0.001, "{time}");
    }
}
