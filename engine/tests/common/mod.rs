//! Helpers shared by the scenario tests: starting an engine on a glommio
//! executor, building distinguishable batches from a seed, and reading a
//! log back batch by batch with every batch checked (length, magic, CRC).
//!
//! Nothing here asserts a scenario; each test file states what it proves.

#![allow(dead_code)]

use std::future::Future;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::BytesMut;
use glommio::Placement;
use pinion_engine::batch::{self, build, BatchHeader};
use pinion_engine::io::sim::SimStorage;
use pinion_engine::io::Storage;
use pinion_engine::runtime::run_executor;
use pinion_engine::{AppendInfo, Clock, Engine, EngineConfig, Log, ManualClock, ReadBatches};

/// Leader epoch every test append stamps; stored batches carry it.
pub const LEADER_EPOCH: i32 = 7;

/// Where the simulated data directory lives.
pub fn data_dir() -> PathBuf {
    PathBuf::from("/data")
}

/// The partition directory the tests use.
pub fn log_dir() -> PathBuf {
    data_dir().join("topic-0")
}

/// Path of a segment file of [`log_dir`].
pub fn segment_path(base_offset: i64, extension: &str) -> PathBuf {
    log_dir().join(pinion_engine::segment::segment_file_name(base_offset, extension))
}

/// Runs one test body on its own glommio executor and fails the test if it panics.
pub fn run<F, Fut>(name: &str, make: F)
where
    F: FnOnce() -> Fut + Send + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    run_executor(name, Placement::Unbound, make).expect("test body ran to completion on its executor");
}

/// Engine settings for tests: no linger, so a flush happens as soon as the
/// test task waits, which keeps runs deterministic and fast.
pub fn engine_config() -> EngineConfig {
    EngineConfig { flush_linger_us: 0, ..EngineConfig::default() }
}

/// Starts an engine on a clone of `sim` (the disk stays shared with the test).
pub async fn start_sim(sim: &SimStorage, clock: &ManualClock) -> Engine<SimStorage> {
    start_sim_with(sim, clock, engine_config()).await
}

pub async fn start_sim_with(sim: &SimStorage, clock: &ManualClock, config: EngineConfig) -> Engine<SimStorage> {
    let clock: Rc<dyn Clock> = Rc::new(clock.clone());
    Engine::start(sim.clone(), config, clock, &[data_dir()]).await.expect("engine starts")
}

/// splitmix64: a small deterministic generator for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5EED_0F71_4105)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `low..=high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }
}

/// A valid uncompressed batch of `records` records whose values are
/// `value_bytes` bytes derived from `tag`, with record `i` at
/// `base_timestamp + i`. Different tags give different bytes.
pub fn make_batch(tag: u64, records: usize, value_bytes: usize, base_timestamp: i64) -> Vec<u8> {
    let mut rng = Rng::new(tag);
    let values: Vec<Vec<u8>> = (0..records.max(1))
        .map(|_| {
            let mut value: Vec<u8> = (0..value_bytes).map(|_| rng.next_u64() as u8).collect();
            // Keep the tag visible so a mismatch is easy to read in a failure.
            let tag_bytes = tag.to_be_bytes();
            let n = tag_bytes.len().min(value.len());
            value[..n].copy_from_slice(&tag_bytes[..n]);
            value
        })
        .collect();
    let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
    build::batch(&refs, base_timestamp)
}

/// What the log must store for `sent` appended at `base_offset`: the same
/// bytes with only `base_offset` and `partition_leader_epoch` patched.
pub fn stored_form(sent: &[u8], base_offset: i64) -> Vec<u8> {
    let mut stored = sent.to_vec();
    batch::set_base_offset(&mut stored, base_offset);
    batch::set_partition_leader_epoch(&mut stored, LEADER_EPOCH);
    stored
}

/// One batch the test appended, as the log must return it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub base_offset: i64,
    pub last_offset: i64,
    pub bytes: Vec<u8>,
}

impl Stored {
    pub fn records(&self) -> i64 {
        self.last_offset - self.base_offset + 1
    }
}

