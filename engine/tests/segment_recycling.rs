//! Retention keeps the file of a deleted segment (`<base>.log.recycled`) and
//! the next roll overwrites it instead of creating a file
//! (`EngineConfig::recycle_segments`). What a user must never see: a batch of
//! the old segment. Proved here: reads and a clean reopen give exactly the
//! appended batches; after a power cut in the middle of overwriting, recovery
//! keeps every batch acknowledged durable and none of the old bytes; a whole
//! sealed segment followed by leftover bytes is trimmed without dropping the
//! segments after it; with recycling off nothing is kept; and the shard's
//! `recycle_bytes_max` bounds the files kept, across retention and reopen.

mod common;

use std::path::{Path, PathBuf};
use std::rc::Rc;

use common::*;
use pinion_engine::io::dma::DmaStorage;
use pinion_engine::io::sim::SimStorage;
use pinion_engine::io::Storage;
use pinion_engine::{Clock, Durability, Engine, EngineConfig, LogConfig, ManualClock, SystemClock};

const SEGMENT_BYTES: u64 = 10_000;

fn config() -> LogConfig {
    LogConfig { segment_bytes: SEGMENT_BYTES, retention_bytes: 2 * SEGMENT_BYTES as i64, ..LogConfig::default() }
}

/// An engine whose recycling budget holds `files` deleted segment files
/// (a sealed segment's file is at most `SEGMENT_BYTES`).
async fn start_with_budget(sim: &SimStorage, clock: &ManualClock, files: u64) -> Engine<SimStorage> {
    let budget = files * SEGMENT_BYTES + SEGMENT_BYTES / 2;
    start_sim_with(sim, clock, EngineConfig { recycle_bytes_max: budget, ..engine_config() }).await
}

fn is_recycled(path: &Path) -> bool {
    path.to_string_lossy().ends_with(".log.recycled")
}

fn recycled_files(sim: &SimStorage) -> Vec<PathBuf> {
    sim.files().into_iter().filter(|p| p.parent() == Some(log_dir().as_path()) && is_recycled(p)).collect()
}

/// Appends batches of 1-3 KiB until the log has rolled `rolls` more times.
async fn append_until_rolled<S: Storage>(
    log: &pinion_engine::Log<S>,
    rng: &mut Rng,
    sent: &mut Vec<Stored>,
    rolls: usize,
) {
    let target = log.segment_base_offsets().last().copied().unwrap_or(0);
    let mut seen = 0;
    let mut last_base = target;
    for _ in 0..1_000 {
        let tag = sent.len() as u64 + 1_000;
        sent.push(append(log, &make_batch(tag, rng.range(1, 3) as usize, rng.range(900, 1100) as usize, 1_000)).await);
        let base = *log.segment_base_offsets().last().unwrap();
        if base != last_base {
            last_base = base;
            seen += 1;
            if seen == rolls {
                return;
            }
        }
    }
    panic!("the log did not roll {rolls} times");
}

