//! Log compaction (Kafka's `LogCleaner`): keeps the last value per key in a
//! log whose `cleanup_policy` includes compact (`__consumer_offsets` needs it).
//!
//! Runs on the shard that owns the log, inside [`Log::compact`], which the
//! broker calls periodically. It never blocks the shard for long: every step
//! is a bounded read or write through the io seam, so appends, flushes and
//! reads go on between them.
//!
//! # What is cleaned
//!
//! The *cleanable* segments are the sealed, finished segments from the log
//! start up to the first uncleanable offset: the active segment's base, or
//! the first segment holding a record newer than `min_compaction_lag_ms`.
//! The *dirty* ones are those the last pass did not cover (the cleaner
//! checkpoint below says which were). A pass runs when the dirty bytes are
//! at least `min_cleanable_dirty_ratio` of the cleanable bytes, or when a
//! cleaned segment holds tombstones older than `delete_retention_ms`.
//!
//! # A pass (Kafka's algorithm)
//!
//! 1. The offset map: key → offset of its latest record in the dirty
//!    segments, up to [`OFFSET_MAP_BYTES_MAX`] (a pass then ends at the
//!    segment that filled it, and the next pass goes on). Whole keys are kept,
//!    not Kafka's key hashes, so two keys never collide.
//! 2. Every cleanable segment up to the end of the map is rewritten, oldest
//!    first, keeping a record if it has a key, no later record of that key is
//!    in the map, and it is not a tombstone (null value) whose segment was
//!    first cleaned more than `delete_retention_ms` ago. A batch keeping all
//!    its records is copied byte for byte; one keeping some is rewritten
//!    with only those records, compressed again with its own codec as Kafka
//!    does ([`batch::with_records`]: same base offset, `last_offset_delta`,
//!    timestamps, producer id, epoch and base sequence; offsets never
//!    change, they leave gaps); one keeping none
//!    is dropped, except that an empty batch (no records, header kept) stays
//!    when it is the last batch of its segment or of its producer id in the
//!    pass. Control and transactional batches, and batches whose records
//!    cannot be read (unknown codec, damaged, or inflating past
//!    [`DECOMPRESSED_BYTES_MAX`]), are kept as they are and their keys are
//!    not mapped. A segment that loses nothing is not rewritten.
//!
//! Keys are read from the records: compressed batches (gzip, snappy in
//! Kafka's xerial framing or raw, lz4 frames, zstd) are inflated here, off
//! the hot path, and deflated again as Kafka's clients write them (gzip at
//! the default level, snappy in xerial framing with 32 KiB blocks, lz4
//! frames of independent 64 KiB blocks without checksums, zstd level 3).
//!
//! # Replacing a segment (crash-safe)
//!
//! 1. Write `<base>.log.cleaned`, `<base>.index.cleaned` and
//!    `<base>.timeindex.cleaned`, each fdatasync'ed.
//! 2. Rename `<base>.log.cleaned` to `<base>.log.swap`: the commit point.
//! 3. Delete the old `<base>.index` and `<base>.timeindex`, rename
//!    `<base>.log.swap` over `<base>.log` (which replaces the old log
//!    atomically), rename the cleaned indexes into place, sync the directory.
//!
//! Recovery ([`crate::recovery`]) deletes `*.cleaned` (a pass that had not
//! committed: the old segment is intact) and finishes a `.swap` by renaming
//! it over `<base>.log` and deleting that segment's indexes, which are then
//! rebuilt from the log. A failure before the commit point removes the
//! `.cleaned` files and returns the error; the log is unchanged. A failure
//! after it poisons the log (the disk then holds the new segment and memory
//! the old one: refusing writes until a restart settles it, as for a failed
//! fdatasync); reads go on.
//!
//! Readers: the segment's file, size and indexes are swapped in the log
//! state at once, so a read finds either the old segment or the new one
//! whole; a read already in flight keeps the old file open through its
//! `Rc`. Tail-cache entries of the replaced segment and of every older one
//! are evicted, so the cache never serves batches compaction removed.
//!
//! Compaction, retention and truncation replace or delete sealed segments,
//! so they hold the log's [`SegmentsLock`] in turn; truncation (a replica
//! following its leader) asks a running compaction to stop at its next
//! segment rather than wait for it.
//!
//! # Cleaner checkpoint file
//!
//! `cleaner-offset-checkpoint` in the partition directory, written whole
//! through [`write_file_atomic`]. Text:
//!
//! ```text
//! pinion-cleaner-checkpoint v1
//! <clean_offset>
//! <base_offset> <end_offset> <size> <first_cleaned_ms> <tombstones>   one line per cleaned segment
//! ```
//!
//! A segment is clean if it lies below `clean_offset` and its line still
//! matches its base offset, end offset (the next segment's base) and size;
//! a truncation that rewrote it makes it dirty again. `first_cleaned_ms` is
//! when a pass first covered it (the tombstones it holds were first seen
//! then); `tombstones` is how many it kept. A missing or damaged checkpoint
//! makes every segment dirty, which only costs work.
//!
//! # Deviations from Kafka
//!
//! - One cleaned segment per segment: Kafka also merges small neighbours.
//!   A cleaned segment that would pass 4 GiB (index positions are u32)
//!   fails the pass instead.
//! - A segment's last batch is kept, emptied if need be, so a segment still
//!   ends where the next begins: recovery treats a scanned segment ending
//!   short as a lost tail, and cold reads continue across segments only
//!   where the last batch ended.
//! - Tombstone age is tracked per segment in the checkpoint, not by Kafka's
//!   delete-horizon field stamped into the batch (KIP-534).
//! - Transactional batches are kept whole: there is no transaction state
//!   yet to tell committed from aborted records.
//! - The dirty ratio gate is `>=`; Kafka's is `>`.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::batch::{self, BatchHeader, Compression, HEADER_BYTES, LOG_OVERHEAD_BYTES};
use crate::config::LogConfig;
use crate::error::AppendError;
use crate::io::{
    align_down, align_up, read_file, write_file_atomic, write_file_synced, OpenMode, Storage, StorageFile,
};
use crate::log::{Log, LogInner, LogState};
use crate::segment::{parse_segment_file_name, SegmentMeta};

