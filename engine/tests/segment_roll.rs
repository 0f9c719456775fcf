//! When and how the active segment rolls.
//!
//! By size: a segment never grows past `segment_bytes` (unless one batch
//! alone is larger), is packed as full as it can be, its files are named
//! `<base_offset:020>.log/.index/.timeindex`, and each segment's base
//! offset is the previous segment's end offset. By age: with a
//! `ManualClock`, the first append at or after `segment_ms` opens a new
//! segment and not one millisecond earlier. A batch larger than
//! `segment_bytes` gets a segment of its own. All of it survives a reopen.

mod common;

use common::*;
use pinion_engine::io::sim::SimStorage;
use pinion_engine::{Clock, Durability, LogConfig, ManualClock};

#[test]
fn segments_roll_by_size_with_kafka_file_names_and_contiguous_offsets() {
    run("roll-size", || async {
        let sim = SimStorage::new(1);
        let clock = ManualClock::new(1_000_000);
        let segment_bytes: u64 = 10_000;
        let config = LogConfig { segment_bytes, ..LogConfig::default() };
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), config.clone()).await.unwrap();
        let mut rng = Rng::new(1);
        let mut sent = Vec::new();
        for i in 0..120u64 {
            sent.push(
                append(&log, &make_batch(i, rng.range(1, 6) as usize, rng.range(50, 1200) as usize, 1_000)).await,
            );
        }
        log.close().await.unwrap();

        let log = engine.open_log(&log_dir(), config).await.unwrap();
        let bases = log.segment_base_offsets();
        assert!(bases.len() >= 5, "120 batches of up to 7 KiB in 10 KB segments roll, got {bases:?}");
        assert_eq!(bases[0], 0);
        let files: Vec<_> = bases.iter().map(|&b| segment_path(b, "log")).collect();
        assert_eq!(sim_segment_logs(&sim, &log_dir()), files, "one <base:020>.log per segment, nothing else");
        for base in &bases {
            let name = segment_path(*base, "log").file_name().unwrap().to_string_lossy().into_owned();
            assert_eq!(name, format!("{base:020}.log"));
            assert_eq!(name.len(), 24);
            for extension in ["index", "timeindex"] {
                assert!(sim.contents(&segment_path(*base, extension)).is_some(), "{base:020}.{extension} exists");
            }
        }
        for (k, &base) in bases.iter().enumerate() {
            let next = bases.get(k + 1).copied().unwrap_or(i64::MAX);
            let held: Vec<&Stored> = sent.iter().filter(|b| b.base_offset >= base && b.base_offset < next).collect();
            assert!(!held.is_empty(), "segment {base} holds batches");
            assert_eq!(held[0].base_offset, base, "segment {base} starts with the batch at its base offset");
            if next != i64::MAX {
                assert_eq!(
                    held.last().unwrap().last_offset + 1,
                    next,
                    "segment {next} starts at the end offset of segment {base}"
                );
            }
            let size: usize = held.iter().map(|b| b.bytes.len()).sum();
            let mut file = sim.contents(&files[k]).unwrap();
            if next == i64::MAX {
                assert_cut_at(&file, size, &format!("active segment {base}"));
                file.truncate(size);
            }
            assert_eq!(file.len(), size, "segment {base}: file holds exactly its batches");
            let concatenated: Vec<u8> = held.iter().flat_map(|b| b.bytes.iter().copied()).collect();
            assert!(file == concatenated, "segment {base}: file bytes are the stored batches back to back");
            assert!(size as u64 <= segment_bytes, "segment {base}: {size} bytes exceeds segment_bytes");
            if next != i64::MAX {
                let first_of_next = sent.iter().find(|b| b.base_offset == next).unwrap();
                assert!(
                    (size + first_of_next.bytes.len()) as u64 > segment_bytes,
                    "segment {base} rolled early: {size} bytes + next batch of {} fit in {segment_bytes}",
                    first_of_next.bytes.len()
                );
            }
        }
        assert_same_batches(&read_all(&log).await, &sent, "after reopen");
        engine.shutdown().await;
    });
}

