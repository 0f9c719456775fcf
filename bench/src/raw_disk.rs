//! The ceiling: raw O_DIRECT sequential bandwidth of the data directory's
//! device, measured with our own minimal writer and reader on the same
//! glommio executor the engine runs on.
//!
//! The writer does what the engine's flusher would do at best: one file in
//! the data directory, preallocated the way the engine preallocates
//! segments (`fallocate` with `FALLOC_FL_KEEP_SIZE`, so every write extends
//! the file size, as segment appends do; `--raw-overwrite` preallocates
//! the size instead), written sequentially with aligned buffers of
//! `write_bytes`, `inflight` writes at a time, buffers filled once with
//! random bytes (a virtual disk that compresses or skips zeros must not
//! flatter the ceiling) and reused, so the figure is the device's and not
//! our CPU's. No fdatasync: the engine's `written` acknowledgement is the
//! O_DIRECT write completing, and that is what is compared.
//!
//! `--raw-fresh-buffers` instead allocates, zeroes and fills a new aligned
//! buffer for every write, as the engine's flusher does today: the
//! difference between the two figures is what per-write buffer allocation
//! costs on this machine.
//!
//! With a pace (`engine --rate`), a second write pass follows at the
//! engine run's rate in bytes: one write of the producer batch's size
//! (rounded up to whole blocks) is scheduled at a time, each on its own
//! task, as many in flight as the disk holds, and each latency runs from
//! its scheduled time, as the engine's fixed-rate latencies do, both for
//! the write alone and in log order (done once every earlier write is
//! done, as a log acknowledges). That is the latency floor of the disk for
//! that load: an engine that wrote each batch the moment it arrived and
//! did nothing else.
//!
//! The reader reads the same file back sequentially with aligned reads,
//! `inflight` at a time and then one at a time (what a single consumer
//! fetching serially can hope for).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::io::{DmaBuffer, DmaFile, OpenOptions};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::latency::{self, Intervals, LatencySummary, MaxTimeline};
use crate::machine::{SchedStat, SystemCpu};
use crate::producer::SplitMix64;

/// How to measure the ceiling.
#[derive(Debug, Clone)]
pub struct RawSpec {
    pub write_bytes: usize,
    pub inflight: usize,
    pub write_duration: Duration,
    pub read_duration: Duration,
    /// Preallocate the file size too, so writes overwrite rather than extend.
    pub overwrite: bool,
    /// Write the whole file once first (untimed), then overwrite it over
    /// and over: writes into written extents, as the engine's steady state
    /// overwrites recycled segments.
    pub rewrite: bool,
    /// A newly allocated, zeroed and filled buffer for every write.
    pub fresh_buffers: bool,
    pub keep_file: bool,
    /// A paced write pass after the bandwidth pass.
    pub pace: Option<RawPace>,
}

/// A fixed-rate write pass: `write_bytes` per write, `bytes_per_sec` in all.
#[derive(Debug, Clone, Copy)]
pub struct RawPace {
    pub bytes_per_sec: f64,
    pub write_bytes: usize,
}

/// What the paced write pass measured.
#[derive(Debug, Clone, Serialize)]
pub struct PacedResult {
    pub bytes_per_sec_target: f64,
    pub bytes_per_sec: f64,
    pub write_bytes_per_op: usize,
    /// From each write's scheduled time to its completion, µs.
    pub write_latency_us: LatencySummary,
    /// From each write's scheduled time until it and every earlier write
    /// have completed, µs: the floor of a log's acknowledgement, which may
    /// not report a batch written while an earlier one is not (recovery
    /// truncates at the first missing batch).
    pub in_order_latency_us: LatencySummary,
    /// Largest in-order latency (µs) of each 0.5 s interval.
    pub latency_max_us_timeline: Vec<u64>,
}

/// Writes a paced pass keeps in flight at most; one more waits, and the
/// wait is charged to its latency.
const PACED_INFLIGHT_MAX: usize = 1024;

