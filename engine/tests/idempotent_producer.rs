//! Idempotent producers: a retried batch is acknowledged once and stored
//! once, with Kafka's rules (`ProducerStateManager`).
//!
//! A retry of one of a producer's last five batches is answered with the
//! original offsets and not stored; a gap in the sequence, an old epoch, or
//! a new epoch not starting at 0 is refused and nothing of the request is
//! stored; a new epoch forgets the old one's sequences; sequences wrap from
//! `i32::MAX` to 0; batches without a producer id are never checked. The
//! state survives a clean restart (through the snapshot written at close),
//! a power cut (rebuilt from the snapshot taken at the last roll plus the
//! batches after it), a damaged snapshot (rebuilt from an older one or the
//! whole log), and a truncation (rebuilt to match the shorter log). A
//! seeded model check runs all of it together. Everything runs on the
//! simulated disk.

mod common;

use bytes::BytesMut;
use common::*;
use pinion_engine::batch::build;
use pinion_engine::io::sim::SimStorage;
use pinion_engine::producer_state::{ProducerState, BATCHES_RETAINED};
use pinion_engine::{AppendError, AppendInfo, Durability, Log, LogConfig, ManualClock, ProducerError, TimestampType};

const T0: i64 = 1_700_000_000_000;
const PRODUCER: i64 = 4242;

