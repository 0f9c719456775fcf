//! The measuring loop: O_DIRECT reads and writes through a private
//! io_uring on the calling thread, against a preallocated file whose name
//! is removed as soon as it is opened.
//!
//! A run keeps `queue_depth` requests of `block_bytes` in flight at
//! consecutive offsets, wrapping inside a region of the file, until its
//! time (or byte budget) is spent, then waits for every request still in
//! flight. Buffers are 4 KiB aligned and written with a random pattern so
//! zero detection cannot skip the work. The ring never outlives a run, and
//! no buffer is freed while the kernel may still use it: on an error that
//! leaves requests unreaped the buffers are leaked instead.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use io_uring::{opcode, types, IoUring};

use crate::aligned::{AlignedBuffer, DIRECT_IO_ALIGN};

/// The largest block a run accepts (and the largest queue depth), so a
/// caller's mistake cannot allocate without bound.
pub(crate) const BLOCK_BYTES_MAX: usize = 64 << 20;
pub(crate) const QUEUE_DEPTH_MAX: usize = 256;

/// How a scratch file's space is reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Preallocation {
    /// The file has its full size at once: writes fill reserved space and
    /// never change the size (the device's bandwidth, without metadata).
    SetSize,
    /// `FALLOC_FL_KEEP_SIZE`: space is reserved but every append extends
    /// the size, as the engine's preallocated segments do, so a sync after
    /// an append commits the new size too.
    KeepSize,
}

/// A scratch file for measurements, opened O_DIRECT and already unlinked.
#[derive(Debug)]
pub(crate) struct TestFile {
    file: File,
    size_bytes: u64,
    /// Bytes from offset 0 that hold written data. Reads stay below this:
    /// reading preallocated but unwritten extents returns zeros without
    /// touching the device, which would measure nothing.
    pub(crate) written_bytes: u64,
}

impl TestFile {
    /// Creates, unlinks and preallocates a `size_bytes` file in `dir`.
    pub(crate) fn create(dir: &Path, size_bytes: u64, preallocation: Preallocation) -> io::Result<Self> {
        assert!(size_bytes > 0 && size_bytes & (DIRECT_IO_ALIGN as u64 - 1) == 0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let path = dir.join(format!(".pinion-iotune-{}-{nanos}.tmp", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
            .map_err(|e| with_context(e, format!("open {} with O_DIRECT", path.display())))?;
        // The descriptor keeps the inode alive; with the name gone nothing
        // is left behind, however the process ends.
        std::fs::remove_file(&path)?;
        let mode = match preallocation {
            Preallocation::SetSize => 0,
            Preallocation::KeepSize => libc::FALLOC_FL_KEEP_SIZE,
        };
        // SAFETY: fallocate on a descriptor we own; no memory is involved.
        let result = unsafe { libc::fallocate(file.as_raw_fd(), mode, 0, size_bytes as libc::off_t) };
        if result != 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EOPNOTSUPP) {
                return Err(with_context(error, format!("preallocate {size_bytes} bytes")));
            }
            if preallocation == Preallocation::SetSize {
                file.set_len(size_bytes)?;
            }
        }
        Ok(Self { file, size_bytes, written_bytes: 0 })
    }

    pub(crate) fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
}

/// Wraps an I/O error with what was being done, keeping its kind and
/// its cause.
pub(crate) fn with_context(error: io::Error, what: String) -> io::Error {
    io::Error::new(error.kind(), Context { what, source: error })
}

#[derive(Debug)]
struct Context {
    what: String,
    source: io::Error,
}

impl std::fmt::Display for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl std::error::Error for Context {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Write,
    Read,
}

/// One sequential run's shape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    pub(crate) direction: Direction,
    pub(crate) block_bytes: usize,
    pub(crate) queue_depth: usize,
    /// Offsets cycle through `[0, region_bytes)`.
    pub(crate) region_bytes: u64,
    pub(crate) start_offset: u64,
    pub(crate) duration: Duration,
    /// Stop submitting after this many bytes.
    pub(crate) bytes_max: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct RunResult {
    pub(crate) bytes: u64,
    pub(crate) operations: u64,
    pub(crate) elapsed: Duration,
    /// Where the next sequential run should continue.
    pub(crate) next_offset: u64,
}

pub(crate) fn validate(block_bytes: usize, queue_depth: usize) -> io::Result<()> {
    if block_bytes == 0 || block_bytes & (DIRECT_IO_ALIGN - 1) != 0 || block_bytes > BLOCK_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("block size {block_bytes} must be a multiple of {DIRECT_IO_ALIGN} up to {BLOCK_BYTES_MAX}"),
        ));
    }
    if queue_depth == 0 || queue_depth > QUEUE_DEPTH_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("queue depth {queue_depth} must be 1 to {QUEUE_DEPTH_MAX}"),
        ));
    }
    Ok(())
}

