//! `pinion-tune iotune`: what the data disk can do with O_DIRECT, measured
//! the way the broker uses it, and saved for the broker to read.
//!
//! Like `rpk iotune`, it measures sequential O_DIRECT write and read
//! bandwidth and IOPS over a matrix of block sizes ([`BLOCK_SIZES`]) and
//! queue depths ([`QUEUE_DEPTHS`]), and the latency of fdatasync after
//! small appends to a file preallocated the way the engine preallocates
//! segments (`FALLOC_FL_KEEP_SIZE`: each append extends the size). Everything runs on the calling thread through a private
//! io_uring (no glommio), against a preallocated scratch file in the data
//! directory whose name is removed the moment it is opened. The whole run
//! is bounded by [`IotuneOptions::duration`], split evenly across the
//! measurements.
//!
//! The result, [`IoProperties`], is written as a small TOML file
//! (`<data_dir>/io-properties.toml` by default); this one is from a 20 s
//! run on a development VM (virtio disk, ext4):
//!
//! ```toml
//! data_dir = "/work/iotune-scratch"
//! measured_seconds = 19.4
//! write_bandwidth_bytes_per_sec = 2382185010
//! read_bandwidth_bytes_per_sec = 1388895035
//! write_iops = 110534
//! read_iops = 158933
//! fdatasync_latency_us_p50 = 3874
//! fdatasync_latency_us_p99 = 7994
//! fdatasync_samples = 304
//! best_write_block_bytes = 1048576
//! best_write_queue_depth = 1
//! best_read_block_bytes = 65536
//! best_read_queue_depth = 4
//!
//! [[write]]
//! block_bytes = 4096
//! queue_depth = 1
//! bytes_per_sec = 103271095
//! iops = 25213
//! # ... one table per block size and queue depth, then the [[read]] tables
//! ```
//!
//! The benchmark crate calls [`sequential_write`] and [`sequential_read`]
//! directly to hold the engine's numbers against the device's.

mod engine;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::units::{format_block, format_rate, MIB};
use engine::{Direction, Preallocation, Run, TestFile};

/// Block sizes measured: a page, a typical batch, a large flush.
pub const BLOCK_SIZES: [usize; 3] = [4 << 10, 64 << 10, 1 << 20];
/// Queue depths measured: one request at a time, a few, a deep queue.
pub const QUEUE_DEPTHS: [usize; 3] = [1, 4, 32];
/// The default time for a whole `iotune` run.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(40);
/// The shortest run accepted: below this each measurement is noise.
pub const MIN_DURATION: Duration = Duration::from_secs(1);
/// The properties file's name inside the data directory.
pub const PROPERTIES_FILE_NAME: &str = "io-properties.toml";

/// The scratch file is at most this large, and at most a quarter of the
/// free space; below [`TEST_FILE_BYTES_MIN`] iotune refuses to run.
const TEST_FILE_BYTES_MAX: u64 = 1024 * MIB;
const TEST_FILE_BYTES_MIN: u64 = 64 * MIB;
/// Reads cycle over at least this much written data.
const READ_REGION_BYTES_MIN: u64 = 64 * MIB;
/// What [`sequential_read`] writes before it reads.
const READ_FILL_BYTES: u64 = 256 * MIB;
/// The fill never takes longer than this, however slow the disk.
const FILL_DURATION_MAX: Duration = Duration::from_secs(30);
const FDATASYNC_FILE_BYTES: u64 = 64 * MIB;
const FDATASYNC_SAMPLES_MAX: usize = 10_000;
/// A configuration within this fraction of the best bandwidth counts as
/// reaching it (see [`IoProperties::best_write_block_bytes`]).
const KNEE_FRACTION: f64 = 0.9;

/// What one raw measurement moved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    pub bytes: u64,
    /// From the first submission to the last completion.
    pub elapsed: Duration,
    pub bytes_per_sec: f64,
    /// Completed requests (each of the block size asked for).
    pub operations: u64,
}

