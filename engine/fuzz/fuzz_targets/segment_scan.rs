//! Fuzzes recovery: arbitrary segment files (raw bytes, or valid batches
//! built from the input and then damaged: bytes flipped, offsets out of
//! order or arbitrary, the file cut short), optionally a second segment, a recovery
//! point and index files, are put on a `SimStorage` and the log is opened
//! with `Engine::open_log`. Recovery must never panic. When nothing vouches
//! for the data (no recovery point), everything it keeps must be whole,
//! CRC-valid batches with increasing offsets that read back to the log end,
//! and the log must accept an append and reopen cleanly afterwards.

#![no_main]

use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use libfuzzer_sys::fuzz_target;
use pinion_engine::batch::{self, build};
use pinion_engine::io::sim::SimStorage;
use pinion_engine::io::{write_file_atomic, Storage};
use pinion_engine::segment::segment_file_name;
use pinion_engine::{Clock, Durability, Engine, EngineConfig, LogConfig, ManualClock};

thread_local! {
    /// One executor for the whole run: building one per input would
    /// dominate the time (and glommio needs one to start an `Engine`).
    static EXECUTOR: LocalExecutor = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(pinion_engine::runtime::IO_MEMORY_BYTES)
        .make()
        .expect("a glommio executor starts");
}

fuzz_target!(|data: &[u8]| {
    let data = data.to_vec();
    EXECUTOR.with(|executor| executor.run(recover(data)));
});

/// Reads the input front to back; runs dry as zeros.
struct Input<'a> {
    bytes: &'a [u8],
}

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&b, rest)) => {
                self.bytes = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.bytes.len());
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        head
    }
}

const RAW: u8 = 0x01;
const RECOVERY_POINT: u8 = 0x02;
const SECOND_SEGMENT: u8 = 0x04;
const INDEX_FILES: u8 = 0x08;
const SMALL_INDEX_INTERVAL: u8 = 0x10;

/// Valid batches built from the input, then damaged as the input says.
fn structured_segment(input: &mut Input<'_>, base_offset: i64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut next_offset = base_offset;
    for _ in 0..(input.u8() % 12) {
        let records = usize::from(input.u8() % 4) + 1;
        let value_bytes = usize::from(input.u8());
        let skew = i64::from(input.u8() as i8) / 32; // mostly 0: offsets in order
        let timestamp = i64::from(input.u16());
        let values: Vec<Vec<u8>> = (0..records).map(|i| vec![i as u8; value_bytes]).collect();
        let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let mut batch = build::batch(&refs, timestamp);
        if skew == 3 {
            // Any base offset at all: the field lies outside the CRC, so
            // damage there goes unnoticed by the checksum.
            let raw = i64::from_be_bytes(std::array::from_fn(|_| input.u8()));
            batch::set_base_offset(&mut batch, raw);
            next_offset = raw.wrapping_add(records as i64);
        } else {
            batch::set_base_offset(&mut batch, next_offset + skew);
            next_offset += skew + records as i64;
        }
        out.extend_from_slice(&batch);
    }
    for _ in 0..(input.u8() % 4) {
        let at = usize::from(input.u16());
        let flip = input.u8();
        if let Some(byte) = out.get_mut(at) {
            *byte ^= flip;
        }
    }
    let cut = input.u8();
    if cut & 0x80 != 0 && !out.is_empty() {
        let keep = usize::from(input.u16()) % out.len();
        out.truncate(keep);
    }
    out
}

async fn put(storage: &SimStorage, path: &Path, bytes: &[u8]) {
    write_file_atomic(storage, path, bytes)
        .await
        .expect("the simulated disk accepts the file");
}

