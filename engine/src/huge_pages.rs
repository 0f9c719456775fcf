//! Transparent huge pages for the O_DIRECT I/O buffers, and only for them.
//!
//! On 4 KiB pages a 1 MiB O_DIRECT buffer is 256 scattered pages, and the
//! virtio disk here takes at most 254 segments per request: reads from the
//! disk ran 15–80 % slower and the raw writer spent three to five times the
//! CPU (BENCHMARKS.md, engine "Session 11"). On huge pages for the whole heap,
//! a shard now and then zeroes a fresh 2 MiB page (or waits for the kernel
//! to compact memory for one) in the middle of a request: the end-to-end
//! p99 went from 1.5 to 5.8 ms (session 10).
//!
//! So the heap stays on small pages (mimalloc is built with `no_thp`, so it
//! never asks for huge ones), and [`IoBufferAllocator`] serves the
//! allocations that are O_DIRECT buffers, page-aligned and at least
//! [`IO_BUFFER_MIN_BYTES`] (glommio's `DmaBuffer` asks for 4096-byte
//! alignment), from their own 2 MiB-aligned mappings advised with
//! `MADV_HUGEPAGE`, rounded up to whole huge pages (a 1 MiB write buffer
//! takes one 2 MiB page: the pool of 16 costs 32 MiB per shard). Those
//! buffers are few and reused: the engine pools its write buffers, and
//! every thread keeps the mappings it freed (up to [`CACHED_REGIONS_MAX`] of
//! them and [`CACHED_BYTES_MAX`] bytes) for its next buffer of the same
//! size, so a huge page is faulted in once and then reused, not zeroed per
//! request. The cache is the thread's own: nothing is shared between
//! shards; only the counters of [`io_buffer_stats`], touched when a mapping
//! is made or removed, are process-wide.
//!
//! [`set_transparent_hugepages`] chooses the process-wide part: whether the
//! rest of the process may use huge pages where the host hands them out
//! unasked (`always`).

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// The smallest page-aligned allocation served from huge-page mappings.
/// Smaller ones (glommio's 4 KiB probe and tail buffers) stay on the heap:
/// they would waste most of a 2 MiB page.
pub const IO_BUFFER_MIN_BYTES: usize = 256 << 10;

/// A transparent huge page on x86-64 and aarch64 with 4 KiB base pages.
pub const HUGE_PAGE_BYTES: usize = 2 << 20;

/// Freed mappings each thread keeps for reuse. The engine's pool holds up
/// to 16 write buffers on its own; these cover reads and the pool's churn.
/// When the cache is full, the next free evicts (unmaps) the slots in turn.
pub const CACHED_REGIONS_MAX: usize = 16;

/// Bytes each thread keeps mapped for reuse, at most: a large fetch's read
/// buffer is given back to the kernel rather than held.
pub const CACHED_BYTES_MAX: usize = 64 << 20;

/// O_DIRECT needs the buffer aligned to the device's logical block.
const IO_BUFFER_ALIGN_MIN: usize = 4096;

/// A global allocator that puts O_DIRECT buffers on huge pages and passes
/// every other allocation to `A`:
///
/// ```
/// use pinion_engine::huge_pages::{io_buffer_stats, IoBufferAllocator};
///
/// // The binaries wrap mimalloc; any allocator works.
/// #[global_allocator]
/// static GLOBAL: IoBufferAllocator<std::alloc::System> = IoBufferAllocator::new(std::alloc::System);
///
/// fn main() {
///     let layout = std::alloc::Layout::from_size_align(1 << 20, 4096).unwrap();
///     // SAFETY: a valid layout, released with the same layout.
///     unsafe { std::alloc::dealloc(std::alloc::alloc(layout), layout) };
///     assert_eq!(io_buffer_stats().regions_mapped, 1);
/// }
/// ```
#[derive(Debug)]
pub struct IoBufferAllocator<A> {
    inner: A,
}

impl<A> IoBufferAllocator<A> {
    pub const fn new(inner: A) -> Self {
        Self { inner }
    }
}

