//! A partition log: an ordered set of segments, the tail cache, and the
//! offsets Kafka speaks of (`log_start_offset`, `log_end_offset`).
//!
//! Lives on one shard and is touched only there: `Log` is an `Rc` handle and
//! its state sits in a `RefCell` that is never borrowed across an `.await`.
//!
//! Write path: [`Log::append`] validates the producer's batches, patches
//! `base_offset` and `partition_leader_epoch` in place, and keeps them in the
//! tail cache as `Bytes` (no copy); the shard's flusher later copies them
//! into aligned buffers and writes them with O_DIRECT
//! ([`LogInner::plan_round`]). [`Log::wait`] resolves when the batch is
//! written (acks=1) or durable after a group-committed fdatasync
//! (acks=all). A failed write or fdatasync poisons the log: it refuses
//! appends from then on with the reason.
//!
//! Read path: [`Log::read`] returns whole batches as slices of the cache or
//! of aligned DMA read buffers, for the network layer to send as they are.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};

use crate::batch::{self, BatchError, BatchHeader, Compression, HEADER_BYTES};
use crate::config::{LogConfig, TimestampType};
use crate::error::AppendError;
use crate::error::ReadError;
use crate::io::{align_down, align_up, write_file_atomic, OpenMode, Storage, StorageFile};
use crate::read_ahead::{Prefetched, ReadAhead, Window};
use crate::segment::{recycled_path, segment_file_name, Segment, SegmentMeta, WriteDone};
use crate::shard::Shard;

/// File in the partition directory holding the recovery point: every
/// offset below it is durable and was verified, so recovery scans only
/// segments from there on. Text: `pinion-recovery-point v1\n<offset>\n`.
pub const RECOVERY_POINT_FILE: &str = "recovery-point";

/// Flush rounds of one log that may be in flight at once.
pub(crate) const ROUNDS_IN_FLIGHT_MAX: u32 = 4;
/// A round hands at most this many `write_bytes_max` pieces' worth of
/// batches to writes (at least one batch), so rounds stay small enough to
/// overlap.
const ROUND_WRITES_MAX: usize = 2;

/// One aligned O_DIRECT write of a flush round.
struct Piece<F: StorageFile> {
    file: Rc<F>,
    buf: F::WriteBuf,
    position: u64,
    /// Rewrites the partial block an earlier write may still be writing:
    /// issued only once that write completed (the flag is set).
    after: Option<WriteDone>,
    /// Writes the segment's new zero-padded tail block: set on completion.
    done: Option<WriteDone>,
}

/// A segment's write frontier after a round is planned (see `Segment`).
struct IssuedUpdate {
    segment_base: i64,
    issued: u64,
    tail_block: Vec<u8>,
    tail_block_in_file: bool,
    tail_write: Option<WriteDone>,
}

/// What [`LogInner::plan_round`] hands to [`LogInner::run_round`].
pub(crate) struct FlushRound<F: StorageFile> {
    /// Plan order; results apply in this order.
    ticket: u64,
    /// Every offset below is written once this round and all earlier ones are.
    target: i64,
    want_sync: bool,
    pieces: Vec<Piece<F>>,
    /// `(segment_base, flushed)`: bytes of the segment on the device after this round.
    updates: Vec<(i64, u64)>,
    sync_files: Vec<Rc<F>>,
    /// The directory renames (`LogState::dir_renames`) this round's sync
    /// also makes durable, if any are not yet.
    sync_dir_renames: Option<u64>,
    /// Preallocations to make before the writes: file, bytes, whether the
    /// size grows (`Shard::preallocation_grows_size`).
    extensions: Vec<(Rc<F>, u64, bool)>,
}

impl<F: StorageFile> FlushRound<F> {
    /// Bytes copied into the round's write buffers.
    pub(crate) fn copied_bytes(&self) -> usize {
        self.pieces.iter().map(|p| p.buf.as_ref().len()).sum()
    }
}

/// What the caller waits for after an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Written to the device with O_DIRECT (acks=1).
    Written,
    /// Written and fdatasync'ed (acks=all).
    Durable,
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker time stamped on the batches, or -1 under CreateTime.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    pub bytes: usize,
    /// Every batch was an idempotent producer's retry of batches already in
    /// the log: nothing was stored (`bytes` is 0) and the offsets are those
    /// of the original append.
    pub duplicate: bool,
}

/// A slice of stored bytes holding one or more whole batches.
#[derive(Debug, Clone)]
pub enum Chunk<B> {
    /// From the tail cache.
    Memory(Bytes),
    /// From an aligned DMA read buffer.
    Disk(B),
}

impl<B: Deref<Target = [u8]>> Deref for Chunk<B> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Chunk::Memory(b) => b,
            Chunk::Disk(b) => b,
        }
    }
}

/// Whole batches returned by [`Log::read`], in offset order.
#[derive(Debug)]
pub struct ReadBatches<B> {
    pub chunks: Vec<Chunk<B>>,
    pub bytes: usize,
    /// Offset after the last batch returned (the next fetch offset).
    pub next_offset: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

/// The read buffer type of a storage.
pub type ReadBufOf<S> = <<S as Storage>::File as StorageFile>::ReadBuf;

/// What [`Log::enforce_retention`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
}

#[derive(Debug)]
pub(crate) struct CachedBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    pub segment_base: i64,
    pub position: u64,
    pub bytes: Bytes,
    /// Shard-wide append order, for evicting the oldest batch first.
    pub seq: u64,
}

pub(crate) struct LogState<S: Storage> {
    pub config: LogConfig,
    pub segments: VecDeque<Segment<S::File>>,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// Every offset below is on the device.
    pub written_offset: i64,
    /// Every offset below is on the device and fdatasync'ed.
    pub durable_offset: i64,
    /// Some caller waits for durability up to here.
    pub durable_wanted: i64,
    pub cache: VecDeque<CachedBatch>,
    /// Index into `cache` of the first batch not yet handed to a write.
    pub unflushed_from: usize,
    pub unflushed_bytes: usize,
    pub poisoned: Option<Rc<str>>,
    /// Flush rounds planned and not yet written (and synced, if asked);
    /// finishing sealed segments afterwards is `finishing_sealed`.
    pub rounds_in_flight: u32,
    /// Round tickets handed out, and rounds whose writes have applied (in order).
    pub round_tickets_issued: u64,
    pub rounds_applied: u64,
    /// A round is finishing sealed segments.
    pub finishing_sealed: bool,
    /// The latest round planned to fdatasync.
    pub last_sync_ticket: Option<u64>,
    pub rolling: bool,
    pub closed: bool,
    /// Queued in the shard's dirty list.
    pub dirty: bool,
    /// Append turns (see `AppendTurn`): tickets handed out, the one whose
    /// turn it is, and tickets of appends dropped before their turn.
    pub append_tickets_issued: u64,
    pub append_ticket_serving: u64,
    pub append_tickets_abandoned: std::collections::BTreeSet<u64>,
    /// Idempotent producers' epochs and last sequences.
    pub producers: crate::producer_state::ProducerState,
    /// Files of segments retention deleted, kept open under their
    /// `.log.recycled` names for the next rolls to overwrite (see
    /// `EngineConfig::recycle_segments`); each holds its size of the
    /// shard's `recycle_bytes_max`.
    pub recycled: Vec<RecycledFile<S::File>>,
    /// Renames of recycled files into new segments, and how many of them a
    /// directory sync has made durable: a durable ack past a rename needs
    /// that sync (an overwrite's fdatasync carries no directory change).
    pub dir_renames: u64,
    pub dir_renames_synced: u64,
    /// The window read after the last cold read that stopped at its byte
    /// limit (see `read_ahead`).
    pub read_ahead: Option<ReadAhead<S::File>>,
}

/// A deleted segment's file waiting under its `.log.recycled` name for a
/// roll.
pub(crate) struct RecycledFile<F> {
    pub path: PathBuf,
    pub file: Rc<F>,
    /// Its size when kept: what it holds of the shard's recycling budget.
    pub bytes: u64,
}

impl<S: Storage> std::fmt::Debug for LogState<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogState")
            .field("segments", &self.segments.len())
            .field("log_start_offset", &self.log_start_offset)
            .field("log_end_offset", &self.log_end_offset)
            .field("written_offset", &self.written_offset)
            .field("durable_offset", &self.durable_offset)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl<S: Storage> LogState<S> {
    fn check_writable(&self) -> Result<(), AppendError> {
        if let Some(reason) = &self.poisoned {
            return Err(AppendError::Poisoned(reason.clone()));
        }
        if self.closed {
            return Err(AppendError::Closed);
        }
        Ok(())
    }

    /// Whether a caller waits for an fdatasync this log has not run yet.
    fn wants_sync(&self) -> bool {
        self.durable_wanted > self.durable_offset
    }

    fn active(&self) -> &Segment<S::File> {
        self.segments.back().expect("a log always has an active segment")
    }

    fn segment_index(&self, base_offset: i64) -> Option<usize> {
        self.segments.binary_search_by_key(&base_offset, |s| s.base_offset()).ok()
    }

    /// Index of the segment that holds `offset` (the last one starting at or before it).
    fn segment_for(&self, offset: i64) -> usize {
        self.segments.partition_point(|s| s.base_offset() <= offset).saturating_sub(1)
    }

    /// Offset below which everything is durable and every segment before
    /// the active one is finished: what the recovery point may say.
    fn recoverable_offset(&self) -> i64 {
        let unfinished = self.segments.iter().find(|s| !s.finished).map(|s| s.base_offset());
        unfinished.unwrap_or(self.log_end_offset).min(self.durable_offset)
    }
}

