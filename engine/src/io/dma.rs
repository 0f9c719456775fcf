//! [`Storage`] over glommio DMA files: O_DIRECT reads and writes submitted
//! through the shard's io_uring.
//!
//! Runs on the shard that opened the file. Buffers come from glommio's
//! registered `io_memory` while it lasts and from the heap after that, so
//! a small `io_memory` (the memlock limit here is 8 MiB) costs only the
//! fixed-buffer fast path, never correctness.
//!
//! glommio decides once per block device whether it can use polled I/O,
//! by reading the first DMA file opened on that device. If that file is
//! empty the probe misreads the device and every later DMA read fails with
//! EOPNOTSUPP (an upstream bug). [`DmaStorage::prepare_dir`] therefore
//! writes and opens a non-empty probe file in each data directory before
//! anything else is opened there.

use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions, ReadResult};

use super::{OpenMode, Storage, StorageFile};

/// Name of the probe file [`DmaStorage::prepare_dir`] keeps in a data directory.
pub const DEVICE_PROBE_FILE: &str = ".pinion-device-probe";
const DEVICE_PROBE_BYTES: usize = 4096;

/// Creates the non-empty probe file in `dir` if it is missing, atomically
/// (temp file and rename), so that several shards starting at once never
/// see it empty. Returns its path.
pub fn ensure_probe_file(dir: &Path) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(DEVICE_PROBE_FILE);
    let complete = std::fs::metadata(&probe).map(|m| m.len() >= DEVICE_PROBE_BYTES as u64).unwrap_or(false);
    if !complete {
        // A plain buffered write: this file must be non-empty before
        // glommio sees any DMA file on the device.
        let tmp = dir.join(format!("{DEVICE_PROBE_FILE}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, vec![0x70u8; DEVICE_PROBE_BYTES])?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &probe)?;
    }
    Ok(probe)
}

/// glommio DMA files. Cheap to clone; holds no state.
#[derive(Debug, Clone, Default)]
pub struct DmaStorage;

fn into_io(err: glommio::GlommioError<()>) -> io::Error {
    match err {
        glommio::GlommioError::IoError(e) => e,
        glommio::GlommioError::EnhancedIoError { source, op, path, .. } => io::Error::new(
            source.kind(),
            format!("{op} {}: {source}", path.map(|p| p.display().to_string()).unwrap_or_default()),
        ),
        other => io::Error::other(other.to_string()),
    }
}

impl Storage for DmaStorage {
    type File = DmaSegmentFile;

    async fn prepare_dir(&self, dir: &Path) -> io::Result<()> {
        let probe = ensure_probe_file(dir)?;
        let file = OpenOptions::new().read(true).dma_open(&probe).await.map_err(into_io)?;
        let read = file.read_at_aligned(0, DEVICE_PROBE_BYTES).await.map_err(into_io);
        file.close().await.map_err(into_io)?;
        read.map(|_| ())
    }

    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Rc<DmaSegmentFile>> {
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        match mode {
            OpenMode::Existing => {}
            OpenMode::CreateNew => {
                options.create_new(true);
            }
            OpenMode::CreateTruncate => {
                options.create(true).truncate(true);
            }
        }
        let file = options.dma_open(path).await.map_err(into_io)?;
        Ok(Rc::new(DmaSegmentFile { file: Rc::new(file) }))
    }

    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        glommio::io::remove(path).await.map_err(into_io)
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        glommio::io::rename(from, to).await.map_err(into_io)
    }

    async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    async fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    async fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(path)?.map(|entry| entry.map(|e| e.path())).collect()
    }

    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        // A directory fsync waits for a journal commit (tens of ms behind
        // discards of deleted files): on glommio's blocking thread, so
        // the shard goes on serving meanwhile.
        let path = path.to_path_buf();
        glommio::executor().spawn_blocking(move || std::fs::File::open(path)?.sync_all()).await
    }

    async fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

