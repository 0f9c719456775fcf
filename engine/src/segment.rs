//! One segment of a partition log: the `.log` file and its two indexes.
//!
//! Files in the partition directory, named by the segment's base offset
//! zero-padded to 20 digits: `00000000000000000000.log`, `.index`,
//! `.timeindex`. The `.log` holds RecordBatch v2 batches back to back with
//! strictly increasing offsets. The active segment's file is preallocated
//! and written with O_DIRECT; its last partial block is kept in
//! `tail_block` and rewritten whole on the next flush. A sealed segment's
//! file is trimmed to its logical size and its indexes are on disk.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::batch::{self, BatchError, BatchHeader, HEADER_BYTES};
use crate::index::{OffsetIndex, TimeIndex};
use crate::io::{align_down, align_up, Storage, StorageFile};

/// Set once a write completed: the next write of the same block waits for it.
pub type WriteDone = Rc<Cell<bool>>;

pub fn segment_file_name(base_offset: i64, extension: &str) -> String {
    format!("{base_offset:020}.{extension}")
}

/// Suffix of a segment file retention kept for the next roll to overwrite
/// (`00000000000000000042.log.recycled`); not a segment of the log.
pub const RECYCLED_SUFFIX: &str = ".recycled";

/// Where the file of a deleted segment waits to be reused.
pub fn recycled_path(log_path: &Path) -> PathBuf {
    let mut name = log_path.file_name().unwrap_or_default().to_os_string();
    name.push(RECYCLED_SUFFIX);
    log_path.with_file_name(name)
}

/// Parses `00000000000000000042.log` into 42.
pub fn parse_segment_file_name(path: &Path) -> Option<(i64, String)> {
    let stem = path.file_stem()?.to_str()?;
    let extension = path.extension()?.to_str()?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, extension.to_string()))
}

/// What is known about a segment's contents: its size, offsets, largest
/// timestamp and sparse indexes. Built by appends, or by a scan at recovery.
#[derive(Debug, Clone)]
pub struct SegmentMeta {
    pub base_offset: i64,
    /// Logical bytes: every batch appended, written or not.
    pub size: u64,
    /// One past the last offset stored in this segment.
    pub next_offset: i64,
    /// Largest batch max_timestamp in the segment, -1 if none.
    pub max_timestamp: i64,
    /// Relative offset of the batch that carries `max_timestamp`.
    pub max_timestamp_offset: u32,
    pub offset_index: OffsetIndex,
    pub time_index: TimeIndex,
    pub bytes_since_index: u64,
}

impl SegmentMeta {
    pub fn new(base_offset: i64) -> Self {
        Self {
            base_offset,
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            max_timestamp_offset: 0,
            offset_index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            bytes_since_index: u64::MAX,
        }
    }

    /// Records a batch stored at `position` in the indexes and counters.
    pub fn note_batch(&mut self, header: &BatchHeader, position: u64, index_interval_bytes: u32) {
        let relative = (header.base_offset - self.base_offset) as u32;
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.max_timestamp_offset = relative;
        }
        if self.bytes_since_index >= u64::from(index_interval_bytes) {
            self.offset_index.push(relative, position as u32);
            self.bytes_since_index = 0;
            // The largest timestamp so far and the batch holding it (as Kafka
            // does), not this batch's: with producers' clocks out of order an
            // unindexed earlier batch may carry a larger timestamp, and a
            // lookup must never start past it.
            self.time_index.maybe_push(self.max_timestamp, self.max_timestamp_offset);
        }
        self.bytes_since_index += header.size() as u64;
        self.next_offset = header.last_offset() + 1;
        self.size = position + header.size() as u64;
    }

    /// Makes the time index end with the segment's true maximum, as Kafka
    /// does when a segment becomes inactive.
    pub fn finish_time_index(&mut self) {
        if self.max_timestamp >= 0 {
            self.time_index.maybe_push(self.max_timestamp, self.max_timestamp_offset);
        }
    }

    /// Whether a batch of `bytes` with offsets up to `last_offset` still fits.
    pub fn fits(&self, bytes: u64, last_offset: i64, segment_bytes: u64) -> bool {
        let relative_ok = last_offset - self.base_offset <= i64::from(u32::MAX);
        let position_ok = self.size + bytes <= u64::from(u32::MAX);
        relative_ok && position_ok && (self.size == 0 || self.size + bytes <= segment_bytes)
    }
}