/// The cleaner checkpoint's file name in the partition directory.
pub const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";
/// Suffix of a segment's files while a pass writes their cleaned copies.
pub const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix of a cleaned `.log` once committed, until it replaces the old one.
pub const SWAP_SUFFIX: &str = ".swap";
/// Estimated bytes of offset map a pass may hold (Kafka's
/// `log.cleaner.dedupe.buffer.size` is 128 MiB shared by its cleaner threads).
/// The segment that passes it is still mapped whole.
pub const OFFSET_MAP_BYTES_MAX: usize = 64 << 20;
/// Map bytes counted per key besides the key itself.
const OFFSET_MAP_ENTRY_OVERHEAD_BYTES: usize = 48;
/// Largest records section inflated from one compressed batch.
pub const DECOMPRESSED_BYTES_MAX: usize = 64 << 20;
/// Bytes per read of a segment.
const READ_BYTES: usize = 1 << 20;
/// Bytes gathered before a write of a cleaned segment.
const WRITE_BYTES: usize = 1 << 20;

const CHECKPOINT_HEADER: &str = "pinion-cleaner-checkpoint v1";
/// Kafka's snappy framing (xerial `SnappyOutputStream`): this magic, two
/// big-endian i32 versions, then blocks of `[i32 length][raw snappy]`.
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_BYTES: usize = 16;
/// Version and minimum compatible version the xerial header carries.
const XERIAL_VERSION: i32 = 1;
/// xerial's default block size.
const XERIAL_BLOCK_BYTES: usize = 32 << 10;
/// Kafka's default zstd level.
const ZSTD_LEVEL: i32 = 3;

/// What one [`Log::compact`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CompactionOutcome {
    /// A pass ran to its end and moved the checkpoint. False when the log is
    /// not compacted, nothing is cleanable, it is not dirty enough, or a
    /// truncation stopped the pass (segments it already replaced stay so).
    pub cleaned: bool,
    /// Share of the cleanable bytes not yet compacted when the call began.
    pub dirty_ratio: f64,
    /// Segments the pass read.
    pub segments_cleaned: usize,
    /// Segments the pass replaced with a cleaned copy.
    pub segments_rewritten: usize,
    /// Records dropped: a later record has the same key, or there is no key.
    pub records_removed: u64,
    /// Tombstones dropped once `delete_retention_ms` had passed.
    pub tombstones_removed: u64,
    /// Bytes of the segments the pass read, before and after it.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Offsets below this are compacted (the checkpoint after the call).
    pub clean_offset: i64,
}

// ---------------------------------------------------------------------------
// The lock shared with retention and truncation.

/// Held by whichever of compaction, retention and truncation runs: each
/// replaces or deletes sealed segments across awaits, and none may see a
/// segment another is replacing. A plain flag: everything runs on one shard.
#[derive(Debug, Default)]
pub(crate) struct SegmentsLock {
    held: Cell<bool>,
    /// Waiters that want a running compaction to stop at its next segment.
    stop_requests: Cell<u32>,
}

impl SegmentsLock {
    fn stop_requested(&self) -> bool {
        self.stop_requests.get() > 0
    }
}

/// Releases the [`SegmentsLock`] and wakes its waiters when dropped.
pub(crate) struct SegmentsGuard<'a, S: Storage> {
    log: &'a LogInner<S>,
}

impl<S: Storage> Drop for SegmentsGuard<'_, S> {
    fn drop(&mut self) {
        self.log.segments_lock.held.set(false);
        self.log.wake_all();
    }
}

/// Counts a waiter asking compaction to stop, for as long as it waits
/// (also if the waiting future is dropped).
struct StopRequest<'a>(&'a SegmentsLock);

impl Drop for StopRequest<'_> {
    fn drop(&mut self) {
        self.0.stop_requests.set(self.0.stop_requests.get() - 1);
    }
}

/// Waits for the log's [`SegmentsLock`] and takes it. With `stop_compaction`,
/// a compaction holding it stops at its next segment instead of finishing.
pub(crate) async fn lock_segments<S: Storage>(log: &LogInner<S>, stop_compaction: bool) -> SegmentsGuard<'_, S> {
    let lock = &log.segments_lock;
    let _request = stop_compaction.then(|| {
        lock.stop_requests.set(lock.stop_requests.get() + 1);
        StopRequest(lock)
    });
    // Each holder releases the lock when its operation ends.
    while lock.held.get() {
        log.changed().await;
    }
    lock.held.set(true);
    SegmentsGuard { log }
}

// ---------------------------------------------------------------------------
// The pass.

/// A cleanable segment as the pass found it.
#[derive(Debug)]
struct Candidate<F> {
    base_offset: i64,
    /// The next segment's base offset.
    end_offset: i64,
    size: u64,
    file: Rc<F>,
    log_path: PathBuf,
}

/// Sealed, finished segments before the first uncleanable offset.
fn cleanable_segments<S: Storage>(st: &LogState<S>, now_ms: i64) -> Vec<Candidate<S::File>> {
    let lag_ms = st.config.min_compaction_lag_ms;
    let mut out = Vec::new();
    // Never the active segment (the last one).
    for k in 0..st.segments.len().saturating_sub(1) {
        let segment = &st.segments[k];
        if !(segment.sealed && segment.finished) {
            break;
        }
        if lag_ms > 0 && segment.meta.max_timestamp > now_ms.saturating_sub(lag_ms) {
            break;
        }
        out.push(Candidate {
            base_offset: segment.base_offset(),
            end_offset: st.segments[k + 1].base_offset(),
            size: segment.meta.size,
            file: segment.file.clone(),
            log_path: segment.log_path.clone(),
        });
    }
    out
}

