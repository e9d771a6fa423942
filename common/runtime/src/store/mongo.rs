//! The MongoDB store adapter (official driver). Written for MongoDB 6+ and FerretDB 1.24: no
//! transactions, no `$lookup`, no projection on `find_one_and_*`, no TTL indexes. The document
//! `id` is stored as `_id`.

use std::time::Duration;

use futures_util::StreamExt;
use mongodb::bson::{self, Bson, Document as BsonDocument, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Database, IndexModel};
use serde_json::Value;

use super::{Document, Filter, FindOptions, IndexSpec, Order, Scalar, StoreError, Update};

/// How long an operation waits for a reachable server before failing as unavailable.
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// Hidden per-document revision, bumped by every update (see `update_one_claimed`).
const REVISION: &str = "_rev";
/// Collection of update claims (see `update_one_claimed`).
const CLAIMS: &str = "ttscm_claims";
/// How long an update waits for another update of the same document.
const CLAIM_WAIT: Duration = Duration::from_secs(2);
/// How many documents of a many-document update are updated at a time.
const UPDATE_MANY_CONCURRENCY: usize = 16;
/// After how long a claim counts as left behind by a crashed updater.
const CLAIM_STALE_AFTER: Duration = Duration::from_secs(10);

/// A MongoDB database handle; clones share the connection pool.
#[derive(Clone, Debug)]
pub struct MongoStore {
    database: Database,
}

