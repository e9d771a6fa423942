//! Which client address the edge records (issue 18): the socket peer, unless the peer is one of
//! `TTSCM_EDGE__TRUSTED_PROXIES`; then the right-most `X-Forwarded-For` address that is not a
//! trusted proxy. A client cannot forge its audited `clientIp` past an untrusted peer.

use crate::support;

use std::net::IpAddr;
use std::process::Command;

use serde_json::Value;
use support::{Mode, Seeded, TestApp, spawn_app_with};
use ttscm_runtime::settings::IpNet;

const CREDS: &str = "/v1/credential/credentials";

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|n| n.parse().expect("a valid net")).collect()
}

/// Reveals a fresh credential sending `forwarded_for` (each an `X-Forwarded-For` header);
/// answers the `clientIp` its audit entry records.
async fn audited_client_ip(app: &TestApp, forwarded_for: &[&str]) -> Value {
    let Seeded { id, .. } = app.seed_aws_credential("Trust Co", "s3cr3t").await;
    let mut request = app
        .http
        .get(format!("{}{CREDS}/{id}/secure-values", app.address))
        .bearer_auth(&app.admin_token);
    for value in forwarded_for {
        request = request.header("x-forwarded-for", *value);
    }
    let response = request.send().await.expect("sent");
    assert_eq!(response.status(), 200);
    let (status, page) = app
        .get(
            &format!("/v1/audit/events?action=credential.revealed&target={id}"),
            Some(&app.admin_token),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["pagination"]["totalRecords"], 1, "{page}");
    page["data"][0]["clientIp"].clone()
}

#[tokio::test]
async fn a_forged_forwarded_for_is_ignored_without_trusted_proxies() {
    let app = spawn_app_with(Mode::Embedded, |_| {}).await;
    assert_eq!(audited_client_ip(&app, &["203.0.113.7"]).await, "127.0.0.1");
    assert_eq!(
        audited_client_ip(&app, &["203.0.113.7, 198.51.100.1"]).await,
        "127.0.0.1"
    );
}

#[tokio::test]
async fn a_forged_forwarded_for_is_ignored_from_an_untrusted_peer() {
    let app = spawn_app_with(Mode::Embedded, |s| {
        s.edge.trusted_proxies = nets(&["10.0.0.0/8"]);
    })
    .await;
    assert_eq!(audited_client_ip(&app, &["203.0.113.7"]).await, "127.0.0.1");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_right_most_untrusted_address_is_the_client() {
    let app = spawn_app_with(Mode::Embedded, |s| {
        s.edge.trusted_proxies = nets(&["127.0.0.1", "10.0.0.0/8"]);
    })
    .await;
    // The client claimed 1.1.1.1; the outer proxy saw 203.0.113.7; an inner proxy is trusted.
    assert_eq!(
        audited_client_ip(&app, &["1.1.1.1, 203.0.113.7, 10.1.2.3"]).await,
        "203.0.113.7"
    );
    // Several headers are one list, in order.
    assert_eq!(
        audited_client_ip(&app, &["1.1.1.1", "198.51.100.9:4711, 10.0.0.5"]).await,
        "198.51.100.9"
    );
    assert_eq!(audited_client_ip(&app, &["2001:db8::1"]).await, "2001:db8::1");
    // No header: the proxy itself.
    assert_eq!(audited_client_ip(&app, &[]).await, "127.0.0.1");
    // Garbage ends the walk at the last hop that could be read.
    assert_eq!(
        audited_client_ip(&app, &["1.1.1.1, not-an-ip, 10.9.9.9"]).await,
        "10.9.9.9"
    );
}

#[test]
fn trusted_proxy_networks_parse_and_match() {
    let ip = |s: &str| s.parse::<IpAddr>().expect("an ip");
    let net: IpNet = "10.0.0.0/8".parse().expect("parses");
    assert!(net.contains(ip("10.255.0.1")));
    assert!(!net.contains(ip("11.0.0.1")));
    assert!(net.contains(ip("::ffff:10.0.0.1")), "IPv4-mapped counts");
    let host: IpNet = "192.0.2.4".parse().expect("parses");
    assert!(host.contains(ip("192.0.2.4")) && !host.contains(ip("192.0.2.5")));
    let v6: IpNet = "2001:db8::/32".parse().expect("parses");
    assert!(v6.contains(ip("2001:db8:1::1")) && !v6.contains(ip("2001:db9::1")));
    let all: IpNet = "0.0.0.0/0".parse().expect("parses");
    assert!(all.contains(ip("8.8.8.8")) && !all.contains(ip("::1")));
    for bad in [
        "",
        "10.0.0.0/33",
        "10.0.0.0/",
        "10.0.0/8",
        "::/129",
        "host",
        "10.0.0.0/+8",
    ] {
        assert!(bad.parse::<IpNet>().is_err(), "{bad:?} is refused");
    }
}

#[test]
fn invalid_trusted_proxies_exit_64() {
    let output = Command::new(env!("CARGO_BIN_EXE_ttscm"))
        .arg("serve")
        .env("TTSCM_EDGE__TRUSTED_PROXIES", "10.0.0.0/8, not-a-proxy")
        .env_remove("NATS_URL")
        .env_remove("MONGODB_URI")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("not-a-proxy"),
        "the error names the entry: {stderr}"
    );
}