impl<S: Storage> Log<S> {
    /// Compacts the log if its `cleanup_policy` includes compact and it is
    /// dirty enough (module docs: [`crate::compaction`]). Never touches the
    /// active segment; appends and reads go on meanwhile. An error leaves the
    /// log readable and every record it held before; segments replaced
    /// before the error stay replaced, and the next call goes on from there.
    pub async fn compact(&self) -> Result<CompactionOutcome, AppendError> {
        let log = &*self.inner;
        let _segments = lock_segments(log, false).await;
        let now_ms = log.shard.clock.now_ms();
        let (config, candidates) = {
            let st = log.state.borrow();
            if let Some(reason) = &st.poisoned {
                return Err(AppendError::Poisoned(reason.clone()));
            }
            if st.closed {
                return Err(AppendError::Closed);
            }
            (st.config.clone(), cleanable_segments(&st, now_ms))
        };
        let storage = &log.shard.storage;
        let checkpoint = CleanerCheckpoint::read(storage, &log.dir).await;
        let mut outcome = CompactionOutcome { clean_offset: checkpoint.clean_offset, ..Default::default() };
        if !config.cleanup_policy.compacts() || candidates.is_empty() {
            return Ok(outcome);
        }
        let first_dirty =
            candidates.iter().position(|c| checkpoint.vouches_for(c).is_none()).unwrap_or(candidates.len());
        let total_bytes: u64 = candidates.iter().map(|c| c.size).sum();
        let dirty_bytes: u64 = candidates[first_dirty..].iter().map(|c| c.size).sum();
        outcome.dirty_ratio = if total_bytes == 0 { 0.0 } else { dirty_bytes as f64 / total_bytes as f64 };
        let tombstones_due = candidates[..first_dirty]
            .iter()
            .filter_map(|c| checkpoint.vouches_for(c))
            .any(|entry| entry.tombstones > 0 && tombstones_expired(entry, now_ms, &config));
        let dirty_enough = dirty_bytes > 0 && outcome.dirty_ratio >= config.min_cleanable_dirty_ratio;
        if !dirty_enough && !tombstones_due {
            return Ok(outcome);
        }
        let io_err = |e: io::Error| compaction_failed(&log.dir, e);

        let offsets = map_offsets(&candidates, first_dirty).await.map_err(io_err)?;
        let covered = &candidates[..offsets.segments];
        tracing::info!(
            log = %log.dir.display(),
            segments = covered.len(),
            dirty_segments = covered.len().saturating_sub(first_dirty),
            keys = offsets.latest.latest.len(),
            dirty_ratio = outcome.dirty_ratio,
            "compacting"
        );
        let mut cleaned_segments = Vec::with_capacity(covered.len());
        for (i, segment) in covered.iter().enumerate() {
            if log.segments_lock.stop_requested() {
                tracing::info!(log = %log.dir.display(), "compaction stopped for a truncation");
                return Ok(outcome);
            }
            // Tombstones of a dirty segment are seen for the first time now.
            let previous = if i < first_dirty { checkpoint.vouches_for(segment) } else { None };
            let retain_tombstones = previous.is_none_or(|entry| !tombstones_expired(entry, now_ms, &config));
            let cleaned = clean_segment(log, segment, &offsets, retain_tombstones, config.index_interval_bytes).await?;
            outcome.segments_cleaned += 1;
            outcome.bytes_before += segment.size;
            let mut size = segment.size;
            if let Some((file, meta)) = cleaned.output {
                let new_size = meta.size;
                if !replace_segment(log, segment, file, meta).await? {
                    let closed = log.state.borrow().closed;
                    return if closed { Err(AppendError::Closed) } else { Ok(outcome) };
                }
                size = new_size;
                outcome.segments_rewritten += 1;
                outcome.records_removed += cleaned.records_removed;
                outcome.tombstones_removed += cleaned.tombstones_removed;
            }
            outcome.bytes_after += size;
            cleaned_segments.push(CleanedSegment {
                base_offset: segment.base_offset,
                end_offset: segment.end_offset,
                size,
                first_cleaned_ms: previous.map_or(now_ms, |entry| entry.first_cleaned_ms),
                tombstones: cleaned.tombstones_kept,
            });
        }
        let clean_offset = covered.last().map_or(checkpoint.clean_offset, |c| c.end_offset);
        let checkpoint = CleanerCheckpoint { clean_offset, segments: cleaned_segments };
        checkpoint.write(storage, &log.dir).await.map_err(io_err)?;
        outcome.cleaned = true;
        outcome.clean_offset = clean_offset;
        tracing::info!(
            log = %log.dir.display(),
            clean_offset,
            rewritten = outcome.segments_rewritten,
            records_removed = outcome.records_removed,
            tombstones_removed = outcome.tombstones_removed,
            bytes_before = outcome.bytes_before,
            bytes_after = outcome.bytes_after,
            "compacted"
        );
        Ok(outcome)
    }
}

/// An io error of a pass, naming what was being compacted (the error's
/// kind and OS code are kept).
fn compaction_failed(path: &Path, e: io::Error) -> AppendError {
    AppendError::Io(Rc::new(io::Error::new(e.kind(), format!("compacting {}: {e}", path.display()))))
}

fn tombstones_expired(entry: &CleanedSegment, now_ms: i64, config: &LogConfig) -> bool {
    now_ms.saturating_sub(entry.first_cleaned_ms) >= config.delete_retention_ms
}

/// Key → offset of its latest record, over the dirty segments of a pass.
#[derive(Debug, Default)]
struct OffsetMap {
    latest: HashMap<Box<[u8]>, i64>,
    /// Estimated memory held, for [`OFFSET_MAP_BYTES_MAX`].
    bytes: usize,
}

impl OffsetMap {
    fn put(&mut self, key: &[u8], offset: i64) {
        if let Some(latest) = self.latest.get_mut(key) {
            *latest = offset;
        } else {
            self.bytes += key.len() + OFFSET_MAP_ENTRY_OVERHEAD_BYTES;
            self.latest.insert(key.into(), offset);
        }
    }

    fn get(&self, key: &[u8]) -> Option<i64> {
        self.latest.get(key).copied()
    }
}

/// What the first read of a pass learns.
#[derive(Debug, Default)]
struct PassOffsets {
    latest: OffsetMap,
    /// Producer id → last offset of its last batch in the pass.
    producer_last_offsets: HashMap<i64, i64>,
    /// How many candidates the pass covers (up to where the map filled).
    segments: usize,
}

/// Reads the candidates once: keys of the dirty ones into the offset map,
/// and every batch's producer id. Stops after the dirty segment that
/// filled the map.
async fn map_offsets<F: StorageFile>(candidates: &[Candidate<F>], first_dirty: usize) -> io::Result<PassOffsets> {
    let mut offsets = PassOffsets::default();
    for (i, candidate) in candidates.iter().enumerate() {
        if i > first_dirty && offsets.latest.bytes >= OFFSET_MAP_BYTES_MAX {
            break;
        }
        let dirty = i >= first_dirty;
        let mut reader = BatchReader::new(candidate.file.clone(), candidate.base_offset, candidate.size);
        while let Some((_, bytes, header)) = reader.next().await? {
            if header.producer_id >= 0 {
                offsets.producer_last_offsets.insert(header.producer_id, header.last_offset());
            }
            if !dirty || header.is_control() || header.is_transactional() {
                continue;
            }
            let Some(records) = records_of(&bytes, &header) else { continue };
            let Some(views) = parse_records(&records, header.records_count) else { continue };
            for view in views {
                if let Some(key) = view.key {
                    offsets.latest.put(&records[key], header.base_offset + view.offset_delta);
                }
            }
        }
        offsets.segments = i + 1;
    }
    Ok(offsets)
}

/// One segment after its pass: the cleaned copy, unless nothing was dropped.
#[derive(Debug)]
struct SegmentCleaning<F> {
    output: Option<(Rc<F>, SegmentMeta)>,
    records_removed: u64,
    tombstones_removed: u64,
    tombstones_kept: u64,
}