#[test]
fn retention_keeps_a_deleted_segment_file_and_the_next_roll_overwrites_it() {
    run("recycle-roll", || async {
        let sim = SimStorage::new(7);
        let clock = ManualClock::new(1_000_000);
        let engine = start_with_budget(&sim, &clock, 1).await;
        let log = engine.open_log(&log_dir(), config()).await.unwrap();
        let mut rng = Rng::new(7);
        let mut sent = Vec::new();
        append_until_rolled(&log, &mut rng, &mut sent, 6).await;
        log.wait(sent.last().unwrap().last_offset, Durability::Written).await.unwrap();

        let oldest = log.segment_base_offsets()[0];
        let outcome = log.enforce_retention().await.unwrap();
        assert!(outcome.segments_deleted >= 2, "retention by size deletes segments: {outcome:?}");
        let kept = recycled_files(&sim);
        assert_eq!(kept.len(), 1, "the budget keeps one deleted segment file, the rest are removed: {kept:?}");
        assert_eq!(kept[0], PathBuf::from(format!("{}.recycled", segment_path(oldest, "log").display())));
        let old_bytes = sim.contents(&kept[0]).unwrap();
        assert!(old_bytes.len() > (SEGMENT_BYTES / 2) as usize, "the kept file still holds the old segment");

        // The next roll takes the kept file: no recycled file is left, and
        // the new segment's file starts with the new batches while its end
        // still holds old bytes (never read).
        let before_roll = sent.len();
        append_until_rolled(&log, &mut rng, &mut sent, 1).await;
        assert!(recycled_files(&sim).is_empty(), "the roll reused the kept file");
        let new_base = *log.segment_base_offsets().last().unwrap();
        let first_new = sent.iter().find(|b| b.base_offset == new_base).expect("a batch opened the new segment");
        log.wait(first_new.last_offset, Durability::Written).await.unwrap();
        let reused = sim.contents(&segment_path(new_base, "log")).unwrap();
        assert!(reused.len() >= old_bytes.len(), "the reused file keeps its blocks");
        assert_eq!(
            &reused[..first_new.bytes.len()],
            &first_new.bytes[..],
            "the new segment starts with its first batch"
        );
        assert!(before_roll < sent.len());

        // Reads see exactly the batches from the log start on.
        let log_start = log.log_start_offset();
        let expected: Vec<Stored> = sent.iter().filter(|b| b.base_offset >= log_start).cloned().collect();
        assert_same_batches(&read_all(&log).await, &expected, "reads after a recycled roll");

        // A clean reopen trims the reused file to its own batches.
        log.close().await.unwrap();
        let log = engine.open_log(&log_dir(), config()).await.unwrap();
        assert_same_batches(&read_all(&log).await, &expected, "reads after a clean reopen");
        log.close().await.unwrap();
        let held: Vec<u8> =
            expected.iter().filter(|b| b.base_offset >= new_base).flat_map(|b| b.bytes.iter().copied()).collect();
        assert_eq!(
            sim.contents(&segment_path(new_base, "log")).unwrap(),
            held,
            "closed segment holds only its batches"
        );
    });
}

#[test]
fn a_power_cut_while_overwriting_a_recycled_file_never_exposes_its_old_batches() {
    for seed in 0..12u64 {
        run("recycle-power-cut", move || async move {
            let sim = SimStorage::new(seed);
            let clock = ManualClock::new(1_000_000);
            let engine = start_with_budget(&sim, &clock, 1).await;
            let log = engine.open_log(&log_dir(), config()).await.unwrap();
            let mut rng = Rng::new(seed);
            let mut sent = Vec::new();
            append_until_rolled(&log, &mut rng, &mut sent, 4).await;
            log.wait(sent.last().unwrap().last_offset, Durability::Durable).await.unwrap();
            log.enforce_retention().await.unwrap();
            assert_eq!(recycled_files(&sim).len(), 1, "seed {seed}: a file is kept");
            append_until_rolled(&log, &mut rng, &mut sent, 1).await;
            assert!(recycled_files(&sim).is_empty(), "seed {seed}: the roll reused it");

            // Some batches in the reused file are durable, later ones only
            // handed to writes when the power goes.
            for _ in 0..rng.range(1, 3) {
                sent.push(append(&log, &make_batch(sent.len() as u64 + 5_000, 2, 700, 2_000)).await);
            }
            let durable_last = sent.last().unwrap().last_offset;
            log.wait(durable_last, Durability::Durable).await.unwrap();
            for _ in 0..rng.range(0, 3) {
                sent.push(append(&log, &make_batch(sent.len() as u64 + 5_000, 2, 700, 3_000)).await);
            }
            let log_start = log.log_start_offset();
            engine.abandon().await;
            drop(log);
            sim.power_cut();

            let engine = start_sim(&sim, &clock).await;
            let log = engine.open_log(&log_dir(), config()).await.unwrap();
            let recovered = read_all(&log).await;
            let expected: Vec<Stored> = sent.iter().filter(|b| b.base_offset >= log_start).cloned().collect();
            assert!(recovered.len() <= expected.len(), "seed {seed}: no batch beyond what was appended");
            assert_same_batches(&recovered, &expected[..recovered.len()], &format!("seed {seed}: recovered prefix"));
            assert!(
                recovered.last().is_some_and(|b| b.last_offset >= durable_last),
                "seed {seed}: every batch acknowledged durable survived"
            );
            assert_eq!(log.log_end_offset(), recovered.last().unwrap().last_offset + 1, "seed {seed}: log end");

            // Appends continue after the recovered end and read back whole.
            let mut expected = recovered.clone();
            expected.push(append(&log, &make_batch(99_999, 3, 500, 4_000)).await);
            assert_same_batches(&read_all(&log).await, &expected, &format!("seed {seed}: after a new append"));
            log.close().await.unwrap();
        });
    }
}

