//! Idempotent producers: per partition log, the epoch and the last batches
//! of every producer id, so a retried batch is acknowledged once and stored
//! once (Kafka's `ProducerStateManager` and `ProducerAppendInfo`).
//!
//! Lives in the state of one [`Log`], on the shard that owns it, and is
//! touched only there. Batches with `producer_id` -1 (no producer id) and
//! control batches never reach it.
//!
//! # Rules on append
//!
//! [`Log::append`] checks every batch of a request that carries a producer
//! id before it assigns offsets, all or nothing with the request's other
//! batches, in Kafka's order:
//! 1. Duplicate: the producer's current epoch and `(base_sequence,
//!    last_sequence)` equal to one of its last [`BATCHES_RETAINED`] batches.
//!    The batch is not stored again; the append answers with the original
//!    offsets and [`AppendInfo::duplicate`] set, as Kafka answers a retry.
//! 2. `producer_epoch` below the current epoch:
//!    [`ProducerError::InvalidProducerEpoch`].
//! 3. A newer epoch must start at sequence 0, else
//!    [`ProducerError::OutOfOrderSequence`]; the old epoch's batches are
//!    forgotten.
//! 4. The same epoch must continue at the last sequence + 1 (`i32::MAX` is
//!    followed by 0), else [`ProducerError::OutOfOrderSequence`].
//! 5. A producer id the log knows nothing of is accepted at any sequence.
//!    This is Kafka since 2.5 (KIP-360): "If there is no current producer
//!    epoch (possibly because all producer records have been deleted due to
//!    retention or the DeleteRecords API) accept writes with any sequence
//!    number". Kafka up to 2.4 answered UNKNOWN_PRODUCER_ID there, which
//!    makes a client reset its sequences and send its buffer again: the
//!    duplicates idempotence exists to prevent. So the engine never returns
//!    [`ProducerError::UnknownProducerId`]; the variant names the Kafka error
//!    for the broker's error mapping. A negative `base_sequence` with a
//!    producer id is always refused as out of order.
//!
//! Later batches of a producer within one request are checked against its
//! earlier ones. A request that mixes duplicates with new batches is refused
//! with `OutOfOrderSequence`: Kafka's clients send one batch per partition
//! per request, and neither answer (the original offsets, or new ones) would
//! describe the whole request.
//!
//! # Recovery and snapshots
//!
//! The state is rebuilt at open from the log: every batch with a producer id
//! updates it as an append would, without checks. To avoid reading the whole
//! log, a snapshot of the state is written when a segment rolls and when the
//! log closes; at open the newest snapshot at or below the recovered log end
//! offset is loaded and only the batches after it are replayed (reading
//! their headers). A damaged snapshot is deleted and the next older one (or
//! the log from its start) is used instead. Snapshots past the log end
//! (their batches were lost in a crash or truncated away) are deleted at
//! open and by [`Log::truncate_to`], which rebuilds the state the same way.
//! After each snapshot only the newest [`SNAPSHOTS_KEPT`] are kept.
//!
//! Producers whose batches were all deleted by retention stay known through
//! the snapshots; [`Log::remove_expired_producers`] forgets producers idle
//! for longer than Kafka's `producer.id.expiration.ms`.
//!
//! # Snapshot file format
//!
//! `<offset:020>.snapshot` in the partition directory, written whole through
//! the io seam ([`write_file_atomic`]). It describes every batch whose
//! offsets lie below `offset`. Big-endian:
//!
//! ```text
//!  0  version          u16   1
//!  2  crc              u32   CRC-32C over bytes 6..end
//!  6  offset           i64   equal to the offset in the file name
//! 14  producer_count   u32
//! 18  producers, by increasing producer_id:
//!       producer_id    i64   >= 0
//!       epoch          i16
//!       batch_count    u8    1..=5, oldest batch first
//!       batches:
//!         first_sequence i32
//!         last_sequence  i32
//!         first_offset   i64
//!         last_offset    i64   < offset
//!         max_timestamp  i64
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::batch::{BatchHeader, HEADER_BYTES, LOG_OVERHEAD_BYTES};
use crate::config::{LogConfig, TimestampType};
use crate::io::{align_down, align_up, read_file, write_file_atomic, Storage, StorageFile};
use crate::log::{AppendInfo, Log, LogInner};
use crate::segment::{parse_segment_file_name, segment_file_name, Segment};

