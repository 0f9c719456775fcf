//! `offset_for_timestamp` (ListOffsets by time) returns the first record,
//! in offset order, whose timestamp is at or after the target, even when
//! producers' clocks disagree and a batch that falls between two sparse
//! index entries carries a larger timestamp than the next indexed batch.
//! Checked on the live log, after a clean reopen, and after the indexes
//! were rebuilt from the log (regression: the time index used to record
//! the indexed batch's own timestamp instead of the largest so far, so a
//! lookup started past the batch holding the answer).

mod common;

use common::*;
use pinion_engine::io::sim::SimStorage;
use pinion_engine::{Durability, Log, LogConfig, ManualClock};

/// (base timestamp of the batch, as producers stamped them). Each batch has
/// two records at `t` and `t + 1`; about three batches share an index entry.
const TIMESTAMPS: &[i64] = &[100, 900, 200, 300, 400, 500, 600, 1_500, 700, 800, 1_000, 1_100];

fn config() -> LogConfig {
    LogConfig { index_interval_bytes: 1_000, ..LogConfig::default() }
}

async fn check(log: &Log<SimStorage>, sent: &[Stored], what: &str) {
    let mut records = Vec::new();
    for (b, &t) in sent.iter().zip(TIMESTAMPS) {
        records.push((b.base_offset, t));
        records.push((b.base_offset + 1, t + 1));
    }
    for target in (0..1_700).step_by(25) {
        let expected = records.iter().copied().find(|&(_, t)| t >= target);
        assert_eq!(log.offset_for_timestamp(target).await.unwrap(), expected, "{what}: offset_for_timestamp({target})");
    }
}

#[test]
fn lookup_by_timestamp_finds_the_first_record_when_producer_clocks_disagree() {
    run("timestamp-lookup", || async {
        let sim = SimStorage::new(1);
        let clock = ManualClock::new(10_000);
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), config()).await.unwrap();
        let mut sent = Vec::new();
        for (i, &t) in TIMESTAMPS.iter().enumerate() {
            sent.push(append(&log, &make_batch(i as u64, 2, 130, t)).await);
        }
        assert!(sent[0].bytes.len() > 300 && sent[0].bytes.len() < 500, "about three batches per index entry");
        log.wait(sent.last().unwrap().last_offset, Durability::Durable).await.unwrap();
        check(&log, &sent, "live log").await;
        log.close().await.unwrap();

        let log = engine.open_log(&log_dir(), config()).await.unwrap();
        check(&log, &sent, "after a clean reopen").await;
        log.close().await.unwrap();

        for extension in ["index", "timeindex"] {
            futures_lite::future::block_on(pinion_engine::io::Storage::remove_file(&sim, &segment_path(0, extension)))
                .unwrap();
        }
        let log = engine.open_log(&log_dir(), config()).await.unwrap();
        check(&log, &sent, "after rebuilding the indexes").await;
        engine.shutdown().await;
    });
}
