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
//!   skipped (on open, a line is checked by its start — `{"id":"…","seq":N,` as the appender
//!   writes it, else by parsing it whole — and its end; all of it when it is read). Nothing is
//!   ever rewritten: the journal appends, reads and nothing else.
//! - **Durability**: as the SQLite file's (`synchronous=NORMAL`): an append survives a crash of
//!   the process at once; a background thread `fdatasync`s the file every 100 ms, so a power
//!   loss may drop the last appends, never a line in the middle.
//! - **Index**: sparse, in memory, built by reading the file on open (about 0.2 s per million
//!   entries from the page cache; `bench/README.md`): the byte offset of every [`BLOCK`]-th line
//!   and the highest sequence number before it — 16 bytes per 1,024 entries, 160 KB at 10 M —
//!   plus the place of the last entry. An entry is found by a binary search for its block and a
//!   scan of at most [`BLOCK`] lines. Lines are in sequence order in the file, except where a
//!   copier stored an entry after a later one (an entry copied out of order from the
//!   write-ahead stream, which a single copier never does): such *late* entries are kept by
//!   sequence number in a map of their own, so memory grows only with them.
//! - **Reads**: by sequence (a range, for verification and export: one block's scan to the
//!   start, then the file in order) and the newest-first page with the filters
//!   `ListAuditEvents` has. Without filters, a page reads its own entries (found by their line
//!   number, counted back from a block's end); with filters, the file is read backwards, and a
//!   line that cannot match an equality filter (its JSON lacks the value's JSON text) is
//!   skipped unparsed.
//! - **Processes**: appends hold an exclusive `flock` on `<file>.lock`; before each, the journal
//!   indexes what another handle (process) appended, so a `ttscm` command beside the server
//!   cannot fork the chain: a sequence number already taken is a conflict, as the unique `seq`
//!   index is on MongoDB. A file replaced or shortened under it (an operator's edit) is indexed
//!   again from the start.
//! - **Platforms**: Unix (positioned reads and inode identity through `std::os::unix`), as the
//!   rest of TTSCM's targets are (Linux containers; macOS for development).

use std::collections::{BTreeMap, HashSet};
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

/// Lines per block of the sparse index: a lookup scans at most this many lines (about 450 KB
/// of reveals), and the index holds 16 bytes per this many entries.
pub const BLOCK: u64 = 1024;

/// Bytes read per call when indexing the file or scanning it forwards.
const READ_BLOCK: usize = 1 << 20;

/// Bytes read per call when reading entries by sequence (a verification batch is 1,000).
const SCAN_READ: usize = 256 << 10;

/// Bytes read per call when looking for one entry in its block.
const LOOKUP_READ: usize = 64 << 10;

/// The first read when reading the file backwards (a page of the newest entries needs only a
/// few KB); each further read doubles, up to [`READ_BLOCK`].
const FIRST_BACK_READ: usize = 16 << 10;

/// How often the background thread syncs appends to the disk.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// One line's place in the file (without its `\n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place {
    offset: u64,
    len: u32,
}

/// Where a block of [`BLOCK`] lines starts.
#[derive(Debug, Clone, Copy)]
struct Mark {
    /// The byte offset of its first line.
    offset: u64,
    /// The highest sequence number of the lines before it (0 before the first block): every
    /// in-order entry of the block is above it, and every one of the blocks after it at or
    /// below the next block's.
    floor: u64,
}

/// The sparse index of the file's complete lines; see the module docs.
#[derive(Debug, Default)]
struct Index {
    /// The start of every [`BLOCK`]-th line.
    marks: Vec<Mark>,
    /// Lines (entries) indexed.
    lines: u64,
    /// The entry with the highest sequence number (always an in-order line).
    top: Option<(u64, Place)>,
    /// Entries stored after one with a higher sequence number, by sequence number.
    late: BTreeMap<u64, Place>,
}

impl Index {
    fn top_seq(&self) -> Option<u64> {
        self.top.map(|(seq, _)| seq)
    }

    /// Records the next line of the file: `seq`, at `place` (not stored before).
    fn push(&mut self, seq: u64, place: Place) {
        if self.lines.is_multiple_of(BLOCK) {
            self.marks.push(Mark {
                offset: place.offset,
                floor: self.top_seq().unwrap_or(0),
            });
        }
        self.lines += 1;
        match self.top {
            Some((top, _)) if seq <= top => {
                self.late.insert(seq, place);
            }
            _ => self.top = Some((seq, place)),
        }
    }

    /// The block an in-order entry `seq` is in, if stored.
    fn block_of(&self, seq: u64) -> usize {
        self.marks.partition_point(|m| m.floor < seq).saturating_sub(1)
    }

