//! `pinion-bench engine`: one shard's storage engine driven directly, no
//! network, held against the raw bandwidth of the same disk.
//!
//! Everything runs on ONE glommio executor (one core, pinned with `--cpu`),
//! as one broker shard would, with the engine's own `DmaStorage`:
//!
//! 1. Producer batches are built before the clock starts
//!    ([`crate::producer`]).
//! 2. Write phase: the batches are appended in a loop, cycling through the
//!    pre-built set. Each append first copies its batch into a fresh
//!    `BytesMut`: that copy stands for the socket read a broker does, and
//!    is counted in every figure. Closed loop (default): appends go as fast
//!    as `--inflight-bytes` of unacknowledged data allows; latency runs
//!    from the copy to the acknowledgement. Fixed rate (`--rate`): appends
//!    are scheduled at the rate given and latency runs from the scheduled
//!    send time, so a stall is charged to every append it delays
//!    (coordinated omission corrected). Each append gets a task that waits
//!    for `Written` (acks=1) and, with `--durability durable`, `Durable`
//!    (acks=all), as a produce request would; `--durability none` (acks=0)
//!    waits for nothing but still drains the log before the clock stops.
//!    The first `--warmup` seconds are not counted.
//! 3. Tail read: the most recent data (still in the tail cache) is read
//!    back, each chunk copied once (standing for the socket write); the
//!    zero-copy figure of the engine call alone is reported beside it.
//! 4. Cold read: partition 0 is closed and reopened (its cache is gone)
//!    and read from its start, from the disk.
//! 5. Raw ceiling ([`crate::raw_disk`]): O_DIRECT sequential write and read
//!    bandwidth of the same directory, measured in the same run.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use glommio::sync::Semaphore;
use glommio::Placement;
use hdrhistogram::Histogram;
use pinion_engine::huge_pages;
use pinion_engine::io::dma::DmaStorage;
use pinion_engine::io::Storage;
use pinion_engine::runtime::{reactor_turn, run_executor};
use pinion_engine::{Chunk, Durability, Engine, EngineConfig, EngineStats, Log, LogConfig, SystemClock};
use serde::Serialize;

use crate::backlog::{self, AppendTimes, BacklogSummary, BACKLOG_LATENCY_US};
use crate::latency::{self, LatencySummary, MaxTimeline};
use crate::machine::{CpuTime, CpuUse, DeviceIo, MachineFacts, SchedStat, SystemCpu};
use crate::producer::{build_batches, BatchSpec, Compression, Payload, ProducerBatch};
use crate::raw_disk::{self, RawPace, RawResult, RawSpec, Timeline};
use crate::report::{self, Report};

