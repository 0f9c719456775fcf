//! Reads return whole batches, from the one holding the requested offset,
//! across segment boundaries, within `max_bytes` (but always at least one
//! batch) and below `max_offset`. Checked at every offset of a log of many
//! small segments for several `max_bytes` and `max_offset`, against a
//! model of what was appended; then again after close and reopen, where
//! every read is cold (from the device, not the tail cache), and with a
//! tail cache too small to hold the log; the answers are identical.
//! `Log::reads_from_disk` agrees with where every read's data came from.

mod common;

use common::*;
use pinion_engine::io::sim::SimStorage;
use pinion_engine::{Chunk, Durability, EngineConfig, Log, LogConfig, ManualClock, ReadError};

const MAX_BYTES: &[usize] = &[1, 700, 4_000, 9_000, 30_000, 1 << 20];

fn config() -> LogConfig {
    LogConfig { segment_bytes: 8 << 10, index_interval_bytes: 700, ..LogConfig::default() }
}

/// The answer the model gives: nothing if `offset` is at or past
/// `max_offset`, else the batch holding `offset`, then following batches
/// while they start below `max_offset` and fit in `max_bytes`.
fn expected(sent: &[Stored], offset: i64, max_bytes: usize, max_offset: i64) -> Vec<Stored> {
    let mut out: Vec<Stored> = Vec::new();
    if offset >= max_offset {
        return out;
    }
    let mut bytes = 0;
    for b in sent.iter().skip_while(|b| b.last_offset < offset) {
        if b.base_offset >= max_offset || (!out.is_empty() && bytes + b.bytes.len() > max_bytes) {
            break;
        }
        bytes += b.bytes.len();
        out.push(b.clone());
    }
    out
}

/// Every read the test makes, with its answer as (base, last) offsets.
type Answers = Vec<((i64, usize, i64), Vec<(i64, i64)>)>;

async fn read_everywhere(log: &Log<SimStorage>, sent: &[Stored], max_bytes_tried: &[usize], what: &str) -> Answers {
    let end = sent.last().unwrap().last_offset + 1;
    assert_eq!(log.log_end_offset(), end, "{what}: log end offset");
    let mut answers = Answers::new();
    for offset in 0..=end {
        for &max_bytes in max_bytes_tried {
            for max_offset in [i64::MAX, offset + 1, offset + 7, offset] {
                let read = log.read(offset, max_bytes, max_offset).await.unwrap();
                let got = batches_of(&read);
                let context = format!("{what}: read({offset}, max_bytes {max_bytes}, max_offset {max_offset})");
                if offset < end.min(max_offset) {
                    assert!(!got.is_empty(), "{context}: at least one batch");
                    // What the broker asks before reading: would this read go to disk?
                    let from_disk = matches!(read.chunks[0], Chunk::Disk(_));
                    assert_eq!(log.reads_from_disk(offset), from_disk, "{context}: reads_from_disk");
                    assert!(
                        got[0].base_offset <= offset && offset <= got[0].last_offset,
                        "{context}: first batch holds the offset"
                    );
                } else {
                    assert!(got.is_empty(), "{context}: nothing at or past the limit");
                    assert!(offset < end || !log.reads_from_disk(offset), "{context}: the log end is not on disk");
                    assert_eq!(read.next_offset, offset, "{context}: next_offset unchanged");
                }
                assert!(
                    got.len() <= 1 || read.bytes <= max_bytes,
                    "{context}: {} bytes in {} batches",
                    read.bytes,
                    got.len()
                );
                assert!(got.iter().all(|b| b.base_offset < max_offset), "{context}: batch at or past max_offset");
                assert_eq!((read.log_start_offset, read.log_end_offset), (0, end), "{context}: offsets reported");
                assert_same_batches(&got, &expected(sent, offset, max_bytes, max_offset), &context);
                answers.push((
                    (offset, max_bytes, max_offset),
                    got.iter().map(|b| (b.base_offset, b.last_offset)).collect(),
                ));
            }
        }
    }
    match log.read(end + 1, 1 << 20, i64::MAX).await {
        Err(ReadError::OffsetOutOfRange { offset, log_end_offset, .. }) => {
            assert_eq!((offset, log_end_offset), (end + 1, end))
        }
        other => panic!("{what}: read past the log end gave {other:?}"),
    }
    answers
}