/// `producer_epoch` of a batch without a producer id (Kafka's `NO_PRODUCER_EPOCH`).
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// Batches remembered per producer for duplicate detection (Kafka's
/// `NUM_BATCHES_TO_RETAIN`, matching the client's at most 5 in-flight
/// requests per connection).
pub const BATCHES_RETAINED: usize = 5;
/// Kafka's default `producer.id.expiration.ms`: one day.
pub const PRODUCER_ID_EXPIRATION_MS_DEFAULT: i64 = 24 * 3600 * 1000;
/// Extension of snapshot files: `<offset:020>.snapshot`.
pub const SNAPSHOT_EXTENSION: &str = "snapshot";
/// Snapshots kept after a new one is written.
pub const SNAPSHOTS_KEPT: usize = 2;
/// The snapshot format written and the only one read.
pub const SNAPSHOT_VERSION: u16 = 1;

const SNAPSHOT_CRC_AT: usize = 2;
const SNAPSHOT_OFFSET_AT: usize = 6;
const SNAPSHOT_COUNT_AT: usize = 14;
const SNAPSHOT_HEADER_BYTES: usize = 18;
const PRODUCER_HEADER_BYTES: usize = 11;
const BATCH_METADATA_BYTES: usize = 32;
/// Bytes read at a time while replaying batch headers.
const REPLAY_WINDOW_BYTES: u64 = 256 << 10;

/// Why an append of an idempotent producer's batch was refused. Nothing of
/// the request was stored. The broker maps them to Kafka error codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProducerError {
    /// The batch's epoch is older than the producer's current one: a fenced
    /// (zombie) producer (INVALID_PRODUCER_EPOCH, 47).
    InvalidProducerEpoch { producer_id: i64, epoch: i16, current_epoch: i16 },
    /// The batch does not continue the producer's sequence, or a new epoch
    /// does not start at 0 (OUT_OF_ORDER_SEQUENCE_NUMBER, 45).
    OutOfOrderSequence { producer_id: i64, expected: i32, received: i32 },
    /// UNKNOWN_PRODUCER_ID (59). Never returned by [`Log::append`], which
    /// accepts an unknown producer at any sequence as Kafka 2.5+ does (see
    /// the module docs).
    UnknownProducerId { producer_id: i64 },
}

impl fmt::Display for ProducerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidProducerEpoch { producer_id, epoch, current_epoch } => {
                write!(f, "producer {producer_id} sent epoch {epoch}, older than its current epoch {current_epoch}")
            }
            Self::OutOfOrderSequence { producer_id, expected, received } => {
                write!(f, "out of order sequence from producer {producer_id}: expected {expected}, received {received}")
            }
            Self::UnknownProducerId { producer_id } => write!(f, "unknown producer id {producer_id}"),
        }
    }
}

impl std::error::Error for ProducerError {}

/// Why a snapshot file cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotDamaged(pub &'static str);

impl fmt::Display for SnapshotDamaged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "damaged producer state snapshot: {}", self.0)
    }
}

impl std::error::Error for SnapshotDamaged {}

/// `sequence + increment`, wrapping from `i32::MAX` to 0 as Kafka's
/// `DefaultRecordBatch.incrementSequence` does. `increment` must be >= 0.
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    debug_assert!(increment >= 0);
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

/// The sequence of a batch's last record.
pub fn last_sequence(header: &BatchHeader) -> i32 {
    // Validated batches have a delta >= 0; replayed headers are not all
    // validated again, so never let a damaged one break the arithmetic.
    increment_sequence(header.base_sequence, header.last_offset_delta.max(0))
}

/// Whether the producer-state rules apply to a batch.
fn is_idempotent(header: &BatchHeader) -> bool {
    header.producer_id >= 0 && !header.is_control()
}

/// What is remembered of one appended batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchMetadata {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    /// The batch's `max_timestamp` as stored (the append time under LogAppendTime).
    pub max_timestamp: i64,
}

impl BatchMetadata {
    fn of(header: &BatchHeader) -> Self {
        Self {
            first_sequence: header.base_sequence,
            last_sequence: last_sequence(header),
            first_offset: header.base_offset,
            last_offset: header.last_offset(),
            max_timestamp: header.max_timestamp,
        }
    }
}

/// One producer id's epoch and its last batches, oldest first. Fixed size:
/// recording a batch never allocates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    epoch: i16,
    batches: [BatchMetadata; BATCHES_RETAINED],
    batch_count: usize,
}

impl ProducerEntry {
    fn new(epoch: i16) -> Self {
        Self { epoch, batches: [BatchMetadata::default(); BATCHES_RETAINED], batch_count: 0 }
    }