/// Bytes completed per interval of a timed phase, for seeing bursts.
#[derive(Debug, Clone)]
pub struct Timeline(Intervals);

impl Timeline {
    pub fn new(started: Instant, interval: Duration) -> Self {
        Self(Intervals::new(started, interval))
    }

    pub fn note(&mut self, at: Instant, bytes: u64) {
        *self.0.at(at) += bytes;
    }

    /// Bytes per second of each interval (the last one may be partial).
    pub fn bytes_per_sec(&self) -> Vec<f64> {
        let secs = self.0.interval().as_secs_f64();
        self.0.values().iter().map(|&b| (b as f64 / secs).round()).collect()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RawResult {
    pub write_bytes_per_sec: f64,
    pub write_bytes: u64,
    pub write_seconds: f64,
    /// Write bandwidth in each 0.5 s interval of the write phase.
    pub write_bytes_per_sec_timeline: Vec<f64>,
    pub read_bytes_per_sec: f64,
    pub read_qd1_bytes_per_sec: f64,
    /// Busy cores of the whole machine during the write phase (all processes).
    pub write_machine_busy_cores: f64,
    /// Fraction of the write phase the shard's thread waited for a CPU.
    pub write_runqueue_wait_fraction: f64,
    pub write_bytes_per_op: usize,
    pub inflight: usize,
    pub overwrite: bool,
    pub rewrite: bool,
    pub fresh_buffers: bool,
    /// The paced pass (`RawSpec::pace`).
    pub paced: Option<PacedResult>,
}

/// Size of the file `RawSpec::rewrite` cycles through: larger than the
/// engine bench's steady state keeps (512 MiB of retention).
const REWRITE_FILE_BYTES: u64 = 1 << 30;

/// Where the raw file goes in `dir`.
pub fn raw_file_path(dir: &Path) -> PathBuf {
    dir.join(format!("pinion-bench-raw-{}.dat", std::process::id()))
}

fn glommio_err(e: glommio::GlommioError<()>) -> crate::Error {
    Box::new(std::io::Error::other(e.to_string()))
}

fn free_bytes(dir: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return 0 };
    // SAFETY: statvfs is plain data, filled by the call below.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is NUL-terminated and `stat` writable.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return 0;
    }
    stat.f_bavail * stat.f_frsize
}