fn new_ring(entries: usize) -> io::Result<IoUring> {
    let entries = entries.next_power_of_two().max(4) as u32;
    IoUring::new(entries).map_err(|e| with_context(e, "io_uring_setup".to_string()))
}

/// Submits what is queued and waits for one completion, retrying when a
/// signal interrupts the wait.
fn submit_and_wait(ring: &IoUring) -> io::Result<()> {
    loop {
        match ring.submit_and_wait(1) {
            Ok(_) => return Ok(()),
            Err(error) if error.raw_os_error() == Some(libc::EINTR) => continue,
            Err(error) => return Err(with_context(error, "io_uring_enter".to_string())),
        }
    }
}

/// Runs one sequential read or write measurement on `file`.
pub(crate) fn run_sequential(file: &mut TestFile, run: Run) -> io::Result<RunResult> {
    validate(run.block_bytes, run.queue_depth)?;
    let block = run.block_bytes as u64;
    let region = (run.region_bytes.min(file.size_bytes) / block) * block;
    assert!(region >= block, "region {region} smaller than one block {block}");
    let mut ring = new_ring(run.queue_depth)?;
    let fd = types::Fd(file.file.as_raw_fd());

    let mut buffers: Vec<AlignedBuffer> = (0..run.queue_depth)
        .map(|slot| match run.direction {
            Direction::Write => AlignedBuffer::patterned(run.block_bytes, 0x9e37_79b9 + slot as u64),
            Direction::Read => AlignedBuffer::zeroed(run.block_bytes),
        })
        .collect();
    let mut slot_offsets = vec![0u64; run.queue_depth];
    let mut free_slots: Vec<usize> = (0..run.queue_depth).rev().collect();
    let mut in_flight = 0usize;
    let mut offset = (run.start_offset / block) * block % region;
    let mut submitted_bytes = 0u64;
    let mut first_error: Option<io::Error> = None;
    let (mut bytes, mut operations) = (0u64, 0u64);

    let start = Instant::now();
    let deadline = start + run.duration;
    let mut last_completion = start;
    loop {
        let budget_left = run.bytes_max.is_none_or(|max| submitted_bytes < max);
        if first_error.is_none() && budget_left && Instant::now() < deadline {
            while let Some(slot) = free_slots.pop() {
                let length = run.block_bytes as u32;
                let entry = match run.direction {
                    Direction::Write => opcode::Write::new(fd, buffers[slot].as_ptr(), length).offset(offset).build(),
                    Direction::Read => opcode::Read::new(fd, buffers[slot].as_mut_ptr(), length).offset(offset).build(),
                }
                .user_data(slot as u64);
                // SAFETY: the entry points into `buffers[slot]`, which is
                // not touched again until its completion is reaped, and no
                // buffer is freed while requests are in flight (they are
                // drained below, or the buffers leaked).
                unsafe { ring.submission().push(&entry) }.expect("the ring has an entry for every slot");
                slot_offsets[slot] = offset;
                in_flight += 1;
                submitted_bytes += block;
                offset += block;
                if offset >= region {
                    offset = 0;
                }
                if run.bytes_max.is_some_and(|max| submitted_bytes >= max) {
                    break;
                }
            }
        }
        if in_flight == 0 {
            break;
        }
        if let Err(error) = submit_and_wait(&ring) {
            // Requests may still be in flight: the kernel may write into
            // these buffers after we return, so they must never be freed.
            std::mem::forget(buffers);
            return Err(error);
        }
        for completion in ring.completion() {
            let slot = completion.user_data() as usize;
            let result = completion.result();
            in_flight -= 1;
            free_slots.push(slot);
            if result < 0 {
                first_error.get_or_insert(io::Error::from_raw_os_error(-result));
            } else if result as u64 != block {
                first_error.get_or_insert(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("short {:?}: {result} of {block} bytes at offset {}", run.direction, slot_offsets[slot]),
                ));
            } else {
                bytes += block;
                operations += 1;
                if run.direction == Direction::Write {
                    file.written_bytes = file.written_bytes.max(slot_offsets[slot] + block);
                }
            }
        }
        last_completion = Instant::now();
    }
    if let Some(error) = first_error {
        let what =
            format!("O_DIRECT {:?} of {} bytes at queue depth {}", run.direction, run.block_bytes, run.queue_depth);
        return Err(with_context(error, what));
    }
    Ok(RunResult { bytes, operations, elapsed: last_completion - start, next_offset: offset })
}