#[test]
fn segments_roll_by_age_with_a_manual_clock() {
    run("roll-time", || async {
        let sim = SimStorage::new(2);
        let clock = ManualClock::new(5_000_000);
        let segment_ms = 10_000;
        let config = LogConfig { segment_ms, ..LogConfig::default() };
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), config.clone()).await.unwrap();
        let mut sent = Vec::new();
        let mut tag = 0;
        let mut next = |log_clock: &ManualClock| {
            tag += 1;
            make_batch(tag, 2, 100, log_clock.now_ms())
        };
        // The segment was created when the log was opened.
        sent.push(append(&log, &next(&clock)).await);
        clock.advance(segment_ms - 1);
        sent.push(append(&log, &next(&clock)).await);
        assert_eq!(log.segment_count(), 1, "one millisecond before segment_ms nothing rolls");
        clock.advance(1);
        sent.push(append(&log, &next(&clock)).await);
        assert_eq!(log.segment_base_offsets(), vec![0, 4], "at segment_ms the next append opens a new segment");

        // The new segment's age counts from its creation, not the log's.
        clock.advance(segment_ms - 1);
        sent.push(append(&log, &next(&clock)).await);
        assert_eq!(log.segment_count(), 2);
        clock.advance(5 * segment_ms);
        sent.push(append(&log, &next(&clock)).await);
        assert_eq!(log.segment_base_offsets(), vec![0, 4, 8]);

        log.wait(sent.last().unwrap().last_offset, Durability::Durable).await.unwrap();
        log.close().await.unwrap();
        let log = engine.open_log(&log_dir(), config.clone()).await.unwrap();
        assert_eq!(log.segment_base_offsets(), vec![0, 4, 8]);
        assert_same_batches(&read_all(&log).await, &sent, "after reopen");
        clock.advance(3 * segment_ms);
        sent.push(append(&log, &next(&clock)).await);
        assert_eq!(log.segment_base_offsets(), vec![0, 4, 8, 10], "an old active segment rolls on the next append");
        sent.push(append(&log, &next(&clock)).await);
        assert_eq!(log.segment_count(), 4, "the new segment is young");
        assert_same_batches(&read_all(&log).await, &sent, "after rolling again");
        engine.shutdown().await;
    });
}

#[test]
fn a_batch_larger_than_segment_bytes_gets_a_segment_of_its_own() {
    run("roll-oversized", || async {
        let sim = SimStorage::new(3);
        let clock = ManualClock::new(1_000_000);
        let config = LogConfig { segment_bytes: 4096, ..LogConfig::default() };
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), config.clone()).await.unwrap();
        let big = || make_batch(7, 3, 5_000, 1_000);
        let mut sent = Vec::new();
        // First into an empty segment: it stays there.
        sent.push(append(&log, &big()).await);
        assert_eq!(log.segment_base_offsets(), vec![0]);
        sent.push(append(&log, &make_batch(1, 1, 100, 1_000)).await);
        assert_eq!(log.segment_base_offsets(), vec![0, 3], "nothing joins an oversized batch");
        sent.push(append(&log, &big()).await);
        assert_eq!(log.segment_base_offsets(), vec![0, 3, 4], "an oversized batch after a small one rolls");
        sent.push(append(&log, &make_batch(2, 1, 100, 1_000)).await);
        assert_eq!(log.segment_base_offsets(), vec![0, 3, 4, 7]);
        log.wait(sent.last().unwrap().last_offset, Durability::Durable).await.unwrap();
        assert_same_batches(&read_all(&log).await, &sent, "before reopen");
        log.close().await.unwrap();

        let log = engine.open_log(&log_dir(), config).await.unwrap();
        assert_eq!(log.segment_base_offsets(), vec![0, 3, 4, 7]);
        for (base, batch) in [(0, &sent[0]), (4, &sent[2])] {
            assert_eq!(
                sim.contents(&segment_path(base, "log")).unwrap(),
                batch.bytes,
                "segment {base} holds only the big batch"
            );
        }
        assert_same_batches(&read_all(&log).await, &sent, "after reopen");
        for batch in &sent {
            let read = log.read(batch.base_offset, 1, i64::MAX).await.unwrap();
            assert_same_batches(
                &batches_of(&read),
                std::slice::from_ref(batch),
                "a 1-byte read returns one whole batch",
            );
        }
        engine.shutdown().await;
    });
}
