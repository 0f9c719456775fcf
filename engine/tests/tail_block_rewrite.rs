//! A round that continues a partial block rewrites it (the round before
//! wrote it zero-padded). The rewrite must wait for the one write that last
//! wrote that block, and only for it. It used to wait until every earlier
//! round had completed: after a device stall each round's rewrite then
//! waited for the previous round's rewrite, one write latency per round in
//! flight, on top of the stall (the engine bench's fixed-rate tail).

mod common;

use std::time::Duration;

use common::*;
use futures_lite::future::yield_now;
use pinion_engine::io::sim::SimStorage;
use pinion_engine::io::{align_down, align_up};
use pinion_engine::{Durability, EngineConfig, LogConfig, ManualClock};

const BLOCK: usize = 4096;

/// Whether `sim`'s file at `path` holds `expected` at `position` within 5 s.
async fn holds_within_5s(sim: &SimStorage, path: &std::path::Path, position: usize, expected: &[u8]) -> bool {
    for _ in 0..500 {
        let contents = sim.contents(path).unwrap_or_default();
        if contents.get(position..position + expected.len()) == Some(expected) {
            return true;
        }
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[test]
fn a_tail_block_rewrite_waits_only_for_the_write_of_that_block() {
    run("tail-rewrite", || async {
        let sim = SimStorage::new(1);
        let clock = ManualClock::new(1_000_000);
        // Writes of 64 KiB, so a batch of about 100 KB is more than a whole
        // write: with a round in flight, the log's next round may start.
        let config = EngineConfig { write_bytes_max: 64 << 10, ..engine_config() };
        let engine = start_sim_with(&sim, &clock, config).await;
        let log = engine.open_log(&log_dir(), LogConfig::default()).await.unwrap();
        let path = segment_path(0, "log");

        let a = append(&log, &make_batch(1, 100, 1_000, 1_000)).await;
        log.wait(a.last_offset, Durability::Written).await.unwrap();
        let end_a = a.bytes.len() as u64;
        // The next write of a's partial last block (b's round rewrites it)
        // is held: a slow device write.
        sim.hold_writes_covering(&path.to_string_lossy(), align_down(end_a, BLOCK));
        let b = append(&log, &make_batch(2, 100, 1_000, 2_000)).await;
        for _ in 0..20 {
            yield_now().await;
        }
        let end_b = end_a + b.bytes.len() as u64;
        assert!(
            align_down(end_b, BLOCK) > align_down(end_a, BLOCK) + BLOCK as u64,
            "b's last block is not the held one"
        );

        // c's round rewrites b's partial last block, which b's last write
        // (not held) wrote: it goes out while b's first write is held.
        let c = append(&log, &make_batch(3, 100, 1_000, 3_000)).await;
        let in_b_block = (align_up(end_b, BLOCK) - end_b) as usize;
        assert!(
            holds_within_5s(&sim, &path, end_b as usize, &c.bytes[..in_b_block]).await,
            "the rewrite of b's last block waited for b's held first write"
        );
        // Acknowledgements stay in log order.
        assert!(log.written_offset() <= b.base_offset, "b or c acknowledged before b's held write completed");

        sim.release_writes();
        log.wait(c.last_offset, Durability::Written).await.unwrap();
        log.flush(Durability::Durable).await.unwrap();
        assert_same_batches(&read_all(&log).await, &[a, b, c], "after the held write");
        log.close().await.unwrap();
    });
}
