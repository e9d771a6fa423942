//! The store port: the document operations services need, over two adapters — [`mongo`]
//! (production, the official driver; must also work on FerretDB 1.24) and [`sqlite`] (the embedded
//! default, one file).
//!
//! Documents are JSON objects with a string `id`. Queries use the small typed [`Filter`] model,
//! never raw BSON or SQL from callers, so user input can only ever be a *value*: an operator
//! injection like `{"$ne": …}` is impossible by construction.
//!
//! Rules both adapters follow (and the contract suite checks):
//! - Fields named in filters, sorts, indexes and updates are code constants: dot-separated
//!   identifiers; anything else is [`StoreError::Invalid`].
//! - Fields in a unique index must be present on every document (MongoDB treats a missing
//!   field as `null` and lets only one document lack it; SQLite would let many).
//! - Case-insensitive matching ([`Filter::ContainsCi`]) takes the needle literally.

pub mod mongo;
pub mod sqlite;

use serde_json::{Map, Value};

/// A stored document: a JSON object whose `id` is a string.
pub type Document = Map<String, Value>;

/// The string at `key` of a document, or `""` when absent or not a string.
pub fn text(document: &Document, key: &str) -> String {
    document
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Whether a document's `expiresAt` (ISO-8601) has passed; a document without a readable one
/// counts as expired.
pub fn is_expired(document: &Document) -> bool {
    document
        .get("expiresAt")
        .and_then(Value::as_str)
        .and_then(crate::clock::parse_iso)
        .is_none_or(|at| at <= time::OffsetDateTime::now_utc())
}

/// The strings in the array at `key` of a document (non-strings skipped; empty when absent).
pub fn texts(document: &Document, key: &str) -> Vec<String> {
    document
        .get(key)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A value a filter compares with.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// JSON null (also matches a missing field).
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
}

impl From<&str> for Scalar {
    fn from(value: &str) -> Self {
        Scalar::Str(value.to_owned())
    }
}
impl From<String> for Scalar {
    fn from(value: String) -> Self {
        Scalar::Str(value)
    }
}
impl From<&String> for Scalar {
    fn from(value: &String) -> Self {
        Scalar::Str(value.clone())
    }
}
impl From<i64> for Scalar {
    fn from(value: i64) -> Self {
        Scalar::Int(value)
    }
}
impl From<bool> for Scalar {
    fn from(value: bool) -> Self {
        Scalar::Bool(value)
    }
}

impl Scalar {
    /// The scalar as JSON.
    pub fn to_json(&self) -> Value {
        match self {
            Scalar::Null => Value::Null,
            Scalar::Bool(b) => Value::Bool(*b),
            Scalar::Int(i) => Value::from(*i),
            Scalar::Float(f) => Value::from(*f),
            Scalar::Str(s) => Value::String(s.clone()),
        }
    }
}

/// A query over documents.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Every document.
    All,
    /// `field == value`.
    Eq(String, Scalar),
    /// `field != value` (a missing field counts as different).
    Ne(String, Scalar),
    /// `field` is one of the values.
    In(String, Vec<Scalar>),
    /// `field` (a string) contains the needle, ignoring case; the needle is literal text.
    ContainsCi(String, String),
    /// `field > value`.
    Gt(String, Scalar),
    /// `field >= value`.
    Gte(String, Scalar),
    /// `field < value`.
    Lt(String, Scalar),
    /// `field <= value`.
    Lte(String, Scalar),
    /// All of the filters.
    And(Vec<Filter>),
    /// Any of the filters.
    Or(Vec<Filter>),
}

impl Filter {
    /// `field == value`.
    pub fn eq(field: &str, value: impl Into<Scalar>) -> Self {
        Filter::Eq(field.to_owned(), value.into())
    }

    /// `id == id`.
    pub fn id(id: &str) -> Self {
        Filter::eq("id", id)
    }

    /// `field` contains `needle`, ignoring case.
    pub fn contains_ci(field: &str, needle: &str) -> Self {
        Filter::ContainsCi(field.to_owned(), needle.to_owned())
    }

    /// `field` is one of `values`.
    pub fn is_in(field: &str, values: impl IntoIterator<Item = impl Into<Scalar>>) -> Self {
        Filter::In(field.to_owned(), values.into_iter().map(Into::into).collect())
    }

