//! The embedded store adapter: one SQLite file (WAL mode), a table per collection holding
//! `(id, doc)` with `doc` as JSON text, filters compiled to `json_extract` expressions.
//!
//! Calls run synchronously on the calling thread under a short mutex instead of hopping to a
//! blocking pool: each statement takes microseconds, and a thread hop per query would cost more
//! than the query (see `shared/performance.md`). One connection writes; a small pool reads.
//! `synchronous=NORMAL` in WAL mode: a commit survives a crash of the process; a power loss may
//! drop the last commits, never corrupt the file.
//!
//! A collection its owner declares an *append log* ([`super::Store::ensure_append_log`]: many
//! inserts, read oldest first, deleted once handled — the credential service's event outbox) is
//! kept in a second file, `<name>-log.sqlite3`, attached as schema `log`: writes to one file
//! invalidate the page caches of every reader of that file, so frequent appends would otherwise
//! make every read of the main file start from a cold cache. The adapter knows no collection
//! by name.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

use rusqlite::functions::FunctionFlags;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, ErrorCode, OpenFlags, params_from_iter};
use serde_json::Value;

use super::{Document, Filter, FindOptions, IndexSpec, Order, Scalar, StoreError, Update};

/// Read connections; two cores on the target machine, so two readers keep both busy.
const READERS: usize = 2;

/// The embedded store; clones share the connections.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

struct Inner {
    /// The main file's path.
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    /// Collections whose table exists, so `CREATE TABLE IF NOT EXISTS` runs once per collection.
    tables: Mutex<HashSet<String>>,
    /// Collections declared append logs (see [`SqliteStore::ensure_append_log`]), kept in the
    /// log file. Declared before the collection is first used.
    logs: Mutex<HashSet<String>>,
    /// Bumped when the checkpointer sees the main file changed by a commit on another
    /// connection (see [`SqliteStore::change_epoch`]).
    epoch: AtomicU64,
}