/// A batch of `records` records from `producer_id`; `tag` makes its bytes distinct.
fn producer_batch(producer_id: i64, epoch: i16, base_sequence: i32, records: usize, tag: u64) -> Vec<u8> {
    let values: Vec<Vec<u8>> =
        (0..records).map(|i| format!("{tag}-{producer_id}-{base_sequence}-{i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
    build::idempotent_batch(&refs, T0, producer_id, epoch, base_sequence)
}

async fn send(log: &Log<SimStorage>, batch: &[u8]) -> Result<AppendInfo, AppendError> {
    log.append(BytesMut::from(batch), LEADER_EPOCH).await
}

/// Appends a batch that must be stored, and returns it as stored.
async fn stored(log: &Log<SimStorage>, batch: &[u8]) -> Stored {
    let info = send(log, batch).await.unwrap_or_else(|e| panic!("append refused: {e}"));
    assert!(!info.duplicate, "a new batch is not a duplicate");
    assert_eq!(info.bytes, batch.len());
    Stored { base_offset: info.base_offset, last_offset: info.last_offset, bytes: stored_form(batch, info.base_offset) }
}

/// Sends a retry that must be recognised as a duplicate of `original`.
async fn expect_duplicate(log: &Log<SimStorage>, batch: &[u8], original: &Stored, what: &str) {
    let end = log.log_end_offset();
    let info = send(log, batch).await.unwrap_or_else(|e| panic!("{what}: a retry was refused: {e}"));
    assert!(info.duplicate, "{what}: the retry is reported as a duplicate");
    assert_eq!(
        (info.base_offset, info.last_offset),
        (original.base_offset, original.last_offset),
        "{what}: the retry is acknowledged with the original offsets"
    );
    assert_eq!(info.bytes, 0, "{what}: nothing stored");
    assert_eq!(log.log_end_offset(), end, "{what}: the log did not grow");
}

fn out_of_order(result: Result<AppendInfo, AppendError>) -> (i32, i32) {
    match result {
        Err(AppendError::Producer(ProducerError::OutOfOrderSequence { expected, received, .. })) => {
            (expected, received)
        }
        other => panic!("expected OutOfOrderSequence, got {other:?}"),
    }
}

fn snapshot_files(sim: &SimStorage) -> Vec<i64> {
    let dir = log_dir();
    sim.files()
        .iter()
        .filter(|p| p.parent() == Some(dir.as_path()) && p.extension().is_some_and(|e| e == "snapshot"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().parse().unwrap())
        .collect()
}

#[test]
fn duplicate_retry_is_stored_once_and_acknowledged_with_original_offsets() {
    run("idempotent-duplicate", || async {
        let sim = SimStorage::new(1);
        let clock = ManualClock::new(T0);
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), LogConfig::default()).await.unwrap();
        let mut sent = Vec::new();
        let mut batches = Vec::new();
        let mut sequence = 0;
        for i in 0..7u64 {
            let records = 1 + (i as usize % 3);
            let batch = producer_batch(PRODUCER, 0, sequence, records, i);
            sent.push(stored(&log, &batch).await);
            batches.push(batch);
            sequence += records as i32;
        }
        // Retried before it is even written: the original's wait still works.
        expect_duplicate(&log, &batches[6], &sent[6], "newest batch, still in memory").await;
        log.wait(sent[6].last_offset, Durability::Durable).await.unwrap();
        // Any of the last five batches is recognised, in any order.
        for k in [2, 5, 3, 6, 4] {
            expect_duplicate(&log, &batches[k], &sent[k], &format!("batch {k}")).await;
        }
        // A duplicate's acknowledgement can be waited for like the original's.
        let info = send(&log, &batches[4]).await.unwrap();
        log.wait(info.last_offset, Durability::Durable).await.unwrap();
        // Older than the last five: Kafka no longer knows it, so it is out of order.
        assert_eq!(out_of_order(send(&log, &batches[1]).await), (sequence, 1));
        assert_same_batches(&read_all(&log).await, &sent, "each batch stored once");
        assert_eq!(log.producer_state(PRODUCER), Some((0, sequence - 1, sent[6].last_offset)));
        engine.shutdown().await;

        // Under LogAppendTime the retry gets the original append time.
        let sim = SimStorage::new(12);
        let engine = start_sim(&sim, &clock).await;
        let config = LogConfig { message_timestamp_type: TimestampType::LogAppendTime, ..LogConfig::default() };
        let log = engine.open_log(&log_dir(), config).await.unwrap();
        let batch = producer_batch(PRODUCER, 0, 0, 2, 0);
        let original = send(&log, &batch).await.unwrap();
        assert_eq!(original.log_append_time_ms, T0);
        clock.advance(5_000);
        let retry = send(&log, &batch).await.unwrap();
        assert!(retry.duplicate);
        assert_eq!((retry.base_offset, retry.last_offset, retry.log_append_time_ms), (0, 1, T0));
        engine.shutdown().await;
    });
}

#[test]
fn out_of_order_sequence_is_refused_and_nothing_stored() {
    run("idempotent-out-of-order", || async {
        let sim = SimStorage::new(2);
        let clock = ManualClock::new(T0);
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), LogConfig::default()).await.unwrap();
        let first = producer_batch(PRODUCER, 0, 0, 2, 0);
        let sent = vec![stored(&log, &first).await];
        // A gap, and a sequence from the past.
        assert_eq!(out_of_order(send(&log, &producer_batch(PRODUCER, 0, 5, 1, 1)).await), (2, 5));
        assert_eq!(out_of_order(send(&log, &producer_batch(PRODUCER, 0, 1, 1, 2)).await), (2, 1));
        // Two batches in one request: the second must follow the first; all or nothing.
        let mut request = producer_batch(PRODUCER, 0, 2, 2, 3);
        request.extend(producer_batch(PRODUCER, 0, 5, 1, 4));
        assert_eq!(out_of_order(send(&log, &request).await), (4, 5));
        // A retry together with a new batch is refused whole.
        let mut mixed = first.clone();
        mixed.extend(producer_batch(PRODUCER, 0, 2, 1, 5));
        assert_eq!(out_of_order(send(&log, &mixed).await), (2, 0));
        // A plain batch next to a retry too.
        let mut mixed = build::batch(&[b"plain"], T0);
        mixed.extend(&first);
        assert!(send(&log, &mixed).await.is_err());
        assert_eq!(log.log_end_offset(), 2, "nothing of a refused request is stored");
        assert_same_batches(&read_all(&log).await, &sent, "only the first batch");
        assert_eq!(log.producer_state(PRODUCER), Some((0, 1, 1)), "a refused batch changes no state");
        // The right sequence is still accepted; two in order in one request too.
        let mut request = producer_batch(PRODUCER, 0, 2, 2, 6);
        request.extend(producer_batch(PRODUCER, 0, 4, 1, 7));
        let info = send(&log, &request).await.unwrap();
        assert_eq!((info.base_offset, info.last_offset, info.duplicate), (2, 4, false));
        assert_eq!(log.producer_state(PRODUCER), Some((0, 4, 4)));
        engine.shutdown().await;
    });
}

