//! The audit log kept in a MongoDB collection (`audit_entries`), through the store port's
//! MongoDB adapter: one document per entry, a unique index on `seq` (two writers cannot both
//! take the next place in the chain), an index on `at` (time-range listing), indexes on
//! `actor.id` and `target.id` each with `seq` (the filtered pages, newest first) and, in each
//! entry, its **block** — `seq / 1024` — indexed with `seq`.
//!
//! Why blocks: every read the log needs in sequence order (the head, a verification batch, an
//! export batch, the newest page) is an *equality* on `block` plus a filter and sort over at
//! most 1,024 documents. A MongoDB-wire store serves an equality from its index or at least
//! filters it in its own engine (FerretDB 1.x pushes equality down to SQLite/PostgreSQL but
//! sorts and range-filters every document in Go: a read sorted by `seq` over a million entries
//! did not answer within minutes there, one block answers in about a second on its PostgreSQL
//! backend). Sequence numbers are dense (the chain has no holes), so the blocks from the first
//! to the head's are all filled. Each insert raises the stored head (`audit_layout`, id
//! `head`: the highest `seq` stored); the head is read from there and the blocks after it
//! (a writer stopped between its insert and the raise); without one (an older collection, a
//! lost document) it is found by probing blocks. A read meeting an empty block before the
//! stored head goes on at the next filled block — so a deleted block is a gap the chain check
//! reports, not a quiet end of the log.
//!
//! Entries stored before blocks existed have no `block`: a collection without the layout's
//! marker (`audit_layout`, id `blocks`) is read by `seq` as before while a background task gives
//! every entry its block, then writes the marker; a process reading by `seq` looks for the
//! marker before each read and switches. A new (empty) collection gets the marker at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde_json::Value;
use ttscm_contract::audit::{AuditEntry, ListAuditEvents};

use super::COLLECTION;
use super::chain::AuditEntryText;
use crate::store::{Filter, FindOptions, IndexSpec, Order, Store, StoreError, Update};

/// Entries per block: entry `seq` is in block `seq / BLOCK`.
pub const BLOCK: u64 = 1024;
/// The field holding an entry's block.
pub const BLOCK_FIELD: &str = "block";
/// The collection holding the layout's marker.
const LAYOUT: &str = "audit_layout";
/// The marker's id: every stored entry has its block.
const BLOCKS_MARKER: &str = "blocks";
/// The id of the document holding the highest `seq` stored (raised after each insert).
const HEAD: &str = "head";

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
    IndexSpec {
        name: "block_seq",
        fields: &[BLOCK_FIELD, "seq"],
        unique: false,
    },
    // The filtered pages (`actor`, `target`), newest first: on MongoDB an equality and a sort
    // served by one index rather than a scan of the whole log.
    IndexSpec {
        name: "actor_seq",
        fields: &["actor.id", "seq"],
        unique: false,
    },
    IndexSpec {
        name: "target_seq",
        fields: &["target.id", "seq"],
        unique: false,
    },
];

/// The block of the entry at `seq`.
pub fn block_of(seq: u64) -> i64 {
    i64::try_from(seq / BLOCK).unwrap_or(i64::MAX)
}

/// The audit collection of a MongoDB store.
#[derive(Clone, Debug)]
pub struct MongoEntries {
    store: Store,
    /// Whether every stored entry has its block (the marker is stored): reads go by block.
    blocks: Arc<AtomicBool>,
    /// The highest block this process has seen filled (where finding the head starts).
    last_block: Arc<AtomicU64>,
}

fn to_entry(document: crate::store::Document) -> Result<AuditEntry, StoreError> {
    serde_json::from_value(Value::Object(document))
        .map_err(|e| StoreError::Corrupt(format!("an audit entry: {e}")))
}