/// Measures write then read bandwidth of a fresh file in `dir`. The
/// directory must already have been prepared for DMA (see
/// `pinion_engine::io::dma`). Must run on a glommio executor.
pub async fn measure(dir: &Path, spec: &RawSpec) -> Result<RawResult, crate::Error> {
    assert!(spec.write_bytes.is_multiple_of(4096) && spec.write_bytes > 0 && spec.inflight > 0);
    let path = raw_file_path(dir);
    let file = Rc::new(
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .dma_open(&path)
            .await
            .map_err(glommio_err)?,
    );
    // Room for the phase at 4 GB/s, a bit more than this device's bursts,
    // without eating the disk; rewrites cycle through a smaller file,
    // written once beforehand.
    let wanted =
        if spec.rewrite { REWRITE_FILE_BYTES } else { (spec.write_duration.as_secs_f64() * 4e9) as u64 + (1 << 30) };
    let room = free_bytes(dir).saturating_sub(4 << 30) / 2;
    let capacity = wanted.min(room) / spec.write_bytes as u64 * spec.write_bytes as u64;
    if capacity < 64 * spec.write_bytes as u64 {
        return Err(format!("not enough free space in {} for the raw write test", dir.display()).into());
    }
    file.pre_allocate(capacity, !(spec.overwrite || spec.rewrite)).await.map_err(glommio_err)?;

    let mut rng = SplitMix64::new(0x7261_7721);
    let buffers: Vec<Rc<DmaBuffer>> = (0..spec.inflight)
        .map(|_| {
            let mut buf = file.alloc_dma_buffer(spec.write_bytes);
            rng.fill(buf.as_bytes_mut());
            Rc::new(buf)
        })
        .collect();

    if spec.rewrite {
        // Untimed: every block of the file becomes a written extent.
        let pass = WritePass { capacity, deadline: None, wrap: false, fresh_buffers: false };
        let unused = Rc::new(std::cell::RefCell::new(Timeline::new(Instant::now(), Duration::from_secs(1))));
        write_pass(&file, &buffers, &pass, Rc::new(Cell::new(0)), unused).await?;
    }
    let written = Rc::new(Cell::new(0u64));
    let (sched_before, system_before) = (SchedStat::thread(), SystemCpu::read());
    let started = Instant::now();
    let timeline = Rc::new(std::cell::RefCell::new(Timeline::new(started, Duration::from_millis(500))));
    let pass = WritePass {
        capacity,
        deadline: Some(started + spec.write_duration),
        wrap: spec.rewrite,
        fresh_buffers: spec.fresh_buffers,
    };
    write_pass(&file, &buffers, &pass, written.clone(), timeline.clone()).await?;
    let write_wall = started.elapsed();
    let write_seconds = write_wall.as_secs_f64();
    let write_bytes = written.get();
    let (write_machine_busy_cores, _) = SystemCpu::read().cores_since(system_before, write_wall);
    let write_runqueue_wait_fraction = SchedStat::thread().since(sched_before).waiting.as_secs_f64() / write_seconds;

    let paced = match spec.pace {
        Some(pace) => Some(paced_pass(&file, capacity, pace, spec.write_duration).await?),
        None => None,
    };
    let file_bytes = write_bytes.min(capacity);
    let read_bytes_per_sec = read_phase(&file, file_bytes, spec.write_bytes, spec.inflight, spec.read_duration).await?;
    let read_qd1_bytes_per_sec = read_phase(&file, file_bytes, spec.write_bytes, 1, spec.read_duration / 2).await?;

    let timeline = timeline.borrow().bytes_per_sec();
    match Rc::try_unwrap(file) {
        Ok(file) => file.close().await.map_err(glommio_err)?,
        Err(_) => unreachable!("every worker has finished"),
    }
    if !spec.keep_file {
        std::fs::remove_file(&path)?;
    }
    Ok(RawResult {
        write_bytes_per_sec: write_bytes as f64 / write_seconds,
        write_bytes,
        write_seconds,
        write_bytes_per_sec_timeline: timeline,
        read_bytes_per_sec,
        read_qd1_bytes_per_sec,
        write_machine_busy_cores,
        write_runqueue_wait_fraction,
        write_bytes_per_op: spec.write_bytes,
        inflight: spec.inflight,
        overwrite: spec.overwrite,
        rewrite: spec.rewrite,
        fresh_buffers: spec.fresh_buffers,
        paced,
    })
}

/// One sequential pass of writes over the raw file, `buffers.len()` in
/// flight.
struct WritePass {
    capacity: u64,
    /// Stop here (`None`: at the end of the file).
    deadline: Option<Instant>,
    /// Go on from the start of the file at its end, until the deadline.
    wrap: bool,
    fresh_buffers: bool,
}