/// What an append waits for before it counts as done (the produce `acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AckLevel {
    /// acks=0: done when the append returns (the batch is in the log).
    None,
    /// acks=1: done when the batch is written to the device with O_DIRECT.
    Written,
    /// acks=all: done when the batch is also fdatasync'ed.
    Durable,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct EngineArgs {
    /// Bytes of each message value.
    #[arg(long, default_value_t = 100)]
    pub message_bytes: usize,
    /// Compression of the produced batches.
    #[arg(long, value_enum, default_value_t = Compression::None)]
    pub compression: Compression,
    /// Seconds of the measured write phase (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Directory to put the data in (a subdirectory is created and removed).
    #[arg(long)]
    pub dir: PathBuf,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Producer batch size: stored size of an uncompressed batch, records
    /// section before compression of a compressed one.
    #[arg(long, default_value_t = 1 << 20)]
    pub batch_bytes: usize,
    /// Partition logs on the shard; appends go round-robin.
    #[arg(long, default_value_t = 1)]
    pub partitions: usize,
    /// What an append waits for: none (acks=0), written (acks=1), durable (acks=all).
    #[arg(long, value_enum, default_value_t = AckLevel::Written)]
    pub durability: AckLevel,
    /// Fixed-rate run: messages per second, latency from the scheduled send time.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Measure only the raw O_DIRECT bandwidth of the directory.
    #[arg(long)]
    pub raw_only: bool,
    /// Skip the raw O_DIRECT measurement.
    #[arg(long, conflicts_with = "raw_only")]
    pub skip_raw: bool,
    /// Run a probe task beside the appends that sleeps `STALL_PROBE_PERIOD`
    /// in a loop and records how late it wakes: how long the shard's
    /// executor could not run a ready task (its own work, or the thread not
    /// getting a CPU). Adds `stall_probe` to the write results.
    #[arg(long)]
    pub stall_probe: bool,
    /// Bytes of appended but unacknowledged batches allowed at once
    /// [default: 16 MiB closed loop, 256 MiB with --rate].
    #[arg(long)]
    pub inflight_bytes: Option<u64>,
    /// Message values: JSON-like events or random bytes.
    #[arg(long, value_enum, default_value_t = Payload::Json)]
    pub payload: Payload,
    /// Seed of the payload generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 3)]
    pub zstd_level: i32,
    /// Records bytes (before compression) of the pre-built batch set the run cycles through.
    #[arg(long, default_value_t = 64 << 20)]
    pub prebuilt_bytes: usize,
    /// Seconds of appends before the measured phase, not counted.
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
    /// Segment size of the logs (`segment.bytes`).
    #[arg(long, default_value_t = 1 << 30)]
    pub segment_bytes: u64,
    /// Bytes each partition keeps (`retention.bytes`), enforced every
    /// second during the write phase so a long run fits on the disk; 0
    /// keeps everything.
    #[arg(long, default_value_t = 4 << 30)]
    pub retention_bytes: u64,
    /// `max_bytes` of each read in the read phases (a consumer's
    /// `max.partition.fetch.bytes`).
    #[arg(long, default_value_t = 1 << 20)]
    pub read_bytes: usize,
    /// Seconds of each read phase at most.
    #[arg(long, default_value_t = 2.0)]
    pub read_duration: f64,
    /// Seconds of the raw O_DIRECT write phase.
    #[arg(long, default_value_t = 3.0)]
    pub raw_duration: f64,
    /// Raw O_DIRECT writes (and reads) in flight.
    #[arg(long, default_value_t = 4)]
    pub raw_inflight: usize,
    /// Bytes of each raw O_DIRECT write.
    #[arg(long, default_value_t = 1 << 20)]
    pub raw_write_bytes: usize,
    /// Raw writes overwrite a file preallocated to its full size instead of
    /// extending it (the engine's segments extend).
    #[arg(long)]
    pub raw_overwrite: bool,
    /// Raw writes overwrite blocks already written: a 1 GiB file is written
    /// once (untimed), then overwritten over and over, as the recycling
    /// steady state overwrites its segments.
    #[arg(long)]
    pub raw_rewrite: bool,
    /// Raw writes allocate, zero and fill a new buffer each (as the
    /// engine's flusher does) instead of reusing `--raw-inflight` buffers.
    #[arg(long)]
    pub raw_fresh_buffers: bool,
    /// Skip the tail and cold read phases (for profiling the write path).
    #[arg(long)]
    pub skip_reads: bool,
    /// Run the raw measurement before the engine instead of after it.
    #[arg(long)]
    pub raw_first: bool,
    /// CPU to pin the shard's executor to.
    #[arg(long, default_value_t = 0)]
    pub cpu: usize,
    /// Do not pin the shard's executor.
    #[arg(long)]
    pub unpinned: bool,
    /// Keep the data directory and raw file after the run.
    #[arg(long)]
    pub keep: bool,
    /// Write every measured append's send and acknowledgement times (µs
    /// from the start of the measured phase) and stored bytes to this CSV
    /// file, to see which appends made the tail.
    #[arg(long)]
    pub latency_log: Option<PathBuf>,
    /// Override EngineConfig::flush_linger_us.
    #[arg(long)]
    pub flush_linger_us: Option<u64>,
    /// Override EngineConfig::flush_bytes.
    #[arg(long)]
    pub flush_bytes: Option<usize>,
    /// Override EngineConfig::write_bytes_max.
    #[arg(long)]
    pub write_bytes_max: Option<usize>,
    /// Override EngineConfig::write_behind_bytes_max.
    #[arg(long)]
    pub write_behind_bytes_max: Option<usize>,
    /// Override EngineConfig::cache_bytes_max.
    #[arg(long)]
    pub cache_bytes_max: Option<usize>,
    /// Override EngineConfig::read_ahead_bytes_max (0: cold reads read
    /// no window ahead).
    #[arg(long, value_name = "BYTES")]
    pub read_ahead_bytes_max: Option<usize>,
    /// Override EngineConfig::recycle_segments: true|false.
    #[arg(long, value_name = "BOOL")]
    pub recycle_segments: Option<bool>,
    /// Override EngineConfig::recycle_bytes_max.
    #[arg(long, value_name = "BYTES")]
    pub recycle_bytes_max: Option<u64>,
    /// Let the bench's heap use transparent huge pages where the host's mode
    /// is `always`, as `pinion serve --transparent-hugepages true` does. Off
    /// by default, as the broker runs: with them, the heap now and then
    /// zeroes (or waits for the kernel to compact memory for) a 2 MiB page
    /// inside an append. The O_DIRECT buffers use huge pages either way.
    #[arg(long, value_name = "BOOL", default_value_t = false, action = clap::ArgAction::Set)]
    pub transparent_hugepages: bool,
}

impl EngineArgs {
    fn engine_config(&self) -> EngineConfig {
        let mut config = EngineConfig::default();
        if let Some(v) = self.flush_linger_us {
            config.flush_linger_us = v;
        }
        if let Some(v) = self.flush_bytes {
            config.flush_bytes = v;
        }
        if let Some(v) = self.write_bytes_max {
            config.write_bytes_max = v;
        }
        if let Some(v) = self.write_behind_bytes_max {
            config.write_behind_bytes_max = v;
        }
        if let Some(v) = self.cache_bytes_max {
            config.cache_bytes_max = v;
        }
        if let Some(v) = self.read_ahead_bytes_max {
            config.read_ahead_bytes_max = v;
        }
        if let Some(v) = self.recycle_segments {
            config.recycle_segments = v;
        }
        if let Some(v) = self.recycle_bytes_max {
            config.recycle_bytes_max = v;
        }
        config
    }

    fn inflight_bytes(&self) -> u64 {
        self.inflight_bytes.unwrap_or(if self.rate.is_some() { 256 << 20 } else { 16 << 20 })
    }

    fn check(&self) -> Result<(), crate::Error> {
        let positive = |name: &str, v: f64| {
            if v > 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err(format!("--{name} must be positive"))
            }
        };
        positive("duration", self.duration)?;
        positive("raw-duration", self.raw_duration)?;
        positive("read-duration", self.read_duration)?;
        if !(self.warmup >= 0.0 && self.warmup.is_finite()) {
            return Err("--warmup must not be negative".into());
        }
        if let Some(rate) = self.rate {
            positive("rate", rate)?;
        }
        if self.message_bytes == 0 || self.partitions == 0 || self.raw_inflight == 0 {
            return Err("--message-bytes, --partitions and --raw-inflight must be positive".into());
        }
        if self.batch_bytes <= pinion_engine::batch::HEADER_BYTES + 16 {
            return Err("--batch-bytes is smaller than a batch header".into());
        }
        if self.raw_write_bytes == 0 || !self.raw_write_bytes.is_multiple_of(4096) {
            return Err("--raw-write-bytes must be a positive multiple of 4096".into());
        }
        Ok(())
    }
}

