//! An acks=all acknowledgement covers every offset below it, including
//! those of a segment sealed by a roll whose data an earlier flush wrote
//! without syncing. The device here is slow to fdatasync (the flusher
//! yields inside it, as on a real disk) and producers keep appending, so
//! waiters are woken while the flusher still finishes the sealed segment.
//! The power is cut the moment the acknowledgement arrives; after a
//! restart the acknowledged batch must be there. Regression: the durable
//! offset used to move before the sealed segment was synced.

mod common;

use std::cell::Cell;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use common::*;
use futures_lite::future::yield_now;
use pinion_engine::io::sim::{SimFile, SimReadBuf, SimStorage};
use pinion_engine::io::{OpenMode, Storage, StorageFile};
use pinion_engine::{Clock, Durability, Engine, LogConfig, ManualClock};

/// The simulated disk, with fdatasync that lets other tasks run before it
/// completes, and a power switch: once off, every operation fails.
#[derive(Debug, Clone)]
struct SlowSyncStorage {
    sim: SimStorage,
    powered_off: Rc<Cell<bool>>,
}

impl SlowSyncStorage {
    fn check_power(&self) -> io::Result<()> {
        if self.powered_off.get() {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct SlowSyncFile {
    file: Rc<SimFile>,
    storage: SlowSyncStorage,
}

impl Storage for SlowSyncStorage {
    type File = SlowSyncFile;

    async fn prepare_dir(&self, dir: &Path) -> io::Result<()> {
        self.check_power()?;
        self.sim.prepare_dir(dir).await
    }
    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Rc<SlowSyncFile>> {
        self.check_power()?;
        let file = self.sim.open(path, mode).await?;
        Ok(Rc::new(SlowSyncFile { file, storage: self.clone() }))
    }
    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check_power()?;
        self.sim.remove_file(path).await
    }
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check_power()?;
        self.sim.rename(from, to).await
    }
    async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.check_power()?;
        self.sim.create_dir_all(path).await
    }
    async fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.check_power()?;
        self.sim.remove_dir_all(path).await
    }
    async fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        self.check_power()?;
        self.sim.list_dir(path).await
    }
    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.check_power()?;
        self.sim.sync_dir(path).await
    }
    async fn exists(&self, path: &Path) -> bool {
        self.sim.exists(path).await
    }
}

impl StorageFile for SlowSyncFile {
    type WriteBuf = Vec<u8>;
    type ReadBuf = SimReadBuf;

    fn alignment(&self) -> usize {
        self.file.alignment()
    }
    fn alloc_write_buf(&self, len: usize) -> Vec<u8> {
        self.file.alloc_write_buf(len)
    }
    async fn write_at(&self, buf: Vec<u8>, pos: u64) -> io::Result<()> {
        self.storage.check_power()?;
        self.file.write_at(buf, pos).await
    }
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<SimReadBuf> {
        self.storage.check_power()?;
        self.file.read_at(pos, len).await
    }
    fn slice(buf: &SimReadBuf, offset: usize, len: usize) -> SimReadBuf {
        SimFile::slice(buf, offset, len)
    }
    async fn fdatasync(&self) -> io::Result<()> {
        // A real fdatasync takes a while; other tasks run meanwhile.
        for _ in 0..3 {
            yield_now().await;
        }
        self.storage.check_power()?;
        self.file.fdatasync().await
    }
    async fn preallocate(&self, len: u64, grow_size: bool) -> io::Result<()> {
        self.storage.check_power()?;
        self.file.preallocate(len, grow_size).await
    }
    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.storage.check_power()?;
        self.file.truncate(len).await
    }
    async fn size(&self) -> io::Result<u64> {
        self.storage.check_power()?;
        self.file.size().await
    }
    async fn close(self: Rc<Self>) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn durable_ack_after_a_roll_survives_a_power_cut_at_the_ack() {
    run("durable-ack-after-roll", || async {
        for seed in 0..16 {
            scenario(seed).await;
        }
    });
}

async fn scenario(seed: u64) {
    let sim = SimStorage::new(seed);
    let storage = SlowSyncStorage { sim: sim.clone(), powered_off: Rc::new(Cell::new(false)) };
    let clock = ManualClock::new(1_000_000);
    let config = LogConfig { segment_bytes: 4096, ..LogConfig::default() };
    let shared_clock: Rc<dyn Clock> = Rc::new(clock.clone());
    let engine = Engine::start(storage.clone(), engine_config(), shared_clock, &[data_dir()]).await.unwrap();
    let log = engine.open_log(&log_dir(), config.clone()).await.unwrap();

    // acks=1 into the first segment: written, never synced.
    let written = append(&log, &make_batch(seed * 10, 2, 1_500, 1_000)).await;
    log.wait(written.last_offset, Durability::Written).await.unwrap();
    // acks=all into the next segment (the append rolls).
    let acked = append(&log, &make_batch(seed * 10 + 1, 2, 1_500, 1_000)).await;
    assert_eq!(log.segment_count(), 2);
    let acknowledged = Rc::new(Cell::new(false));
    let waiter = {
        let (log, acknowledged) = (log.clone(), acknowledged.clone());
        glommio::spawn_local(async move {
            log.wait(acked.last_offset, Durability::Durable).await.unwrap();
            acknowledged.set(true);
        })
        .detach()
    };
    // Other producers keep appending while the flusher works.
    for i in 0..200u64 {
        if acknowledged.get() {
            break;
        }
        append(&log, &make_batch(seed * 1_000 + i, 1, 10, 1_000)).await;
        yield_now().await;
    }
    assert!(acknowledged.get(), "seed {seed}: the acks=all wait completes");
    // The power goes off the moment the producer is told "durable".
    sim.power_cut();
    storage.powered_off.set(true);
    waiter.await;
    engine.abandon().await;
    drop(log);

    let engine = start_sim(&sim, &clock).await;
    let log = engine.open_log(&log_dir(), config).await.unwrap();
    let recovered = read_all(&log).await;
    assert!(
        recovered.len() >= 2,
        "seed {seed}: the acknowledged batch at {} was lost in the power cut (log end {})",
        acked.base_offset,
        log.log_end_offset()
    );
    assert_same_batches(&recovered[..2], &[written, acked], &format!("seed {seed}"));
    engine.shutdown().await;
}