impl Throughput {
    fn from_run(bytes: u64, operations: u64, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64();
        Self { bytes, elapsed, bytes_per_sec: if seconds > 0.0 { bytes as f64 / seconds } else { 0.0 }, operations }
    }

    /// Completed requests per second.
    pub fn iops(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.operations as f64 / seconds
        } else {
            0.0
        }
    }
}

/// The scratch file size for `dir`: up to 1 GiB, at most a quarter of the
/// free space.
fn test_file_bytes(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let cpath = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs is plain data; all-zero is a valid value.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a statvfs we own.
    if unsafe { libc::statvfs(cpath.as_ptr(), &mut stat) } != 0 {
        let error = io::Error::last_os_error();
        return Err(engine::with_context(error, format!("statvfs {}", dir.display())));
    }
    #[allow(clippy::unnecessary_cast)]
    let free = stat.f_bavail as u64 * stat.f_frsize as u64;
    let bytes = (free / 4).min(TEST_FILE_BYTES_MAX) / MIB * MIB;
    if bytes < TEST_FILE_BYTES_MIN {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "{} has {} MiB free; iotune needs at least {} MiB",
                dir.display(),
                free / MIB,
                4 * TEST_FILE_BYTES_MIN / MIB
            ),
        ));
    }
    Ok(bytes)
}

/// Raw O_DIRECT sequential write bandwidth of the device under `dir`:
/// `queue_depth` writes of `block_bytes` kept in flight for `duration`
/// through io_uring, into a preallocated file (up to 1 GiB, wrapping
/// around) that is removed afterwards. `block_bytes` must be a multiple of
/// 4 KiB.
pub fn sequential_write(
    dir: &Path,
    block_bytes: usize,
    queue_depth: usize,
    duration: Duration,
) -> io::Result<Throughput> {
    engine::validate(block_bytes, queue_depth)?;
    let mut file = TestFile::create(dir, test_file_bytes(dir)?, Preallocation::SetSize)?;
    let region_bytes = file.size_bytes();
    let result = engine::run_sequential(
        &mut file,
        Run {
            direction: Direction::Write,
            block_bytes,
            queue_depth,
            region_bytes,
            start_offset: 0,
            duration,
            bytes_max: None,
        },
    )?;
    Ok(Throughput::from_run(result.bytes, result.operations, result.elapsed))
}

/// Raw O_DIRECT sequential read bandwidth of the device under `dir`: first
/// writes up to 256 MiB of a preallocated file (reading unwritten extents
/// would never reach the device; this takes extra time, at most 30 s),
/// then keeps `queue_depth` reads of `block_bytes` in flight over it for
/// `duration`. The file is removed afterwards.
pub fn sequential_read(
    dir: &Path,
    block_bytes: usize,
    queue_depth: usize,
    duration: Duration,
) -> io::Result<Throughput> {
    engine::validate(block_bytes, queue_depth)?;
    let mut file = TestFile::create(dir, test_file_bytes(dir)?, Preallocation::SetSize)?;
    let fill_bytes = READ_FILL_BYTES.min(file.size_bytes());
    fill(&mut file, fill_bytes, FILL_DURATION_MAX)?;
    let region_bytes = file.written_bytes;
    let result = engine::run_sequential(
        &mut file,
        Run {
            direction: Direction::Read,
            block_bytes,
            queue_depth,
            region_bytes,
            start_offset: 0,
            duration,
            bytes_max: None,
        },
    )?;
    Ok(Throughput::from_run(result.bytes, result.operations, result.elapsed))
}

/// Writes the file from its current written end up to `target_bytes`
/// (1 MiB blocks, 8 in flight), or until `duration` runs out.
fn fill(file: &mut TestFile, target_bytes: u64, duration: Duration) -> io::Result<()> {
    let target = target_bytes.min(file.size_bytes());
    let written = file.written_bytes;
    if written >= target {
        return Ok(());
    }
    engine::run_sequential(
        file,
        Run {
            direction: Direction::Write,
            block_bytes: 1 << 20,
            queue_depth: 8,
            region_bytes: target,
            start_offset: written,
            duration,
            bytes_max: Some(target - written),
        },
    )?;
    Ok(())
}

