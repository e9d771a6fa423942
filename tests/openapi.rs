//! The OpenAPI document (`GET /v1/openapi.json`) proven against a live server: it is the one
//! generated from the route table, its browsable page (`/v1/docs`) renders every operation in a
//! real headless Chromium without loading anything from elsewhere, and Schemathesis — every
//! check, at least 50 examples per operation, the stateful phase following the document's links
//! — finds no server error and no response that breaks the document.
//!
//! (Every response the other end-to-end tests receive through the harness is validated against
//! the document too: `support/openapi.rs`.)

use crate::support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{Mode, spawn_app, spawn_app_with_sign_in};

/// Operations Schemathesis leaves out, each with why.
const NOT_FUZZED: &[(&str, &str)] = &[
    (
        "auth.ws",
        "a WebSocket: over plain HTTP its only answer is 400 (asked without Upgrade), which the \
         positive checks read as valid data refused; the socket is tested in tests/sign_in.rs",
    ),
    (
        "teapot",
        "its only answer is 418 by design (the spec's joke), which the positive checks read as \
         valid data refused",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_is_the_generated_one_and_its_page_renders_offline() {
    let app = spawn_app(Mode::Embedded).await;
    let (status, served) = app.get("/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(&served, ttscm_edge::openapi::document());

    let page = app.bare(reqwest::Method::GET, "/v1/docs").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("the page is text");
    for asset in [
        "/v1/docs/swagger-ui-bundle.js",
        "/v1/docs/swagger-ui.css",
        "/v1/openapi.json",
    ] {
        assert!(html.contains(asset), "the page refers to {asset}");
        let response = app.bare(reqwest::Method::GET, asset).await;
        assert_eq!(response.status(), 200, "{asset}");
    }
    assert!(
        !html.contains("://"),
        "the page refers to nothing outside the server: {html}"
    );

    let operations: usize = served["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|item| item.as_object().expect("a path item").len())
        .sum();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/openapi/docs-page.mjs");
    let url = format!("{}/v1/docs", app.address);
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .args(["--url", &url])
            .output()
            .expect("node runs (tests/run.sh checks it is installed)")
    })
    .await
    .expect("the browser check ran");
    assert!(
        output.status.success(),
        "the browser check failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    assert_eq!(result["operations"], operations, "{result}");
    assert_eq!(
        result["title"].as_str().map(|t| t.starts_with("TTSCM API")),
        Some(true),
        "{result}"
    );
    let requests = result["requests"].as_array().expect("requests");
    assert!(requests.len() >= 4, "{result}");
    for request in requests {
        let request = request.as_str().expect("a URL");
        assert!(
            request.starts_with(&app.address) || request.starts_with("data:"),
            "the page loaded {request} from elsewhere"
        );
    }
    assert_eq!(result["failed"], serde_json::json!([]), "{result}");
    assert_eq!(result["consoleErrors"], serde_json::json!([]), "{result}");
}

/// The Schemathesis CLI: `$TTSCM_TEST_SCHEMATHESIS` (tests/run.sh installs it with
/// tests/tools/schemathesis.sh).
fn schemathesis() -> PathBuf {
    match std::env::var_os("TTSCM_TEST_SCHEMATHESIS") {
        Some(path) => PathBuf::from(path),
        None => panic!(
            "TTSCM_TEST_SCHEMATHESIS is not set: run the suite with tests/run.sh, or set it to \
             the path tests/tools/schemathesis.sh prints"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_response_breaking_the_document() {
    let bin = schemathesis();
    let connectwise =
        ttscm_testkit::connectwise::ConnectWiseFake::start(vec![ttscm_testkit::connectwise::company(
            250,
            "2026-12-01T00:00:00Z",
        )])
        .await;
    let app = spawn_app_with_sign_in(Mode::Embedded, |settings| {
        connectwise.configure(settings);
        // Schemathesis sends thousands of anonymous sign-in requests from one address.
        settings.edge.sign_in_per_minute = 0;
    })
    .await;
    // Something to find: a company, a type and a credential of it.
    app.seed_aws_credential("Fuzzed Co", "s3cr3t-value").await;

    let reports = tempfile::tempdir().expect("a report directory");
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/openapi/schemathesis.toml");
    let hooks = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/openapi/hooks.py");
    let mut command = Command::new(bin);
    command
        .arg("--config-file")
        .arg(config)
        .arg("run")
        .arg(format!("{}/v1/openapi.json", app.address))
        .args(["--checks", "all"])
        .args(["--max-examples", "50"])
        // A fixed seed, so a run repeats; `TTSCM_TEST_SCHEMATHESIS_SEED` explores others.
        .args([
            "--seed",
            &std::env::var("TTSCM_TEST_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261207".into()),
        ])
        // One worker: Hypothesis describes strategies with Python's `ast`, which CPython 3.11
        // does not guard against threads ("AST constructor recursion depth mismatch").
        .args(["--workers", "1"])
        .args(["--request-timeout", "60"])
        .args(["--header", &format!("Authorization: Bearer {}", app.admin_token)])
        .args(["--report", "junit", "--report-dir"])
        .arg(reports.path())
        // Its cache (`.schemathesis/`) goes with the reports, not into the repository.
        .current_dir(reports.path())
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_HOOKS", &hooks);
    for (operation, _why) in NOT_FUZZED {
        command.args(["--exclude-operation-id", operation]);
    }
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || command.output().expect("schemathesis runs"))
        .await
        .expect("schemathesis ran");
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("schemathesis took {took:?}:\n{stdout}\n{stderr}");
    assert!(
        output.status.success(),
        "Schemathesis found problems (exit {:?}), see its output above",
        output.status.code()
    );
    assert!(
        took < Duration::from_secs(15 * 60),
        "Schemathesis took {took:?}: keep the test command's time modest"
    );
}