fn open_connection(path: &Path, write: bool) -> Result<Connection, StoreError> {
    let flags = if write {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(other)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(other)?;
    conn.execute("ATTACH DATABASE ?1 AS log", [log_path(path).to_string_lossy()])
        .map_err(other)?;
    for schema in ["main", "log"] {
        conn.pragma_update(Some(schema), "journal_mode", "WAL")
            .map_err(other)?;
        conn.pragma_update(Some(schema), "synchronous", "NORMAL")
            .map_err(other)?;
        // Reads through a memory map instead of a read syscall per page. Commits never
        // checkpoint (which copies the WAL back and fsyncs while holding the write lock): a
        // background thread does it (see `spawn_checkpointer`).
        conn.pragma_update(Some(schema), "mmap_size", 256 * 1024 * 1024)
            .map_err(other)?;
    }
    conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(other)?;
    conn.set_prepared_statement_cache_capacity(128);
    // Unicode-aware lowercase, so case-insensitive search matches MongoDB's `$regex` with `i`.
    conn.create_scalar_function(
        "ttscm_lower",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| Ok(ctx.get::<Option<String>>(0)?.map(|s| s.to_lowercase())),
    )
    .map_err(other)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the store file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let writer = open_connection(path, true)?;
        let readers = (0..READERS)
            .map(|_| open_connection(path, false).map(Mutex::new))
            .collect::<Result<_, _>>()?;
        let inner = Arc::new(Inner {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
            tables: Mutex::new(HashSet::new()),
            logs: Mutex::new(HashSet::new()),
            epoch: AtomicU64::new(0),
        });
        spawn_checkpointer(path, Arc::downgrade(&inner))?;
        Ok(Self { inner })
    }

    /// The main file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// A number that moves (within [`CHECKPOINT_INTERVAL`]) after any commit to the main file
    /// — by this process or another one, such as `ttscm vault reseal` run beside the server —
    /// so a cache can tell that the store changed under it. Commits to the log file (append
    /// logs) do not move it.
    pub fn change_epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::Acquire)
    }

    /// Whether `collection` was declared an append log.
    fn is_log(&self, collection: &str) -> bool {
        self.inner.logs.lock().contains(collection)
    }

    /// The schema holding `collection`: `log` for an append log, else `main`.
    fn schema(&self, collection: &str) -> &'static str {
        if self.is_log(collection) { "log" } else { "main" }
    }

    /// The qualified, quoted table name of `collection`.
    fn table(&self, collection: &str) -> String {
        format!("{}.\"{collection}\"", self.schema(collection))
    }

    /// Creates `collection`'s table if needed.
    fn ensure_table(&self, collection: &str) -> Result<(), StoreError> {
        let mut tables = self.inner.tables.lock();
        if tables.contains(collection) {
            return Ok(());
        }
        let writer = self.inner.writer.lock();
        // In one transaction: a log table never exists without its id index.
        let tx = writer.unchecked_transaction().map_err(other)?;
        tx.execute_batch(&create_table(collection, self.is_log(collection)))
            .map_err(other)?;
        tx.commit().map_err(other)?;
        tables.insert(collection.to_owned());
        Ok(())
    }

    /// Declares `collection` an append log, kept in the log file (see the module docs), and
    /// its indexes. Declared before the collection's first use in this process: a collection
    /// used first as an ordinary one has its table in the main file already.
    pub(super) fn ensure_append_log(
        &self,
        collection: &str,
        indexes: &[IndexSpec],
    ) -> Result<(), StoreError> {
        {
            let tables = self.inner.tables.lock();
            let mut logs = self.inner.logs.lock();
            if tables.contains(collection) && !logs.contains(collection) {
                return Err(StoreError::Invalid(format!(
                    "'{collection}' was used before it was declared an append log"
                )));
            }
            logs.insert(collection.to_owned());
        }
        self.ensure_indexes(collection, indexes)
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let index = self.inner.next_reader.fetch_add(1, Ordering::Relaxed) % self.inner.readers.len();
        let reader = self.inner.readers[index].lock();
        f(&reader)
    }

    fn with_writer<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let writer = self.inner.writer.lock();
        f(&writer)
    }

    pub(super) fn ensure_indexes(&self, collection: &str, indexes: &[IndexSpec]) -> Result<(), StoreError> {
        self.ensure_table(collection)?;
        self.with_writer(|conn| {
            for index in indexes {
                let columns: Vec<String> = index.fields.iter().map(|f| field_expr(f)).collect();
                let unique = if index.unique { "UNIQUE " } else { "" };
                conn.execute_batch(&format!(
                    "CREATE {unique}INDEX IF NOT EXISTS {schema}.\"{collection}__{name}\" ON \"{collection}\" ({columns})",
                    schema = self.schema(collection),
                    name = index.name,
                    columns = columns.join(", ")
                ))
                .map_err(map_error)?;
            }
            Ok(())
        })
    }

    pub(super) fn insert(&self, collection: &str, document: Document) -> Result<(), StoreError> {
        self.insert_many(collection, vec![document])
    }

    pub(super) fn insert_many(&self, collection: &str, documents: Vec<Document>) -> Result<(), StoreError> {
        let rows = documents
            .iter()
            .map(|d| {
                Ok(Row {
                    id: d.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    doc: serde_json::to_string(d).map_err(|e| StoreError::Invalid(e.to_string()))?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.insert_rows(collection, rows)
    }

    /// Inserts rows in one transaction.
    pub(super) fn insert_rows(&self, collection: &str, rows: Vec<Row>) -> Result<(), StoreError> {
        self.ensure_table(collection)?;
        let sql = format!("INSERT INTO {} (id, doc) VALUES (?1, ?2)", self.table(collection));
        self.with_writer(|conn| {
            let tx = conn.unchecked_transaction().map_err(map_error)?;
            {
                let mut stmt = tx.prepare_cached(&sql).map_err(map_error)?;
                for row in &rows {
                    stmt.execute(rusqlite::params![row.id, row.doc])
                        .map_err(map_error)?;
                }
            }
            tx.commit().map_err(map_error)
        })
    }

    pub(super) fn find(&self, collection: &str, options: &FindOptions) -> Result<Vec<Document>, StoreError> {
        self.ensure_table(collection)?;
        let mut params = Vec::new();
        let mut sql = format!(
            "SELECT doc FROM {} WHERE {}",
            self.table(collection),
            compile(&options.filter, &mut params)
        );
        if !options.sort.is_empty() {
            let keys: Vec<String> = options
                .sort
                .iter()
                .map(|(f, o)| {
                    format!(
                        "{} {}",
                        field_expr(f),
                        if *o == Order::Asc { "ASC" } else { "DESC" }
                    )
                })
                .collect();
            sql.push_str(" ORDER BY ");
            sql.push_str(&keys.join(", "));
        }
        let limit = options.limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let skip = i64::try_from(options.skip).unwrap_or(i64::MAX);
        sql.push_str(&format!(" LIMIT {limit} OFFSET {skip}"));
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(map_error)?;
            let mut rows = stmt.query(params_from_iter(params.iter())).map_err(map_error)?;
            let mut documents = Vec::new();
            while let Some(row) = rows.next().map_err(map_error)? {
                let text = row
                    .get_ref(0)
                    .map_err(map_error)?
                    .as_str()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                documents.push(serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))?);
            }
            Ok(documents)
        })
    }

    /// `<verb> <table> WHERE <filter>` for `collection` (its table made if missing), with the
    /// filter's values as bound parameters.
    fn statement(
        &self,
        verb: &str,
        collection: &str,
        filter: &Filter,
    ) -> Result<(String, Vec<SqlValue>), StoreError> {
        self.ensure_table(collection)?;
        let mut params = Vec::new();
        let sql = format!(
            "{verb} {} WHERE {}",
            self.table(collection),
            compile(filter, &mut params)
        );
        Ok((sql, params))
    }

    pub(super) fn count(&self, collection: &str, filter: &Filter) -> Result<u64, StoreError> {
        let (sql, params) = self.statement("SELECT count(*) FROM", collection, filter)?;
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(map_error)?;
            let count: i64 = stmt
                .query_row(params_from_iter(params.iter()), |row| row.get(0))
                .map_err(map_error)?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
    }

    pub(super) fn update(
        &self,
        collection: &str,
        filter: &Filter,
        update: &Update,
        many: bool,
    ) -> Result<u64, StoreError> {
        self.ensure_table(collection)?;
        let mut params = Vec::new();
        let mut expr = "doc".to_owned();
        if !update.set.is_empty() {
            let mut args = Vec::new();
            for (field, value) in &update.set {
                params.push(SqlValue::Text(
                    serde_json::to_string(value).map_err(|e| StoreError::Invalid(e.to_string()))?,
                ));
                args.push(format!("'{}', json(?{})", json_path(field), params.len()));
            }
            expr = format!("json_set({expr}, {})", args.join(", "));
        }
        if !update.unset.is_empty() {
            let paths: Vec<String> = update
                .unset
                .iter()
                .map(|f| format!("'{}'", json_path(f)))
                .collect();
            expr = format!("json_remove({expr}, {})", paths.join(", "));
        }
        let condition = compile(filter, &mut params);
        let sql = if many {
            format!(
                "UPDATE {} SET doc = {expr} WHERE {condition}",
                self.table(collection)
            )
        } else {
            format!(
                "UPDATE {t} SET doc = {expr} WHERE id = (SELECT id FROM {t} WHERE {condition} LIMIT 1)",
                t = self.table(collection)
            )
        };
        self.with_writer(|conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(map_error)?;
            let changed = stmt.execute(params_from_iter(params.iter())).map_err(map_error)?;
            Ok(changed as u64)
        })
    }

    pub(super) fn delete_many(&self, collection: &str, filter: &Filter) -> Result<u64, StoreError> {
        let (sql, params) = self.statement("DELETE FROM", collection, filter)?;
        self.with_writer(|conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(map_error)?;
            Ok(stmt.execute(params_from_iter(params.iter())).map_err(map_error)? as u64)
        })
    }

    pub(super) fn ping(&self) -> Result<(), StoreError> {
        self.with_reader(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(map_error))
    }
}