/// Appends one batch and returns it as it must be stored.
pub async fn append<S: Storage>(log: &Log<S>, sent: &[u8]) -> Stored {
    let info: AppendInfo = log.append(BytesMut::from(sent), LEADER_EPOCH).await.expect("append accepted");
    let stored = Stored {
        base_offset: info.base_offset,
        last_offset: info.last_offset,
        bytes: stored_form(sent, info.base_offset),
    };
    let header = BatchHeader::parse(sent).unwrap();
    assert_eq!(info.last_offset - info.base_offset, i64::from(header.last_offset_delta));
    assert_eq!(info.bytes, sent.len());
    stored
}

/// Splits the chunks of a read into batches, checking each one whole
/// (length, magic, CRC-32C, record framing).
pub fn batches_of<B: Deref<Target = [u8]>>(read: &ReadBatches<B>) -> Vec<Stored> {
    let mut out = Vec::new();
    let mut total = 0usize;
    for chunk in &read.chunks {
        let mut at = 0usize;
        while at < chunk.len() {
            let size = batch::peek_size(&chunk[at..]).expect("a chunk holds whole batches") as usize;
            assert!(
                at + size <= chunk.len(),
                "a read returned a partial batch: {size} bytes announced, {} left",
                chunk.len() - at
            );
            let bytes = &chunk[at..at + size];
            let header = batch::validate(bytes).unwrap_or_else(|e| panic!("a read returned an invalid batch: {e}"));
            out.push(Stored {
                base_offset: header.base_offset,
                last_offset: header.last_offset(),
                bytes: bytes.to_vec(),
            });
            at += size;
        }
        total += chunk.len();
    }
    assert_eq!(total, read.bytes, "ReadBatches::bytes must count the bytes returned");
    for pair in out.windows(2) {
        assert_eq!(pair[1].base_offset, pair[0].last_offset + 1, "a read must return contiguous batches");
    }
    if let Some(last) = out.last() {
        assert_eq!(read.next_offset, last.last_offset + 1, "next_offset follows the last batch returned");
    }
    out
}

/// Reads the whole log from its start, batch by batch, through `read`.
pub async fn read_all<S: Storage>(log: &Log<S>) -> Vec<Stored> {
    read_all_with(log, 1 << 20).await
}

pub async fn read_all_with<S: Storage>(log: &Log<S>, max_bytes: usize) -> Vec<Stored> {
    let mut out: Vec<Stored> = Vec::new();
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    // Each read returns at least one batch, so this bounds the loop.
    for _ in 0..=(end - offset).max(0) {
        if offset >= end {
            break;
        }
        let read = log.read(offset, max_bytes, i64::MAX).await.unwrap_or_else(|e| panic!("read at {offset}: {e}"));
        let batches = batches_of(&read);
        assert!(!batches.is_empty(), "read at {offset} below the log end {end} returned nothing");
        assert!(batches[0].base_offset <= offset && offset <= batches[0].last_offset, "first batch holds the offset");
        offset = read.next_offset;
        out.extend(batches);
    }
    assert_eq!(offset.max(log.log_start_offset()), end, "reading the whole log ends at the log end offset");
    out
}

/// Asserts `actual` equals `expected` batch for batch, with a short message.
pub fn assert_same_batches(actual: &[Stored], expected: &[Stored], what: &str) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "{what}: batch count (offsets {:?} vs {:?})",
        offsets(actual),
        offsets(expected)
    );
    for (a, e) in actual.iter().zip(expected) {
        assert_eq!((a.base_offset, a.last_offset), (e.base_offset, e.last_offset), "{what}: offsets");
        assert!(a.bytes == e.bytes, "{what}: bytes of batch at {} differ from what was sent", e.base_offset);
    }
}

fn offsets(batches: &[Stored]) -> Vec<(i64, i64)> {
    batches.iter().map(|b| (b.base_offset, b.last_offset)).collect()
}

/// Paths of the `.log` files in the simulated partition directory, sorted.
pub fn sim_segment_logs(sim: &SimStorage, dir: &Path) -> Vec<PathBuf> {
    sim.files().into_iter().filter(|p| p.parent() == Some(dir) && p.extension().is_some_and(|e| e == "log")).collect()
}

/// An active segment file recovery cut at `at`: nothing of the cut bytes
/// is left, and the preallocated rest (if any) reads as zeros.
pub fn assert_cut_at(file: &[u8], at: usize, what: &str) {
    assert!(file.len() >= at, "{what}: file of {} bytes is shorter than the {at} kept", file.len());
    if let Some(k) = file[at..].iter().position(|&b| b != 0) {
        panic!("{what}: file cut at {at} still holds data at {}", at + k);
    }
}