pub(crate) struct LogInner<S: Storage> {
    pub dir: PathBuf,
    pub shard: Rc<Shard<S>>,
    pub state: RefCell<LogState<S>>,
    /// Tasks waiting for any change of the log (turns, rolls, flush rounds, locks).
    wakers: RefCell<Vec<Waker>>,
    /// Tasks waiting for new data (`wait_for_data`): woken by appends, which
    /// wake nobody else.
    data_wakers: RefCell<Vec<Waker>>,
    /// Tasks waiting until an offset is written, or durable, keyed by that
    /// offset (and a tie-breaking sequence), so that a flush round wakes
    /// only the waiters it satisfied instead of every acks waiter.
    written_waiters: RefCell<BTreeMap<(i64, u64), Waker>>,
    durable_waiters: RefCell<BTreeMap<(i64, u64), Waker>>,
    waiter_seq: Cell<u64>,
    /// Held by compaction, retention and truncation, which replace or delete sealed segments.
    pub(crate) segments_lock: crate::compaction::SegmentsLock,
    /// The shard's busy-log window in which the flusher last wrote this log.
    pub(crate) flushed_in_window: Cell<u64>,
}

impl<S: Storage> std::fmt::Debug for LogInner<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("dir", &self.dir).field("state", &self.state).finish()
    }
}

/// A handle to a partition log on this shard. Cheap to clone.
pub struct Log<S: Storage> {
    pub(crate) inner: Rc<LogInner<S>>,
}

impl<S: Storage> Clone for Log<S> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<S: Storage> std::fmt::Debug for Log<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

/// Which of the log's waiter lists a [`Changed`] registers in.
#[derive(Debug, Clone, Copy)]
enum WaitFor {
    /// Any change (see `LogInner::wakers`).
    Change,
    /// New data.
    Data,
    /// `written_offset` past this offset.
    Written(i64),
    /// `durable_offset` past this offset.
    Durable(i64),
}

/// Resolves the first time it is polled after a wake-up of its waiter list.
pub(crate) struct Changed<'a, S: Storage> {
    log: &'a LogInner<S>,
    registered: bool,
    wait_for: WaitFor,
}

impl<S: Storage> Future for Changed<'_, S> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.registered {
            return Poll::Ready(());
        }
        self.registered = true;
        let log = self.log;
        let waker = cx.waker().clone();
        match self.wait_for {
            WaitFor::Change => log.wakers.borrow_mut().push(waker),
            WaitFor::Data => log.data_wakers.borrow_mut().push(waker),
            WaitFor::Written(offset) => {
                log.written_waiters.borrow_mut().insert((offset, log.next_waiter_seq()), waker);
            }
            WaitFor::Durable(offset) => {
                log.durable_waiters.borrow_mut().insert((offset, log.next_waiter_seq()), waker);
            }
        }
        Poll::Pending
    }
}

fn wake_list(wakers: &RefCell<Vec<Waker>>) {
    let wakers = std::mem::take(&mut *wakers.borrow_mut());
    for waker in wakers {
        waker.wake();
    }
}

impl<S: Storage> LogInner<S> {
    pub(crate) fn new(dir: PathBuf, shard: Rc<Shard<S>>, state: LogState<S>) -> Self {
        let segments_lock = crate::compaction::SegmentsLock::default();
        Self {
            dir,
            shard,
            state: RefCell::new(state),
            wakers: RefCell::new(Vec::new()),
            data_wakers: RefCell::new(Vec::new()),
            written_waiters: RefCell::new(BTreeMap::new()),
            durable_waiters: RefCell::new(BTreeMap::new()),
            waiter_seq: Cell::new(0),
            segments_lock,
            flushed_in_window: Cell::new(0),
        }
    }

    fn next_waiter_seq(&self) -> u64 {
        let seq = self.waiter_seq.get().wrapping_add(1);
        self.waiter_seq.set(seq);
        seq
    }