    pub fn epoch(&self) -> i16 {
        self.epoch
    }

    /// The retained batches of the current epoch, oldest first.
    pub fn batches(&self) -> &[BatchMetadata] {
        &self.batches[..self.batch_count]
    }

    pub fn last_batch(&self) -> Option<&BatchMetadata> {
        self.batches().last()
    }

    /// The sequence the next batch of the current epoch must start at.
    fn next_sequence(&self) -> i32 {
        self.last_batch().map_or(0, |b| increment_sequence(b.last_sequence, 1))
    }

    /// Records a batch; a different epoch forgets the batches of the old one.
    fn push(&mut self, epoch: i16, metadata: BatchMetadata) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.batch_count = 0;
        }
        if self.batch_count == BATCHES_RETAINED {
            self.batches.copy_within(1.., 0);
            self.batches[BATCHES_RETAINED - 1] = metadata;
        } else {
            self.batches[self.batch_count] = metadata;
            self.batch_count += 1;
        }
    }

    fn find_duplicate(&self, epoch: i16, first_sequence: i32, last_sequence: i32) -> Option<&BatchMetadata> {
        if epoch != self.epoch {
            return None;
        }
        self.batches().iter().find(|b| b.first_sequence == first_sequence && b.last_sequence == last_sequence)
    }
}

/// A request whose batches were all appended before: where they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Duplicate {
    first_offset: i64,
    last_offset: i64,
    max_timestamp: i64,
}

impl Duplicate {
    /// The acknowledgement of the original append, as far as it is known.
    pub(crate) fn append_info(&self, config: &LogConfig, log_start_offset: i64) -> AppendInfo {
        let log_append_time = config.message_timestamp_type == TimestampType::LogAppendTime;
        AppendInfo {
            base_offset: self.first_offset,
            last_offset: self.last_offset,
            log_append_time_ms: if log_append_time { self.max_timestamp } else { -1 },
            log_start_offset,
            bytes: 0,
            duplicate: true,
        }
    }
}

