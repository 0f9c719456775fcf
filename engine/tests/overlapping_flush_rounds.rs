//! Flush rounds overlap: several of one log may be in flight at once, and
//! a device completes writes in any order. The partial block at the end of
//! one round is rewritten whole by the next, so if the older copy of that
//! block landed last, bytes below `written_offset` would be lost. Here
//! every write lands after a random number of scheduler turns, producers
//! keep appending batches of random sizes (with small `write_bytes_max`,
//! so a round has several pieces) and segments roll; whenever a batch is
//! acknowledged as written, the segment files on the device must hold every
//! batch below the written offset, byte for byte. After a clean close and
//! reopen the log reads back whole.

mod common;

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use common::*;
use futures_lite::future::yield_now;
use pinion_engine::batch;
use pinion_engine::io::sim::{SimFile, SimReadBuf, SimStorage};
use pinion_engine::io::{OpenMode, Storage, StorageFile};
use pinion_engine::{Clock, Durability, Engine, EngineConfig, LogConfig, ManualClock};

/// The simulated disk, with writes that land after a random delay.
#[derive(Debug, Clone)]
struct SlowWriteStorage {
    sim: SimStorage,
    rng: Rc<RefCell<Rng>>,
}

#[derive(Debug)]
struct SlowWriteFile {
    file: Rc<SimFile>,
    rng: Rc<RefCell<Rng>>,
}

impl Storage for SlowWriteStorage {
    type File = SlowWriteFile;

    async fn prepare_dir(&self, dir: &Path) -> io::Result<()> {
        self.sim.prepare_dir(dir).await
    }
    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Rc<SlowWriteFile>> {
        let file = self.sim.open(path, mode).await?;
        Ok(Rc::new(SlowWriteFile { file, rng: self.rng.clone() }))
    }
    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.sim.remove_file(path).await
    }
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.sim.rename(from, to).await
    }
    async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.sim.create_dir_all(path).await
    }
    async fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.sim.remove_dir_all(path).await
    }
    async fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        self.sim.list_dir(path).await
    }
    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.sim.sync_dir(path).await
    }
    async fn exists(&self, path: &Path) -> bool {
        self.sim.exists(path).await
    }
}

impl StorageFile for SlowWriteFile {
    type WriteBuf = Vec<u8>;
    type ReadBuf = SimReadBuf;

    fn alignment(&self) -> usize {
        self.file.alignment()
    }
    fn alloc_write_buf(&self, len: usize) -> Vec<u8> {
        self.file.alloc_write_buf(len)
    }
    fn alloc_write_buf_for_overwrite(&self, len: usize) -> Vec<u8> {
        self.file.alloc_write_buf_for_overwrite(len)
    }
    async fn write_at(&self, buf: Vec<u8>, pos: u64) -> io::Result<()> {
        // The write is in flight for a while; it lands when it completes.
        let turns = self.rng.borrow_mut().below(12);
        for _ in 0..turns {
            yield_now().await;
        }
        self.file.write_at(buf, pos).await
    }
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<SimReadBuf> {
        self.file.read_at(pos, len).await
    }
    fn slice(buf: &SimReadBuf, offset: usize, len: usize) -> SimReadBuf {
        SimFile::slice(buf, offset, len)
    }
    async fn fdatasync(&self) -> io::Result<()> {
        let turns = self.rng.borrow_mut().below(4);
        for _ in 0..turns {
            yield_now().await;
        }
        self.file.fdatasync().await
    }
    async fn preallocate(&self, len: u64, grow_size: bool) -> io::Result<()> {
        self.file.preallocate(len, grow_size).await
    }
    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.truncate(len).await
    }
    async fn size(&self) -> io::Result<u64> {
        self.file.size().await
    }
    async fn close(self: Rc<Self>) -> io::Result<()> {
        Ok(())
    }
}

/// Every whole, valid batch at the start of each segment file on the
/// device, in offset order.
fn batches_on_device(sim: &SimStorage) -> Vec<Stored> {
    let mut paths = sim_segment_logs(sim, &log_dir());
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let contents = sim.contents(&path).unwrap_or_default();
        let mut at = 0usize;
        while let Some(size) = batch::peek_size(&contents[at..]) {
            let size = size as usize;
            if size < batch::HEADER_BYTES || at + size > contents.len() {
                break;
            }
            let bytes = &contents[at..at + size];
            let Ok(header) = batch::validate_stored(bytes) else { break };
            out.push(Stored {
                base_offset: header.base_offset,
                last_offset: header.last_offset(),
                bytes: bytes.to_vec(),
            });
            at += size;
        }
    }
    out
}

#[test]
fn written_offset_holds_while_rounds_overlap_and_writes_land_out_of_order() {
    run("overlapping-flush-rounds", || async {
        for seed in 0..12 {
            scenario(seed).await;
        }
    });
}

