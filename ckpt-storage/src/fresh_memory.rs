//! Fresh memory for payloads (restored tensors, staging buffers, whole-file reads): zeroed,
//! allocated fallibly, and — on Linux, for large buffers — advised for transparent huge pages.
//!
//! Why: on the VMs ckpt is measured on, the cost of a restore into new memory or of a first
//! save is dominated by faulting in fresh pages (4 KiB each), not by copying (README,
//! performance). `madvise(MADV_HUGEPAGE)` before the first touch lets the kernel
//! back the buffer with 2 MiB pages where it has them (THP mode `madvise` or `always`), 512×
//! fewer faults; numpy does the same for its large arrays, so this is what Orbax's restores
//! already get. Measured here (2 cores, THP `madvise`): touching a fresh 256 MiB `Vec` took
//! 101–132 ms plain and 24–28 ms advised; 1 GiB 390–710 ms plain, 94–136 ms advised in most
//! runs (the first 1 GiB advised allocation of a process once took 1.9–2.5 s while the kernel
//! compacted memory). Freeing is cheaper too (2.5 ms against 60–110 ms per GiB).
//!
//! The advice is a hint: where the kernel has no huge pages to give, or off Linux, the buffer
//! is an ordinary zeroed allocation.

use std::alloc::{alloc_zeroed, Layout};

/// Buffers of at least this many bytes (4 MiB) are advised for huge pages; smaller ones would
/// hold at most one 2 MiB page and are left to the allocator.
pub const HUGE_PAGE_ADVICE_MIN_BYTES: usize = 4 << 20;

/// A zeroed buffer of exactly `len` bytes (length and capacity `len`), or `None` when the
/// allocator cannot provide it (so that a size read from untrusted input becomes an error, not
/// an abort). The zeroes cost no page touch where the allocator maps fresh memory (calloc);
/// buffers of [`HUGE_PAGE_ADVICE_MIN_BYTES`] or more are advised for transparent huge pages
/// (Linux) before anything touches them.
pub fn try_zeroed_bytes(len: usize) -> Option<Vec<u8>> {
    zeroed(len, true)
}

/// As [`try_zeroed_bytes`], without the huge-page advice: for buffers filled slowly (at network
/// speed from an object store), where the advice cost more than it saved on this project's
/// machines (an S3 restore at 0.52× instead of 1.01× of the raw get, moto on loopback).
pub fn try_zeroed_bytes_unadvised(len: usize) -> Option<Vec<u8>> {
    zeroed(len, false)
}

/// A zeroed buffer of `len` bytes, advised for huge pages from
/// [`HUGE_PAGE_ADVICE_MIN_BYTES`] on when `advise`.
fn zeroed(len: usize, advise: bool) -> Option<Vec<u8>> {
    if len == 0 {
        return Some(Vec::new());
    }
    let layout = Layout::array::<u8>(len).ok()?;
    // SAFETY: `layout` has a non-zero size (len > 0).
    let ptr = unsafe { alloc_zeroed(layout) };
    if ptr.is_null() {
        return None;
    }
    if advise && len >= HUGE_PAGE_ADVICE_MIN_BYTES {
        advise_huge_pages(ptr, len);
    }
    // SAFETY: `ptr` was allocated by the global allocator with the layout of `[u8; len]`
    // (align 1, size len), which is the layout `Vec<u8>` with capacity `len` frees; all `len`
    // bytes are initialized (zeroed).
    Some(unsafe { Vec::from_raw_parts(ptr, len, len) })
}

/// Advises the whole 2 MiB-aligned pages inside `ptr .. ptr + len` for huge pages; errors are
/// ignored (the advice is a hint; `EINVAL` where THP is compiled out).
#[cfg(target_os = "linux")]
fn advise_huge_pages(ptr: *mut u8, len: usize) {
    const HUGE: usize = 2 << 20;
    let start = (ptr as usize).next_multiple_of(HUGE);
    let end = (ptr as usize + len) & !(HUGE - 1);
    if end > start {
        // SAFETY: `start .. end` lies inside the allocation just made; MADV_HUGEPAGE changes
        // no contents and no mapping, only how future faults in the range are served.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_ptr: *mut u8, _len: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_of_every_size_class() {
        for len in [0, 1, 4095, 4096, HUGE_PAGE_ADVICE_MIN_BYTES, (9 << 20) + 3] {
            let mut v = try_zeroed_bytes(len).expect("allocatable");
            assert_eq!((v.len(), v.capacity()), (len, len));
            assert!(v.iter().all(|&b| b == 0), "len {len}");
            if let Some(last) = v.last_mut() {
                *last = 7;
            }
            v.push(1); // grows through the global allocator: the layout must match
            assert_eq!(v.len(), len + 1);
        }
    }

    #[test]
    fn impossible_size_is_none() {
        assert!(try_zeroed_bytes(usize::MAX).is_none());
        assert!(try_zeroed_bytes(isize::MAX as usize).is_none());
    }
}
