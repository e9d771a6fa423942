//! A canary secret sealed, opened, refused and re-sealed through the bus never reaches the logs,
//! even at TRACE level.
//!
//! Its own test binary, with one test: tracing caches per call site whether anyone listens, so
//! a test running in parallel without a subscriber could make this one's subscriber miss
//! events, and the test would pass without looking.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use support::{all_at, place, sealed_at, spawn_vault};

/// A log sink shared between the subscriber and the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("no panics while logging")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("no panics while logging")).into_owned()
    }
}

#[tokio::test]
async fn a_canary_secret_never_reaches_the_logs() {
    const CANARY: &str = "canary-7c1f2e9a-secret";
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // Everything runs on this thread (a current-thread runtime): the vault's handlers, the
    // serving loop and the bus. A thread-local subscriber sees all of their logs.
    let _guard = tracing::subscriber::set_default(subscriber);

    let vault = spawn_vault().await;
    let (here, there) = (place("c-canary", "password"), place("c-other", "password"));
    let sealed = vault
        .seal(std::slice::from_ref(&here), &[CANARY])
        .await
        .expect("seals");
    let opened = vault
        .unseal(all_at(std::slice::from_ref(&here), &sealed))
        .await
        .expect("opens");
    assert_eq!(opened, [CANARY]);
    let error = vault
        .unseal(vec![sealed_at(&there, &sealed[0])])
        .await
        .unwrap_err();
    assert!(!error.message.contains(CANARY));
    let kid = vault.rotate();
    let moved = vault
        .reseal_until_moved_to(&kid, vec![sealed_at(&here, &sealed[0])])
        .await;
    let reopened = vault
        .unseal(vec![sealed_at(&here, &moved[0])])
        .await
        .expect("opens");
    assert_eq!(reopened, [CANARY]);

    let logs = captured.text();
    for expected in [
        "vault key ring loaded",
        "a sealed value failed to open",
        "c-other",
        "reloaded the vault key ring",
    ] {
        assert!(
            logs.contains(expected),
            "the subscriber captured vault's logs ({expected}):\n{logs}"
        );
    }
    assert!(!logs.contains(CANARY), "the canary leaked into the logs:\n{logs}");
}
