//! One log waiting on a slow fdatasync must not hold back the writes of the
//! shard's other logs. A log already at its limit of flush rounds in flight
//! waits on its own for one of them to end; the flusher meanwhile starts
//! rounds for every other dirty log. (It used to wait for any round to end
//! first, which put every log of a busy acks=all shard behind some other
//! log's fdatasync.)

mod common;

use std::time::Duration;

use common::*;
use futures_lite::future::yield_now;
use pinion_engine::io::sim::SimStorage;
use pinion_engine::{Durability, Log, LogConfig, ManualClock};

/// Whether `log` reports `last_offset` written within 5 s.
async fn written_within_5s(log: &Log<SimStorage>, last_offset: i64) -> bool {
    futures_lite::future::or(async { log.wait(last_offset, Durability::Written).await.map(|()| true) }, async {
        glommio::timer::sleep(Duration::from_secs(5)).await;
        Ok(false)
    })
    .await
    .unwrap()
}

#[test]
fn a_log_waiting_for_its_fdatasync_does_not_hold_back_other_logs() {
    run("fsync-isolation", || async {
        let sim = SimStorage::new(1);
        let clock = ManualClock::new(1_000_000);
        let engine = start_sim(&sim, &clock).await;
        let slow = engine.open_log(&data_dir().join("slow-0"), LogConfig::default()).await.unwrap();
        let fast = engine.open_log(&data_dir().join("fast-0"), LogConfig::default()).await.unwrap();
        sim.hold_fsyncs("slow-0");

        // A durable append on `slow`: its round writes, then waits in the
        // held fdatasync.
        let first = append(&slow, &make_batch(1, 2, 100, 1_000)).await;
        let waiting = slow.clone();
        let durable = glommio::spawn_local(async move { waiting.wait(first.last_offset, Durability::Durable).await });
        for _ in 0..20 {
            yield_now().await;
        }
        // More on `slow`: the log is at its limit of rounds (one in flight,
        // less than a write's worth waiting), so its next round must wait.
        let second = append(&slow, &make_batch(2, 2, 100, 2_000)).await;
        for _ in 0..20 {
            yield_now().await;
        }

        // Another log's append is written while the fdatasync is held.
        let on_fast = append(&fast, &make_batch(3, 2, 100, 3_000)).await;
        assert!(
            written_within_5s(&fast, on_fast.last_offset).await,
            "the other log's write waited for the held fdatasync of another log"
        );
        assert!(slow.durable_offset() <= first.last_offset, "the held fdatasync has not completed");

        sim.release_fsyncs();
        durable.await.unwrap();
        slow.wait(second.last_offset, Durability::Durable).await.unwrap();
        fast.wait(on_fast.last_offset, Durability::Durable).await.unwrap();
        assert_same_batches(&read_all(&slow).await, &[first, second], "slow log");
        assert_same_batches(&read_all(&fast).await, &[on_fast], "fast log");
        slow.close().await.unwrap();
        fast.close().await.unwrap();
    });
}

/// A round that rolled finishes the sealed segment afterwards (a truncate,
/// an fdatasync, the index files): milliseconds on a busy disk. The log's
/// next round must not wait for that. (The finishing used to hold the
/// round's slot, so the log was parked and every append that arrived
/// meanwhile waited, once a roll: the fixed-rate tail of the engine bench.)
#[test]
fn finishing_a_sealed_segment_does_not_hold_back_appends() {
    run("finish-isolation", || async {
        let sim = SimStorage::new(1);
        let clock = ManualClock::new(1_000_000);
        let engine = start_sim(&sim, &clock).await;
        let config = LogConfig { segment_bytes: 4096, ..LogConfig::default() };
        let log = engine.open_log(&log_dir(), config).await.unwrap();
        // The first segment's fdatasync (only its finishing syncs it under acks=1) is held.
        sim.hold_fsyncs(&format!("{:020}.log", 0));

        let first = append(&log, &make_batch(1, 2, 1_000, 1_000)).await;
        log.wait(first.last_offset, Durability::Written).await.unwrap();
        // Does not fit: rolls, and its round then finishes the first segment.
        let second = append(&log, &make_batch(2, 2, 1_000, 2_000)).await;
        assert_eq!(log.segment_base_offsets(), vec![0, second.base_offset], "the second batch rolled");
        log.wait(second.last_offset, Durability::Written).await.unwrap();
        for _ in 0..20 {
            yield_now().await;
        }

        let third = append(&log, &make_batch(3, 2, 100, 3_000)).await;
        assert!(
            written_within_5s(&log, third.last_offset).await,
            "an append after a roll waited for the sealed segment's held fdatasync"
        );

        sim.release_fsyncs();
        log.flush(Durability::Durable).await.unwrap();
        assert_same_batches(&read_all(&log).await, &[first, second, third], "after the roll");
        log.close().await.unwrap();
    });
}