async fn write_pass(
    file: &Rc<DmaFile>,
    buffers: &[Rc<DmaBuffer>],
    pass: &WritePass,
    written: Rc<Cell<u64>>,
    timeline: Rc<std::cell::RefCell<Timeline>>,
) -> Result<(), crate::Error> {
    let next_position = Rc::new(Cell::new(0u64));
    let mut workers = Vec::new();
    for buf in buffers {
        let (file, buf, next_position, written, timeline) =
            (file.clone(), buf.clone(), next_position.clone(), written.clone(), timeline.clone());
        let len = buf.len() as u64;
        let (capacity, deadline, wrap, fresh_buffers) = (pass.capacity, pass.deadline, pass.wrap, pass.fresh_buffers);
        workers.push(glommio::spawn_local(async move {
            while deadline.is_none_or(|d| Instant::now() < d) {
                let mut position = next_position.get();
                if position + len > capacity {
                    if !wrap {
                        break;
                    }
                    position = 0;
                }
                next_position.set(position + len);
                let done = if fresh_buffers {
                    let mut fresh = file.alloc_dma_buffer(len as usize);
                    fresh.as_bytes_mut().fill(0);
                    fresh.as_bytes_mut().copy_from_slice(buf.as_bytes());
                    file.write_at(fresh, position).await
                } else {
                    file.write_rc_at(buf.clone(), position).await
                };
                let done = done.map_err(glommio_err)?;
                if done as u64 != len {
                    return Err::<(), crate::Error>(format!("short O_DIRECT write: {done} of {len}").into());
                }
                written.set(written.get() + len);
                timeline.borrow_mut().note(Instant::now(), len);
            }
            Ok(())
        }));
    }
    for worker in workers {
        worker.await?;
    }
    Ok(())
}