/// Whether `layout` is an I/O buffer: the same answer at allocation and at
/// release, which is what keeps the two allocators apart.
fn is_io_buffer(layout: &Layout) -> bool {
    layout.align() >= IO_BUFFER_ALIGN_MIN && layout.align() <= HUGE_PAGE_BYTES && layout.size() >= IO_BUFFER_MIN_BYTES
}

fn region_bytes(size: usize) -> usize {
    size.next_multiple_of(HUGE_PAGE_BYTES)
}

// SAFETY: every pointer handed out is either `inner`'s (for layouts that are
// not I/O buffers, released to `inner` with the same layout) or the start of
// a live, exclusively owned mapping of `region_bytes(layout.size())` bytes,
// aligned to 2 MiB (for I/O buffers, released to a cache or unmapped).
unsafe impl<A: GlobalAlloc> GlobalAlloc for IoBufferAllocator<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_io_buffer(&layout) {
            // SAFETY: the caller's contract, passed on.
            return unsafe { self.inner.alloc(layout) };
        }
        let bytes = region_bytes(layout.size());
        take_cached(bytes).unwrap_or_else(|| map_region(bytes))
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !is_io_buffer(&layout) {
            // SAFETY: the caller's contract, passed on.
            return unsafe { self.inner.alloc_zeroed(layout) };
        }
        let bytes = region_bytes(layout.size());
        match take_cached(bytes) {
            Some(ptr) => {
                // SAFETY: a cached region is ours, mapped and `bytes` long.
                unsafe { std::ptr::write_bytes(ptr, 0, layout.size()) };
                ptr
            }
            // A fresh anonymous mapping reads as zeroes.
            None => map_region(bytes),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !is_io_buffer(&layout) {
            // SAFETY: allocated by `inner` with this layout (see `alloc`).
            return unsafe { self.inner.dealloc(ptr, layout) };
        }
        let bytes = region_bytes(layout.size());
        if !give_back(ptr, bytes) {
            unmap_region(ptr, bytes);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with this alignment is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (is_io_buffer(&layout), is_io_buffer(&new_layout)) {
            // SAFETY: the caller's contract, passed on.
            (false, false) => unsafe { self.inner.realloc(ptr, layout, new_size) },
            (true, true) if region_bytes(layout.size()) == region_bytes(new_size) => ptr,
            _ => {
                // SAFETY: a valid layout, as above.
                let fresh = unsafe { self.alloc(new_layout) };
                if !fresh.is_null() {
                    // SAFETY: both blocks hold at least the smaller size and do not overlap.
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, fresh, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                fresh
            }
        }
    }
}

/// One thread's freed mappings, as (start address, bytes); 0 bytes is free.
struct RegionCache {
    regions: [Cell<(usize, usize)>; CACHED_REGIONS_MAX],
    /// Sum of the cached regions' bytes.
    bytes: Cell<usize>,
    /// The slot the next eviction empties.
    next_victim: Cell<usize>,
}

impl Drop for RegionCache {
    fn drop(&mut self) {
        for slot in &self.regions {
            let (start, bytes) = slot.take();
            if bytes != 0 {
                unmap_region(start as *mut u8, bytes);
            }
        }
    }
}

thread_local! {
    static CACHE: RegionCache = const {
        RegionCache {
            regions: [const { Cell::new((0, 0)) }; CACHED_REGIONS_MAX],
            bytes: Cell::new(0),
            next_victim: Cell::new(0),
        }
    };
}

/// A cached mapping of exactly `bytes`, if this thread kept one.
fn take_cached(bytes: usize) -> Option<*mut u8> {
    CACHE
        .try_with(|cache| {
            let slot = cache.regions.iter().find(|slot| slot.get().1 == bytes)?;
            cache.bytes.set(cache.bytes.get() - bytes);
            Some(slot.take().0 as *mut u8)
        })
        .ok()
        .flatten()
}

/// Keeps a freed mapping for this thread's next buffer of its size,
/// evicting older ones to make room; false (the caller unmaps it) when it
/// is larger than the whole cache or the thread is exiting.
fn give_back(ptr: *mut u8, bytes: usize) -> bool {
    if bytes > CACHED_BYTES_MAX {
        return false;
    }
    CACHE
        .try_with(|cache| {
            // Each pass either stores the region or empties one more slot.
            for _ in 0..=CACHED_REGIONS_MAX {
                if cache.bytes.get() + bytes <= CACHED_BYTES_MAX {
                    if let Some(slot) = cache.regions.iter().find(|slot| slot.get().1 == 0) {
                        slot.set((ptr as usize, bytes));
                        cache.bytes.set(cache.bytes.get() + bytes);
                        return true;
                    }
                }
                let victim = cache.next_victim.get();
                cache.next_victim.set((victim + 1) % CACHED_REGIONS_MAX);
                let (start, evicted) = cache.regions[victim].take();
                if evicted != 0 {
                    cache.bytes.set(cache.bytes.get() - evicted);
                    unmap_region(start as *mut u8, evicted);
                }
            }
            false
        })
        .unwrap_or(false)
}

/// Bytes this thread keeps cached (for tests).
#[cfg(test)]
fn cached_bytes() -> usize {
    CACHE.with(|cache| cache.bytes.get())
}

static REGIONS_MAPPED: AtomicU64 = AtomicU64::new(0);
static REGIONS_UNMAPPED: AtomicU64 = AtomicU64::new(0);
static BYTES_MAPPED: AtomicU64 = AtomicU64::new(0);

/// What the I/O buffer allocator has asked of the kernel since the process
/// started (every thread; counted only when a mapping is made or removed,
/// never on a reuse).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoBufferStats {
    /// Mappings made: each is a fresh huge page (or pages) faulted in on
    /// first touch. Growing in a steady state means the caches are too small.
    pub regions_mapped: u64,
    pub regions_unmapped: u64,
    /// Bytes mapped now, in use or cached.
    pub bytes_mapped: u64,
}