#[test]
fn stale_epoch_is_refused() {
    run("idempotent-stale-epoch", || async {
        let sim = SimStorage::new(3);
        let clock = ManualClock::new(T0);
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), LogConfig::default()).await.unwrap();
        stored(&log, &producer_batch(PRODUCER, 3, 0, 1, 0)).await;
        for (epoch, sequence) in [(2, 1), (2, 0), (0, 0)] {
            match send(&log, &producer_batch(PRODUCER, epoch, sequence, 1, 1)).await {
                Err(AppendError::Producer(
                    e @ ProducerError::InvalidProducerEpoch { producer_id: PRODUCER, current_epoch: 3, .. },
                )) => {
                    let text = e.to_string();
                    assert!(text.contains(&format!("epoch {epoch}")) && text.contains("epoch 3"), "{text}");
                }
                other => panic!("epoch {epoch} after 3: expected InvalidProducerEpoch, got {other:?}"),
            }
        }
        assert_eq!(log.log_end_offset(), 1);
        assert_eq!(log.producer_state(PRODUCER), Some((3, 0, 0)));
        engine.shutdown().await;
    });
}

#[test]
fn new_epoch_resets_sequences() {
    run("idempotent-new-epoch", || async {
        let sim = SimStorage::new(4);
        let clock = ManualClock::new(T0);
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), LogConfig::default()).await.unwrap();
        let old = producer_batch(PRODUCER, 0, 0, 3, 0);
        stored(&log, &old).await;
        stored(&log, &producer_batch(PRODUCER, 0, 3, 1, 1)).await;
        // A new epoch must start at 0, not continue the old sequence.
        assert_eq!(out_of_order(send(&log, &producer_batch(PRODUCER, 1, 4, 1, 2)).await), (0, 4));
        let first_of_new = producer_batch(PRODUCER, 1, 0, 2, 3);
        let new = stored(&log, &first_of_new).await;
        assert_eq!(log.producer_state(PRODUCER), Some((1, 1, new.last_offset)));
        // The old epoch is over: its retries are fenced, not duplicates.
        assert!(matches!(
            send(&log, &old).await,
            Err(AppendError::Producer(ProducerError::InvalidProducerEpoch { epoch: 0, current_epoch: 1, .. }))
        ));
        expect_duplicate(&log, &first_of_new, &new, "first batch of the new epoch").await;
        stored(&log, &producer_batch(PRODUCER, 1, 2, 1, 4)).await;
        // Epochs may jump by more than one (a client bumps its own epoch).
        stored(&log, &producer_batch(PRODUCER, 5, 0, 1, 5)).await;
        assert_eq!(log.producer_state(PRODUCER).map(|(e, s, _)| (e, s)), Some((5, 0)));
        engine.shutdown().await;
    });
}

#[test]
fn unknown_producer_is_accepted_at_any_sequence() {
    run("idempotent-unknown", || async {
        // Kafka 2.5+: a producer the log has no state for (for example all
        // its batches were deleted) starts wherever it is.
        let sim = SimStorage::new(5);
        let clock = ManualClock::new(T0);
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), LogConfig::default()).await.unwrap();
        assert_eq!(log.producer_state(PRODUCER), None);
        stored(&log, &producer_batch(PRODUCER, 2, 1000, 2, 0)).await;
        assert_eq!(log.producer_state(PRODUCER), Some((2, 1001, 1)));
        assert_eq!(out_of_order(send(&log, &producer_batch(PRODUCER, 2, 1003, 1, 1)).await), (1002, 1003));
        // A negative sequence with a producer id is never valid.
        assert_eq!(out_of_order(send(&log, &producer_batch(7, 0, -1, 1, 2)).await), (0, -1));
        engine.shutdown().await;
    });
}

