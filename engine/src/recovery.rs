//! Opening a partition log: find its segments, trust what the recovery
//! point vouches for, and check everything after it batch by batch
//! (Kafka's `LogLoader`).
//!
//! Rules, in order:
//! - Stray `*.tmp` files (an interrupted index or checkpoint write) are removed.
//! - An interrupted compaction is settled ([`crate::compaction`]): its
//!   `*.cleaned` files are removed (the old segment is intact), and a
//!   `<base>.log.swap` (committed) replaces `<base>.log`, whose indexes are
//!   then rebuilt.
//! - A segment wholly below the recovery point is trusted: its indexes are
//!   loaded, or rebuilt by a scan if missing or damaged (and written back,
//!   as for every sealed segment recovery scans).
//! - The last segment is trusted if its indexes load and a scan from its
//!   last index entry ends exactly at the end of the file and at the
//!   recovery point (a clean shutdown); otherwise it is scanned whole.
//! - A scan checks every batch's length, magic, CRC-32C, record count and
//!   offset order and stops at the first bad one: the file is truncated
//!   there and every later segment is deleted, since nothing after a torn
//!   or corrupt batch was ever acknowledged as durable. The same holds when
//!   a scanned segment ends before the next segment's base offset (its tail
//!   was lost): later segments would leave a hole in the offsets.
//! - The last segment becomes the active one; its last partial block is read
//!   back into memory to be rewritten whole on the next flush.

use std::collections::VecDeque;
use std::io;
use std::path::Path;
use std::rc::Rc;

use crate::compaction;
use crate::config::LogConfig;
use crate::index::{OffsetIndex, TimeIndex};
use crate::io::{align_down, read_file, write_file_atomic, OpenMode, Storage, StorageFile};
use crate::log::{parse_recovery_point, write_recovery_point, LogState, RECOVERY_POINT_FILE};
use crate::segment::{
    parse_segment_file_name, scan, scan_from, segment_file_name, ScanStop, Segment, SegmentMeta, RECYCLED_SUFFIX,
};
use crate::shard::Shard;

/// Loads indexes of a trusted segment, or `None` if they must be rebuilt.
async fn load_indexes<S: Storage>(storage: &S, log_path: &Path, base_offset: i64, size: u64) -> Option<SegmentMeta> {
    let index = read_file(storage, &log_path.with_extension("index")).await.ok()?;
    let time_index = read_file(storage, &log_path.with_extension("timeindex")).await.ok()?;
    let offset_index = OffsetIndex::from_bytes(&index, size).ok()?;
    let time_index = TimeIndex::from_bytes(&time_index).ok()?;
    if size > 0 && offset_index.is_empty() {
        return None;
    }
    let mut meta = SegmentMeta::new(base_offset);
    meta.size = size;
    meta.max_timestamp = time_index.max_timestamp().unwrap_or(-1);
    meta.offset_index = offset_index;
    meta.time_index = time_index;
    Some(meta)
}