pub fn io_buffer_stats() -> IoBufferStats {
    IoBufferStats {
        regions_mapped: REGIONS_MAPPED.load(Ordering::Relaxed),
        regions_unmapped: REGIONS_UNMAPPED.load(Ordering::Relaxed),
        bytes_mapped: BYTES_MAPPED.load(Ordering::Relaxed),
    }
}

/// A fresh mapping of `bytes` (a multiple of 2 MiB) aligned to 2 MiB and
/// advised for huge pages, or null when the kernel refuses.
fn map_region(bytes: usize) -> *mut u8 {
    let reserve = bytes + HUGE_PAGE_BYTES;
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            reserve,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    let raw = raw as usize;
    let start = raw.next_multiple_of(HUGE_PAGE_BYTES);
    let head = start - raw;
    let tail = reserve - head - bytes;
    // SAFETY: the head and tail are parts of the mapping just made that the
    // region does not use; unmapping them cannot fail for valid ranges.
    unsafe {
        if head != 0 {
            libc::munmap(raw as *mut libc::c_void, head);
        }
        if tail != 0 {
            libc::munmap((start + bytes) as *mut libc::c_void, tail);
        }
        // Where the host's mode is `never` this changes nothing; an error
        // leaves small pages, which still work.
        libc::madvise(start as *mut libc::c_void, bytes, libc::MADV_HUGEPAGE);
    }
    REGIONS_MAPPED.fetch_add(1, Ordering::Relaxed);
    BYTES_MAPPED.fetch_add(bytes as u64, Ordering::Relaxed);
    start as *mut u8
}

fn unmap_region(ptr: *mut u8, bytes: usize) {
    // SAFETY: `ptr..ptr+bytes` is a whole region made by `map_region` that
    // nothing uses any more.
    unsafe { libc::munmap(ptr.cast(), bytes) };
    REGIONS_UNMAPPED.fetch_add(1, Ordering::Relaxed);
    BYTES_MAPPED.fetch_sub(bytes as u64, Ordering::Relaxed);
}

/// The host's transparent huge page mode
/// (`/sys/kernel/mm/transparent_hugepage/enabled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostMode {
    /// Every large enough anonymous mapping gets huge pages, asked or not.
    Always,
    /// Only mappings advised with `MADV_HUGEPAGE` get them.
    Madvise,
    Never,
}

