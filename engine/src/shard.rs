//! The per-shard engine: the logs one core owns, the flusher that writes
//! them, the write-behind budget and the tail cache budget.
//!
//! Lifecycle: [`Engine::start`] runs on the shard's glommio executor, spawns
//! the flusher task there, and everything it hands out ([`Log`]s) lives and
//! dies on that executor. [`Engine::shutdown`] closes every open log.
//!
//! The flusher waits for a log to become dirty, lingers up to
//! `flush_linger_us` when a caller waits for durability (unless
//! `flush_bytes` are already staged), and then starts a flush round on
//! every dirty log at once, each as a task of its
//! own; appends that arrive during a round are written by the next one,
//! which may start while the previous one's writes are still in flight (at
//! most `log::ROUNDS_IN_FLIGHT_MAX` per log), so the disk stays busy, a busy
//! shard batches naturally and an fdatasync covers every request that came
//! in meanwhile. Aligned write buffers are pooled per shard.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};
use std::time::Duration;

use crate::clock::Clock;
use crate::config::{EngineConfig, LogConfig};
use crate::error::OpenError;
use crate::io::{Storage, StorageFile};
use crate::log::{Log, LogInner};
use crate::recovery;
use crate::runtime::reactor_turn;

/// Counters a shard keeps about its write path (exported as metrics).
#[derive(Debug, Default, Clone)]
pub struct EngineStats {
    pub writes: u64,
    pub write_rounds: u64,
    pub write_time_us_total: u64,
    pub fsyncs: u64,
    pub fsync_time_us_total: u64,
    pub fsync_time_us_max: u64,
    /// Windows read ahead after cold reads, and the reads that found theirs.
    pub read_aheads: u64,
    pub read_ahead_hits: u64,
}

impl EngineStats {
    pub(crate) fn note_write(&mut self, pieces: usize, elapsed: Duration) {
        self.writes += pieces as u64;
        self.write_rounds += 1;
        self.write_time_us_total += elapsed.as_micros() as u64;
    }

    pub(crate) fn note_fsync(&mut self, elapsed: Duration) {
        let us = elapsed.as_micros() as u64;
        self.fsyncs += 1;
        self.fsync_time_us_total += us;
        self.fsync_time_us_max = self.fsync_time_us_max.max(us);
    }
}

pub(crate) struct Shard<S: Storage> {
    pub storage: S,
    pub config: EngineConfig,
    pub clock: Rc<dyn Clock>,
    pub stats: RefCell<EngineStats>,
    dirty: RefCell<VecDeque<Rc<LogInner<S>>>>,
    /// Dirty logs at their limit of rounds in flight: each goes back to
    /// `dirty` when one of its rounds ends.
    parked: RefCell<Vec<Rc<LogInner<S>>>>,
    flusher_waker: RefCell<Option<Waker>>,
    capacity_wakers: RefCell<Vec<Waker>>,
    logs: RefCell<Vec<Weak<LogInner<S>>>>,
    /// Appended bytes not yet handed to a write.
    staged_bytes: Cell<usize>,
    cache_bytes: Cell<usize>,
    /// Bytes held by read-ahead windows (see `read_ahead`), at most
    /// `config.read_ahead_bytes_max`.
    pub(crate) read_ahead_held: Rc<Cell<usize>>,
    /// The logs that started a window, oldest first, with the window's id
    /// (entries whose window was used or replaced are skipped and pruned).
    pub(crate) read_ahead_logs: RefCell<VecDeque<(Weak<LogInner<S>>, u64)>>,
    seq: Cell<u64>,
    stopping: Cell<bool>,
    /// Aligned write buffers of `write_bytes_max` bytes, reused by flush
    /// rounds: a fresh 1 MiB aligned allocation is an mmap, 256 page faults
    /// and an munmap per write. At most `WRITE_BUFFERS_POOLED_MAX`.
    write_buffers: RefCell<Vec<WriteBufOf<S>>>,
    /// Flush rounds running as tasks (see `run_flusher`).
    rounds_in_flight: Cell<usize>,
    /// Bytes of recycled segment files the shard's logs keep (at most
    /// `config.recycle_bytes_max`).
    recycled_bytes: Cell<u64>,
    /// Distinct logs the flusher wrote in the last whole window of
    /// `BUSY_LOGS_WINDOW`, and so far in the current one (see
    /// `EngineConfig::inline_write_logs_max`).
    busy_logs: Cell<usize>,
    window_logs: Cell<usize>,
    window: Cell<u64>,
    window_started: Cell<std::time::Instant>,
}

