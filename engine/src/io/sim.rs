//! [`SimStorage`]: an in-memory disk for tests that injects the failures a
//! real disk produces, deterministically from a seed.
//!
//! It keeps, per file, what a reader sees now and what would survive a
//! power cut (the contents at the last `fdatasync`, plus the writes since).
//! Faults: EIO or ENOSPC on chosen writes, reads or syncs; a byte budget
//! after which writes fail with ENOSPC; and [`SimStorage::power_cut`],
//! which drops, keeps or tears (keeps a prefix cut at an arbitrary byte)
//! each write that was not yet synced. It also enforces the O_DIRECT
//! contract (aligned positions and lengths) so a misaligned write in the
//! engine fails here the way it would on a real device.
//!
//! Directory operations (create, rename, remove) are durable at once, as
//! on a journaling file system after `sync_dir`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::{OpenMode, Storage, StorageFile};

/// The O_DIRECT alignment the simulated device demands.
pub const SIM_ALIGNMENT: usize = 4096;

/// Which operation a [`Fault`] hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOp {
    Write,
    Read,
    Fsync,
}

/// An injected failure: the `skip`+1-th .. `skip`+`times`-th operations of
/// kind `op` on files whose path contains `path_contains` fail with `errno`.
/// With `torn_bytes = Some(n)` a failing write still stores its first `n`
/// bytes (a torn write that reports EIO).
#[derive(Debug, Clone)]
pub struct Fault {
    pub op: FaultOp,
    pub path_contains: String,
    pub errno: i32,
    pub skip: u32,
    pub times: u32,
    pub torn_bytes: Option<usize>,
}

impl Fault {
    pub fn new(op: FaultOp, path_contains: &str, errno: i32) -> Self {
        Self { op, path_contains: path_contains.to_string(), errno, skip: 0, times: 1, torn_bytes: None }
    }
}

#[derive(Debug, Clone)]
enum PendingOp {
    Write { pos: u64, data: Vec<u8> },
    Truncate { len: u64 },
}

#[derive(Debug, Default)]
struct FileData {
    contents: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<PendingOp>,
    /// Bytes of the successful writes to this file, rewrites included.
    bytes_written: u64,
}

#[derive(Debug, Default)]
struct Disk {
    files: BTreeMap<PathBuf, Rc<RefCell<FileData>>>,
    dirs: BTreeMap<PathBuf, ()>,
    faults: Vec<Fault>,
    write_budget_bytes: Option<u64>,
    rng: u64,
    writes: u64,
    syncs: u64,
    /// fdatasync of files whose path contains this waits (`hold_fsyncs`).
    fsync_hold: Option<String>,
    /// A write to a file whose path contains this, covering this position,
    /// waits (`hold_writes_covering`).
    write_hold: Option<WriteHold>,
    /// Operations waiting on either hold; each checks its hold again when
    /// woken, so a release wakes them all.
    held_waiters: Vec<std::task::Waker>,
}

#[derive(Debug)]
struct WriteHold {
    path_contains: String,
    position: u64,
}

impl Disk {
    fn next_random(&mut self) -> u64 {
        // splitmix64: deterministic for a given seed.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Returns `Some(fault)` if this operation must fail.
    fn take_fault(&mut self, op: FaultOp, path: &Path) -> Option<Fault> {
        let text = path.to_string_lossy();
        for fault in self.faults.iter_mut() {
            if fault.op != op || fault.times == 0 || !text.contains(&fault.path_contains) {
                continue;
            }
            if fault.skip > 0 {
                fault.skip -= 1;
                continue;
            }
            fault.times -= 1;
            return Some(fault.clone());
        }
        None
    }
}

fn apply(target: &mut Vec<u8>, op: &PendingOp) {
    match op {
        PendingOp::Write { pos, data } => {
            let end = *pos as usize + data.len();
            if target.len() < end {
                target.resize(end, 0);
            }
            target[*pos as usize..end].copy_from_slice(data);
        }
        PendingOp::Truncate { len } => target.resize(*len as usize, 0),
    }
}

/// An in-memory, fault-injecting disk. Clones share the same disk, so a
/// test keeps one clone to inject faults into the engine using the other.
#[derive(Debug, Clone, Default)]
pub struct SimStorage {
    disk: Rc<RefCell<Disk>>,
}

impl SimStorage {
    pub fn new(seed: u64) -> Self {
        let storage = Self::default();
        storage.disk.borrow_mut().rng = seed;
        storage
    }