#[test]
fn batches_without_producer_id_are_unaffected() {
    run("idempotent-plain", || async {
        let sim = SimStorage::new(6);
        let clock = ManualClock::new(T0);
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), LogConfig::default()).await.unwrap();
        let plain = make_batch(1, 2, 10, T0);
        // The same plain batch twice is stored twice: there is nothing to dedup by.
        let mut sent = vec![stored(&log, &plain).await, stored(&log, &plain).await];
        // Plain and idempotent batches in one request.
        let mut request = make_batch(2, 1, 10, T0);
        request.extend(producer_batch(PRODUCER, 0, 0, 1, 0));
        let info = send(&log, &request).await.unwrap();
        assert!(!info.duplicate);
        sent.push(Stored { base_offset: 4, last_offset: 4, bytes: stored_form(&make_batch(2, 1, 10, T0), 4) });
        sent.push(Stored {
            base_offset: 5,
            last_offset: 5,
            bytes: stored_form(&producer_batch(PRODUCER, 0, 0, 1, 0), 5),
        });
        sent.push(stored(&log, &plain).await);
        assert_same_batches(&read_all(&log).await, &sent, "plain batches stored every time");
        assert_eq!(log.producer_count(), 1, "only the idempotent producer has state");
        log.close().await.unwrap();
        let log = engine.open_log(&log_dir(), LogConfig::default()).await.unwrap();
        assert_eq!(log.producer_count(), 1);
        assert_eq!(log.producer_state(PRODUCER), Some((0, 0, 5)));
        engine.shutdown().await;
    });
}

#[test]
fn sequence_wraps_around_at_i32_max() {
    run("idempotent-wrap", || async {
        let sim = SimStorage::new(7);
        let clock = ManualClock::new(T0);
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), LogConfig::default()).await.unwrap();
        stored(&log, &producer_batch(PRODUCER, 0, i32::MAX - 3, 2, 0)).await;
        assert_eq!(log.producer_state(PRODUCER), Some((0, i32::MAX - 2, 1)));
        // A batch across the wrap: MAX-1, MAX, 0.
        let across = producer_batch(PRODUCER, 0, i32::MAX - 1, 3, 1);
        let across_stored = stored(&log, &across).await;
        assert_eq!(log.producer_state(PRODUCER), Some((0, 0, 4)));
        expect_duplicate(&log, &across, &across_stored, "batch across the wrap").await;
        assert_eq!(out_of_order(send(&log, &producer_batch(PRODUCER, 0, 0, 1, 2)).await), (1, 0));
        stored(&log, &producer_batch(PRODUCER, 0, 1, 1, 3)).await;
        engine.shutdown().await;
        // A batch ending exactly at MAX is followed by 0.
        let sim = SimStorage::new(8);
        let engine2 = start_sim(&sim, &clock).await;
        let log2 = engine2.open_log(&log_dir(), LogConfig::default()).await.unwrap();
        stored(&log2, &producer_batch(PRODUCER, 0, i32::MAX - 1, 2, 4)).await;
        assert_eq!(out_of_order(send(&log2, &producer_batch(PRODUCER, 0, i32::MAX, 1, 5)).await), (0, i32::MAX));
        stored(&log2, &producer_batch(PRODUCER, 0, 0, 1, 6)).await;
        // The wrapped state survives a restart.
        log2.close().await.unwrap();
        let log2 = engine2.open_log(&log_dir(), LogConfig::default()).await.unwrap();
        assert_eq!(log2.producer_state(PRODUCER), Some((0, 0, 2)));
        engine2.shutdown().await;
    });
}

