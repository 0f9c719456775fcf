//! Read-ahead of cold reads: a reader that goes on where its last cold read
//! stopped (at its byte limit) finds that window already read, and gets the
//! same batches it would have got from the device; a window whose read
//! failed is read again; truncation drops a window whose bytes it will
//! overwrite; a reader that got to the tail cache leaves no window behind;
//! the shard's windows stay within `read_ahead_bytes_max`, the oldest
//! making room for new ones; and with a budget of 0 nothing is read ahead.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use pinion_engine::io::sim::{Fault, FaultOp, SimStorage};
use pinion_engine::{Durability, Engine, EngineConfig, Log, LogConfig, ManualClock};

/// One segment large enough for everything the tests append.
fn config() -> LogConfig {
    LogConfig { segment_bytes: 16 << 20, ..LogConfig::default() }
}

fn dir(index: usize) -> PathBuf {
    data_dir().join(format!("topic-{index}"))
}

/// Appends `batches` batches of about 8 KiB (tags from `first_tag`) and
/// waits until they are durable.
async fn append_log(log: &Log<SimStorage>, first_tag: u64, batches: u64) -> Vec<Stored> {
    let mut sent = Vec::new();
    for tag in first_tag..first_tag + batches {
        sent.push(append(log, &make_batch(tag, 4, 2_000, 1_000 + tag as i64)).await);
    }
    log.wait(sent.last().unwrap().last_offset, Durability::Durable).await.unwrap();
    sent
}

/// Opens the log at `dir` on `engine` again, so every read of it is cold.
async fn reopened(engine: &Engine<SimStorage>, log: Log<SimStorage>, dir: &Path) -> Log<SimStorage> {
    log.close().await.unwrap();
    let log = engine.open_log(dir, config()).await.unwrap();
    assert!(log.reads_from_disk(log.log_start_offset()), "a reopened log reads from the device");
    log
}

/// One read at `offset`, checked against what was appended from there.
async fn read_checked(log: &Log<SimStorage>, sent: &[Stored], offset: i64, max_bytes: usize) -> i64 {
    let read = log.read(offset, max_bytes, i64::MAX).await.unwrap_or_else(|e| panic!("read at {offset}: {e}"));
    let got = batches_of(&read);
    assert!(!got.is_empty(), "read at {offset} returned nothing");
    assert!(read.bytes <= max_bytes, "read at {offset}: {} bytes past max_bytes {max_bytes}", read.bytes);
    let first = sent.iter().position(|b| b.last_offset >= offset).expect("offset was appended");
    assert_same_batches(&got, &sent[first..first + got.len()], &format!("read at {offset}"));
    read.next_offset
}

fn assert_same_batches(got: &[Stored], want: &[Stored], context: &str) {
    assert_eq!(got.len(), want.len(), "{context}: batch count");
    for (g, w) in got.iter().zip(want) {
        assert!(g == w, "{context}: batch at {} differs from what was appended", w.base_offset);
    }
}

#[test]
fn a_reader_going_on_finds_its_next_window_read_ahead() {
    run("read-ahead-sequential", || async {
        let sim = SimStorage::new(1);
        let clock = ManualClock::new(1_000_000);
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&dir(0), config()).await.unwrap();
        let sent = append_log(&log, 0, 200).await;
        let log = reopened(&engine, log, &dir(0)).await;
        let max_bytes = 100_000;
        let mut offset = 0;
        let mut reads = 0u64;
        while offset < log.log_end_offset() && reads < 1_000 {
            offset = read_checked(&log, &sent, offset, max_bytes).await;
            reads += 1;
            assert!(engine.read_ahead_bytes() <= engine.config().read_ahead_bytes_max, "windows within the budget");
        }
        assert_eq!(offset, log.log_end_offset(), "the reader got to the end");
        let stats = engine.stats();
        assert!(reads >= 15, "{reads} reads of about 100 KB each");
        // Every read but the first finds the window its predecessor started
        // (the last read reaches the end of the data and starts none).
        assert_eq!(stats.read_aheads, reads - 1, "one window per read that stopped at max_bytes");
        assert_eq!(stats.read_ahead_hits, reads - 1, "every read after the first took its window");
        engine.shutdown().await;
    });
}

#[test]
fn a_window_whose_read_failed_is_read_again() {
    run("read-ahead-failed", || async {
        let sim = SimStorage::new(2);
        let clock = ManualClock::new(1_000_000);
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&dir(0), config()).await.unwrap();
        let sent = append_log(&log, 0, 50).await;
        let log = reopened(&engine, log, &dir(0)).await;
        // The first read's own device read goes through; the window's
        // read, the next one, fails.
        sim.inject(Fault { skip: 1, ..Fault::new(FaultOp::Read, "topic-0", libc::EIO) });
        let next = read_checked(&log, &sent, 0, 100_000).await;
        assert_eq!(engine.stats().read_aheads, 1);
        let after = read_checked(&log, &sent, next, 100_000).await;
        assert!(after > next);
        assert_eq!(engine.stats().read_ahead_hits, 0, "a failed window is not used");
        engine.shutdown().await;
    });
}