    /// Every field named in the filter, for validation.
    fn fields<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Filter::All => {}
            Filter::Eq(f, _)
            | Filter::Ne(f, _)
            | Filter::In(f, _)
            | Filter::ContainsCi(f, _)
            | Filter::Gt(f, _)
            | Filter::Gte(f, _)
            | Filter::Lt(f, _)
            | Filter::Lte(f, _) => out.push(f),
            Filter::And(all) | Filter::Or(all) => all.iter().for_each(|f| f.fields(out)),
        }
    }
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Smallest first.
    Asc,
    /// Largest first.
    Desc,
}

/// How many documents match in all, when a page read from offset `skip` with at most `limit`
/// documents tells it: a page that is not full, and not past the end, holds every match from
/// its offset on. `None`: count them (a full page, or one past the end). Lists use it to skip
/// the count, which on FerretDB decodes every matching document as the page's read does.
pub fn total_from_page(skip: u64, limit: u64, found: u64) -> Option<u64> {
    (found < limit && (found > 0 || skip == 0)).then_some(skip + found)
}

/// What to find and how to page it.
#[derive(Debug, Clone, PartialEq)]
pub struct FindOptions {
    /// Which documents.
    pub filter: Filter,
    /// Sort keys, most significant first.
    pub sort: Vec<(String, Order)>,
    /// How many to skip.
    pub skip: u64,
    /// How many at most.
    pub limit: Option<u64>,
}

impl FindOptions {
    /// Every document matching `filter`, unsorted.
    pub fn new(filter: Filter) -> Self {
        Self {
            filter,
            sort: Vec::new(),
            skip: 0,
            limit: None,
        }
    }

    /// Adds a sort key.
    pub fn sort(mut self, field: &str, order: Order) -> Self {
        self.sort.push((field.to_owned(), order));
        self
    }

    /// Pages the result.
    pub fn page(mut self, skip: u64, limit: u64) -> Self {
        self.skip = skip;
        self.limit = Some(limit);
        self
    }
}

/// A partial update: fields to set and fields to remove.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Update {
    /// Top-level or dotted fields to set.
    pub set: Vec<(String, Value)>,
    /// Fields to remove.
    pub unset: Vec<String>,
}

impl Update {
    /// Sets `field` to `value`.
    pub fn set(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.set.push((field.to_owned(), value.into()));
        self
    }

    /// Removes `field`.
    pub fn unset(mut self, field: &str) -> Self {
        self.unset.push(field.to_owned());
        self
    }
}

/// What [`Store::insert_many_as`] needs to know of a document without reading its JSON.
#[derive(Debug, Clone, Copy)]
pub struct DocumentKeys<'a> {
    /// Its `id` field.
    pub id: &'a str,
    /// The document as JSON text, when the caller holds it already: the store takes it instead
    /// of serializing the document. It must be what serializing the document gives (a JSON
    /// object); the embedded store stores it as it is.
    pub json: Option<&'a str>,
}

impl<'a> DocumentKeys<'a> {
    /// A document known by its id alone.
    pub fn id(id: &'a str) -> Self {
        Self { id, json: None }
    }
}

/// An index to declare at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    /// Index name, unique per collection.
    pub name: &'static str,
    /// Indexed fields, ascending.
    pub fields: &'static [&'static str],
    /// Whether two documents may share the indexed values.
    pub unique: bool,
}

/// Errors callers handle differently.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A unique index (or the id) already holds the value.
    #[error("unique constraint violated")]
    Conflict,
    /// The store cannot be reached now; retrying later may work.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The query itself is invalid (a bug in the caller).
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// A stored document could not be read back.
    #[error("corrupt document: {0}")]
    Corrupt(String),
    /// Any other store failure.
    #[error("store error: {0}")]
    Other(String),
}

/// A handle on the store; cheap to clone.
#[derive(Clone, Debug)]
pub enum Store {
    /// MongoDB (or FerretDB).
    Mongo(mongo::MongoStore),
    /// The embedded SQLite file.
    Sqlite(sqlite::SqliteStore),
}

macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Store::Mongo($store) => $call.await,
            Store::Sqlite($store) => $call,
        }
    };
}

impl Store {
    /// Declares indexes on a collection (idempotent).
    pub async fn ensure_indexes(&self, collection: &str, indexes: &[IndexSpec]) -> Result<(), StoreError> {
        check_collection(collection)?;
        for index in indexes {
            index.fields.iter().try_for_each(|f| check_field(f))?;
        }
        dispatch!(self, s => s.ensure_indexes(collection, indexes))
    }