impl MongoStore {
    /// Connects lazily to `uri` and uses `database`.
    pub async fn connect(uri: &str, database: &str) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|e| StoreError::Invalid(format!("bad MongoDB URI: {e}")))?;
        options.server_selection_timeout = Some(SERVER_SELECTION_TIMEOUT);
        options.connect_timeout = Some(SERVER_SELECTION_TIMEOUT);
        options.app_name = Some("ttscm".into());
        let client = Client::with_options(options).map_err(map_error)?;
        Ok(Self {
            database: client.database(database),
        })
    }

    fn collection(&self, name: &str) -> mongodb::Collection<BsonDocument> {
        self.database.collection(name)
    }

    pub(super) async fn ensure_indexes(
        &self,
        collection: &str,
        indexes: &[IndexSpec],
    ) -> Result<(), StoreError> {
        for index in indexes {
            let mut keys = BsonDocument::new();
            for field in index.fields {
                keys.insert(mongo_field(field), 1);
            }
            let options = IndexOptions::builder()
                .name(index.name.to_owned())
                .unique(index.unique)
                .build();
            self.collection(collection)
                .create_index(IndexModel::builder().keys(keys).options(options).build())
                .await
                .map_err(map_error)?;
        }
        Ok(())
    }

    pub(super) async fn insert(&self, collection: &str, document: Document) -> Result<(), StoreError> {
        self.collection(collection)
            .insert_one(to_bson_document(document)?)
            .await
            .map(|_| ())
            .map_err(map_error)
    }

    /// Inserts `documents` in one ordered `insert` command: one round trip for the batch (a
    /// writer may be holding something up meanwhile, e.g. the audit log's head); the server
    /// stops at the first failure, and the documents before it stay.
    pub(super) async fn insert_many(
        &self,
        collection: &str,
        documents: Vec<Document>,
    ) -> Result<(), StoreError> {
        let documents = documents
            .into_iter()
            .map(to_bson_document)
            .collect::<Result<Vec<_>, _>>()?;
        if documents.is_empty() {
            return Ok(());
        }
        self.collection(collection)
            .insert_many(documents)
            .ordered(true)
            .await
            .map(|_| ())
            .map_err(map_error)
    }

    pub(super) async fn find(
        &self,
        collection: &str,
        options: &FindOptions,
    ) -> Result<Vec<Document>, StoreError> {
        let mut sort = BsonDocument::new();
        for (field, order) in &options.sort {
            sort.insert(mongo_field(field), if *order == Order::Asc { 1 } else { -1 });
        }
        let coll = self.collection(collection);
        let mut action = coll.find(compile(&options.filter)).skip(options.skip);
        if !sort.is_empty() {
            action = action.sort(sort);
        }
        if let Some(limit) = options.limit {
            action = action.limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        let mut cursor = action.await.map_err(map_error)?;
        let mut documents = Vec::new();
        while cursor.advance().await.map_err(map_error)? {
            let raw = cursor
                .deserialize_current()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            documents.push(from_bson_document(raw)?);
        }
        Ok(documents)
    }

    pub(super) async fn count(&self, collection: &str, filter: &Filter) -> Result<u64, StoreError> {
        self.collection(collection)
            .count_documents(compile(filter))
            .await
            .map_err(map_error)
    }

    /// See [`super::Store::backfill_many`]: one `update_many`, no claims.
    pub(super) async fn backfill_many(
        &self,
        collection: &str,
        filter: &Filter,
        update: &Update,
    ) -> Result<u64, StoreError> {
        let Some(mut changes) = changes_of(update)? else {
            return self.count(collection, filter).await;
        };
        changes.insert("$inc", doc! { REVISION: 1i64 });
        self.collection(collection)
            .update_many(compile(filter), changes)
            .await
            .map(|r| r.matched_count)
            .map_err(map_error)
    }

    pub(super) async fn update(
        &self,
        collection: &str,
        filter: &Filter,
        update: &Update,
        many: bool,
    ) -> Result<u64, StoreError> {
        let Some(changes) = changes_of(update)? else {
            return self
                .count(collection, filter)
                .await
                .map(|n| if many { n } else { n.min(1) });
        };
        if many {
            return self.update_many_claimed(collection, filter, changes).await;
        }
        self.update_one_claimed(collection, compile(filter), changes)
            .await
            .map(u64::from)
    }

    /// A many-document update that loses no concurrent change on FerretDB either: the matching
    /// documents and their revisions are read once, then each is written as
    /// [`Self::update_one_claimed`] writes, under the same claims (`UPDATE_MANY_CONCURRENCY` at a
    /// time); one changed since the read is read again with the filter.
    ///
    /// A plain `update_many` on FerretDB 1.24 reads each document and writes it back whole, so a
    /// claimed single-document update landing in between is undone (or undoes this one; the
    /// store contract suite catches it). Per-document atomicity is all MongoDB promises too; a
    /// document that starts matching after the read is not updated, as on MongoDB.
    async fn update_many_claimed(
        &self,
        collection: &str,
        filter: &Filter,
        changes: BsonDocument,
    ) -> Result<u64, StoreError> {
        let base = compile(filter);
        let mut found = Vec::new();
        let mut cursor = self
            .collection(collection)
            .find(base.clone())
            .projection(doc! { "_id": 1, REVISION: 1 })
            .await
            .map_err(map_error)?;
        while cursor.advance().await.map_err(map_error)? {
            let document = cursor
                .deserialize_current()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            found.push(revision_of(&document));
        }
        let base = &base;
        let changes = &changes;
        let outcomes: Vec<Result<bool, StoreError>> = futures_util::stream::iter(found)
            .map(|(id, revision)| async move {
                if self.write_claimed(collection, &id, revision, changes).await? {
                    return Ok(true);
                }
                // Changed since the read: the filter decides again, as for one document.
                let mut one = base.clone();
                let one = if one.contains_key("_id") {
                    doc! { "$and": [{ "_id": id }, one] }
                } else {
                    one.insert("_id", id);
                    one
                };
                self.update_one_claimed(collection, one, changes.clone()).await
            })
            .buffer_unordered(UPDATE_MANY_CONCURRENCY)
            .collect()
            .await;
        let mut updated = 0;
        for outcome in outcomes {
            updated += u64::from(outcome?);
        }
        Ok(updated)
    }

    /// A conditional single-document update that is atomic on FerretDB too.
    ///
    /// FerretDB 1.24 evaluates `update`/`findAndModify` as read-then-write, so two racing
    /// conditional updates can both match (the store contract suite catches this). Every
    /// document carries a hidden revision (`_rev`): an updater reads the document the filter
    /// matches, then writes it under a claim on `(document, revision)` only if it is still at
    /// that revision ([`Self::write_claimed`]); otherwise it reads again.
    async fn update_one_claimed(
        &self,
        collection: &str,
        filter: BsonDocument,
        changes: BsonDocument,
    ) -> Result<bool, StoreError> {
        let coll = self.collection(collection);
        loop {
            let Some(current) = coll.find_one(filter.clone()).await.map_err(map_error)? else {
                return Ok(false);
            };
            let (id, revision) = revision_of(&current);
            if self.write_claimed(collection, &id, revision, &changes).await? {
                return Ok(true);
            }
            // Changed between our read and our claim: read again, the filter may no longer match.
        }
    }

    /// Writes `changes` to document `id` if it is still at `revision`, bumping the revision;
    /// answers whether it was. The writer first claims `(document, revision)` by inserting a
    /// claim document with that id — an insert on a unique `_id` is atomic on every backend —
    /// so no other claimed writer can write the document meanwhile; then checks the revision,
    /// writes, and drops the claim. A claim older than [`CLAIM_STALE_AFTER`] belongs to a
    /// crashed writer and is broken; one held longer than [`CLAIM_WAIT`] is
    /// [`StoreError::Unavailable`].
    async fn write_claimed(
        &self,
        collection: &str,
        id: &Bson,
        revision: i64,
        changes: &BsonDocument,
    ) -> Result<bool, StoreError> {
        let coll = self.collection(collection);
        let claims = self.collection(CLAIMS);
        let claim_id = format!("{collection}/{id}/{revision}");
        let deadline = tokio::time::Instant::now() + CLAIM_WAIT;
        loop {
            let now = crate::clock::unix_now_millis();
            match claims
                .insert_one(doc! { "_id": &claim_id, "at": now })
                .await
                .map_err(map_error)
            {
                Ok(_) => break,
                Err(StoreError::Conflict) => {}
                Err(other) => return Err(other),
            }
            let stale = claims
                .find_one(doc! { "_id": &claim_id })
                .await
                .map_err(map_error)?
                .and_then(|c| c.get("at").and_then(Bson::as_i64))
                .is_some_and(|at| now - at > CLAIM_STALE_AFTER.as_millis() as i64);
            if stale {
                claims
                    .delete_one(doc! { "_id": &claim_id })
                    .await
                    .map_err(map_error)?;
            } else if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::Unavailable(
                    "a document stayed locked by another update".into(),
                ));
            } else {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        }
        // Under the claim, a document still at `revision` is the one that was read (every write
        // bumps the revision) and stays so until the claim is dropped.
        let unchanged = if revision == 0 {
            doc! { "_id": id, REVISION: { "$in": [Bson::Null, 0i64] } }
        } else {
            doc! { "_id": id, REVISION: revision }
        };
        let mut changes = changes.clone();
        let set = changes
            .entry("$set".to_owned())
            .or_insert_with(|| Bson::Document(BsonDocument::new()));
        if let Bson::Document(set) = set {
            set.insert(REVISION, revision + 1);
        }
        let written = coll
            .update_one(unchanged, changes)
            .await
            .map(|r| r.matched_count == 1)
            .map_err(map_error);
        claims
            .delete_one(doc! { "_id": &claim_id })
            .await
            .map_err(map_error)?;
        written
    }

    pub(super) async fn delete_many(&self, collection: &str, filter: &Filter) -> Result<u64, StoreError> {
        self.collection(collection)
            .delete_many(compile(filter))
            .await
            .map(|r| r.deleted_count)
            .map_err(map_error)
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.database
            .run_command(doc! { "ping": 1 })
            .await
            .map(|_| ())
            .map_err(map_error)
    }
}

