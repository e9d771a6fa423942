//! Test-only fixtures: real servers on random loopback ports, killed on drop, and a quiet
//! tracing subscriber. Used by every crate's integration tests and by the end-to-end suite.
//!
//! Binaries come from `TTSCM_TEST_NATS_SERVER` / `TTSCM_TEST_FERRETDB` (set by `tests/run.sh`,
//! which installs and builds them), falling back to `nats-server` / `ferretdb` on `PATH`. A
//! missing binary fails the test with a message saying to use `tests/run.sh`: tests never pass
//! without the real part.

pub mod connectwise;
pub mod ferretdb;
pub mod nats;
pub mod oidc;
pub mod pki;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

pub use ferretdb::MongoFixture;
pub use nats::NatsServer;
pub use oidc::OidcProvider;
pub use pki::TestPki;

/// A free loopback port (bound and released; good enough for test servers).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("the loopback interface can bind an ephemeral port")
}

/// Polls until `addr` accepts TCP connections or the deadline passes.
/// Starts `command` (a server of `name` that will listen on `port` of 127.0.0.1) with its output
/// discarded, and waits up to `deadline` for the port to open.
///
/// # Panics
/// When the binary cannot be started or the port does not open in time.
pub fn spawn_listening(
    command: &mut std::process::Command,
    name: &str,
    port: u16,
    deadline: Duration,
) -> std::process::Child {
    let child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name} ({e}); run the suite with tests/run.sh"));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(wait_for_port(addr, deadline), "{name} did not start on {addr}");
    child
}

pub fn wait_for_port(addr: SocketAddr, deadline: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Polls `check` until it returns `Some` or `deadline` passes.
pub async fn eventually<T, F, Fut>(deadline: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if start.elapsed() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Installs a tracing subscriber once: silent unless `TTSCM_TEST_LOG` holds a filter.
pub fn init_tracing() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("TTSCM_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

/// Path of a test binary from `env_var`, or `fallback` on PATH.
fn binary(env_var: &str, fallback: &str) -> String {
    std::env::var(env_var).unwrap_or_else(|_| fallback.to_owned())
}

/// A log writer that keeps what it is given, for tests that read their logs back
/// (`fmt::layer().with_writer(move || captured.clone())`); clones share the buffer.
#[derive(Clone, Default)]
pub struct CapturedLog(std::sync::Arc<parking_lot::Mutex<Vec<u8>>>);

impl CapturedLog {
    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }
}

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs each named `async fn(Variant)` once per variant, as `<module>::<name>` tests — one
/// contract suite against every adapter of a port, or every scenario in every mode:
///
/// ```text
/// ttscm_testkit::for_each_variant!(Adapter { sqlite: Sqlite, mongo: Mongo } => reads_back, pages);
/// ```
#[macro_export]
macro_rules! for_each_variant {
    (@tests $kind:ident :: $variant:ident => $($name:ident),+) => {
        $( #[tokio::test] async fn $name() { super::$name(super::$kind::$variant).await } )+
    };
    (@modules $kind:ident [$($names:tt)*] $module:ident : $variant:ident $(, $more:ident : $other:ident)*) => {
        mod $module {
            $crate::for_each_variant!(@tests $kind::$variant => $($names)*);
        }
        $crate::for_each_variant!(@modules $kind [$($names)*] $($more : $other),*);
    };
    (@modules $kind:ident [$($names:tt)*]) => {};
    ($kind:ident { $($module:ident : $variant:ident),+ $(,)? } => $($name:ident),+ $(,)?) => {
        $crate::for_each_variant!(@modules $kind [$($name),+] $($module : $variant),+);
    };
}
