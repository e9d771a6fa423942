//! A real webhook receiver for the tests: `tests/oidc/webhook-receiver.mjs` (Node), verifying
//! every delivery with the Standard Webhooks reference library (npm `standardwebhooks`).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

/// A running receiver; killed on drop.
pub struct Receiver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Receiver {
    /// Starts one on a free loopback port.
    pub fn start() -> Self {
        let dir = std::env::var("TTSCM_TEST_OIDC_DIR")
            .expect("TTSCM_TEST_OIDC_DIR names tests/oidc with its node_modules (tests/run.sh sets it)");
        let mut child = Command::new("node")
            .arg("webhook-receiver.mjs")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node starts the webhook receiver");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the receiver says where it listens");
        let port: u16 = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the receiver: {line:?}"));
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        }
    }

    /// Where deliveries go.
    pub fn url(&self) -> String {
        format!("{}/hook", self.base)
    }

    async fn control(&self, what: &str, body: Value) {
        let response = self
            .http
            .post(format!("{}/control/{what}", self.base))
            .json(&body)
            .send()
            .await
            .expect("the receiver answers");
        assert!(
            response.status().is_success(),
            "control {what}: {}",
            response.status()
        );
    }

    /// The secrets deliveries are verified with (`verifiedWith` names their indexes).
    pub async fn secrets(&self, secrets: &[&str]) {
        self.control("secrets", json!({"secrets": secrets})).await;
    }

    /// Answers the next `count` deliveries (-1: all) with `status`.
    pub async fn fail(&self, status: u16, count: i64) {
        self.control("fail", json!({"status": status, "count": count}))
            .await;
    }

    /// Waits `ms` before answering each delivery.
    pub async fn delay(&self, ms: u64) {
        self.control("delay", json!({"ms": ms})).await;
    }

    /// Every delivery received, in order.
    pub async fn received(&self) -> Vec<Value> {
        self.http
            .get(format!("{}/control/received", self.base))
            .send()
            .await
            .expect("the receiver answers")
            .json()
            .await
            .expect("JSON")
    }

    /// Polls until `done` holds for what was received (or panics after `within`).
    pub async fn wait_until(
        &self,
        within: Duration,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let received = self.received().await;
            if done(&received) {
                return received;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the receiver did not see {what} within {within:?}; it saw {} deliveries: {:#?}",
                received.len(),
                received.iter().rev().take(3).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The distinct `webhook-id`s among `received` that the receiver accepted (2xx) and verified.
pub fn accepted_ids(received: &[Value]) -> std::collections::BTreeSet<String> {
    received
        .iter()
        .filter(|d| d["status"].as_u64().is_some_and(|s| (200..300).contains(&s)))
        .filter(|d| !d["verifiedWith"].as_array().is_none_or(Vec::is_empty))
        .filter_map(|d| d["id"].as_str().map(str::to_owned))
        .collect()
}

/// The CloudEvent a delivery carried.
pub fn event_of(delivery: &Value) -> Value {
    serde_json::from_str(delivery["body"].as_str().expect("a body")).expect("the body is JSON")
}