/// What to do with a batch, before knowing what follows it.
#[derive(Debug)]
enum Plan {
    /// Keep it as it is.
    Copy,
    /// Keep only these records (fewer than it holds, maybe none).
    Shrink { records: Vec<u8>, count: i32 },
}

/// Why a record is or is not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Keep,
    /// A later record of its key is in the offset map.
    Superseded,
    /// Null key: a compacted log cannot hold it.
    NoKey,
    /// A tombstone past `delete_retention_ms`.
    ExpiredTombstone,
}

fn judge(view: &RecordView, records: &[u8], offset: i64, map: &OffsetMap, retain_tombstones: bool) -> Verdict {
    let Some(key) = &view.key else { return Verdict::NoKey };
    if map.get(&records[key.clone()]).is_some_and(|latest| offset < latest) {
        return Verdict::Superseded;
    }
    if !view.has_value && !retain_tombstones {
        return Verdict::ExpiredTombstone;
    }
    Verdict::Keep
}

fn plan_batch<F>(
    bytes: &[u8],
    header: &BatchHeader,
    map: &OffsetMap,
    retain_tombstones: bool,
    cleaning: &mut SegmentCleaning<F>,
) -> Plan {
    if header.is_control() || header.is_transactional() {
        return Plan::Copy;
    }
    let Some(records) = records_of(bytes, header) else {
        tracing::debug!(offset = header.base_offset, "compaction keeps a batch whose records it cannot read");
        return Plan::Copy;
    };
    let Some(views) = parse_records(&records, header.records_count) else {
        tracing::debug!(offset = header.base_offset, "compaction keeps a batch whose records do not parse");
        return Plan::Copy;
    };
    let verdicts: Vec<Verdict> = views
        .iter()
        .map(|view| judge(view, &records, header.base_offset + view.offset_delta, map, retain_tombstones))
        .collect();
    let mut kept_bytes = 0usize;
    for (view, verdict) in views.iter().zip(&verdicts) {
        match verdict {
            Verdict::Keep => {
                kept_bytes += view.bytes.len();
                if !view.has_value {
                    cleaning.tombstones_kept += 1;
                }
            }
            Verdict::Superseded | Verdict::NoKey => cleaning.records_removed += 1,
            Verdict::ExpiredTombstone => cleaning.tombstones_removed += 1,
        }
    }
    let count = verdicts.iter().filter(|v| **v == Verdict::Keep).count();
    if count == views.len() && count > 0 {
        return Plan::Copy;
    }
    let mut kept = Vec::with_capacity(kept_bytes);
    for (view, verdict) in views.iter().zip(&verdicts) {
        if *verdict == Verdict::Keep {
            kept.extend_from_slice(&records[view.bytes.clone()]);
        }
    }
    Plan::Shrink { records: kept, count: count as i32 }
}

/// What is written for a batch.
#[derive(Debug)]
enum Output {
    Copy,
    Replace(Vec<u8>),
    Drop,
}

/// Settles a plan once it is known whether the batch ends its segment.
fn settle(plan: Plan, bytes: &[u8], header: &BatchHeader, last_in_segment: bool, offsets: &PassOffsets) -> Output {
    match plan {
        Plan::Copy => Output::Copy,
        Plan::Shrink { records, count } if count > 0 => {
            let codec = header.compression();
            let replaced = match compress_records(codec, &records) {
                Some(compressed) => batch::with_records(bytes, &compressed, count, codec),
                None => batch::with_records(bytes, &records, count, Compression::None),
            };
            Output::Replace(replaced)
        }
        Plan::Shrink { .. } => {
            // An empty batch keeps the segment's end offset, or the
            // producer's last sequence for rebuilding its state from the log.
            let last_of_producer = header.producer_id >= 0
                && offsets.producer_last_offsets.get(&header.producer_id) == Some(&header.last_offset());
            if !(last_in_segment || last_of_producer) {
                Output::Drop
            } else if header.records_count == 0 {
                Output::Copy
            } else {
                Output::Replace(batch::with_records(bytes, &[], 0, Compression::None))
            }
        }
    }
}

/// `<path><suffix>`, for example `…0042.log.cleaned`.
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// Reads `segment` once more and writes its cleaned copy to
/// `<base>.log.cleaned`, starting the copy only at the first batch that
/// changes. `output` is `None` if nothing changes.
async fn clean_segment<S: Storage>(
    log: &LogInner<S>,
    segment: &Candidate<S::File>,
    offsets: &PassOffsets,
    retain_tombstones: bool,
    index_interval_bytes: u32,
) -> Result<SegmentCleaning<S::File>, AppendError> {
    let storage = &log.shard.storage;
    let cleaned_path = suffixed(&segment.log_path, CLEANED_SUFFIX);
    let result = write_cleaned(storage, &cleaned_path, segment, offsets, retain_tombstones, index_interval_bytes).await;
    match result {
        Ok(cleaning) => Ok(cleaning),
        Err(e) => {
            remove_quietly(storage, &cleaned_path).await;
            Err(compaction_failed(&segment.log_path, e))
        }
    }
}

async fn write_cleaned<S: Storage>(
    storage: &S,
    cleaned_path: &Path,
    segment: &Candidate<S::File>,
    offsets: &PassOffsets,
    retain_tombstones: bool,
    index_interval_bytes: u32,
) -> io::Result<SegmentCleaning<S::File>> {
    let mut cleaning = SegmentCleaning { output: None, records_removed: 0, tombstones_removed: 0, tombstones_kept: 0 };
    let mut reader = BatchReader::new(segment.file.clone(), segment.base_offset, segment.size);
    // The segment's indexes while every batch so far is copied as it is.
    let mut unchanged = SegmentMeta::new(segment.base_offset);
    let mut writer: Option<SegmentWriter<S::File>> = None;
    // One batch of lookahead: the last batch of a segment is never dropped.
    let mut pending: Option<(u64, Vec<u8>, BatchHeader, Plan)> = None;
    loop {
        let next = reader.next().await?;
        if let Some((position, bytes, header, plan)) = pending.take() {
            let output = settle(plan, &bytes, &header, next.is_none(), offsets);
            if writer.is_none() && !matches!(output, Output::Copy) {
                let file = storage.open(cleaned_path, OpenMode::CreateTruncate).await?;
                let mut started = SegmentWriter::new(file, unchanged.clone(), index_interval_bytes);
                started.copy_from(&segment.file, position).await?;
                writer = Some(started);
            }
            match (writer.as_mut(), output) {
                (None, _) => unchanged.note_batch(&header, position, index_interval_bytes),
                (Some(writer), Output::Copy) => writer.push(&bytes).await?,
                (Some(writer), Output::Replace(bytes)) => writer.push(&bytes).await?,
                (Some(_), Output::Drop) => {}
            }
        }
        let Some((position, bytes, header)) = next else { break };
        let plan = plan_batch(&bytes, &header, &offsets.latest, retain_tombstones, &mut cleaning);
        pending = Some((position, bytes, header, plan));
    }
    match writer {
        None => {
            debug_assert_eq!(unchanged.size, segment.size, "an unchanged segment is read to its end");
            // Whatever plan_batch counted was not dropped after all.
            cleaning.records_removed = 0;
            cleaning.tombstones_removed = 0;
        }
        Some(writer) => cleaning.output = Some(writer.finish().await?),
    }
    Ok(cleaning)
}