/// One document to insert: its id and its JSON text.
pub(super) struct Row {
    pub(super) id: String,
    pub(super) doc: String,
}

/// The SQL expression for a (validated) field path.
fn field_expr(field: &str) -> String {
    if field == "id" {
        "id".to_owned()
    } else {
        format!("json_extract(doc, '{}')", json_path(field))
    }
}

/// The statements creating `collection`'s table (if it does not exist).
///
/// A collection's rows are `(id, doc)`. Most tables are keyed by `id` itself (`WITHOUT ROWID`:
/// a lookup by id is one B-tree search). Append logs are rowid tables in the log file with a
/// unique index on `id` instead: appends then fill pages in order, where an `id`-keyed tree of
/// ~600-byte rows splits and rebalances its last pages on every few inserts.
fn create_table(collection: &str, log: bool) -> String {
    if log {
        let table = format!("log.\"{collection}\"");
        format!(
            "CREATE TABLE IF NOT EXISTS {table} (rid INTEGER PRIMARY KEY, id TEXT NOT NULL, doc TEXT NOT NULL);
             CREATE UNIQUE INDEX IF NOT EXISTS log.\"{collection}__id\" ON \"{collection}\" (id)"
        )
    } else {
        format!(
            "CREATE TABLE IF NOT EXISTS main.\"{collection}\" (id TEXT PRIMARY KEY NOT NULL, doc TEXT NOT NULL) WITHOUT ROWID"
        )
    }
}

