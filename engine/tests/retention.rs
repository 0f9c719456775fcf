//! Retention deletes whole segments, oldest first, and moves the log start.
//!
//! By time (`retention_ms`, driven by a `ManualClock`): a segment goes once
//! its newest timestamp is older than the retention, an expired active
//! segment is rolled and deleted too, `log_start_offset` moves to the first
//! remaining segment, reads below it get `OffsetOutOfRange`, the files are
//! gone, and the new start survives a reopen. By size (`retention_bytes`):
//! the oldest segments go until the log fits in `retention_bytes` plus one
//! segment, never more than needed.

mod common;

use common::*;
use pinion_engine::io::sim::SimStorage;
use pinion_engine::{Clock, Durability, LogConfig, ManualClock, ReadError};

const T0: i64 = 1_700_000_000_000;
const RETENTION_MS: i64 = 60_000;

/// Groups `sent` by the segment (base offsets `bases`) that holds each batch.
fn by_segment<'a>(sent: &'a [Stored], bases: &[i64]) -> Vec<Vec<&'a Stored>> {
    let mut out: Vec<Vec<&Stored>> = bases.iter().map(|_| Vec::new()).collect();
    for b in sent {
        let k = bases.partition_point(|&base| base <= b.base_offset) - 1;
        out[k].push(b);
    }
    out
}

fn max_timestamp(batches: &[&Stored]) -> i64 {
    batches.iter().map(|b| pinion_engine::batch::BatchHeader::parse(&b.bytes).unwrap().max_timestamp).max().unwrap()
}

async fn expect_out_of_range(log: &pinion_engine::Log<SimStorage>, offset: i64, log_start: i64) {
    match log.read(offset, 1 << 20, i64::MAX).await {
        Err(ReadError::OffsetOutOfRange { offset: o, log_start_offset, .. }) => {
            assert_eq!((o, log_start_offset), (offset, log_start));
        }
        other => panic!("read at {offset} below the log start {log_start} gave {other:?}"),
    }
}

#[test]
fn time_retention_deletes_expired_segments_and_moves_the_log_start() {
    run("retention-time", || async {
        let sim = SimStorage::new(1);
        let clock = ManualClock::new(T0);
        let config = LogConfig { segment_bytes: 8 << 10, retention_ms: RETENTION_MS, ..LogConfig::default() };
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), config.clone()).await.unwrap();
        let mut sent = Vec::new();
        for i in 0..40u64 {
            sent.push(append(&log, &make_batch(i, 2, 450, clock.now_ms())).await);
            clock.advance(1_000);
        }
        log.wait(sent.last().unwrap().last_offset, Durability::Written).await.unwrap();
        let bases = log.segment_base_offsets();
        assert!(bases.len() >= 4, "8 KiB segments must roll, got {bases:?}");
        let segments = by_segment(&sent, &bases);

        // Nothing is old enough yet.
        clock.set(max_timestamp(&segments[0]) + RETENTION_MS);
        assert_eq!(
            log.enforce_retention().await.unwrap().segments_deleted,
            0,
            "at exactly retention_ms nothing expires"
        );

        // The first two segments expire; the third's newest batch does not.
        clock.set(max_timestamp(&segments[1]) + RETENTION_MS + 1);
        let outcome = log.enforce_retention().await.unwrap();
        assert_eq!(outcome.segments_deleted, 2);
        let deleted_bytes: usize = segments[..2].iter().flatten().map(|b| b.bytes.len()).sum();
        assert_eq!(outcome.bytes_deleted, deleted_bytes as u64);
        assert_eq!(log.segment_base_offsets(), bases[2..].to_vec());
        assert_eq!(log.log_start_offset(), bases[2]);
        for base in &bases[..2] {
            for extension in ["log", "index", "timeindex"] {
                assert!(sim.contents(&segment_path(*base, extension)).is_none(), "segment {base}.{extension} deleted");
            }
        }
        expect_out_of_range(&log, 0, bases[2]).await;
        expect_out_of_range(&log, bases[2] - 1, bases[2]).await;
        let remaining: Vec<Stored> = sent.iter().filter(|b| b.base_offset >= bases[2]).cloned().collect();
        assert_same_batches(&read_all(&log).await, &remaining, "after deleting two segments");
        assert_eq!(log.enforce_retention().await.unwrap().segments_deleted, 0, "a second pass finds nothing new");

        // Everything expires, the active segment included: it is rolled first.
        let end = log.log_end_offset();
        clock.set(max_timestamp(&segments[segments.len() - 1]) + RETENTION_MS + 1);
        let outcome = log.enforce_retention().await.unwrap();
        assert_eq!(outcome.segments_deleted, bases.len() - 2);
        assert_eq!(log.segment_base_offsets(), vec![end], "only a fresh, empty active segment is left");
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (end, end));
        expect_out_of_range(&log, end - 1, end).await;
        assert!(log.read(end, 1 << 20, i64::MAX).await.unwrap().chunks.is_empty());

        // Appends continue at the old end, and the new start survives a reopen.
        let fresh = append(&log, &make_batch(999, 3, 100, clock.now_ms())).await;
        assert_eq!(fresh.base_offset, end);
        log.close().await.unwrap();
        let log = engine.open_log(&log_dir(), config).await.unwrap();
        assert_eq!(log.log_start_offset(), end);
        assert_same_batches(&read_all(&log).await, &[fresh], "after reopening");
        assert_eq!(sim_segment_logs(&sim, &log_dir()), vec![segment_path(end, "log")]);
        engine.shutdown().await;
    });
}

