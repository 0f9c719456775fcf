//! A damaged batch in the middle of the active segment ends the log there.
//! After a crash without a clean close, one byte of a middle batch is
//! flipped on the device (in its length, magic, CRC, header fields under
//! the CRC, or records), or its `base_offset` (outside the CRC) is
//! overwritten with one that goes backwards or overflows. On reopen the log is truncated right before that
//! batch: earlier batches read back intact, later ones are gone, no read
//! ever returns the damaged bytes, and new appends take the freed offsets.

mod common;

use common::*;
use pinion_engine::io::sim::SimStorage;
use pinion_engine::{Durability, LogConfig, ManualClock, ReadError};

const BATCHES: usize = 20;
const DAMAGED: usize = 9;

/// Byte positions inside a batch to flip, with what they hit.
const FLIPS: &[(usize, &str)] = &[
    (8, "batch_length high byte"),
    (11, "batch_length low byte"),
    (16, "magic"),
    (17, "crc"),
    (20, "crc"),
    (21, "attributes"),
    (24, "last_offset_delta"),
    (30, "base_timestamp"),
    (40, "max_timestamp"),
    (50, "producer_id"),
    (58, "records_count"),
    (61, "first record length"),
    (100, "record value"),
];

/// What happens to the middle batch on the device.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// One byte flipped (all bits) at this position of the batch.
    Flip(usize),
    /// `base_offset` (outside the CRC) overwritten with this value.
    BaseOffset(i64),
}

#[test]
fn flipped_byte_in_a_middle_batch_truncates_the_log_before_it() {
    run("corrupt-middle-batch", || async {
        for (seed, &(at, what)) in FLIPS.iter().enumerate() {
            scenario(seed as u64, Damage::Flip(at), what).await;
        }
    });
}

#[test]
fn damaged_base_offset_outside_the_crc_truncates_the_log_before_it() {
    run("corrupt-base-offset", || async {
        // Offsets that go backwards, and one so large that adding the
        // batch's offset delta overflows (regression: recovery panicked).
        let damages = [
            (Damage::BaseOffset(0), "base_offset back to 0"),
            (Damage::BaseOffset(-5), "negative base_offset"),
            (Damage::BaseOffset(i64::MAX - 1), "base_offset near i64::MAX"),
            (Damage::BaseOffset(i64::MAX), "base_offset i64::MAX"),
        ];
        for (seed, (damage, what)) in damages.into_iter().enumerate() {
            scenario(100 + seed as u64, damage, what).await;
        }
    });
}

async fn scenario(seed: u64, damage: Damage, what: &str) {
    let sim = SimStorage::new(seed);
    let clock = ManualClock::new(1_000_000);
    let config = LogConfig::default();
    let engine = start_sim(&sim, &clock).await;
    let log = engine.open_log(&log_dir(), config.clone()).await.unwrap();
    let mut rng = Rng::new(seed);
    let mut sent = Vec::new();
    for i in 0..BATCHES {
        let batch =
            make_batch(seed * 100 + i as u64, rng.range(2, 4) as usize, rng.range(60, 900) as usize, 1_000 + i as i64);
        sent.push(append(&log, &batch).await);
    }
    log.wait(sent.last().unwrap().last_offset, Durability::Durable).await.unwrap();
    engine.abandon().await;
    drop(log);
    sim.crash();

    let path = segment_path(0, "log");
    let position: usize = sent[..DAMAGED].iter().map(|b| b.bytes.len()).sum();
    let damaged = &sent[DAMAGED];
    let on_device = sim.contents(&path).unwrap();
    assert!(
        on_device[position..position + damaged.bytes.len()] == damaged.bytes[..],
        "the batch sits where the test thinks"
    );
    match damage {
        Damage::Flip(at) => {
            assert!(at < damaged.bytes.len());
            sim.corrupt(&path, position + at, &[on_device[position + at] ^ 0xFF]);
        }
        Damage::BaseOffset(value) => sim.corrupt(&path, position, &value.to_be_bytes()),
    }

    let engine = start_sim(&sim, &clock).await;
    let log = engine.open_log(&log_dir(), config.clone()).await.unwrap();
    let kept = &sent[..DAMAGED];
    assert_eq!(log.log_end_offset(), damaged.base_offset, "{what}: log ends right before the damaged batch");
    assert_same_batches(&read_all(&log).await, kept, &format!("{what}: batches before the damage"));
    assert_cut_at(
        &sim.contents(&path).unwrap(),
        position,
        &format!("{what}: segment file cut before the damaged batch"),
    );

    // Offsets of the damaged and later batches are past the end now.
    for offset in [damaged.base_offset + 1, sent.last().unwrap().last_offset] {
        match log.read(offset, 1 << 20, i64::MAX).await {
            Err(ReadError::OffsetOutOfRange { log_end_offset, .. }) => {
                assert_eq!(log_end_offset, damaged.base_offset)
            }
            other => panic!("{what}: read at {offset} past the new end gave {other:?}"),
        }
    }
    let at_end = log.read(damaged.base_offset, 1 << 20, i64::MAX).await.unwrap();
    assert!(at_end.chunks.is_empty(), "{what}: nothing readable at the new log end");

    // New appends reuse the freed offsets, and the old bytes never come back.
    let fresh = append(&log, &make_batch(999_999, 2, 300, 5_000)).await;
    assert_eq!(fresh.base_offset, damaged.base_offset);
    log.close().await.unwrap();
    let log = engine.open_log(&log_dir(), config).await.unwrap();
    let mut expected = kept.to_vec();
    expected.push(fresh);
    assert_same_batches(&read_all(&log).await, &expected, &format!("{what}: after appending and reopening"));
    engine.shutdown().await;
}