/// The flusher takes a reactor turn (below) once it has copied this many
/// bytes into write buffers since the executor last polled its io_uring.
/// glommio submits queued I/O only between its passes over the ready tasks,
/// so without the turn the first round's writes waited for the copies of
/// every other round planned in the same pass: after a burst of
/// completions, one busy log's disk sat idle for 1-3 ms while the shard
/// planned the next 8 MiB (a third of the time, traced in the engine bench).
const COPIED_BYTES_PER_TURN: usize = 1 << 20;

/// How long the shard counts the logs it writes, for
/// `EngineConfig::inline_write_logs_max`.
const BUSY_LOGS_WINDOW: Duration = Duration::from_millis(100);

type WriteBufOf<S> = <<S as Storage>::File as StorageFile>::WriteBuf;

/// Write buffers a shard keeps for reuse (of `write_bytes_max` each, so 16
/// MiB at the default; heap memory, not glommio's registered `io_memory`).
const WRITE_BUFFERS_POOLED_MAX: usize = 16;

impl<S: Storage> Shard<S> {
    /// Whether preallocation grows segment files to their reserved size, so
    /// appends are overwrites issued inline: while the flush passes write
    /// few logs (`EngineConfig::inline_write_logs_max`).
    pub fn preallocation_grows_size(&self) -> bool {
        let max = self.config.inline_write_logs_max;
        max > 0 && self.busy_logs.get().max(self.window_logs.get()) <= max
    }

    /// Counts `logs`, about to be flushed, into the current window.
    fn count_busy_logs(&self, logs: &[Rc<LogInner<S>>]) {
        let now = std::time::Instant::now();
        if now.duration_since(self.window_started.get()) >= BUSY_LOGS_WINDOW {
            self.busy_logs.set(self.window_logs.get());
            self.window_logs.set(0);
            self.window.set(self.window.get() + 1);
            self.window_started.set(now);
        }
        let window = self.window.get();
        for log in logs {
            if log.flushed_in_window.replace(window) != window {
                self.window_logs.set(self.window_logs.get() + 1);
            }
        }
    }

    /// Takes `bytes` of the budget for kept recycled segment files; false
    /// when recycling is off or the file does not fit.
    pub fn reserve_recycled(&self, bytes: u64) -> bool {
        let kept = self.recycled_bytes.get();
        if !self.config.recycle_segments || kept.saturating_add(bytes) > self.config.recycle_bytes_max {
            return false;
        }
        self.recycled_bytes.set(kept + bytes);
        true
    }

    /// Gives back the budget of a kept file that was reused or dropped.
    pub fn release_recycled(&self, bytes: u64) {
        self.recycled_bytes.set(self.recycled_bytes.get().saturating_sub(bytes));
    }

    pub fn next_seq(&self) -> u64 {
        let seq = self.seq.get() + 1;
        self.seq.set(seq);
        seq
    }

    pub fn note_appended(&self, bytes: usize) {
        let staged = self.staged_bytes.get();
        self.staged_bytes.set(staged + bytes);
        if staged < self.config.flush_bytes && staged + bytes >= self.config.flush_bytes {
            // Cuts a linger short.
            self.wake_flusher();
        }
        self.cache_bytes.set(self.cache_bytes.get() + bytes);
    }

    pub fn note_handed_to_write(&self, bytes: usize) {
        self.staged_bytes.set(self.staged_bytes.get().saturating_sub(bytes));
        if self.staged_bytes.get() < self.config.write_behind_bytes_max {
            for waker in std::mem::take(&mut *self.capacity_wakers.borrow_mut()) {
                waker.wake();
            }
        }
    }