/// Puts a cleaned segment in place of `segment` (protocol in the module
/// docs). Returns false, with nothing changed, if the log was closed or a
/// truncation asked compaction to stop.
async fn replace_segment<S: Storage>(
    log: &LogInner<S>,
    segment: &Candidate<S::File>,
    file: Rc<S::File>,
    meta: SegmentMeta,
) -> Result<bool, AppendError> {
    let storage = &log.shard.storage;
    let log_path = &segment.log_path;
    let io_err = |e: io::Error| compaction_failed(log_path, e);
    let (index_path, time_index_path) = (log_path.with_extension("index"), log_path.with_extension("timeindex"));
    let cleaned_log = suffixed(log_path, CLEANED_SUFFIX);
    let cleaned_index = suffixed(&index_path, CLEANED_SUFFIX);
    let cleaned_time_index = suffixed(&time_index_path, CLEANED_SUFFIX);
    let swap = suffixed(log_path, SWAP_SUFFIX);
    let discard = || async {
        for path in [&cleaned_log, &cleaned_index, &cleaned_time_index] {
            remove_quietly(storage, path).await;
        }
    };

    let staged = async {
        write_file_synced(storage, &cleaned_index, &meta.offset_index.to_bytes()).await?;
        write_file_synced(storage, &cleaned_time_index, &meta.time_index.to_bytes()).await
    }
    .await;
    if let Err(e) = staged {
        discard().await;
        return Err(io_err(e));
    }
    let proceed = {
        let st = log.state.borrow();
        let present =
            st.segments.iter().any(|s| s.base_offset() == segment.base_offset && Rc::ptr_eq(&s.file, &segment.file));
        assert!(
            present || st.closed,
            "segment {} replaced or deleted while compaction held the lock",
            segment.base_offset
        );
        !st.closed && !log.segments_lock.stop_requested()
    };
    if !proceed {
        discard().await;
        return Ok(false);
    }
    if let Err(e) = storage.rename(&cleaned_log, &swap).await {
        discard().await;
        return Err(io_err(e));
    }

    // Committed: a restart now finds the cleaned segment.
    let finished = async {
        storage.sync_dir(&log.dir).await?;
        remove_if_present(storage, &index_path).await?;
        remove_if_present(storage, &time_index_path).await?;
        storage.rename(&swap, log_path).await?;
        storage.sync_dir(&log.dir).await
    }
    .await;
    if let Err(e) = finished {
        let reason = format!("replacing segment {} with its compacted copy failed: {e}", log_path.display());
        tracing::error!(log = %log.dir.display(), %reason, "log poisoned: refusing further appends until a restart");
        log.state.borrow_mut().poisoned = Some(reason.into());
        log.wake_all();
        return Err(io_err(e));
    }
    let indexes = async {
        storage.rename(&cleaned_index, &index_path).await?;
        storage.rename(&cleaned_time_index, &time_index_path).await?;
        storage.sync_dir(&log.dir).await
    }
    .await;
    if let Err(e) = indexes {
        // The next open rebuilds what is missing from the log.
        tracing::warn!(log = %log.dir.display(), segment = segment.base_offset, error = %e, "cleaned indexes not in place");
    }

    let (old_file, evicted) = {
        let mut st = log.state.borrow_mut();
        let k = st
            .segments
            .iter()
            .position(|s| s.base_offset() == segment.base_offset)
            .expect("the segment compaction replaces is still in the log");
        let replaced = &mut st.segments[k];
        debug_assert!(replaced.sealed && replaced.finished, "compaction replaces only finished segments");
        let old_file = std::mem::replace(&mut replaced.file, file);
        replaced.meta = meta;
        replaced.flushed = replaced.meta.size;
        replaced.issued = replaced.meta.size;
        replaced.tail_block = Vec::new();
        // The cache holds batches in offset order: drop every one up to this
        // segment's end, so a cache hit never skips the compacted range.
        let mut evicted = 0usize;
        let mut count = 0usize;
        while st.cache.front().is_some_and(|c| c.segment_base <= segment.base_offset) {
            evicted += st.cache.pop_front().expect("checked").bytes.len();
            count += 1;
        }
        assert!(count <= st.unflushed_from, "batches of a finished segment are all written");
        st.unflushed_from -= count;
        (old_file, evicted)
    };
    log.shard.note_evicted(evicted);
    // Readers still holding the old file keep it open until they finish.
    let _ = old_file.close().await;
    Ok(true)
}

/// Finishes a replacement a crash interrupted after its commit point:
/// `<base>.log.swap` goes over `<base>.log`, and that segment's indexes are
/// deleted so recovery rebuilds them. Returns the segment's base offset.
/// An index `.swap` (never written) is deleted; other names are left alone.
pub(crate) async fn complete_swap<S: Storage>(storage: &S, swap: &Path) -> io::Result<Option<i64>> {
    let target = swap.with_extension("");
    let Some((base_offset, extension)) = parse_segment_file_name(&target) else { return Ok(None) };
    if extension != "log" {
        storage.remove_file(swap).await?;
        return Ok(None);
    }
    tracing::warn!(segment = %target.display(), "finishing an interrupted compaction");
    remove_if_present(storage, &target.with_extension("index")).await?;
    remove_if_present(storage, &target.with_extension("timeindex")).await?;
    storage.rename(swap, &target).await?;
    if let Some(dir) = target.parent() {
        storage.sync_dir(dir).await?;
    }
    Ok(Some(base_offset))
}

