//! Heap buffers aligned for O_DIRECT: the address, length and file offset
//! of every direct I/O must be multiples of the device's logical block
//! size. 4 KiB covers every device the broker supports (512-byte and
//! 4 KiB sectors alike), so every buffer here is 4 KiB aligned.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// The alignment of every direct-I/O buffer, offset and length here.
pub(crate) const DIRECT_IO_ALIGN: usize = 4096;
const _: () = assert!(DIRECT_IO_ALIGN.is_power_of_two());

/// An owned, zero-initialised, 4 KiB-aligned byte buffer.
#[derive(Debug)]
pub(crate) struct AlignedBuffer {
    pointer: NonNull<u8>,
    layout: Layout,
}

impl AlignedBuffer {
    /// Allocates `len` zeroed bytes; `len` must be a non-zero multiple of
    /// [`DIRECT_IO_ALIGN`].
    pub(crate) fn zeroed(len: usize) -> Self {
        assert!(len > 0 && len & (DIRECT_IO_ALIGN - 1) == 0, "bad direct-I/O length {len}");
        let layout = Layout::from_size_align(len, DIRECT_IO_ALIGN).expect("valid layout");
        // SAFETY: the layout has a non-zero size (asserted above).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(pointer) = NonNull::new(raw) else { alloc::handle_alloc_error(layout) };
        Self { pointer, layout }
    }

    /// Allocates `len` bytes filled with a pseudo-random pattern, so a
    /// device or hypervisor that detects zero blocks cannot skip the write.
    pub(crate) fn patterned(len: usize, seed: u64) -> Self {
        let mut buffer = Self::zeroed(len);
        let mut state = seed | 1;
        for chunk in buffer.as_mut_slice().chunks_exact_mut(8) {
            // xorshift64: cheap and good enough to defeat zero detection.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        buffer
    }

    pub(crate) fn len(&self) -> usize {
        self.layout.size()
    }

    pub(crate) fn as_ptr(&self) -> *const u8 {
        self.pointer.as_ptr()
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.pointer.as_ptr()
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the pointer owns `len` initialised bytes (alloc_zeroed),
        // and `&mut self` makes this the only access.
        unsafe { std::slice::from_raw_parts_mut(self.pointer.as_ptr(), self.len()) }
    }
}

impl Drop for AlignedBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with exactly this layout.
        unsafe { alloc::dealloc(self.pointer.as_ptr(), self.layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_patterned() {
        let buffer = AlignedBuffer::patterned(2 * DIRECT_IO_ALIGN, 7);
        assert_eq!(buffer.as_ptr() as usize % DIRECT_IO_ALIGN, 0);
        assert_eq!(buffer.len(), 2 * DIRECT_IO_ALIGN);
        let mut copy = AlignedBuffer::patterned(2 * DIRECT_IO_ALIGN, 7);
        assert!(copy.as_mut_slice().iter().any(|&b| b != 0));
    }
}