/// Small segments, so appends roll and take snapshots.
fn rolling_config() -> LogConfig {
    LogConfig { segment_bytes: 4096, index_interval_bytes: 512, ..LogConfig::default() }
}

/// Two producers appending in turn; returns what was sent per producer as
/// (batch bytes, stored) in order.
async fn two_producers(log: &Log<SimStorage>, rounds: u64) -> [Vec<(Vec<u8>, Stored)>; 2] {
    let mut out: [Vec<(Vec<u8>, Stored)>; 2] = [Vec::new(), Vec::new()];
    let mut sequences = [0i32; 2];
    for i in 0..rounds {
        for (k, producer_id) in [PRODUCER, PRODUCER + 1].into_iter().enumerate() {
            let records = 1 + ((i as usize + k) % 4);
            let batch = producer_batch(producer_id, 1, sequences[k], records, i);
            let s = stored(log, &batch).await;
            out[k].push((batch, s));
            sequences[k] += records as i32;
        }
    }
    out
}

/// After a restart: the next in-order batch of each producer is accepted
/// and a re-send of its last batch is a duplicate.
async fn continues_where_it_stopped(log: &Log<SimStorage>, sent: &[Vec<(Vec<u8>, Stored)>; 2], what: &str) {
    for (k, producer_id) in [PRODUCER, PRODUCER + 1].into_iter().enumerate() {
        let (last_batch, last) = sent[k].last().unwrap();
        let (epoch, last_sequence, last_offset) = log.producer_state(producer_id).expect("producer known");
        assert_eq!((epoch, last_offset), (1, last.last_offset), "{what}: producer {producer_id}");
        expect_duplicate(log, last_batch, last, &format!("{what}: producer {producer_id} re-sends its last batch"))
            .await;
        let next = producer_batch(producer_id, 1, last_sequence + 1, 1, 999);
        let info = send(log, &next).await.unwrap_or_else(|e| panic!("{what}: next batch of {producer_id}: {e}"));
        assert!(!info.duplicate && info.base_offset == log.log_end_offset() - 1, "{what}: next batch appended");
    }
}

#[test]
fn producer_state_survives_clean_restart() {
    run("idempotent-clean-restart", || async {
        let sim = SimStorage::new(9);
        let clock = ManualClock::new(T0);
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), rolling_config()).await.unwrap();
        let sent = two_producers(&log, 60).await;
        assert!(log.segment_count() > 3, "segments rolled");
        let end = log.log_end_offset();
        log.close().await.unwrap();
        let snapshots = snapshot_files(&sim);
        assert_eq!(snapshots.len(), 2, "the newest two snapshots are kept: {snapshots:?}");
        assert_eq!(*snapshots.iter().max().unwrap(), end, "a snapshot at the log end is written at close");
        let bytes = sim.contents(&segment_path(end, "snapshot")).unwrap();
        let state = ProducerState::from_snapshot(&bytes, end).expect("the close snapshot is valid");
        assert_eq!(state.len(), 2);
        assert_eq!(state.get(PRODUCER).unwrap().batches().len(), BATCHES_RETAINED);

        let log = engine.open_log(&log_dir(), rolling_config()).await.unwrap();
        // Any of the last five batches, not only the last, is still known.
        let (batch, original) = &sent[0][sent[0].len() - BATCHES_RETAINED];
        expect_duplicate(&log, batch, original, "fifth-newest batch after restart").await;
        continues_where_it_stopped(&log, &sent, "after a clean restart").await;
        engine.shutdown().await;
    });
}

