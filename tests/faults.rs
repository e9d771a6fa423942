//! Faults in mesh mode: a service down answers 503 fast and recovers by itself; NATS
//! restarting does the same; readiness names what is down.

use crate::support;

use std::time::{Duration, Instant};

use support::{Mode, spawn_app};
use ttscm::Component;

const PATH: &str = "/v1/credential-type/credential-types";

#[tokio::test]
async fn a_stopped_service_gives_a_fast_503_and_recovers_when_it_returns() {
    let mut app = spawn_app(Mode::Mesh).await;
    let token = app.admin_token.clone();
    assert_eq!(app.get_status(PATH, Some(&token)).await, 200);
    app.stop(Component::Credential);
    let started = Instant::now();
    let (status, body) = app.get(PATH, Some(&token)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["message"], "The credential service is unavailable");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "took {:?}",
        started.elapsed()
    );
    let (status, body) = app.get("/readyz", Some(&token)).await;
    assert_eq!(status, 503);
    assert_eq!(body["data"]["credential"]["ok"], false);
    assert_eq!(body["data"]["identity"]["ok"], true);
    app.restart(Component::Credential);
    assert!(
        app.answers_within(PATH, Some(&token), 200, Duration::from_secs(10))
            .await,
        "the route works again without restarting the edge"
    );
}

#[tokio::test]
async fn a_nats_restart_is_survived_without_restarting_anything() {
    let mut app = spawn_app(Mode::Mesh).await;
    let token = app.admin_token.clone();
    assert_eq!(app.get_status(PATH, Some(&token)).await, 200);
    app.nats.as_mut().expect("mesh has nats").stop();
    let started = Instant::now();
    let (status, _) = app.get(PATH, Some(&token)).await;
    assert!(status == 503 || status == 504, "status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    app.nats.as_mut().expect("mesh has nats").restart();
    assert!(
        app.answers_within(PATH, Some(&token), 200, Duration::from_secs(20))
            .await,
        "requests succeed again after NATS returns"
    );
}
