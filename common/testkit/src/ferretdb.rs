//! A MongoDB-wire database for one test: a fresh database on the FerretDB that `tests/run.sh`
//! started (`TTSCM_TEST_MONGODB_URI`), or else a FerretDB of its own, killed on drop.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

/// A MongoDB URI plus a database name no other test uses.
pub struct MongoFixture {
    /// The server URI.
    pub uri: String,
    /// The fresh database's name.
    pub database: String,
    server: Option<(Child, TempDir)>,
}

impl MongoFixture {
    /// A fresh database.
    pub fn start() -> Self {
        let database = format!("t{}", ttscm_runtime::ids::new_id());
        if let Ok(uri) = std::env::var("TTSCM_TEST_MONGODB_URI") {
            return Self {
                uri,
                database,
                server: None,
            };
        }
        let bin = crate::binary("TTSCM_TEST_FERRETDB", "ferretdb");
        let dir = tempfile::tempdir().expect("a temp dir can be created");
        let port = crate::free_port();
        let child = Command::new(&bin)
            .arg("--handler=sqlite")
            .arg(format!("--sqlite-url=file:{}/", dir.path().display()))
            .arg(format!("--listen-addr=127.0.0.1:{port}"))
            .args([
                "--telemetry=disable",
                "--state-dir=-",
                "--debug-addr=-",
                "--log-level=error",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} ({e}); run the suite with tests/run.sh"));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        assert!(
            crate::wait_for_port(addr, Duration::from_secs(20)),
            "FerretDB did not start on {addr}"
        );
        Self {
            uri: format!("mongodb://127.0.0.1:{port}/"),
            database,
            server: Some((child, dir)),
        }
    }
}

impl Drop for MongoFixture {
    fn drop(&mut self) {
        if let Some((mut child, _dir)) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
