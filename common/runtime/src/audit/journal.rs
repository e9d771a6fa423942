//! The embedded audit log: a file of JSON lines, one chained entry per line, in append order.
//!
//! An append is one `write` of the batch's lines at the end of the file: no B-tree, no WAL
//! frame, no checkpoint copying it a second time, no stop-the-writer WAL restart (see
//! `bench/README.md` for what that bought the reveal).
//!
//! - **File**: one entry per line, compact JSON as the appender hashed it, `\n`-terminated;
//!   readable with `grep`/`jq`. A line is written whole or, after a crash mid-write, is a torn
//!   tail (bytes after the last `\n`), cut off when a writer next holds the file. A complete
//!   line that is not an entry with an `id` and a `seq` is corruption and is reported, never
//!   skipped. Nothing is ever rewritten: the journal appends, reads and nothing else.
//! - **Durability**: as the SQLite file's (`synchronous=NORMAL`): an append survives a crash of
//!   the process at once; a background thread `fdatasync`s the file every 100 ms, so a power
//!   loss may drop the last appends, never a line in the middle.
//! - **Index**: in memory, built by reading the file on open: per entry its sequence number,
//!   byte offset and length, sorted by sequence, in chunks of 65,536 (about 24 bytes per entry;
//!   growing it never moves more than a chunk, so an append is never held up by a resize of
//!   millions of entries).
//! - **Reads**: by sequence (a range, for verification and export) and the newest-first page
//!   with the filters `ListAuditEvents` has. A line that cannot match an equality filter (its
//!   JSON lacks the value's JSON text) is skipped unparsed.
//! - **Processes**: appends hold an exclusive `flock` on `<file>.lock`; before each, the journal
//!   indexes what another handle (process) appended, so a `ttscm` command beside the server
//!   cannot fork the chain: a sequence number already taken is a conflict, as the unique `seq`
//!   index is on MongoDB. A file replaced or shortened under it (an operator's edit) is indexed
//!   again from the start.
//! - **Platforms**: Unix (positioned reads and inode identity through `std::os::unix`), as the
//!   rest of TTSCM's targets are (Linux containers; macOS for development).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};
use ttscm_contract::audit::{AuditEntry, ListAuditEvents};

use super::chain::AuditEntryText;
use crate::store::StoreError;

/// Entries read per lock turn when scanning: the journal's lock is released between chunks, so
/// a long query never holds appends up for long.
const CHUNK: usize = 1024;

/// Bytes read per call when indexing the file.
const READ_BLOCK: usize = 1 << 20;

/// How often the background thread syncs appends to the disk.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// One entry's place in the file.
#[derive(Debug, Clone, Copy)]
struct Slot {
    seq: u64,
    offset: u64,
    len: u32,
}

/// The audit log in a file of JSON lines; see the module docs.
pub struct Journal {
    path: PathBuf,
    /// `<file>.lock`, held (`flock`) while appending or repairing.
    lock_file: File,
    state: Mutex<State>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

struct State {
    file: Arc<File>,
    /// Bytes of the file indexed; always just after a `\n` (or 0).
    end: u64,
    /// Every entry, sorted by sequence.
    slots: Slots,
    /// Whether appends were written since the last sync.
    unsynced: bool,
}

fn io(context: &str, error: std::io::Error) -> StoreError {
    match error.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            StoreError::Unavailable(format!("{context}: {error}"))
        }
        _ => StoreError::Other(format!("{context}: {error}")),
    }
}

fn open_file(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| io("cannot open the audit journal", e))
}