/// The producer state of one log: producer id to [`ProducerEntry`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerState {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Checks the batches of one append request against the rules in the
    /// module docs without changing anything. `Ok(None)`: append them all;
    /// `Ok(Some(_))`: every batch is a duplicate, store nothing. One hash
    /// lookup per batch with a producer id; never allocates.
    pub(crate) fn check(&self, batches: &[(Range<usize>, BatchHeader)]) -> Result<Option<Duplicate>, ProducerError> {
        let mut duplicate: Option<Duplicate> = None;
        // Named if the request turns out to mix duplicates and new batches.
        let mut first_duplicate: Option<ProducerError> = None;
        let mut new_batches = false;
        for (i, (_, header)) in batches.iter().enumerate() {
            if !is_idempotent(header) {
                new_batches = true;
                continue;
            }
            let entry = self.producers.get(&header.producer_id);
            let last = last_sequence(header);
            if let Some(entry) = entry {
                if let Some(original) = entry.find_duplicate(header.producer_epoch, header.base_sequence, last) {
                    first_duplicate.get_or_insert(ProducerError::OutOfOrderSequence {
                        producer_id: header.producer_id,
                        expected: entry.next_sequence(),
                        received: header.base_sequence,
                    });
                    duplicate = Some(match duplicate {
                        None => Duplicate {
                            first_offset: original.first_offset,
                            last_offset: original.last_offset,
                            max_timestamp: original.max_timestamp,
                        },
                        Some(d) => Duplicate { last_offset: d.last_offset.max(original.last_offset), ..d },
                    });
                    continue;
                }
            }
            new_batches = true;
            // The producer's previous batch in this request, if any, comes
            // before the log's state (Kafka's `updatedEntry`).
            let earlier = batches[..i].iter().rev().map(|(_, h)| h).find(|h| {
                // Usually the batch just before: one request holds one producer.
                is_idempotent(h) && h.producer_id == header.producer_id
            });
            let current = match earlier {
                Some(h) => Some((h.producer_epoch, Some(last_sequence(h)))),
                None => entry.map(|e| (e.epoch, e.last_batch().map(|b| b.last_sequence))),
            };
            check_sequence(header, current)?;
        }
        match (duplicate, first_duplicate) {
            (Some(_), Some(mixed)) if new_batches => Err(mixed),
            (duplicate, _) => Ok(duplicate),
        }
    }

    /// Records a batch stored at its final offsets (an append, or a replay
    /// at recovery). Batches without a producer id are ignored.
    pub(crate) fn note_batch(&mut self, header: &BatchHeader) {
        if !is_idempotent(header) {
            return;
        }
        let metadata = BatchMetadata::of(header);
        let epoch = header.producer_epoch;
        self.producers.entry(header.producer_id).or_insert_with(|| ProducerEntry::new(epoch)).push(epoch, metadata);
    }

    /// Forgets producers whose newest batch is `expiration_ms` or more older
    /// than `now_ms` (Kafka's `isProducerExpired`). Returns how many.
    pub(crate) fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, entry| {
            let last_timestamp = entry.last_batch().map_or(-1, |b| b.max_timestamp);
            now_ms.saturating_sub(last_timestamp) < expiration_ms
        });
        before - self.producers.len()
    }

    /// The snapshot file contents (format in the module docs) for a log
    /// whose batches below `offset` are all recorded here.
    pub fn to_snapshot(&self, offset: i64) -> Vec<u8> {
        let mut ids: Vec<i64> = self.producers.keys().copied().collect();
        ids.sort_unstable();
        let count = u32::try_from(ids.len()).expect("fewer than 2^32 producers per log");
        let bytes = SNAPSHOT_HEADER_BYTES
            + self
                .producers
                .values()
                .map(|e| PRODUCER_HEADER_BYTES + e.batch_count * BATCH_METADATA_BYTES)
                .sum::<usize>();
        let mut out = Vec::with_capacity(bytes);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&offset.to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
        for id in ids {
            let entry = &self.producers[&id];
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&entry.epoch.to_be_bytes());
            out.push(entry.batch_count as u8);
            for b in entry.batches() {
                out.extend_from_slice(&b.first_sequence.to_be_bytes());
                out.extend_from_slice(&b.last_sequence.to_be_bytes());
                out.extend_from_slice(&b.first_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
                out.extend_from_slice(&b.max_timestamp.to_be_bytes());
            }
        }
        assert_eq!(out.len(), bytes, "snapshot size as computed");
        let crc = crc32c::crc32c(&out[SNAPSHOT_OFFSET_AT..]);
        out[SNAPSHOT_CRC_AT..SNAPSHOT_OFFSET_AT].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// Parses a snapshot file written for `offset`, checking its version,
    /// CRC-32C, offset and every field's bounds.
    pub fn from_snapshot(bytes: &[u8], offset: i64) -> Result<Self, SnapshotDamaged> {
        let mut reader = Reader { bytes, at: 0 };
        if bytes.len() < SNAPSHOT_HEADER_BYTES {
            return Err(SnapshotDamaged("shorter than its header"));
        }
        if reader.u16() != SNAPSHOT_VERSION {
            return Err(SnapshotDamaged("unknown version"));
        }
        if reader.u32() != crc32c::crc32c(&bytes[SNAPSHOT_OFFSET_AT..]) {
            return Err(SnapshotDamaged("CRC-32C mismatch"));
        }
        if reader.i64() != offset {
            return Err(SnapshotDamaged("offset differs from the file name"));
        }
        debug_assert_eq!(reader.at, SNAPSHOT_COUNT_AT);
        let count = reader.u32() as usize;
        let smallest_entry = PRODUCER_HEADER_BYTES + BATCH_METADATA_BYTES;
        if count > (bytes.len() - SNAPSHOT_HEADER_BYTES) / smallest_entry {
            return Err(SnapshotDamaged("more producers than bytes"));
        }
        let mut producers = HashMap::with_capacity(count);
        for _ in 0..count {
            if reader.left() < PRODUCER_HEADER_BYTES {
                return Err(SnapshotDamaged("producer entry cut short"));
            }
            let producer_id = reader.i64();
            let epoch = reader.i16();
            let batch_count = usize::from(reader.u8());
            if producer_id < 0 {
                return Err(SnapshotDamaged("negative producer id"));
            }
            if batch_count == 0 || batch_count > BATCHES_RETAINED {
                return Err(SnapshotDamaged("batch count out of range"));
            }
            if reader.left() < batch_count * BATCH_METADATA_BYTES {
                return Err(SnapshotDamaged("batch metadata cut short"));
            }
            let mut entry = ProducerEntry::new(epoch);
            let mut previous_last_offset = i64::MIN;
            for _ in 0..batch_count {
                let b = BatchMetadata {
                    first_sequence: reader.i32(),
                    last_sequence: reader.i32(),
                    first_offset: reader.i64(),
                    last_offset: reader.i64(),
                    max_timestamp: reader.i64(),
                };
                let delta = b.last_offset.checked_sub(b.first_offset).and_then(|d| i32::try_from(d).ok());
                let Some(delta) = delta.filter(|d| *d >= 0) else {
                    return Err(SnapshotDamaged("batch offsets out of order"));
                };
                if b.first_offset <= previous_last_offset || b.last_offset >= offset {
                    return Err(SnapshotDamaged("batch offsets out of order"));
                }
                if increment_sequence(b.first_sequence, delta) != b.last_sequence {
                    return Err(SnapshotDamaged("batch sequences disagree with its offsets"));
                }
                previous_last_offset = b.last_offset;
                entry.push(epoch, b);
            }
            if producers.insert(producer_id, entry).is_some() {
                return Err(SnapshotDamaged("producer id listed twice"));
            }
        }
        if reader.left() != 0 {
            return Err(SnapshotDamaged("bytes after the last producer"));
        }
        Ok(Self { producers })
    }
}

