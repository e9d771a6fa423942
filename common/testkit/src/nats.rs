//! A real `nats-server` with JetStream on a random loopback port, killed on drop.

use std::process::{Child, Command};
use std::time::Duration;

use tempfile::TempDir;

/// A running nats-server.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store_dir: TempDir,
    /// Extra command-line options (authentication, TLS), kept for restarts.
    extra: Vec<String>,
}

impl NatsServer {
    /// Starts a server on a free port.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server on a free port with extra command-line options, e.g.
    /// `["--user", "u", "--pass", "p"]` or the `--tls…` options.
    pub fn start_with(extra: &[&str]) -> Self {
        let store_dir = tempfile::tempdir().expect("a temp dir can be created");
        let mut server = Self {
            child: None,
            port: crate::free_port(),
            store_dir,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        server.spawn();
        server
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn spawn(&mut self) {
        let bin = crate::binary("TTSCM_TEST_NATS_SERVER", "nats-server");
        let mut command = Command::new(&bin);
        command
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.store_dir.path())
            .args(&self.extra);
        self.child = Some(crate::spawn_listening(
            &mut command,
            "nats-server",
            self.port,
            Duration::from_secs(10),
        ));
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (clients see a disconnect).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same JetStream store.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