/// Holds the inter-process lock until dropped.
struct FileLock<'a>(&'a File);

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl Journal {
    /// Opens (creating if needed) the journal at `path`, indexes it (cutting off a torn tail),
    /// and starts the thread that syncs it every [`SYNC_INTERVAL`] while it is open.
    pub fn open(path: &Path) -> Result<Arc<Self>, StoreError> {
        let file = open_file(path)?;
        let lock_file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path.with_extension("lock"))
            .map_err(|e| io("cannot open the audit journal's lock file", e))?;
        let journal = Arc::new(Self {
            path: path.to_owned(),
            lock_file,
            state: Mutex::new(State {
                file: Arc::new(file),
                end: 0,
                slots: Slots::default(),
                unsynced: false,
            }),
        });
        {
            let mut state = journal.lock();
            let _held = journal.hold()?;
            journal.refresh(&mut state, true)?;
        }
        spawn_syncer(Arc::downgrade(&journal))?;
        Ok(journal)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Takes the inter-process lock (callers hold the state's mutex, so one thread at a time).
    fn hold(&self) -> Result<FileLock<'_>, StoreError> {
        self.lock_file
            .lock()
            .map_err(|e| io("cannot lock the audit journal", e))?;
        Ok(FileLock(&self.lock_file))
    }

    /// Brings the index up to the file: indexes lines another handle appended, or re-reads a
    /// file that was replaced or shortened. With `repair` (the caller holds the file lock, so
    /// nobody is mid-write), bytes after the last line are a torn write and are cut off.
    fn refresh(&self, state: &mut State, repair: bool) -> Result<(), StoreError> {
        let current = state
            .file
            .metadata()
            .map_err(|e| io("cannot stat the audit journal", e))?;
        let replaced = match std::fs::metadata(&self.path) {
            Ok(on_disk) => on_disk.ino() != current.ino() || on_disk.dev() != current.dev(),
            Err(_) => true,
        };
        if replaced {
            state.file = Arc::new(open_file(&self.path)?);
        }
        let len = state
            .file
            .metadata()
            .map_err(|e| io("cannot stat the audit journal", e))?
            .len();
        if replaced || len < state.end {
            state.end = 0;
            state.slots.clear();
        }
        if len > state.end {
            self.index_from(state, len, repair)?;
        }
        Ok(())
    }

    /// Indexes the complete lines from `state.end` to `to`.
    fn index_from(&self, state: &mut State, to: u64, repair: bool) -> Result<(), StoreError> {
        let file = state.file.clone();
        let mut offset = state.end;
        let mut carry: Vec<u8> = Vec::new();
        let mut block = vec![0u8; READ_BLOCK];
        loop {
            let at = offset + carry.len() as u64;
            let want = usize::try_from(to.saturating_sub(at))
                .unwrap_or(usize::MAX)
                .min(READ_BLOCK);
            if want == 0 {
                break;
            }
            let got = file
                .read_at(&mut block[..want], at)
                .map_err(|e| io("cannot read the audit journal", e))?;
            if got == 0 {
                break;
            }
            carry.extend_from_slice(&block[..got]);
            let mut start = 0;
            while let Some(newline) = carry[start..].iter().position(|&b| b == b'\n') {
                let line = &carry[start..start + newline];
                self.index_line(state, line, offset + start as u64)?;
                start += newline + 1;
            }
            offset += start as u64;
            carry.drain(..start);
        }
        state.end = offset;
        if offset < to && repair {
            tracing::warn!(
                journal = %self.path.display(),
                bytes = to - offset,
                "cutting off an incomplete last line of the audit journal (a write interrupted by a crash)"
            );
            file.set_len(offset)
                .map_err(|e| io("cannot cut the audit journal's torn tail", e))?;
        }
        Ok(())
    }

    fn index_line(&self, state: &mut State, line: &[u8], offset: u64) -> Result<(), StoreError> {
        let corrupt = |what: &str| {
            StoreError::Corrupt(format!(
                "{}: the line at byte {offset} {what}",
                self.path.display()
            ))
        };
        let (_, seq) = keys(line).ok_or_else(|| corrupt("is not an entry with an id and a seq"))?;
        let len = u32::try_from(line.len()).map_err(|_| corrupt("is too long"))?;
        match state.slots.binary_search(seq) {
            Ok(_) => Err(corrupt("repeats a sequence number")),
            Err(at) => {
                state.slots.insert(at, Slot { seq, offset, len });
                Ok(())
            }
        }
    }

    /// Appends `entries` in one write, all or none: a sequence number already stored (or twice
    /// in the batch) is [`StoreError::Conflict`] and writes nothing.
    pub(crate) fn append(&self, entries: &[AuditEntryText]) -> Result<(), StoreError> {
        let mut size = 0;
        for entry in entries {
            if entry.json.as_bytes().contains(&b'\n') {
                return Err(StoreError::Invalid("an audit entry is one line of JSON".into()));
            }
            size += entry.json.len() + 1;
        }
        let mut state = self.lock();
        let _held = self.hold()?;
        self.refresh(&mut state, true)?;
        for (i, entry) in entries.iter().enumerate() {
            if state.slots.binary_search(entry.seq).is_ok() || entries[..i].iter().any(|e| e.seq == entry.seq)
            {
                return Err(StoreError::Conflict);
            }
        }
        let mut buffer = Vec::with_capacity(size);
        for entry in entries {
            buffer.extend_from_slice(entry.json.as_bytes());
            buffer.push(b'\n');
        }
        if let Err(error) = (&*state.file).write_all(&buffer) {
            // All or none: cut off whatever part of the batch reached the file.
            let _ = state.file.set_len(state.end);
            return Err(io("cannot append to the audit journal", error));
        }
        let mut offset = state.end;
        for entry in entries {
            let len = entry.json.len() as u32;
            if let Err(at) = state.slots.binary_search(entry.seq) {
                state.slots.insert(
                    at,
                    Slot {
                        seq: entry.seq,
                        offset,
                        len,
                    },
                );
            }
            offset += u64::from(len) + 1;
        }
        state.end = offset;
        state.unsynced = true;
        Ok(())
    }

    /// Syncs appends to the disk, if any were made since the last sync.
    pub fn sync(&self) -> Result<(), StoreError> {
        let file = {
            let mut state = self.lock();
            if !state.unsynced {
                return Ok(());
            }
            state.unsynced = false;
            state.file.clone()
        };
        file.sync_data().map_err(|error| {
            self.lock().unsynced = true;
            io("cannot sync the audit journal", error)
        })
    }

    /// The text of the entry at `seq`, if there is one.
    pub(crate) fn line_at(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let found = {
            let mut state = self.lock();
            self.refresh(&mut state, false)?;
            state
                .slots
                .binary_search(seq)
                .ok()
                .map(|at| (state.file.clone(), state.slots.get(at)))
        };
        found.map(|(file, slot)| read_slot(&file, slot)).transpose()
    }

    /// The text of the last entry (highest sequence number), if any.
    pub(crate) fn last_line(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let found = {
            let mut state = self.lock();
            self.refresh(&mut state, false)?;
            state.slots.last().map(|slot| (state.file.clone(), slot))
        };
        found.map(|(file, slot)| read_slot(&file, slot)).transpose()
    }

    /// The texts of at most `limit` entries from sequence number `from` on, in sequence order.
    pub(crate) fn read_from(&self, from: u64, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let (file, slots) = {
            let mut state = self.lock();
            self.refresh(&mut state, false)?;
            let start = state.slots.partition_point(|s| s.seq < from);
            let until = state.slots.len().min(start.saturating_add(limit));
            (
                state.file.clone(),
                state.slots.range(start, until).collect::<Vec<_>>(),
            )
        };
        read_slots(&file, &slots)
    }

    /// A page of the entries `query` asks for, newest first, and how many match in all. One
    /// pass over the file (in chunks, newest first) counts the matches and keeps the page's;
    /// without filters, the page's entries alone are read.
    pub(crate) fn page(&self, query: &ListAuditEvents) -> Result<(Vec<AuditEntry>, u64), StoreError> {
        let skip = query.page.saturating_sub(1).saturating_mul(query.rpp);
        let wanted = skip..skip.saturating_add(query.rpp);
        let matcher = Matcher::new(query);
        if matcher.is_all() {
            let (file, slots, total) = {
                let mut state = self.lock();
                self.refresh(&mut state, false)?;
                let total = state.slots.len();
                let until = total.saturating_sub(usize::try_from(wanted.start).unwrap_or(usize::MAX));
                let from = until.saturating_sub(usize::try_from(query.rpp).unwrap_or(usize::MAX));
                let slots: Vec<Slot> = state.slots.range(from, until).rev().collect();
                (state.file.clone(), slots, total as u64)
            };
            let entries = read_slots(&file, &slots)?
                .iter()
                .zip(&slots)
                .map(|(text, slot)| parse(text, slot.seq))
                .collect::<Result<_, _>>()?;
            return Ok((entries, total));
        }
        let mut entries = Vec::new();
        let mut total = 0u64;
        let mut below: Option<u64> = None;
        loop {
            let (file, chunk) = {
                let mut state = self.lock();
                if below.is_none() {
                    self.refresh(&mut state, false)?;
                }
                let until = match below {
                    Some(seq) => state.slots.partition_point(|s| s.seq < seq),
                    None => state.slots.len(),
                };
                let from = until.saturating_sub(CHUNK);
                let chunk: Vec<Slot> = state.slots.range(from, until).rev().collect();
                (state.file.clone(), chunk)
            };
            let Some(last) = chunk.last() else {
                return Ok((entries, total));
            };
            below = Some(last.seq);
            for (slot, text) in chunk.iter().zip(read_slots(&file, &chunk)?) {
                if !matcher.may_match(&text) {
                    continue;
                }
                let entry = parse(&text, slot.seq)?;
                if matcher.matches(&entry) {
                    if wanted.contains(&total) {
                        entries.push(entry);
                    }
                    total += 1;
                }
            }
        }
    }
}