#[test]
fn truncation_drops_the_window_it_would_make_stale() {
    run("read-ahead-truncate", || async {
        let sim = SimStorage::new(3);
        let clock = ManualClock::new(1_000_000);
        // A tail cache too small to hold what is appended after the
        // truncation: reads of it go to the device.
        let small_cache = EngineConfig { cache_bytes_max: 16 << 10, ..engine_config() };
        let engine = start_sim_with(&sim, &clock, small_cache).await;
        let log = engine.open_log(&dir(0), config()).await.unwrap();
        let sent = append_log(&log, 0, 60).await;
        let log = reopened(&engine, log, &dir(0)).await;
        let next = read_checked(&log, &sent, 0, 100_000).await;
        assert_eq!(engine.stats().read_aheads, 1, "a window from {next} on");
        // Truncate below the window and append other batches over it.
        let keep = sent[3].base_offset;
        log.truncate_to(keep).await.unwrap();
        let mut now = sent[..3].to_vec();
        now.extend(append_log(&log, 1_000, 57).await);
        assert_eq!(now.last().unwrap().last_offset, sent.last().unwrap().last_offset, "same offsets again");
        assert!(log.reads_from_disk(next), "the new batches at {next} are read from the device");
        read_checked(&log, &now, next, 100_000).await;
        assert_eq!(engine.stats().read_ahead_hits, 0, "the stale window was not used");
        engine.shutdown().await;
    });
}

#[test]
fn a_reader_at_the_tail_cache_leaves_no_window_behind() {
    run("read-ahead-caught-up", || async {
        let sim = SimStorage::new(6);
        let clock = ManualClock::new(1_000_000);
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&dir(0), config()).await.unwrap();
        let mut sent = append_log(&log, 0, 30).await;
        let log = reopened(&engine, log, &dir(0)).await;
        let next = read_checked(&log, &sent, 0, 100_000).await;
        assert!(engine.read_ahead_bytes() > 0, "a window from {next} on");
        // New batches land in the tail cache; the reader jumps to them.
        sent.extend(append_log(&log, 100, 5).await);
        let tail = sent[30].base_offset;
        assert!(!log.reads_from_disk(tail));
        read_checked(&log, &sent, tail, 100_000).await;
        assert_eq!(engine.read_ahead_bytes(), 0, "the window it passed was dropped");
        engine.shutdown().await;
    });
}

#[test]
fn windows_stay_within_the_budget_and_the_oldest_make_room() {
    run("read-ahead-budget", || async {
        let sim = SimStorage::new(4);
        let clock = ManualClock::new(1_000_000);
        // Room for two windows of a 64 KiB read (aligned: at most 68 KiB), not three.
        let budget = EngineConfig { read_ahead_bytes_max: 140 << 10, ..engine_config() };
        let engine = start_sim_with(&sim, &clock, budget).await;
        let mut logs = Vec::new();
        for index in 0..3 {
            let log = engine.open_log(&dir(index), config()).await.unwrap();
            let sent = append_log(&log, 100 * index as u64, 40).await;
            logs.push((reopened(&engine, log, &dir(index)).await, sent));
        }
        let mut next = Vec::new();
        for (log, sent) in &logs {
            next.push(read_checked(log, sent, 0, 64 << 10).await);
            assert!(engine.read_ahead_bytes() <= 140 << 10, "windows: {} bytes", engine.read_ahead_bytes());
        }
        assert_eq!(engine.stats().read_aheads, 3, "each read started a window");
        // The first log's window made room for the third's.
        let (log, sent) = &logs[0];
        read_checked(log, sent, next[0], 64 << 10).await;
        assert_eq!(engine.stats().read_ahead_hits, 0, "the oldest window was evicted");
        let (log, sent) = &logs[2];
        read_checked(log, sent, next[2], 64 << 10).await;
        assert_eq!(engine.stats().read_ahead_hits, 1, "the newest window was kept");
        engine.shutdown().await;
    });
}

#[test]
fn no_window_is_read_with_a_budget_of_zero() {
    run("read-ahead-off", || async {
        let sim = SimStorage::new(5);
        let clock = ManualClock::new(1_000_000);
        let off = EngineConfig { read_ahead_bytes_max: 0, ..engine_config() };
        let engine = start_sim_with(&sim, &clock, off).await;
        let log = engine.open_log(&dir(0), config()).await.unwrap();
        let sent = append_log(&log, 0, 50).await;
        let log = reopened(&engine, log, &dir(0)).await;
        let mut offset = 0;
        for _ in 0..3 {
            offset = read_checked(&log, &sent, offset, 100_000).await;
        }
        let stats = engine.stats();
        assert_eq!((stats.read_aheads, stats.read_ahead_hits, engine.read_ahead_bytes()), (0, 0, 0));
        engine.shutdown().await;
    });
}