/// The `$set`/`$unset` document of `update`; `None` when it changes nothing.
fn changes_of(update: &Update) -> Result<Option<BsonDocument>, StoreError> {
    let mut changes = BsonDocument::new();
    if !update.set.is_empty() {
        let mut set = BsonDocument::new();
        for (field, value) in &update.set {
            set.insert(mongo_field(field), to_bson(value)?);
        }
        changes.insert("$set", set);
    }
    if !update.unset.is_empty() {
        let mut unset = BsonDocument::new();
        for field in &update.unset {
            unset.insert(mongo_field(field), "");
        }
        changes.insert("$unset", unset);
    }
    Ok((!changes.is_empty()).then_some(changes))
}

/// A stored document's `_id` and revision (0 when it was never updated).
fn revision_of(document: &BsonDocument) -> (Bson, i64) {
    let id = document.get("_id").cloned().unwrap_or(Bson::Null);
    let revision = document.get(REVISION).and_then(Bson::as_i64).unwrap_or(0);
    (id, revision)
}

fn mongo_field(field: &str) -> &str {
    if field == "id" { "_id" } else { field }
}

fn scalar(value: &Scalar) -> Bson {
    match value {
        Scalar::Null => Bson::Null,
        Scalar::Bool(b) => Bson::Boolean(*b),
        Scalar::Int(i) => Bson::Int64(*i),
        Scalar::Float(f) => Bson::Double(*f),
        Scalar::Str(s) => Bson::String(s.clone()),
    }
}