    /// Adds a fault; faults are matched in the order they were added.
    pub fn inject(&self, fault: Fault) {
        self.disk.borrow_mut().faults.push(fault);
    }

    /// Removes every pending fault and the write budget.
    pub fn clear_faults(&self) {
        let mut disk = self.disk.borrow_mut();
        disk.faults.clear();
        disk.write_budget_bytes = None;
    }

    /// Makes every fdatasync of a file whose path contains `path_contains`
    /// wait until [`SimStorage::release_fsyncs`]: a slow device sync.
    pub fn hold_fsyncs(&self, path_contains: &str) {
        self.disk.borrow_mut().fsync_hold = Some(path_contains.to_string());
    }

    /// Lets held fdatasyncs complete.
    pub fn release_fsyncs(&self) {
        self.release(|disk| disk.fsync_hold = None);
    }

    /// Makes writes to a file whose path contains `path_contains` that cover
    /// `position` wait until [`SimStorage::release_writes`]: one slow write
    /// among others that complete.
    pub fn hold_writes_covering(&self, path_contains: &str, position: u64) {
        self.disk.borrow_mut().write_hold = Some(WriteHold { path_contains: path_contains.to_string(), position });
    }

    /// Lets held writes complete.
    pub fn release_writes(&self) {
        self.release(|disk| disk.write_hold = None);
    }

    /// Lifts a hold and wakes the held operations.
    fn release(&self, lift: impl FnOnce(&mut Disk)) {
        let waiters = {
            let mut disk = self.disk.borrow_mut();
            lift(&mut disk);
            std::mem::take(&mut disk.held_waiters)
        };
        for waker in waiters {
            waker.wake();
        }
    }

    /// After `bytes` more bytes are written, writes fail with ENOSPC.
    pub fn set_write_budget(&self, bytes: u64) {
        self.disk.borrow_mut().write_budget_bytes = Some(bytes);
    }

    /// Simulates losing power: every file is reset to its synced contents
    /// plus, for each later write in order, either all of it, none of it, or
    /// a prefix cut at a random byte (a torn write). Truncates since the last
    /// sync are kept or lost at random too.
    pub fn power_cut(&self) {
        let mut disk = self.disk.borrow_mut();
        let files: Vec<_> = disk.files.values().cloned().collect();
        for file in files {
            let mut file = file.borrow_mut();
            let mut survived = file.durable.clone();
            let pending = std::mem::take(&mut file.pending);
            for op in &pending {
                let choice = disk.next_random() % 3;
                match (op, choice) {
                    (_, 0) => {}
                    (PendingOp::Write { pos, data }, 1) if !data.is_empty() => {
                        let keep = (disk.next_random() % data.len() as u64) as usize;
                        apply(&mut survived, &PendingOp::Write { pos: *pos, data: data[..keep].to_vec() });
                    }
                    (op, _) => apply(&mut survived, op),
                }
            }
            file.contents = survived.clone();
            file.durable = survived;
        }
    }

    /// Simulates a process crash: the device keeps every completed write.
    pub fn crash(&self) {
        let disk = self.disk.borrow();
        for file in disk.files.values() {
            let mut file = file.borrow_mut();
            file.durable = file.contents.clone();
            file.pending.clear();
        }
    }

    /// A copy of what a reader sees in `path` now.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        self.disk.borrow().files.get(path).map(|f| f.borrow().contents.clone())
    }

    /// Bytes written to `path` by successful writes since it was created,
    /// each rewrite of a block counted again.
    pub fn bytes_written(&self, path: &Path) -> u64 {
        self.disk.borrow().files.get(path).map_or(0, |f| f.borrow().bytes_written)
    }

    /// Overwrites bytes of a file in place, durably (media corruption).
    pub fn corrupt(&self, path: &Path, pos: usize, bytes: &[u8]) {
        let disk = self.disk.borrow();
        let mut file = disk.files.get(path).expect("corrupt: no such file").borrow_mut();
        let op = PendingOp::Write { pos: pos as u64, data: bytes.to_vec() };
        apply(&mut file.contents, &op);
        apply(&mut file.durable, &op);
    }