#[test]
fn producer_state_survives_crash() {
    run("idempotent-crash", || async {
        // Rebuilt from the snapshot of the last roll plus the batches after it.
        let sim = SimStorage::new(10);
        let clock = ManualClock::new(T0);
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), rolling_config()).await.unwrap();
        let sent = two_producers(&log, 30).await;
        log.wait(log.log_end_offset() - 1, Durability::Durable).await.unwrap();
        assert!(!snapshot_files(&sim).is_empty(), "rolls took snapshots");
        sim.power_cut();
        engine.abandon().await;
        drop(log);
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), rolling_config()).await.unwrap();
        continues_where_it_stopped(&log, &sent, "after a power cut").await;
        engine.shutdown().await;

        // Without any snapshot: rebuilt from the whole log.
        let sim = SimStorage::new(11);
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), LogConfig::default()).await.unwrap();
        let sent = two_producers(&log, 12).await;
        log.wait(log.log_end_offset() - 1, Durability::Durable).await.unwrap();
        assert!(snapshot_files(&sim).is_empty(), "no roll, no close: no snapshot");
        sim.power_cut();
        engine.abandon().await;
        drop(log);
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), LogConfig::default()).await.unwrap();
        continues_where_it_stopped(&log, &sent, "rebuilt from the whole log").await;
        engine.shutdown().await;
    });
}

#[test]
fn corrupt_snapshot_falls_back_to_rebuild() {
    run("idempotent-corrupt-snapshot", || async {
        let clock = ManualClock::new(T0);
        // (what is done to the snapshots, whether the newest only or all of them)
        let damages: [(&str, bool); 4] =
            [("flip newest", false), ("cut newest", false), ("flip all", true), ("empty all", true)];
        for (seed, (what, all)) in damages.into_iter().enumerate() {
            let sim = SimStorage::new(20 + seed as u64);
            let engine = start_sim(&sim, &clock).await;
            let log = engine.open_log(&log_dir(), rolling_config()).await.unwrap();
            let sent = two_producers(&log, 25).await;
            log.close().await.unwrap();
            let mut snapshots = snapshot_files(&sim);
            snapshots.sort_unstable();
            let damaged: Vec<i64> = if all { snapshots.clone() } else { vec![*snapshots.last().unwrap()] };
            for &offset in &damaged {
                let path = segment_path(offset, "snapshot");
                let len = sim.contents(&path).unwrap().len();
                match what {
                    "flip newest" | "flip all" => sim.corrupt(&path, len / 2, &[0xA5]),
                    "cut newest" => sim.cut(&path, len - 3),
                    _ => sim.cut(&path, 0),
                }
            }
            let log = engine.open_log(&log_dir(), rolling_config()).await.unwrap();
            let left = snapshot_files(&sim);
            assert!(damaged.iter().all(|o| !left.contains(o)), "{what}: damaged snapshots are deleted, left {left:?}");
            continues_where_it_stopped(&log, &sent, what).await;
            engine.shutdown().await;
        }
    });
}

#[test]
fn producer_state_of_deleted_segments_survives_through_snapshots() {
    run("idempotent-retention", || async {
        // Retention deletes every batch of a producer; the snapshots still
        // know it, so its retry is a duplicate (Kafka answers with the
        // original offsets, now below the log start) and a gap is refused.
        let sim = SimStorage::new(30);
        let clock = ManualClock::new(T0);
        let config = LogConfig { retention_ms: 60_000, ..rolling_config() };
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), config.clone()).await.unwrap();
        let early = producer_batch(PRODUCER, 0, 0, 2, 0);
        let early_stored = stored(&log, &early).await;
        clock.advance(120_000);
        let mut sequence = 0;
        for i in 0..40 {
            let batch = producer_batch(PRODUCER + 1, 0, sequence, 3, i);
            stored(&log, &batch).await;
            sequence += 3;
        }
        let outcome = log.enforce_retention().await.unwrap();
        assert!(outcome.segments_deleted > 0 && log.log_start_offset() > early_stored.last_offset);
        log.close().await.unwrap();
        let log = engine.open_log(&log_dir(), config).await.unwrap();
        assert_eq!(log.producer_state(PRODUCER), Some((0, 1, 1)), "known through the snapshot");
        expect_duplicate(&log, &early, &early_stored, "retry of a deleted batch").await;
        assert_eq!(out_of_order(send(&log, &producer_batch(PRODUCER, 0, 7, 1, 1)).await), (2, 7));
        stored(&log, &producer_batch(PRODUCER, 0, 2, 1, 2)).await;
        // Idle producers expire after producer.id.expiration.ms.
        clock.set(T0 + 2_000_000);
        assert_eq!(log.remove_expired_producers(1_000_000), 2, "both producers last wrote at T0");
        assert_eq!(log.producer_count(), 0);
        engine.shutdown().await;
    });
}