/// The second file, next to the main one: `ttscm.sqlite3` → `ttscm-log.sqlite3`.
fn log_path(path: &Path) -> std::path::PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ttscm".into());
    path.with_file_name(format!("{stem}-log.sqlite3"))
}

/// How often the background thread checkpoints the WAL.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// WAL content (frames × page size) past which the checkpointer restarts the WAL after its
/// passive checkpoint.
const WAL_RESTART_BYTES: u64 = 8 * 1024 * 1024;

/// Checkpoints all of `schema`'s WAL and restarts it, holding every connection of the store.
fn restart_wal(inner: &Inner, schema: &str) -> Result<(), StoreError> {
    let writer = inner.writer.lock();
    let _readers = inner.readers.iter().map(|r| r.lock()).collect::<Vec<_>>();
    writer
        .query_row(
            &format!("PRAGMA {schema}.wal_checkpoint(RESTART)"),
            [],
            |_| Ok(()),
        )
        .map_err(other)
}

/// Checkpoints the WAL every [`CHECKPOINT_INTERVAL`] on a connection of its own, in PASSIVE mode
/// (it never blocks readers or the writer), until the store is dropped. Keeps fsyncs off the
/// request path and the WAL from growing without bound.
fn spawn_checkpointer(path: &Path, store: std::sync::Weak<Inner>) -> Result<(), StoreError> {
    let conn = open_connection(path, false)?;
    let page_size: u64 = conn
        .query_row("PRAGMA page_size", [], |row| row.get::<_, i64>(0))
        .map_err(other)?
        .max(512) as u64;
    std::thread::Builder::new()
        .name("ttscm-sqlite-checkpoint".into())
        .spawn(move || {
            // SQLite's data_version moves when another connection (of any process) commits
            // to the file; this connection never writes, so it sees every commit.
            let data_version = || {
                conn.query_row("PRAGMA main.data_version", [], |row| row.get::<_, i64>(0))
                    .ok()
            };
            let mut seen = data_version();
            while store.strong_count() > 0 {
                std::thread::sleep(CHECKPOINT_INTERVAL);
                let now = data_version();
                if now != seen {
                    seen = now;
                    if let Some(inner) = store.upgrade() {
                        inner.epoch.fetch_add(1, Ordering::AcqRel);
                    }
                }
                for schema in ["main", "log"] {
                    // PASSIVE never waits, but under constant load some reader always holds a
                    // snapshot, the WAL never restarts, and it grows without bound (seen: 870 MB
                    // after minutes of reveals). Past the limit, the WAL restarts while this
                    // process's connections are all held here: nobody in the process is reading
                    // or writing, so it completes without busy-waiting (a few ms of stall).
                    // The size is what the WAL holds now (its frames), not the file's length:
                    // the file keeps its length when the WAL restarts from its beginning.
                    // A passive checkpoint first (no locks held), so the restart has little left
                    // to copy and sync; it answers (busy, frames in the WAL, frames copied).
                    let mut result = conn
                        .query_row(&format!("PRAGMA {schema}.wal_checkpoint(PASSIVE)"), [], |row| {
                            row.get::<_, i64>(1)
                        })
                        .map_err(other)
                        .map(|frames| frames.max(0) as u64 * page_size);
                    let large = result.as_ref().is_ok_and(|bytes| *bytes > WAL_RESTART_BYTES);
                    if let (true, Some(inner)) = (large, store.upgrade()) {
                        result = restart_wal(&inner, schema).map(|()| 0);
                    }
                    if let Err(error) = result {
                        tracing::warn!(%error, "WAL checkpoint failed; retrying");
                    }
                }
            }
        })
        .map(|_| ())
        .map_err(|e| StoreError::Other(format!("cannot start the checkpoint thread: {e}")))
}

