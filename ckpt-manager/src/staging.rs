//! The staging pool of async saves (issue 14): memory that borrowed tensors and bytes are copied
//! into before `save` returns, kept and reused from one save to the next.
//!
//! Taking fresh memory is what makes a copy slow on this project's machines (faulting in 256 MiB
//! of new pages costs 300–800 ms on a VM that hands freed memory back to its host; a copy into
//! pages already touched, ~30 ms). So the pool allocates a buffer once, touches every page of it
//! right away, and keeps it: the next save of the same shapes copies into the same buffers.
//! At most one save is in flight and every save takes its buffers while none is, so the pool
//! holds at most one save's payload (plus, for a buffer reused for a smaller item, at most a
//! quarter more of it); buffers a save does not use are freed when it takes its own.
//!
//! ckpt's own: Orbax has no staging pool; PyTorch DCP's async save stages into reused pinned
//! memory the same way.

use std::sync::{Mutex, MutexGuard};

/// A buffer is reused for an item only if it is at most this fraction larger than the item
/// (1/4): a smaller item never keeps a much larger buffer alive.
const REUSE_SLACK_DIVISOR: usize = 4;

/// How much staging memory a manager holds and how often it allocated, for tests and tuning
/// ([`crate::CheckpointManager::staging_stats`]). ckpt's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StagingStats {
    /// Bytes of the buffers kept between saves (their capacity), not counting those lent out.
    pub held_bytes: u64,
    /// Number of buffers kept between saves.
    pub held_buffers: usize,
    /// Bytes of the buffers lent to the save in flight (returned when it finishes).
    pub lent_bytes: u64,
    /// Fresh buffers allocated (and pre-faulted) since the manager was opened.
    pub allocations: u64,
    /// Buffers reused for a later save since the manager was opened.
    pub reuses: u64,
}

/// Buffers reused across saves, bounded by a byte cap (see the module docs).
#[derive(Debug)]
pub(crate) struct StagingPool {
    /// At most this many bytes of buffers (capacity) are given to one save.
    max_bytes: u64,
    state: Mutex<PoolState>,
}

#[derive(Debug, Default)]
struct PoolState {
    /// Buffers kept between saves, by capacity, ascending.
    free: Vec<Vec<u8>>,
    lent_bytes: u64,
    allocations: u64,
    reuses: u64,
}

/// How a buffer for one array is found.
enum Pick {
    /// A kept buffer, for an array of this many bytes.
    Reuse(Vec<u8>, usize),
    /// A fresh buffer of this many bytes.
    Fresh(usize),
}

