//! The engine's io seam: everything the log does to a disk goes through
//! [`Storage`] and [`StorageFile`].
//!
//! Two implementations exist: [`dma::DmaStorage`] (glommio DMA files:
//! O_DIRECT through io_uring, used by the broker) and [`sim::SimStorage`]
//! (an in-memory disk that injects torn writes, EIO, ENOSPC and power cuts
//! for tests). Keeping glommio behind this seam means a move to another
//! io_uring runtime stays local to `dma.rs`.
//!
//! The contract is O_DIRECT's: `write_at` positions and lengths are
//! multiples of [`StorageFile::alignment`], and so are `read_at` positions
//! and lengths. Everything runs on one shard; nothing here is `Send`.

pub mod dma;
pub mod sim;

use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// How [`Storage::open`] treats a missing or present file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Open an existing file for reading and writing; fail if missing.
    Existing,
    /// Create the file, failing if it exists.
    CreateNew,
    /// Create the file, truncating it if it exists.
    CreateTruncate,
}

/// A file system of files written and read with the O_DIRECT contract.
#[allow(async_fn_in_trait)]
pub trait Storage: Clone + 'static {
    type File: StorageFile;

    /// Must be called once per data directory before any other file there is
    /// opened (see [`dma::DmaStorage`] for why glommio needs it).
    async fn prepare_dir(&self, dir: &Path) -> io::Result<()>;
    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Rc<Self::File>>;
    async fn remove_file(&self, path: &Path) -> io::Result<()>;
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    async fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    async fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Entries of a directory (files and directories), full paths, unsorted.
    async fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
    /// Makes directory entry changes (creates, renames, removes) durable.
    async fn sync_dir(&self, path: &Path) -> io::Result<()>;
    async fn exists(&self, path: &Path) -> bool;
}

/// One open file. Shared between the shard's flusher and readers through `Rc`.
#[allow(async_fn_in_trait)]
pub trait StorageFile: 'static {
    /// An aligned buffer handed to `write_at`.
    type WriteBuf: AsRef<[u8]> + AsMut<[u8]>;
    /// Bytes returned by `read_at`, cheap to clone and to slice.
    type ReadBuf: Deref<Target = [u8]> + Clone;

    /// Required alignment of positions and lengths, a power of two.
    fn alignment(&self) -> usize;
    /// A zeroed buffer of `len` bytes (a multiple of the alignment) suited to `write_at`.
    fn alloc_write_buf(&self, len: usize) -> Self::WriteBuf;
    /// A buffer of `len` bytes (a multiple of the alignment) suited to
    /// `write_at` whose contents are unspecified: for a caller that
    /// overwrites every byte, so nothing is zero-filled only to be
    /// overwritten by the copy that follows.
    fn alloc_write_buf_for_overwrite(&self, len: usize) -> Self::WriteBuf {
        self.alloc_write_buf(len)
    }
    /// Writes all of `buf` at `pos`. A short write is an error.
    async fn write_at(&self, buf: Self::WriteBuf, pos: u64) -> io::Result<()>;
    /// Like `write_at`, and hands the buffer back once the device is done
    /// with it (when it can), so the caller can reuse it for the next write
    /// instead of allocating (and faulting in) a fresh one.
    async fn write_at_reusing(&self, buf: Self::WriteBuf, pos: u64) -> (io::Result<()>, Option<Self::WriteBuf>) {
        (self.write_at(buf, pos).await, None)
    }
    /// Reads up to `len` bytes at `pos`; shorter at end of file.
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Self::ReadBuf>;
    /// A sub-slice of a read buffer without copying.
    fn slice(buf: &Self::ReadBuf, offset: usize, len: usize) -> Self::ReadBuf;
    async fn fdatasync(&self) -> io::Result<()>;
    /// Reserves blocks for the first `len` bytes. With `grow_size` the file
    /// also grows to `len` bytes if it is shorter (never shrinks; the new
    /// bytes read as zeros), so later writes below `len` do not extend it;
    /// without, the size stays (`FALLOC_FL_KEEP_SIZE`).
    async fn preallocate(&self, len: u64, grow_size: bool) -> io::Result<()>;
    async fn truncate(&self, len: u64) -> io::Result<()>;
    async fn size(&self) -> io::Result<u64>;
    async fn close(self: Rc<Self>) -> io::Result<()>;
}

/// Rounds `value` down to a multiple of `alignment` (a power of two).
pub fn align_down(value: u64, alignment: usize) -> u64 {
    debug_assert!(alignment.is_power_of_two());
    value & !(alignment as u64 - 1)
}

/// Rounds `value` up to a multiple of `alignment` (a power of two).
pub fn align_up(value: u64, alignment: usize) -> u64 {
    align_down(value + alignment as u64 - 1, alignment)
}

/// Writes a small file whole at `path` and fdatasyncs it (no rename: for
/// files that are temporary by name, and the first step of
/// [`write_file_atomic`]).
pub async fn write_file_synced<S: Storage>(storage: &S, path: &Path, contents: &[u8]) -> io::Result<()> {
    let file = storage.open(path, OpenMode::CreateTruncate).await?;
    let padded = align_up(contents.len() as u64, file.alignment()) as usize;
    if padded > 0 {
        let mut buf = file.alloc_write_buf(padded);
        buf.as_mut()[..contents.len()].copy_from_slice(contents);
        file.write_at(buf, 0).await?;
    }
    file.truncate(contents.len() as u64).await?;
    file.fdatasync().await?;
    file.close().await
}

/// Writes a small file whole and durably: to `<path>.tmp`, fdatasync,
/// rename over `path`, sync the directory. Used for indexes and checkpoints.
pub async fn write_file_atomic<S: Storage>(storage: &S, path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(match path.extension() {
        Some(ext) => format!("{}.tmp", ext.to_string_lossy()),
        None => "tmp".to_string(),
    });
    write_file_synced(storage, &tmp, contents).await?;
    storage.rename(&tmp, path).await?;
    if let Some(parent) = path.parent() {
        storage.sync_dir(parent).await?;
    }
    Ok(())
}

/// Reads a whole small file into memory.
pub async fn read_file<S: Storage>(storage: &S, path: &Path) -> io::Result<Vec<u8>> {
    let file = storage.open(path, OpenMode::Existing).await?;
    let size = file.size().await? as usize;
    let alignment = file.alignment();
    let mut out = Vec::with_capacity(size);
    let chunk = 1 << 20;
    let mut pos = 0usize;
    while pos < size {
        let want = align_up((size - pos).min(chunk) as u64, alignment) as usize;
        let buf = file.read_at(pos as u64, want).await?;
        if buf.is_empty() {
            break;
        }
        let take = buf.len().min(size - pos);
        out.extend_from_slice(&buf[..take]);
        pos += take;
    }
    file.close().await?;
    Ok(out)
}