#[test]
fn leftover_bytes_after_a_whole_sealed_segment_are_trimmed_and_later_segments_kept() {
    run("recycle-leftovers", || async {
        let sim = SimStorage::new(3);
        let clock = ManualClock::new(1_000_000);
        let engine = start_sim(&sim, &clock).await;
        let config = LogConfig { retention_bytes: -1, ..config() };
        let log = engine.open_log(&log_dir(), config.clone()).await.unwrap();
        let mut rng = Rng::new(3);
        let mut sent = Vec::new();
        append_until_rolled(&log, &mut rng, &mut sent, 3).await;
        log.close().await.unwrap();
        let bases = {
            let log = engine.open_log(&log_dir(), config.clone()).await.unwrap();
            let bases = log.segment_base_offsets();
            log.close().await.unwrap();
            bases
        };
        assert!(bases.len() >= 3);

        // What a crash between a roll onto a recycled file and the sealing
        // of that segment leaves: the whole segment, then old bytes (here a
        // CRC-valid batch from before it, then garbage), and no recovery
        // point, so recovery scans it.
        let path = segment_path(bases[1], "log");
        let mut contents = sim.contents(&path).unwrap();
        let size = contents.len();
        contents.extend_from_slice(&sent[0].bytes);
        contents.extend_from_slice(&[0xA5; 3000]);
        sim.corrupt(&path, size, &contents[size..]);
        sim.clone().remove_file(&log_dir().join("recovery-point")).await.unwrap();

        let log = engine.open_log(&log_dir(), config).await.unwrap();
        assert_eq!(log.segment_base_offsets(), bases, "no segment was dropped");
        assert_same_batches(&read_all(&log).await, &sent, "every batch is still there");
        assert_eq!(sim.contents(&path).unwrap().len(), size, "the leftovers were cut off");
        log.close().await.unwrap();
    });
}

#[test]
fn with_recycling_off_retention_removes_every_deleted_segment_file() {
    run("recycle-off", || async {
        let sim = SimStorage::new(5);
        let clock = ManualClock::new(1_000_000);
        let engine = start_sim_with(&sim, &clock, EngineConfig { recycle_segments: false, ..engine_config() }).await;
        let log = engine.open_log(&log_dir(), config()).await.unwrap();
        let mut rng = Rng::new(5);
        let mut sent = Vec::new();
        append_until_rolled(&log, &mut rng, &mut sent, 4).await;
        log.wait(sent.last().unwrap().last_offset, Durability::Written).await.unwrap();
        assert!(log.enforce_retention().await.unwrap().segments_deleted >= 2);
        assert!(recycled_files(&sim).is_empty(), "nothing is kept with recycling off");
        assert_eq!(sim_segment_logs(&sim, &log_dir()).len(), log.segment_base_offsets().len());
        log.close().await.unwrap();
    });
}

#[test]
fn the_shard_budget_bounds_the_kept_files_and_each_roll_reuses_one() {
    run("recycle-budget", || async {
        let sim = SimStorage::new(11);
        let clock = ManualClock::new(1_000_000);
        let engine = start_with_budget(&sim, &clock, 3).await;
        let log = engine.open_log(&log_dir(), config()).await.unwrap();
        let mut rng = Rng::new(11);
        let mut sent = Vec::new();
        append_until_rolled(&log, &mut rng, &mut sent, 8).await;
        log.wait(sent.last().unwrap().last_offset, Durability::Written).await.unwrap();
        let outcome = log.enforce_retention().await.unwrap();
        assert!(outcome.segments_deleted >= 4, "retention deletes more segments than the budget holds: {outcome:?}");
        assert_eq!(recycled_files(&sim).len(), 3, "the budget keeps three files, the rest are removed");

        // Each roll takes one kept file, until none is left.
        for left in [2, 1, 0] {
            append_until_rolled(&log, &mut rng, &mut sent, 1).await;
            assert_eq!(recycled_files(&sim).len(), left, "a roll reuses one kept file");
        }
        let log_start = log.log_start_offset();
        let expected: Vec<Stored> = sent.iter().filter(|b| b.base_offset >= log_start).cloned().collect();
        assert_same_batches(&read_all(&log).await, &expected, "reads after three recycled rolls");

        // Kept files outlive a close and are adopted again, within the
        // budget of the engine that opens them.
        log.wait(sent.last().unwrap().last_offset, Durability::Written).await.unwrap();
        assert!(log.enforce_retention().await.unwrap().segments_deleted >= 3);
        assert_eq!(recycled_files(&sim).len(), 3);
        log.close().await.unwrap();
        engine.shutdown().await;
        assert_eq!(recycled_files(&sim).len(), 3, "kept files stay on disk over a clean close");
        let engine = start_with_budget(&sim, &clock, 2).await;
        let log = engine.open_log(&log_dir(), config()).await.unwrap();
        assert_eq!(recycled_files(&sim).len(), 2, "a reopen keeps what its budget holds and removes the rest");
        let log_start = log.log_start_offset();
        let expected: Vec<Stored> = sent.iter().filter(|b| b.base_offset >= log_start).cloned().collect();
        assert_same_batches(&read_all(&log).await, &expected, "reads after the reopen");
        append_until_rolled(&log, &mut rng, &mut sent, 1).await;
        assert_eq!(recycled_files(&sim).len(), 1, "the reopened log reuses an adopted file");
        log.close().await.unwrap();
    });
}