/// Syncs the journal every [`SYNC_INTERVAL`] until it is dropped, off the request path (as the
/// SQLite WAL is synced by its checkpointer).
fn spawn_syncer(journal: Weak<Journal>) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name("ttscm-audit-sync".into())
        .spawn(move || {
            loop {
                std::thread::sleep(SYNC_INTERVAL);
                let Some(journal) = journal.upgrade() else {
                    return;
                };
                if let Err(error) = journal.sync() {
                    tracing::warn!(%error, "syncing the audit journal failed; retrying");
                }
            }
        })
        .map(|_| ())
        .map_err(|e| StoreError::Other(format!("cannot start the audit journal's sync thread: {e}")))
}

/// The filters of a [`ListAuditEvents`], checked on a line's text first (cheap) and then on
/// the parsed entry (exact).
struct Matcher<'q> {
    query: &'q ListAuditEvents,
    /// The JSON text of each value an equality filter asks for: a line without one of them
    /// cannot match (lines are written by serde: compact, each string escaped one way).
    needles: Vec<String>,
}

impl<'q> Matcher<'q> {
    fn new(query: &'q ListAuditEvents) -> Self {
        let needles = [&query.actor, &query.target, &query.action]
            .into_iter()
            .flatten()
            .map(|value| serde_json::Value::String(value.clone()).to_string())
            .collect();
        Self { query, needles }
    }

