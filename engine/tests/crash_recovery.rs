//! Crash recovery on real O_DIRECT files: a child process appends batches
//! and reports each one the moment the engine says it is durable; the test
//! kills it with SIGKILL at a pseudo-random moment, several times in a row
//! on the same directory (each child recovers the log first). Afterwards
//! every batch ever reported durable must read back byte-identical at its
//! offset, and the log must hold only whole, valid batches with contiguous
//! offsets: nothing after a torn tail is visible.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use glommio::Placement;
use pinion_engine::batch::{self, build, BatchHeader};
use pinion_engine::io::dma::DmaStorage;
use pinion_engine::runtime::run_executor;
use pinion_engine::{Durability, Engine, EngineConfig, LogConfig, SystemClock};

const CHILD_DIR_ENV: &str = "PINION_CRASH_CHILD_DIR";
const ROUNDS: u64 = 6;

fn log_config() -> LogConfig {
    // Small segments so crashes also land around rolls.
    LogConfig { segment_bytes: 256 << 10, index_interval_bytes: 1024, ..LogConfig::default() }
}

/// The stored form of a batch: what the log must return for it.
fn stored_checksum(batch: &[u8], base_offset: i64) -> u32 {
    let mut stored = batch.to_vec();
    batch::set_base_offset(&mut stored, base_offset);
    batch::set_partition_leader_epoch(&mut stored, 0);
    crc32c::crc32c(&stored)
}

/// Runs only as the child process started by `durable_batches_survive_sigkill`.
#[test]
#[ignore = "child process of durable_batches_survive_sigkill"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else { return };
    let round: u64 = std::env::var("PINION_CRASH_ROUND").unwrap().parse().unwrap();
    let data_dir = std::path::PathBuf::from(dir);
    run_executor("crash-child", Placement::Unbound, move || async move {
        let engine =
            Engine::start(DmaStorage, EngineConfig::default(), Rc::new(SystemClock), std::slice::from_ref(&data_dir))
                .await
                .unwrap();
        let log = engine.open_log(&data_dir.join("crash-0"), log_config()).await.unwrap();
        println!("OPENED {}", log.log_end_offset());
        let in_flight = Rc::new(std::cell::Cell::new(0usize));
        for i in 0u64.. {
            let size = 1 + ((i * 7919 + round * 104_729) % 3000) as usize;
            let value = vec![(i % 251) as u8; size];
            let key = format!("round-{round}-batch-{i}");
            let batch = build::batch(&[key.as_bytes(), &value], 1_700_000_000_000 + i as i64);
            let info = log.append(BytesMut::from(&batch[..]), 0).await.unwrap();
            let checksum = stored_checksum(&batch, info.base_offset);
            let len = batch.len();
            while in_flight.get() >= 64 {
                glommio::yield_if_needed().await;
                glommio::timer::sleep(Duration::from_micros(50)).await;
            }
            in_flight.set(in_flight.get() + 1);
            let waiter_log = log.clone();
            let counter = in_flight.clone();
            glommio::spawn_local(async move {
                waiter_log.wait(info.last_offset, Durability::Durable).await.unwrap();
                println!("DURABLE {} {} {}", info.base_offset, len, checksum);
                counter.set(counter.get() - 1);
            })
            .detach();
            if i % 16 == 0 {
                glommio::yield_if_needed().await;
            }
        }
    })
    .unwrap();
}

/// The fields of a child's report line; the test harness may print its own
/// text before it on the same line.
fn report_fields(line: &str) -> Vec<&str> {
    let start = ["OPENED ", "DURABLE "].iter().filter_map(|k| line.find(k)).min();
    start.map(|s| line[s..].split_whitespace().collect()).unwrap_or_default()
}

#[test]
fn durable_batches_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut durable: BTreeMap<i64, (usize, u32)> = BTreeMap::new();
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_ENV, dir.path())
            .env("PINION_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Kill after a pseudo-random number of acknowledgements, or a time limit.
        let kill_after = 50 + (round * 7_919 % 400) as usize;
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = 0usize;
        let mut opened = false;
        while Instant::now() < deadline && seen < kill_after {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    let fields = report_fields(&line);
                    match fields.as_slice() {
                        ["OPENED", _] => opened = true,
                        ["DURABLE", offset, len, checksum] => {
                            durable.insert(offset.parse().unwrap(), (len.parse().unwrap(), checksum.parse().unwrap()));
                            seen += 1;
                        }
                        _ => {}
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => break,
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Acknowledgements already printed before the kill count too.
        reader.join().unwrap();
        while let Ok(line) = rx.try_recv() {
            let fields = report_fields(&line);
            if let ["DURABLE", offset, len, checksum] = fields.as_slice() {
                durable.insert(offset.parse().unwrap(), (len.parse().unwrap(), checksum.parse().unwrap()));
            }
        }
        assert!(opened, "round {round}: child never opened the log");
        assert!(seen > 0, "round {round}: child acknowledged nothing");
    }
    assert!(durable.len() as u64 >= ROUNDS * 50);

    let data_dir = dir.path().to_path_buf();
    let durable = std::sync::Arc::new(durable);
    let expected = durable.clone();
    run_executor("crash-check", Placement::Unbound, move || async move {
        let engine =
            Engine::start(DmaStorage, EngineConfig::default(), Rc::new(SystemClock), std::slice::from_ref(&data_dir))
                .await
                .unwrap();
        let log = engine.open_log(&data_dir.join("crash-0"), log_config()).await.unwrap();
        let mut stored: BTreeMap<i64, (usize, u32)> = BTreeMap::new();
        let mut offset = log.log_start_offset();
        let mut next_expected = offset;
        let end = log.log_end_offset();
        while offset < end {
            let read = log.read(offset, 1 << 20, i64::MAX).await.unwrap();
            assert!(!read.chunks.is_empty(), "no batch at {offset} below the log end {end}");
            for chunk in &read.chunks {
                let mut at = 0;
                while at < chunk.len() {
                    let size = BatchHeader::parse(&chunk[at..]).unwrap().size();
                    let header = batch::validate(&chunk[at..at + size]).expect("only valid batches are visible");
                    assert_eq!(header.base_offset, next_expected, "offsets are contiguous");
                    next_expected = header.last_offset() + 1;
                    stored.insert(header.base_offset, (size, crc32c::crc32c(&chunk[at..at + size])));
                    at += size;
                }
            }
            offset = read.next_offset;
        }
        assert_eq!(next_expected, end);
        for (offset, (len, checksum)) in expected.iter() {
            let found = stored.get(offset);
            assert_eq!(found, Some(&(*len, *checksum)), "batch at {offset} was reported durable");
        }
        engine.shutdown().await;
    })
    .unwrap();
}