impl StagingPool {
    /// An empty pool giving at most `max_bytes` bytes of buffers to one save.
    pub(crate) fn new(max_bytes: u64) -> StagingPool {
        StagingPool {
            max_bytes,
            state: Mutex::new(PoolState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Buffers for one save: `groups` holds, per item, the byte length of each of its arrays.
    /// Returns, per item, a buffer of exactly each length (contents unspecified) or `None` when
    /// the item is not staged: its buffers would take the save past the pool's cap, or fresh
    /// memory could not be had. An item gets all its buffers or none. Buffers are found best
    /// fit among the kept ones (at most a quarter larger than the array), else allocated and
    /// pre-faulted (every page written). Kept buffers this save does not use are freed.
    ///
    /// Call only while no save holds buffers of this pool (at most one save is in flight, and
    /// a save stages after the previous one has finished): what was lent and never given back
    /// (a background save that panicked) is forgotten here.
    pub(crate) fn take(&self, groups: &[Vec<usize>]) -> Vec<Option<Vec<Vec<u8>>>> {
        let mut out = Vec::with_capacity(groups.len());
        let mut st = self.lock();
        st.lent_bytes = 0;
        let mut free = std::mem::take(&mut st.free);
        let mut budget = self.max_bytes;
        for sizes in groups {
            let mut picks = Vec::with_capacity(sizes.len());
            let mut need = 0u64;
            for &size in sizes {
                let pos = free.partition_point(|b| b.capacity() < size);
                let fits = free
                    .get(pos)
                    .is_some_and(|b| b.capacity() <= size + size / REUSE_SLACK_DIVISOR);
                if fits && size > 0 {
                    let b = free.remove(pos);
                    need = need.saturating_add(b.capacity() as u64);
                    picks.push(Pick::Reuse(b, size));
                } else {
                    need = need.saturating_add(size as u64);
                    picks.push(Pick::Fresh(size));
                }
            }
            let staged = if need <= budget {
                materialize(picks, &mut st)
            } else {
                Err(picks)
            };
            match staged {
                Ok(bufs) => {
                    budget -= need;
                    out.push(Some(bufs));
                }
                Err(picks) => {
                    // Not staged: the buffers picked go back to the free list for later items.
                    for p in picks {
                        if let Pick::Reuse(b, _) = p {
                            let pos = free.partition_point(|f| f.capacity() < b.capacity());
                            free.insert(pos, b);
                        }
                    }
                    out.push(None);
                }
            }
        }
        st.lent_bytes = self.max_bytes - budget;
        drop(st);
        // Kept buffers no item of this save fits: freed, so that the pool holds one payload.
        drop(free);
        out
    }

    /// Takes `buffers` back (from a save that finished) and keeps them for the next save.
    pub(crate) fn give_back(&self, buffers: Vec<Vec<u8>>) {
        let mut st = self.lock();
        for b in buffers {
            if b.capacity() == 0 {
                continue;
            }
            st.lent_bytes = st.lent_bytes.saturating_sub(b.capacity() as u64);
            let pos = st.free.partition_point(|f| f.capacity() < b.capacity());
            st.free.insert(pos, b);
        }
    }

    /// Frees every buffer kept between saves; returns their bytes. Buffers lent to a save in
    /// flight are kept when they come back.
    pub(crate) fn release(&self) -> u64 {
        let free = std::mem::take(&mut self.lock().free);
        free.iter().map(|b| b.capacity() as u64).sum()
    }

    /// The pool's figures now.
    pub(crate) fn stats(&self) -> StagingStats {
        let st = self.lock();
        StagingStats {
            held_bytes: st.free.iter().map(|b| b.capacity() as u64).sum(),
            held_buffers: st.free.len(),
            lent_bytes: st.lent_bytes,
            allocations: st.allocations,
            reuses: st.reuses,
        }
    }
}

/// The buffers of one item: reused ones cut to length, fresh ones allocated and pre-faulted
/// (every byte written, so every page is faulted in now and stays so while the pool keeps it).
/// `Err(picks)` (with the reused buffers) when fresh memory cannot be had.
fn materialize(picks: Vec<Pick>, st: &mut PoolState) -> Result<Vec<Vec<u8>>, Vec<Pick>> {
    let mut fresh: Vec<Vec<u8>> = Vec::new();
    for p in &picks {
        if let Pick::Fresh(size @ 1..) = p {
            // Zeroed by the allocator and advised for huge pages (large buffers), then
            // faulted in here, a write per page, so the copy of the save finds them present.
            let Some(mut v) = ckpt_storage::try_zeroed_bytes(*size) else {
                tracing::debug!(
                    bytes = size,
                    "staging memory could not be allocated: the item is not staged"
                );
                return Err(picks);
            };
            // black_box: the compiler may not drop these stores as writing zero to zeroes.
            v = std::hint::black_box(v);
            for page in v.chunks_mut(4096) {
                page[0] = 0;
            }
            fresh.push(v);
        }
    }
    let mut fresh = fresh.into_iter();
    let mut out = Vec::with_capacity(picks.len());
    for p in picks {
        match p {
            Pick::Reuse(mut b, size) => {
                st.reuses += 1;
                // The whole capacity was touched when the buffer was allocated: growing the
                // length within it writes pages that are already there.
                if b.len() >= size {
                    b.truncate(size);
                } else {
                    b.resize(size, 0);
                }
                out.push(b);
            }
            Pick::Fresh(0) => out.push(Vec::new()),
            Pick::Fresh(_) => {
                st.allocations += 1;
                out.push(fresh.next().unwrap_or_default());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lens(bufs: &[Option<Vec<Vec<u8>>>]) -> Vec<Option<Vec<usize>>> {
        bufs.iter()
            .map(|g| g.as_ref().map(|g| g.iter().map(Vec::len).collect()))
            .collect()
    }

    #[test]
    fn buffers_are_reused_best_fit_and_unused_ones_freed() {
        let pool = StagingPool::new(u64::MAX);
        let first = pool.take(&[vec![1000, 100]]);
        assert_eq!(lens(&first), vec![Some(vec![1000, 100])]);
        let addrs: Vec<*const u8> = first[0].iter().flatten().map(|b| b.as_ptr()).collect();
        pool.give_back(first.into_iter().flatten().flatten().collect());
        assert_eq!(pool.stats().held_bytes, 1100);
        // The same shapes get the same buffers back.
        let second = pool.take(&[vec![1000, 100]]);
        let again: Vec<*const u8> = second[0].iter().flatten().map(|b| b.as_ptr()).collect();
        assert_eq!(again, addrs);
        assert_eq!((pool.stats().allocations, pool.stats().reuses), (2, 2));
        pool.give_back(second.into_iter().flatten().flatten().collect());
        // 900 fits the 1000 buffer (at most a quarter larger); 70 does not fit the 100 one
        // (more than a quarter larger): a fresh one, and the 100 buffer is freed.
        let third = pool.take(&[vec![900, 70]]);
        assert_eq!(lens(&third), vec![Some(vec![900, 70])]);
        assert_eq!(third[0].as_ref().map(|g| g[0].as_ptr()), Some(addrs[0]));
        let s = pool.stats();
        assert_eq!((s.allocations, s.reuses, s.held_bytes), (3, 3, 0));
        assert_eq!(s.lent_bytes, 1070);
        pool.give_back(third.into_iter().flatten().flatten().collect());
        assert_eq!(pool.stats().held_bytes, 1070);
        assert_eq!(pool.stats().lent_bytes, 0);
        assert_eq!(pool.release(), 1070);
        assert_eq!(pool.stats().held_bytes, 0);
    }

    #[test]
    fn the_cap_leaves_whole_items_out_and_empty_arrays_cost_nothing() {
        let pool = StagingPool::new(100);
        let got = pool.take(&[vec![60], vec![30, 30], vec![40], vec![0, 0]]);
        // 60 fits; 30 + 30 would pass 100: left out whole; 40 fits; empty arrays are free.
        assert_eq!(
            lens(&got),
            vec![Some(vec![60]), None, Some(vec![40]), Some(vec![0, 0])]
        );
        let s = pool.stats();
        assert_eq!((s.allocations, s.lent_bytes), (2, 100));
        // Fresh buffers are written through (pre-faulted): their contents are defined.
        assert!(got[0].iter().flatten().all(|b| b.iter().all(|&x| x == 0)));
    }
}
