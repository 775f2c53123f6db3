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
    on_threads(threads, work);
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

/// Runs `work` on `threads` threads at once (this one included, the others scoped), and
/// returns when every one has returned. `work` is expected to take its jobs from a shared
/// queue until it is empty.
pub(crate) fn on_threads(threads: usize, work: impl Fn() + Sync) {
    if threads <= 1 {
        work();
        return;
    }
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(&work);
        }
        work();
    });
}

/// The errors of jobs run on several threads: once one is recorded, [`Failures::any`] tells
/// the threads to stop taking jobs; the error of the lowest job index is the result.
#[derive(Default)]
pub(crate) struct Failures {
    failed: std::sync::atomic::AtomicBool,
    errors: std::sync::Mutex<Vec<(usize, Error)>>,
}

impl Failures {
    /// Records job `job`'s error.
    pub(crate) fn record(&self, job: usize, e: Error) {
        self.failed.store(true, Ordering::Relaxed);
        if let Ok(mut v) = self.errors.lock() {
            v.push((job, e));
        }
    }

    /// Whether any job has failed.
    pub(crate) fn any(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// The error of the lowest job index recorded (jobs on several threads, the first error in
    /// job order wins), or `Ok`.
    pub(crate) fn into_result(self) -> Result<()> {
        let mut errs = self.errors.into_inner().unwrap_or_default();
        errs.sort_by_key(|(i, _)| *i);
        match errs.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }
}