    pub(crate) fn changed(&self) -> Changed<'_, S> {
        self.changed_for(WaitFor::Change)
    }

    fn changed_for(&self, wait_for: WaitFor) -> Changed<'_, S> {
        Changed { log: self, registered: false, wait_for }
    }

    /// Wakes every waiter of every kind (poisoning, rolls, truncation, close).
    pub(crate) fn wake_all(&self) {
        self.wake_changed();
        wake_list(&self.data_wakers);
        for waiters in [&self.written_waiters, &self.durable_waiters] {
            let waiters = std::mem::take(&mut *waiters.borrow_mut());
            for waker in waiters.into_values() {
                waker.wake();
            }
        }
    }

    /// Wakes the waiters for any change, not those for data or offsets.
    pub(crate) fn wake_changed(&self) {
        wake_list(&self.wakers);
    }

    /// After a flush round moved `written_offset` or `durable_offset`: wakes
    /// the waiters for any change and the offset waiters now satisfied.
    fn wake_progress(&self) {
        self.wake_changed();
        let (written, durable) = {
            let st = self.state.borrow();
            (st.written_offset, st.durable_offset)
        };
        for (waiters, reached) in [(&self.written_waiters, written), (&self.durable_waiters, durable)] {
            let satisfied = {
                let mut waiters = waiters.borrow_mut();
                let rest = waiters.split_off(&(reached, 0));
                std::mem::replace(&mut *waiters, rest)
            };
            for waker in satisfied.into_values() {
                waker.wake();
            }
        }
    }

    fn poison(&self, reason: String) {
        tracing::error!(log = %self.dir.display(), %reason, "log poisoned: refusing further appends");
        self.state.borrow_mut().poisoned = Some(reason.into());
        self.wake_all();
    }

    /// Whether a caller waits for an fdatasync this log has not run yet.
    pub(crate) fn wants_sync(&self) -> bool {
        self.state.borrow().wants_sync()
    }

    /// Whether another round of this log may start now: when none is in
    /// flight, or (up to `ROUNDS_IN_FLIGHT_MAX`) when at least a whole
    /// `write_bytes_max` piece waits. Under a light load the next round
    /// waits for the one in flight and takes everything that came
    /// meanwhile, as one write, instead of many small overlapping ones
    /// that each rewrite the tail block.
    pub(crate) fn has_round_capacity(&self) -> bool {
        let st = self.state.borrow();
        st.rounds_in_flight == 0
            || (st.rounds_in_flight < ROUNDS_IN_FLIGHT_MAX
                && st.unflushed_bytes >= self.shard.config.write_bytes_max.max(4096))
    }

    /// A flush round is planned by the shard's flusher (`plan_round`) and
    /// run as a task of its own (`run_round`). Planning hands at most
    /// `round_bytes_max` of the batches not yet handed to a write to aligned
    /// buffers; running writes them, moves `written_offset` once every
    /// earlier round's writes are complete too, then, if a caller waits for
    /// durability, fdatasyncs once for all of them (group commit) and
    /// finishes segments sealed by a roll.
    ///
    /// Up to `ROUNDS_IN_FLIGHT_MAX` rounds of a log run at once, so the disk
    /// never idles while the next round is copied. Their writes touch
    /// disjoint blocks: a round with more of its segment staged behind it
    /// leaves its partial last block to the next round. Only a round with
    /// nothing behind it writes that block zero-padded; a later round that
    /// rewrites it issues that one-block piece only once the write that
    /// last wrote the block completed (`Segment::tail_write`), so an older
    /// version of the block never lands last.
    /// Rounds apply their results in plan order.
    pub(crate) fn plan_round(self: &Rc<Self>) -> FlushRound<S::File> {
        let write_bytes_max = self.shard.config.write_bytes_max.max(4096);
        let round_bytes_max = write_bytes_max * ROUND_WRITES_MAX;
        let mut round = FlushRound {
            ticket: 0,
            target: 0,
            want_sync: false,
            pieces: Vec::new(),
            updates: Vec::new(),
            sync_files: Vec::new(),
            sync_dir_renames: None,
            extensions: Vec::new(),
        };
        let mut issued_updates: Vec<IssuedUpdate> = Vec::new();
        let leftover = {
            let mut st = self.state.borrow_mut();
            st.dirty = false;
            round.ticket = st.round_tickets_issued;
            st.round_tickets_issued += 1;
            st.rounds_in_flight += 1;
            if st.poisoned.is_some() {
                return round;
            }
            round.want_sync = st.wants_sync();
            if round.want_sync {
                st.last_sync_ticket = Some(round.ticket);
            }
            let start = st.unflushed_from;
            let mut end = start;
            let mut handed_bytes = 0usize;
            while end < st.cache.len() && (end == start || handed_bytes + st.cache[end].bytes.len() <= round_bytes_max)
            {
                handed_bytes += st.cache[end].bytes.len();
                end += 1;
            }
            round.target = if end < st.cache.len() { st.cache[end].base_offset } else { st.log_end_offset };
            let mut i = start;
            while i < end {
                let segment_base = st.cache[i].segment_base;
                let mut j = i;
                while j < end && st.cache[j].segment_base == segment_base {
                    j += 1;
                }
                let seg_index = st.segment_index(segment_base).expect("cached batch of a live segment");
                let needed_end = {
                    let last = &st.cache[j - 1];
                    align_up(last.position + last.bytes.len() as u64, st.segments[seg_index].file.alignment())
                };
                if st.config.preallocate && needed_end > st.segments[seg_index].preallocated {
                    let reserve = crate::segment::preallocation_target(needed_end, st.config.segment_bytes);
                    let grow_size = self.shard.preallocation_grows_size();
                    let segment = &mut st.segments[seg_index];
                    segment.note_preallocation(reserve, grow_size);
                    round.extensions.push((segment.file.clone(), reserve, grow_size));
                }
                let segment = &st.segments[seg_index];
                let alignment = segment.file.alignment();
                let region_start = align_down(segment.issued, alignment);
                let last = &st.cache[j - 1];
                let region_end = last.position + last.bytes.len() as u64;
                debug_assert_eq!(st.cache[i].position, segment.issued, "flush must continue where the last ended");
                assert_eq!(
                    region_start + segment.tail_block.len() as u64,
                    segment.issued,
                    "the kept tail block ends where the handed data ends"
                );
                // The partial last block is held back when the next staged
                // batch continues this segment: the next round, planned at
                // once, writes it whole. Written now, the next round would
                // rewrite it, and that write could go out only after this
                // round's completed: with rounds overlapping, those waits
                // chain, one device latency per round (half the disk's
                // bandwidth, measured with one busy log).
                let aligned_end = align_down(region_end, alignment);
                let holds_back_tail = j == end
                    && aligned_end > region_start
                    && aligned_end < region_end
                    && st.cache.get(end).is_some_and(|next| next.segment_base == segment_base);
                let padded_end = if holds_back_tail { aligned_end } else { align_up(region_end, alignment) };
                // The first block rewrites the kept tail block that an
                // earlier round wrote (not one it held back).
                let tail_in_file = !segment.tail_block.is_empty() && segment.tail_block_in_file;
                // The write that last wrote that block, while in flight.
                let tail_write = segment.tail_write.clone().filter(|done| tail_in_file && !done.get());
                // Set by the write of the new zero-padded last block.
                let new_tail_write = (!holds_back_tail).then(|| Rc::new(Cell::new(false)));
                // Fill each aligned piece from the kept tail block and the batches.
                let mut batch_cursor = i;
                let mut piece_start = region_start;
                let mut new_tail = Vec::new();
                while piece_start < padded_end {
                    // The kept tail block goes in a write of its own:
                    // - when the write that last wrote it is in flight:
                    //   only that block must wait for it, not the whole
                    //   first piece;
                    // - when the blocks after it are unwritten preallocation
                    //   inside the file size: ext4 issues an O_DIRECT write
                    //   without waiting only when its whole range is one
                    //   kind of extent. A write spanning a written and an
                    //   unwritten extent takes the inode's exclusive lock,
                    //   so io_uring hands it to a worker thread (every round
                    //   of a fresh segment did, counted with the
                    //   io_uring_queue_async_work tracepoint). A write past
                    //   the size is handed over anyway (see
                    //   `EngineConfig::inline_write_logs_max`).
                    let splits_tail = piece_start == region_start
                        && tail_in_file
                        && (tail_write.is_some()
                            || (region_start + alignment as u64 >= segment.written_extents_end
                                && padded_end <= segment.file_size));
                    let piece_bytes = if splits_tail { alignment as u64 } else { write_bytes_max as u64 };
                    let piece_end = (piece_start + piece_bytes).min(padded_end);
                    // Not zero-filled: every byte is overwritten below (kept
                    // tail block, batches, then zeros up to the block end).
                    let mut buf = self.shard.take_write_buf(&segment.file, (piece_end - piece_start) as usize);
                    let out = buf.as_mut();
                    // The partial block already handed to an earlier write.
                    let rewrites_tail = piece_start == region_start && tail_in_file;
                    if piece_start == region_start {
                        out[..segment.tail_block.len()].copy_from_slice(&segment.tail_block);
                    }
                    while batch_cursor < j {
                        let cached = &st.cache[batch_cursor];
                        let b_start = cached.position;
                        let b_end = b_start + cached.bytes.len() as u64;
                        debug_assert!(
                            batch_cursor == i || {
                                let previous = &st.cache[batch_cursor - 1];
                                b_start == previous.position + previous.bytes.len() as u64
                            },
                            "cached batches of a segment are contiguous"
                        );
                        let from = b_start.max(piece_start);
                        let to = b_end.min(piece_end);
                        if from < to {
                            out[(from - piece_start) as usize..(to - piece_start) as usize]
                                .copy_from_slice(&cached.bytes[(from - b_start) as usize..(to - b_start) as usize]);
                        }
                        if b_end <= piece_end {
                            batch_cursor += 1;
                        } else {
                            break;
                        }
                    }
                    if piece_end == padded_end && !holds_back_tail {
                        // Zeros after the last batch up to the block end, so
                        // recovery sees the end of the log there.
                        out[(region_end - piece_start) as usize..].fill(0);
                        let tail_start = align_down(region_end, alignment);
                        new_tail =
                            out[(tail_start - piece_start) as usize..(region_end - piece_start) as usize].to_vec();
                    }
                    // Waits for the one write of that block, not for every
                    // earlier round: after a device stall, each round's
                    // rewrite waiting for the previous round's rewrite
                    // chained one device latency per round in flight.
                    let after = if rewrites_tail { tail_write.clone() } else { None };
                    let done = if piece_end == padded_end { new_tail_write.clone() } else { None };
                    round.pieces.push(Piece { file: segment.file.clone(), buf, position: piece_start, after, done });
                    piece_start = piece_end;
                }
                let mut flushed_end = region_end;
                if holds_back_tail {
                    // The batches reaching into the held-back block: a
                    // suffix of the round, found from its end (a round may
                    // hold thousands of small batches).
                    let first_partial = (i..j)
                        .rev()
                        .take_while(|&k| st.cache[k].position + st.cache[k].bytes.len() as u64 > aligned_end)
                        .last()
                        .expect("the last batch ends past aligned_end");
                    new_tail = segment_bytes(&st.cache, first_partial..j, aligned_end..region_end);
                    // Acknowledged up to the first batch not wholly written.
                    round.target = st.cache[first_partial].base_offset;
                    flushed_end = aligned_end;
                }
                issued_updates.push(IssuedUpdate {
                    segment_base,
                    issued: region_end,
                    tail_block: new_tail,
                    tail_block_in_file: !holds_back_tail,
                    tail_write: new_tail_write,
                });
                round.updates.push((segment_base, flushed_end));
                if !round.sync_files.iter().any(|f| Rc::ptr_eq(f, &segment.file)) {
                    round.sync_files.push(segment.file.clone());
                }
                i = j;
            }
            for update in issued_updates {
                let k = st.segment_index(update.segment_base).expect("planned segment is live");
                let segment = &mut st.segments[k];
                segment.issued = update.issued;
                segment.tail_block = update.tail_block;
                segment.tail_block_in_file = update.tail_block_in_file;
                segment.tail_write = update.tail_write;
            }
            if round.want_sync {
                round.sync_dir_renames = (st.dir_renames > st.dir_renames_synced).then_some(st.dir_renames);
                let active = st.active().file.clone();
                if !round.sync_files.iter().any(|f| Rc::ptr_eq(f, &active)) {
                    round.sync_files.push(active);
                }
                // A segment sealed since an earlier round wrote it (unsynced)
                // holds offsets below `target` too: the durable offset may
                // move only once it is synced, not when it is finished later.
                for segment in st.segments.iter().filter(|s| s.sealed && !s.finished) {
                    if !round.sync_files.iter().any(|f| Rc::ptr_eq(f, &segment.file)) {
                        round.sync_files.push(segment.file.clone());
                    }
                }
            }
            st.unflushed_from = end;
            st.unflushed_bytes = st.unflushed_bytes.saturating_sub(handed_bytes);
            self.shard.note_handed_to_write(handed_bytes);
            end < st.cache.len()
        };
        if leftover {
            // The rest goes to the next round, which may start at once.
            self.shard.mark_dirty(self);
        }
        round
    }

    /// Runs a round `plan_round` planned (see there).
    pub(crate) async fn run_round(self: &Rc<Self>, round: FlushRound<S::File>) {
        let FlushRound { ticket, target, want_sync, pieces, updates, sync_files, sync_dir_renames, extensions } = round;
        let started = std::time::Instant::now();
        let mut failure = None;
        for (file, reserve, grow_size) in extensions {
            if let Err(e) = file.preallocate(reserve, grow_size).await {
                failure = Some(format!("preallocating {reserve} bytes in {} failed: {e}", self.dir.display()));
                break;
            }
        }
        let piece_count = pieces.len();
        if failure.is_none() && piece_count > 0 {
            let writes = pieces.into_iter().map(|piece| async move {
                if let Some(after) = &piece.after {
                    self.wait_for_write(after).await;
                    if self.state.borrow().poisoned.is_some() {
                        return Ok(());
                    }
                }
                let (result, reusable) = piece.file.write_at_reusing(piece.buf, piece.position).await;
                if let Some(buf) = reusable {
                    self.shard.recycle_write_buf(buf);
                }
                if let (Ok(()), Some(done)) = (&result, &piece.done) {
                    done.set(true);
                    self.wake_changed();
                }
                result
            });
            let results = join_all(writes.collect()).await;
            if let Some(e) = results.into_iter().find_map(Result::err) {
                failure = Some(format!("O_DIRECT write in {} failed: {e}", self.dir.display()));
            } else {
                self.shard.stats.borrow_mut().note_write(piece_count, started.elapsed());
            }
        }
        if let Some(reason) = failure {
            self.poison(reason);
        }
        // Results apply in plan order: `written_offset` says every byte below is on the device.
        self.wait_for_rounds_applied(ticket).await;
        let healthy = {
            let mut st = self.state.borrow_mut();
            let healthy = st.poisoned.is_none();
            if healthy {
                for (segment_base, flushed) in updates {
                    if let Some(k) = st.segment_index(segment_base) {
                        st.segments[k].flushed = flushed;
                    }
                }
                st.written_offset = st.written_offset.max(target);
            }
            st.rounds_applied += 1;
            healthy
        };
        self.wake_progress();
        // Group commit across overlapping rounds: when a later round will
        // fdatasync after its own writes (which follow these), its sync
        // covers this round's target too, so this one skips its own.
        let superseded = self.state.borrow().last_sync_ticket.is_some_and(|last| last > ticket);
        if healthy && want_sync && !superseded {
            let started = std::time::Instant::now();
            let syncs = sync_files.iter().map(|f| f.fdatasync());
            let mut results = join_all(syncs.collect()).await;
            if let Some(renames) = sync_dir_renames {
                let synced = self.shard.storage.sync_dir(&self.dir).await;
                if synced.is_ok() {
                    let mut st = self.state.borrow_mut();
                    st.dir_renames_synced = st.dir_renames_synced.max(renames);
                }
                results.push(synced);
            }
            if let Some(e) = results.into_iter().find_map(Result::err) {
                self.poison(format!("fdatasync in {} failed: {e}", self.dir.display()));
            } else {
                self.shard.stats.borrow_mut().note_fsync(started.elapsed());
                let mut st = self.state.borrow_mut();
                // After a failed fdatasync nothing more becomes durable.
                if st.poisoned.is_none() {
                    st.durable_offset = st.durable_offset.max(target);
                }
                drop(st);
                // Acks before the sealed segments below are finished.
                self.wake_progress();
            }
        }
        // Retention recycles a segment's file only while nothing else holds
        // it, and may run once the segment is finished (below).
        drop(sync_files);
        let finish = {
            let mut st = self.state.borrow_mut();
            let finish = st.poisoned.is_none() && !st.finishing_sealed;
            st.finishing_sealed |= finish;
            // The round's writes (and sync) are done: its slot goes to the
            // next round now. Finishing a sealed segment (a truncate, an
            // fdatasync and three small files, each synced: 10-15 ms on
            // this disk under load) held it, and with nothing else in
            // flight the log was parked until then: every append that
            // arrived meanwhile waited, once a roll.
            st.rounds_in_flight -= 1;
            finish
        };
        self.shard.unpark(self);
        self.shard.wake_flusher();
        if finish {
            let finished = self.finish_sealed_segments().await;
            self.state.borrow_mut().finishing_sealed = false;
            if let Err(e) = finished {
                self.poison(format!("finishing a sealed segment in {} failed: {e}", self.dir.display()));
            }
        }
        self.wake_progress();
    }

    /// Resolves once the write that set `done` completed (or the log is
    /// poisoned: a failed write never sets it).
    async fn wait_for_write(&self, done: &Cell<bool>) {
        while !done.get() && self.state.borrow().poisoned.is_none() {
            self.changed().await;
        }
    }

    /// Resolves once every round planned before `ticket` has applied its
    /// writes (or the log is poisoned).
    async fn wait_for_rounds_applied(&self, ticket: u64) {
        loop {
            {
                let st = self.state.borrow();
                if st.rounds_applied >= ticket || st.poisoned.is_some() {
                    return;
                }
            }
            self.changed().await;
        }
    }

    /// Trims, syncs and indexes every sealed segment whose data is all
    /// written, then moves the recovery point past them.
    async fn finish_sealed_segments(&self) -> io::Result<()> {
        loop {
            let next = {
                let st = self.state.borrow();
                st.segments.iter().find(|s| s.sealed && !s.finished && s.flushed == s.meta.size).map(|s| {
                    (
                        s.base_offset(),
                        s.file.clone(),
                        s.meta.size,
                        s.index_path(),
                        s.meta.offset_index.to_bytes(),
                        s.time_index_path(),
                        s.meta.time_index.to_bytes(),
                    )
                })
            };
            let Some((base, file, size, index_path, index, time_index_path, time_index)) = next else {
                return Ok(());
            };
            file.truncate(size).await?;
            file.fdatasync().await?;
            // Retention keeps a deleted segment's file for reuse only when
            // nothing else holds it, and may run as soon as it is finished.
            drop(file);
            let storage = &self.shard.storage;
            write_file_atomic(storage, &index_path, &index).await?;
            write_file_atomic(storage, &time_index_path, &time_index).await?;
            let recovery_point = {
                let mut st = self.state.borrow_mut();
                if let Some(k) = st.segment_index(base) {
                    st.segments[k].finished = true;
                    st.segments[k].tail_block = Vec::new();
                }
                st.recoverable_offset()
            };
            write_recovery_point(storage, &self.dir, recovery_point).await?;
        }
    }
}