/// Big-endian fields read in order; callers check the length first.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let out: [u8; N] = self.bytes[self.at..self.at + N].try_into().expect("N bytes");
        self.at += N;
        out
    }
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }
    fn u8(&mut self) -> u8 {
        u8::from_be_bytes(self.take())
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.take())
    }
    fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take())
    }
    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take())
    }
    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take())
    }
}

/// Kafka's rules for a batch that is not a duplicate, against the
/// producer's current `(epoch, last sequence)` if the producer is known.
fn check_sequence(header: &BatchHeader, current: Option<(i16, Option<i32>)>) -> Result<(), ProducerError> {
    let producer_id = header.producer_id;
    let received = header.base_sequence;
    let known = current.filter(|(epoch, _)| *epoch != NO_PRODUCER_EPOCH);
    let Some((current_epoch, last)) = known else {
        // Unknown producer: any sequence (Kafka 2.5+, see the module docs).
        if received < 0 {
            return Err(ProducerError::OutOfOrderSequence { producer_id, expected: 0, received });
        }
        return Ok(());
    };
    if header.producer_epoch < current_epoch {
        return Err(ProducerError::InvalidProducerEpoch { producer_id, epoch: header.producer_epoch, current_epoch });
    }
    let expected =
        if header.producer_epoch != current_epoch { 0 } else { last.map_or(0, |l| increment_sequence(l, 1)) };
    if received != expected {
        return Err(ProducerError::OutOfOrderSequence { producer_id, expected, received });
    }
    Ok(())
}

/// `<offset:020>.snapshot` in `dir`.
pub fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(segment_file_name(offset, SNAPSHOT_EXTENSION))
}

/// Offsets of the snapshot files in `dir`, ascending.
async fn snapshot_offsets<S: Storage>(storage: &S, dir: &Path) -> io::Result<Vec<i64>> {
    let mut offsets: Vec<i64> = storage
        .list_dir(dir)
        .await?
        .iter()
        .filter_map(|path| parse_segment_file_name(path))
        .filter(|(_, extension)| extension == SNAPSHOT_EXTENSION)
        .map(|(offset, _)| offset)
        .collect();
    offsets.sort_unstable();
    Ok(offsets)
}