    /// Cuts a file to `len` bytes, durably.
    pub fn cut(&self, path: &Path, len: usize) {
        let disk = self.disk.borrow();
        let mut file = disk.files.get(path).expect("cut: no such file").borrow_mut();
        file.contents.truncate(len);
        file.durable.truncate(len);
    }

    /// Paths of all files, sorted.
    pub fn files(&self) -> Vec<PathBuf> {
        self.disk.borrow().files.keys().cloned().collect()
    }

    /// Number of successful writes and fdatasyncs so far.
    pub fn counters(&self) -> (u64, u64) {
        let disk = self.disk.borrow();
        (disk.writes, disk.syncs)
    }
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

impl Storage for SimStorage {
    type File = SimFile;

    async fn prepare_dir(&self, dir: &Path) -> io::Result<()> {
        self.create_dir_all(dir).await
    }

    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Rc<SimFile>> {
        let mut disk = self.disk.borrow_mut();
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() && !disk.dirs.contains_key(parent) {
                return Err(errno(libc::ENOENT));
            }
        }
        let data = match (disk.files.get(path).cloned(), mode) {
            (Some(_), OpenMode::CreateNew) => return Err(errno(libc::EEXIST)),
            (Some(data), OpenMode::Existing) => data,
            (Some(data), OpenMode::CreateTruncate) => {
                let mut d = data.borrow_mut();
                d.contents.clear();
                d.pending.push(PendingOp::Truncate { len: 0 });
                drop(d);
                data
            }
            (None, OpenMode::Existing) => return Err(errno(libc::ENOENT)),
            (None, _) => {
                let data = Rc::new(RefCell::new(FileData::default()));
                disk.files.insert(path.to_path_buf(), data.clone());
                data
            }
        };
        Ok(Rc::new(SimFile { disk: self.disk.clone(), path: path.to_path_buf(), data }))
    }

    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        match self.disk.borrow_mut().files.remove(path) {
            Some(_) => Ok(()),
            None => Err(errno(libc::ENOENT)),
        }
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut disk = self.disk.borrow_mut();
        let data = disk.files.remove(from).ok_or_else(|| errno(libc::ENOENT))?;
        disk.files.insert(to.to_path_buf(), data);
        Ok(())
    }

    async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.disk.borrow_mut();
        for ancestor in path.ancestors() {
            if !ancestor.as_os_str().is_empty() {
                disk.dirs.insert(ancestor.to_path_buf(), ());
            }
        }
        Ok(())
    }

    async fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.disk.borrow_mut();
        disk.files.retain(|p, _| !p.starts_with(path));
        disk.dirs.retain(|p, _| !p.starts_with(path));
        Ok(())
    }

    async fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let disk = self.disk.borrow();
        if !disk.dirs.contains_key(path) {
            return Err(errno(libc::ENOENT));
        }
        let files = disk.files.keys().filter(|p| p.parent() == Some(path)).cloned();
        let dirs = disk.dirs.keys().filter(|p| p.parent() == Some(path)).cloned();
        Ok(files.chain(dirs).collect())
    }

    async fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }

    async fn exists(&self, path: &Path) -> bool {
        let disk = self.disk.borrow();
        disk.files.contains_key(path) || disk.dirs.contains_key(path)
    }
}

/// An open simulated file.
#[derive(Debug)]
pub struct SimFile {
    disk: Rc<RefCell<Disk>>,
    path: PathBuf,
    data: Rc<RefCell<FileData>>,
}

/// Bytes read from a [`SimFile`]: a shared, sliceable buffer.
#[derive(Debug, Clone)]
pub struct SimReadBuf {
    bytes: Rc<Vec<u8>>,
    start: usize,
    len: usize,
}

impl Deref for SimReadBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[self.start..self.start + self.len]
    }
}

fn check_aligned(pos: u64, len: usize) -> io::Result<()> {
    if !pos.is_multiple_of(SIM_ALIGNMENT as u64) || !len.is_multiple_of(SIM_ALIGNMENT) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("misaligned O_DIRECT access: pos {pos} len {len}"),
        ));
    }
    Ok(())
}

impl StorageFile for SimFile {
    type WriteBuf = Vec<u8>;
    type ReadBuf = SimReadBuf;

    fn alignment(&self) -> usize {
        SIM_ALIGNMENT
    }

    fn alloc_write_buf(&self, len: usize) -> Vec<u8> {
        vec![0; len]
    }