async fn remove_if_present<S: Storage>(storage: &S, path: &Path) -> io::Result<()> {
    match storage.remove_file(path).await {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Best effort: a leftover `.cleaned` file is removed at the next open anyway.
async fn remove_quietly<S: Storage>(storage: &S, path: &Path) {
    if let Err(e) = remove_if_present(storage, path).await {
        tracing::warn!(path = %path.display(), error = %e, "could not remove a compaction leftover");
    }
}

// ---------------------------------------------------------------------------
// Reading and writing segments.

/// The batches of a finished segment in order, each checked (length, magic,
/// CRC-32C, record count) as recovery checks them, through aligned reads of
/// [`READ_BYTES`] (more for a larger batch).
#[derive(Debug)]
struct BatchReader<F> {
    file: Rc<F>,
    base_offset: i64,
    end: u64,
    /// File position of `window[0]`.
    window_start: u64,
    window: Vec<u8>,
    /// Position of the next batch.
    position: u64,
}

impl<F: StorageFile> BatchReader<F> {
    fn new(file: Rc<F>, base_offset: i64, end: u64) -> Self {
        Self { file, base_offset, end, window_start: 0, window: Vec::new(), position: 0 }
    }

    fn damaged(&self, what: String) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("segment {} at position {}: {what}", self.base_offset, self.position),
        )
    }

    /// Makes `len` bytes from `position` available in the window.
    async fn fill(&mut self, len: usize) -> io::Result<()> {
        let alignment = self.file.alignment();
        loop {
            let window_end = self.window_start + self.window.len() as u64;
            let have = window_end - self.position;
            if have >= len as u64 {
                return Ok(());
            }
            if window_end >= self.end {
                return Err(self.damaged(format!("{len} bytes announced past the segment end {}", self.end)));
            }
            let consumed = (self.position - self.window_start) as usize;
            self.window.drain(..consumed);
            self.window_start = self.position;
            let aligned = align_down(window_end, alignment);
            let want = (len as u64 - have).max(READ_BYTES as u64);
            let stop = align_up((window_end + want).min(self.end), alignment);
            let buf = self.file.read_at(aligned, (stop - aligned) as usize).await?;
            let skip = (window_end - aligned) as usize;
            let usable = buf.len().min((self.end - aligned) as usize);
            if usable <= skip {
                return Err(self.damaged(format!("file shorter than the segment's {} bytes", self.end)));
            }
            self.window.extend_from_slice(&buf[skip..usable]);
        }
    }

    /// The next batch, its position and header, or `None` at the end.
    async fn next(&mut self) -> io::Result<Option<(u64, Vec<u8>, BatchHeader)>> {
        if self.position >= self.end {
            return Ok(None);
        }
        self.fill(LOG_OVERHEAD_BYTES).await?;
        let at = (self.position - self.window_start) as usize;
        let size = batch::peek_size(&self.window[at..]).unwrap_or(0);
        if size < HEADER_BYTES as i64 {
            return Err(self.damaged(format!("impossible batch size {size}")));
        }
        self.fill(size as usize).await?;
        let at = (self.position - self.window_start) as usize;
        let bytes = self.window[at..at + size as usize].to_vec();
        let header = batch::validate_stored(&bytes).map_err(|e| self.damaged(e.to_string()))?;
        let position = self.position;
        self.position += size as u64;
        Ok(Some((position, bytes, header)))
    }
}

/// Writes a cleaned segment front to back in aligned pieces of about
/// [`WRITE_BYTES`], building its indexes as it goes.
#[derive(Debug)]
struct SegmentWriter<F: StorageFile> {
    file: Rc<F>,
    meta: SegmentMeta,
    index_interval_bytes: u32,
    /// Bytes from `written` on, not yet handed to a write.
    pending: Vec<u8>,
    /// Bytes on the device; a multiple of the alignment.
    written: u64,
}

impl<F: StorageFile> SegmentWriter<F> {
    fn new(file: Rc<F>, meta: SegmentMeta, index_interval_bytes: u32) -> Self {
        Self { file, meta, index_interval_bytes, pending: Vec::with_capacity(WRITE_BYTES * 2), written: 0 }
    }

    /// Copies `source`'s first `len` bytes: batches kept as they are, and
    /// already noted in `meta`.
    async fn copy_from(&mut self, source: &Rc<F>, len: u64) -> io::Result<()> {
        debug_assert_eq!(self.meta.size, len, "the unchanged prefix is what meta describes");
        let mut at = 0u64;
        while at < len {
            let take = (len - at).min(READ_BYTES as u64);
            let buf = source.read_at(at, align_up(take, source.alignment()) as usize).await?;
            if (buf.len() as u64) < take {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "segment shorter than its size"));
            }
            self.extend(&buf[..take as usize]).await?;
            at += take;
        }
        Ok(())
    }

    /// Appends one batch and notes it in the indexes.
    async fn push(&mut self, bytes: &[u8]) -> io::Result<()> {
        let header = BatchHeader::parse(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let position = self.meta.size;
        if position + bytes.len() as u64 > u64::from(u32::MAX) {
            // Index positions are u32. Only recompressed batches larger than
            // the originals can get here, on a segment already near 4 GiB.
            return Err(io::Error::new(io::ErrorKind::FileTooLarge, "cleaned segment would pass 4 GiB"));
        }
        self.meta.note_batch(&header, position, self.index_interval_bytes);
        self.extend(bytes).await
    }

    async fn extend(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= WRITE_BYTES {
            self.write_whole_blocks().await?;
        }
        Ok(())
    }

    async fn write_whole_blocks(&mut self) -> io::Result<()> {
        let whole = align_down(self.pending.len() as u64, self.file.alignment()) as usize;
        if whole == 0 {
            return Ok(());
        }
        let mut buf = self.file.alloc_write_buf(whole);
        buf.as_mut().copy_from_slice(&self.pending[..whole]);
        self.file.write_at(buf, self.written).await?;
        self.pending.drain(..whole);
        self.written += whole as u64;
        Ok(())
    }

    /// Writes the rest (the last block padded), trims the file to its size
    /// and fdatasyncs it.
    async fn finish(mut self) -> io::Result<(Rc<F>, SegmentMeta)> {
        self.write_whole_blocks().await?;
        if !self.pending.is_empty() {
            let padded = align_up(self.pending.len() as u64, self.file.alignment()) as usize;
            let mut buf = self.file.alloc_write_buf(padded);
            buf.as_mut()[..self.pending.len()].copy_from_slice(&self.pending);
            self.file.write_at(buf, self.written).await?;
        }
        assert_eq!(self.written + self.pending.len() as u64, self.meta.size, "cleaned bytes written as noted");
        self.file.truncate(self.meta.size).await?;
        self.file.fdatasync().await?;
        self.meta.finish_time_index();
        Ok((self.file, self.meta))
    }
}

// ---------------------------------------------------------------------------
// Records.

/// One record of a batch, located in the batch's (inflated) records.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RecordView {
    /// The whole record, its length prefix included.
    bytes: Range<usize>,
    offset_delta: i64,
    /// `None` for a null key.
    key: Option<Range<usize>>,
    /// False for a null value (a tombstone).
    has_value: bool,
}