/// One cell of the measured matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measurement {
    pub block_bytes: u64,
    pub queue_depth: u64,
    pub bytes_per_sec: u64,
    pub iops: u64,
}

/// What iotune learned about the data disk: the broker's view of its
/// physical limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IoProperties {
    /// The directory measured.
    pub data_dir: String,
    /// How long the measurement took.
    pub measured_seconds: f64,
    /// The best sequential write bandwidth over the matrix.
    pub write_bandwidth_bytes_per_sec: u64,
    /// The best sequential read bandwidth over the matrix.
    pub read_bandwidth_bytes_per_sec: u64,
    /// The best 4 KiB write IOPS over the queue depths.
    pub write_iops: u64,
    /// The best 4 KiB read IOPS over the queue depths.
    pub read_iops: u64,
    /// fdatasync after a 4 KiB O_DIRECT append, median and 99th
    /// percentile, in microseconds.
    pub fdatasync_latency_us_p50: u64,
    pub fdatasync_latency_us_p99: u64,
    pub fdatasync_samples: u64,
    /// The cheapest write shape (smallest block x depth in flight, then
    /// smallest depth) that reaches 90% of the best write bandwidth: what
    /// the broker's flushes should aim for. The peak itself is noisy; the
    /// knee is what matters.
    pub best_write_block_bytes: u64,
    pub best_write_queue_depth: u64,
    /// The same for reads.
    pub best_read_block_bytes: u64,
    pub best_read_queue_depth: u64,
    /// Every measured write cell.
    pub write: Vec<Measurement>,
    /// Every measured read cell.
    pub read: Vec<Measurement>,
}

/// A properties file that could not be loaded.
#[derive(Debug)]
pub enum PropertiesError {
    Read { path: PathBuf, source: io::Error },
    Parse { path: PathBuf, source: toml::de::Error },
}

impl fmt::Display for PropertiesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropertiesError::Read { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            PropertiesError::Parse { path, source } => {
                write!(f, "cannot parse {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for PropertiesError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PropertiesError::Read { source, .. } => Some(source),
            PropertiesError::Parse { source, .. } => Some(source),
        }
    }
}

impl IoProperties {
    /// The TOML text, with a header saying what wrote it.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).expect("plain numbers and strings serialise");
        format!("# Written by `pinion-tune iotune`; read by the broker at start.\n{body}")
    }

    pub fn save(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, self.to_toml()).map_err(|e| engine::with_context(e, format!("write {}", path.display())))
    }

    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

/// Loads a properties file written by `pinion-tune iotune`.
pub fn load(path: &Path) -> Result<IoProperties, PropertiesError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| PropertiesError::Read { path: path.to_path_buf(), source })?;
    IoProperties::parse(&text).map_err(|source| PropertiesError::Parse { path: path.to_path_buf(), source })
}

/// How long and where to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IotuneOptions {
    pub data_dir: PathBuf,
    pub duration: Duration,
}

/// The nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    assert!(!sorted.is_empty() && percent <= 100);
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// The cheapest cell within [`KNEE_FRACTION`] of the best bandwidth.
fn knee(cells: &[Measurement]) -> Option<&Measurement> {
    let best = cells.iter().map(|c| c.bytes_per_sec).max()?;
    cells
        .iter()
        .filter(|c| c.bytes_per_sec as f64 >= best as f64 * KNEE_FRACTION)
        .min_by_key(|c| (c.block_bytes * c.queue_depth, c.queue_depth))
}

fn best_iops(cells: &[Measurement]) -> u64 {
    let smallest = BLOCK_SIZES[0] as u64;
    cells.iter().filter(|c| c.block_bytes == smallest).map(|c| c.iops).max().unwrap_or(0)
}