fn json_path(field: &str) -> String {
    format!("$.{field}")
}

fn bind(scalar: &Scalar, params: &mut Vec<SqlValue>) -> String {
    params.push(match scalar {
        Scalar::Null => SqlValue::Null,
        Scalar::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Scalar::Int(i) => SqlValue::Integer(*i),
        Scalar::Float(f) => SqlValue::Real(*f),
        Scalar::Str(s) => SqlValue::Text(s.clone()),
    });
    format!("?{}", params.len())
}

/// Compiles a filter to a SQL condition; values become bound parameters, never SQL text.
fn compile(filter: &Filter, params: &mut Vec<SqlValue>) -> String {
    let cmp = |field: &str, op: &str, value: &Scalar, params: &mut Vec<SqlValue>| {
        format!("{} {op} {}", field_expr(field), bind(value, params))
    };
    match filter {
        Filter::All => "1".to_owned(),
        Filter::Eq(field, Scalar::Null) => format!("{} IS NULL", field_expr(field)),
        Filter::Eq(field, value) => cmp(field, "=", value, params),
        Filter::Ne(field, Scalar::Null) => format!("{} IS NOT NULL", field_expr(field)),
        Filter::Ne(field, value) => {
            let expr = field_expr(field);
            format!("({expr} IS NULL OR {expr} != {})", bind(value, params))
        }
        Filter::In(_, values) if values.is_empty() => "0".to_owned(),
        Filter::In(field, values) => {
            let placeholders: Vec<String> = values.iter().map(|v| bind(v, params)).collect();
            format!("{} IN ({})", field_expr(field), placeholders.join(", "))
        }
        Filter::ContainsCi(field, needle) => {
            let placeholder = bind(&Scalar::Str(needle.to_lowercase()), params);
            format!("instr(ttscm_lower({}), {placeholder}) > 0", field_expr(field))
        }
        Filter::Gt(field, value) => cmp(field, ">", value, params),
        Filter::Gte(field, value) => cmp(field, ">=", value, params),
        Filter::Lt(field, value) => cmp(field, "<", value, params),
        Filter::Lte(field, value) => cmp(field, "<=", value, params),
        Filter::And(all) if all.is_empty() => "1".to_owned(),
        Filter::Or(any) if any.is_empty() => "0".to_owned(),
        Filter::And(all) => {
            let parts: Vec<String> = all.iter().map(|f| compile(f, params)).collect();
            format!("({})", parts.join(" AND "))
        }
        Filter::Or(any) => {
            let parts: Vec<String> = any.iter().map(|f| compile(f, params)).collect();
            format!("({})", parts.join(" OR "))
        }
    }
}

fn map_error(error: rusqlite::Error) -> StoreError {
    match error.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => StoreError::Conflict,
        Some(
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::CannotOpen | ErrorCode::DiskFull,
        ) => StoreError::Unavailable(error.to_string()),
        _ => other(error),
    }
}

fn other(error: rusqlite::Error) -> StoreError {
    StoreError::Other(error.to_string())
}