/// A glommio [`DmaFile`] seen through the seam.
#[derive(Debug)]
pub struct DmaSegmentFile {
    file: Rc<DmaFile>,
}

/// An aligned write buffer. Shared with the reactor only while a write of
/// it is in flight (`write_rc_at`), so it can be taken back afterwards.
#[derive(Debug)]
pub struct DmaWriteBuf(Rc<DmaBuffer>);

impl AsRef<[u8]> for DmaWriteBuf {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl AsMut<[u8]> for DmaWriteBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        Rc::get_mut(&mut self.0).expect("a write buffer is not shared outside a write").as_bytes_mut()
    }
}

impl StorageFile for DmaSegmentFile {
    type WriteBuf = DmaWriteBuf;
    type ReadBuf = ReadResult;

    fn alignment(&self) -> usize {
        // O_DIRECT on ext4/xfs needs the logical block size (512 here); we
        // keep 4096 so that one block never straddles a page.
        (self.file.alignment() as usize).max(4096)
    }

    fn alloc_write_buf(&self, len: usize) -> DmaWriteBuf {
        let mut buf = self.file.alloc_dma_buffer(len);
        buf.as_bytes_mut().fill(0);
        DmaWriteBuf(Rc::new(buf))
    }

    fn alloc_write_buf_for_overwrite(&self, len: usize) -> DmaWriteBuf {
        DmaWriteBuf(Rc::new(self.file.alloc_dma_buffer(len)))
    }

    async fn write_at(&self, buf: DmaWriteBuf, pos: u64) -> io::Result<()> {
        self.write_at_reusing(buf, pos).await.0
    }

    async fn write_at_reusing(&self, buf: DmaWriteBuf, pos: u64) -> (io::Result<()>, Option<DmaWriteBuf>) {
        let len = buf.0.len();
        let shared = buf.0.clone();
        let result = self.file.write_rc_at(buf.0, pos).await.map_err(into_io);
        // The reactor drops its reference when the write completes.
        let reusable = (Rc::strong_count(&shared) == 1).then_some(DmaWriteBuf(shared));
        let result = match result {
            Ok(written) if written != len => Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short O_DIRECT write: {written} of {len} bytes at {pos}"),
            )),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        (result, reusable)
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<ReadResult> {
        self.file.read_at_aligned(pos, len).await.map_err(into_io)
    }

    fn slice(buf: &ReadResult, offset: usize, len: usize) -> ReadResult {
        ReadResult::slice(buf, offset, len).expect("slice within a read buffer")
    }

    async fn fdatasync(&self) -> io::Result<()> {
        self.file.fdatasync().await.map_err(into_io)
    }

    async fn preallocate(&self, len: u64, grow_size: bool) -> io::Result<()> {
        self.file.pre_allocate(len, !grow_size).await.map_err(into_io)
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.truncate(len).await.map_err(into_io)
    }

    async fn size(&self) -> io::Result<u64> {
        // By descriptor: glommio's `file_size` stats the path the file was
        // opened with, which a recycled segment file no longer has after
        // its renames (the size query failed, so the second reuse of a
        // file fell back to unlinking a whole segment).
        let fd = std::os::fd::AsRawFd::as_raw_fd(&*self.file);
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `fd` is this open file's descriptor, alive while `self`
        // is; fstat writes a whole `stat` into the buffer when it returns 0.
        let rc = unsafe { libc::fstat(fd, stat.as_mut_ptr()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fstat returned 0, so it initialised `stat`.
        let stat = unsafe { stat.assume_init() };
        u64::try_from(stat.st_size).map_err(|_| io::Error::other("negative file size"))
    }

    async fn close(self: Rc<Self>) -> io::Result<()> {
        match Rc::try_unwrap(self) {
            Ok(this) => this.file.close_rc().await.map(|_| ()).map_err(into_io),
            // Still shared (a reader holds it): the last drop closes the fd.
            Err(_) => Ok(()),
        }
    }
}