    /// A buffer of `len` bytes for `file.write_at_reusing` whose contents are
    /// unspecified (the caller overwrites every byte): a pooled one when
    /// `len` is the pooled size.
    pub fn take_write_buf(&self, file: &S::File, len: usize) -> WriteBufOf<S> {
        if len == self.write_buf_pooled_len() {
            if let Some(buf) = self.write_buffers.borrow_mut().pop() {
                return buf;
            }
        }
        file.alloc_write_buf_for_overwrite(len)
    }

    /// Gives a buffer back after its write completed.
    pub fn recycle_write_buf(&self, buf: WriteBufOf<S>) {
        let mut pool = self.write_buffers.borrow_mut();
        if buf.as_ref().len() == self.write_buf_pooled_len() && pool.len() < WRITE_BUFFERS_POOLED_MAX {
            pool.push(buf);
        }
    }

    pub fn write_buf_pooled_len(&self) -> usize {
        self.config.write_bytes_max.max(4096)
    }

    pub fn note_evicted(&self, bytes: usize) {
        self.cache_bytes.set(self.cache_bytes.get().saturating_sub(bytes));
    }

    pub fn mark_dirty(&self, log: &Rc<LogInner<S>>) {
        {
            let Ok(mut st) = log.state.try_borrow_mut() else {
                // Borrowed by the caller, which sets the flag itself.
                self.dirty.borrow_mut().push_back(log.clone());
                self.wake_flusher();
                return;
            };
            if st.dirty {
                return;
            }
            st.dirty = true;
        }
        self.dirty.borrow_mut().push_back(log.clone());
        self.wake_flusher();
    }