/// Measures the disk under `options.data_dir` (created if missing) within
/// `options.duration`, reporting each step through `progress`.
pub fn run(options: &IotuneOptions, progress: &mut dyn FnMut(&str)) -> io::Result<IoProperties> {
    if options.duration < MIN_DURATION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("iotune needs at least {} s", MIN_DURATION.as_secs()),
        ));
    }
    let started = Instant::now();
    let dir = &options.data_dir;
    std::fs::create_dir_all(dir).map_err(|e| engine::with_context(e, format!("create {}", dir.display())))?;
    let cells = BLOCK_SIZES.len() * QUEUE_DEPTHS.len();
    // Time slots: each write cell, the read fill, each read cell, fdatasync.
    let slot = options.duration / (2 * cells as u32 + 2);
    let steps = 2 * cells + 1;
    let mut step = 0;

    let mut file = TestFile::create(dir, test_file_bytes(dir)?, Preallocation::SetSize)?;
    let mut write = Vec::with_capacity(cells);
    let mut read = Vec::with_capacity(cells);
    let mut offset = 0;
    for direction in [Direction::Write, Direction::Read] {
        if direction == Direction::Read {
            fill(&mut file, READ_REGION_BYTES_MIN, slot)?;
            offset = 0;
        }
        for block_bytes in BLOCK_SIZES {
            for queue_depth in QUEUE_DEPTHS {
                let region_bytes = match direction {
                    Direction::Write => file.size_bytes(),
                    Direction::Read => file.written_bytes,
                };
                let result = engine::run_sequential(
                    &mut file,
                    Run {
                        direction,
                        block_bytes,
                        queue_depth,
                        region_bytes,
                        start_offset: offset,
                        duration: slot,
                        bytes_max: None,
                    },
                )?;
                offset = result.next_offset;
                let throughput = Throughput::from_run(result.bytes, result.operations, result.elapsed);
                let cell = Measurement {
                    block_bytes: block_bytes as u64,
                    queue_depth: queue_depth as u64,
                    bytes_per_sec: throughput.bytes_per_sec.round() as u64,
                    iops: throughput.iops().round() as u64,
                };
                step += 1;
                progress(&format!(
                    "iotune [{step}/{steps}] {} {} x {queue_depth}: {}, {} IOPS",
                    if direction == Direction::Write { "write" } else { "read" },
                    format_block(block_bytes),
                    format_rate(throughput.bytes_per_sec),
                    cell.iops
                ));
                match direction {
                    Direction::Write => write.push(cell),
                    Direction::Read => read.push(cell),
                }
            }
        }
    }
    drop(file);

    let mut sync_file = TestFile::create(dir, FDATASYNC_FILE_BYTES, Preallocation::KeepSize)?;
    let mut latencies = engine::fdatasync_latencies(&mut sync_file, slot, FDATASYNC_SAMPLES_MAX)?;
    drop(sync_file);
    if latencies.is_empty() {
        return Err(io::Error::other("no fdatasync completed"));
    }
    latencies.sort_unstable();
    let p50 = percentile(&latencies, 50);
    let p99 = percentile(&latencies, 99);
    step += 1;
    progress(&format!(
        "iotune [{step}/{steps}] fdatasync after 4 KiB appends: p50 {} us, p99 {} us over {} syncs",
        p50.as_micros(),
        p99.as_micros(),
        latencies.len()
    ));

    let best_write = *knee(&write).expect("the matrix is not empty");
    let best_read = *knee(&read).expect("the matrix is not empty");
    let properties = IoProperties {
        data_dir: dir.display().to_string(),
        measured_seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        write_bandwidth_bytes_per_sec: write.iter().map(|c| c.bytes_per_sec).max().unwrap_or(0),
        read_bandwidth_bytes_per_sec: read.iter().map(|c| c.bytes_per_sec).max().unwrap_or(0),
        write_iops: best_iops(&write),
        read_iops: best_iops(&read),
        fdatasync_latency_us_p50: p50.as_micros() as u64,
        fdatasync_latency_us_p99: p99.as_micros() as u64,
        fdatasync_samples: latencies.len() as u64,
        best_write_block_bytes: best_write.block_bytes,
        best_write_queue_depth: best_write.queue_depth,
        best_read_block_bytes: best_read.block_bytes,
        best_read_queue_depth: best_read.queue_depth,
        write,
        read,
    };
    if properties.write_bandwidth_bytes_per_sec == 0 || properties.read_bandwidth_bytes_per_sec == 0 {
        return Err(io::Error::other("no I/O completed within the time given"));
    }
    Ok(properties)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(block_bytes: u64, queue_depth: u64, bytes_per_sec: u64) -> Measurement {
        Measurement { block_bytes, queue_depth, bytes_per_sec, iops: bytes_per_sec / block_bytes }
    }

    #[test]
    fn the_knee_is_the_cheapest_shape_near_the_peak() {
        let cells = [
            cell(4096, 1, 100),
            cell(4096, 32, 700),
            cell(65536, 4, 950),
            cell(1 << 20, 1, 920),
            cell(1 << 20, 32, 1000),
        ];
        // 64 KiB x 4 (256 KiB in flight) beats 1 MiB x 1 at >= 90%.
        assert_eq!(knee(&cells), Some(&cells[2]));
        assert_eq!(best_iops(&cells), 700 / 4096);
        assert_eq!(knee(&[]), None);
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&samples, 50), Duration::from_micros(50));
        assert_eq!(percentile(&samples, 99), Duration::from_micros(99));
        assert_eq!(percentile(&samples[..1], 99), Duration::from_micros(1));
    }

    #[test]
    fn properties_round_trip_through_toml() {
        let properties = IoProperties {
            data_dir: "/var/lib/pinion".into(),
            measured_seconds: 39.8,
            write_bandwidth_bytes_per_sec: 1_210_000_000,
            read_bandwidth_bytes_per_sec: 850_000_000,
            write_iops: 61_000,
            read_iops: 23_000,
            fdatasync_latency_us_p50: 310,
            fdatasync_latency_us_p99: 1900,
            fdatasync_samples: 2000,
            best_write_block_bytes: 1 << 20,
            best_write_queue_depth: 4,
            best_read_block_bytes: 1 << 20,
            best_read_queue_depth: 4,
            write: vec![cell(4096, 1, 98_000_000)],
            read: vec![cell(4096, 1, 90_000_000)],
        };
        let text = properties.to_toml();
        assert!(text.starts_with("# Written by `pinion-tune iotune`"));
        assert!(text.contains("write_bandwidth_bytes_per_sec = 1210000000\n"), "{text}");
        assert!(text.contains("[[write]]"), "{text}");
        assert_eq!(IoProperties::parse(&text).unwrap(), properties);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PROPERTIES_FILE_NAME);
        properties.save(&path).unwrap();
        assert_eq!(load(&path).unwrap(), properties);
        std::fs::write(&path, "write_iops = \"many\"").unwrap();
        assert!(matches!(load(&path), Err(PropertiesError::Parse { .. })));
        assert!(matches!(load(&dir.path().join("missing.toml")), Err(PropertiesError::Read { .. })));
    }

    #[test]
    fn raw_sequential_write_and_read_measure_something() {
        let dir = tempfile::tempdir().unwrap();
        let write = sequential_write(dir.path(), 1 << 20, 4, Duration::from_millis(200)).unwrap();
        assert!(write.bytes > 0 && write.bytes_per_sec > 0.0, "{write:?}");
        assert_eq!(write.bytes, write.operations << 20);
        let read = sequential_read(dir.path(), 64 << 10, 4, Duration::from_millis(200)).unwrap();
        assert!(read.bytes > 0 && read.iops() > 0.0, "{read:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "scratch files removed");
        assert!(sequential_write(dir.path(), 1000, 1, Duration::from_millis(10)).is_err());
    }
}