/// A segment and its open file. Lives on the shard that owns the log.
#[derive(Debug)]
pub struct Segment<F> {
    pub meta: SegmentMeta,
    pub file: Rc<F>,
    pub log_path: PathBuf,
    /// Bytes written to the device (readable with O_DIRECT).
    pub flushed: u64,
    /// Bytes handed to writes, some maybe still in flight (at least `flushed`).
    pub issued: u64,
    /// When the segment was created (for `segment_ms`).
    pub created_ms: i64,
    /// No more appends; the final flush trims the file and writes indexes.
    pub sealed: bool,
    /// Sealed, trimmed to its size, synced, and its indexes are on disk.
    pub finished: bool,
    /// Contents of the last partial block handed to a write, `[align_down(issued), issued)`.
    pub tail_block: Vec<u8>,
    /// Whether `tail_block` was handed to a write (zero-padded) or read back
    /// from the file, so the next write of its block rewrites it; false
    /// when a round held it back for the next one.
    pub tail_block_in_file: bool,
    /// The completion flag of the write that last wrote `tail_block`'s block
    /// (zero-padded); `None` when the block came from the file or was held
    /// back. The next rewrite of that block waits for this write only, not
    /// for every earlier round.
    pub tail_write: Option<WriteDone>,
    /// Bytes of the file reserved with fallocate so far (grows in steps).
    pub preallocated: u64,
    /// Bytes at the start of the file known to be written extents: the data
    /// recovery found, or a recycled file's old size. Blocks past it are
    /// unwritten preallocation until a write converts them.
    pub written_extents_end: u64,
    /// The file size as the engine last set it (a preallocation that grew
    /// it, a recycled file's old size, recovery's trim): a write past it
    /// extends the file.
    pub file_size: u64,
}

/// Preallocation grows in steps of at most this many bytes, so that a
/// partition reserves disk as it fills, not a whole `segment_bytes` up front
/// (a topic of 100 partitions would otherwise reserve 100 GiB at creation).
pub const PREALLOCATE_STEP_BYTES: u64 = 64 << 20;

/// The first step of a new segment. Steps double with the data up to
/// [`PREALLOCATE_STEP_BYTES`], so a quiet partition (most of
/// `__consumer_offsets`, say) holds a few MiB, not 64.
pub const PREALLOCATE_FIRST_STEP_BYTES: u64 = 4 << 20;

/// The reservation to hold `needed_end` bytes: the next whole step past it,
/// never beyond `segment_bytes` unless the data itself is larger.
pub fn preallocation_target(needed_end: u64, segment_bytes: u64) -> u64 {
    let step = (needed_end + 1).next_power_of_two().clamp(PREALLOCATE_FIRST_STEP_BYTES, PREALLOCATE_STEP_BYTES);
    let stepped = (needed_end / step + 1) * step;
    stepped.min(segment_bytes.max(needed_end))
}

#[cfg(test)]
mod preallocation_tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn reservations_start_small_double_with_the_data_then_grow_in_64_mib_steps() {
        let segment = 1 << 30;
        assert_eq!(preallocation_target(0, segment), 4 * MIB);
        assert_eq!(preallocation_target(4 * MIB - 4096, segment), 4 * MIB);
        assert_eq!(preallocation_target(4 * MIB, segment), 8 * MIB);
        assert_eq!(preallocation_target(5 * MIB, segment), 8 * MIB);
        assert_eq!(preallocation_target(9 * MIB, segment), 16 * MIB);
        assert_eq!(preallocation_target(40 * MIB, segment), 64 * MIB);
        assert_eq!(preallocation_target(64 * MIB, segment), 128 * MIB);
        assert_eq!(preallocation_target(130 * MIB, segment), 192 * MIB);
    }

    #[test]
    fn reservations_never_pass_the_segment_size_unless_the_data_does() {
        assert_eq!(preallocation_target(0, MIB), MIB);
        assert_eq!(preallocation_target(1000 * MIB, 1 << 30), 1 << 30);
        assert_eq!(preallocation_target(3 * MIB, 2 * MIB), 3 * MIB);
        for needed in (0..2048 * MIB).step_by(3 * MIB as usize + 4096) {
            let target = preallocation_target(needed, 1 << 30);
            assert!(target > needed || needed >= 1 << 30, "{needed} -> {target}");
            assert!(target <= (1 << 30).max(needed));
        }
    }
}

impl<F: StorageFile> Segment<F> {
    pub fn new(meta: SegmentMeta, file: Rc<F>, log_path: PathBuf, created_ms: i64) -> Self {
        let flushed = meta.size;
        Self {
            meta,
            file,
            log_path,
            flushed,
            issued: flushed,
            created_ms,
            sealed: false,
            finished: false,
            tail_block: Vec::new(),
            tail_block_in_file: true,
            tail_write: None,
            preallocated: 0,
            written_extents_end: flushed,
            file_size: flushed,
        }
    }

    /// Records a preallocation of `reserve` bytes (`StorageFile::preallocate`).
    pub fn note_preallocation(&mut self, reserve: u64, grow_size: bool) {
        self.preallocated = reserve;
        if grow_size {
            self.file_size = self.file_size.max(reserve);
        }
    }

