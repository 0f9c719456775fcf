//! The log behaves like a plain list of batches. Random sequences of
//! operations (append a batch of random size and record count, read at a
//! random offset with a random `max_bytes`, wait Written or Durable, close
//! and reopen, `truncate_to` a random offset, power cut and restart) run
//! against the engine on the simulated disk and against an in-memory model
//! (batches with their offsets and bytes); after every step the two agree.
//!
//! After a power cut the model keeps what the log reported durable; the log
//! may keep more of the unsynced tail, but only whole, valid batches that
//! were sent, in order, contiguous with the durable prefix, and the model
//! then adopts that. Seeds are fixed, so a run is reproducible.

mod common;

use common::*;
use pinion_engine::io::sim::SimStorage;
use pinion_engine::{Durability, LogConfig, ManualClock, ReadError};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: usize,
        value_bytes: usize,
    },
    /// `at` picks an offset in `0..=log end + 1` (one past the end is out of range).
    Read {
        at: u16,
        max_bytes: usize,
    },
    Wait {
        durable: bool,
    },
    CloseAndReopen,
    /// `at` picks an offset in `0..=log end`.
    TruncateTo {
        at: u16,
    },
    /// Optionally waits until everything is durable, then cuts the power.
    PowerCut {
        wait_durable: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1usize..=5, 0usize..2_500).prop_map(|(records, value_bytes)| Op::Append { records, value_bytes }),
        4 => (any::<u16>(), prop::sample::select(vec![1usize, 500, 3_000, 20_000, 1 << 20]))
            .prop_map(|(at, max_bytes)| Op::Read { at, max_bytes }),
        3 => any::<bool>().prop_map(|durable| Op::Wait { durable }),
        1 => Just(Op::CloseAndReopen),
        1 => any::<u16>().prop_map(|at| Op::TruncateTo { at }),
        2 => any::<bool>().prop_map(|wait_durable| Op::PowerCut { wait_durable }),
    ]
}

fn end_of(batches: &[Stored]) -> i64 {
    batches.last().map_or(0, |b| b.last_offset + 1)
}

/// What a read may return at most: the batch holding `offset`, then
/// following batches while they fit in `max_bytes`. It returns all of them
/// unless a read from the device reaches the end of the written data.
fn expected_read(model: &[Stored], offset: i64, max_bytes: usize) -> Vec<Stored> {
    let mut out: Vec<Stored> = Vec::new();
    let mut bytes = 0;
    for b in model.iter().skip_while(|b| b.last_offset < offset) {
        if !out.is_empty() && bytes + b.bytes.len() > max_bytes {
            break;
        }
        bytes += b.bytes.len();
        out.push(b.clone());
    }
    out
}

async fn check_against_model(seed: u64, segment_bytes: u64, ops: Vec<Op>) {
    let sim = SimStorage::new(seed);
    let clock = ManualClock::new(1_000_000);
    let config = LogConfig { segment_bytes, index_interval_bytes: 1024, ..LogConfig::default() };
    let mut engine = start_sim(&sim, &clock).await;
    let mut log = engine.open_log(&log_dir(), config.clone()).await.unwrap();
    let mut model: Vec<Stored> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        let end = end_of(&model);
        let what = format!("step {step}, {op:?}");
        match *op {
            Op::Append { records, value_bytes } => {
                let batch = make_batch(
                    seed.wrapping_mul(1_000).wrapping_add(step as u64),
                    records,
                    value_bytes,
                    1_000 + step as i64,
                );
                let stored = append(&log, &batch).await;
                assert_eq!(stored.base_offset, end, "{what}: offsets are assigned in order");
                model.push(stored);
            }
            Op::Read { at, max_bytes } => {
                let offset = i64::from(at) % (end + 2);
                match log.read(offset, max_bytes, i64::MAX).await {
                    Ok(read) => {
                        assert!(offset <= end, "{what}: read past the end at {offset} succeeded");
                        let got = batches_of(&read);
                        let expected = expected_read(&model, offset, max_bytes);
                        assert!(
                            got.len() <= expected.len(),
                            "{what}: {} batches, at most {} fit",
                            got.len(),
                            expected.len()
                        );
                        assert_same_batches(&got, &expected[..got.len()], &what);
                        // A read from the device stops where the written data
                        // ends; the rest is for the next read, from the cache.
                        if let Some(missing) = expected.get(got.len()) {
                            assert!(!got.is_empty(), "{what}: a read below the log end returns a batch");
                            assert!(
                                missing.base_offset >= log.written_offset(),
                                "{what}: the read stopped before batch {} although it is written (written offset {})",
                                missing.base_offset,
                                log.written_offset()
                            );
                        }
                    }
                    Err(ReadError::OffsetOutOfRange { .. }) => {
                        assert!(offset > end, "{what}: {offset} is in range")
                    }
                    Err(e) => panic!("{what}: {e}"),
                }
            }
            Op::Wait { durable } => {
                if let Some(last) = model.last() {
                    let durability = if durable { Durability::Durable } else { Durability::Written };
                    log.wait(last.last_offset, durability).await.unwrap();
                    assert!(log.written_offset() > last.last_offset, "{what}: written offset");
                    assert!(!durable || log.durable_offset() > last.last_offset, "{what}: durable offset");
                }
            }
            Op::CloseAndReopen => {
                log.close().await.unwrap();
                log = engine.open_log(&log_dir(), config.clone()).await.unwrap();
                assert_same_batches(&read_all(&log).await, &model, &what);
            }
            Op::TruncateTo { at } => {
                let offset = i64::from(at) % (end + 1);
                let new_end = log.truncate_to(offset).await.unwrap();
                model.retain(|b| b.last_offset < offset);
                assert_eq!(new_end, end_of(&model), "{what}: the batch holding the offset and all after it go");
            }
            Op::PowerCut { wait_durable } => {
                if let (true, Some(last)) = (wait_durable, model.last()) {
                    log.wait(last.last_offset, Durability::Durable).await.unwrap();
                }
                let promised = log.durable_offset();
                sim.power_cut();
                engine.abandon().await;
                drop(log);
                engine = start_sim(&sim, &clock).await;
                log =
                    engine.open_log(&log_dir(), config.clone()).await.unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
                let recovered = read_all(&log).await;
                assert!(recovered.len() <= model.len(), "{what}: more batches than were sent");
                assert_same_batches(
                    &recovered,
                    &model[..recovered.len()],
                    &format!("{what}: survivors are a prefix of what was sent"),
                );
                assert!(
                    end_of(&recovered) >= promised,
                    "{what}: log ends at {} but {promised} was durable",
                    end_of(&recovered)
                );
                model.truncate(recovered.len());
            }
        }
        assert_eq!(log.log_end_offset(), end_of(&model), "{what}: log end offset");
        assert_eq!(log.log_start_offset(), 0, "{what}: log start offset");
        assert!(log.poisoned().is_none(), "{what}: no fault was injected");
    }
    log.close().await.unwrap();
    let log = engine.open_log(&log_dir(), config).await.unwrap();
    assert_same_batches(&read_all(&log).await, &model, "final clean reopen");
    engine.shutdown().await;
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 400,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x7013_5EED),
        max_shrink_iters: 300,
        ..ProptestConfig::default()
    })]

    #[test]
    fn log_agrees_with_a_model_of_its_batches(
        seed in any::<u64>(),
        segment_kib in 4u64..40,
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run("model", move || check_against_model(seed, segment_kib * 1024, ops));
    }
}
