//! A MongoDB-wire database for one test: a fresh database on the FerretDB that `tests/run.sh`
//! started (`TTSCM_TEST_MONGODB_URI`), or else a FerretDB of its own, killed on drop.

use std::process::{Child, Command};
use std::time::Duration;

use tempfile::TempDir;

/// A MongoDB URI plus a database name no other test uses.
pub struct MongoFixture {
    /// The server URI.
    pub uri: String,
    /// The fresh database's name.
    pub database: String,
    server: Option<OwnServer>,
}

/// A FerretDB this fixture started: its data dir and port outlive a stop, so a restart serves
/// the same data at the same address.
struct OwnServer {
    child: Option<Child>,
    dir: TempDir,
    port: u16,
}

impl OwnServer {
    fn spawn(&mut self) {
        let bin = crate::binary("TTSCM_TEST_FERRETDB", "ferretdb");
        let mut command = Command::new(&bin);
        // `TTSCM_TEST_FERRETDB_POSTGRESQL_URL`: FerretDB's PostgreSQL backend at that URL (a
        // cluster of the caller's, e.g. `tests/tools/postgresql.sh start`; it outlives a kill
        // of FerretDB) instead of SQLite files in the fixture's dir.
        match std::env::var("TTSCM_TEST_FERRETDB_POSTGRESQL_URL") {
            Ok(url) if !url.is_empty() => {
                command
                    .arg("--handler=postgresql")
                    .arg(format!("--postgresql-url={url}"));
            }
            _ => {
                command
                    .arg("--handler=sqlite")
                    // synchronous=NORMAL: a write is acknowledged once in SQLite's WAL, not
                    // after an fsync each, like MongoDB's default write concern (journal
                    // flushed every 100 ms).
                    .arg(format!(
                        "--sqlite-url=file:{}/?_pragma=synchronous(normal)",
                        self.dir.path().display()
                    ));
            }
        }
        command
            .arg(format!("--listen-addr=127.0.0.1:{}", self.port))
            .args([
                "--telemetry=disable",
                "--state-dir=-",
                "--debug-addr=-",
                "--log-level=error",
            ]);
        self.child = Some(crate::spawn_listening(
            &mut command,
            "FerretDB",
            self.port,
            Duration::from_secs(20),
        ));
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl MongoFixture {
    /// A fresh database.
    pub fn start() -> Self {
        match std::env::var("TTSCM_TEST_MONGODB_URI") {
            Ok(uri) => Self {
                uri,
                database: format!("t{}", ttscm_runtime::ids::new_id()),
                server: None,
            },
            Err(_) => Self::start_own(),
        }
    }

    /// A fresh database on a FerretDB of its own, even when a shared one runs (for tests that
    /// stop it).
    pub fn start_own() -> Self {
        let database = format!("t{}", ttscm_runtime::ids::new_id());
        let mut server = OwnServer {
            child: None,
            dir: tempfile::tempdir().expect("a temp dir can be created"),
            port: crate::free_port(),
        };
        server.spawn();
        Self {
            uri: format!("mongodb://127.0.0.1:{}/", server.port),
            database,
            server: Some(server),
        }
    }

    /// Stops the server (clients see the store unavailable). Panics for a shared server
    /// (`TTSCM_TEST_MONGODB_URI`), which other tests use: see [`Self::start_own`].
    pub fn stop(&mut self) {
        self.own().stop();
    }

    /// Starts it again at the same address with the same data.
    pub fn restart(&mut self) {
        let server = self.own();
        server.stop();
        server.spawn();
    }

    fn own(&mut self) -> &mut OwnServer {
        self.server
            .as_mut()
            .expect("only a FerretDB this fixture started can be stopped")
    }
}

impl Drop for MongoFixture {
    fn drop(&mut self) {
        if let Some(server) = &mut self.server {
            server.stop();
        }
    }
}