    fn alloc_write_buf_for_overwrite(&self, len: usize) -> Vec<u8> {
        // Garbage rather than zeros, so a test sees any byte the caller
        // forgot to overwrite.
        vec![0xa5; len]
    }

    async fn write_at_reusing(&self, buf: Vec<u8>, pos: u64) -> (io::Result<()>, Option<Vec<u8>>) {
        let len = buf.len();
        let result = self.write_at(buf, pos).await;
        // The simulated disk keeps the written bytes; hand back a buffer of
        // the same length with stale contents, as a reused DMA buffer has.
        (result, Some(vec![0x5a; len]))
    }

    async fn write_at(&self, buf: Vec<u8>, pos: u64) -> io::Result<()> {
        check_aligned(pos, buf.len())?;
        std::future::poll_fn(|cx| {
            let mut disk = self.disk.borrow_mut();
            let held = disk.write_hold.as_ref().is_some_and(|hold| {
                (pos..pos + buf.len() as u64).contains(&hold.position)
                    && self.path.to_string_lossy().contains(hold.path_contains.as_str())
            });
            if held {
                disk.held_waiters.push(cx.waker().clone());
                return std::task::Poll::Pending;
            }
            std::task::Poll::Ready(())
        })
        .await;
        let mut disk = self.disk.borrow_mut();
        let mut data = self.data.borrow_mut();
        if let Some(fault) = disk.take_fault(FaultOp::Write, &self.path) {
            if let Some(keep) = fault.torn_bytes {
                let op = PendingOp::Write { pos, data: buf[..keep.min(buf.len())].to_vec() };
                apply(&mut data.contents, &op);
                data.pending.push(op);
            }
            return Err(errno(fault.errno));
        }
        if let Some(budget) = disk.write_budget_bytes {
            if budget < buf.len() as u64 {
                return Err(errno(libc::ENOSPC));
            }
            disk.write_budget_bytes = Some(budget - buf.len() as u64);
        }
        disk.writes += 1;
        data.bytes_written += buf.len() as u64;
        let op = PendingOp::Write { pos, data: buf };
        apply(&mut data.contents, &op);
        data.pending.push(op);
        Ok(())
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<SimReadBuf> {
        check_aligned(pos, len)?;
        if let Some(fault) = self.disk.borrow_mut().take_fault(FaultOp::Read, &self.path) {
            return Err(errno(fault.errno));
        }
        let data = self.data.borrow();
        let start = (pos as usize).min(data.contents.len());
        let end = (pos as usize + len).min(data.contents.len());
        let bytes = Rc::new(data.contents[start..end].to_vec());
        Ok(SimReadBuf { len: bytes.len(), bytes, start: 0 })
    }

    fn slice(buf: &SimReadBuf, offset: usize, len: usize) -> SimReadBuf {
        assert!(offset + len <= buf.len, "slice past the end of a read buffer");
        SimReadBuf { bytes: buf.bytes.clone(), start: buf.start + offset, len }
    }

    async fn fdatasync(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| {
            let mut disk = self.disk.borrow_mut();
            match &disk.fsync_hold {
                Some(held) if self.path.to_string_lossy().contains(held.as_str()) => {
                    disk.held_waiters.push(cx.waker().clone());
                    std::task::Poll::Pending
                }
                _ => std::task::Poll::Ready(()),
            }
        })
        .await;
        let mut disk = self.disk.borrow_mut();
        if let Some(fault) = disk.take_fault(FaultOp::Fsync, &self.path) {
            return Err(errno(fault.errno));
        }
        disk.syncs += 1;
        let mut data = self.data.borrow_mut();
        data.durable = data.contents.clone();
        data.pending.clear();
        Ok(())
    }

    async fn preallocate(&self, len: u64, grow_size: bool) -> io::Result<()> {
        let mut data = self.data.borrow_mut();
        if grow_size && (data.contents.len() as u64) < len {
            let op = PendingOp::Truncate { len };
            apply(&mut data.contents, &op);
            data.pending.push(op);
        }
        Ok(())
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        let mut data = self.data.borrow_mut();
        let op = PendingOp::Truncate { len };
        apply(&mut data.contents, &op);
        data.pending.push(op);
        Ok(())
    }

    async fn size(&self) -> io::Result<u64> {
        Ok(self.data.borrow().contents.len() as u64)
    }

    async fn close(self: Rc<Self>) -> io::Result<()> {
        Ok(())
    }
}