/// Appends 4 KiB blocks to `file` with O_DIRECT and times the fdatasync
/// after each, through io_uring's FSYNC with the DATASYNC flag, until
/// `duration` or `samples_max`. On a [`Preallocation::KeepSize`] file each
/// sync commits a fresh extent and a new file size, as the broker's
/// acks=all does on its preallocated segments.
pub(crate) fn fdatasync_latencies(
    file: &mut TestFile,
    duration: Duration,
    samples_max: usize,
) -> io::Result<Vec<Duration>> {
    let block = DIRECT_IO_ALIGN as u64;
    let mut ring = new_ring(2)?;
    let fd = types::Fd(file.file.as_raw_fd());
    let buffer = AlignedBuffer::patterned(DIRECT_IO_ALIGN, 0xfd);
    let mut latencies = Vec::new();
    let deadline = Instant::now() + duration;
    let mut offset = 0u64;
    while latencies.len() < samples_max && offset + block <= file.size_bytes && Instant::now() < deadline {
        let write = opcode::Write::new(fd, buffer.as_ptr(), block as u32).offset(offset).build().user_data(0);
        // SAFETY: `buffer` outlives the request, which is reaped below
        // before the next iteration (or the buffer leaked on error).
        unsafe { ring.submission().push(&write) }.expect("the ring has room");
        if let Err(error) = wait_one(&mut ring, block) {
            std::mem::forget(buffer);
            return Err(error);
        }
        file.written_bytes = file.written_bytes.max(offset + block);
        let sync = opcode::Fsync::new(fd).flags(types::FsyncFlags::DATASYNC).build().user_data(1);
        let started = Instant::now();
        // SAFETY: an fsync references no memory.
        unsafe { ring.submission().push(&sync) }.expect("the ring has room");
        wait_one(&mut ring, 0)?;
        latencies.push(started.elapsed());
        offset += block;
    }
    Ok(latencies)
}

/// Submits, waits for the single completion and checks its result.
fn wait_one(ring: &mut IoUring, expected: u64) -> io::Result<()> {
    submit_and_wait(ring)?;
    let completion = ring.completion().next().ok_or_else(|| io::Error::other("io_uring returned no completion"))?;
    match completion.result() {
        result if result < 0 => Err(io::Error::from_raw_os_error(-result)),
        result if result as u64 != expected => {
            Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("short write: {result} of {expected} bytes")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_then_reads_only_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = TestFile::create(dir.path(), 8 << 20, Preallocation::SetSize).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "name removed at once");
        let write = Run {
            direction: Direction::Write,
            block_bytes: 64 << 10,
            queue_depth: 4,
            region_bytes: file.size_bytes(),
            start_offset: 0,
            duration: Duration::from_secs(5),
            bytes_max: Some(2 << 20),
        };
        let result = run_sequential(&mut file, write).unwrap();
        assert_eq!(result.bytes, 2 << 20);
        assert_eq!(result.operations, 32);
        assert_eq!(result.next_offset, 2 << 20);
        assert_eq!(file.written_bytes, 2 << 20);
        let read =
            Run { direction: Direction::Read, region_bytes: file.written_bytes, bytes_max: Some(4 << 20), ..write };
        let result = run_sequential(&mut file, read).unwrap();
        // Two passes over the written 2 MiB, wrapping at its end.
        assert_eq!(result.bytes, 4 << 20);
        assert_eq!(result.next_offset, 0);
    }

    #[test]
    fn fdatasync_latencies_are_bounded_by_count() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = TestFile::create(dir.path(), 1 << 20, Preallocation::KeepSize).unwrap();
        let latencies = fdatasync_latencies(&mut file, Duration::from_secs(5), 8).unwrap();
        assert_eq!(latencies.len(), 8);
        assert!(latencies.iter().all(|l| *l > Duration::ZERO));
    }

    #[test]
    fn rejects_unaligned_blocks_and_silly_depths() {
        assert!(validate(4096, 1).is_ok());
        assert!(validate(1000, 1).is_err());
        assert!(validate(4096, 0).is_err());
        assert!(validate(4096, 10_000).is_err());
        assert!(validate(BLOCK_BYTES_MAX * 2, 1).is_err());
    }
}
