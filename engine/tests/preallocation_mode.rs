//! How preallocation reserves a segment's space depends on how many logs the
//! shard writes at once (`EngineConfig::inline_write_logs_max`): with few,
//! the file grows to the reserved size, so appends overwrite preallocated
//! blocks; with many, the size is kept and each write extends the file.
//! Proved here: each mode is the one chosen, and in both every appended
//! batch reads back, before and after a clean reopen, with the preallocated
//! rest of a grown file never read as data.

mod common;

use common::*;
use pinion_engine::io::sim::SimStorage;
use pinion_engine::{Durability, EngineConfig, Log, LogConfig, ManualClock};

const SEGMENT_BYTES: u64 = 10_000;

fn config() -> LogConfig {
    LogConfig { segment_bytes: SEGMENT_BYTES, ..LogConfig::default() }
}

fn log_dir_of(k: usize) -> std::path::PathBuf {
    data_dir().join(format!("topic-{k}"))
}

/// Appends `rounds` batches to each log in turn, waiting until each round
/// is written (one flush pass per round); returns what each log holds.
async fn fill(logs: &[Log<SimStorage>], rounds: u64) -> Vec<Vec<Stored>> {
    let mut sent = vec![Vec::new(); logs.len()];
    for round in 0..rounds {
        let mut last = Vec::new();
        for (k, log) in logs.iter().enumerate() {
            let stored = append(log, &make_batch(round * 100 + k as u64, 3, 400, 1_000)).await;
            last.push(stored.last_offset);
            sent[k].push(stored);
        }
        for (log, offset) in logs.iter().zip(last) {
            log.wait(offset, Durability::Written).await.unwrap();
        }
    }
    sent
}

/// The active segment's file length and the bytes of data it holds.
fn active_file(sim: &SimStorage, dir: &std::path::Path, log: &Log<SimStorage>, sent: &[Stored]) -> (usize, usize) {
    let base = *log.segment_base_offsets().last().unwrap();
    let data: usize = sent.iter().filter(|b| b.base_offset >= base).map(|b| b.bytes.len()).sum();
    let path = dir.join(format!("{base:020}.log"));
    (sim.contents(&path).expect("active segment file").len(), data)
}

async fn scenario(logs_count: usize, inline_write_logs_max: usize, expect_grown: bool) {
    let sim = SimStorage::new(7);
    let clock = ManualClock::new(1_000_000);
    let engine_config = EngineConfig { inline_write_logs_max, ..engine_config() };
    let engine = start_sim_with(&sim, &clock, engine_config.clone()).await;
    let mut logs = Vec::new();
    for k in 0..logs_count {
        logs.push(engine.open_log(&log_dir_of(k), config()).await.unwrap());
    }
    // Several segments per log, so the shard's average of logs per flush
    // pass has settled; then one more round after `segment_ms`, so every
    // log rolls and its new segment holds one small batch.
    let mut sent = fill(&logs, 30).await;
    clock.advance(config().segment_ms);
    for (k, more) in fill(&logs, 1).await.into_iter().enumerate() {
        sent[k].extend(more);
    }
    for (k, log) in logs.iter().enumerate() {
        assert!(log.segment_base_offsets().len() >= 4, "log {k} rolled");
        let (file_len, data) = active_file(&sim, &log_dir_of(k), log, &sent[k]);
        assert!(data > 0 && data < 4096, "log {k}: one batch in the new segment");
        if expect_grown {
            assert_eq!(file_len as u64, SEGMENT_BYTES, "log {k}: the active file grew to its reservation");
        } else {
            // The one O_DIRECT write of the batch, padded to a block.
            assert_eq!(file_len, 4096, "log {k}: the active file keeps the size of its data");
        }
        assert_same_batches(&read_all(log).await, &sent[k], &format!("log {k}: reads"));
    }
    for log in logs {
        log.close().await.unwrap();
    }
    let engine = start_sim_with(&sim, &clock, engine_config).await;
    for (k, sent) in sent.iter().enumerate() {
        let log = engine.open_log(&log_dir_of(k), config()).await.unwrap();
        assert_same_batches(&read_all(&log).await, sent, &format!("log {k}: reads after a clean reopen"));
        log.close().await.unwrap();
    }
}

#[test]
fn with_few_busy_logs_preallocation_grows_the_file() {
    run("prealloc-grow", || async {
        scenario(1, 16, true).await;
        scenario(3, 4, true).await;
    });
}

#[test]
fn with_many_busy_logs_preallocation_keeps_the_file_size() {
    run("prealloc-keep", || async {
        scenario(6, 2, false).await;
        scenario(2, 0, false).await;
    });
}