/// Frames `count` Kafka v2 records (length varint, attributes i8, timestamp
/// delta, offset delta, key length + key, value length + value, headers).
/// `None` unless they fill `records` exactly.
fn parse_records(records: &[u8], count: i32) -> Option<Vec<RecordView>> {
    fn length(bytes: &[u8], at: &mut usize) -> Option<Option<usize>> {
        let (value, used) = batch::read_varint(bytes.get(*at..)?)?;
        *at += used;
        match value {
            -1 => Some(None),
            n if n >= 0 => Some(Some(usize::try_from(n).ok()?)),
            _ => None,
        }
    }
    // Bounded by the bytes present: the count may be damaged.
    let mut out = Vec::with_capacity((count.max(0) as usize).min(records.len()));
    let mut at = 0usize;
    for _ in 0..count {
        let start = at;
        let body_len = length(records, &mut at)??;
        let end = at.checked_add(body_len)?;
        let body = records.get(at..end)?;
        let mut p = 1usize; // attributes
        let (_, used) = batch::read_varint(body.get(p..)?)?; // timestamp delta
        p += used;
        let (offset_delta, used) = batch::read_varint(body.get(p..)?)?;
        p += used;
        let key = match length(body, &mut p)? {
            None => None,
            Some(len) => {
                let key = p..p.checked_add(len)?;
                body.get(key.clone())?;
                p = key.end;
                Some(at + key.start..at + key.end)
            }
        };
        let has_value = match length(body, &mut p)? {
            None => false,
            Some(len) => {
                body.get(p..p.checked_add(len)?)?;
                true
            }
        };
        out.push(RecordView { bytes: start..end, offset_delta, key, has_value });
        at = end;
    }
    (at == records.len()).then_some(out)
}

/// The records section of a batch, inflated if compressed. `None` if the
/// codec is unknown, the data does not inflate, or it inflates past
/// [`DECOMPRESSED_BYTES_MAX`].
pub(crate) fn records_of<'a>(batch: &'a [u8], header: &BatchHeader) -> Option<Cow<'a, [u8]>> {
    let data = batch.get(HEADER_BYTES..)?;
    let inflated = match header.compression() {
        Compression::None => return Some(Cow::Borrowed(data)),
        Compression::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(data)),
        Compression::Snappy => inflate_snappy(data),
        Compression::Lz4 => read_bounded(lz4_flex::frame::FrameDecoder::new(data)),
        Compression::Zstd => read_bounded(zstd::stream::read::Decoder::with_buffer(data).ok()?),
        Compression::Unknown(_) => None,
    };
    inflated.map(Cow::Owned)
}

/// Compresses a records section the way Kafka's clients do (module docs).
/// `None` for a codec the engine cannot write.
fn compress_records(compression: Compression, records: &[u8]) -> Option<Vec<u8>> {
    match compression {
        Compression::None => Some(records.to_vec()),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(records).ok()?;
            encoder.finish().ok()
        }
        Compression::Snappy => {
            let mut out = XERIAL_MAGIC.to_vec();
            out.extend_from_slice(&XERIAL_VERSION.to_be_bytes());
            out.extend_from_slice(&XERIAL_VERSION.to_be_bytes());
            let mut encoder = snap::raw::Encoder::new();
            for chunk in records.chunks(XERIAL_BLOCK_BYTES) {
                let block = encoder.compress_vec(chunk).ok()?;
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            Some(out)
        }
        Compression::Lz4 => {
            // Independent 64 KiB blocks, no checksums: what Kafka's Java
            // client writes, and the block mode its reader requires.
            let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
            encoder.write_all(records).ok()?;
            encoder.finish().ok()
        }
        Compression::Zstd => zstd::stream::encode_all(records, ZSTD_LEVEL).ok(),
        Compression::Unknown(_) => None,
    }
}

fn read_bounded(reader: impl Read) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    reader.take(DECOMPRESSED_BYTES_MAX as u64 + 1).read_to_end(&mut out).ok()?;
    (out.len() <= DECOMPRESSED_BYTES_MAX).then_some(out)
}

/// Snappy as Kafka's clients write it: xerial framing (Java, librdkafka),
/// or a single raw block.
fn inflate_snappy(data: &[u8]) -> Option<Vec<u8>> {
    let mut decoder = snap::raw::Decoder::new();
    let mut out = Vec::new();
    let mut inflate = |block: &[u8], out: &mut Vec<u8>| -> Option<()> {
        let len = snap::raw::decompress_len(block).ok()?;
        if out.len().checked_add(len)? > DECOMPRESSED_BYTES_MAX {
            return None;
        }
        let start = out.len();
        out.resize(start + len, 0);
        let written = decoder.decompress(block, &mut out[start..]).ok()?;
        out.truncate(start + written);
        Some(())
    };
    if data.len() >= XERIAL_HEADER_BYTES && data[..XERIAL_MAGIC.len()] == XERIAL_MAGIC {
        let mut at = XERIAL_HEADER_BYTES;
        while at < data.len() {
            let len = u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?) as usize;
            at += 4;
            let block = data.get(at..at.checked_add(len)?)?;
            inflate(block, &mut out)?;
            at += len;
        }
    } else {
        inflate(data, &mut out)?;
    }
    Some(out)
}

// ---------------------------------------------------------------------------
// The checkpoint.

/// A segment a pass covered, as the checkpoint remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CleanedSegment {
    base_offset: i64,
    end_offset: i64,
    size: u64,
    first_cleaned_ms: i64,
    tombstones: u64,
}

/// The cleaner checkpoint (format in the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
struct CleanerCheckpoint {
    clean_offset: i64,
    segments: Vec<CleanedSegment>,
}

impl Default for CleanerCheckpoint {
    fn default() -> Self {
        Self { clean_offset: -1, segments: Vec::new() }
    }
}