    pub(crate) fn wake_flusher(&self) {
        if let Some(waker) = self.flusher_waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Appends wait here while more than `write_behind_bytes_max` bytes are
    /// staged on the shard, so a fast producer cannot outrun the disk
    /// without bound.
    pub async fn wait_for_write_capacity(&self) {
        std::future::poll_fn(|cx| {
            if self.staged_bytes.get() < self.config.write_behind_bytes_max || self.stopping.get() {
                Poll::Ready(())
            } else {
                self.capacity_wakers.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Drops the oldest written batches from the tail caches of this
    /// shard's logs until the cache is under its budget.
    pub fn evict_if_needed(&self) {
        let max = self.config.cache_bytes_max;
        if self.cache_bytes.get() <= max {
            return;
        }
        let low_water = max - max / 8;
        let logs: Vec<Rc<LogInner<S>>> = {
            let mut logs = self.logs.borrow_mut();
            logs.retain(|l| l.strong_count() > 0);
            logs.iter().filter_map(Weak::upgrade).collect()
        };
        // Bounded: each pass evicts from the log holding the oldest batch.
        for _ in 0..logs.len() * 4 + 16 {
            if self.cache_bytes.get() <= low_water {
                return;
            }
            let oldest = logs
                .iter()
                .filter_map(|l| {
                    let st = l.state.try_borrow().ok()?;
                    (st.unflushed_from > 0).then(|| (st.cache.front().map(|c| c.seq).unwrap_or(u64::MAX), l))
                })
                .min_by_key(|(seq, _)| *seq);
            let Some((_, log)) = oldest else { return };
            let Ok(mut st) = log.state.try_borrow_mut() else { return };
            let mut evicted = 0usize;
            let budget = self.cache_bytes.get() - low_water;
            while st.unflushed_from > 0 && evicted < budget {
                let segment_flushed = {
                    let front = st.cache.front().expect("unflushed_from > 0");
                    let end = front.position + front.bytes.len() as u64;
                    st.segments.iter().any(|s| s.base_offset() == front.segment_base && s.flushed >= end)
                };
                if !segment_flushed {
                    break;
                }
                let cached = st.cache.pop_front().expect("checked");
                st.unflushed_from -= 1;
                evicted += cached.bytes.len();
            }
            drop(st);
            if evicted == 0 {
                return;
            }
            self.note_evicted(evicted);
        }
    }

    pub fn forget(&self, log: &Rc<LogInner<S>>) {
        self.logs.borrow_mut().retain(|l| !std::ptr::eq(l.as_ptr(), Rc::as_ptr(log)));
    }

    async fn run_flusher(self: Rc<Self>) {
        // Bytes copied into write buffers since the executor last polled its
        // io_uring (see `COPIED_BYTES_PER_TURN`).
        let mut copied = 0usize;
        loop {
            let mut waited = false;
            std::future::poll_fn(|cx| {
                if !self.dirty.borrow().is_empty() || self.stopping.get() {
                    Poll::Ready(())
                } else {
                    waited = true;
                    *self.flusher_waker.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
            .await;
            if waited {
                copied = 0;
            }
            if self.stopping.get() {
                // Logs are closed (`shutdown`) or abandoned; stopped only once
                // no round is in flight, so nothing writes after either returns.
                self.wait_for_rounds(0).await;
                return;
            }
            let linger = self.config.flush_linger_us;
            if linger > 0 && self.staged_bytes.get() < self.config.flush_bytes && self.dirty_log_wants_sync() {
                // Lingers for more appends, but no longer than until
                // `flush_bytes` are staged (`note_appended` wakes it then).
                // Only while a caller waits for durability: the linger
                // gathers requests into one fdatasync. When the dirty logs'
                // appends wait only for their writes, the rounds start at
                // once; appends arriving meanwhile go in the next round
                // (without the linger, written appends at a fixed rate had
                // a lower p50 and p99, and the broker's acks=1 throughput
                // was higher in four pairs of four).
                let mut timer = std::pin::pin!(glommio::timer::sleep(Duration::from_micros(linger)));
                std::future::poll_fn(|cx| {
                    if self.staged_bytes.get() >= self.config.flush_bytes || self.stopping.get() {
                        return Poll::Ready(());
                    }
                    if timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(());
                    }
                    *self.flusher_waker.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                })
                .await;
            }
            let logs: Vec<_> = self.dirty.borrow_mut().drain(..).collect();
            self.count_busy_logs(&logs);
            for log in logs {
                if copied >= COPIED_BYTES_PER_TURN {
                    reactor_turn().await;
                    copied = 0;
                    if self.stopping.get() {
                        break;
                    }
                }
                if !log.has_round_capacity() {
                    // At its limit of rounds (it has one in flight): parked
                    // until one of them ends, while the other logs go on.
                    // Waiting here instead held every log's next round
                    // behind some round's fdatasync.
                    self.parked.borrow_mut().push(log);
                    continue;
                }
                // Rounds run as tasks of their own, so the next round can be
                // planned and written while this one's writes complete.
                let round = log.plan_round();
                copied += round.copied_bytes();
                self.rounds_in_flight.set(self.rounds_in_flight.get() + 1);
                let shard = self.clone();
                glommio::spawn_local(async move {
                    // `run_round` has unparked the log already.
                    log.run_round(round).await;
                    shard.rounds_in_flight.set(shard.rounds_in_flight.get() - 1);
                    shard.evict_if_needed();
                    shard.wake_flusher();
                })
                .detach();
            }
        }
    }

    /// Whether a dirty log has a caller waiting for an fdatasync.
    fn dirty_log_wants_sync(&self) -> bool {
        self.dirty.borrow().iter().any(|log| log.wants_sync())
    }

    /// Moves `log` back to the dirty queue if it was parked at its limit of
    /// rounds.
    pub(crate) fn unpark(&self, log: &Rc<LogInner<S>>) {
        let mut parked = self.parked.borrow_mut();
        if let Some(i) = parked.iter().position(|p| Rc::ptr_eq(p, log)) {
            let log = parked.swap_remove(i);
            self.dirty.borrow_mut().push_back(log);
        }
    }

    /// Resolves once at most `count` flush rounds are in flight on the shard.
    async fn wait_for_rounds(&self, count: usize) {
        std::future::poll_fn(|cx| {
            if self.rounds_in_flight.get() <= count {
                Poll::Ready(())
            } else {
                *self.flusher_waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// One shard's storage engine. Create with [`Engine::start`] on the shard's
/// executor; not `Send`.
pub struct Engine<S: Storage> {
    shard: Rc<Shard<S>>,
    flusher: RefCell<Option<glommio::task::JoinHandle<()>>>,
}

impl<S: Storage> std::fmt::Debug for Engine<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("config", &self.shard.config).finish()
    }
}

impl<S: Storage> Engine<S> {
    /// Prepares each data directory (see `io::dma` for why) and starts the
    /// flusher on the current glommio executor.
    pub async fn start(
        storage: S,
        config: EngineConfig,
        clock: Rc<dyn Clock>,
        data_dirs: &[PathBuf],
    ) -> std::io::Result<Self> {
        for dir in data_dirs {
            storage.prepare_dir(dir).await?;
        }
        let shard = Rc::new(Shard {
            storage,
            config,
            clock,
            stats: RefCell::new(EngineStats::default()),
            dirty: RefCell::new(VecDeque::new()),
            parked: RefCell::new(Vec::new()),
            flusher_waker: RefCell::new(None),
            capacity_wakers: RefCell::new(Vec::new()),
            logs: RefCell::new(Vec::new()),
            staged_bytes: Cell::new(0),
            cache_bytes: Cell::new(0),
            read_ahead_held: Rc::new(Cell::new(0)),
            read_ahead_logs: RefCell::new(VecDeque::new()),
            seq: Cell::new(0),
            stopping: Cell::new(false),
            write_buffers: RefCell::new(Vec::new()),
            rounds_in_flight: Cell::new(0),
            recycled_bytes: Cell::new(0),
            busy_logs: Cell::new(0),
            window_logs: Cell::new(0),
            window: Cell::new(1),
            window_started: Cell::new(std::time::Instant::now()),
        });
        let flusher = glommio::spawn_local(shard.clone().run_flusher()).detach();
        Ok(Self { shard, flusher: RefCell::new(Some(flusher)) })
    }

    /// Opens (recovering if needed) or creates the log in `dir`.
    pub async fn open_log(&self, dir: &Path, config: LogConfig) -> Result<Log<S>, OpenError> {
        let state = recovery::load(&self.shard, dir, config)
            .await
            .map_err(|source| OpenError { dir: dir.to_path_buf(), source })?;
        let inner = Rc::new(LogInner::new(dir.to_path_buf(), self.shard.clone(), state));
        self.shard.logs.borrow_mut().push(Rc::downgrade(&inner));
        Ok(Log { inner })
    }

    pub fn storage(&self) -> &S {
        &self.shard.storage
    }

    pub fn config(&self) -> &EngineConfig {
        &self.shard.config
    }

    pub fn stats(&self) -> EngineStats {
        self.shard.stats.borrow().clone()
    }

    /// Bytes held by the tail caches of this shard's logs.
    pub fn cache_bytes(&self) -> usize {
        self.shard.cache_bytes.get()
    }

    /// Bytes held by the windows read ahead after cold reads (at most
    /// `EngineConfig::read_ahead_bytes_max`).
    pub fn read_ahead_bytes(&self) -> usize {
        self.shard.read_ahead_held.get()
    }

    /// Closes every open log (flushing and syncing it) and stops the flusher.
    pub async fn shutdown(&self) {
        let logs: Vec<_> = self.shard.logs.borrow().iter().filter_map(Weak::upgrade).collect();
        for inner in logs {
            let log = Log { inner };
            if let Err(e) = log.close().await {
                tracing::warn!(log = %log.dir().display(), error = %e, "log did not close cleanly");
            }
        }
        self.stop_flusher().await;
    }

    /// Stops the flusher without closing logs, like a process that dies:
    /// for crash tests.
    pub async fn abandon(&self) {
        self.shard.dirty.borrow_mut().clear();
        self.stop_flusher().await;
    }

    async fn stop_flusher(&self) {
        self.shard.stopping.set(true);
        self.shard.wake_flusher();
        for waker in std::mem::take(&mut *self.shard.capacity_wakers.borrow_mut()) {
            waker.wake();
        }
        let flusher = self.flusher.borrow_mut().take();
        if let Some(flusher) = flusher {
            flusher.await;
        }
    }
}