async fn scenario(seed: u64) {
    let sim = SimStorage::new(seed);
    let storage = SlowWriteStorage { sim: sim.clone(), rng: Rc::new(RefCell::new(Rng::new(seed + 100))) };
    let clock = ManualClock::new(1_000_000);
    let shared_clock: Rc<dyn Clock> = Rc::new(clock.clone());
    // Small writes, so that rounds have several pieces and overlap.
    let engine_config = EngineConfig { write_bytes_max: 8192, flush_bytes: 8192, ..engine_config() };
    let engine = Engine::start(storage.clone(), engine_config, shared_clock, &[data_dir()]).await.unwrap();
    let config = LogConfig { segment_bytes: 96 << 10, ..LogConfig::default() };
    let log = engine.open_log(&log_dir(), config.clone()).await.unwrap();
    let mut rng = Rng::new(seed);
    let appended: Rc<RefCell<Vec<Stored>>> = Rc::default();
    let mut waiters = Vec::new();
    for i in 0..300u64 {
        let value_bytes = rng.range(1, 3_000) as usize;
        let records = rng.range(1, 3) as usize;
        let stored = append(&log, &make_batch(seed * 10_000 + i, records, value_bytes, 1_000)).await;
        appended.borrow_mut().push(stored.clone());
        let (log, sim, appended) = (log.clone(), sim.clone(), appended.clone());
        waiters.push(
            glommio::spawn_local(async move {
                log.wait(stored.last_offset, Durability::Written).await.unwrap();
                // Acknowledged: everything below the written offset is on the device.
                let written = log.written_offset();
                let expected: Vec<Stored> =
                    appended.borrow().iter().filter(|b| b.last_offset < written).cloned().collect();
                let on_device = batches_on_device(&sim);
                assert!(
                    on_device.len() >= expected.len(),
                    "seed {seed}: written offset {written}, but the device holds only {} of {} batches below it",
                    on_device.len(),
                    expected.len()
                );
                assert_same_batches(&on_device[..expected.len()], &expected, &format!("seed {seed} at ack"));
            })
            .detach(),
        );
        for _ in 0..rng.below(4) {
            yield_now().await;
        }
    }
    for waiter in waiters {
        waiter.await;
    }
    let expected = appended.borrow().clone();
    assert!(log.segment_count() > 2, "seed {seed}: the segments rolled");
    log.close().await.unwrap();
    engine.shutdown().await;
    let engine = start_sim(&sim, &clock).await;
    let log = engine.open_log(&log_dir(), config).await.unwrap();
    assert_same_batches(&read_all(&log).await, &expected, &format!("seed {seed} after reopen"));
    engine.shutdown().await;
}

/// A log with more data staged than one round takes: each round leaves its
/// partial last block to the next, so no block is written twice (a
/// rewritten block would have to wait for the round that wrote it first,
/// and those waits chain from round to round). Only the final round, with
/// nothing left behind it, writes a zero-padded partial block.
#[test]
fn a_busy_log_writes_every_block_once() {
    run("busy-log-writes-blocks-once", || async {
        let sim = SimStorage::new(7);
        let storage = SlowWriteStorage { sim: sim.clone(), rng: Rc::new(RefCell::new(Rng::new(7))) };
        let clock: Rc<dyn Clock> = Rc::new(ManualClock::new(1_000_000));
        // Rounds of at most 16 KiB, several in flight at once.
        let engine_config = EngineConfig { write_bytes_max: 8192, flush_bytes: 8192, ..engine_config() };
        let engine = Engine::start(storage, engine_config, clock, &[data_dir()]).await.unwrap();
        let log = engine.open_log(&log_dir(), LogConfig::default()).await.unwrap();
        // Staged before the flusher runs: appends do not yield.
        let mut appended = Vec::new();
        for i in 0..64 {
            appended.push(append(&log, &make_batch(i, 2, 1_000, 1_000)).await);
        }
        let last = appended.last().unwrap().last_offset;
        log.wait(last, Durability::Written).await.unwrap();
        let stored_bytes: u64 = appended.iter().map(|b| b.bytes.len() as u64).sum();
        let block = 4096;
        let padded = stored_bytes.div_ceil(block) * block;
        let segment = sim_segment_logs(&sim, &log_dir()).pop().expect("one segment");
        let written = sim.bytes_written(&segment);
        assert!(stored_bytes > 6 * 16_384, "enough for several rounds: {stored_bytes} bytes");
        assert_eq!(written, padded, "{stored_bytes} bytes appended: every block written once, so {padded} bytes");
        assert_same_batches(&read_all(&log).await, &appended, "read back");
        log.close().await.unwrap();
        engine.shutdown().await;
    });
}