async fn recover(data: Vec<u8>) {
    let mut input = Input { bytes: &data };
    let flags = input.u8();
    let dir = PathBuf::from("/data/topic-0");
    let storage = SimStorage::new(u64::from(flags));
    storage.create_dir_all(&dir).await.unwrap();

    let second_base = i64::from(input.u16());
    let recovery_point = i64::from(input.u16());
    let index_bytes = input.u8();
    let first = if flags & RAW != 0 {
        let n = usize::from(input.u16());
        input.take(n).to_vec()
    } else {
        structured_segment(&mut input, 0)
    };
    put(&storage, &dir.join(segment_file_name(0, "log")), &first).await;
    if flags & SECOND_SEGMENT != 0 && second_base > 0 {
        let second = structured_segment(&mut input, second_base);
        put(
            &storage,
            &dir.join(segment_file_name(second_base, "log")),
            &second,
        )
        .await;
    }
    if flags & INDEX_FILES != 0 {
        let index = input.take(usize::from(index_bytes)).to_vec();
        put(&storage, &dir.join(segment_file_name(0, "index")), &index).await;
        let time_index = input.take(usize::from(index_bytes)).to_vec();
        put(
            &storage,
            &dir.join(segment_file_name(0, "timeindex")),
            &time_index,
        )
        .await;
    }
    let trusted = flags & RECOVERY_POINT != 0;
    if trusted {
        let text = format!("pinion-recovery-point v1\n{recovery_point}\n");
        put(&storage, &dir.join("recovery-point"), text.as_bytes()).await;
    }

    let clock: Rc<dyn Clock> = Rc::new(ManualClock::new(1_000_000));
    let engine_config = EngineConfig {
        flush_linger_us: 0,
        ..EngineConfig::default()
    };
    let engine = Engine::start(
        storage.clone(),
        engine_config,
        clock,
        &[PathBuf::from("/data")],
    )
    .await
    .unwrap();
    let index_interval_bytes = if flags & SMALL_INDEX_INTERVAL != 0 {
        64
    } else {
        4096
    };
    let config = LogConfig {
        segment_bytes: 1 << 16,
        index_interval_bytes,
        ..LogConfig::default()
    };
    let Ok(log) = engine.open_log(&dir, config.clone()).await else {
        engine.shutdown().await;
        return;
    };
    let start = log.log_start_offset();
    let end = log.log_end_offset();
    assert!(start <= end, "log start {start} after log end {end}");

    // Read everything back; with nothing trusted, all of it must be valid.
    let mut offset = start;
    let mut previous_end = start;
    for _ in 0..10_000 {
        if offset >= end {
            break;
        }
        let read = match log.read(offset, 1 << 16, i64::MAX).await {
            Ok(read) => read,
            Err(e) => {
                assert!(trusted, "read at {offset} of a scanned log failed: {e}");
                break;
            }
        };
        if read.chunks.is_empty() {
            assert!(
                trusted,
                "read at {offset} below the log end {end} returned nothing"
            );
            break;
        }
        for chunk in &read.chunks {
            let mut at = 0usize;
            while at < chunk.len() {
                let size = batch::peek_size(&chunk[at..]).and_then(|s| usize::try_from(s).ok());
                let Some(size) = size.filter(|&s| s > 0 && at + s <= chunk.len()) else {
                    assert!(trusted, "a read returned a partial batch at {offset}");
                    break;
                };
                match batch::validate(&chunk[at..at + size]) {
                    Ok(header) => {
                        if !trusted {
                            assert!(
                                header.base_offset >= previous_end,
                                "offsets go backwards at {}",
                                header.base_offset
                            );
                        }
                        previous_end = header
                            .base_offset
                            .saturating_add(i64::from(header.last_offset_delta) + 1);
                    }
                    Err(e) => assert!(trusted, "recovery kept an invalid batch: {e}"),
                }
                at += size;
            }
        }
        if read.next_offset <= offset {
            assert!(trusted, "a read at {offset} made no progress");
            break;
        }
        offset = read.next_offset;
    }
    if !trusted {
        assert_eq!(
            offset, end,
            "reading the scanned log ends at its end offset"
        );
        let _ = log
            .offset_for_timestamp(0)
            .await
            .expect("a time lookup on a scanned log");
    }

    // The recovered log takes appends and reopens cleanly.
    let fresh = build::batch(&[b"after recovery"], 5);
    let appended = log.append(fresh.as_slice().into(), 1).await;
    let waited = match &appended {
        Ok(info) => log.wait(info.last_offset, Durability::Durable).await,
        Err(e) => Err(e.clone()),
    };
    let closed = log.close().await;
    if !trusted {
        let info = appended.expect("a scanned log accepts an append");
        assert_eq!(
            info.base_offset, end,
            "the append lands at the recovered log end"
        );
        waited.expect("the append becomes durable");
        closed.expect("the log closes cleanly");
        let log = engine
            .open_log(&dir, config)
            .await
            .expect("the log reopens after a clean close");
        assert_eq!(
            log.log_end_offset(),
            end + 1,
            "the reopened log ends after the append"
        );
        let read = log
            .read(end, 1 << 16, i64::MAX)
            .await
            .expect("the appended batch reads back");
        assert_eq!(read.chunks.len(), 1);
        assert_eq!(
            &read.chunks[0][21..],
            &fresh[21..],
            "the appended batch reads back byte for byte"
        );
    }
    engine.shutdown().await;
}