    pub fn base_offset(&self) -> i64 {
        self.meta.base_offset
    }

    pub fn index_path(&self) -> PathBuf {
        self.log_path.with_extension("index")
    }

    pub fn time_index_path(&self) -> PathBuf {
        self.log_path.with_extension("timeindex")
    }
}

/// Why a scan of a segment stopped before the end of its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanStop {
    /// Reached the end of valid data cleanly (zeros or end of file).
    End,
    /// A batch was cut short or its header announced an impossible length.
    Torn { position: u64 },
    /// A complete batch failed its checks (CRC, magic, count, offsets).
    Corrupt { position: u64, reason: String },
}

/// Result of reading a segment from the start and checking every batch.
#[derive(Debug)]
pub struct ScanResult {
    /// Contents up to the first bad batch; `meta.size` is where valid data ends.
    pub meta: SegmentMeta,
    pub batches: u64,
    pub stop: ScanStop,
}

/// Reads `file` from the start to `end`, checking length, magic, CRC,
/// record count and increasing offsets of every batch, and rebuilding both
/// indexes. Stops at the first batch that fails.
pub async fn scan<S: Storage>(
    file: &S::File,
    base_offset: i64,
    end: u64,
    index_interval_bytes: u32,
) -> std::io::Result<ScanResult> {
    scan_from::<S>(file, SegmentMeta::new(base_offset), end, index_interval_bytes).await
}

/// Like [`scan`], but continues from `meta.size` with what `meta` already
/// knows (used to check the tail of a segment after its last index entry).
pub async fn scan_from<S: Storage>(
    file: &S::File,
    meta: SegmentMeta,
    end: u64,
    index_interval_bytes: u32,
) -> std::io::Result<ScanResult> {
    const READ_BYTES: usize = 1 << 20;
    let alignment = file.alignment();
    let base_offset = meta.base_offset;
    let mut segment = meta;
    let mut window: Vec<u8> = Vec::with_capacity(READ_BYTES * 2);
    let mut position = segment.size;
    let mut window_start = position; // file position of window[0]
    let mut batches = 0u64;
    let stop = loop {
        // Make sure the header, then the whole batch, is in the window.
        let mut need = HEADER_BYTES;
        loop {
            let in_window = (position - window_start) as usize;
            let have = window.len() - in_window;
            if have >= need {
                let size = batch::peek_size(&window[in_window..]).unwrap_or(0);
                if size < HEADER_BYTES as i64 || have >= size as usize {
                    break;
                }
                need = size as usize;
                continue;
            }
            let read_from = window_start + window.len() as u64;
            if read_from >= end {
                break;
            }
            let aligned = align_down(read_from, alignment);
            let want = align_up((need - have).max(READ_BYTES) as u64 + (read_from - aligned), alignment) as usize;
            let buf = file.read_at(aligned, want).await?;
            let skip = (read_from - aligned) as usize;
            if buf.len() <= skip {
                break;
            }
            let usable = (buf.len() - skip).min((end - read_from) as usize);
            // Drop consumed bytes before growing the window.
            if in_window > 0 {
                window.drain(..in_window);
                window_start = position;
            }
            window.extend_from_slice(&buf[skip..skip + usable]);
        }
        let in_window = (position - window_start) as usize;
        let available = window.len() - in_window;
        if available < HEADER_BYTES {
            // A clean end is all zeros (preallocated space) or nothing.
            if window[in_window..].iter().all(|&b| b == 0) {
                break ScanStop::End;
            }
            break ScanStop::Torn { position };
        }
        let size = batch::peek_size(&window[in_window..]).unwrap_or(0);
        if size < HEADER_BYTES as i64 {
            if window[in_window..in_window + HEADER_BYTES].iter().all(|&b| b == 0) {
                break ScanStop::End;
            }
            break ScanStop::Torn { position };
        }
        let size = size as usize;
        if available < size {
            break ScanStop::Torn { position };
        }
        let bytes = &window[in_window..in_window + size];
        // A compacted batch may hold fewer records than its offsets span.
        let header = match batch::validate_stored(bytes) {
            Ok(h) => h,
            Err(BatchError::Truncated { .. }) => break ScanStop::Torn { position },
            Err(e) => break ScanStop::Corrupt { position, reason: e.to_string() },
        };
        if header.base_offset < segment.next_offset
            || header.last_offset() - base_offset > i64::from(u32::MAX)
            || position + size as u64 > u64::from(u32::MAX)
        {
            break ScanStop::Corrupt {
                position,
                reason: format!(
                    "batch base offset {} does not follow {} in segment {base_offset}",
                    header.base_offset, segment.next_offset
                ),
            };
        }
        segment.note_batch(&header, position, index_interval_bytes);
        batches += 1;
        position += size as u64;
    };
    segment.finish_time_index();
    Ok(ScanResult { meta: segment, batches, stop })
}
