//! A power cut loses only what was never reported durable, and loses it
//! cleanly. After `SimStorage::power_cut` (which drops, keeps or tears each
//! unsynced write) and a restart on the same disk: every batch acknowledged
//! durable reads back byte for byte, what survives is a prefix of what was
//! sent (nothing after the first torn batch is visible), the log and its
//! active segment file end at a batch boundary, and appends continue from
//! there and survive a clean close and reopen. Runs over many seeds on the
//! simulated disk, and once on real O_DIRECT files whose tail is cut or
//! garbled by hand. A crash right after rolls whose batches never reached
//! the device leaves no hole in the offsets (regression: the log end used
//! to jump to the base of the last, empty segment).

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::rc::Rc;

use common::*;
use pinion_engine::io::dma::DmaStorage;
use pinion_engine::io::sim::SimStorage;
use pinion_engine::{Clock, Durability, Engine, LogConfig, ManualClock, SystemClock};

const SEEDS: u64 = 200;

/// What one seed's power cut did to the unsynced tail.
struct Outcome {
    lost_something: bool,
    kept_unsynced: bool,
}

#[test]
fn durable_batches_survive_a_power_cut_and_the_torn_tail_is_cut_cleanly() {
    run("torn-tail", || async {
        let mut lost = 0;
        let mut kept = 0;
        for seed in 0..SEEDS {
            let outcome = power_cut_scenario(seed).await;
            lost += usize::from(outcome.lost_something);
            kept += usize::from(outcome.kept_unsynced);
        }
        // The scenario must really exercise both sides of a power cut.
        assert!(lost > 0, "no seed lost any unsynced batch: the power cut tore nothing");
        assert!(kept > 0, "no seed kept any unsynced batch: the power cut kept nothing");
    });
}

async fn power_cut_scenario(seed: u64) -> Outcome {
    let sim = SimStorage::new(seed);
    let clock = ManualClock::new(1_700_000_000_000);
    let mut rng = Rng::new(seed);
    let config =
        LogConfig { segment_bytes: rng.range(8, 48) * 1024, index_interval_bytes: 1024, ..LogConfig::default() };
    let engine = start_sim(&sim, &clock).await;
    let log = engine.open_log(&log_dir(), config.clone()).await.unwrap();
    let mut sent: Vec<Stored> = Vec::new();
    let mut tag = seed << 32;
    let mut next_batch = |rng: &mut Rng| {
        tag += 1;
        make_batch(tag, rng.range(1, 5) as usize, rng.range(1, 3000) as usize, clock.now_ms())
    };

    // Acknowledged as durable (acks=all), in a few group commits.
    for _ in 0..rng.range(1, 4) {
        for _ in 0..rng.range(1, 8) {
            sent.push(append(&log, &next_batch(&mut rng)).await);
        }
        log.wait(sent.last().unwrap().last_offset, Durability::Durable).await.unwrap();
    }
    let durable_offset = log.durable_offset();
    assert!(durable_offset > sent.last().unwrap().last_offset);
    let durable_count = sent.len();

    // Written to the device but never synced (acks=1).
    for _ in 0..rng.range(1, 12) {
        sent.push(append(&log, &next_batch(&mut rng)).await);
        if rng.below(2) == 0 {
            log.wait(sent.last().unwrap().last_offset, Durability::Written).await.unwrap();
        }
    }
    log.wait(sent.last().unwrap().last_offset, Durability::Written).await.unwrap();
    // Only in memory (acks=0).
    for _ in 0..rng.below(4) {
        sent.push(append(&log, &next_batch(&mut rng)).await);
    }

    sim.power_cut();
    engine.abandon().await;
    drop(log);

    let engine = start_sim(&sim, &clock).await;
    let log = engine.open_log(&log_dir(), config.clone()).await.unwrap_or_else(|e| panic!("seed {seed}: reopen: {e}"));
    let recovered = read_all(&log).await;
    assert!(
        recovered.len() >= durable_count,
        "seed {seed}: {} batches survived but {durable_count} were acknowledged durable (durable offset {durable_offset})",
        recovered.len()
    );
    assert!(recovered.len() <= sent.len(), "seed {seed}: more batches than were sent");
    assert_same_batches(&recovered, &sent[..recovered.len()], &format!("seed {seed}: recovered prefix"));
    let end = recovered.last().map_or(0, |b| b.last_offset + 1);
    assert_eq!(log.log_end_offset(), end, "seed {seed}: log end offset is the end of the last whole batch");
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(log.durable_offset(), end, "seed {seed}: what recovery kept is durable");

    // The active segment file ends exactly at the last whole batch.
    let active_base = *log.segment_base_offsets().last().unwrap();
    let active_bytes: usize = recovered.iter().filter(|b| b.base_offset >= active_base).map(|b| b.bytes.len()).sum();
    let file = sim.contents(&segment_path(active_base, "log")).expect("active segment file exists");
    assert_cut_at(&file, active_bytes, &format!("seed {seed}: active segment file cut at a batch boundary"));

    // Appends continue right after the last surviving batch.
    let mut expected = recovered.clone();
    for _ in 0..rng.range(1, 6) {
        let stored = append(&log, &next_batch(&mut rng)).await;
        assert_eq!(
            stored.base_offset,
            expected.last().map_or(0, |b| b.last_offset + 1),
            "seed {seed}: offsets continue"
        );
        expected.push(stored);
    }
    log.wait(expected.last().unwrap().last_offset, Durability::Durable).await.unwrap();
    log.close().await.unwrap();
    let log = engine.open_log(&log_dir(), config).await.unwrap();
    assert_same_batches(&read_all(&log).await, &expected, &format!("seed {seed}: after clean reopen"));
    engine.shutdown().await;

    Outcome { lost_something: recovered.len() < sent.len(), kept_unsynced: recovered.len() > durable_count }
}