    /// Declares `collection` an *append log* — documents inserted often, read oldest first and
    /// deleted once handled (an outbox) — and its indexes. The embedded store keeps such a
    /// collection in its second file (`<name>-log.sqlite3`), so the appends do not churn the
    /// main file's page cache; MongoDB treats it as [`Self::ensure_indexes`] does. Declare it
    /// before any other use of the collection in the process.
    pub async fn ensure_append_log(&self, collection: &str, indexes: &[IndexSpec]) -> Result<(), StoreError> {
        check_collection(collection)?;
        for index in indexes {
            index.fields.iter().try_for_each(|f| check_field(f))?;
        }
        match self {
            Store::Mongo(s) => s.ensure_indexes(collection, indexes).await,
            Store::Sqlite(s) => s.ensure_append_log(collection, indexes),
        }
    }

    /// Inserts a document; a duplicate id or unique value is [`StoreError::Conflict`].
    pub async fn insert(&self, collection: &str, document: Document) -> Result<(), StoreError> {
        check_collection(collection)?;
        if !document.get("id").is_some_and(Value::is_string) {
            return Err(StoreError::Invalid("documents need a string id".into()));
        }
        dispatch!(self, s => s.insert(collection, document))
    }

    /// Inserts documents in order. SQLite: all or nothing, in one transaction (one commit for
    /// the batch). MongoDB: one ordered `insert` command (one round trip), which stops at the
    /// first failure (earlier ones stay).
    pub async fn insert_many(&self, collection: &str, documents: Vec<Document>) -> Result<(), StoreError> {
        check_collection(collection)?;
        if documents
            .iter()
            .any(|d| !d.get("id").is_some_and(Value::is_string))
        {
            return Err(StoreError::Invalid("documents need a string id".into()));
        }
        match self {
            Store::Mongo(s) => s.insert_many(collection, documents).await,
            Store::Sqlite(s) => s.insert_many(collection, documents),
        }
    }