#[test]
fn truncation_rebuilds_state() {
    run("idempotent-truncate", || async {
        let sim = SimStorage::new(40);
        let clock = ManualClock::new(T0);
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), rolling_config()).await.unwrap();
        let mut batches = Vec::new();
        let mut sent = Vec::new();
        for sequence in 0..60 {
            let batch = producer_batch(PRODUCER, 0, sequence, 1, sequence as u64);
            sent.push(stored(&log, &batch).await);
            batches.push(batch);
        }
        assert!(snapshot_files(&sim).iter().any(|&o| o > 30), "rolls took snapshots past the truncation point");
        assert_eq!(log.truncate_to(30).await.unwrap(), 30);
        assert!(snapshot_files(&sim).iter().all(|&o| o <= 30), "snapshots past the new end are deleted");
        assert_eq!(log.producer_state(PRODUCER), Some((0, 29, 29)), "state matches the shorter log");
        // The truncated batches are not duplicates any more: sequence 30 goes at offset 30 again.
        let again = stored(&log, &batches[30]).await;
        assert_eq!(again.base_offset, 30);
        expect_duplicate(&log, &batches[29], &sent[29], "last batch kept").await;
        assert_eq!(out_of_order(send(&log, &batches[40]).await), (31, 40));
        // And after a crash, the truncated past does not come back.
        log.wait(30, Durability::Durable).await.unwrap();
        sim.power_cut();
        engine.abandon().await;
        drop(log);
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), rolling_config()).await.unwrap();
        assert_eq!(log.producer_state(PRODUCER), Some((0, 30, 30)));
        stored(&log, &batches[31]).await;
        engine.shutdown().await;
    });
}

/// One batch in the model of the log.
#[derive(Debug, Clone)]
struct ModelBatch {
    producer: usize,
    epoch: i16,
    base_sequence: i32,
    records: i32,
    bytes: Vec<u8>,
    stored: Stored,
}

/// What each producer's state must be: Kafka's rules folded over the batches
/// the log holds. `(epoch, retained batches of that epoch)`.
fn expected_state(model: &[ModelBatch], producers: usize) -> Vec<Option<(i16, Vec<&ModelBatch>)>> {
    let mut state: Vec<Option<(i16, Vec<&ModelBatch>)>> = vec![None; producers];
    for b in model {
        let entry = state[b.producer].get_or_insert((b.epoch, Vec::new()));
        if entry.0 != b.epoch {
            *entry = (b.epoch, Vec::new());
        }
        entry.1.push(b);
        if entry.1.len() > BATCHES_RETAINED {
            entry.1.remove(0);
        }
    }
    state
}