async fn remove_if_present<S: Storage>(storage: &S, path: &Path) -> io::Result<()> {
    match storage.remove_file(path).await {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Writes the snapshot of `log`'s producer state at `offset` (every batch
/// below it appended, none at or after it: called as a roll at the log end
/// begins, while appends wait, and at close) and deletes all but the newest
/// [`SNAPSHOTS_KEPT`]. It costs a roll one small synced file.
///
/// A snapshot only shortens recovery, so a failure is logged, not returned:
/// the next open falls back to an older snapshot or the whole log.
pub(crate) async fn take_snapshot<S: Storage>(log: &LogInner<S>, offset: i64) {
    let bytes = snapshot_now(log, offset);
    write_snapshot(log, offset, bytes).await;
}

/// Like [`take_snapshot`], but only the state is captured now; the file is
/// written by a task of its own (as Kafka flushes its roll snapshot
/// asynchronously), so a roll does not hold appends through a file
/// create, fdatasync, rename and directory sync. A snapshot is an
/// optimisation of recovery: one that never lands only makes the next
/// recovery replay more of the log.
pub(crate) fn take_snapshot_in_background<S: Storage>(log: &Rc<LogInner<S>>, offset: i64) {
    let bytes = snapshot_now(log, offset);
    let log = log.clone();
    glommio::spawn_local(async move { write_snapshot(&log, offset, bytes).await }).detach();
}

fn snapshot_now<S: Storage>(log: &LogInner<S>, offset: i64) -> Vec<u8> {
    let st = log.state.borrow();
    debug_assert_eq!(st.log_end_offset, offset, "a snapshot covers exactly the batches below it");
    st.producers.to_snapshot(offset)
}

async fn write_snapshot<S: Storage>(log: &LogInner<S>, offset: i64, bytes: Vec<u8>) {
    let storage = &log.shard.storage;
    let written = async {
        write_file_atomic(storage, &snapshot_path(&log.dir, offset), &bytes).await?;
        let offsets = snapshot_offsets(storage, &log.dir).await?;
        // Removals need no directory sync: an older snapshot that comes back
        // after a crash still describes a prefix of the log.
        for &old in &offsets[..offsets.len().saturating_sub(SNAPSHOTS_KEPT)] {
            remove_if_present(storage, &snapshot_path(&log.dir, old)).await?;
        }
        io::Result::Ok(())
    };
    if let Err(e) = written.await {
        tracing::warn!(log = %log.dir.display(), offset, error = %e, "producer state snapshot not written");
    }
}

/// Deletes snapshots past `log_end_offset`, then loads the newest valid one
/// at or below it (deleting damaged ones on the way). Returns the state and
/// the offset to replay the log from (`i64::MIN` for the whole log).
async fn load_snapshot<S: Storage>(storage: &S, dir: &Path, log_end_offset: i64) -> io::Result<(ProducerState, i64)> {
    let offsets = snapshot_offsets(storage, dir).await?;
    let mut removed = false;
    for &offset in offsets.iter().filter(|&&o| o > log_end_offset) {
        tracing::info!(log = %dir.display(), offset, log_end_offset, "deleting producer state snapshot past the log end");
        remove_if_present(storage, &snapshot_path(dir, offset)).await?;
        removed = true;
    }
    let mut loaded = None;
    for &offset in offsets.iter().rev().filter(|&&o| o <= log_end_offset) {
        let path = snapshot_path(dir, offset);
        let bytes = match read_file(storage, &path).await {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(log = %dir.display(), offset, error = %e, "producer state snapshot unreadable");
                continue;
            }
        };
        match ProducerState::from_snapshot(&bytes, offset) {
            Ok(state) => {
                loaded = Some((state, offset));
                break;
            }
            Err(e) => {
                tracing::warn!(log = %dir.display(), offset, error = %e, "deleting damaged producer state snapshot");
                remove_if_present(storage, &path).await?;
                removed = true;
            }
        }
    }
    if removed {
        // A deleted snapshot past the log end must stay deleted: once the log
        // grows past it again it would describe batches that were replaced.
        storage.sync_dir(dir).await?;
    }
    Ok(loaded.unwrap_or((ProducerState::default(), i64::MIN)))
}

/// Where in one segment file to replay batch headers from.
struct ReplayRange<F> {
    file: Rc<F>,
    /// A batch boundary at or before the first batch to replay.
    start: u64,
    /// End of the segment's valid data.
    end: u64,
}

/// The segments holding batches at or after `from`, each with a start
/// position found through its offset index.
fn replay_plan<F: StorageFile>(segments: &VecDeque<Segment<F>>, from: i64) -> Vec<ReplayRange<F>> {
    segments
        .iter()
        .filter(|s| s.meta.next_offset > from && s.meta.size > 0)
        .map(|s| {
            let start = if s.base_offset() >= from {
                0
            } else {
                let relative = (from - s.base_offset()).min(i64::from(u32::MAX)) as u32;
                u64::from(s.meta.offset_index.lookup(relative).1)
            };
            ReplayRange { file: s.file.clone(), start, end: s.meta.size }
        })
        .collect()
}

/// Records every batch at or after `from` in `plan` into `state`, reading
/// headers only. A header that does not parse (damage in a segment that
/// recovery trusted) ends that segment's replay with a warning: forgetting
/// a producer makes the log accept its next batch, remembering a wrong one
/// could refuse it.
async fn replay<S: Storage>(
    state: &mut ProducerState,
    plan: Vec<ReplayRange<S::File>>,
    from: i64,
    dir: &Path,
) -> io::Result<()> {
    for range in plan {
        let alignment = range.file.alignment();
        let mut position = range.start;
        let mut window: Option<(u64, <S::File as StorageFile>::ReadBuf)> = None;
        // Every batch is at least a header long, which bounds the loop.
        let batches_max = (range.end - range.start) / HEADER_BYTES as u64 + 1;
        for _ in 0..batches_max {
            if position + HEADER_BYTES as u64 > range.end {
                break;
            }
            let header_end = position + HEADER_BYTES as u64;
            let in_window = window
                .as_ref()
                .is_some_and(|(start, buf)| position >= *start && header_end <= start + buf.len() as u64);
            if !in_window {
                let start = align_down(position, alignment);
                let len = align_up((range.end - start).min(REPLAY_WINDOW_BYTES), alignment);
                window = Some((start, range.file.read_at(start, len as usize).await?));
            }
            let (start, buf) = window.as_ref().expect("read above");
            let header = buf.get((position - start) as usize..).and_then(|bytes| BatchHeader::parse(bytes).ok());
            let Some(header) = header.filter(|h| h.batch_length >= (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32) else {
                tracing::warn!(log = %dir.display(), position, "unreadable batch header while rebuilding producer state");
                break;
            };
            if header.last_offset() >= from {
                state.note_batch(&header);
            }
            position += header.size() as u64;
        }
    }
    Ok(())
}

/// The producer state of a log being opened: the newest usable snapshot
/// plus the batches after it. `segments` are the recovered segments,
/// ending at `log_end_offset`.
pub(crate) async fn recover<S: Storage>(
    storage: &S,
    dir: &Path,
    segments: &VecDeque<Segment<S::File>>,
    log_end_offset: i64,
) -> io::Result<ProducerState> {
    let (mut state, from) = load_snapshot(storage, dir, log_end_offset).await?;
    replay::<S>(&mut state, replay_plan(segments, from), from, dir).await?;
    Ok(state)
}

/// Rebuilds `log`'s producer state after a truncation to `log_end_offset`.
/// The log's files must hold all its batches (flushed) and nothing may be
/// appended meanwhile.
pub(crate) async fn rebuild<S: Storage>(log: &LogInner<S>, log_end_offset: i64) -> io::Result<()> {
    // Until rebuilt, remember nothing rather than truncated batches: a stale
    // entry would acknowledge a retry whose batch is no longer stored.
    log.state.borrow_mut().producers = ProducerState::default();
    let (mut state, from) = load_snapshot(&log.shard.storage, &log.dir, log_end_offset).await?;
    let plan = replay_plan(&log.state.borrow().segments, from);
    replay::<S>(&mut state, plan, from, &log.dir).await?;
    log.state.borrow_mut().producers = state;
    Ok(())
}

impl<S: Storage> Log<S> {
    /// What the log knows of `producer_id`: its current epoch, and the last
    /// sequence and last offset of its newest batch here (sequence and
    /// offset -1 if it has none in this epoch). `None` if unknown.
    pub fn producer_state(&self, producer_id: i64) -> Option<(i16, i32, i64)> {
        let st = self.inner.state.borrow();
        let entry = st.producers.get(producer_id)?;
        let (last_sequence, last_offset) = entry.last_batch().map_or((-1, -1), |b| (b.last_sequence, b.last_offset));
        Some((entry.epoch(), last_sequence, last_offset))
    }

    /// Producer ids with state in this log.
    pub fn producer_count(&self) -> usize {
        self.inner.state.borrow().producers.len()
    }

    /// Forgets producers whose newest batch's timestamp is
    /// `producer_id_expiration_ms` or more before the shard clock's now
    /// (Kafka's `producer.id.expiration.ms`, default
    /// [`PRODUCER_ID_EXPIRATION_MS_DEFAULT`]); the broker calls it
    /// periodically. A forgotten producer's next batch is accepted at any
    /// sequence. Returns how many were forgotten.
    pub fn remove_expired_producers(&self, producer_id_expiration_ms: i64) -> usize {
        let now_ms = self.inner.shard.clock.now_ms();
        self.inner.state.borrow_mut().producers.remove_expired(now_ms, producer_id_expiration_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{self, build};

    fn header(producer_id: i64, epoch: i16, base_sequence: i32, records: usize, base_offset: i64) -> BatchHeader {
        let values: Vec<&[u8]> = (0..records).map(|_| &b"v"[..]).collect();
        let mut bytes = build::idempotent_batch(&values, 1000, producer_id, epoch, base_sequence);
        batch::set_base_offset(&mut bytes, base_offset);
        batch::validate(&bytes).unwrap()
    }

    fn request(headers: &[BatchHeader]) -> Vec<(Range<usize>, BatchHeader)> {
        headers.iter().map(|h| (0..h.size(), *h)).collect()
    }

    #[test]
    fn sequences_wrap_from_i32_max_to_zero() {
        assert_eq!(increment_sequence(5, 3), 8);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(last_sequence(&header(1, 0, i32::MAX - 1, 4, 0)), 1);
    }

    #[test]
    fn rules_in_kafka_order() {
        let mut state = ProducerState::default();
        let first = header(7, 2, 0, 3, 10);
        assert_eq!(state.check(&request(&[first])), Ok(None), "unknown producer");
        state.note_batch(&first);
        assert_eq!(
            state.check(&request(&[header(7, 2, 0, 3, 0)])),
            Ok(Some(Duplicate { first_offset: 10, last_offset: 12, max_timestamp: 1002 }))
        );
        assert_eq!(state.check(&request(&[header(7, 2, 3, 1, 0)])), Ok(None), "in order");
        assert_eq!(
            state.check(&request(&[header(7, 2, 4, 1, 0)])),
            Err(ProducerError::OutOfOrderSequence { producer_id: 7, expected: 3, received: 4 })
        );
        assert_eq!(
            state.check(&request(&[header(7, 1, 3, 1, 0)])),
            Err(ProducerError::InvalidProducerEpoch { producer_id: 7, epoch: 1, current_epoch: 2 })
        );
        assert_eq!(
            state.check(&request(&[header(7, 3, 3, 1, 0)])),
            Err(ProducerError::OutOfOrderSequence { producer_id: 7, expected: 0, received: 3 })
        );
        assert_eq!(state.check(&request(&[header(7, 3, 0, 1, 0)])), Ok(None), "new epoch at 0");
        // Within one request, the second batch follows the first.
        assert_eq!(state.check(&request(&[header(7, 2, 3, 2, 0), header(7, 2, 5, 1, 0)])), Ok(None));
        assert!(state.check(&request(&[header(7, 2, 3, 2, 0), header(7, 2, 6, 1, 0)])).is_err());
        // Duplicate and new batch together.
        assert_eq!(
            state.check(&request(&[header(7, 2, 0, 3, 0), header(7, 2, 3, 1, 0)])),
            Err(ProducerError::OutOfOrderSequence { producer_id: 7, expected: 3, received: 0 })
        );
        assert_eq!(
            state.check(&request(&[header(9, 0, -1, 1, 0)])),
            Err(ProducerError::OutOfOrderSequence { producer_id: 9, expected: 0, received: -1 })
        );
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut state = ProducerState::default();
        for i in 0..7 {
            state.note_batch(&header(1, 0, i, 1, i64::from(i)));
        }
        let batches = state.get(1).unwrap().batches();
        assert_eq!(batches.len(), BATCHES_RETAINED);
        assert_eq!(batches[0].first_sequence, 2);
        assert_eq!(batches[4].last_offset, 6);
        assert!(state.check(&request(&[header(1, 0, 1, 1, 0)])).is_err(), "too old to be known as a duplicate");
    }

    #[test]
    fn snapshot_round_trips_and_every_damage_is_detected() {
        let mut state = ProducerState::default();
        for i in 0..8 {
            state.note_batch(&header(i % 3, 1, (i / 3) as i32 * 2, 2, i * 2));
        }
        let bytes = state.to_snapshot(16);
        assert_eq!(ProducerState::from_snapshot(&bytes, 16), Ok(state.clone()));
        assert!(ProducerState::from_snapshot(&bytes, 17).is_err(), "offset from the file name");
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            assert!(ProducerState::from_snapshot(&damaged, 16).is_err(), "flip at {at}");
        }
        for len in 0..bytes.len() {
            assert!(ProducerState::from_snapshot(&bytes[..len], 16).is_err(), "cut at {len}");
        }
        let empty = ProducerState::default().to_snapshot(0);
        assert_eq!(ProducerState::from_snapshot(&empty, 0), Ok(ProducerState::default()));
    }

    #[test]
    fn idle_producers_expire() {
        let mut state = ProducerState::default();
        state.note_batch(&header(1, 0, 0, 1, 0)); // max_timestamp 1000
        assert_eq!(state.remove_expired(1000 + 99, 100), 0);
        assert_eq!(state.remove_expired(1000 + 100, 100), 1);
        assert!(state.is_empty());
    }
}