    /// Inserts typed documents in order, as [`Self::insert_many`] does, without building a
    /// [`Document`] for each first when the store takes JSON text (SQLite). `keys` names what
    /// the store needs to know of each document without reading its JSON.
    pub async fn insert_many_as<T: serde::Serialize>(
        &self,
        collection: &str,
        documents: &[T],
        keys: impl Fn(&T) -> DocumentKeys<'_>,
    ) -> Result<(), StoreError> {
        let invalid = |e: serde_json::Error| StoreError::Invalid(e.to_string());
        match self {
            Store::Mongo(_) => {
                let documents = documents
                    .iter()
                    .map(|d| {
                        let value = match keys(d).json {
                            Some(text) => serde_json::from_str(text).map_err(invalid)?,
                            None => serde_json::to_value(d).map_err(invalid)?,
                        };
                        match value {
                            Value::Object(map) => Ok(map),
                            _ => Err(StoreError::Invalid("documents are objects".into())),
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                self.insert_many(collection, documents).await
            }
            Store::Sqlite(s) => {
                check_collection(collection)?;
                let rows = documents
                    .iter()
                    .map(|d| {
                        let keys = keys(d);
                        let text = match keys.json {
                            Some(text) => text.to_owned(),
                            None => serde_json::to_string(d).map_err(invalid)?,
                        };
                        if keys.id.is_empty() || !text.starts_with('{') {
                            return Err(StoreError::Invalid(
                                "documents are objects with a string id".into(),
                            ));
                        }
                        Ok(sqlite::Row {
                            id: keys.id.to_owned(),
                            doc: text,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                s.insert_rows(collection, rows)
            }
        }
    }

    /// A number that moves after the store changed, for caches of what other processes may
    /// write: on SQLite it moves within 100 ms of any commit to the main file, by this process
    /// or another (`ttscm` commands run beside the server); on MongoDB it never moves (other
    /// replicas announce their writes on the bus instead).
    pub fn change_epoch(&self) -> u64 {
        match self {
            Store::Sqlite(s) => s.change_epoch(),
            Store::Mongo(_) => 0,
        }
    }

    /// The document with `id`.
    pub async fn get(&self, collection: &str, id: &str) -> Result<Option<Document>, StoreError> {
        Ok(self
            .find(collection, &FindOptions::new(Filter::id(id)).page(0, 1))
            .await?
            .pop())
    }

    /// The first document matching `filter`.
    pub async fn find_one(&self, collection: &str, filter: Filter) -> Result<Option<Document>, StoreError> {
        Ok(self
            .find(collection, &FindOptions::new(filter).page(0, 1))
            .await?
            .pop())
    }

    /// The documents matching, sorted and paged.
    pub async fn find(&self, collection: &str, options: &FindOptions) -> Result<Vec<Document>, StoreError> {
        check_collection(collection)?;
        check_filter(&options.filter)?;
        options.sort.iter().try_for_each(|(f, _)| check_field(f))?;
        dispatch!(self, s => s.find(collection, options))
    }

    /// How many documents match.
    pub async fn count(&self, collection: &str, filter: &Filter) -> Result<u64, StoreError> {
        check_collection(collection)?;
        check_filter(filter)?;
        dispatch!(self, s => s.count(collection, filter))
    }

    /// Updates the first document matching `filter`; answers whether one matched. The match and
    /// the write are one atomic step, so two racing conditional updates cannot both win.
    pub async fn update_one(
        &self,
        collection: &str,
        filter: &Filter,
        update: &Update,
    ) -> Result<bool, StoreError> {
        check_update_request(collection, filter, update)?;
        dispatch!(self, s => s.update(collection, filter, update, false)).map(|n| n > 0)
    }

    /// Updates every document matching `filter`; answers how many matched.
    pub async fn update_many(
        &self,
        collection: &str,
        filter: &Filter,
        update: &Update,
    ) -> Result<u64, StoreError> {
        check_update_request(collection, filter, update)?;
        dispatch!(self, s => s.update(collection, filter, update, true))
    }

    /// [`Self::update_many`] in one bulk write, for documents nobody else updates (an
    /// append-only log given a new field). On MongoDB it skips the per-document claims that
    /// keep concurrent updates from undoing each other on FerretDB, so a racing update of one
    /// of these documents could be lost; the embedded store is atomic either way.
    pub async fn backfill_many(
        &self,
        collection: &str,
        filter: &Filter,
        update: &Update,
    ) -> Result<u64, StoreError> {
        check_update_request(collection, filter, update)?;
        match self {
            Store::Mongo(s) => s.backfill_many(collection, filter, update).await,
            Store::Sqlite(s) => s.update(collection, filter, update, true),
        }
    }

    /// Deletes the document with `id`; answers whether it existed.
    pub async fn delete(&self, collection: &str, id: &str) -> Result<bool, StoreError> {
        self.delete_many(collection, &Filter::id(id)).await.map(|n| n > 0)
    }

    /// Deletes every document matching `filter`; answers how many.
    pub async fn delete_many(&self, collection: &str, filter: &Filter) -> Result<u64, StoreError> {
        check_collection(collection)?;
        check_filter(filter)?;
        dispatch!(self, s => s.delete_many(collection, filter))
    }

    /// Checks that the store answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.ping())
    }

    /// Which adapter this is, for logs and readiness reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Mongo(_) => "mongodb",
            Store::Sqlite(_) => "sqlite",
        }
    }
}

fn check_collection(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!("bad collection name '{name}'")))
    }
}

/// Field paths are code constants: dot-separated identifiers.
fn check_field(field: &str) -> Result<(), StoreError> {
    let ok = !field.is_empty()
        && field.split('.').all(|segment| {
            segment
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && segment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!("bad field path '{field}'")))
    }
}

fn check_filter(filter: &Filter) -> Result<(), StoreError> {
    let mut fields = Vec::new();
    filter.fields(&mut fields);
    fields.into_iter().try_for_each(check_field)
}

/// The checks every update makes on its collection, filter and changes.
fn check_update_request(collection: &str, filter: &Filter, update: &Update) -> Result<(), StoreError> {
    check_collection(collection)?;
    check_filter(filter)?;
    check_update(update)
}

fn check_update(update: &Update) -> Result<(), StoreError> {
    for field in update
        .set
        .iter()
        .map(|(f, _)| f.as_str())
        .chain(update.unset.iter().map(String::as_str))
    {
        check_field(field)?;
        if field == "id" {
            return Err(StoreError::Invalid("the id cannot change".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::total_from_page;

    #[test]
    fn only_a_page_not_full_and_not_past_the_end_tells_the_total() {
        assert_eq!(total_from_page(0, 10, 0), Some(0), "an empty list");
        assert_eq!(total_from_page(0, 10, 7), Some(7));
        assert_eq!(total_from_page(20, 10, 3), Some(23), "a part-filled last page");
        assert_eq!(total_from_page(20, 10, 10), None, "a full page: more may follow");
        assert_eq!(
            total_from_page(30, 10, 0),
            None,
            "past the end: how far is unknown"
        );
    }
}
