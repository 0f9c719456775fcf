//! A failed write or fdatasync poisons the log instead of pretending.
//!
//! EIO on fdatasync, EIO on an O_DIRECT write (whole or torn) and ENOSPC
//! from a full device each make the append that waits for them fail with
//! `AppendError::Poisoned`, whose reason names the failed operation and the
//! OS error; every later append is refused the same way; data that was
//! durable before stays readable, and after a restart it is all there. A
//! failed read is different: it returns `ReadError::Io` for that read only
//! and leaves the log writable.

mod common;

use common::*;
use pinion_engine::io::sim::{Fault, FaultOp, SimStorage};
use pinion_engine::{AppendError, Durability, LogConfig, ManualClock, ReadError};

/// How the device fails in one scenario.
#[derive(Debug, Clone, Copy)]
enum Failure {
    FsyncEio,
    WriteEio,
    TornWriteEio,
    DiskFull,
}

impl Failure {
    fn inject(self, sim: &SimStorage) {
        match self {
            Failure::FsyncEio => sim.inject(Fault::new(FaultOp::Fsync, ".log", libc::EIO)),
            Failure::WriteEio => sim.inject(Fault::new(FaultOp::Write, ".log", libc::EIO)),
            Failure::TornWriteEio => {
                sim.inject(Fault { torn_bytes: Some(700), ..Fault::new(FaultOp::Write, ".log", libc::EIO) })
            }
            Failure::DiskFull => sim.set_write_budget(0),
        }
    }

    /// Words the poison reason must contain: the operation and the OS error.
    fn reason_words(self) -> [&'static str; 2] {
        let os_error = match self {
            Failure::DiskFull => "No space left on device",
            _ => "Input/output error",
        };
        let operation = match self {
            Failure::FsyncEio => "fdatasync",
            _ => "write",
        };
        [operation, os_error]
    }
}

fn expect_poisoned(result: Result<impl std::fmt::Debug, AppendError>, failure: Failure, what: &str) {
    match result {
        Err(AppendError::Poisoned(reason)) => {
            for word in failure.reason_words() {
                assert!(reason.contains(word), "{failure:?}, {what}: poison reason {reason:?} must mention {word:?}");
            }
        }
        other => panic!("{failure:?}, {what}: expected Poisoned, got {other:?}"),
    }
}

#[test]
fn failed_fsync_write_or_full_disk_poisons_the_log() {
    run("poison", || async {
        for (seed, failure) in
            [Failure::FsyncEio, Failure::WriteEio, Failure::TornWriteEio, Failure::DiskFull].into_iter().enumerate()
        {
            scenario(seed as u64, failure).await;
        }
    });
}

async fn scenario(seed: u64, failure: Failure) {
    let sim = SimStorage::new(seed);
    let clock = ManualClock::new(1_000_000);
    let config = LogConfig::default();
    let engine = start_sim(&sim, &clock).await;
    let log = engine.open_log(&log_dir(), config.clone()).await.unwrap();
    let mut durable = Vec::new();
    for i in 0..6u64 {
        durable.push(append(&log, &make_batch(i, 2, 900, 1_000)).await);
    }
    log.wait(durable.last().unwrap().last_offset, Durability::Durable).await.unwrap();

    failure.inject(&sim);
    let doomed = append(&log, &make_batch(100, 2, 900, 2_000)).await;
    expect_poisoned(log.wait(doomed.last_offset, Durability::Durable).await, failure, "the waiting append");
    assert!(log.poisoned().is_some(), "{failure:?}: the log reports its poison");
    assert!(log.durable_offset() <= doomed.base_offset, "{failure:?}: the failed batch is not called durable");

    // The device is healthy again, but the log stays poisoned.
    sim.clear_faults();
    for i in 0..3u64 {
        expect_poisoned(
            log.append(bytes::BytesMut::from(&make_batch(200 + i, 1, 10, 3_000)[..]), LEADER_EPOCH).await,
            failure,
            "a later append",
        );
    }
    expect_poisoned(log.wait(doomed.last_offset, Durability::Written).await, failure, "a later wait");
    expect_poisoned(log.flush(Durability::Durable).await, failure, "a flush");

    // What was durable before is still readable.
    let read = log.read(0, 1 << 20, doomed.base_offset).await.unwrap();
    assert_same_batches(&batches_of(&read), &durable, &format!("{failure:?}: durable batches after the poison"));

    // A restart (the operator's answer to a poisoned log) finds them all.
    engine.abandon().await;
    drop(log);
    sim.power_cut();
    let engine = start_sim(&sim, &clock).await;
    let log = engine.open_log(&log_dir(), config).await.unwrap();
    let recovered = read_all(&log).await;
    assert!(recovered.len() >= durable.len(), "{failure:?}: durable batches survive a restart");
    assert_same_batches(&recovered[..durable.len()], &durable, &format!("{failure:?}: after restart"));
    let next = append(&log, &make_batch(300, 1, 10, 4_000)).await;
    log.wait(next.last_offset, Durability::Durable).await.unwrap();
    assert!(log.poisoned().is_none(), "{failure:?}: a reopened log is writable");
    engine.shutdown().await;
}

#[test]
fn failed_read_returns_an_error_without_poisoning() {
    run("read-eio", || async {
        let sim = SimStorage::new(9);
        let clock = ManualClock::new(1_000_000);
        let config = LogConfig::default();
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), config.clone()).await.unwrap();
        let mut sent = Vec::new();
        for i in 0..5u64 {
            sent.push(append(&log, &make_batch(i, 3, 400, 1_000)).await);
        }
        log.close().await.unwrap();
        // Reopened, the tail cache is empty: reads go to the device.
        let log = engine.open_log(&log_dir(), config).await.unwrap();
        sim.inject(Fault::new(FaultOp::Read, ".log", libc::EIO));
        match log.read(0, 1 << 20, i64::MAX).await {
            Err(ReadError::Io(e)) => {
                assert_eq!(e.raw_os_error(), Some(libc::EIO), "the read error keeps its cause: {e}")
            }
            other => panic!("read with EIO gave {other:?}"),
        }
        assert!(log.poisoned().is_none(), "a failed read does not poison the log");
        assert_same_batches(&read_all(&log).await, &sent, "the next reads succeed");
        let more = append(&log, &make_batch(50, 1, 10, 2_000)).await;
        log.wait(more.last_offset, Durability::Durable).await.unwrap();
        sent.push(more);
        assert_same_batches(&read_all(&log).await, &sent, "appends still work");
        engine.shutdown().await;
    });
}
