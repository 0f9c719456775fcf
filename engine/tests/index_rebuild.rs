//! Indexes are a cache of the log: a clean close leaves a non-empty
//! `.index` and `.timeindex` beside every segment, and when those files are
//! missing, cut to an odd size, emptied or filled with garbage, a reopen
//! rebuilds them from the `.log` (and writes them back, byte for byte as a
//! clean close wrote them) so that reads by offset (every offset, cold from
//! disk) and `offset_for_timestamp` still give the right answers, checked
//! against a model of what was appended, including timestamps that go
//! backwards and forwards between producers.

mod common;

use std::path::PathBuf;

use common::*;
use pinion_engine::index::{OFFSET_ENTRY_BYTES, TIME_ENTRY_BYTES};
use pinion_engine::io::sim::SimStorage;
use pinion_engine::{Durability, LogConfig, ManualClock};

const BATCHES: u64 = 160;

fn config() -> LogConfig {
    LogConfig { segment_bytes: 16 << 10, index_interval_bytes: 1024, ..LogConfig::default() }
}

/// Timestamps mostly rise, but some batches come from producers whose
/// clocks lag or run ahead, as happens with several producers on one
/// partition.
fn base_timestamp(i: u64) -> i64 {
    let t = 10_000 + 10 * i as i64;
    match i % 11 {
        3 => t - 250,
        7 => t + 400,
        _ => t,
    }
}

/// Builds a multi-segment log, closes it cleanly, and returns what it holds.
async fn build_closed_log(sim: &SimStorage, clock: &ManualClock) -> (Vec<Stored>, Vec<i64>) {
    let engine = start_sim(sim, clock).await;
    let log = engine.open_log(&log_dir(), config()).await.unwrap();
    let mut rng = Rng::new(42);
    let mut sent = Vec::new();
    for i in 0..BATCHES {
        let batch = make_batch(i, rng.range(1, 4) as usize, rng.range(40, 700) as usize, base_timestamp(i));
        sent.push(append(&log, &batch).await);
    }
    log.wait(sent.last().unwrap().last_offset, Durability::Durable).await.unwrap();
    let bases = log.segment_base_offsets();
    assert!(bases.len() >= 5, "16 KiB segments must roll several times, got {bases:?}");
    log.close().await.unwrap();
    engine.shutdown().await;
    (sent, bases)
}

/// Every record as (offset, timestamp), in offset order.
fn records(sent: &[Stored]) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for b in sent {
        let header = pinion_engine::batch::BatchHeader::parse(&b.bytes).unwrap();
        for (offset_delta, timestamp_delta) in pinion_engine::batch::uncompressed_record_deltas(&b.bytes).unwrap() {
            out.push((b.base_offset + offset_delta, header.base_timestamp + timestamp_delta));
        }
    }
    out
}

/// Kafka's ListOffsets by time: the first record, in offset order, whose
/// timestamp is at or after `timestamp`.
fn expected_for_timestamp(records: &[(i64, i64)], timestamp: i64) -> Option<(i64, i64)> {
    records.iter().copied().find(|&(_, t)| t >= timestamp)
}

/// Reopens the log and checks every offset and many timestamps.
async fn check_answers(sim: &SimStorage, clock: &ManualClock, sent: &[Stored], what: &str) {
    let engine = start_sim(sim, clock).await;
    let log = engine.open_log(&log_dir(), config()).await.unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
    let end = sent.last().unwrap().last_offset + 1;
    assert_eq!(log.log_end_offset(), end, "{what}: log end offset");
    for b in sent {
        for offset in b.base_offset..=b.last_offset {
            let read = log.read(offset, 1, i64::MAX).await.unwrap();
            let got = batches_of(&read);
            assert_eq!(got.len(), 1, "{what}: a 1-byte read returns exactly one batch");
            assert_eq!(got[0], *b, "{what}: read at offset {offset}");
        }
    }
    let records = records(sent);
    let mut timestamps: Vec<i64> = records.iter().flat_map(|&(_, t)| [t - 1, t, t + 1]).collect();
    timestamps.extend([i64::MIN / 2, -1, 0, i64::MAX / 2]);
    timestamps.sort_unstable();
    timestamps.dedup();
    for t in timestamps {
        let got = log.offset_for_timestamp(t).await.unwrap();
        assert_eq!(got, expected_for_timestamp(&records, t), "{what}: offset_for_timestamp({t})");
    }
    log.close().await.unwrap();
    engine.shutdown().await;
}

fn index_files(bases: &[i64]) -> (Vec<PathBuf>, Vec<PathBuf>) {
    (
        bases.iter().map(|&b| segment_path(b, "index")).collect(),
        bases.iter().map(|&b| segment_path(b, "timeindex")).collect(),
    )
}