/// Configuration echoed into the report.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigEcho {
    pub args: EngineArgs,
    pub inflight_bytes: u64,
    pub flush_linger_us: u64,
    pub flush_bytes: usize,
    pub write_bytes_max: usize,
    pub write_behind_bytes_max: usize,
    pub cache_bytes_max: usize,
    pub read_ahead_bytes_max: usize,
    pub recycle_segments: bool,
    pub recycle_bytes_max: u64,
    pub placement: String,
    /// Where the process may use transparent huge pages after
    /// `--transparent-hugepages` (`huge_pages::HugePageUse`).
    pub huge_pages: String,
}

/// The pre-built batch set.
#[derive(Debug, Clone, Serialize)]
pub struct PrebuiltFacts {
    pub batches: usize,
    pub records_per_batch_mean: f64,
    pub stored_bytes_per_batch_mean: f64,
    /// Stored bytes over uncompressed records bytes.
    pub compression_ratio: f64,
    pub build_seconds: f64,
}

/// Engine counters over the measured write phase.
#[derive(Debug, Clone, Serialize)]
pub struct EngineStatsDelta {
    pub writes: u64,
    pub write_rounds: u64,
    pub write_bytes_per_round_mean: f64,
    pub write_round_us_mean: f64,
    /// Fraction of the phase with a flush round's writes in flight: the
    /// rest of the time the disk had nothing to do from this shard.
    pub write_busy_fraction: f64,
    pub fsyncs: u64,
    pub fsync_us_mean: f64,
    pub fsync_us_max: u64,
}

impl EngineStatsDelta {
    fn between(before: &EngineStats, after: &EngineStats, stored_bytes: u64, wall: Duration) -> Self {
        let rounds = after.write_rounds - before.write_rounds;
        let fsyncs = after.fsyncs - before.fsyncs;
        Self {
            writes: after.writes - before.writes,
            write_rounds: rounds,
            write_bytes_per_round_mean: stored_bytes as f64 / rounds.max(1) as f64,
            write_round_us_mean: (after.write_time_us_total - before.write_time_us_total) as f64 / rounds.max(1) as f64,
            write_busy_fraction: (after.write_time_us_total - before.write_time_us_total) as f64
                / (wall.as_secs_f64() * 1e6).max(1.0),
            fsyncs,
            fsync_us_mean: (after.fsync_time_us_total - before.fsync_time_us_total) as f64 / fsyncs.max(1) as f64,
            fsync_us_max: after.fsync_time_us_max,
        }
    }
}

/// Results of the write phase.
#[derive(Debug, Clone, Serialize)]
pub struct WriteResult {
    pub seconds: f64,
    pub appends: u64,
    pub messages: u64,
    pub stored_bytes: u64,
    pub payload_bytes: u64,
    pub messages_per_sec: f64,
    /// Stored (possibly compressed) batch bytes per second: what reaches the disk.
    pub bytes_per_sec: f64,
    /// Uncompressed message value bytes per second.
    pub payload_bytes_per_sec: f64,
    /// Requested rate in messages per second (fixed-rate runs).
    pub rate_target: Option<f64>,
    /// Append call (after the socket-read copy) to the append returning: the batch is in the log.
    pub append_return_latency_us: LatencySummary,
    /// To `Written` (acks=1).
    pub written_latency_us: Option<LatencySummary>,
    /// To `Durable` (acks=all).
    pub durable_latency_us: Option<LatencySummary>,
    /// Stored bytes acknowledged in each 0.5 s interval.
    pub bytes_per_sec_timeline: Vec<f64>,
    /// Largest acknowledgement latency (us) of each 0.5 s interval: where the stalls were.
    pub latency_max_us_timeline: Vec<u64>,
    /// Fixed-rate runs: the runs of appends acknowledged later than
    /// `backlog::BACKLOG_LATENCY_US`, each split into its stall and its drain.
    pub backlogs: Option<BacklogSummary>,
    /// With `--stall-probe`: how late the executor ran a ready timer task.
    pub stall_probe: Option<StallProbeResult>,
    /// CPU use of the shard's thread, in cores (1.0 = the core is never idle).
    pub shard_cpu: CpuUse,
    /// CPU use of the whole process, including io_uring kernel workers.
    pub process_cpu: CpuUse,
    /// Fraction of the phase the shard's thread was runnable but waiting
    /// for a CPU (taken by other processes): 0 on a quiet machine.
    pub shard_runqueue_wait_fraction: f64,
    /// Busy cores of the whole machine during the phase, all processes.
    pub machine_busy_cores: f64,
    /// Busy cores not accounted to this process: other work competing.
    pub other_busy_cores: f64,
    /// Cores stolen by the hypervisor.
    pub steal_cores: f64,
    pub engine: EngineStatsDelta,
    pub segments: usize,
    /// Segments deleted by retention during the phase.
    pub retention_segments_deleted: usize,
    /// Bytes the process wrote to the device per stored byte acknowledged
    /// (partial blocks rewritten, padding, indexes; 1.0 is no waste).
    pub device_write_amplification: f64,
    /// Huge-page mappings made for O_DIRECT buffers during the phase: each
    /// one faults in fresh 2 MiB pages. 0 in a steady state.
    pub io_buffer_regions_mapped: u64,
    /// Bytes mapped for O_DIRECT buffers at the end of the phase (in use or
    /// kept for reuse).
    pub io_buffer_bytes_mapped: u64,
    /// At the end of the phase, bytes of the O_DIRECT buffers on huge pages
    /// (`AnonHugePages` of the mappings advised for them, /proc/self/smaps).
    pub io_buffer_huge_page_bytes: Option<u64>,
    /// The same for the rest of the process's memory (the heap): 0 unless
    /// `--transparent-hugepages true` on a host whose mode is `always`.
    pub heap_huge_page_bytes: Option<u64>,
}

