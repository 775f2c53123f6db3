//! Byte buffers kept between saves and restores of array items and handed out again, so a
//! training loop that saves and restores the same shapes again and again does not fault in
//! fresh memory each time (on some machines that costs as much as the read or write itself:
//! README, "Performance").

use std::sync::Mutex;

/// Buffers with less room than this (64 KiB) are not kept: cheap to allocate, and they would
/// take the places of large ones.
const MIN_KEPT_BYTES: usize = 64 << 10;

/// A bounded pool of byte buffers: at most `max_count` buffers holding at most `max_bytes` of
/// capacity in all; a buffer that would exceed either, or is smaller than 64 KiB, is dropped
/// when given back.
pub(super) struct BufferPool {
    held: Mutex<Vec<Vec<u8>>>,
    max_count: usize,
    max_bytes: usize,
}

impl BufferPool {
    /// An empty pool keeping at most `max_count` buffers and `max_bytes` bytes of capacity.
    pub(super) const fn new(max_count: usize, max_bytes: usize) -> BufferPool {
        BufferPool {
            held: Mutex::new(Vec::new()),
            max_count,
            max_bytes,
        }
    }

    /// An empty buffer with room for at least `capacity` bytes: the held buffer with the most
    /// room, grown if needed, or a new one.
    pub(super) fn take(&self, capacity: usize) -> Vec<u8> {
        let held = self.held.lock().ok().and_then(|mut held| {
            let best = (0..held.len()).max_by_key(|&i| held[i].capacity())?;
            Some(held.swap_remove(best))
        });
        let mut buf = held.unwrap_or_default();
        buf.clear();
        buf.reserve(capacity);
        buf
    }

    /// Gives `buf` back for a later [`BufferPool::take`].
    pub(super) fn give(&self, buf: Vec<u8>) {
        if buf.capacity() < MIN_KEPT_BYTES || buf.capacity() > self.max_bytes {
            return;
        }
        if let Ok(mut held) = self.held.lock() {
            let bytes: usize = held.iter().map(Vec::capacity).sum();
            if held.len() < self.max_count && bytes + buf.capacity() <= self.max_bytes {
                held.push(buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_within_bounds() {
        const K: usize = MIN_KEPT_BYTES;
        let pool = BufferPool::new(2, 100 * K);
        let a = pool.take(40 * K);
        let ptr = a.as_ptr();
        assert!(a.capacity() >= 40 * K && a.is_empty());
        pool.give(a);
        // The same memory is handed out again, emptied.
        let mut b = pool.take(10);
        assert_eq!(b.as_ptr(), ptr);
        b.extend_from_slice(&[1; 10]);
        pool.give(b);
        assert!(pool.take(1).is_empty());
        // Over the byte bound, or small: not kept.
        pool.give(vec![0u8; 101 * K]);
        pool.give(vec![0u8; 10]);
        assert_eq!(pool.held.lock().map(|h| h.len()).unwrap_or(9), 0);
        pool.give(Vec::with_capacity(60 * K));
        pool.give(Vec::with_capacity(60 * K));
        assert_eq!(pool.held.lock().map(|h| h.len()).unwrap_or(9), 1);
    }
}
