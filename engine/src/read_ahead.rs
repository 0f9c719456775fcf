//! Read-ahead for cold reads.
//!
//! A consumer far behind the tail reads a partition from disk in fetch-sized
//! steps, one fetch at a time: while the broker sends one answer and the
//! client takes it apart, the disk would sit idle, and the next fetch would
//! wait for its whole read. Kafka gets that overlap from the page cache's
//! readahead; O_DIRECT reads have none. So when a cold read stops at its
//! byte limit inside a segment, the log reads the next window of that
//! segment at once, in a task of its own, and the next read that starts
//! exactly there takes the buffer instead of going to the disk.
//!
//! A log keeps at most one window (the newest), and the shard's windows
//! together hold at most `EngineConfig::read_ahead_bytes_max`: a new window
//! that does not fit evicts the oldest ones (a consumer that stopped leaves
//! its window behind, and must not keep the others from reading ahead). A
//! window is
//! only used while its segment is still the same file at the same base
//! offset (compaction replaces files, recycling reuses them under another
//! base) and the log has not been truncated since (truncation drops it).

use std::cell::Cell;
use std::io;
use std::rc::Rc;

use crate::io::{align_down, align_up, StorageFile};

/// A window being read, or read, after a cold read.
pub(crate) struct ReadAhead<F: StorageFile> {
    /// Tells this window from a later one of the same log.
    pub id: u64,
    file: Rc<F>,
    segment_base: i64,
    /// The batch boundary the window starts from, and the offset of the
    /// batch there: where the read it serves must start.
    position: u64,
    pub next_offset: i64,
    /// The aligned range read, and the segment's written end when it was
    /// issued: bytes past `end` are not data.
    start: u64,
    stop: u64,
    end: u64,
    task: glommio::task::JoinHandle<io::Result<F::ReadBuf>>,
    /// The shard's bytes held by windows; this one's `stop - start` is
    /// given back when it is dropped, used or not.
    held: Rc<Cell<usize>>,
}

/// A window's bytes, once read.
pub(crate) struct Prefetched<B> {
    pub position: u64,
    pub start: u64,
    pub stop: u64,
    pub end: u64,
    pub buf: B,
}

/// Where and how much to read ahead.
pub(crate) struct Window {
    pub segment_base: i64,
    pub position: u64,
    pub next_offset: i64,
    /// The segment's written end: nothing at or past it is read.
    pub end: u64,
    pub bytes: u64,
}

impl Window {
    /// The aligned range to read, or `None` if the segment has no data
    /// there yet.
    pub fn range(&self, alignment: usize) -> Option<(u64, u64)> {
        let start = align_down(self.position, alignment);
        let stop = align_up(self.position.saturating_add(self.bytes).min(self.end), alignment);
        (self.position < self.end && stop > start).then_some((start, stop))
    }
}

impl<F: StorageFile> ReadAhead<F> {
    /// Starts reading `window` of `file`, whose aligned range is
    /// `(start, stop)` (`Window::range`), unless the shard's windows already
    /// hold `held_max` bytes (a window a reader has taken but not yet used
    /// still counts).
    pub fn start(
        file: &Rc<F>,
        id: u64,
        window: Window,
        (start, stop): (u64, u64),
        held: &Rc<Cell<usize>>,
        held_max: usize,
    ) -> Option<Self> {
        let bytes = (stop - start) as usize;
        if held.get().saturating_add(bytes) > held_max {
            return None;
        }
        held.set(held.get() + bytes);
        let reader = file.clone();
        let task = glommio::spawn_local(async move { reader.read_at(start, bytes).await }).detach();
        Some(Self {
            id,
            file: file.clone(),
            segment_base: window.segment_base,
            position: window.position,
            next_offset: window.next_offset,
            start,
            stop,
            end: window.end,
            task,
            held: held.clone(),
        })
    }

    /// Whether the window was read from this segment.
    pub fn is_of(&self, file: &Rc<F>, segment_base: i64) -> bool {
        Rc::ptr_eq(&self.file, file) && self.segment_base == segment_base
    }

    /// The window's bytes; `None` if its read failed (the caller reads
    /// again, and meets the error itself if it persists).
    pub async fn finish(mut self) -> Option<Prefetched<F::ReadBuf>> {
        let buf = (&mut self.task).await?.ok()?;
        Some(Prefetched { position: self.position, start: self.start, stop: self.stop, end: self.end, buf })
    }
}

impl<F: StorageFile> Drop for ReadAhead<F> {
    fn drop(&mut self) {
        // The read itself may still be in flight; its buffer goes with its task.
        self.held.set(self.held.get().saturating_sub((self.stop - self.start) as usize));
    }
}
