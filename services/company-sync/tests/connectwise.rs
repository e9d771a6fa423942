//! The ConnectWise client against the fake: headers on every call, paging through `Link`,
//! 429 with `Retry-After`, 5xx retries, 401 stops, error-body shapes, codebase discovery,
//! conditions and configurations.

use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::json;
use ttscm_company_sync::connectwise::{ConnectWise, ConnectWiseConfig, ConnectWiseError, RetryPolicy};
use ttscm_runtime::settings::ConnectWiseSettings;
use ttscm_testkit::connectwise::*;

fn settings(site: &str, codebase: Option<&str>, private_key: &str) -> ConnectWiseSettings {
    ConnectWiseSettings {
        site: Some(site.into()),
        codebase: codebase.map(str::to_owned),
        company_id: Some(COMPANY_ID.into()),
        public_key: Some(PUBLIC_KEY.into()),
        private_key: Some(SecretString::from(private_key)),
        client_id: Some(CLIENT_ID.into()),
        ..ConnectWiseSettings::default()
    }
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        attempt_timeout: Duration::from_secs(10),
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    }
}

async fn client(
    site: &str,
    codebase: Option<&str>,
    private_key: &str,
) -> Result<ConnectWise, ConnectWiseError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = ConnectWiseConfig::from_settings(&settings(site, codebase, private_key))
        .expect("settings are complete")
        .expect("settings are set");
    ConnectWise::connect(&config, fast_retries()).await
}

fn companies(n: i64) -> Vec<serde_json::Value> {
    (1..=n).map(|id| company(id, "2025-01-01T00:00:00Z")).collect()
}

#[tokio::test]
async fn a_full_listing_follows_three_pages_through_a_429_and_a_500() {
    let fake = ConnectWiseFake::start(companies(2500)).await;
    fake.with(|s| {
        s.failures.insert(1, [429].into());
        s.failures.insert(2, [500].into());
    });
    let cw = client(&fake.uri(), Some("v4_6_release"), PRIVATE_KEY)
        .await
        .expect("client");
    let started = Instant::now();
    let listed = cw.companies(None).await.expect("companies listed");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the 429's Retry-After: 1 is honoured"
    );
    assert_eq!(listed.len(), 2500);
    let ids: Vec<i64> = listed.iter().filter_map(|c| c.id).collect();
    assert_eq!(ids, (1..=2500).collect::<Vec<_>>());

    let first = &listed[0];
    assert_eq!(first.identifier.as_deref(), Some("Company00001"));
    assert_eq!(first.name.as_deref(), Some("Company 00001 Ltd"));
    assert_eq!(
        first.status.as_ref().and_then(|s| s.name.as_deref()),
        Some("Active")
    );
    assert_eq!(
        first.types.as_ref().and_then(|t| t[0].name.as_deref()),
        Some("Client")
    );
    assert_eq!(first.deleted_flag, Some(false));
    assert_eq!(
        first.info.as_ref().and_then(|i| i.last_updated.as_deref()),
        Some("2025-01-01T00:00:00Z")
    );
    assert_eq!(first.website, None, "omitted fields are None");
    assert_eq!(listed[2].website.as_deref(), Some("https://company3.example"));

    let requests = fake.list_requests().await;
    assert_eq!(requests.len(), 5, "3 pages + one 429 + one 500");
    for request in &requests {
        let header = |n: &str| request.headers.get(n).and_then(|v| v.to_str().ok());
        assert_eq!(header("clientId"), Some(CLIENT_ID));
        assert_eq!(header("authorization").map(str::to_owned), Some(expected_auth()));
        assert!(
            request
                .url
                .query_pairs()
                .any(|(k, v)| k == "pageSize" && v == "1000")
        );
    }
}

#[tokio::test]
async fn bad_credentials_stop_at_once_with_a_clear_error() {
    let fake = ConnectWiseFake::start(companies(10)).await;
    let cw = client(&fake.uri(), Some("v4_6_release/"), "wrong")
        .await
        .expect("client");
    let error = cw.companies(None).await.expect_err("refused");
    assert!(
        matches!(&error, ConnectWiseError::Unauthorized { status: 401, message } if message == "Password Expired or Invalid"),
        "{error:?}"
    );
    assert!(!error.to_string().contains("wrong"), "the key is never printed");
    assert_eq!(fake.list_requests().await.len(), 1, "no retries on 401");
}

#[tokio::test]
async fn persistent_failures_are_retried_a_bounded_number_of_times() {
    let fake = ConnectWiseFake::start(companies(10)).await;
    fake.with(|s| s.down = Some(503));
    let cw = client(&fake.uri(), Some("v4_6_release/"), PRIVATE_KEY)
        .await
        .expect("client");
    let error = cw.companies(None).await.expect_err("down");
    assert!(
        matches!(&error, ConnectWiseError::Unavailable(m) if m.contains("503") && m.contains("Down")),
        "{error:?}"
    );
    assert_eq!(fake.list_requests().await.len(), 4);

    // The 429 body uses `error` instead of `code`; both are understood.
    fake.with(|s| {
        s.down = None;
        s.failures.insert(1, [429, 429, 429, 429].into());
    });
    let error = cw.companies(None).await.expect_err("rate limited");
    assert!(
        matches!(&error, ConnectWiseError::Unavailable(m) if m.contains("TooManyRequests")),
        "{error:?}"
    );

    fake.with(|s| s.down = Some(400));
    let error = cw.companies(None).await.expect_err("rejected");
    assert!(
        matches!(&error, ConnectWiseError::Rejected { status: 400, code, .. } if code == "Down"),
        "{error:?}"
    );
}

#[tokio::test]
async fn transport_errors_are_retried_then_reported() {
    let port = ttscm_testkit::free_port();
    let cw = client(
        &format!("http://127.0.0.1:{port}"),
        Some("v4_6_release/"),
        PRIVATE_KEY,
    )
    .await
    .expect("client");
    let error = cw.companies(None).await.expect_err("nobody listens");
    assert!(
        matches!(&error, ConnectWiseError::Unavailable(m) if m.contains("transport")),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_codebase_is_discovered_when_not_set() {
    let fake = ConnectWiseFake::start(companies(3)).await;
    let cw = client(&fake.uri(), None, PRIVATE_KEY).await.expect("client");
    assert_eq!(cw.companies(None).await.expect("listed").len(), 3);
}

#[tokio::test]
async fn conditions_select_changed_companies_and_configurations_pass_through() {
    let mut records = companies(5);
    records[3] = company(4, "2025-06-01T00:00:00Z");
    let fake = ConnectWiseFake::start(records).await;
    let configuration = json!({"id": 900, "name": "FW-01", "type": {"id": 2, "name": "Firewall"},
        "company": {"id": 4, "identifier": "Company00004", "name": "Company 00004 Ltd"},
        "ipAddress": "10.0.0.1", "activeFlag": true, "_info": {"lastUpdated": "2025-01-01T00:00:00Z"}});
    fake.with(|s| {
        s.configurations.insert(4, vec![configuration.clone()]);
    });
    let cw = client(&fake.uri(), Some("v4_6_release/"), PRIVATE_KEY)
        .await
        .expect("client");
    let changed = cw
        .companies(Some("lastUpdated > [2025-03-01T00:00:00Z]"))
        .await
        .expect("listed");
    assert_eq!(changed.iter().filter_map(|c| c.id).collect::<Vec<_>>(), [4]);

    assert_eq!(
        cw.configurations(4).await.expect("configurations"),
        [configuration]
    );
    assert!(cw.configurations(5).await.expect("configurations").is_empty());
}