    /// Block `at`'s bytes, `end` being the end of the indexed lines.
    fn block(&self, at: usize, end: u64) -> (u64, u64) {
        let from = self.marks.get(at).map_or(end, |m| m.offset);
        let to = self.marks.get(at + 1).map_or(end, |m| m.offset);
        (from, to)
    }

    /// Where the scan for entry `seq` goes: `Ok` when the index alone knows (stored there or
    /// not at all), else the bytes of the block to scan.
    fn locate(&self, seq: u64, end: u64) -> Result<Option<Place>, (u64, u64)> {
        if let Some(place) = self.late.get(&seq) {
            return Ok(Some(*place));
        }
        match self.top {
            None => Ok(None),
            Some((top, place)) if seq >= top => Ok((seq == top).then_some(place)),
            Some(_) => Err(self.block(self.block_of(seq), end)),
        }
    }
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
    /// Where the entries are.
    index: Index,
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
                index: Index::default(),
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
            state.index = Index::default();
        }
        if len > state.end {
            self.index_from(state, len, repair)?;
        }
        Ok(())
    }

    /// Indexes the complete lines from `state.end` to `to`.
    fn index_from(&self, state: &mut State, to: u64, repair: bool) -> Result<(), StoreError> {
        let file = state.file.clone();
        let index = &mut state.index;
        let indexed = for_each_line(&file, state.end, to, READ_BLOCK, |offset, line| {
            self.index_line(index, &file, line, offset)?;
            Ok(true)
        });
        let end = match indexed {
            Ok(end) => end,
            Err(error) => {
                // Indexed again from the start next time, and reported again.
                state.end = 0;
                state.index = Index::default();
                return Err(error);
            }
        };
        state.end = end;
        if end < to && repair {
            tracing::warn!(
                journal = %self.path.display(),
                bytes = to - end,
                "cutting off an incomplete last line of the audit journal (a write interrupted by a crash)"
            );
            file.set_len(end)
                .map_err(|e| io("cannot cut the audit journal's torn tail", e))?;
        }
        Ok(())
    }

    fn index_line(&self, index: &mut Index, file: &File, line: &[u8], offset: u64) -> Result<(), StoreError> {
        let corrupt = |what: &str| {
            StoreError::Corrupt(format!(
                "{}: the line at byte {offset} {what}",
                self.path.display()
            ))
        };
        let seq = seq_of(line).ok_or_else(|| corrupt("is not an entry with an id and a seq"))?;
        let len = u32::try_from(line.len()).map_err(|_| corrupt("is too long"))?;
        if index.top_seq().is_some_and(|top| seq <= top) && find(index, file, offset, seq)?.is_some() {
            return Err(corrupt("repeats a sequence number"));
        }
        index.push(seq, Place { offset, len });
        Ok(())
    }

    /// Appends `entries` in one write, all or none: a sequence number already stored (or twice
    /// in the batch) is [`StoreError::Conflict`] and writes nothing.
    pub(crate) fn append(&self, entries: &[AuditEntryText]) -> Result<(), StoreError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let mut size = 0;
        for entry in entries {
            if entry.json.as_bytes().contains(&b'\n') {
                return Err(StoreError::Invalid("an audit entry is one line of JSON".into()));
            }
            if u32::try_from(entry.json.len()).is_err() {
                return Err(StoreError::Invalid("an audit entry is too long".into()));
            }
            size += entry.json.len() + 1;
        }
        let mut state = self.lock();
        let _held = self.hold()?;
        self.refresh(&mut state, true)?;
        // The usual batch follows the last entry in order: nothing to look up.
        let ascending = entries.windows(2).all(|pair| pair[0].seq < pair[1].seq);
        if !ascending || state.index.top_seq().is_some_and(|top| first.seq <= top) {
            let mut seen = HashSet::with_capacity(entries.len());
            for entry in entries {
                if !seen.insert(entry.seq) || find(&state.index, &state.file, state.end, entry.seq)?.is_some()
                {
                    return Err(StoreError::Conflict);
                }
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
            state.index.push(entry.seq, Place { offset, len });
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

    /// The indexed file as of now: the file, the end of its indexed lines, and what `pick`
    /// takes from the index (under the lock; the reading is done after it).
    fn view<T>(&self, pick: impl FnOnce(&Index, u64) -> T) -> Result<(Arc<File>, u64, T), StoreError> {
        let mut state = self.lock();
        self.refresh(&mut state, false)?;
        let picked = pick(&state.index, state.end);
        Ok((state.file.clone(), state.end, picked))
    }

    /// The text of the entry at `seq`, if there is one.
    pub(crate) fn line_at(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let (file, _, located) = self.view(|index, end| index.locate(seq, end))?;
        let place = match located {
            Ok(place) => place,
            Err((from, to)) => scan_for(&file, from, to, seq)?,
        };
        place.map(|place| read_place(&file, place)).transpose()
    }

    /// The text of the last entry (highest sequence number), if any.
    pub(crate) fn last_line(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let (file, _, top) = self.view(|index, _| index.top)?;
        top.map(|(_, place)| read_place(&file, place)).transpose()
    }

    /// The texts of at most `limit` entries from sequence number `from` on, in sequence order.
    pub(crate) fn read_from(&self, from: u64, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (file, end, (start, late)) = self.view(|index, _| {
            let late: Vec<(u64, Place)> = index
                .late
                .range(from..)
                .take(limit)
                .map(|(seq, place)| (*seq, *place))
                .collect();
            // In-order entries from `from` on are in its block or after it; none when the
            // highest is below it.
            let start = index.top_seq().filter(|top| *top >= from).map(|_| {
                let at = index.block_of(from);
                let mark = index.marks[at];
                (mark.offset, (at > 0).then_some(mark.floor))
            });
            (start, late)
        })?;
        let mut texts = Vec::new();
        let mut late = late.into_iter().peekable();
        if let Some((offset, floor)) = start {
            // The highest sequence number so far: a line at or below it is a late entry,
            // read from `late` in its place in the order.
            let mut highest = floor;
            for_each_line(&file, offset, end, SCAN_READ, |_, line| {
                match seq_of(line) {
                    Some(seq) if highest.is_some_and(|h| seq <= h) => return Ok(true),
                    Some(seq) => {
                        highest = Some(seq);
                        if seq < from {
                            return Ok(true);
                        }
                        while let Some((_, place)) = late.next_if(|(s, _)| *s < seq) {
                            if texts.len() == limit {
                                return Ok(false);
                            }
                            texts.push(read_place(&file, place)?);
                        }
                    }
                    // Edited since it was indexed: handed on for the caller to report, in the
                    // place of the entry after the one before it.
                    None if highest.is_some_and(|h| h.saturating_add(1) >= from) => {}
                    None => return Ok(true),
                }
                if texts.len() == limit {
                    return Ok(false);
                }
                texts.push(line.to_vec());
                Ok(texts.len() < limit)
            })?;
        }
        for (_, place) in late {
            if texts.len() == limit {
                break;
            }
            texts.push(read_place(&file, place)?);
        }
        Ok(texts)
    }

    /// A page of the entries `query` asks for, newest first, and how many match in all.
    /// Without filters (and without late entries), the page's lines alone are read; otherwise
    /// one pass over the file backwards counts the matches and keeps the page's.
    pub(crate) fn page(&self, query: &ListAuditEvents) -> Result<(Vec<AuditEntry>, u64), StoreError> {
        let skip = query.page.saturating_sub(1).saturating_mul(query.rpp);
        let wanted = skip..skip.saturating_add(query.rpp);
        let matcher = Matcher::new(query);
        let (file, end, (total, block, late)) = self.view(|index, end| {
            let total = index.lines;
            // The newest wanted entry's line number, and from where to count back to it.
            let block = (index.late.is_empty() && skip < total).then(|| {
                let newest = total - 1 - skip;
                let at = newest / BLOCK;
                let (_, to) = index.block(usize::try_from(at).unwrap_or(usize::MAX), end);
                let last = ((at + 1) * BLOCK).min(total) - 1;
                (to, last - newest)
            });
            let late: Vec<(u64, Place)> = index.late.iter().map(|(s, p)| (*s, *p)).collect();
            (total, block, late)
        })?;
        if matcher.is_all() {
            let count = usize::try_from(query.rpp.min(total.saturating_sub(skip))).unwrap_or(usize::MAX);
            let Some((to, mut newer)) = block.filter(|_| count > 0) else {
                if count == 0 {
                    return Ok((Vec::new(), total));
                }
                let mut page = Page::new(&matcher, wanted, true);
                scan_newest_first(&file, end, &late, |text| page.offer(text))?;
                return Ok((page.entries, total));
            };
            let mut entries = Vec::with_capacity(count);
            for_each_line_back(&file, 0, to, |_, line| {
                if newer > 0 {
                    newer -= 1;
                    return Ok(true);
                }
                entries.push(parse_line(line)?);
                Ok(entries.len() < count)
            })?;
            return Ok((entries, total));
        }
        let mut page = Page::new(&matcher, wanted, false);
        scan_newest_first(&file, end, &late, |text| page.offer(text))?;
        Ok((page.entries, page.total))
    }
}

/// Where entry `seq` is: from the index, or by scanning its block (`end`: the end of the
/// indexed lines).
fn find(index: &Index, file: &File, end: u64, seq: u64) -> Result<Option<Place>, StoreError> {
    match index.locate(seq, end) {
        Ok(place) => Ok(place),
        Err((from, to)) => scan_for(file, from, to, seq),
    }
}

/// The place of the line holding `seq` in `[from, to)`.
fn scan_for(file: &File, from: u64, to: u64, seq: u64) -> Result<Option<Place>, StoreError> {
    let mut found = None;
    for_each_line(file, from, to, LOOKUP_READ, |offset, line| {
        if seq_of(line) == Some(seq) {
            found = Some(Place {
                offset,
                len: line.len() as u32,
            });
            return Ok(false);
        }
        Ok(true)
    })?;
    Ok(found)
}

/// Hands every entry's text to `offer`, newest (highest sequence number) first, until it
/// answers false: the file backwards from `end`, the `late` entries (ascending) each in its
/// place by sequence number.
fn scan_newest_first(
    file: &File,
    end: u64,
    late: &[(u64, Place)],
    mut offer: impl FnMut(&[u8]) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let mut pending = late.iter().rev().peekable();
    let mut more = true;
    for_each_line_back(file, 0, end, |_, line| {
        if !late.is_empty() {
            let seq = seq_of(line).unwrap_or(0);
            if late.binary_search_by_key(&seq, |(s, _)| *s).is_ok() {
                return Ok(true);
            }
            while let Some((_, place)) = pending.next_if(|(s, _)| *s > seq) {
                if !offer(&read_place(file, *place)?)? {
                    more = false;
                    return Ok(false);
                }
            }
        }
        more = offer(line)?;
        Ok(more)
    })?;
    while more && let Some((_, place)) = pending.next() {
        more = offer(&read_place(file, *place)?)?;
    }
    Ok(())
}

/// A page being gathered from entries offered newest first.
struct Page<'m, 'q> {
    matcher: &'m Matcher<'q>,
    /// The ranks (among the matches, newest first) the page holds.
    wanted: std::ops::Range<u64>,
    /// Whether to stop once the page is full (the total is known without counting).
    stop_when_full: bool,
    entries: Vec<AuditEntry>,
    total: u64,
}

impl<'m, 'q> Page<'m, 'q> {
    fn new(matcher: &'m Matcher<'q>, wanted: std::ops::Range<u64>, stop_when_full: bool) -> Self {
        Self {
            matcher,
            wanted,
            stop_when_full,
            entries: Vec::new(),
            total: 0,
        }
    }

    /// Counts `text` if it matches (keeping it if on the page); false once done.
    fn offer(&mut self, text: &[u8]) -> Result<bool, StoreError> {
        if self.stop_when_full && self.matcher.is_all() && self.total < self.wanted.start {
            // Every entry matches: one before the page needs no parsing.
            self.total += 1;
            return Ok(true);
        }
        if !self.matcher.may_match(text) {
            return Ok(true);
        }
        let entry = parse_line(text)?;
        if self.matcher.matches(&entry) {
            if self.wanted.contains(&self.total) {
                self.entries.push(entry);
            }
            self.total += 1;
        }
        Ok(!(self.stop_when_full && self.total >= self.wanted.end))
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

/// The index of the first `\n` in `bytes`. Looks at 32 bytes at a time (a comparison the
/// compiler vectorizes), as `memchr` would, several times faster than a byte at a time.
fn find_newline(bytes: &[u8]) -> Option<usize> {
    let mut chunks = bytes.chunks_exact(32);
    let mut at = 0;
    for chunk in &mut chunks {
        if chunk.iter().fold(false, |any, &b| any | (b == b'\n')) {
            return chunk.iter().position(|&b| b == b'\n').map(|i| at + i);
        }
        at += 32;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| at + i)
}

/// The index of the last `\n` in `bytes`, as [`find_newline`] finds the first.
fn rfind_newline(bytes: &[u8]) -> Option<usize> {
    let mut chunks = bytes.rchunks_exact(32);
    let mut end = bytes.len();
    for chunk in &mut chunks {
        end -= 32;
        if chunk.iter().fold(false, |any, &b| any | (b == b'\n')) {
            return chunk.iter().rposition(|&b| b == b'\n').map(|i| end + i);
        }
    }
    chunks.remainder().iter().rposition(|&b| b == b'\n')
}

/// Calls `each` with every complete line of `file` in `[from, to)` (`from` a line's start) and
/// its offset, in order, reading `piece` bytes at a time, until it answers false. Answers the
/// offset after the last line it was given (bytes after the last `\n` are not a line).
fn for_each_line(
    file: &File,
    from: u64,
    to: u64,
    piece: usize,
    mut each: impl FnMut(u64, &[u8]) -> Result<bool, StoreError>,
) -> Result<u64, StoreError> {
    let span = usize::try_from(to.saturating_sub(from)).unwrap_or(usize::MAX);
    let mut buffer = vec![0u8; piece.min(span).max(1)];
    // The buffer holds the file's bytes `start..start + filled`.
    let (mut start, mut filled) = (from, 0usize);
    loop {
        let mut at = 0;
        while let Some(newline) = find_newline(&buffer[at..filled]) {
            let line = &buffer[at..at + newline];
            at += newline + 1;
            if !each(start + (at - newline - 1) as u64, line)? {
                return Ok(start + at as u64);
            }
        }
        buffer.copy_within(at..filled, 0);
        start += at as u64;
        filled -= at;
        let next = start + filled as u64;
        if next >= to {
            return Ok(start);
        }
        if filled == buffer.len() {
            // A line longer than the buffer.
            buffer.resize(buffer.len() * 2, 0);
        }
        let want = (buffer.len() - filled).min(usize::try_from(to - next).unwrap_or(usize::MAX));
        let got = file
            .read_at(&mut buffer[filled..filled + want], next)
            .map_err(|e| io("cannot read the audit journal", e))?;
        if got == 0 {
            return Ok(start);
        }
        filled += got;
    }
}

/// Calls `each` with every line of `file` in `[from, to)` (`from` a line's start, `to` just
/// after a `\n`) and its offset, last first, until it answers false.
fn for_each_line_back(
    file: &File,
    from: u64,
    to: u64,
    mut each: impl FnMut(u64, &[u8]) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    // The file's bytes `lo..lo + buffer.len()`, not yet handed out; they end with a `\n`.
    let mut buffer: Vec<u8> = Vec::new();
    let mut lo = to;
    let mut piece = FIRST_BACK_READ;
    while lo > from {
        let start = lo.saturating_sub(piece as u64).max(from);
        let mut read = vec![0u8; usize::try_from(lo - start).unwrap_or(0)];
        file.read_exact_at(&mut read, start)
            .map_err(|e| io("cannot read the audit journal", e))?;
        read.extend_from_slice(&buffer);
        buffer = read;
        lo = start;
        piece = (piece * 2).min(READ_BLOCK);
        // Hand out the lines that start after a `\n` in the buffer (or at `from`).
        let mut end = buffer.len();
        while end > 0 {
            let line_start = match rfind_newline(&buffer[..end - 1]) {
                Some(newline) => newline + 1,
                None if lo == from => 0,
                None => break,
            };
            if !each(lo + line_start as u64, &buffer[line_start..end - 1])? {
                return Ok(());
            }
            end = line_start;
        }
        buffer.truncate(end);
    }
    Ok(())
}

fn read_place(file: &File, place: Place) -> Result<Vec<u8>, StoreError> {
    let mut text = vec![0u8; place.len as usize];
    file.read_exact_at(&mut text, place.offset)
        .map_err(|e| io("cannot read the audit journal", e))?;
    Ok(text)
}

/// The entry in `text`, stored at `seq`.
pub(crate) fn parse(text: &[u8], seq: u64) -> Result<AuditEntry, StoreError> {
    serde_json::from_slice(text)
        .map_err(|e| StoreError::Corrupt(format!("the audit entry at sequence {seq}: {e}")))
}

/// The entry in `text`, whatever its sequence number.
fn parse_line(text: &[u8]) -> Result<AuditEntry, StoreError> {
    parse(text, seq_of(text).unwrap_or(0))
}

/// The `seq` of the entry in `line`: read from its start when it starts as the appender writes
/// an entry (`{"id":"<id>","seq":<digits>,` … `}`), else from the whole line parsed.
pub(crate) fn seq_of(line: &[u8]) -> Option<u64> {
    fast_seq(line).or_else(|| keys(line).map(|(_, seq)| seq))
}

/// The `seq` of a line that starts `{"id":"<id without escapes>","seq":<digits>,` and ends
/// with `}`, the layout `NewAuditEntry` writes; `None` for any other line.
fn fast_seq(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(br#"{"id":""#)?;
    let quote = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    if rest[quote] != b'"' || !line.ends_with(b"}") {
        return None;
    }
    let number = rest[quote + 1..].strip_prefix(br#","seq":"#)?;
    let digits = number.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 || (digits > 1 && number[0] == b'0') {
        return None;
    }
    if !matches!(number.get(digits), Some(b',' | b'}')) {
        return None;
    }
    std::str::from_utf8(&number[..digits]).ok()?.parse().ok()
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
    use crate::audit::chain::NewAuditEntry;
    use ttscm_contract::PrincipalKind;
    use ttscm_contract::audit::{AuditActor, AuditTarget};

    /// Entry `seq` as stored: by actor `u<seq % 3>`, about target `c<seq % 5>`, at second
    /// `seq % 60`; `details` of `padding` bytes.
    fn text(seq: u64, padding: usize) -> AuditEntryText {
        NewAuditEntry::new(AuditEntry {
            id: format!("e{seq}"),
            seq: 0,
            at: format!("2026-01-01T00:{:02}:{:02}.000Z", seq / 60 % 60, seq % 60),
            action: "credential.revealed".into(),
            actor: AuditActor {
                id: format!("u{}", seq % 3),
                kind: PrincipalKind::User,
                name: "Zoë \"q\"".into(),
            },
            target: AuditTarget {
                kind: "credential".into(),
                id: format!("c{}", seq % 5),
            },
            credential_id: None,
            type_id: None,
            company_id: None,
            request_id: format!("r{seq}"),
            client_ip: None,
            details: (padding > 0).then(|| [("note".to_owned(), "x".repeat(padding))].into()),
            prev_hash: String::new(),
            hash: String::new(),
        })
        .seal(seq, super::super::GENESIS)
    }

    fn texts(seqs: impl IntoIterator<Item = u64>) -> Vec<AuditEntryText> {
        seqs.into_iter().map(|seq| text(seq, 0)).collect()
    }

    type IndexFigures = (u64, Vec<(u64, u64)>, Option<(u64, Place)>, Vec<(u64, Place)>);

    /// Which entries a filter keeps, by sequence number.
    type Keeps = Box<dyn Fn(u64) -> bool>;

    struct Fixture {
        dir: tempfile::TempDir,
        journal: Arc<Journal>,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("a temp dir");
            let journal = Journal::open(&dir.path().join("audit.jsonl")).expect("opens");
            Self { dir, journal }
        }

        fn path(&self) -> PathBuf {
            self.dir.path().join("audit.jsonl")
        }

        fn reopen(&mut self) {
            self.journal = Journal::open(&self.path()).expect("reopens");
        }

        /// Appends `seqs` in batches of `batch`.
        fn append(&self, seqs: impl IntoIterator<Item = u64>, batch: usize) {
            let all = texts(seqs);
            for chunk in all.chunks(batch) {
                self.journal.append(chunk).expect("appended");
            }
        }

        fn seqs_from(&self, from: u64, limit: usize) -> Vec<u64> {
            let lines = self.journal.read_from(from, limit).expect("read");
            lines.iter().map(|line| seq_of(line).expect("an entry")).collect()
        }

        fn seq_at(&self, seq: u64) -> Option<u64> {
            let line = self.journal.line_at(seq).expect("looked up")?;
            Some(parse_line(&line).expect("an entry").seq)
        }

        fn page(&self, query: ListAuditEvents) -> (Vec<u64>, u64) {
            let (entries, total) = self.journal.page(&query).expect("a page");
            (entries.iter().map(|e| e.seq).collect(), total)
        }

        /// The index's figures: lines, the marks (offset, floor), the top and the late entries.
        fn index(&self) -> IndexFigures {
            let state = self.journal.lock();
            let index = &state.index;
            (
                index.lines,
                index.marks.iter().map(|m| (m.offset, m.floor)).collect(),
                index.top,
                index.late.iter().map(|(s, p)| (*s, *p)).collect(),
            )
        }
    }

    fn page(page: u64, rpp: u64) -> ListAuditEvents {
        ListAuditEvents {
            page,
            rpp,
            ..ListAuditEvents::default()
        }
    }

    /// Every read agrees with the plain list of `stored` sequence numbers (ascending), looked
    /// at around the block boundaries, the ends, and the entries stored out of order (`late`).
    fn check_reads(fixture: &Fixture, stored: &[u64], late: &[u64]) {
        let count = stored.len() as u64;
        let last = stored.last().copied().unwrap_or(0);
        let near = |n: u64| [n.saturating_sub(1), n, n + 1];
        let mut seqs: Vec<u64> = [1, BLOCK, 2 * BLOCK, last].into_iter().flat_map(near).collect();
        seqs.extend(late);
        for seq in seqs {
            let expected = stored.binary_search(&seq).ok().map(|_| seq);
            assert_eq!(fixture.seq_at(seq), expected, "line_at({seq})");
        }
        let top = fixture
            .journal
            .last_line()
            .expect("read")
            .map(|l| seq_of(&l).expect("an entry"));
        assert_eq!(top, stored.last().copied());
        assert_eq!(fixture.seqs_from(0, usize::MAX), stored);
        for from in [1, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK, last]
            .into_iter()
            .chain(late.iter().copied())
        {
            let expected: Vec<u64> = stored.iter().copied().filter(|s| *s >= from).take(3).collect();
            assert_eq!(fixture.seqs_from(from, 3), expected, "read_from({from}, 3)");
        }
        let newest: Vec<u64> = stored.iter().rev().copied().collect();
        for rpp in [1, 25, BLOCK - 1, BLOCK + 1] {
            let pages = count.div_ceil(rpp);
            // The first pages, those around each block boundary (line numbers counted back
            // from the newest), the last ones and one past them.
            let mut numbers: Vec<u64> = [1, 2, pages - 1, pages, pages + 1].into();
            for boundary in [BLOCK, 2 * BLOCK].into_iter().filter(|b| *b < count) {
                let rank = count - boundary;
                numbers.extend(near(rank / rpp + 1));
            }
            for number in numbers.into_iter().filter(|n| *n >= 1) {
                let expected: Vec<u64> = newest
                    .iter()
                    .copied()
                    .skip(((number - 1) * rpp) as usize)
                    .take(rpp as usize)
                    .collect();
                assert_eq!(
                    fixture.page(page(number, rpp)),
                    (expected, count),
                    "page {number} of {rpp}"
                );
            }
        }
    }

    #[test]
    fn reads_are_exact_around_block_boundaries_and_after_reopening() {
        for count in [BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 1] {
            let mut fixture = Fixture::new();
            // Batches of 7: a batch's lines straddle the block boundaries.
            fixture.append(1..=count, 7);
            let stored: Vec<u64> = (1..=count).collect();
            check_reads(&fixture, &stored, &[]);
            let appended = fixture.index();
            assert_eq!(appended.1.len() as u64, count.div_ceil(BLOCK));
            fixture.reopen();
            assert_eq!(fixture.index(), appended, "indexed on open as appends did");
            check_reads(&fixture, &stored, &[]);
        }
    }

    #[test]
    fn memory_is_a_mark_per_block_whatever_the_entries() {
        let fixture = Fixture::new();
        fixture.append(1..=3 * BLOCK + 1, 500);
        let (lines, marks, _, late) = fixture.index();
        assert_eq!((lines, marks.len(), late.len()), (3 * BLOCK + 1, 4, 0));
        // Each mark is where its block's first line starts.
        let file = std::fs::read(fixture.path()).expect("read");
        for (n, (offset, floor)) in marks.into_iter().enumerate() {
            assert_eq!(floor, n as u64 * BLOCK);
            let start = &file[usize::try_from(offset).expect("small")..];
            assert!(start.starts_with(format!(r#"{{"id":"e{}","#, floor + 1).as_bytes()));
        }
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_appends_go_on_in_the_next_block() {
        let mut fixture = Fixture::new();
        fixture.append(1..=BLOCK, 100);
        let intact = std::fs::read(fixture.path()).expect("read");
        let torn = text(BLOCK + 1, 0).json;
        std::fs::write(
            fixture.path(),
            [&intact[..], &torn.as_bytes()[..torn.len() / 2]].concat(),
        )
        .expect("torn");
        // A reader indexes complete lines only, and leaves the tail to a writer.
        assert_eq!(fixture.seq_at(BLOCK), Some(BLOCK));
        fixture.reopen();
        assert_eq!(std::fs::read(fixture.path()).expect("read"), intact, "cut off");
        fixture.append([BLOCK + 1, BLOCK + 2], 2);
        let stored: Vec<u64> = (1..=BLOCK + 2).collect();
        check_reads(&fixture, &stored, &[]);
        assert_eq!(fixture.index().1.len(), 2);
    }

    #[test]
    fn entries_stored_out_of_order_are_read_in_sequence_order() {
        let mut fixture = Fixture::new();
        let missing = [10, BLOCK, BLOCK + 2];
        fixture.append((1..=2 * BLOCK + 5).filter(|s| !missing.contains(s)), 64);
        fixture.append([BLOCK + 2], 1);
        fixture.append([10, BLOCK], 2);
        let stored: Vec<u64> = (1..=2 * BLOCK + 5).collect();
        check_reads(&fixture, &stored, &missing);
        assert_eq!(fixture.index().3.len(), 3, "three late entries");
        let taken = fixture.journal.append(&texts([10]));
        assert!(matches!(taken, Err(StoreError::Conflict)), "{taken:?}");
        let taken = fixture.journal.append(&texts([BLOCK + 1]));
        assert!(matches!(taken, Err(StoreError::Conflict)), "{taken:?}");
        let twice = fixture.journal.append(&texts([3 * BLOCK, 3 * BLOCK]));
        assert!(matches!(twice, Err(StoreError::Conflict)), "{twice:?}");
        let indexed = fixture.index();
        fixture.reopen();
        assert_eq!(fixture.index(), indexed);
        check_reads(&fixture, &stored, &missing);
        let filtered = fixture.page(ListAuditEvents {
            actor: Some("u1".into()),
            ..page(1, 5)
        });
        let expected: Vec<u64> = stored.iter().rev().copied().filter(|s| s % 3 == 1).collect();
        assert_eq!(filtered, (expected[..5].to_vec(), expected.len() as u64));
    }

    #[test]
    fn a_file_repeating_a_sequence_number_is_refused_on_open() {
        let fixture = Fixture::new();
        fixture.append(1..=BLOCK + 3, 100);
        let mut file = OpenOptions::new()
            .append(true)
            .open(fixture.path())
            .expect("opens");
        writeln!(file, "{}", text(BLOCK - 1, 0).json).expect("written");
        drop(file);
        let refused = Journal::open(&fixture.path());
        assert!(
            matches!(&refused, Err(StoreError::Corrupt(why)) if why.contains("repeats")),
            "{refused:?}"
        );
    }

    #[test]
    fn filtered_pages_count_every_match_across_blocks() {
        let fixture = Fixture::new();
        let count = 3 * BLOCK + 7;
        fixture.append(1..=count, 1000);
        let newest: Vec<u64> = (1..=count).rev().collect();
        let some = |value: &str| Some(value.to_owned());
        let cases: [(ListAuditEvents, Keeps); 4] = [
            (
                ListAuditEvents {
                    actor: some("u2"),
                    ..page(3, 100)
                },
                Box::new(|s| s % 3 == 2),
            ),
            (
                ListAuditEvents {
                    actor: some("u0"),
                    target: some("c4"),
                    ..page(2, 30)
                },
                Box::new(|s| s % 3 == 0 && s % 5 == 4),
            ),
            (
                ListAuditEvents {
                    from: some("2026-01-01T00:10:00.000Z"),
                    to: some("2026-01-01T00:20:00.000Z"),
                    ..page(2, 250)
                },
                Box::new(|s| (600..1200).contains(&(s % 3600))),
            ),
            (
                ListAuditEvents {
                    target: some("c9"),
                    ..page(1, 10)
                },
                Box::new(|_| false),
            ),
        ];
        for (query, keeps) in cases {
            let matching: Vec<u64> = newest.iter().copied().filter(|s| keeps(*s)).collect();
            let skip = ((query.page - 1) * query.rpp) as usize;
            let expected: Vec<u64> = matching
                .iter()
                .copied()
                .skip(skip)
                .take(query.rpp as usize)
                .collect();
            assert_eq!(
                fixture.page(query.clone()),
                (expected, matching.len() as u64),
                "{query:?}"
            );
        }
    }

    #[test]
    fn lines_longer_than_a_read_are_read_whole_both_ways() {
        let mut fixture = Fixture::new();
        let big = 3 * FIRST_BACK_READ;
        let all: Vec<AuditEntryText> = (1..=5)
            .map(|seq| text(seq, if seq % 2 == 1 { big } else { 0 }))
            .collect();
        fixture.journal.append(&all).expect("appended");
        fixture.reopen();
        check_reads(&fixture, &[1, 2, 3, 4, 5], &[]);
        let (entries, _) = fixture.journal.page(&page(1, 5)).expect("a page");
        assert_eq!(entries[0].details.as_ref().map(|d| d["note"].len()), Some(big));
    }

    #[test]
    fn the_fast_seq_agrees_with_parsing_and_declines_other_layouts() {
        for line in [
            text(7, 0).json,
            r#"{"id":"a","seq":3}"#.to_owned(),
            r#"{"id":"a\"b","seq":12,"x":1}"#.to_owned(),
            r#"{"seq":4,"id":"a"}"#.to_owned(),
            r#"{"id":"a","seq":05,"x":1}"#.to_owned(),
            r#"{"id":"a","seq":99999999999999999999,"x":1}"#.to_owned(),
            r#"{"id":"a","seq":5,"x":1"#.to_owned(),
            "not json".to_owned(),
        ] {
            let fast = fast_seq(line.as_bytes());
            let parsed = keys(line.as_bytes()).map(|(_, seq)| seq);
            assert!(fast.is_none() || fast == parsed, "{line}: {fast:?} vs {parsed:?}");
            assert_eq!(seq_of(line.as_bytes()), fast.or(parsed), "{line}");
        }
        assert_eq!(fast_seq(text(7, 0).json.as_bytes()), Some(7));
        assert_eq!(fast_seq(br#"{"id":"a\"b","seq":12,"x":1}"#), None);
    }

    #[test]
    fn newlines_are_found_where_a_byte_at_a_time_finds_them() {
        for len in [0, 1, 31, 32, 33, 64, 100] {
            for at in 0..len {
                let mut bytes = vec![b'x'; len];
                bytes[at] = b'\n';
                assert_eq!(find_newline(&bytes), Some(at), "{len} {at}");
                assert_eq!(rfind_newline(&bytes), Some(at), "{len} {at}");
                if at + 1 < len {
                    bytes[len - 1] = b'\n';
                    assert_eq!(find_newline(&bytes), Some(at));
                    assert_eq!(rfind_newline(&bytes), Some(len - 1));
                }
            }
            assert_eq!(find_newline(&vec![b'x'; len]), None);
            assert_eq!(rfind_newline(&vec![b'x'; len]), None);
        }
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