/// Results of a read phase.
#[derive(Debug, Clone, Serialize)]
pub struct ReadResult {
    pub bytes: u64,
    pub seconds: f64,
    /// With one copy of every chunk (the socket write).
    pub bytes_per_sec: f64,
    /// The engine's read call alone (tail cache only; chunks are shared, not copied).
    pub zero_copy_bytes_per_sec: Option<f64>,
    pub memory_chunks: u64,
    pub disk_chunks: u64,
    /// Time to reopen the log before a cold read.
    pub reopen_seconds: Option<f64>,
    /// Bytes the device read per byte returned (cold read; 1.0 is no waste).
    pub device_read_amplification: Option<f64>,
}

/// Everything measured on the shard.
#[derive(Debug)]
struct ShardOutcome {
    write: Option<WriteResult>,
    tail_read: Option<ReadResult>,
    cold_read: Option<ReadResult>,
    raw: Option<RawResult>,
}

pub fn run(args: EngineArgs) -> Result<(), crate::Error> {
    args.check()?;
    // Before the executor and the batches allocate: covers every mapping made after it.
    let huge_pages = match huge_pages::set_transparent_hugepages(args.transparent_hugepages) {
        Ok(used) => used.to_string(),
        Err(e) => {
            eprintln!(
                "pinion-bench: cannot set transparent huge pages (PR_SET_THP_DISABLE): {e}; the host's setting applies"
            );
            "the host's setting".to_string()
        }
    };
    std::fs::create_dir_all(&args.dir)?;
    let data_dir = args.dir.join(format!("pinion-bench-{}", std::process::id()));
    let machine = MachineFacts::collect(&args.dir);
    let config = args.engine_config();
    let placement_name = if args.unpinned { "unbound".to_string() } else { format!("cpu {}", args.cpu) };
    let echo = ConfigEcho {
        args: args.clone(),
        inflight_bytes: args.inflight_bytes(),
        flush_linger_us: config.flush_linger_us,
        flush_bytes: config.flush_bytes,
        write_bytes_max: config.write_bytes_max,
        write_behind_bytes_max: config.write_behind_bytes_max,
        cache_bytes_max: config.cache_bytes_max,
        read_ahead_bytes_max: config.read_ahead_bytes_max,
        recycle_segments: config.recycle_segments,
        recycle_bytes_max: config.recycle_bytes_max,
        placement: placement_name,
        huge_pages,
    };

    let (batches, prebuilt) = if args.raw_only {
        (Vec::new(), None)
    } else {
        let spec = BatchSpec {
            message_bytes: args.message_bytes,
            batch_bytes: args.batch_bytes,
            compression: args.compression,
            payload: args.payload,
            zstd_level: args.zstd_level,
            seed: args.seed,
            base_timestamp: pinion_engine::Clock::now_ms(&SystemClock),
        };
        let started = Instant::now();
        let batches = build_batches(&spec, args.prebuilt_bytes)?;
        let stored: usize = batches.iter().map(|b| b.bytes.len()).sum();
        let records: u64 = batches.iter().map(|b| u64::from(b.records)).sum();
        let records_bytes: usize = batches.iter().map(|b| b.records_bytes).sum();
        let facts = PrebuiltFacts {
            batches: batches.len(),
            records_per_batch_mean: records as f64 / batches.len() as f64,
            stored_bytes_per_batch_mean: stored as f64 / batches.len() as f64,
            compression_ratio: stored as f64 / records_bytes as f64,
            build_seconds: started.elapsed().as_secs_f64(),
        };
        (batches, Some(facts))
    };

    // The disk's own latency at the rate asked, measured in the same run.
    let pace = args.rate.zip(prebuilt.as_ref()).map(|(rate, facts)| RawPace {
        bytes_per_sec: rate * facts.stored_bytes_per_batch_mean / facts.records_per_batch_mean.max(1.0),
        write_bytes: facts.stored_bytes_per_batch_mean as usize,
    });
    let placement = if args.unpinned { Placement::Unbound } else { Placement::Fixed(args.cpu) };
    let shard_args = args.clone();
    let shard_dir = data_dir.clone();
    let batches = std::sync::Arc::new(batches);
    let outcome = run_executor("pinion-bench", placement, move || async move {
        run_on_shard(shard_args, shard_dir, config, batches, pace).await.map_err(|e| e.to_string())
    });
    if !args.keep {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    let outcome = outcome?.map_err(|e| -> crate::Error { e.into() })?;

    let report = Report::new(echo, machine, prebuilt, outcome.write, outcome.tail_read, outcome.cold_read, outcome.raw);
    print!("{}", report::summary(&report));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}

async fn run_on_shard(
    args: EngineArgs,
    data_dir: PathBuf,
    config: EngineConfig,
    batches: std::sync::Arc<Vec<ProducerBatch>>,
    pace: Option<RawPace>,
) -> Result<ShardOutcome, crate::Error> {
    let raw_spec = RawSpec {
        write_bytes: args.raw_write_bytes,
        inflight: args.raw_inflight,
        write_duration: Duration::from_secs_f64(args.raw_duration),
        read_duration: Duration::from_secs_f64(args.read_duration),
        overwrite: args.raw_overwrite,
        rewrite: args.raw_rewrite,
        fresh_buffers: args.raw_fresh_buffers,
        keep_file: args.keep,
        pace,
    };
    let mut outcome = ShardOutcome { write: None, tail_read: None, cold_read: None, raw: None };
    if args.raw_only {
        DmaStorage.prepare_dir(&data_dir).await?;
        outcome.raw = Some(raw_disk::measure(&data_dir, &raw_spec).await?);
        return Ok(outcome);
    }
    let engine = Engine::start(DmaStorage, config, Rc::new(SystemClock), std::slice::from_ref(&data_dir)).await?;
    if args.raw_first && !args.skip_raw {
        outcome.raw = Some(raw_disk::measure(&data_dir, &raw_spec).await?);
    }
    let largest_batch = batches.iter().map(|b| b.bytes.len()).max().unwrap_or(0);
    let log_config = LogConfig {
        segment_bytes: args.segment_bytes,
        max_message_bytes: LogConfig::default().max_message_bytes.max(largest_batch),
        retention_bytes: if args.retention_bytes == 0 { -1 } else { args.retention_bytes as i64 },
        ..LogConfig::default()
    };
    let mut logs = Vec::with_capacity(args.partitions);
    for partition in 0..args.partitions {
        logs.push(engine.open_log(&partition_dir(&data_dir, partition), log_config.clone()).await?);
    }

    let (write, recent) = write_phase(&args, &engine, &logs, &batches).await?;
    outcome.write = Some(write);
    if !args.skip_reads {
        outcome.tail_read = Some(tail_read_phase(&args, &logs, &recent).await?);
        outcome.cold_read = Some(cold_read_phase(&args, &engine, &logs[0], &data_dir, log_config).await?);
    }
    drop(logs);
    engine.shutdown().await;

    if !args.raw_first && !args.skip_raw {
        outcome.raw = Some(raw_disk::measure(&data_dir, &raw_spec).await?);
    }
    Ok(outcome)
}

/// How often the stall probe (`--stall-probe`) asks to wake.
const STALL_PROBE_PERIOD: Duration = Duration::from_micros(200);

/// The 0.5 s intervals the write phase's timelines are cut into.
const TIMELINE_SLOT: Duration = Duration::from_millis(500);

/// What the stall probe saw during the measured write phase.
#[derive(Debug, Clone, Serialize)]
pub struct StallProbeResult {
    /// Lateness of each wake-up beyond `STALL_PROBE_PERIOD`, µs.
    pub lateness_us: LatencySummary,
    /// Largest lateness (µs) in each 0.5 s interval, beside `latency_max_us_timeline`.
    pub lateness_max_us_timeline: Vec<u64>,
    /// Cores the hypervisor stole from the whole machine in each 0.5 s interval.
    pub steal_cores_timeline: Vec<f64>,
}

/// A task on the shard's executor that sleeps `STALL_PROBE_PERIOD` until
/// `stop` and records how late each wake-up was from `measure_from` on:
/// the time the executor could not run a ready task, whether it was busy
/// with other tasks or its thread had no CPU.
fn spawn_stall_probe(measure_from: Instant, stop: Rc<Cell<bool>>) -> glommio::task::JoinHandle<StallProbeResult> {
    glommio::spawn_local(async move {
        let mut lateness = latency::histogram();
        let mut maxima = MaxTimeline::new(measure_from, TIMELINE_SLOT);
        let mut steal = Vec::new();
        let mut slot: Option<(Instant, SystemCpu)> = None;
        while !stop.get() {
            let asked = Instant::now();
            glommio::timer::sleep(STALL_PROBE_PERIOD).await;
            let now = Instant::now();
            if now < measure_from {
                continue;
            }
            let late = now.saturating_duration_since(asked).saturating_sub(STALL_PROBE_PERIOD);
            latency::record(&mut lateness, late);
            maxima.note(now, late);
            let (started, cpu) = *slot.get_or_insert_with(|| (now, SystemCpu::read()));
            if now >= started + TIMELINE_SLOT {
                let current = SystemCpu::read();
                steal.push(current.cores_since(cpu, now - started).1);
                slot = Some((now, current));
            }
        }
        StallProbeResult {
            lateness_us: LatencySummary::of(&lateness),
            lateness_max_us_timeline: maxima.maxima_us(),
            steal_cores_timeline: steal,
        }
    })
    .detach()
}

/// Writes `--latency-log`: each measured append's (sent, acknowledged) µs
/// from `measure_from`, whose `CLOCK_MONOTONIC` time (what `Instant`
/// reads) heads the file, to line the appends up with a trace
/// (`perf record -k mono`).
fn write_latency_log(path: &Path, appends: &[AppendTimes], measure_from: Instant) -> std::io::Result<()> {
    use std::fmt::Write as _;
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes a timespec into `now`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let start_ns =
        (now.tv_sec as u128 * 1_000_000_000 + now.tv_nsec as u128).saturating_sub(measure_from.elapsed().as_nanos());
    let mut csv =
        format!("# measured phase started at CLOCK_MONOTONIC {start_ns} ns\nsent_us,acknowledged_us,stored_bytes\n");
    for a in appends {
        let _ = writeln!(csv, "{},{},{}", a.sent_us, a.acknowledged_us, a.bytes);
    }
    std::fs::write(path, csv)
}

fn partition_dir(data_dir: &Path, partition: usize) -> PathBuf {
    data_dir.join(format!("bench-{partition}"))
}

/// Counters the append tasks share.
struct WriteTally {
    append_return: RefCell<Histogram<u64>>,
    written: RefCell<Histogram<u64>>,
    durable: RefCell<Histogram<u64>>,
    appends: Cell<u64>,
    messages: Cell<u64>,
    stored_bytes: Cell<u64>,
    last_done: Cell<Option<Instant>>,
    timeline: RefCell<Timeline>,
    /// Largest acknowledgement latency (us) completed in each 0.5 s interval.
    latency_max_timeline: RefCell<MaxTimeline>,
    /// Each measured append's times, µs from the start of the measured
    /// phase: kept in fixed-rate runs (for the backlog episodes) and for
    /// `--latency-log`.
    append_times: Option<RefCell<Vec<AppendTimes>>>,
    failure: RefCell<Option<String>>,
}

impl WriteTally {
    fn fail(&self, what: String) {
        self.failure.borrow_mut().get_or_insert(what);
    }

    fn done(&self, batch_records: u32, batch_bytes: usize, counted: bool, sent: Instant, measure_from: Instant) {
        if !counted {
            return;
        }
        let now = Instant::now();
        self.latency_max_timeline.borrow_mut().note(now, now.saturating_duration_since(sent));
        if let Some(times) = &self.append_times {
            let since = |at: Instant| at.saturating_duration_since(measure_from).as_micros() as u64;
            times.borrow_mut().push(AppendTimes {
                sent_us: since(sent),
                acknowledged_us: since(now),
                bytes: batch_bytes as u64,
            });
        }
        self.appends.set(self.appends.get() + 1);
        self.messages.set(self.messages.get() + u64::from(batch_records));
        self.stored_bytes.set(self.stored_bytes.get() + batch_bytes as u64);
        self.last_done.set(Some(now));
        self.timeline.borrow_mut().note(now, batch_bytes as u64);
    }
}

/// The most recent appends, newest last, covering at most the cache budget:
/// where the tail read starts.
type RecentAppends = VecDeque<(usize, i64, usize)>;

async fn write_phase(
    args: &EngineArgs,
    engine: &Engine<DmaStorage>,
    logs: &[Log<DmaStorage>],
    batches: &[ProducerBatch],
) -> Result<(WriteResult, RecentAppends), crate::Error> {
    let inflight_bytes = args.inflight_bytes();
    let semaphore = Rc::new(Semaphore::new(inflight_bytes));
    let started = Instant::now();
    let measure_from = started + Duration::from_secs_f64(args.warmup);
    let deadline = measure_from + Duration::from_secs_f64(args.duration);
    let tally = Rc::new(WriteTally {
        append_return: RefCell::new(latency::histogram()),
        written: RefCell::new(latency::histogram()),
        durable: RefCell::new(latency::histogram()),
        appends: Cell::new(0),
        messages: Cell::new(0),
        stored_bytes: Cell::new(0),
        last_done: Cell::new(None),
        timeline: RefCell::new(Timeline::new(measure_from, TIMELINE_SLOT)),
        latency_max_timeline: RefCell::new(MaxTimeline::new(measure_from, TIMELINE_SLOT)),
        append_times: (args.rate.is_some() || args.latency_log.is_some()).then(|| RefCell::new(Vec::new())),
        failure: RefCell::new(None),
    });
    let cache_budget = engine.config().cache_bytes_max;
    let mut recent: RecentAppends = VecDeque::new();
    let mut recent_bytes = 0usize;
    let mut measuring = false;
    let mut stats_before = engine.stats();
    let (mut cpu_before, mut process_before, mut sched_before, mut system_before) =
        (CpuTime::thread(), CpuTime::process(), SchedStat::thread(), SystemCpu::read());
    let mut io_before = DeviceIo::read();
    let mut io_buffers_before = huge_pages::io_buffer_stats();
    let mut scheduled = started;
    let mut sequence = 0usize;
    // Retention, as a broker runs it on a timer, so the run's data stays bounded.
    let write_phase_over = Rc::new(Cell::new(false));
    let stall_probe = args.stall_probe.then(|| spawn_stall_probe(measure_from, write_phase_over.clone()));
    let retention = (args.retention_bytes > 0).then(|| {
        let (logs, stop) = (logs.to_vec(), write_phase_over.clone());
        glommio::spawn_local(async move {
            let mut deleted = 0usize;
            while !stop.get() {
                glommio::timer::sleep(Duration::from_secs(1)).await;
                for log in &logs {
                    deleted +=
                        log.enforce_retention().await.map_err(|e| format!("retention failed: {e}"))?.segments_deleted;
                }
            }
            Ok::<usize, String>(deleted)
        })
    });
    loop {
        let batch = &batches[sequence % batches.len()];
        let now = Instant::now();
        let send_at = match args.rate {
            Some(_) => scheduled,
            None => now,
        };
        // A fixed-rate run that falls behind stops at the deadline too: the
        // appends it could not send are missing from the achieved rate.
        if send_at >= deadline || now >= deadline || tally.failure.borrow().is_some() {
            break;
        }
        if !measuring && send_at >= measure_from {
            measuring = true;
            stats_before = engine.stats();
            (cpu_before, process_before, sched_before, system_before) =
                (CpuTime::thread(), CpuTime::process(), SchedStat::thread(), SystemCpu::read());
            io_before = DeviceIo::read();
            io_buffers_before = huge_pages::io_buffer_stats();
        }
        if let Some(rate) = args.rate {
            if scheduled > now {
                glommio::timer::sleep(scheduled - now).await;
            }
            scheduled += Duration::from_secs_f64(f64::from(batch.records) / rate);
        }
        let units = (batch.bytes.len() as u64).min(inflight_bytes);
        let permit = semaphore.acquire_static_permit(units).await.map_err(|e| e.to_string())?;
        let partition = sequence % logs.len();
        sequence += 1;
        // Closed loop: the clock starts at the append call; fixed rate: at
        // the scheduled send time, whatever delayed us since.
        let sent = if args.rate.is_some() { send_at } else { Instant::now() };
        // The socket read: a broker receives each request into a fresh buffer.
        let mut request = BytesMut::with_capacity(batch.bytes.len());
        request.extend_from_slice(&batch.bytes);
        let log = &logs[partition];
        let info = log.append(request, 0).await.map_err(|e| format!("append failed: {e}"))?;
        if measuring {
            latency::record(&mut tally.append_return.borrow_mut(), sent.elapsed());
        }
        recent.push_back((partition, info.base_offset, info.bytes));
        recent_bytes += info.bytes;
        while recent_bytes > cache_budget {
            let (_, _, bytes) = recent.pop_front().expect("non-empty while over budget");
            recent_bytes -= bytes;
        }
        let (records, stored) = (batch.records, batch.bytes.len());
        if args.durability == AckLevel::None {
            tally.done(records, stored, measuring, sent, measure_from);
            drop(permit);
        } else {
            let (log, tally, durability, counted) = (log.clone(), tally.clone(), args.durability, measuring);
            glommio::spawn_local(async move {
                let _permit = permit;
                if let Err(e) = log.wait(info.last_offset, Durability::Written).await {
                    return tally.fail(format!("waiting for Written failed: {e}"));
                }
                if counted {
                    latency::record(&mut tally.written.borrow_mut(), sent.elapsed());
                }
                if durability == AckLevel::Durable {
                    if let Err(e) = log.wait(info.last_offset, Durability::Durable).await {
                        return tally.fail(format!("waiting for Durable failed: {e}"));
                    }
                    if counted {
                        latency::record(&mut tally.durable.borrow_mut(), sent.elapsed());
                    }
                }
                tally.done(records, stored, counted, sent, measure_from);
            })
            .detach();
        }
        // A broker's connection task waits for the reactor at every socket
        // read. Do the same, or this task would run until the in-flight
        // limit stops it, and glommio would poll for I/O completions (and
        // run the flusher's timer) only at its 100 ms preemption tick.
        reactor_turn().await;
    }
    // Drain: every append acknowledged, and (acks=0) everything written.
    semaphore.acquire(inflight_bytes).await.map_err(|e| e.to_string())?;
    if args.durability == AckLevel::None {
        for log in logs {
            log.flush(Durability::Written).await.map_err(|e| format!("flush failed: {e}"))?;
        }
        tally.last_done.set(Some(Instant::now()));
    }
    write_phase_over.set(true);
    let retention_segments_deleted = match retention {
        Some(task) => task.await?,
        None => 0,
    };
    let stall_probe = match stall_probe {
        Some(task) => task.await,
        None => None,
    };
    if let Some(failure) = tally.failure.borrow().clone() {
        return Err(failure.into());
    }
    if let (Some(path), Some(times)) = (&args.latency_log, &tally.append_times) {
        write_latency_log(path, &times.borrow(), measure_from)?;
    }
    let backlogs = match (&tally.append_times, args.rate) {
        (Some(times), Some(_)) => Some(backlog::summarize(&times.borrow(), BACKLOG_LATENCY_US)),
        _ => None,
    };
    let ended = tally.last_done.get().unwrap_or_else(Instant::now).max(measure_from + Duration::from_micros(1));
    let wall = ended.saturating_duration_since(measure_from);
    let seconds = wall.as_secs_f64();
    let (cpu, process) = (CpuTime::thread().since(cpu_before), CpuTime::process().since(process_before));
    let sched = SchedStat::thread().since(sched_before);
    let device = DeviceIo::read().since(io_before);
    let io_buffers = huge_pages::io_buffer_stats();
    let (io_buffer_huge_page_bytes, heap_huge_page_bytes) = huge_pages::anon_huge_page_bytes().unzip();
    let (machine_busy_cores, steal_cores) = SystemCpu::read().cores_since(system_before, wall);
    let process_cpu = CpuUse::of(process, wall);
    let stored_bytes = tally.stored_bytes.get();
    let messages = tally.messages.get();
    let payload_bytes = messages * args.message_bytes as u64;
    let written_latency_us = (args.durability != AckLevel::None).then(|| LatencySummary::of(&tally.written.borrow()));
    let durable_latency_us =
        (args.durability == AckLevel::Durable).then(|| LatencySummary::of(&tally.durable.borrow()));
    let result = WriteResult {
        seconds,
        appends: tally.appends.get(),
        messages,
        stored_bytes,
        payload_bytes,
        messages_per_sec: messages as f64 / seconds,
        bytes_per_sec: stored_bytes as f64 / seconds,
        payload_bytes_per_sec: payload_bytes as f64 / seconds,
        rate_target: args.rate,
        append_return_latency_us: LatencySummary::of(&tally.append_return.borrow()),
        written_latency_us,
        durable_latency_us,
        bytes_per_sec_timeline: tally.timeline.borrow().bytes_per_sec(),
        latency_max_us_timeline: tally.latency_max_timeline.borrow().maxima_us(),
        backlogs,
        stall_probe,
        shard_cpu: CpuUse::of(cpu, wall),
        process_cpu,
        shard_runqueue_wait_fraction: sched.waiting.as_secs_f64() / seconds.max(1e-9),
        machine_busy_cores,
        other_busy_cores: (machine_busy_cores - process_cpu.user_cores - process_cpu.system_cores).max(0.0),
        steal_cores,
        engine: EngineStatsDelta::between(&stats_before, &engine.stats(), stored_bytes, wall),
        segments: logs.iter().map(|l| l.segment_count()).sum(),
        retention_segments_deleted,
        device_write_amplification: device.write_bytes as f64 / stored_bytes.max(1) as f64,
        io_buffer_regions_mapped: io_buffers.regions_mapped - io_buffers_before.regions_mapped,
        io_buffer_bytes_mapped: io_buffers.bytes_mapped,
        io_buffer_huge_page_bytes,
        heap_huge_page_bytes,
    };
    Ok((result, recent))
}

/// Reads `[from, to)` of `log` once, in reads of `read_bytes`; copies each
/// chunk into `sink` unless it is `None`. Returns (bytes, memory chunks, disk chunks).
async fn read_range(
    log: &Log<DmaStorage>,
    from: i64,
    to: i64,
    read_bytes: usize,
    mut sink: Option<&mut Vec<u8>>,
    deadline: Instant,
) -> Result<(u64, u64, u64), crate::Error> {
    let (mut bytes, mut memory, mut disk) = (0u64, 0u64, 0u64);
    let mut offset = from;
    while offset < to && Instant::now() < deadline {
        let read = log.read(offset, read_bytes, to).await.map_err(|e| format!("read at {offset} failed: {e}"))?;
        if read.chunks.is_empty() {
            return Err(format!("read at {offset} returned nothing below {to}").into());
        }
        for chunk in &read.chunks {
            match chunk {
                Chunk::Memory(_) => memory += 1,
                Chunk::Disk(_) => disk += 1,
            }
            if let Some(sink) = sink.as_deref_mut() {
                sink.clear();
                sink.extend_from_slice(chunk);
                std::hint::black_box(&sink);
            }
        }
        bytes += read.bytes as u64;
        offset = read.next_offset;
    }
    Ok((bytes, memory, disk))
}

async fn tail_read_phase(
    args: &EngineArgs,
    logs: &[Log<DmaStorage>],
    recent: &RecentAppends,
) -> Result<ReadResult, crate::Error> {
    // Start within the newest 3/4 of the cache budget: the engine evicts
    // down to 7/8 of it, so all of this is still in memory.
    let budget = recent.iter().map(|r| r.2).sum::<usize>() * 3 / 4;
    let mut starts: Vec<Option<i64>> = vec![None; logs.len()];
    let mut covered = 0usize;
    for &(partition, base_offset, bytes) in recent.iter().rev() {
        if covered + bytes > budget && covered > 0 {
            break;
        }
        covered += bytes;
        starts[partition] = Some(base_offset);
    }
    let ranges: Vec<(usize, i64, i64)> =
        starts.iter().enumerate().filter_map(|(p, s)| s.map(|start| (p, start, logs[p].log_end_offset()))).collect();
    let time_limit = Duration::from_secs_f64(args.read_duration / 2.0);
    let mut sink = Vec::with_capacity(args.read_bytes.max(2 << 20));
    let mut result = ReadResult {
        bytes: 0,
        seconds: 0.0,
        bytes_per_sec: 0.0,
        zero_copy_bytes_per_sec: None,
        memory_chunks: 0,
        disk_chunks: 0,
        reopen_seconds: None,
        device_read_amplification: None,
    };
    // Whole passes over the cached range until the time limit: with the
    // copy (the headline) and without (the engine call alone).
    for copy in [true, false] {
        let started = Instant::now();
        let deadline = started + time_limit * 4;
        let mut total = 0u64;
        loop {
            for &(p, from, to) in &ranges {
                let (bytes, memory, disk) =
                    read_range(&logs[p], from, to, args.read_bytes, copy.then_some(&mut sink), deadline).await?;
                total += bytes;
                if copy {
                    result.memory_chunks += memory;
                    result.disk_chunks += disk;
                }
            }
            if started.elapsed() >= time_limit || total == 0 {
                break;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        if copy {
            (result.bytes, result.seconds, result.bytes_per_sec) = (total, seconds, total as f64 / seconds);
        } else {
            result.zero_copy_bytes_per_sec = Some(total as f64 / seconds);
        }
    }
    Ok(result)
}

async fn cold_read_phase(
    args: &EngineArgs,
    engine: &Engine<DmaStorage>,
    log: &Log<DmaStorage>,
    data_dir: &Path,
    log_config: LogConfig,
) -> Result<ReadResult, crate::Error> {
    log.close().await.map_err(|e| format!("close failed: {e}"))?;
    let started = Instant::now();
    let log = engine.open_log(&partition_dir(data_dir, 0), log_config).await?;
    let reopen_seconds = started.elapsed().as_secs_f64();
    let mut sink = Vec::with_capacity(args.read_bytes.max(2 << 20));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.read_duration);
    let (from, to) = (log.log_start_offset(), log.log_end_offset());
    let io_before = DeviceIo::read();
    let (bytes, memory, disk) = read_range(&log, from, to, args.read_bytes, Some(&mut sink), deadline).await?;
    let seconds = started.elapsed().as_secs_f64();
    let device = DeviceIo::read().since(io_before);
    Ok(ReadResult {
        bytes,
        seconds,
        bytes_per_sec: bytes as f64 / seconds,
        zero_copy_bytes_per_sec: None,
        memory_chunks: memory,
        disk_chunks: disk,
        reopen_seconds: Some(reopen_seconds),
        device_read_amplification: Some(device.read_bytes as f64 / bytes.max(1) as f64),
    })
}