#[test]
fn negative_retention_ms_keeps_everything() {
    run("retention-forever", || async {
        let sim = SimStorage::new(2);
        let clock = ManualClock::new(T0);
        let config = LogConfig { segment_bytes: 4 << 10, retention_ms: -1, ..LogConfig::default() };
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), config).await.unwrap();
        let mut sent = Vec::new();
        for i in 0..20u64 {
            sent.push(append(&log, &make_batch(i, 1, 900, clock.now_ms())).await);
        }
        let segments = log.segment_count();
        assert!(segments > 2);
        clock.advance(100 * 365 * 24 * 3600 * 1000);
        assert_eq!(log.enforce_retention().await.unwrap().segments_deleted, 0);
        assert_eq!(log.segment_count(), segments);
        assert_same_batches(&read_all(&log).await, &sent, "nothing deleted");
        engine.shutdown().await;
    });
}

#[test]
fn size_retention_deletes_oldest_segments_until_the_log_fits() {
    run("retention-size", || async {
        let sim = SimStorage::new(3);
        let clock = ManualClock::new(T0);
        let segment_bytes: u64 = 8 << 10;
        let retention_bytes: u64 = 20_000;
        let config = LogConfig {
            segment_bytes,
            retention_ms: -1,
            retention_bytes: retention_bytes as i64,
            ..LogConfig::default()
        };
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), config.clone()).await.unwrap();
        let mut rng = Rng::new(3);
        let mut sent: Vec<Stored> = Vec::new();
        let mut tag = 0;
        for round in 0..6 {
            for _ in 0..rng.range(10, 30) {
                tag += 1;
                sent.push(
                    append(&log, &make_batch(tag, rng.range(1, 3) as usize, rng.range(100, 1500) as usize, T0)).await,
                );
            }
            let bases_before = log.segment_base_offsets();
            let size_before = log.size_bytes();
            let outcome = log.enforce_retention().await.unwrap();
            let bases = log.segment_base_offsets();
            let size = log.size_bytes();

            // Oldest first: what is left is a suffix of what was there.
            assert_eq!(
                bases.as_slice(),
                &bases_before[outcome.segments_deleted..],
                "round {round}: oldest segments go first"
            );
            assert_eq!(size, size_before - outcome.bytes_deleted, "round {round}: bytes_deleted");
            assert_eq!(log.log_start_offset(), bases[0], "round {round}: log start is the first segment");
            assert!(
                size <= retention_bytes + segment_bytes,
                "round {round}: {size} bytes left, limit {retention_bytes} + one segment"
            );
            // Never more than needed: deleting one more segment would go below the limit.
            let first_size: usize = sent
                .iter()
                .filter(|b| b.base_offset >= bases[0] && bases.get(1).is_none_or(|&next| b.base_offset < next))
                .map(|b| b.bytes.len())
                .sum();
            assert!(
                bases.len() == 1 || size - (first_size as u64) < retention_bytes,
                "round {round}: {size} bytes left and the oldest segment holds {first_size}: one segment too many was kept"
            );
            if outcome.segments_deleted > 0 {
                expect_out_of_range(&log, bases[0] - 1, bases[0]).await;
            }
            let remaining: Vec<Stored> = sent.iter().filter(|b| b.base_offset >= bases[0]).cloned().collect();
            assert_same_batches(&read_all(&log).await, &remaining, &format!("round {round}: remaining batches"));
        }
        assert!(log.log_start_offset() > 0, "size retention deleted something over six rounds");
        engine.shutdown().await;
    });
}