/// The bytes at segment positions `range` of the contiguous cached batches
/// `batches` (of one segment), which must cover the range.
fn segment_bytes(
    cache: &VecDeque<CachedBatch>,
    batches: std::ops::Range<usize>,
    range: std::ops::Range<u64>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity((range.end - range.start) as usize);
    for cached in cache.range(batches) {
        let start = cached.position;
        let end = start + cached.bytes.len() as u64;
        let (from, to) = (range.start.max(start), range.end.min(end));
        if from < to {
            out.extend_from_slice(&cached.bytes[(from - start) as usize..(to - start) as usize]);
        }
    }
    debug_assert_eq!(out.len() as u64, range.end - range.start, "the batches cover the range");
    out
}

/// Blocks of a deleted segment freed per step by [`release_gradually`].
const RELEASE_STEP_BYTES: u64 = 64 << 20;

/// Frees a deleted segment's blocks a step at a time before its unlink:
/// truncating from the end, each step synced, so a filesystem mounted with
/// online discard trims one step per journal commit instead of a whole
/// segment at once, which stalls the device under the writes of every log
/// on it (170-400 ms measured here for a 256 MiB segment, ext4 `discard`).
/// Only when no reader holds the file; errors are left to the unlink.
async fn release_gradually<S: Storage>(file: &Rc<S::File>) {
    if Rc::strong_count(file) > 1 {
        return;
    }
    let Ok(mut size) = file.size().await else { return };
    while size > RELEASE_STEP_BYTES {
        size -= RELEASE_STEP_BYTES;
        if file.truncate(size).await.is_err() || file.fdatasync().await.is_err() {
            return;
        }
    }
}

/// Polls a set of futures together; returns their outputs in order.
pub(crate) async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every future completed")).collect()
}

pub(crate) async fn write_recovery_point<S: Storage>(storage: &S, dir: &Path, offset: i64) -> io::Result<()> {
    let text = format!("pinion-recovery-point v1\n{offset}\n");
    write_file_atomic(storage, &dir.join(RECOVERY_POINT_FILE), text.as_bytes()).await
}

/// Parses the recovery point file; `None` if it is missing or unreadable.
pub(crate) fn parse_recovery_point(bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    if lines.next()? != "pinion-recovery-point v1" {
        return None;
    }
    lines.next()?.trim().parse().ok()
}

/// One append's place in its log's queue: taken when `append` is called,
/// released when it returns (or is dropped), so appends assign offsets in
/// call order. A dropped append that never got its turn is skipped.
struct AppendTurn<'a, S: Storage> {
    log: &'a LogInner<S>,
    ticket: u64,
}

impl<'a, S: Storage> AppendTurn<'a, S> {
    fn take(log: &'a LogInner<S>) -> Self {
        let mut st = log.state.borrow_mut();
        let ticket = st.append_tickets_issued;
        st.append_tickets_issued += 1;
        Self { log, ticket }
    }

    fn is_current(&self) -> bool {
        self.log.state.borrow().append_ticket_serving == self.ticket
    }
}

impl<S: Storage> Drop for AppendTurn<'_, S> {
    fn drop(&mut self) {
        let mut st = self.log.state.borrow_mut();
        if st.append_ticket_serving == self.ticket {
            let mut next = self.ticket + 1;
            while st.append_tickets_abandoned.remove(&next) {
                next += 1;
            }
            st.append_ticket_serving = next;
        } else {
            st.append_tickets_abandoned.insert(self.ticket);
        }
        drop(st);
        // Only appends wait for their turn.
        self.log.wake_changed();
    }
}

impl<S: Storage> Log<S> {
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn log_start_offset(&self) -> i64 {
        self.inner.state.borrow().log_start_offset
    }