/// How the test damages the active segment file of a real log.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// Cut the file in the middle of the last batch (a torn write).
    CutMidBatch,
    /// Overwrite bytes inside the last batch (a write that landed half old, half new).
    GarbleLastBatch,
}

#[test]
fn torn_tail_on_real_dma_files_is_cut_at_the_last_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    run("torn-tail-dma", move || async move {
        for (i, damage) in [Damage::CutMidBatch, Damage::GarbleLastBatch].into_iter().enumerate() {
            dma_scenario(&root, &root.join(format!("topic-{i}")), damage).await;
        }
    });
}

async fn dma_scenario(root: &Path, log_dir: &Path, damage: Damage) {
    let clock: Rc<dyn Clock> = Rc::new(SystemClock);
    let config = LogConfig::default();
    let engine = Engine::start(DmaStorage, engine_config(), clock.clone(), &[root.to_path_buf()]).await.unwrap();
    let log = engine.open_log(log_dir, config.clone()).await.unwrap();
    let mut sent = Vec::new();
    for i in 0..10u64 {
        sent.push(append(&log, &make_batch(1000 + i, 3, 500 + 300 * i as usize, 1_000 + i as i64)).await);
    }
    log.wait(sent.last().unwrap().last_offset, Durability::Durable).await.unwrap();
    engine.abandon().await;
    drop(log);

    // Damage the last batch with plain file system calls, as a crash would.
    let path = log_dir.join("00000000000000000000.log");
    let last = sent.last().unwrap();
    let last_position: u64 = sent[..sent.len() - 1].iter().map(|b| b.bytes.len() as u64).sum();
    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    match damage {
        Damage::CutMidBatch => file.set_len(last_position + last.bytes.len() as u64 / 2).unwrap(),
        Damage::GarbleLastBatch => {
            file.seek(SeekFrom::Start(last_position + 100)).unwrap();
            file.write_all(&[0xAB; 64]).unwrap();
        }
    }
    file.sync_all().unwrap();
    drop(file);

    let engine = Engine::start(DmaStorage, engine_config(), clock, &[root.to_path_buf()]).await.unwrap();
    let log = engine.open_log(log_dir, config.clone()).await.unwrap();
    let kept = &sent[..sent.len() - 1];
    assert_eq!(log.log_end_offset(), last.base_offset, "{damage:?}: log ends before the damaged batch");
    assert_same_batches(&read_all(&log).await, kept, &format!("{damage:?}: after recovery"));
    assert_cut_at(
        &std::fs::read(&path).unwrap(),
        last_position as usize,
        &format!("{damage:?}: file cut at the batch boundary"),
    );

    let mut expected = kept.to_vec();
    for i in 0..3u64 {
        let stored = append(&log, &make_batch(2000 + i, 2, 700, 5_000)).await;
        assert_eq!(stored.base_offset, expected.last().unwrap().last_offset + 1);
        expected.push(stored);
    }
    log.close().await.unwrap();
    let log = engine.open_log(log_dir, config).await.unwrap();
    assert_same_batches(&read_all(&log).await, &expected, &format!("{damage:?}: after clean reopen"));
    engine.shutdown().await;
}

#[test]
fn a_crash_after_rolls_whose_data_never_reached_the_device_leaves_no_hole() {
    run("roll-then-crash", || async {
        let sim = SimStorage::new(7);
        let clock = ManualClock::new(1_000_000);
        let config = LogConfig { segment_bytes: 4096, ..LogConfig::default() };
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), config.clone()).await.unwrap();
        // Each batch is over half a segment, so every append rolls.
        let mut sent = Vec::new();
        for i in 0..3u64 {
            sent.push(append(&log, &make_batch(i, 2, 1500, 1_000)).await);
        }
        log.wait(sent.last().unwrap().last_offset, Durability::Durable).await.unwrap();
        let durable = sent.clone();
        // Two more rolls: their segment files are created, their batches stay in memory.
        for i in 3..5u64 {
            sent.push(append(&log, &make_batch(i, 2, 1500, 1_000)).await);
        }
        assert_eq!(log.segment_base_offsets(), vec![0, 2, 4, 6, 8]);
        engine.abandon().await;
        drop(log);
        sim.crash();

        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), config.clone()).await.unwrap();
        let end = durable.last().unwrap().last_offset + 1;
        assert_eq!(
            log.log_end_offset(),
            end,
            "the log ends after the last batch on the device, with no hole before it"
        );
        assert_same_batches(&read_all(&log).await, &durable, "after the crash");
        assert_eq!(log.segment_base_offsets(), vec![0, 2, 4, 6]);
        let files: Vec<_> = [0, 2, 4, 6].iter().map(|&b| segment_path(b, "log")).collect();
        assert_eq!(sim_segment_logs(&sim, &log_dir()), files, "the empty segment past the end is gone");

        let mut expected = durable;
        let next = append(&log, &make_batch(9, 1, 10, 2_000)).await;
        assert_eq!(next.base_offset, end, "offsets continue without a gap");
        expected.push(next);
        log.close().await.unwrap();
        let log = engine.open_log(&log_dir(), config).await.unwrap();
        assert_same_batches(&read_all(&log).await, &expected, "after a clean reopen");
        engine.shutdown().await;
    });
}
