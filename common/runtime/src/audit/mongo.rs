//! The audit log kept in a MongoDB collection (`audit_entries`), through the store port's
//! MongoDB adapter: one document per entry, a unique index on `seq` (two writers cannot both
//! take the next place in the chain) and an index on `at` (time-range listing).

use serde_json::Value;
use ttscm_contract::audit::{AuditEntry, ListAuditEvents};

use super::COLLECTION;
use super::chain::AuditEntryText;
use crate::store::{Filter, FindOptions, IndexSpec, Order, Store, StoreError};

const INDEXES: &[IndexSpec] = &[
    IndexSpec {
        name: "seq_unique",
        fields: &["seq"],
        unique: true,
    },
    IndexSpec {
        name: "at",
        fields: &["at"],
        unique: false,
    },
];

/// The audit collection of a MongoDB store.
#[derive(Clone, Debug)]
pub struct MongoEntries {
    store: Store,
}

fn to_entry(document: crate::store::Document) -> Result<AuditEntry, StoreError> {
    serde_json::from_value(Value::Object(document))
        .map_err(|e| StoreError::Corrupt(format!("an audit entry: {e}")))
}

impl MongoEntries {
    /// The collection in `store`, its indexes declared. Refuses a store that is not MongoDB
    /// (the embedded store's audit log is the journal).
    pub async fn open(store: &Store) -> Result<Self, StoreError> {
        if !matches!(store, Store::Mongo(_)) {
            return Err(StoreError::Invalid(
                "the audit collection lives in MongoDB; the embedded store's audit log is a journal".into(),
            ));
        }
        store.ensure_indexes(COLLECTION, INDEXES).await?;
        Ok(Self { store: store.clone() })
    }

    /// Inserts `entries` in order, in one round trip. A taken `seq` (or id) is
    /// [`StoreError::Conflict`]; the entries before it stay stored.
    pub(crate) async fn append(&self, entries: &[AuditEntryText]) -> Result<(), StoreError> {
        let documents = entries
            .iter()
            .map(|entry| match serde_json::from_str(&entry.json) {
                Ok(Value::Object(document)) => Ok(document),
                _ => Err(StoreError::Invalid("an audit entry is a JSON object".into())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.store.insert_many(COLLECTION, documents).await
    }

    /// Whether `entry` (by id) is stored.
    pub(crate) async fn contains(&self, entry: &AuditEntryText) -> Result<bool, StoreError> {
        Ok(self.store.get(COLLECTION, &entry.id).await?.is_some())
    }

    /// The last entry, if any.
    pub(crate) async fn last(&self) -> Result<Option<AuditEntry>, StoreError> {
        self.store
            .find(
                COLLECTION,
                &FindOptions::new(Filter::All).sort("seq", Order::Desc).page(0, 1),
            )
            .await?
            .pop()
            .map(to_entry)
            .transpose()
    }

    /// At most `limit` entries from sequence number `from` on, in sequence order (one seek by
    /// the `seq` index, not an offset), each with its `seq` and the entry (`None` when the
    /// document is not an entry).
    pub(crate) async fn read_from(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Option<AuditEntry>)>, StoreError> {
        Ok(self
            .store
            .find(
                COLLECTION,
                &FindOptions::new(Filter::Gte(
                    "seq".into(),
                    i64::try_from(from).unwrap_or(i64::MAX).into(),
                ))
                .sort("seq", Order::Asc)
                .page(0, limit as u64),
            )
            .await?
            .into_iter()
            .map(|document| {
                let seq = document.get("seq").and_then(Value::as_u64).unwrap_or(0);
                (seq, to_entry(document).ok())
            })
            .collect())
    }

    /// A page of the entries `query` asks for, newest first, and how many match in all.
    pub(crate) async fn page(&self, query: &ListAuditEvents) -> Result<(Vec<AuditEntry>, u64), StoreError> {
        let mut all = Vec::new();
        if let Some(actor) = &query.actor {
            all.push(Filter::eq("actor.id", actor.as_str()));
        }
        if let Some(target) = &query.target {
            all.push(Filter::eq("target.id", target.as_str()));
        }
        if let Some(action) = &query.action {
            all.push(Filter::eq("action", action.as_str()));
        }
        if let Some(from) = &query.from {
            all.push(Filter::Gte("at".into(), from.as_str().into()));
        }
        if let Some(to) = &query.to {
            all.push(Filter::Lt("at".into(), to.as_str().into()));
        }
        let filter = Filter::And(all);
        let total = self.store.count(COLLECTION, &filter).await?;
        let skip = query.page.saturating_sub(1).saturating_mul(query.rpp);
        let entries = self
            .store
            .find(
                COLLECTION,
                &FindOptions::new(filter)
                    .sort("seq", Order::Desc)
                    .page(skip, query.rpp),
            )
            .await?
            .into_iter()
            .map(to_entry)
            .collect::<Result<_, _>>()?;
        Ok((entries, total))
    }
}