    /// The offset the next appended record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.inner.state.borrow().log_end_offset
    }

    /// Whether a read at `offset` would go to the disk: it is stored but
    /// older than everything the tail cache holds.
    pub fn reads_from_disk(&self, offset: i64) -> bool {
        let st = self.inner.state.borrow();
        offset >= st.log_start_offset
            && offset < st.log_end_offset
            && st.cache.front().is_none_or(|front| front.base_offset > offset)
    }

    /// Every offset below this is on the device.
    pub fn written_offset(&self) -> i64 {
        self.inner.state.borrow().written_offset
    }

    /// Every offset below this survives a power cut.
    pub fn durable_offset(&self) -> i64 {
        self.inner.state.borrow().durable_offset
    }

    /// Why the log refuses writes, if it does.
    pub fn poisoned(&self) -> Option<Rc<str>> {
        self.inner.state.borrow().poisoned.clone()
    }

    pub fn config(&self) -> LogConfig {
        self.inner.state.borrow().config.clone()
    }

    /// Changes the topic configuration; takes effect on the next append,
    /// roll or retention pass.
    pub fn set_config(&self, config: LogConfig) {
        self.inner.state.borrow_mut().config = config;
    }

    /// The largest timestamp in the log and the offset of the batch that
    /// carries it (Kafka's ListOffsets MAX_TIMESTAMP, -3), or `None` for an
    /// empty log. Offsets are batch base offsets; see
    /// [`Log::offset_of_max_timestamp`] for the record.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        let st = self.inner.state.borrow();
        st.segments
            .iter()
            .filter(|s| s.meta.max_timestamp >= 0 && s.meta.size > 0)
            .max_by_key(|s| s.meta.max_timestamp)
            .map(|s| (s.base_offset() + i64::from(s.meta.max_timestamp_offset), s.meta.max_timestamp))
    }

    /// The offset of the record with the largest timestamp (the last record
    /// of its batch when the batch is compressed), and that timestamp.
    pub async fn offset_of_max_timestamp(&self) -> Result<Option<(i64, i64)>, ReadError> {
        let Some((batch_offset, timestamp)) = self.max_timestamp() else { return Ok(None) };
        let read = self.read(batch_offset, 1, i64::MAX).await?;
        let Some(chunk) = read.chunks.first() else { return Ok(Some((batch_offset, timestamp))) };
        let Ok(header) = BatchHeader::parse(chunk) else { return Ok(Some((batch_offset, timestamp))) };
        let bytes = &chunk[..header.size().min(chunk.len())];
        if header.is_log_append_time() || header.compression() != Compression::None {
            return Ok(Some((header.last_offset(), header.max_timestamp)));
        }
        let records = batch::uncompressed_record_deltas(bytes).unwrap_or_default();
        let best = records.iter().max_by_key(|&&(offset_delta, timestamp_delta)| (timestamp_delta, -offset_delta));
        Ok(Some(match best {
            Some(&(offset_delta, timestamp_delta)) => {
                (header.base_offset + offset_delta, header.base_timestamp + timestamp_delta)
            }
            None => (header.last_offset(), header.max_timestamp),
        }))
    }

    pub fn segment_count(&self) -> usize {
        self.inner.state.borrow().segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.inner.state.borrow().segments.iter().map(|s| s.base_offset()).collect()
    }

    /// Bytes stored in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.inner.state.borrow().segments.iter().map(|s| s.meta.size).sum()
    }

    /// Appends the batches in `records` (one or more RecordBatch v2, as in a
    /// produce request) after checking each; all or nothing. Assigns offsets
    /// and stamps `leader_epoch`. Returns once the batches are in the log
    /// (readable); [`Log::wait`] tells when they are written or durable.
    /// Batches of idempotent producers follow [`crate::producer_state`]: a
    /// retry is answered with its original offsets and stored once.
    pub async fn append(&self, mut records: BytesMut, leader_epoch: i32) -> Result<AppendInfo, AppendError> {
        let mut batches = batch::split_batches(&records)?;
        let (max_message_bytes, log_append_time) = {
            let st = self.inner.state.borrow();
            (st.config.max_message_bytes, st.config.message_timestamp_type == TimestampType::LogAppendTime)
        };
        for (range, header) in &mut batches {
            if range.len() > max_message_bytes {
                return Err(BatchError::TooLarge { size: range.len(), max: max_message_bytes }.into());
            }
            if !log_append_time {
                batch::repair_max_timestamp(&mut records[range.clone()], header);
            }
        }
        let total_bytes = records.len();
        let record_count: i64 = batches.iter().map(|(_, h)| i64::from(h.last_offset_delta) + 1).sum();
        // Appends take their turn in the order they were called, so a
        // client's pipelined requests are stored in request order even when
        // one of them waits (a roll, backpressure).
        let turn = AppendTurn::take(&self.inner);
        while !turn.is_current() {
            self.inner.changed().await;
        }
        self.inner.shard.wait_for_write_capacity().await;
        loop {
            enum Next {
                Append(i64),
                Roll(i64),
                Wait,
            }
            let next = {
                let mut st = self.inner.state.borrow_mut();
                st.check_writable()?;
                // Checked and recorded with no await in between (`append_now`).
                if let Some(duplicate) = st.producers.check(&batches)? {
                    return Ok(duplicate.append_info(&st.config, st.log_start_offset));
                }
                if st.rolling {
                    Next::Wait
                } else {
                    let now_ms = self.inner.shard.clock.now_ms();
                    let active = st.active();
                    let last_offset = st.log_end_offset + record_count - 1;
                    let too_old = active.meta.size > 0 && now_ms - active.created_ms >= st.config.segment_ms;
                    if too_old || !active.meta.fits(total_bytes as u64, last_offset, st.config.segment_bytes) {
                        st.rolling = true;
                        Next::Roll(st.log_end_offset)
                    } else {
                        Next::Append(now_ms)
                    }
                }
            };
            match next {
                Next::Append(now_ms) => return Ok(self.append_now(&mut records, &batches, leader_epoch, now_ms)),
                Next::Roll(base) => {
                    let rolled = self.roll(base).await;
                    self.inner.state.borrow_mut().rolling = false;
                    self.inner.wake_all();
                    rolled?;
                }
                Next::Wait => self.inner.changed().await,
            }
        }
    }

    fn append_now(
        &self,
        records: &mut BytesMut,
        batches: &[(std::ops::Range<usize>, BatchHeader)],
        leader_epoch: i32,
        now_ms: i64,
    ) -> AppendInfo {
        let shard = &self.inner.shard;
        let mut st = self.inner.state.borrow_mut();
        let log_append_time = st.config.message_timestamp_type == TimestampType::LogAppendTime;
        let index_interval_bytes = st.config.index_interval_bytes;
        let first_offset = st.log_end_offset;
        let mut next_offset = first_offset;
        let mut total = 0usize;
        for (range, header) in batches {
            let mut bytes = records.split_to(range.len());
            batch::set_base_offset(&mut bytes, next_offset);
            batch::set_partition_leader_epoch(&mut bytes, leader_epoch);
            let mut header = *header;
            header.base_offset = next_offset;
            header.partition_leader_epoch = leader_epoch;
            if log_append_time {
                batch::set_log_append_time(&mut bytes, now_ms);
                header.max_timestamp = now_ms;
            }
            let active = st.segments.back_mut().expect("active segment");
            let position = active.meta.size;
            active.meta.note_batch(&header, position, index_interval_bytes);
            let segment_base = active.base_offset();
            st.producers.note_batch(&header);
            st.cache.push_back(CachedBatch {
                base_offset: next_offset,
                last_offset: header.last_offset(),
                segment_base,
                position,
                bytes: bytes.freeze(),
                seq: shard.next_seq(),
            });
            next_offset = header.last_offset() + 1;
            total += range.len();
        }
        st.log_end_offset = next_offset;
        st.unflushed_bytes += total;
        let log_start_offset = st.log_start_offset;
        drop(st);
        shard.note_appended(total);
        shard.mark_dirty(&self.inner);
        shard.evict_if_needed();
        // New data concerns only readers waiting for it; acks waiters are
        // woken by the flush round that writes it.
        wake_list(&self.inner.data_wakers);
        AppendInfo {
            base_offset: first_offset,
            last_offset: next_offset - 1,
            log_append_time_ms: if log_append_time { now_ms } else { -1 },
            log_start_offset,
            bytes: total,
            duplicate: false,
        }
    }

    /// Seals the active segment and starts a new one at `base_offset`.
    async fn roll(&self, base_offset: i64) -> Result<(), AppendError> {
        crate::producer_state::take_snapshot_in_background(&self.inner, base_offset);
        let path = self.inner.dir.join(segment_file_name(base_offset, "log"));
        let (preallocate, segment_bytes) = {
            let st = self.inner.state.borrow();
            (st.config.preallocate, st.config.segment_bytes)
        };
        let storage = &self.inner.shard.storage;
        let io_err = |e: io::Error| AppendError::Io(Rc::new(e));
        let first_step = crate::segment::preallocation_target(0, segment_bytes);
        let grow_size = self.inner.shard.preallocation_grows_size();
        let (file, reserved, reused) = match self.reuse_recycled(&path).await {
            Some((file, bytes)) => (file, bytes, true),
            None => {
                let file = storage.open(&path, OpenMode::CreateNew).await.map_err(io_err)?;
                if preallocate {
                    file.preallocate(first_step, grow_size).await.map_err(io_err)?;
                }
                (file, if preallocate { first_step } else { 0 }, false)
            }
        };
        let now_ms = self.inner.shard.clock.now_ms();
        let mut st = self.inner.state.borrow_mut();
        let active = st.segments.back_mut().expect("active segment");
        active.sealed = true;
        active.meta.finish_time_index();
        let mut segment = Segment::new(SegmentMeta::new(base_offset), file, path, now_ms);
        // A recycled file already has its old size, all written extents.
        segment.note_preallocation(reserved, grow_size || reused);
        if reused {
            segment.written_extents_end = reserved;
        }
        st.segments.push_back(segment);
        drop(st);
        tracing::debug!(log = %self.inner.dir.display(), base_offset, "rolled to a new segment");
        self.inner.shard.mark_dirty(&self.inner);
        Ok(())
    }

    /// Renames a recycled segment file, if the log keeps one, to `path`
    /// for a new segment. The next round that acknowledges durability
    /// syncs the directory too (an overwrite changes no metadata, so its
    /// fdatasync would not carry the rename). Returns the file and its size
    /// when kept (nothing writes to a kept file): blocks already written,
    /// which need no preallocation. The old bytes past the new data are
    /// never read (reads stop at the log's own sizes); recovery cuts them
    /// off.
    async fn reuse_recycled(&self, path: &Path) -> Option<(Rc<S::File>, u64)> {
        let RecycledFile { path: recycled_path, file, bytes } = self.inner.state.borrow_mut().recycled.pop()?;
        self.inner.shard.release_recycled(bytes);
        let storage = &self.inner.shard.storage;
        match storage.rename(&recycled_path, path).await {
            Ok(()) => {
                // The next round that acknowledges durability syncs the
                // directory first; acks=1 appends need not wait for it.
                self.inner.state.borrow_mut().dir_renames += 1;
                tracing::debug!(log = %self.inner.dir.display(), bytes, "new segment overwrites a recycled file");
                Some((file, bytes))
            }
            Err(e) => {
                tracing::warn!(path = %recycled_path.display(), error = %e, "cannot reuse a recycled segment file; creating a new one");
                let _ = file.close().await;
                let _ = storage.remove_file(&recycled_path).await;
                let _ = storage.remove_file(path).await;
                None
            }
        }
    }

    /// Resolves when every offset up to and including `last_offset` is
    /// written (or durable), or with the poison reason if a write failed.
    pub async fn wait(&self, last_offset: i64, durability: Durability) -> Result<(), AppendError> {
        loop {
            {
                let mut st = self.inner.state.borrow_mut();
                if let Some(reason) = &st.poisoned {
                    return Err(AppendError::Poisoned(reason.clone()));
                }
                let reached = match durability {
                    Durability::Written => st.written_offset > last_offset,
                    Durability::Durable => st.durable_offset > last_offset,
                };
                if reached {
                    return Ok(());
                }
                if last_offset >= st.log_end_offset {
                    return Err(AppendError::Closed);
                }
                if durability == Durability::Durable && st.durable_wanted <= last_offset {
                    st.durable_wanted = last_offset + 1;
                    if !st.dirty {
                        drop(st);
                        self.inner.shard.mark_dirty(&self.inner);
                    }
                }
            }
            self.inner
                .changed_for(match durability {
                    Durability::Written => WaitFor::Written(last_offset),
                    Durability::Durable => WaitFor::Durable(last_offset),
                })
                .await;
        }
    }

    /// Resolves when the log end offset passes `offset` (new data to read),
    /// or the log is closed. For long-polling fetches.
    pub async fn wait_for_data(&self, offset: i64) {
        loop {
            {
                let st = self.inner.state.borrow();
                if st.log_end_offset > offset || st.closed || st.poisoned.is_some() {
                    return;
                }
            }
            self.inner.changed_for(WaitFor::Data).await;
        }
    }

    /// Whole batches from the one holding `offset`, up to `max_bytes` (the
    /// first batch is returned whole even if larger) and below `max_offset`
    /// (for example the high watermark). Tail reads come from the cache;
    /// older data from aligned DMA reads of the segment.
    pub async fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
    ) -> Result<ReadBatches<ReadBufOf<S>>, ReadError> {
        let mut segment_cursor: Option<usize>;
        let mut read = {
            let st = self.inner.state.borrow();
            if offset < st.log_start_offset || offset > st.log_end_offset {
                return Err(ReadError::OffsetOutOfRange {
                    offset,
                    log_start_offset: st.log_start_offset,
                    log_end_offset: st.log_end_offset,
                });
            }
            let mut read = ReadBatches {
                chunks: Vec::new(),
                bytes: 0,
                next_offset: offset,
                log_start_offset: st.log_start_offset,
                log_end_offset: st.log_end_offset,
            };
            let limit = max_offset.min(st.log_end_offset);
            if offset >= limit {
                return Ok(read);
            }
            match st.cache.front() {
                Some(front) if front.base_offset <= offset => {
                    let first = st.cache.partition_point(|b| b.last_offset < offset);
                    for cached in st.cache.range(first..) {
                        if cached.base_offset >= limit
                            || (!read.chunks.is_empty() && read.bytes + cached.bytes.len() > max_bytes)
                        {
                            break;
                        }
                        read.bytes += cached.bytes.len();
                        read.next_offset = cached.last_offset + 1;
                        read.chunks.push(Chunk::Memory(cached.bytes.clone()));
                    }
                    // A reader that got to the tail cache no longer needs
                    // the window it left behind on disk.
                    let passed = st.read_ahead.as_ref().is_some_and(|ahead| ahead.next_offset <= offset);
                    drop(st);
                    if passed {
                        self.inner.state.borrow_mut().read_ahead = None;
                    }
                    return Ok(read);
                }
                _ => segment_cursor = Some(st.segment_for(offset)),
            }
            read
        };
        // Cold read: walk segments from the one holding `offset`, starting
        // with the window read ahead for it, if there is one.
        let mut ahead = {
            let mut st = self.inner.state.borrow_mut();
            st.read_ahead.take_if(|ahead| ahead.next_offset == offset)
        };
        let limits = ReadLimits { offset, max_offset: max_offset.min(read.log_end_offset), max_bytes };
        while let Some(k) = segment_cursor {
            let (file, start, end, base) = {
                let st = self.inner.state.borrow();
                let Some(segment) = st.segments.get(k) else { break };
                let relative = (offset.max(segment.base_offset()) - segment.base_offset()).min(i64::from(u32::MAX));
                let (_, position) = segment.meta.offset_index.lookup(relative as u32);
                (segment.file.clone(), u64::from(position), segment.flushed, segment.base_offset())
            };
            // Go on into the next segment until a limit is reached, so a cold
            // read answers as a read from the tail cache does; but only where
            // the last batch ended (a flush or retention may have run
            // meanwhile, and batches must stay contiguous).
            if base >= limits.max_offset || (!read.chunks.is_empty() && base != read.next_offset) {
                break;
            }
            let prefetched = match ahead.take() {
                Some(window) if window.is_of(&file, base) => window.finish().await,
                _ => None,
            };
            if prefetched.is_some() {
                self.inner.shard.stats.borrow_mut().read_ahead_hits += 1;
            }
            match read_segment::<S>(&file, start, end, &limits, prefetched, &mut read).await? {
                SegmentStop::End => segment_cursor = Some(k + 1),
                SegmentStop::MaxOffset => break,
                SegmentStop::MaxBytes { position } => {
                    let window = Window {
                        segment_base: base,
                        position,
                        next_offset: read.next_offset,
                        end,
                        bytes: read_window_bytes(max_bytes),
                    };
                    if self.read_ahead(&file, window) {
                        // Let the window's task issue its read now, not when
                        // this task next waits (a reader that copies what it
                        // got before asking again might never wait before
                        // its next read, which would then wait for all of it).
                        futures_lite::future::yield_now().await;
                    }
                    break;
                }
            }
        }
        Ok(read)
    }

    /// Starts reading `window` ahead, in place of the log's last window;
    /// evicts the shard's oldest windows if the budget is short. Returns
    /// whether a window was started.
    fn read_ahead(&self, file: &Rc<S::File>, window: Window) -> bool {
        let shard = &self.inner.shard;
        let held_max = shard.config.read_ahead_bytes_max;
        // The old window first: its bytes count against the budget.
        self.inner.state.borrow_mut().read_ahead = None;
        let Some((start, stop)) = window.range(file.alignment()) else { return false };
        let bytes = (stop - start) as usize;
        if bytes > held_max {
            return false;
        }
        let mut logs = shard.read_ahead_logs.borrow_mut();
        let current = |(log, id): &(Weak<LogInner<S>>, u64)| {
            log.upgrade().is_some_and(|log| log.state.borrow().read_ahead.as_ref().is_some_and(|a| a.id == *id))
        };
        logs.retain(current);
        while shard.read_ahead_held.get() + bytes > held_max {
            let Some((log, _)) = logs.pop_front() else { break };
            if let Some(log) = log.upgrade() {
                log.state.borrow_mut().read_ahead = None;
            }
        }
        let id = shard.next_seq();
        let ahead = ReadAhead::start(file, id, window, (start, stop), &shard.read_ahead_held, held_max);
        let started = ahead.is_some();
        if started {
            shard.stats.borrow_mut().read_aheads += 1;
            logs.push_back((Rc::downgrade(&self.inner), id));
        }
        self.inner.state.borrow_mut().read_ahead = ahead;
        started
    }

    /// The earliest offset whose timestamp is at or after `timestamp`, with
    /// that timestamp (ListOffsets by time). Exact: a compressed batch is
    /// inflated on this path (the only read path that ever does); in a
    /// LogAppendTime batch every record has the batch's timestamp.
    pub async fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, ReadError> {
        let start = {
            let st = self.inner.state.borrow();
            let Some(segment) = st.segments.iter().find(|s| s.meta.max_timestamp >= timestamp) else {
                return Ok(None);
            };
            let relative = segment.meta.time_index.lookup(timestamp);
            (segment.base_offset() + i64::from(relative)).max(st.log_start_offset)
        };
        let mut offset = start;
        for _ in 0..1_000_000 {
            let read = self.read(offset, 1 << 20, i64::MAX).await?;
            if read.chunks.is_empty() {
                return Ok(None);
            }
            for chunk in &read.chunks {
                let mut at = 0usize;
                while at + HEADER_BYTES <= chunk.len() {
                    let header = BatchHeader::parse(&chunk[at..]).map_err(|e| ReadError::Io(io::Error::other(e)))?;
                    let bytes = &chunk[at..at + header.size()];
                    at += header.size();
                    if header.max_timestamp < timestamp || header.last_offset() < offset {
                        continue;
                    }
                    if header.is_log_append_time() {
                        return Ok(Some((header.base_offset.max(offset), header.max_timestamp)));
                    }
                    // A compressed batch is inflated here, on this rare path
                    // only, to find the exact record (as Kafka does).
                    let deltas = if header.compression() == Compression::None {
                        batch::uncompressed_record_deltas(bytes)
                    } else {
                        crate::compaction::records_of(bytes, &header)
                            .and_then(|records| batch::record_deltas(&records, header.records_count))
                    };
                    let Some(deltas) = deltas else {
                        return Ok(Some((header.base_offset.max(offset), header.max_timestamp)));
                    };
                    for (offset_delta, timestamp_delta) in deltas {
                        let record_timestamp = header.base_timestamp + timestamp_delta;
                        let record_offset = header.base_offset + offset_delta;
                        if record_timestamp >= timestamp && record_offset >= offset {
                            return Ok(Some((record_offset, record_timestamp)));
                        }
                    }
                }
            }
            offset = read.next_offset;
        }
        Ok(None)
    }

    /// Waits until everything appended so far is written (and durable if
    /// asked) and no flush is in flight.
    pub async fn flush(&self, durability: Durability) -> Result<(), AppendError> {
        loop {
            let last = self.log_end_offset() - 1;
            if last >= self.log_start_offset().min(last + 1) && last >= 0 {
                match self.wait(last, durability).await {
                    Ok(()) | Err(AppendError::Closed) => {}
                    Err(e) => return Err(e),
                }
            }
            {
                let st = self.inner.state.borrow();
                if let Some(reason) = &st.poisoned {
                    return Err(AppendError::Poisoned(reason.clone()));
                }
                let idle = st.rounds_in_flight == 0 && !st.finishing_sealed && st.unflushed_from == st.cache.len();
                let sealed_pending = st.segments.iter().any(|s| s.sealed && !s.finished);
                if idle && !sealed_pending && st.written_offset >= st.log_end_offset {
                    return Ok(());
                }
                if !st.dirty {
                    drop(st);
                    self.inner.shard.mark_dirty(&self.inner);
                }
            }
            self.inner.changed().await;
        }
    }

    /// Deletes whole segments past `retention_ms` (by their newest
    /// timestamp) or while the log is larger than `retention_bytes`, oldest
    /// first, and moves `log_start_offset` to the first segment left. The
    /// active segment is rolled first when it alone has expired. Does
    /// nothing unless `cleanup_policy` includes delete.
    pub async fn enforce_retention(&self) -> Result<RetentionOutcome, AppendError> {
        let _segments = crate::compaction::lock_segments(&self.inner, false).await;
        if !self.inner.state.borrow().config.cleanup_policy.deletes() {
            return Ok(RetentionOutcome::default());
        }
        let now_ms = self.inner.shard.clock.now_ms();
        let expired = |config: &LogConfig, segment: &Segment<S::File>| {
            config.retention_ms >= 0
                && segment.meta.max_timestamp >= 0
                && segment.meta.max_timestamp < now_ms - config.retention_ms
        };
        let roll_active = {
            let st = self.inner.state.borrow();
            st.check_writable()?;
            let active = st.active();
            active.meta.size > 0 && !st.rolling && expired(&st.config, active)
        };
        if roll_active {
            let base = {
                let mut st = self.inner.state.borrow_mut();
                st.rolling = true;
                st.log_end_offset
            };
            let rolled = self.roll(base).await;
            self.inner.state.borrow_mut().rolling = false;
            self.inner.wake_all();
            rolled?;
        }
        self.wait_for_sealed_segments_finished().await?;
        let mut outcome = RetentionOutcome::default();
        let mut doomed = Vec::new();
        {
            let mut st = self.inner.state.borrow_mut();
            let mut total: u64 = st.segments.iter().map(|s| s.meta.size).sum();
            while st.segments.len() > 1 {
                let first = &st.segments[0];
                if !first.finished {
                    break;
                }
                let by_size =
                    st.config.retention_bytes >= 0 && total - first.meta.size >= st.config.retention_bytes as u64;
                if !(expired(&st.config, first) || by_size) {
                    break;
                }
                let segment = st.segments.pop_front().expect("checked above");
                total -= segment.meta.size;
                outcome.segments_deleted += 1;
                outcome.bytes_deleted += segment.meta.size;
                let mut evicted = 0usize;
                while st.cache.front().is_some_and(|c| c.segment_base == segment.base_offset()) {
                    let cached = st.cache.pop_front().expect("checked");
                    evicted += cached.bytes.len();
                    st.unflushed_from = st.unflushed_from.saturating_sub(1);
                }
                self.inner.shard.note_evicted(evicted);
                doomed.push(segment);
            }
            st.log_start_offset = st.segments[0].base_offset().max(st.log_start_offset);
        }
        let storage = &self.inner.shard.storage;
        for segment in doomed {
            tracing::info!(log = %self.inner.dir.display(), base_offset = segment.base_offset(), "retention deletes segment");
            let (log_path, index_path, time_index_path) =
                (segment.log_path.clone(), segment.index_path(), segment.time_index_path());
            let mut doomed_paths = vec![index_path, time_index_path];
            if !self.recycle(&log_path, &segment.file).await {
                release_gradually::<S>(&segment.file).await;
                let _ = segment.file.clone().close().await;
                doomed_paths.push(log_path);
            }
            for path in doomed_paths {
                if let Err(e) = storage.remove_file(&path).await {
                    if e.kind() != io::ErrorKind::NotFound {
                        return Err(AppendError::Io(Rc::new(e)));
                    }
                }
            }
        }
        if outcome.segments_deleted > 0 {
            storage.sync_dir(&self.inner.dir).await.map_err(|e| AppendError::Io(Rc::new(e)))?;
        }
        Ok(outcome)
    }

    /// Keeps the file of a segment retention deletes for a later roll to
    /// overwrite, when recycling is on, the file fits in the shard's
    /// `recycle_bytes_max`, and no reader still holds it (it would read the
    /// new data as the old). Returns whether the file was kept.
    async fn recycle(&self, log_path: &Path, file: &Rc<S::File>) -> bool {
        let shard = &self.inner.shard;
        if !shard.config.recycle_segments || Rc::strong_count(file) != 1 {
            return false;
        }
        let Ok(bytes) = file.size().await else {
            return false;
        };
        if !shard.reserve_recycled(bytes) {
            return false;
        }
        let path = recycled_path(log_path);
        match shard.storage.rename(log_path, &path).await {
            Ok(()) => {
                self.inner.state.borrow_mut().recycled.push(RecycledFile { path, file: file.clone(), bytes });
                true
            }
            Err(e) => {
                shard.release_recycled(bytes);
                tracing::warn!(path = %log_path.display(), error = %e, "cannot keep a deleted segment for reuse; removing it");
                false
            }
        }
    }

    /// Waits until every sealed segment is finished (written, trimmed,
    /// synced, indexed): only those may be deleted. Asks for no fdatasync
    /// of the active segment, so retention under acks=1 forces none.
    async fn wait_for_sealed_segments_finished(&self) -> Result<(), AppendError> {
        loop {
            {
                let st = self.inner.state.borrow();
                if let Some(reason) = &st.poisoned {
                    return Err(AppendError::Poisoned(reason.clone()));
                }
                if !st.segments.iter().any(|s| s.sealed && !s.finished) {
                    return Ok(());
                }
                if !st.dirty {
                    drop(st);
                    // The next flush round writes what is left and finishes them.
                    self.inner.shard.mark_dirty(&self.inner);
                }
            }
            self.inner.changed().await;
        }
    }

    /// Removes every batch at or after `offset` (the whole batch holding it),
    /// for a replica that must match its leader. The caller must not append
    /// concurrently. Returns the new log end offset.
    pub async fn truncate_to(&self, offset: i64) -> Result<i64, AppendError> {
        // Stops a compaction in progress rather than waiting for it.
        let _segments = crate::compaction::lock_segments(&self.inner, true).await;
        self.flush(Durability::Durable).await?;
        let (keep, doomed_segments) = {
            let mut st = self.inner.state.borrow_mut();
            st.check_writable()?;
            if offset >= st.log_end_offset {
                return Ok(st.log_end_offset);
            }
            let keep = st.segment_for(offset.max(st.log_start_offset));
            let doomed: Vec<_> = st.segments.drain(keep + 1..).collect();
            // The kept segment's bytes past `offset` will be overwritten.
            st.read_ahead = None;
            (keep, doomed)
        };
        let storage = self.inner.shard.storage.clone();
        let io_err = |e: io::Error| AppendError::Io(Rc::new(e));
        for segment in doomed_segments {
            let paths = [segment.log_path.clone(), segment.index_path(), segment.time_index_path()];
            let _ = segment.file.clone().close().await;
            for path in paths {
                let _ = storage.remove_file(&path).await;
            }
        }
        // Rescan the kept segment up to the first batch that reaches `offset`.
        let (file, base, size, interval, index_path, time_index_path) = {
            let st = self.inner.state.borrow();
            let s = &st.segments[keep];
            (
                s.file.clone(),
                s.base_offset(),
                s.meta.size,
                st.config.index_interval_bytes,
                s.index_path(),
                s.time_index_path(),
            )
        };
        let scanned = crate::segment::scan::<S>(&file, base, size, interval).await.map_err(io_err)?;
        let mut meta = SegmentMeta::new(base);
        // Re-add batches below `offset` by walking the scan's valid range again.
        let mut position = 0u64;
        while position < scanned.meta.size {
            let buf = read_exact::<S>(&file, position, HEADER_BYTES).await.map_err(io_err)?;
            let header = BatchHeader::parse(&buf).map_err(|e| io_err(io::Error::other(e)))?;
            if header.last_offset() >= offset {
                break;
            }
            meta.note_batch(&header, position, interval);
            position += header.size() as u64;
        }
        file.truncate(meta.size).await.map_err(io_err)?;
        let tail_start = align_down(meta.size, file.alignment());
        let tail = read_exact::<S>(&file, tail_start, (meta.size - tail_start) as usize).await.map_err(io_err)?;
        file.fdatasync().await.map_err(io_err)?;
        let _ = storage.remove_file(&index_path).await;
        let _ = storage.remove_file(&time_index_path).await;
        let (new_end, preallocate, segment_bytes, new_end_size) = {
            let mut st = self.inner.state.borrow_mut();
            let segment_bytes = st.config.segment_bytes;
            let preallocate = st.config.preallocate;
            let segment = &mut st.segments[keep];
            segment.meta = meta;
            segment.flushed = segment.meta.size;
            segment.issued = segment.meta.size;
            segment.tail_block = tail;
            segment.tail_block_in_file = true;
            segment.tail_write = None;
            segment.sealed = false;
            segment.finished = false;
            // The truncation freed the blocks past the size.
            segment.written_extents_end = segment.meta.size;
            segment.file_size = segment.meta.size;
            let new_end = segment.meta.next_offset;
            let mut evicted = 0;
            while st.cache.back().is_some_and(|c| c.last_offset >= new_end) {
                evicted += st.cache.pop_back().expect("checked").bytes.len();
            }
            st.unflushed_from = st.cache.len();
            st.log_end_offset = new_end;
            st.written_offset = new_end;
            st.durable_offset = new_end;
            st.durable_wanted = st.durable_wanted.min(new_end);
            st.log_start_offset = st.log_start_offset.min(new_end);
            self.inner.shard.note_evicted(evicted);
            (new_end, preallocate, segment_bytes, st.segments[keep].meta.size)
        };
        if preallocate {
            let reserve = crate::segment::preallocation_target(align_up(new_end_size, file.alignment()), segment_bytes);
            let grow_size = self.inner.shard.preallocation_grows_size();
            file.preallocate(reserve, grow_size).await.map_err(io_err)?;
            let mut st = self.inner.state.borrow_mut();
            st.segments[keep].note_preallocation(reserve, grow_size);
        }
        crate::producer_state::rebuild(&self.inner, new_end).await.map_err(io_err)?;
        let recovery_point = self.inner.state.borrow().recoverable_offset();
        write_recovery_point(&storage, &self.inner.dir, recovery_point).await.map_err(io_err)?;
        self.inner.wake_all();
        Ok(new_end)
    }

    /// Flushes and syncs everything, trims the active segment, writes its
    /// indexes and the recovery point, and closes the files. Later appends
    /// get [`AppendError::Closed`]; a reopen scans nothing.
    pub async fn close(&self) -> Result<(), AppendError> {
        let flushed = self.flush(Durability::Durable).await;
        let io_err = |e: io::Error| AppendError::Io(Rc::new(e));
        let (segments, active) = {
            let mut st = self.inner.state.borrow_mut();
            if st.closed {
                return Ok(());
            }
            st.closed = true;
            st.read_ahead = None;
            let active = st.segments.back_mut().expect("active segment");
            active.meta.finish_time_index();
            let active = (
                active.file.clone(),
                active.meta.size,
                active.index_path(),
                active.meta.offset_index.to_bytes(),
                active.time_index_path(),
                active.meta.time_index.to_bytes(),
            );
            let mut files: Vec<_> = st.segments.iter().map(|s| s.file.clone()).collect();
            // Recycled files stay on disk for the next open to reuse.
            for recycled in st.recycled.drain(..) {
                self.inner.shard.release_recycled(recycled.bytes);
                files.push(recycled.file);
            }
            (files, active)
        };
        self.inner.shard.forget(&self.inner);
        self.inner.wake_all();
        if flushed.is_ok() {
            let storage = &self.inner.shard.storage;
            let (file, size, index_path, index, time_index_path, time_index) = active;
            file.truncate(size).await.map_err(io_err)?;
            file.fdatasync().await.map_err(io_err)?;
            write_file_atomic(storage, &index_path, &index).await.map_err(io_err)?;
            write_file_atomic(storage, &time_index_path, &time_index).await.map_err(io_err)?;
            let log_end_offset = self.log_end_offset();
            write_recovery_point(storage, &self.inner.dir, log_end_offset).await.map_err(io_err)?;
            crate::producer_state::take_snapshot(&self.inner, log_end_offset).await;
        }
        for file in segments {
            let _ = file.close().await;
        }
        let evicted: usize = {
            let mut st = self.inner.state.borrow_mut();
            let bytes = st.cache.iter().map(|c| c.bytes.len()).sum();
            st.cache.clear();
            st.unflushed_from = 0;
            bytes
        };
        self.inner.shard.note_evicted(evicted);
        flushed
    }

    /// Closes the log and removes its directory (topic deletion).
    pub async fn delete(&self) -> io::Result<()> {
        let _ = self.close().await;
        self.inner.shard.storage.remove_dir_all(&self.inner.dir).await
    }
}