/// Writes `pace.write_bytes` at a time from the start of the file (going
/// round at its end) at `pace.bytes_per_sec` for `duration`, each write
/// its own task started at its scheduled time.
async fn paced_pass(
    file: &Rc<DmaFile>,
    capacity: u64,
    pace: RawPace,
    duration: Duration,
) -> Result<PacedResult, crate::Error> {
    let len = pace.write_bytes.div_ceil(4096) * 4096;
    let capacity = capacity / len as u64 * len as u64;
    if capacity == 0 {
        return Err(format!("the raw file is smaller than one paced write of {len} bytes").into());
    }
    let mut buf = file.alloc_dma_buffer(len);
    SplitMix64::new(0x7061_6365).fill(buf.as_bytes_mut());
    let buf = Rc::new(buf);
    let interval = Duration::from_secs_f64(len as f64 / pace.bytes_per_sec.max(1.0));
    let inflight = Rc::new(glommio::sync::Semaphore::new(PACED_INFLIGHT_MAX as u64));
    let started = Instant::now();
    let tally = Rc::new(RefCell::new(PacedTally::new(started)));
    let deadline = started + duration;
    let mut scheduled = started;
    let mut position = 0u64;
    let mut writes = Vec::new();
    while scheduled < deadline {
        let now = Instant::now();
        if scheduled > now {
            glommio::timer::sleep(scheduled - now).await;
        }
        let permit = inflight.acquire_static_permit(1).await.map_err(|e| e.to_string())?;
        let sequence = tally.borrow_mut().scheduled(scheduled);
        let (file, buf, tally, at) = (file.clone(), buf.clone(), tally.clone(), position);
        writes.push(glommio::spawn_local(async move {
            let _permit = permit;
            let done = file.write_rc_at(buf, at).await.map_err(glommio_err)?;
            if done != len {
                return Err::<(), crate::Error>(format!("short O_DIRECT write: {done} of {len}").into());
            }
            tally.borrow_mut().completed(sequence, Instant::now());
            Ok(())
        }));
        scheduled += interval;
        position = (position + len as u64) % capacity;
    }
    let count = writes.len();
    for write in writes {
        write.await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let tally = tally.borrow();
    Ok(PacedResult {
        bytes_per_sec_target: pace.bytes_per_sec,
        bytes_per_sec: (count * len) as f64 / seconds,
        write_bytes_per_op: len,
        write_latency_us: LatencySummary::of(&tally.each),
        in_order_latency_us: LatencySummary::of(&tally.in_order),
        latency_max_us_timeline: tally.in_order_max.maxima_us(),
    })
}

/// Latencies of the paced pass, each write alone and in log order.
struct PacedTally {
    /// Scheduled time and completion of the writes not yet done in order,
    /// oldest first; `first` is the sequence number of the oldest.
    pending: VecDeque<(Instant, bool)>,
    first: u64,
    each: Histogram<u64>,
    in_order: Histogram<u64>,
    in_order_max: MaxTimeline,
}

impl PacedTally {
    fn new(started: Instant) -> Self {
        Self {
            pending: VecDeque::new(),
            first: 0,
            each: latency::histogram(),
            in_order: latency::histogram(),
            in_order_max: MaxTimeline::new(started, Duration::from_millis(500)),
        }
    }

    /// Registers the next write; returns its sequence number.
    fn scheduled(&mut self, at: Instant) -> u64 {
        self.pending.push_back((at, false));
        self.first + self.pending.len() as u64 - 1
    }

    /// Write `sequence` completed at `now`: it counts alone now, and in log
    /// order once every earlier write has completed too.
    fn completed(&mut self, sequence: u64, now: Instant) {
        let index = (sequence - self.first) as usize;
        let scheduled = self.pending[index].0;
        latency::record(&mut self.each, now.saturating_duration_since(scheduled));
        self.pending[index].1 = true;
        while let Some(&(scheduled, true)) = self.pending.front() {
            self.pending.pop_front();
            self.first += 1;
            let waited = now.saturating_duration_since(scheduled);
            latency::record(&mut self.in_order, waited);
            self.in_order_max.note(now, waited);
        }
    }
}

/// Reads `[0, size)` sequentially, `inflight` reads of `read_bytes` at a
/// time, for at most `duration`; returns bytes per second.
async fn read_phase(
    file: &Rc<DmaFile>,
    size: u64,
    read_bytes: usize,
    inflight: usize,
    duration: Duration,
) -> Result<f64, crate::Error> {
    let next_position = Rc::new(Cell::new(0u64));
    let read = Rc::new(Cell::new(0u64));
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for _ in 0..inflight {
        let (file, next_position, read) = (file.clone(), next_position.clone(), read.clone());
        workers.push(glommio::spawn_local(async move {
            while Instant::now() < deadline {
                let position = next_position.get();
                if position >= size {
                    break;
                }
                let len = (read_bytes as u64).min(size - position) as usize;
                next_position.set(position + len as u64);
                let buf = file.read_at_aligned(position, len).await.map_err(glommio_err)?;
                if buf.len() != len {
                    return Err::<(), crate::Error>(format!("short O_DIRECT read: {} of {len}", buf.len()).into());
                }
                read.set(read.get() + len as u64);
            }
            Ok(())
        }));
    }
    for worker in workers {
        worker.await?;
    }
    Ok(read.get() as f64 / started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_write_counts_in_order_only_once_every_earlier_write_is_done() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut tally = PacedTally::new(t0);
        let writes: Vec<u64> = (0..3).map(|i| tally.scheduled(ms(i))).collect();
        assert_eq!(writes, vec![0, 1, 2]);

        tally.completed(2, ms(3));
        assert_eq!((tally.each.len(), tally.in_order.len()), (1, 0), "write 2 waits for writes 0 and 1");
        tally.completed(0, ms(4));
        assert_eq!(tally.in_order.len(), 1, "write 0 is done in order");
        tally.completed(1, ms(5));
        assert_eq!(tally.in_order.len(), 3, "writes 1 and 2 are done in order together");

        let each = LatencySummary::of(&tally.each);
        let in_order = LatencySummary::of(&tally.in_order);
        // Alone: 1, 4 and 4 ms; in order: 4, 4 and 3 ms.
        assert_eq!((each.count, in_order.count), (3, 3));
        assert!(tally.each.min() >= 1_000 && tally.each.min() < 1_010, "write 2 alone took 1 ms");
        assert!(tally.in_order.min() >= 3_000 && tally.in_order.min() < 3_010, "write 2 in order took 3 ms");
        assert!(in_order.max >= 4_000 && in_order.max < 4_010, "writes 0 and 1 in order took 4 ms");
        assert!(tally.pending.is_empty());
    }
}