    fn is_all(&self) -> bool {
        self.needles.is_empty() && self.query.from.is_none() && self.query.to.is_none()
    }

    fn may_match(&self, line: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(line) else {
            return true;
        };
        self.needles.iter().all(|needle| text.contains(needle.as_str()))
    }

    fn matches(&self, entry: &AuditEntry) -> bool {
        let q = self.query;
        q.actor.as_ref().is_none_or(|a| *a == entry.actor.id)
            && q.target.as_ref().is_none_or(|t| *t == entry.target.id)
            && q.action.as_ref().is_none_or(|a| *a == entry.action)
            && q.from
                .as_ref()
                .is_none_or(|from| entry.at.as_str() >= from.as_str())
            && q.to.as_ref().is_none_or(|to| entry.at.as_str() < to.as_str())
    }
}

/// Slots per chunk of [`Slots`] (1.5 MiB).
const SLOT_CHUNK: usize = 1 << 16;

/// Entries' places sorted by sequence, in chunks of [`SLOT_CHUNK`]: growing allocates one chunk,
/// where one vector of millions of slots would copy all of them each time it doubled, holding
/// appends up for milliseconds.
#[derive(Default)]
struct Slots {
    chunks: Vec<Vec<Slot>>,
    len: usize,
}

impl Slots {
    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, at: usize) -> Slot {
        self.chunks[at / SLOT_CHUNK][at % SLOT_CHUNK]
    }

    fn last(&self) -> Option<Slot> {
        self.len.checked_sub(1).map(|at| self.get(at))
    }

    fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
    }

    fn push(&mut self, slot: Slot) {
        if self.len.is_multiple_of(SLOT_CHUNK) {
            self.chunks.push(Vec::with_capacity(SLOT_CHUNK));
        }
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.push(slot);
            self.len += 1;
        }
    }

    /// Inserts at `at`. In the middle — an entry copied out of order from the write-ahead
    /// stream, which a single copier never does — every chunk is rebuilt.
    fn insert(&mut self, at: usize, slot: Slot) {
        if at == self.len {
            return self.push(slot);
        }
        let mut all: Vec<Slot> = self.chunks.iter().flatten().copied().collect();
        all.insert(at, slot);
        self.clear();
        all.into_iter().for_each(|s| self.push(s));
    }

    /// The first index whose slot does not satisfy `below` (which holds for a prefix).
    fn partition_point(&self, below: impl Fn(&Slot) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if below(&self.get(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    fn binary_search(&self, seq: u64) -> Result<usize, usize> {
        if self.last().is_none_or(|last| last.seq < seq) {
            return Err(self.len);
        }
        let at = self.partition_point(|s| s.seq < seq);
        if at < self.len && self.get(at).seq == seq {
            Ok(at)
        } else {
            Err(at)
        }
    }

    fn range(&self, from: usize, until: usize) -> impl DoubleEndedIterator<Item = Slot> + '_ {
        (from..until.max(from)).map(|at| self.get(at))
    }
}

fn read_slot(file: &File, slot: Slot) -> Result<Vec<u8>, StoreError> {
    let mut text = vec![0u8; slot.len as usize];
    file.read_exact_at(&mut text, slot.offset)
        .map_err(|e| io("cannot read the audit journal", e))?;
    Ok(text)
}

/// The texts of `slots`: one read when they lie close together in the file (the usual case:
/// neighbours in sequence were appended together), else one read each.
fn read_slots(file: &File, slots: &[Slot]) -> Result<Vec<Vec<u8>>, StoreError> {
    let (Some(start), Some(end)) = (
        slots.iter().map(|s| s.offset).min(),
        slots.iter().map(|s| s.offset + u64::from(s.len)).max(),
    ) else {
        return Ok(Vec::new());
    };
    let total: u64 = slots.iter().map(|s| u64::from(s.len) + 1).sum();
    if end - start > total.saturating_mul(2) + 4096 {
        return slots.iter().map(|s| read_slot(file, *s)).collect();
    }
    let mut span = vec![0u8; usize::try_from(end - start).unwrap_or(0)];
    file.read_exact_at(&mut span, start)
        .map_err(|e| io("cannot read the audit journal", e))?;
    Ok(slots
        .iter()
        .map(|s| {
            let from = (s.offset - start) as usize;
            span[from..from + s.len as usize].to_vec()
        })
        .collect())
}

/// The entry in `text`, stored at `seq`.
pub(crate) fn parse(text: &[u8], seq: u64) -> Result<AuditEntry, StoreError> {
    serde_json::from_slice(text)
        .map_err(|e| StoreError::Corrupt(format!("the audit entry at sequence {seq}: {e}")))
}

/// The top-level `id` (a string) and `seq` (an integer) of the JSON object `text`, read without
/// building the entry; `None` unless it is an object with both.
pub(crate) fn keys(text: &[u8]) -> Option<(String, u64)> {
    use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};

    struct Find;

    impl<'de> Visitor<'de> for Find {
        type Value = (Option<String>, Option<u64>);

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let (mut id, mut seq) = (None, None);
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if id.is_none() && key == "id" {
                    id = map.next_value::<serde_json::Value>()?.as_str().map(str::to_owned);
                } else if seq.is_none() && key == "seq" {
                    seq = map.next_value::<serde_json::Value>()?.as_u64();
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok((id, seq))
        }
    }

    impl<'de> DeserializeSeed<'de> for Find {
        type Value = (Option<String>, Option<u64>);

        fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_map(self)
        }
    }

    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let (id, seq) = Find.deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    Some((id?, seq?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_stay_ordered_and_exact_across_chunks() {
        let mut slots = Slots::default();
        let total = 2 * SLOT_CHUNK as u64 + 3;
        for seq in (1..=total).filter(|n| *n != 70_000) {
            slots.push(Slot {
                seq,
                offset: seq,
                len: 1,
            });
        }
        let at = slots.binary_search(70_000).expect_err("missing");
        slots.insert(
            at,
            Slot {
                seq: 70_000,
                offset: 0,
                len: 1,
            },
        );
        assert_eq!(slots.len() as u64, total);
        assert!(slots.range(0, slots.len()).map(|s| s.seq).eq(1..=total));
        assert_eq!(slots.binary_search(SLOT_CHUNK as u64 + 1), Ok(SLOT_CHUNK));
        assert_eq!(slots.partition_point(|s| s.seq <= 70_000), 70_000);
        assert_eq!(slots.last().map(|s| s.seq), Some(total));
        assert_eq!(slots.binary_search(total + 1), Err(slots.len()));
    }

    #[test]
    fn keys_are_read_from_an_object_and_junk_has_none() {
        assert_eq!(
            keys(br#"{"id":"a","x":{"seq":9},"seq":3}"#),
            Some(("a".to_owned(), 3))
        );
        assert_eq!(keys(br#"{"id":"a"}"#), None);
        assert_eq!(keys(b"[1]"), None);
        assert_eq!(keys(br#"{"id":"a","seq":1} trailing"#), None);
    }
}