impl HostMode {
    /// `None` where the kernel has no transparent huge pages.
    pub fn read() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?)
    }

    /// The bracketed choice of `always [madvise] never`.
    pub fn parse(text: &str) -> Option<Self> {
        let chosen = text.split_once('[')?.1.split_once(']')?.0;
        match chosen {
            "always" => Some(Self::Always),
            "madvise" => Some(Self::Madvise),
            "never" => Some(Self::Never),
            _ => None,
        }
    }
}

/// Which of the process's memory may be on transparent huge pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HugePageUse {
    /// The heap and the I/O buffers.
    Everywhere,
    /// The I/O buffers; the heap stays on small pages.
    IoBuffersOnly,
    /// Nothing: the host's mode is `never` (or it has no huge pages).
    Nowhere,
    /// Nothing, though the host offers them: its mode is `always`, and this
    /// kernel (before 6.18) cannot keep the heap off huge pages without
    /// keeping the I/O buffers off too.
    Withheld,
}

impl std::fmt::Display for HugePageUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Everywhere => "heap and I/O buffers",
            Self::IoBuffersOnly => "I/O buffers only",
            Self::Nowhere => "nowhere",
            Self::Withheld => {
                "nowhere (this kernel cannot keep them for the O_DIRECT buffers alone; \
                 set /sys/kernel/mm/transparent_hugepage/enabled to madvise, or run Linux 6.18 or later)"
            }
        })
    }
}

/// `PR_SET_THP_DISABLE`'s flag (Linux 6.18) that keeps advised mappings,
/// here the I/O buffers, on huge pages.
const PR_THP_DISABLE_EXCEPT_ADVISED: libc::c_ulong = 1 << 1;

fn prctl_thp_disable(disable: bool, flags: libc::c_ulong) -> std::io::Result<()> {
    // SAFETY: PR_SET_THP_DISABLE reads its integer arguments only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_THP_DISABLE,
            libc::c_ulong::from(disable),
            flags,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Sets whether the heap may use transparent huge pages (`heap`), for every
/// mapping of the process, present and future; the I/O buffers ask for them
/// either way. Returns where huge pages can now be used.
///
/// - `heap = false` (the broker's and the engine bench's default): the heap
///   never zeroes a fresh 2 MiB page (nor waits for the kernel to compact
///   memory for one) in the middle of a request. Where the host's mode is
///   `always`, that takes `PR_SET_THP_DISABLE` with
///   `PR_THP_DISABLE_EXCEPT_ADVISED` (Linux 6.18); older kernels can only
///   turn huge pages off for the whole process, I/O buffers included.
/// - `heap = true`: the heap gets huge pages where the host's mode is
///   `always`. Where it is `madvise`, the heap (which never asks) stays on
///   small pages as with `false`.
pub fn set_transparent_hugepages(heap: bool) -> std::io::Result<HugePageUse> {
    let host = HostMode::read();
    if host.is_none() || host == Some(HostMode::Never) {
        return Ok(HugePageUse::Nowhere);
    }
    if heap {
        prctl_thp_disable(false, 0)?;
        return Ok(if host == Some(HostMode::Always) { HugePageUse::Everywhere } else { HugePageUse::IoBuffersOnly });
    }
    match prctl_thp_disable(true, PR_THP_DISABLE_EXCEPT_ADVISED) {
        Ok(()) => Ok(HugePageUse::IoBuffersOnly),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            if host == Some(HostMode::Always) {
                prctl_thp_disable(true, 0)?;
                Ok(HugePageUse::Withheld)
            } else {
                prctl_thp_disable(false, 0)?;
                Ok(HugePageUse::IoBuffersOnly)
            }
        }
        Err(e) => Err(e),
    }
}

/// Whether the kernel lets this process use transparent huge pages at all:
/// the `THP_enabled` line of /proc/self/status (still 1 when only advised
/// mappings may use them). `None` where the kernel does not say.
pub fn transparent_hugepages_enabled() -> Option<bool> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| line.strip_prefix("THP_enabled:")).map(|v| v.trim() == "1")
}

/// Bytes of this process's anonymous memory on huge pages, split into the
/// mappings advised for them (the I/O buffers) and the rest (the heap):
/// `AnonHugePages` of /proc/self/smaps by each mapping's `hg` flag.
pub fn anon_huge_page_bytes() -> Option<(u64, u64)> {
    anon_huge_page_bytes_of(&std::fs::read_to_string("/proc/self/smaps").ok()?)
}