#[test]
fn recycled_files_are_reused_on_real_dma_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    run("recycle-dma", move || async move {
        let log_dir = root.join("topic-0");
        let on_disk_recycled = || -> Vec<PathBuf> {
            std::fs::read_dir(&log_dir).unwrap().map(|e| e.unwrap().path()).filter(|p| is_recycled(p)).collect()
        };
        let clock: Rc<dyn Clock> = Rc::new(SystemClock);
        // No budget limit: segment files here vary in size (a roll can leave
        // a short one), so a byte budget would not keep a fixed number.
        let unlimited = EngineConfig { recycle_bytes_max: u64::MAX, ..engine_config() };
        let engine = Engine::start(DmaStorage, unlimited, clock, std::slice::from_ref(&root)).await.unwrap();
        let log = engine.open_log(&log_dir, config()).await.unwrap();
        let mut rng = Rng::new(11);
        let mut sent = Vec::new();
        append_until_rolled(&log, &mut rng, &mut sent, 6).await;
        let inode = |path: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap());
        let kept_inodes = || -> Vec<u64> { on_disk_recycled().iter().map(|p| inode(p)).collect() };
        // Generations of keeping and reusing, until files that were
        // themselves reused (renamed away from the name they were opened
        // with) are deleted, kept and reused again. Each time the oldest
        // segment's file must be among those kept, and the roll must reuse
        // one of them.
        let mut reused_inodes = Vec::new();
        for generation in 0..10 {
            log.wait(sent.last().unwrap().last_offset, Durability::Durable).await.unwrap();
            let oldest = inode(&log_dir.join(format!("{:020}.log", log.segment_base_offsets()[0])));
            assert!(log.enforce_retention().await.unwrap().segments_deleted >= 1, "generation {generation}");
            let kept = kept_inodes();
            assert!(kept.contains(&oldest), "generation {generation}: the oldest segment's file is kept: {kept:?}");

            append_until_rolled(&log, &mut rng, &mut sent, 1).await;
            let still_kept = kept_inodes();
            assert_eq!(still_kept.len() + 1, kept.len(), "generation {generation}: the roll took one kept file");
            let new_base = *log.segment_base_offsets().last().unwrap();
            let new_inode = inode(&log_dir.join(format!("{new_base:020}.log")));
            assert!(
                kept.contains(&new_inode) && !still_kept.contains(&new_inode),
                "generation {generation}: the new segment is a kept file, renamed"
            );
            reused_inodes.push(new_inode);
        }
        let mut distinct = reused_inodes.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() < reused_inodes.len(), "some file was reused twice: {reused_inodes:?}");
        let durable_last = sent.last().unwrap().last_offset;
        log.wait(durable_last, Durability::Durable).await.unwrap();
        let log_start = log.log_start_offset();
        let expected: Vec<Stored> = sent.iter().filter(|b| b.base_offset >= log_start).cloned().collect();
        assert_same_batches(&read_all(&log).await, &expected, "reads after a recycled roll");
        log.close().await.unwrap();

        let log = engine.open_log(&log_dir, config()).await.unwrap();
        assert_same_batches(&read_all(&log).await, &expected, "reads after a clean reopen");
        log.close().await.unwrap();
        engine.shutdown().await;
    });
}