/// Reads `len` bytes at any position through aligned reads.
async fn read_exact<S: Storage>(file: &S::File, position: u64, len: usize) -> io::Result<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let alignment = file.alignment();
    let start = align_down(position, alignment);
    let end = align_up(position + len as u64, alignment);
    let buf = file.read_at(start, (end - start) as usize).await?;
    let from = (position - start) as usize;
    if buf.len() < from + len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "segment shorter than expected"));
    }
    Ok(buf[from..from + len].to_vec())
}

/// The limits of one read (see [`Log::read`]).
struct ReadLimits {
    offset: i64,
    max_offset: i64,
    max_bytes: usize,
}

/// Why [`read_segment`] stopped.
enum SegmentStop {
    /// The segment's written data ended.
    End,
    /// At `max_offset`.
    MaxOffset,
    /// At `max_bytes`, before the batch at `position`.
    MaxBytes { position: u64 },
}

/// How much one disk read of a cold read (or its read-ahead) covers.
fn read_window_bytes(max_bytes: usize) -> u64 {
    const WINDOW_BYTES_MIN: u64 = 64 << 10;
    const WINDOW_BYTES_MAX: u64 = 8 << 20;
    (max_bytes as u64).clamp(WINDOW_BYTES_MIN, WINDOW_BYTES_MAX)
}