impl CleanerCheckpoint {
    /// The checkpoint in `dir`; the empty one (all dirty) if it is missing
    /// or damaged.
    async fn read<S: Storage>(storage: &S, dir: &Path) -> Self {
        let path = dir.join(CLEANER_CHECKPOINT_FILE);
        match read_file(storage, &path).await {
            Ok(bytes) => Self::parse(&bytes).unwrap_or_else(|| {
                tracing::warn!(path = %path.display(), "damaged cleaner checkpoint: every segment is dirty again");
                Self::default()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Self::default(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unreadable cleaner checkpoint: every segment is dirty again");
                Self::default()
            }
        }
    }

    async fn write<S: Storage>(&self, storage: &S, dir: &Path) -> io::Result<()> {
        write_file_atomic(storage, &dir.join(CLEANER_CHECKPOINT_FILE), self.to_text().as_bytes()).await
    }

    fn to_text(&self) -> String {
        let mut text = format!("{CHECKPOINT_HEADER}\n{}\n", self.clean_offset);
        for s in &self.segments {
            text.push_str(&format!(
                "{} {} {} {} {}\n",
                s.base_offset, s.end_offset, s.size, s.first_cleaned_ms, s.tombstones
            ));
        }
        text
    }

    fn parse(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()? != CHECKPOINT_HEADER {
            return None;
        }
        let clean_offset = lines.next()?.trim().parse().ok()?;
        let mut segments = Vec::new();
        for line in lines {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [base_offset, end_offset, size, first_cleaned_ms, tombstones] = fields[..] else { return None };
            segments.push(CleanedSegment {
                base_offset: base_offset.parse().ok()?,
                end_offset: end_offset.parse().ok()?,
                size: size.parse().ok()?,
                first_cleaned_ms: first_cleaned_ms.parse().ok()?,
                tombstones: tombstones.parse().ok()?,
            });
        }
        Some(Self { clean_offset, segments })
    }

    /// The entry saying `candidate` is clean: below the clean offset and
    /// unchanged since (same offsets and size).
    fn vouches_for<F>(&self, candidate: &Candidate<F>) -> Option<&CleanedSegment> {
        if candidate.base_offset >= self.clean_offset {
            return None;
        }
        self.segments.iter().find(|s| {
            s.base_offset == candidate.base_offset && s.end_offset == candidate.end_offset && s.size == candidate.size
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::build;

    /// Key and value, either may be null.
    type Entry<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

    fn keyed_records(entries: &[Entry<'_>]) -> Vec<u8> {
        let mut records = Vec::new();
        for (i, (key, value)) in entries.iter().enumerate() {
            match value {
                Some(value) => build::record(&mut records, i as i64, i as i64, *key, value),
                None => {
                    // build::record has no null value: encode a tombstone by hand.
                    let mut body = vec![0u8];
                    put_varint(&mut body, i as i64);
                    put_varint(&mut body, i as i64);
                    match key {
                        Some(k) => {
                            put_varint(&mut body, k.len() as i64);
                            body.extend_from_slice(k);
                        }
                        None => put_varint(&mut body, -1),
                    }
                    put_varint(&mut body, -1);
                    put_varint(&mut body, 0);
                    put_varint(&mut records, body.len() as i64);
                    records.extend_from_slice(&body);
                }
            }
        }
        records
    }

    use crate::batch::put_varint;

    #[test]
    fn records_frame_with_keys_values_and_tombstones() {
        let records = keyed_records(&[(Some(b"k1"), Some(b"v1")), (None, Some(b"x")), (Some(b"k2"), None)]);
        let views = parse_records(&records, 3).unwrap();
        assert_eq!(views.len(), 3);
        assert_eq!(&records[views[0].key.clone().unwrap()], b"k1");
        assert!(views[0].has_value);
        assert_eq!(views[1].key, None);
        assert_eq!(&records[views[2].key.clone().unwrap()], b"k2");
        assert!(!views[2].has_value);
        assert_eq!(views.iter().map(|v| v.offset_delta).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!(parse_records(&records, 2).is_none(), "bytes left over");
        assert!(parse_records(&records, 4).is_none(), "too few records");
        assert!(parse_records(&records[..records.len() - 1], 3).is_none(), "cut short");
    }

    #[test]
    fn shrunk_batch_keeps_its_offsets_and_validates_as_stored() {
        let records = keyed_records(&[(Some(b"a"), Some(b"1")), (Some(b"b"), Some(b"2")), (Some(b"c"), Some(b"3"))]);
        let original = build::from_records(&records, 3, 0, 100, 102);
        let views = parse_records(&records, 3).unwrap();
        let kept = &records[views[1].bytes.clone()];
        let shrunk = batch::with_records(&original, kept, 1, Compression::None);
        let header = batch::validate_stored(&shrunk).unwrap();
        assert_eq!((header.records_count, header.last_offset_delta), (1, 2));
        assert_eq!((header.base_timestamp, header.max_timestamp), (100, 102));
        assert!(batch::validate(&shrunk).is_err(), "a produced batch must still span exactly its records");
        let empty = batch::with_records(&original, &[], 0, Compression::None);
        assert_eq!(batch::validate_stored(&empty).unwrap().records_count, 0);
    }

    #[test]
    fn every_codec_round_trips_through_a_rewritten_batch() {
        let records = keyed_records(&[(Some(b"a"), Some(b"1")), (Some(b"b"), None), (None, Some(b"3"))]);
        let original = build::from_records(&records, 3, 0, 0, 2);
        let codecs = [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];
        for codec in codecs {
            let compressed = compress_records(codec, &records).unwrap();
            let rewritten = batch::with_records(&original, &compressed, 3, codec);
            let header = batch::validate_stored(&rewritten).unwrap();
            assert_eq!(header.compression(), codec);
            assert_eq!(records_of(&rewritten, &header).unwrap().as_ref(), records.as_slice(), "{codec:?}");
        }
        assert!(compress_records(Compression::Unknown(6), &records).is_none());
    }

    #[test]
    fn checkpoint_round_trips_and_refuses_damage() {
        let checkpoint = CleanerCheckpoint {
            clean_offset: 300,
            segments: vec![
                CleanedSegment { base_offset: 0, end_offset: 100, size: 4096, first_cleaned_ms: 7, tombstones: 2 },
                CleanedSegment { base_offset: 100, end_offset: 300, size: 10, first_cleaned_ms: 9, tombstones: 0 },
            ],
        };
        let text = checkpoint.to_text();
        assert_eq!(CleanerCheckpoint::parse(text.as_bytes()), Some(checkpoint));
        assert_eq!(CleanerCheckpoint::parse(&text.as_bytes()[..text.len() - 3]), None);
        assert_eq!(CleanerCheckpoint::parse(b"something else\n3\n"), None);
    }

    #[test]
    fn snappy_inflates_raw_and_xerial_framed() {
        let data: Vec<u8> = (0..5000u32).flat_map(|i| (i % 97).to_be_bytes()).collect();
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(inflate_snappy(&raw).unwrap(), data);
        let mut framed = XERIAL_MAGIC.to_vec();
        framed.extend_from_slice(&1i32.to_be_bytes());
        framed.extend_from_slice(&1i32.to_be_bytes());
        for chunk in data.chunks(7000) {
            let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
            framed.extend_from_slice(&(block.len() as u32).to_be_bytes());
            framed.extend_from_slice(&block);
        }
        assert_eq!(inflate_snappy(&framed).unwrap(), data);
        assert!(inflate_snappy(&framed[..framed.len() - 1]).is_none());
    }
}