fn seq_of(document: &crate::store::Document) -> u64 {
    document.get("seq").and_then(Value::as_u64).unwrap_or(0)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl MongoEntries {
    /// The collection in `store`, its indexes declared. Refuses a store that is not MongoDB
    /// (the embedded store's audit log is the journal). A collection of entries without blocks
    /// is given them in the background (see the module docs).
    pub async fn open(store: &Store) -> Result<Self, StoreError> {
        if !matches!(store, Store::Mongo(_)) {
            return Err(StoreError::Invalid(
                "the audit collection lives in MongoDB; the embedded store's audit log is a journal".into(),
            ));
        }
        store.ensure_indexes(COLLECTION, INDEXES).await?;
        let entries = Self {
            store: store.clone(),
            blocks: Arc::new(AtomicBool::new(false)),
            last_block: Arc::new(AtomicU64::new(0)),
        };
        if !entries.marked().await? {
            if store.find_one(COLLECTION, Filter::All).await?.is_none() {
                entries.mark().await?;
            } else {
                let migrating = entries.clone();
                tokio::spawn(async move {
                    if let Err(error) = migrating.give_blocks().await {
                        tracing::warn!(%error, "giving stored audit entries their blocks stopped; the next start goes on");
                    }
                });
            }
        }
        Ok(entries)
    }

    /// Whether reads go by block: the marker was seen, or is stored now.
    async fn marked(&self) -> Result<bool, StoreError> {
        if self.blocks.load(Ordering::Acquire) {
            return Ok(true);
        }
        let marked = self.store.get(LAYOUT, BLOCKS_MARKER).await?.is_some();
        if marked {
            self.blocks.store(true, Ordering::Release);
        }
        Ok(marked)
    }

    async fn mark(&self) -> Result<(), StoreError> {
        let mut marker = crate::store::Document::new();
        marker.insert("id".into(), BLOCKS_MARKER.into());
        match self.store.insert(LAYOUT, marker).await {
            Ok(()) | Err(StoreError::Conflict) => {}
            Err(error) => return Err(error),
        }
        self.blocks.store(true, Ordering::Release);
        Ok(())
    }

    /// Gives every stored entry its block, in `seq` order, one update per block, then marks
    /// the layout. Idempotent: replicas doing it at once, or a restart half way, set the same
    /// values. Entries appended meanwhile are stored with their block.
    async fn give_blocks(&self) -> Result<(), StoreError> {
        tracing::info!("giving stored audit entries their blocks (once, after an upgrade)");
        let mut from = 0;
        loop {
            if self.marked().await? {
                return Ok(());
            }
            let batch = self.read_by_seq(from, BLOCK as usize).await?;
            let Some(&(last, _)) = batch.last() else { break };
            let (first_block, last_block) = (from / BLOCK, last / BLOCK);
            for block in first_block..=last_block {
                // Entries are never updated otherwise: one bulk write per block.
                self.store
                    .backfill_many(
                        COLLECTION,
                        &Filter::And(vec![
                            Filter::Gte("seq".into(), to_i64(block * BLOCK).into()),
                            Filter::Lt("seq".into(), to_i64((block + 1) * BLOCK).into()),
                        ]),
                        &Update::default().set(BLOCK_FIELD, to_i64(block)),
                    )
                    .await?;
            }
            from = (last_block + 1) * BLOCK;
        }
        self.mark().await?;
        // The head, found by probing the blocks (each update above covered a whole block).
        if let Some(head) = self.last().await? {
            self.raise_head(head.seq).await?;
        }
        tracing::info!("every stored audit entry has its block");
        Ok(())
    }

    /// Inserts `entries` in order, in one round trip, and raises the stored head (an error
    /// there is only logged: the entries are stored). A taken `seq` (or id) is
    /// [`StoreError::Conflict`]; the entries before it stay stored.
    pub(crate) async fn append(&self, entries: &[AuditEntryText]) -> Result<(), StoreError> {
        self.insert(entries).await?;
        if let Some(last) = entries.iter().map(|e| e.seq).max() {
            self.stored_through(last).await;
        }
        Ok(())
    }

    /// [`Self::append`] without raising the stored head.
    pub(crate) async fn insert(&self, entries: &[AuditEntryText]) -> Result<(), StoreError> {
        let documents = entries
            .iter()
            .map(|entry| match serde_json::from_str(&entry.json) {
                Ok(Value::Object(mut document)) => {
                    document.insert(BLOCK_FIELD.into(), block_of(entry.seq).into());
                    Ok(document)
                }
                _ => Err(StoreError::Invalid("an audit entry is a JSON object".into())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.store.insert_many(COLLECTION, documents).await
    }

    /// Records that every entry up to `seq` is stored: raises the stored head, which an
    /// unfiltered page counts from; an error is logged. A writer stopped between its insert and
    /// this leaves the head behind; the next append, the redelivered copy (which raises it
    /// before its message is acknowledged) or [`Self::last`] raises it.
    async fn stored_through(&self, seq: u64) {
        if let Err(error) = self.raise_head(seq).await {
            // The entries are stored; the head is found from the blocks meanwhile.
            tracing::warn!(%error, "the audit store's head was not raised");
        }
    }

    /// Raises the stored head to `seq` (never lowers it: one conditional update, or an insert
    /// for the first entry; concurrent writers cannot lower each other's).
    pub(crate) async fn raise_head(&self, seq: u64) -> Result<(), StoreError> {
        for _ in 0..2 {
            let raised = self
                .store
                .update_one(
                    LAYOUT,
                    &Filter::And(vec![
                        Filter::id(HEAD),
                        Filter::Lt("seq".into(), to_i64(seq).into()),
                    ]),
                    &Update::default().set("seq", to_i64(seq)),
                )
                .await?;
            if raised {
                return Ok(());
            }
            let mut head = crate::store::Document::new();
            head.insert("id".into(), HEAD.into());
            head.insert("seq".into(), to_i64(seq).into());
            match self.store.insert(LAYOUT, head).await {
                // There is one: at `seq` or beyond, or raised by the second round.
                Err(StoreError::Conflict) => {}
                other => return other,
            }
        }
        Ok(())
    }

    /// The stored head's `seq`, if one is stored.
    async fn stored_head(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .store
            .get(LAYOUT, HEAD)
            .await?
            .and_then(|head| head.get("seq").and_then(Value::as_u64)))
    }

    /// Whether `entry` (by id) is stored.
    pub(crate) async fn contains(&self, entry: &AuditEntryText) -> Result<bool, StoreError> {
        Ok(self.store.get(COLLECTION, &entry.id).await?.is_some())
    }

    /// At most `limit` entries of block `block` from `seq` `from` on, in sequence order.
    async fn block(
        &self,
        block: u64,
        from: u64,
        limit: usize,
    ) -> Result<Vec<crate::store::Document>, StoreError> {
        let mut filter = vec![Filter::eq(BLOCK_FIELD, to_i64(block))];
        if from > block * BLOCK {
            filter.push(Filter::Gte("seq".into(), to_i64(from).into()));
        }
        self.store
            .find(
                COLLECTION,
                &FindOptions::new(Filter::And(filter))
                    .sort("seq", Order::Asc)
                    .page(0, limit as u64),
            )
            .await
    }

    async fn filled(&self, block: u64) -> Result<bool, StoreError> {
        Ok(!self.block(block, 0, 1).await?.is_empty())
    }

    /// The last entry, if any.
    pub(crate) async fn last(&self) -> Result<Option<AuditEntry>, StoreError> {
        if !self.marked().await? {
            return self
                .store
                .find(
                    COLLECTION,
                    &FindOptions::new(Filter::All).sort("seq", Order::Desc).page(0, 1),
                )
                .await?
                .pop()
                .map(to_entry)
                .transpose();
        }
        // The last filled block: from the stored head's (or the hint's) forward, doubling the
        // step, then halving; normally the stored head's block and one empty block after it.
        let stored_head = self.stored_head().await?;
        let mut low = match stored_head {
            Some(seq) => seq / BLOCK,
            None => self.last_block.load(Ordering::Relaxed),
        };
        let mut documents = self.block(low, 0, BLOCK as usize).await?;
        if documents.is_empty() && low > 0 {
            low = 0;
            documents = self.block(0, 0, BLOCK as usize).await?;
        }
        if documents.is_empty() {
            return Ok(None);
        }
        let read = low;
        let mut step = 1;
        while self.filled(low + step).await? {
            low += step;
            step *= 2;
        }
        let mut high = low + step;
        while high - low > 1 {
            let mid = low + (high - low) / 2;
            if self.filled(mid).await? {
                low = mid;
            } else {
                high = mid;
            }
        }
        self.last_block.fetch_max(low, Ordering::Relaxed);
        if low != read {
            documents = self.block(low, 0, BLOCK as usize).await?;
        }
        let last = documents
            .into_iter()
            .max_by_key(seq_of)
            .map(to_entry)
            .transpose()?;
        if let Some(last) = &last
            && stored_head.is_none_or(|head| head < last.seq)
        {
            // A writer stopped between its insert and raising the head: raised here.
            self.stored_through(last.seq).await;
        }
        Ok(last)
    }

    /// At most `limit` entries from sequence number `from` on, in sequence order, each with
    /// its `seq` and the entry (`None` when the document is not an entry): block by block,
    /// up to the first empty one.
    pub(crate) async fn read_from(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Option<AuditEntry>)>, StoreError> {
        if !self.marked().await? {
            return self.read_by_seq(from, limit).await;
        }
        let mut out = Vec::new();
        let mut block = from / BLOCK;
        let mut head = None;
        while out.len() < limit {
            let documents = self.block(block, from, limit - out.len()).await?;
            if documents.is_empty() {
                // The end, unless the stored head is further on: then a gap, read past.
                let head = match head {
                    Some(head) => head,
                    None => *head.insert(self.stored_head().await?.unwrap_or(0) / BLOCK),
                };
                if block < head {
                    block += 1;
                    continue;
                }
                break;
            }
            out.extend(
                documents
                    .into_iter()
                    .map(|document| (seq_of(&document), to_entry(document).ok())),
            );
            block += 1;
        }
        if let Some((seq, _)) = out.last() {
            self.last_block.fetch_max(seq / BLOCK, Ordering::Relaxed);
        }
        Ok(out)
    }

    /// [`Self::read_from`] by the `seq` index (one seek and a sorted read; entries without
    /// blocks).
    async fn read_by_seq(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Option<AuditEntry>)>, StoreError> {
        Ok(self
            .store
            .find(
                COLLECTION,
                &FindOptions::new(Filter::Gte("seq".into(), to_i64(from).into()))
                    .sort("seq", Order::Asc)
                    .page(0, limit as u64),
            )
            .await?
            .into_iter()
            .map(|document| (seq_of(&document), to_entry(document).ok()))
            .collect())
    }

    /// A page of the entries `query` asks for, newest first, and how many match in all.
    ///
    /// Unfiltered, by block: the total is the stored head's `seq` (sequence numbers are dense)
    /// and the page the entries of its `seq` range. Filtered, one query, and a count only when
    /// the page does not tell the total (a full page, or one past the end): served by the
    /// `actor`/`target`/`at` indexes on MongoDB; on FerretDB a scan (documented in the README).
    pub(crate) async fn page(&self, query: &ListAuditEvents) -> Result<(Vec<AuditEntry>, u64), StoreError> {
        let skip = query.page.saturating_sub(1).saturating_mul(query.rpp);
        let unfiltered = query.actor.is_none()
            && query.target.is_none()
            && query.action.is_none()
            && query.from.is_none()
            && query.to.is_none();
        if unfiltered && self.marked().await? {
            let total = match self.stored_head().await? {
                Some(seq) => seq,
                None => self.last().await?.map_or(0, |head| head.seq),
            };
            // Newest first: the page holds seq (total - skip - rpp, total - skip].
            let high = total.saturating_sub(skip);
            let low = high.saturating_sub(query.rpp).saturating_add(1);
            let mut entries = Vec::new();
            if high >= 1 && query.rpp > 0 {
                for block in low / BLOCK..=high / BLOCK {
                    for document in self.block(block, low, BLOCK as usize).await? {
                        if seq_of(&document) <= high {
                            entries.push(to_entry(document)?);
                        }
                    }
                }
            }
            entries.sort_by_key(|e| std::cmp::Reverse(e.seq));
            return Ok((entries, total));
        }
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
        let entries: Vec<AuditEntry> = self
            .store
            .find(
                COLLECTION,
                &FindOptions::new(filter.clone())
                    .sort("seq", Order::Desc)
                    .page(skip, query.rpp),
            )
            .await?
            .into_iter()
            .map(to_entry)
            .collect::<Result<_, _>>()?;
        // The usual filtered page (one credential's or one technician's entries) costs no count.
        let total = match crate::store::total_from_page(skip, query.rpp, entries.len() as u64) {
            Some(total) => total,
            None => self.store.count(COLLECTION, &filter).await?,
        };
        Ok((entries, total))
    }
}