#[test]
fn producer_state_matches_a_model_through_restarts_crashes_and_truncations() {
    run("idempotent-model", || async {
        const PRODUCERS: usize = 3;
        // How often each interesting case came up, over all seeds.
        let (mut duplicates, mut refused, mut lost_to_power_cut, mut truncated, mut rolls) = (0, 0, 0, 0, 0);
        for seed in 0..24u64 {
            let sim = SimStorage::new(seed);
            let clock = ManualClock::new(T0);
            let mut rng = Rng::new(seed);
            let config =
                LogConfig { segment_bytes: rng.range(2, 8) * 256, index_interval_bytes: 256, ..LogConfig::default() };
            let mut engine = start_sim(&sim, &clock).await;
            let mut log = engine.open_log(&log_dir(), config.clone()).await.unwrap();
            let mut model: Vec<ModelBatch> = Vec::new();
            let mut epochs = [0i16; PRODUCERS];
            let mut tag = 0u64;
            for step in 0..100 {
                let what = format!("seed {seed} step {step}");
                let expected = expected_state(&model, PRODUCERS);
                let producer = rng.below(PRODUCERS as u64) as usize;
                let producer_id = 100 + producer as i64;
                tag += 1;
                match rng.below(24) {
                    // The next batch in order.
                    0..=13 | 23 => {
                        let (epoch, base_sequence) = match &expected[producer] {
                            Some((epoch, retained)) if *epoch == epochs[producer] => {
                                let last = retained.last().unwrap();
                                (*epoch, last.base_sequence + last.records)
                            }
                            _ => (epochs[producer], 0),
                        };
                        let records = rng.range(1, 4) as i32;
                        let bytes = producer_batch(producer_id, epoch, base_sequence, records as usize, tag);
                        let segments = log.segment_count();
                        let s = stored(&log, &bytes).await;
                        rolls += log.segment_count() - segments;
                        model.push(ModelBatch { producer, epoch, base_sequence, records, bytes, stored: s });
                    }
                    // A retry of a recent batch of this producer, or an out-of-order one.
                    14..=17 => {
                        let Some((epoch, retained)) = &expected[producer] else { continue };
                        let pick = rng.below(retained.len() as u64 + 1) as usize;
                        if let Some(original) = retained.get(pick) {
                            expect_duplicate(&log, &original.bytes, &original.stored, &what).await;
                            duplicates += 1;
                        } else {
                            let last = retained.last().unwrap();
                            let gap = last.base_sequence + last.records + 1 + rng.below(5) as i32;
                            let bytes = producer_batch(producer_id, *epoch, gap, 1, tag);
                            assert!(send(&log, &bytes).await.is_err(), "{what}: gap refused");
                            refused += 1;
                        }
                    }
                    // The producer bumps its epoch.
                    18 => epochs[producer] += 1,
                    19 => {
                        log.close().await.unwrap();
                        log = engine.open_log(&log_dir(), config.clone()).await.unwrap();
                    }
                    20 | 21 => {
                        if rng.below(2) == 0 {
                            if let Some(last) = model.last() {
                                log.wait(last.stored.last_offset, Durability::Durable).await.unwrap();
                            }
                        }
                        sim.power_cut();
                        engine.abandon().await;
                        drop(log);
                        engine = start_sim(&sim, &clock).await;
                        log = engine.open_log(&log_dir(), config.clone()).await.unwrap();
                        let end = log.log_end_offset();
                        let before = model.len();
                        model.retain(|b| b.stored.last_offset < end);
                        lost_to_power_cut += usize::from(model.len() < before);
                        assert_eq!(end, model.last().map_or(0, |b| b.stored.last_offset + 1), "{what}: whole batches");
                    }
                    _ => {
                        let end = log.log_end_offset();
                        let offset = rng.below(end as u64 + 1) as i64;
                        log.truncate_to(offset).await.unwrap();
                        let before = model.len();
                        model.retain(|b| b.stored.last_offset < offset);
                        truncated += usize::from(model.len() < before);
                    }
                }
                let expected = expected_state(&model, PRODUCERS);
                for (producer, want) in expected.iter().enumerate() {
                    let got = log.producer_state(100 + producer as i64);
                    let want = want.as_ref().map(|(epoch, retained)| {
                        let last = retained.last().unwrap();
                        (*epoch, last.base_sequence + last.records - 1, last.stored.last_offset)
                    });
                    assert_eq!(got, want, "{what}: state of producer {producer}");
                }
            }
            engine.shutdown().await;
        }
        // The scenario must really exercise every path.
        assert!(duplicates > 100 && refused > 40, "duplicates {duplicates}, refused {refused}");
        assert!(lost_to_power_cut > 20 && truncated > 30, "power cuts lost {lost_to_power_cut}, truncated {truncated}");
        assert!(rolls > 50, "segments rolled {rolls} times");
    });
}