/// Escapes every ASCII punctuation character, so the needle is literal in both PCRE (MongoDB)
/// and RE2 (FerretDB).
fn escape_regex(needle: &str) -> String {
    let mut out = String::with_capacity(needle.len() * 2);
    for c in needle.chars() {
        if c.is_ascii_punctuation() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Compiles a filter. Values are BSON scalars built here, never documents, so a user's text can
/// only ever be a value: `{"field": "$ne"}` compares with the string "$ne".
///
/// Equality is written in the plain form `{field: value}` (and conjunctions of it merged into one
/// document) rather than `{field: {$eq: value}}`: FerretDB 1.24 pushes only the plain form down
/// to SQLite — an `_id` lookup written with `$eq` scans and decodes every document (measured:
/// 35 ms instead of under 5 ms on 3,000 documents).
fn compile(filter: &Filter) -> BsonDocument {
    let op = |field: &str, op: &str, value: &Scalar| {
        let mut inner = BsonDocument::new();
        inner.insert(op, scalar(value));
        let mut outer = BsonDocument::new();
        outer.insert(mongo_field(field), inner);
        outer
    };
    match filter {
        Filter::All => BsonDocument::new(),
        Filter::Eq(field, value) => {
            let mut outer = BsonDocument::new();
            outer.insert(mongo_field(field), scalar(value));
            outer
        }
        Filter::Ne(field, value) => op(field, "$ne", value),
        Filter::Gt(field, value) => op(field, "$gt", value),
        Filter::Gte(field, value) => op(field, "$gte", value),
        Filter::Lt(field, value) => op(field, "$lt", value),
        Filter::Lte(field, value) => op(field, "$lte", value),
        Filter::In(field, values) if values.len() == 1 => {
            compile(&Filter::Eq(field.clone(), values[0].clone()))
        }
        Filter::In(field, values) => {
            let mut outer = BsonDocument::new();
            outer.insert(
                mongo_field(field),
                doc! { "$in": values.iter().map(scalar).collect::<Vec<_>>() },
            );
            outer
        }
        Filter::ContainsCi(field, needle) => {
            let mut outer = BsonDocument::new();
            outer.insert(
                mongo_field(field),
                doc! { "$regex": escape_regex(needle), "$options": "i" },
            );
            outer
        }
        Filter::And(all) if all.is_empty() => BsonDocument::new(),
        Filter::And(all) => {
            let parts: Vec<BsonDocument> = all.iter().map(compile).collect();
            // Merge into one document when no two parts constrain the same key.
            let mut merged = BsonDocument::new();
            let disjoint = parts.iter().all(|part| {
                part.iter().all(|(key, value)| {
                    !key.starts_with('$') && merged.insert(key.clone(), value.clone()).is_none()
                })
            });
            if disjoint {
                merged
            } else {
                doc! { "$and": parts }
            }
        }
        Filter::Or(any) if any.is_empty() => doc! { "_id": { "$in": Vec::<Bson>::new() } },
        Filter::Or(any) => doc! { "$or": any.iter().map(compile).collect::<Vec<_>>() },
    }
}

fn to_bson(value: &Value) -> Result<Bson, StoreError> {
    bson::serialize_to_bson(value).map_err(|e| StoreError::Invalid(e.to_string()))
}

fn to_bson_document(mut document: Document) -> Result<BsonDocument, StoreError> {
    let id = document.remove("id").unwrap_or(Value::Null);
    let mut out = BsonDocument::new();
    out.insert("_id", to_bson(&id)?);
    for (key, value) in document {
        out.insert(key, to_bson(&value)?);
    }
    Ok(out)
}

fn from_bson_document(mut raw: BsonDocument) -> Result<Document, StoreError> {
    let id = raw.remove("_id").unwrap_or(Bson::Null);
    raw.remove(REVISION);
    let mut out = Document::new();
    out.insert("id".into(), from_bson(id)?);
    for (key, value) in raw {
        out.insert(key, from_bson(value)?);
    }
    Ok(out)
}

fn from_bson(value: Bson) -> Result<Value, StoreError> {
    Ok(match value {
        Bson::Null => Value::Null,
        Bson::Boolean(b) => Value::Bool(b),
        Bson::Int32(i) => Value::from(i),
        Bson::Int64(i) => Value::from(i),
        Bson::Double(f) => Value::from(f),
        Bson::String(s) => Value::String(s),
        Bson::Array(items) => Value::Array(items.into_iter().map(from_bson).collect::<Result<_, _>>()?),
        Bson::Document(d) => {
            let mut map = Document::new();
            for (key, value) in d {
                map.insert(key, from_bson(value)?);
            }
            Value::Object(map)
        }
        other => return Err(StoreError::Corrupt(format!("unexpected BSON value {other:?}"))),
    })
}

fn map_error(error: mongodb::error::Error) -> StoreError {
    if let ErrorKind::Write(WriteFailure::WriteError(write)) = error.kind.as_ref()
        && write.code == 11000
    {
        return StoreError::Conflict;
    }
    // An ordered batch insert stops at its first failure: a duplicate key there is a conflict.
    if let ErrorKind::InsertMany(batch) = error.kind.as_ref()
        && batch
            .write_errors
            .as_ref()
            .is_some_and(|errors| errors.iter().any(|e| e.code == 11000))
    {
        return StoreError::Conflict;
    }
    // FerretDB 1.24 reports a unique violation during an update as an InternalError that
    // carries SQLite's message instead of code 11000.
    if let ErrorKind::Command(command) = error.kind.as_ref()
        && (command.code == 11000 || command.message.contains("UNIQUE constraint failed"))
    {
        return StoreError::Conflict;
    }
    match error.kind.as_ref() {
        ErrorKind::ServerSelection { .. } | ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } => {
            StoreError::Unavailable(error.to_string())
        }
        _ => StoreError::Other(error.to_string()),
    }
}