/// [`anon_huge_page_bytes`] of a smaps text.
pub fn anon_huge_page_bytes_of(smaps: &str) -> Option<(u64, u64)> {
    let (mut advised, mut other) = (0u64, 0u64);
    let mut huge_kib = 0u64;
    let mut seen = false;
    for line in smaps.lines() {
        if let Some(value) = line.strip_prefix("AnonHugePages:") {
            huge_kib = value.trim().trim_end_matches("kB").trim().parse().ok()?;
            seen = true;
        } else if let Some(flags) = line.strip_prefix("VmFlags:") {
            if flags.split_whitespace().any(|flag| flag == "hg") {
                advised += huge_kib << 10;
            } else {
                other += huge_kib << 10;
            }
            huge_kib = 0;
        }
    }
    seen.then_some((advised, other))
}

#[cfg(test)]
mod tests {
    use super::*;

    static ALLOCATOR: IoBufferAllocator<std::alloc::System> = IoBufferAllocator::new(std::alloc::System);

    fn io_layout(bytes: usize) -> Layout {
        Layout::from_size_align(bytes, 4096).unwrap()
    }

    #[test]
    fn io_buffers_are_huge_page_aligned_mappings_and_reused_by_their_thread() {
        std::thread::spawn(|| {
            let layout = io_layout(1 << 20);
            // SAFETY: a valid layout; every pointer is released with it below.
            unsafe {
                let first = ALLOCATOR.alloc(layout);
                assert!(!first.is_null());
                assert_eq!(first as usize % HUGE_PAGE_BYTES, 0);
                std::ptr::write_bytes(first, 0xab, layout.size());
                ALLOCATOR.dealloc(first, layout);
                let again = ALLOCATOR.alloc(layout);
                assert_eq!(again, first, "the freed mapping is reused");
                ALLOCATOR.dealloc(again, layout);
                let zeroed = ALLOCATOR.alloc_zeroed(layout);
                assert_eq!(zeroed, first);
                assert!(std::slice::from_raw_parts(zeroed, layout.size()).iter().all(|&b| b == 0));
                ALLOCATOR.dealloc(zeroed, layout);
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn small_or_unaligned_allocations_stay_with_the_inner_allocator() {
        assert!(!is_io_buffer(&Layout::from_size_align(4 << 20, 8).unwrap()));
        assert!(!is_io_buffer(&io_layout(IO_BUFFER_MIN_BYTES - 4096)));
        assert!(is_io_buffer(&io_layout(IO_BUFFER_MIN_BYTES)));
        assert!(!is_io_buffer(&Layout::from_size_align(8 << 20, 4 << 20).unwrap()));
    }

    #[test]
    fn realloc_moves_between_the_allocators_and_keeps_the_bytes() {
        let small = io_layout(64 << 10);
        // SAFETY: valid layouts; each pointer is released with its current layout.
        unsafe {
            let ptr = ALLOCATOR.alloc(small);
            std::ptr::write_bytes(ptr, 7, small.size());
            let grown = ALLOCATOR.realloc(ptr, small, 3 << 20);
            assert_eq!(grown as usize % HUGE_PAGE_BYTES, 0);
            assert!(std::slice::from_raw_parts(grown, small.size()).iter().all(|&b| b == 7));
            let same_region = ALLOCATOR.realloc(grown, io_layout(3 << 20), 4 << 20);
            assert_eq!(same_region, grown, "3 and 4 MiB both take two huge pages");
            let shrunk = ALLOCATOR.realloc(same_region, io_layout(4 << 20), 8 << 10);
            assert!(std::slice::from_raw_parts(shrunk, 8 << 10).iter().all(|&b| b == 7));
            ALLOCATOR.dealloc(shrunk, io_layout(8 << 10));
        }
    }

    #[test]
    fn a_full_cache_and_an_exiting_thread_unmap_their_regions() {
        let before = io_buffer_stats();
        std::thread::spawn(|| {
            let layout = io_layout(2 << 20);
            // SAFETY: a valid layout; every pointer is released with it.
            unsafe {
                let held: Vec<*mut u8> = (0..CACHED_REGIONS_MAX + 2).map(|_| ALLOCATOR.alloc(layout)).collect();
                for ptr in held {
                    ALLOCATOR.dealloc(ptr, layout);
                }
            }
        })
        .join()
        .unwrap();
        let after = io_buffer_stats();
        // Other tests run in parallel, so only lower bounds hold.
        assert!(after.regions_mapped - before.regions_mapped >= (CACHED_REGIONS_MAX + 2) as u64);
        assert!(after.regions_unmapped - before.regions_unmapped >= (CACHED_REGIONS_MAX + 2) as u64);
    }

    #[test]
    fn the_cache_evicts_to_stay_within_its_bytes_and_gives_back_what_is_larger() {
        std::thread::spawn(|| {
            // SAFETY: valid layouts; every pointer is released with its layout.
            unsafe {
                let large = io_layout(CACHED_BYTES_MAX + 1);
                ALLOCATOR.dealloc(ALLOCATOR.alloc(large), large);
                assert_eq!(cached_bytes(), 0, "larger than the cache: unmapped at once");

                let eight = io_layout(8 << 20);
                let held: Vec<*mut u8> =
                    (0..CACHED_BYTES_MAX / (8 << 20) + 3).map(|_| ALLOCATOR.alloc(eight)).collect();
                for ptr in held {
                    ALLOCATOR.dealloc(ptr, eight);
                    assert!(cached_bytes() <= CACHED_BYTES_MAX);
                }
                assert_eq!(cached_bytes(), CACHED_BYTES_MAX);
                // A different size still finds room, by evicting.
                let two = io_layout(2 << 20);
                ALLOCATOR.dealloc(ALLOCATOR.alloc(two), two);
                assert_eq!(cached_bytes(), CACHED_BYTES_MAX - (8 << 20) + (2 << 20));
                let again = ALLOCATOR.alloc(two);
                assert_eq!(again as usize % HUGE_PAGE_BYTES, 0);
                assert_eq!(cached_bytes(), CACHED_BYTES_MAX - (8 << 20));
                ALLOCATOR.dealloc(again, two);
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn host_mode_is_the_bracketed_word() {
        assert_eq!(HostMode::parse("always [madvise] never\n"), Some(HostMode::Madvise));
        assert_eq!(HostMode::parse("[always] madvise never"), Some(HostMode::Always));
        assert_eq!(HostMode::parse("always madvise [never]"), Some(HostMode::Never));
        assert_eq!(HostMode::parse("garbage"), None);
    }

    #[test]
    fn smaps_huge_pages_split_by_the_advised_flag() {
        let smaps = "7f00-7f02 rw-p 00000000 00:00 0\nAnonHugePages:      2048 kB\nVmFlags: rd wr mr mw me ac hg\n\
                     7f10-7f20 rw-p 00000000 00:00 0\nAnonHugePages:      4096 kB\nVmFlags: rd wr mr mw me ac\n\
                     7f30-7f40 rw-p 00000000 00:00 0\nAnonHugePages:         0 kB\nVmFlags: rd wr mr mw me ac hg\n";
        assert_eq!(anon_huge_page_bytes_of(smaps), Some((2 << 20, 4 << 20)));
        assert_eq!(anon_huge_page_bytes_of("nothing"), None);
    }

    #[test]
    fn heap_huge_pages_turn_off_and_on_for_the_process() {
        let Some(host) = HostMode::read() else { return };
        let off = set_transparent_hugepages(false).expect("prctl PR_SET_THP_DISABLE");
        let on = set_transparent_hugepages(true).expect("prctl PR_SET_THP_DISABLE");
        assert_eq!(transparent_hugepages_enabled(), Some(host != HostMode::Never));
        match host {
            HostMode::Never => assert_eq!((off, on), (HugePageUse::Nowhere, HugePageUse::Nowhere)),
            HostMode::Madvise => assert_eq!((off, on), (HugePageUse::IoBuffersOnly, HugePageUse::IoBuffersOnly)),
            HostMode::Always => {
                assert_ne!(off, HugePageUse::Everywhere);
                assert_eq!(on, HugePageUse::Everywhere);
            }
        }
    }
}