pub(crate) async fn load<S: Storage>(shard: &Rc<Shard<S>>, dir: &Path, config: LogConfig) -> io::Result<LogState<S>> {
    let storage = &shard.storage;
    storage.create_dir_all(dir).await?;
    let recovery_point = match read_file(storage, &dir.join(RECOVERY_POINT_FILE)).await {
        Ok(bytes) => parse_recovery_point(&bytes).unwrap_or(i64::MIN),
        Err(_) => i64::MIN,
    };
    let mut bases = Vec::new();
    let mut swaps = Vec::new();
    let mut recycled = Vec::new();
    for path in storage.list_dir(dir).await? {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.ends_with(RECYCLED_SUFFIX) {
            // A deleted segment's file kept for reuse: keep it open for a
            // roll while the shard's recycling budget allows, else remove it.
            if shard.config.recycle_segments {
                if let Ok(file) = storage.open(&path, OpenMode::Existing).await {
                    match file.size().await {
                        Ok(bytes) if shard.reserve_recycled(bytes) => {
                            recycled.push(crate::log::RecycledFile { path, file, bytes });
                            continue;
                        }
                        _ => {
                            let _ = file.close().await;
                        }
                    }
                }
            }
            storage.remove_file(&path).await?;
            continue;
        }
        if name.ends_with(".tmp") || name.ends_with(compaction::CLEANED_SUFFIX) {
            storage.remove_file(&path).await?;
            continue;
        }
        if name.ends_with(compaction::SWAP_SUFFIX) {
            swaps.push(path);
            continue;
        }
        if let Some((base, extension)) = parse_segment_file_name(&path) {
            if extension == "log" {
                bases.push(base);
            }
        }
    }
    for swap in swaps {
        if let Some(base) = compaction::complete_swap(storage, &swap).await? {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    bases.dedup();
    let now_ms = shard.clock.now_ms();
    let interval = config.index_interval_bytes;
    let mut segments: VecDeque<Segment<S::File>> = VecDeque::new();
    let mut changed = false;
    for (i, &base) in bases.iter().enumerate() {
        let log_path = dir.join(segment_file_name(base, "log"));
        let file = storage.open(&log_path, OpenMode::Existing).await?;
        let file_size = file.size().await?;
        let is_last = i + 1 == bases.len();
        let mut meta = None;
        if let Some(&next_base) = bases.get(i + 1) {
            if next_base <= recovery_point {
                meta = load_indexes(storage, &log_path, base, file_size).await.map(|mut m| {
                    m.next_offset = next_base;
                    m
                });
            }
        } else if recovery_point >= base {
            // Clean shutdown check: scan only after the last index entry.
            if let Some(mut loaded) = load_indexes(storage, &log_path, base, file_size).await {
                let (last_relative, last_position) = loaded.offset_index.last().unwrap_or((0, 0));
                loaded.size = u64::from(last_position);
                loaded.next_offset = base + i64::from(last_relative);
                loaded.bytes_since_index = 0;
                let tail = scan_from::<S>(&file, loaded, file_size, interval).await?;
                if tail.stop == ScanStop::End && tail.meta.size == file_size && tail.meta.next_offset == recovery_point
                {
                    meta = Some(tail.meta);
                }
            }
        }
        let meta = match meta {
            Some(meta) => meta,
            None => {
                let scanned = scan::<S>(&file, base, file_size, interval).await?;
                // A segment holding every offset up to the next segment's
                // base is whole whatever follows its data: the rest of the
                // file is left over (from a recycled file, say), not damage.
                let complete = bases.get(i + 1).is_some_and(|&next| scanned.meta.next_offset == next);
                match &scanned.stop {
                    ScanStop::End => {}
                    stop if complete => {
                        tracing::info!(
                            log = %dir.display(),
                            segment = base,
                            valid_bytes = scanned.meta.size,
                            ?stop,
                            "trimming leftover bytes after a whole segment"
                        );
                    }
                    stop => {
                        tracing::warn!(
                            log = %dir.display(),
                            segment = base,
                            valid_bytes = scanned.meta.size,
                            ?stop,
                            "truncating log at the first bad batch (a torn write, or leftovers of a recycled segment file)"
                        );
                    }
                }
                let truncated = scanned.meta.size < file_size;
                if truncated {
                    file.truncate(scanned.meta.size).await?;
                    file.fdatasync().await?;
                    changed = true;
                }
                // A scanned segment that ends before the next one begins lost
                // its tail (a roll whose data never reached the device): the
                // later segments would leave a hole in the offsets.
                let ends_short =
                    bases.get(i + 1).is_some_and(|&next| next > recovery_point && scanned.meta.next_offset != next);
                if (scanned.stop != ScanStop::End && !complete) || ends_short {
                    // Nothing after a bad batch can be trusted.
                    for &later in &bases[i + 1..] {
                        for extension in ["log", "index", "timeindex"] {
                            let _ = storage.remove_file(&dir.join(segment_file_name(later, extension))).await;
                        }
                    }
                    let mut segment = Segment::new(scanned.meta, file, log_path, now_ms);
                    segment.finished = false;
                    segments.push_back(segment);
                    changed = true;
                    break;
                }
                if !is_last {
                    // A sealed segment keeps its indexes on disk, so the next
                    // open loads them instead of scanning it again.
                    let index = scanned.meta.offset_index.to_bytes();
                    write_file_atomic(storage, &log_path.with_extension("index"), &index).await?;
                    let time_index = scanned.meta.time_index.to_bytes();
                    write_file_atomic(storage, &log_path.with_extension("timeindex"), &time_index).await?;
                }
                scanned.meta
            }
        };
        let mut segment = Segment::new(meta, file, log_path, now_ms);
        if !is_last {
            segment.sealed = true;
            segment.finished = true;
        }
        segments.push_back(segment);
    }
    if segments.is_empty() {
        let log_path = dir.join(segment_file_name(0, "log"));
        let file = storage.open(&log_path, OpenMode::CreateNew).await?;
        segments.push_back(Segment::new(SegmentMeta::new(0), file, log_path, now_ms));
        changed = true;
    }
    // The last segment is the active one again.
    let active = segments.back_mut().expect("at least one segment");
    active.sealed = false;
    active.finished = false;
    if active.file.size().await? != active.meta.size {
        active.file.truncate(active.meta.size).await?;
        changed = true;
    }
    if config.preallocate {
        let reserve = crate::segment::preallocation_target(active.meta.size, config.segment_bytes);
        let grow_size = shard.preallocation_grows_size();
        active.file.preallocate(reserve, grow_size).await?;
        active.note_preallocation(reserve, grow_size);
    }
    let alignment = active.file.alignment();
    let tail_start = align_down(active.meta.size, alignment);
    let tail_len = (active.meta.size - tail_start) as usize;
    if tail_len > 0 {
        let buf = active.file.read_at(tail_start, alignment).await?;
        if buf.len() < tail_len {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "active segment shorter than its scan"));
        }
        active.tail_block = buf[..tail_len].to_vec();
    }
    active.flushed = active.meta.size;
    active.issued = active.meta.size;
    let log_end_offset = active.meta.next_offset;
    let log_start_offset = segments.front().expect("at least one segment").base_offset();
    // What was read back is now made durable before the recovery point says so.
    for segment in &segments {
        if changed {
            segment.file.fdatasync().await?;
        }
    }
    if changed || recovery_point != log_end_offset {
        let recoverable = segments.back().map(|s| s.base_offset()).unwrap_or(0).min(log_end_offset);
        // Sealed segments are finished; the active one is rescanned after a crash.
        let point = if changed { recoverable } else { recovery_point.min(log_end_offset).max(recoverable) };
        write_recovery_point(storage, dir, point).await?;
    }
    let producers = crate::producer_state::recover(storage, dir, &segments, log_end_offset).await?;
    Ok(LogState {
        config,
        segments,
        log_start_offset,
        log_end_offset,
        written_offset: log_end_offset,
        durable_offset: log_end_offset,
        durable_wanted: log_end_offset,
        cache: VecDeque::new(),
        unflushed_from: 0,
        unflushed_bytes: 0,
        poisoned: None,
        rounds_in_flight: 0,
        round_tickets_issued: 0,
        rounds_applied: 0,
        finishing_sealed: false,
        last_sync_ticket: None,
        rolling: false,
        closed: false,
        dirty: false,
        append_tickets_issued: 0,
        append_ticket_serving: 0,
        append_tickets_abandoned: Default::default(),
        producers,
        recycled,
        dir_renames: 0,
        dir_renames_synced: 0,
        read_ahead: None,
    })
}
