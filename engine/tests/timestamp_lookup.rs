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

/// A batch whose header says max_timestamp -1 (sarama 1.22 sends such,
/// compressed or not) is stored with its records' real maximum and a CRC
/// that covers it, so a lookup by time finds it, before and after reopen.
#[test]
fn a_batch_announcing_no_max_timestamp_is_stored_with_its_records_maximum() {
    use pinion_engine::batch::{self, Compression, HEADER_BYTES};
    use std::io::Write;

    async fn check_repaired(log: &Log<SimStorage>, what: &str) {
        let read = log.read(0, 1 << 20, i64::MAX).await.unwrap();
        let max: Vec<i64> =
            batches_of(&read).iter().map(|b| batch::validate(&b.bytes).unwrap().max_timestamp).collect();
        assert_eq!(max, [5_002, 6_002], "{what}: stored max timestamps");
        for (target, expected) in [(4_000, (0, 5_000)), (5_001, (1, 5_001)), (5_003, (3, 6_000)), (6_002, (5, 6_002))] {
            assert_eq!(log.offset_for_timestamp(target).await.unwrap(), Some(expected), "{what}: lookup {target}");
        }
        assert_eq!(log.offset_for_timestamp(6_003).await.unwrap(), None, "{what}: past every record");
    }

    run("timestamp-repair", || async {
        let sim = SimStorage::new(2);
        let clock = ManualClock::new(10_000);
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), config()).await.unwrap();
        // Records at t, t+1, t+2 of each batch; the header claims -1.
        let mut plain = make_batch(1, 3, 40, 5_000);
        batch::set_max_timestamp(&mut plain, -1);
        let source = make_batch(2, 3, 40, 6_000);
        let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
        encoder.write_all(&source[HEADER_BYTES..]).unwrap();
        let mut lz4 = batch::with_records(&source, &encoder.finish().unwrap(), 3, Compression::Lz4);
        batch::set_max_timestamp(&mut lz4, -1);
        for sent in [&plain, &lz4] {
            assert_eq!(batch::validate(sent).unwrap().max_timestamp, -1, "the producer's batch is valid as sent");
            log.append(bytes::BytesMut::from(&sent[..]), LEADER_EPOCH).await.expect("append accepted");
        }
        log.wait(5, Durability::Durable).await.unwrap();
        check_repaired(&log, "live log").await;
        log.close().await.unwrap();
        let log = engine.open_log(&log_dir(), config()).await.unwrap();
        check_repaired(&log, "after a clean reopen").await;
        engine.shutdown().await;
    });
}