#[test]
fn clean_close_leaves_non_empty_index_files_for_every_segment() {
    run("index-after-close", || async {
        let sim = SimStorage::new(1);
        let clock = ManualClock::new(50_000);
        let (sent, bases) = build_closed_log(&sim, &clock).await;
        let (index, time_index) = index_files(&bases);
        for (i, (index, time_index)) in index.iter().zip(&time_index).enumerate() {
            let index = sim.contents(index).unwrap_or_else(|| panic!("{} is missing", index.display()));
            let time_index = sim.contents(time_index).unwrap_or_else(|| panic!("{} is missing", time_index.display()));
            assert!(
                !index.is_empty() && index.len().is_multiple_of(OFFSET_ENTRY_BYTES),
                "segment {}: .index of {} bytes",
                bases[i],
                index.len()
            );
            assert!(
                !time_index.is_empty() && time_index.len().is_multiple_of(TIME_ENTRY_BYTES),
                "segment {}: .timeindex of {} bytes",
                bases[i],
                time_index.len()
            );
        }
        let stray: Vec<_> = sim.files().into_iter().filter(|p| p.to_string_lossy().ends_with(".tmp")).collect();
        assert!(stray.is_empty(), "no temporary files after a clean close: {stray:?}");
        check_answers(&sim, &clock, &sent, "untouched indexes").await;
    });
}

type Damage = fn(&SimStorage, &[PathBuf], &[PathBuf]);

fn remove_sealed_offset_indexes(sim: &SimStorage, index: &[PathBuf], _: &[PathBuf]) {
    index[..index.len() - 1].iter().for_each(|path| remove(sim, path));
}

fn remove_sealed_time_indexes(sim: &SimStorage, _: &[PathBuf], time_index: &[PathBuf]) {
    time_index[..time_index.len() - 1].iter().for_each(|path| remove(sim, path));
}

fn remove_every_index(sim: &SimStorage, index: &[PathBuf], time_index: &[PathBuf]) {
    index.iter().chain(time_index).for_each(|path| remove(sim, path));
}

fn cut_active_offset_index_to_odd_size(sim: &SimStorage, index: &[PathBuf], _: &[PathBuf]) {
    let path = index.last().unwrap();
    let len = sim.contents(path).unwrap().len();
    sim.cut(path, len - 3);
}

fn cut_sealed_indexes_to_odd_sizes(sim: &SimStorage, index: &[PathBuf], time_index: &[PathBuf]) {
    for path in index[..index.len() - 1].iter().chain(&time_index[..time_index.len() - 1]) {
        let len = sim.contents(path).unwrap().len();
        sim.cut(path, len - 5);
    }
}

fn empty_sealed_offset_indexes(sim: &SimStorage, index: &[PathBuf], _: &[PathBuf]) {
    index[..index.len() - 1].iter().for_each(|path| sim.cut(path, 0));
}

fn point_sealed_offset_indexes_past_the_segment(sim: &SimStorage, index: &[PathBuf], _: &[PathBuf]) {
    for path in &index[..index.len() - 1] {
        let len = sim.contents(path).unwrap().len();
        sim.corrupt(path, len - OFFSET_ENTRY_BYTES, &[0xFF; OFFSET_ENTRY_BYTES]);
    }
}

fn make_sealed_time_indexes_go_backwards(sim: &SimStorage, _: &[PathBuf], time_index: &[PathBuf]) {
    for path in &time_index[..time_index.len() - 1] {
        let len = sim.contents(path).unwrap().len();
        assert!(len >= 2 * TIME_ENTRY_BYTES, "{} needs two entries to go backwards", path.display());
        sim.corrupt(path, len - TIME_ENTRY_BYTES, &[0; TIME_ENTRY_BYTES]);
    }
}

const DAMAGES: &[(&str, Damage)] = &[
    ("sealed .index files removed", remove_sealed_offset_indexes),
    ("sealed .timeindex files removed", remove_sealed_time_indexes),
    ("every index file removed", remove_every_index),
    ("active .index cut to an odd size", cut_active_offset_index_to_odd_size),
    ("sealed .index and .timeindex cut to odd sizes", cut_sealed_indexes_to_odd_sizes),
    ("sealed .index emptied", empty_sealed_offset_indexes),
    ("sealed .index entries point past the segment", point_sealed_offset_indexes_past_the_segment),
    ("sealed .timeindex entries go backwards", make_sealed_time_indexes_go_backwards),
];

#[test]
fn missing_or_damaged_indexes_are_rebuilt_on_reopen() {
    run("index-rebuild", || async {
        for (i, &(what, damage)) in DAMAGES.iter().enumerate() {
            let sim = SimStorage::new(i as u64);
            let clock = ManualClock::new(50_000);
            let (sent, bases) = build_closed_log(&sim, &clock).await;
            let (index, time_index) = index_files(&bases);
            let originals: Vec<Option<Vec<u8>>> = index.iter().chain(&time_index).map(|p| sim.contents(p)).collect();
            damage(&sim, &index, &time_index);
            check_answers(&sim, &clock, &sent, what).await;
            // The rebuilt indexes are back on disk, byte for byte as a clean close wrote them.
            for (path, original) in index.iter().chain(&time_index).zip(&originals) {
                assert!(sim.contents(path) == *original, "{what}: {} rebuilt on disk", path.display());
            }
            // A second reopen (after the first one closed cleanly) still agrees.
            check_answers(&sim, &clock, &sent, &format!("{what}, reopened twice")).await;
        }
    });
}

/// Removes a file of the simulated disk the way an operator's `rm` would.
fn remove(sim: &SimStorage, path: &std::path::Path) {
    assert!(sim.contents(path).is_some(), "{} exists before removal", path.display());
    futures_lite::future::block_on(pinion_engine::io::Storage::remove_file(sim, path)).unwrap();
}
