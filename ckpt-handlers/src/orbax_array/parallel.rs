//! The leaves of an item restored in parallel, on up to `available_parallelism` threads.

use ckpt_core::{Error, ErrorKind, Result};
use std::sync::atomic::{AtomicUsize, Ordering};

/// `job(i)` for every `i` in `0..n`, on up to `available_parallelism` threads (this one
/// included), each index once; the results in index order.
///
/// # Errors
/// `Handler` when a thread died before storing its result (a panic in `job`).
pub(super) fn in_parallel<T: Send>(n: usize, job: impl Fn(usize) -> T + Sync) -> Result<Vec<T>> {
    let results: Vec<std::sync::Mutex<Option<T>>> =
        (0..n).map(|_| std::sync::Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            break;
        }
        let r = job(i);
        if let Ok(mut slot) = results[i].lock() {
            *slot = Some(r);
        }
    };
    let threads = std::thread::available_parallelism()
        .map(|t| t.get())
        .unwrap_or(1)
        .min(n)
        .max(1);
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(work);
        }
        work();
    });
    results
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .ok()
                .flatten()
                .ok_or_else(|| Error::new(ErrorKind::Handler, "a restore thread failed"))
        })
        .collect()
}
