//! The flusher's linger (`flush_linger_us`) gathers appends into one
//! fdatasync, so it applies only while a caller waits for durability. An
//! append that waits only for its write (acks=1) is written at once: with
//! the linger, written appends at a fixed rate had a higher p50 and p99,
//! and the broker's acks=1 throughput was lower.

mod common;

use std::time::{Duration, Instant};

use common::*;
use pinion_engine::io::sim::SimStorage;
use pinion_engine::{Durability, EngineConfig, LogConfig, ManualClock};

/// Long enough that no simulated write or fdatasync comes near it.
const LINGER: Duration = Duration::from_secs(2);

#[test]
fn written_appends_do_not_linger_and_durable_ones_do() {
    run("flush-linger", || async {
        let sim = SimStorage::new(1);
        let clock = ManualClock::new(1_000_000);
        let config = EngineConfig { flush_linger_us: LINGER.as_micros() as u64, ..EngineConfig::default() };
        let engine = start_sim_with(&sim, &clock, config).await;
        let log = engine.open_log(&log_dir(), LogConfig::default()).await.unwrap();

        let started = Instant::now();
        let written = append(&log, &make_batch(1, 2, 100, 1_000)).await;
        log.wait(written.last_offset, Durability::Written).await.unwrap();
        let written_after = started.elapsed();
        assert!(written_after < LINGER / 2, "a write-only append waited {written_after:?} for the {LINGER:?} linger");

        let started = Instant::now();
        let durable = append(&log, &make_batch(2, 2, 100, 2_000)).await;
        log.wait(durable.last_offset, Durability::Durable).await.unwrap();
        let durable_after = started.elapsed();
        assert!(
            durable_after >= LINGER,
            "a durable append was synced after {durable_after:?}, without the {LINGER:?} linger"
        );

        assert_same_batches(&read_all(&log).await, &[written, durable], "log");
        log.close().await.unwrap();
    });
}