/// Collects whole batches of one segment file into `read`, starting the
/// scan at `position` (a batch boundary at or before `limits.offset`), or
/// at the read-ahead window `prefetched` if one was read for this segment,
/// and never reading at or past `end` (the bytes written to the device).
async fn read_segment<S: Storage>(
    file: &Rc<S::File>,
    mut position: u64,
    end: u64,
    limits: &ReadLimits,
    mut prefetched: Option<Prefetched<ReadBufOf<S>>>,
    read: &mut ReadBatches<ReadBufOf<S>>,
) -> Result<SegmentStop, ReadError> {
    let alignment = file.alignment();
    let mut window = read_window_bytes(limits.max_bytes);
    // Each pass either returns or moves forward; bound them anyway.
    for _ in 0..1024 {
        if position >= end {
            return Ok(SegmentStop::End);
        }
        // The bytes of this pass: [start, stop) read, of which those below
        // `data_end` are the segment's data.
        let (start, stop, data_end, buf) = match prefetched.take() {
            Some(window) => {
                position = window.position;
                (window.start, window.stop, window.end.min(end), window.buf)
            }
            None => {
                let start = align_down(position, alignment);
                let stop = align_up((position + window).min(end), alignment);
                (start, stop, end, file.read_at(start, (stop - start) as usize).await?)
            }
        };
        let valid = (buf.len() as u64).min(data_end.saturating_sub(start)) as usize;
        let mut at = (position - start) as usize;
        let mut grow = false;
        while at + HEADER_BYTES <= valid {
            let Ok(header) = BatchHeader::parse(&buf[at..valid]) else { return Ok(SegmentStop::End) };
            if header.batch_length < (HEADER_BYTES - batch::LOG_OVERHEAD_BYTES) as i32 {
                return Ok(SegmentStop::End);
            }
            let size = header.size();
            let wanted = header.last_offset() >= limits.offset;
            if wanted && header.base_offset >= limits.max_offset {
                return Ok(SegmentStop::MaxOffset);
            }
            if wanted && !read.chunks.is_empty() && read.bytes + size > limits.max_bytes {
                // A limit is reached: checked before a batch that straddles
                // the window's end makes it read a new window, which would
                // otherwise be read only to be thrown away.
                return Ok(SegmentStop::MaxBytes { position: start + at as u64 });
            }
            if at + size > valid {
                if start + (at + size) as u64 > end {
                    // Announced past the written end: nothing more to read.
                    return Ok(SegmentStop::End);
                }
                // The batch is larger than what is left of the window.
                window = window.max(size as u64 + alignment as u64);
                grow = true;
                break;
            }
            if wanted {
                read.chunks.push(Chunk::Disk(S::File::slice(&buf, at, size)));
                read.bytes += size;
                read.next_offset = header.last_offset() + 1;
            }
            at += size;
            position = start + at as u64;
        }
        // The segment's data (or the file) ended inside this window.
        if !grow && (start + valid as u64 >= end || buf.len() < (stop - start) as usize) {
            return Ok(SegmentStop::End);
        }
        // Otherwise the window (or the data read ahead) ended first: read
        // on from `position`.
    }
    Ok(SegmentStop::End)
}