async fn append_log(log: &Log<SimStorage>, batches: u64, value_bytes_max: u64) -> Vec<Stored> {
    let mut rng = Rng::new(11);
    let mut sent = Vec::new();
    for i in 0..batches {
        let batch = make_batch(i, rng.range(1, 4) as usize, rng.range(30, value_bytes_max) as usize, 1_000 + i as i64);
        sent.push(append(log, &batch).await);
    }
    log.wait(sent.last().unwrap().last_offset, Durability::Durable).await.unwrap();
    sent
}

#[test]
fn reads_at_every_offset_agree_hot_and_cold() {
    run("read-across-segments", || async {
        let sim = SimStorage::new(1);
        let clock = ManualClock::new(1_000_000);
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), config()).await.unwrap();
        let sent = append_log(&log, 70, 1_600).await;
        assert!(log.segment_count() >= 12, "8 KiB segments roll often, got {}", log.segment_count());
        assert!(sent.iter().any(|b| b.bytes.len() > 4_000), "some batches exceed some max_bytes");
        let hot = read_everywhere(&log, &sent, MAX_BYTES, "from the tail cache").await;
        log.close().await.unwrap();

        let log = engine.open_log(&log_dir(), config()).await.unwrap();
        assert_eq!(engine.cache_bytes(), 0, "a reopened log starts with an empty tail cache");
        let cold = read_everywhere(&log, &sent, MAX_BYTES, "cold, from the device").await;
        assert!(hot == cold, "hot and cold reads give identical answers");
        engine.shutdown().await;

        // A tail cache far smaller than the log: reads mix memory and device.
        let sim = SimStorage::new(2);
        let small_cache = EngineConfig { cache_bytes_max: 16 << 10, ..engine_config() };
        let engine = start_sim_with(&sim, &clock, small_cache).await;
        let log = engine.open_log(&log_dir(), config()).await.unwrap();
        let sent_again = append_log(&log, 70, 1_600).await;
        assert_eq!(sent_again, sent);
        assert!(engine.cache_bytes() <= 16 << 10, "the cache stays within its budget: {}", engine.cache_bytes());
        let mixed = read_everywhere(&log, &sent, MAX_BYTES, "with a small tail cache").await;
        assert!(hot == mixed, "reads through a small cache give identical answers");
        engine.shutdown().await;
    });
}

#[test]
fn cold_reads_larger_than_one_device_window_are_not_cut_short() {
    run("read-large", || async {
        let sim = SimStorage::new(3);
        let clock = ManualClock::new(1_000_000);
        // One big segment with sparse index entries: a read starts well
        // before its offset and needs several device windows (64 KiB and up).
        let config = LogConfig { segment_bytes: 4 << 20, index_interval_bytes: 48 << 10, ..LogConfig::default() };
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), config.clone()).await.unwrap();
        let sent = append_log(&log, 160, 1_200).await;
        assert_eq!(log.segment_count(), 1);
        assert!(log.size_bytes() > 200 << 10, "the segment spans several windows: {} bytes", log.size_bytes());
        let max_bytes_tried = [1, 65_000, 100_000, 250_000];
        let hot = read_everywhere(&log, &sent, &max_bytes_tried, "large reads from the tail cache").await;
        log.close().await.unwrap();
        let log = engine.open_log(&log_dir(), config).await.unwrap();
        let cold = read_everywhere(&log, &sent, &max_bytes_tried, "large cold reads").await;
        assert!(hot == cold, "hot and cold large reads give identical answers");
        engine.shutdown().await;
    });
}
