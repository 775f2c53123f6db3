//! [`RetryStore`]: retries operations that failed with a temporary error (an object store's 500,
//! 503 or `SlowDown`, a dropped connection), with exponential backoff and full jitter, bounded in
//! attempts and in time — what every cloud SDK does and what opendal's fs-free services need
//! (issue 11, item 6). Local file systems report no temporary errors, so nothing is retried
//! there.
//!
//! Conditional creates are retried too. A create whose first attempt reached the store but whose
//! answer was lost is refused on retry (`AlreadyExists`) although it was this writer's own
//! write; the callers tell the two apart by content: the commit protocol by the step's claim
//! ([`crate::CommitProtocol::commit_step`]), the writer lease by its holder token, root metadata
//! by being written once. `rename` is not retried (a retry after a lost answer would fail on a
//! rename that happened); no store that reports temporary errors can rename anyway.

use crate::{Entry, EntryMeta, ReadStream, Store};
use ckpt_core::{Error, Result};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How [`RetryStore`] retries: at most `max_attempts` attempts per operation (the first one
/// included), sleeping between them a random time up to `initial_backoff × 2^(retry − 1)`, capped
/// at `max_backoff`, and no new attempt once `max_elapsed` has passed since the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per operation, the first included (default 10; 1 turns retries off).
    pub max_attempts: u32,
    /// The backoff cap before the first retry (default 100 ms).
    pub initial_backoff: Duration,
    /// The largest backoff cap (default 5 s).
    pub max_backoff: Duration,
    /// No retry starts later than this after the first attempt (default 60 s).
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_elapsed: Duration::from_secs(60),
        }
    }
}

/// A store that retries the temporary failures of the store it wraps ([`RetryPolicy`]).
#[derive(Debug)]
pub struct RetryStore {
    inner: Arc<dyn Store>,
    policy: RetryPolicy,
    retries: AtomicU64,
    seed: AtomicU64,
}

impl RetryStore {
    /// Wraps `inner` with `policy`.
    pub fn new(inner: Arc<dyn Store>, policy: RetryPolicy) -> Self {
        let seed = chrono::Utc::now()
            .timestamp_nanos_opt()
            .unwrap_or(0x9e37_79b9) as u64
            | 1;
        RetryStore {
            inner,
            policy,
            retries: AtomicU64::new(0),
            seed: AtomicU64::new(seed),
        }
    }

    /// How many retries this store has made so far (attempts beyond the first of each call).
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// A number in `0..bound` (xorshift; jitter needs no better randomness).
    fn jitter(&self, bound: u64) -> u64 {
        let mut x = self.seed.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed.store(x, Ordering::Relaxed);
        if bound == 0 {
            0
        } else {
            x % bound
        }
    }

    fn run<T>(&self, what: &str, path: &str, mut op: impl FnMut() -> Result<T>) -> Result<T> {
        let started = Instant::now();
        let mut attempt = 1u32;
        loop {
            match op() {
                Ok(v) => return Ok(v),
                Err(e) if e.is_temporary() && self.may_retry(attempt, started) => {
                    let cap = self
                        .policy
                        .initial_backoff
                        .saturating_mul(1u32 << (attempt - 1).min(20))
                        .min(self.policy.max_backoff);
                    let sleep = Duration::from_micros(self.jitter(cap.as_micros() as u64 + 1));
                    tracing::debug!(op = what, path, attempt, error = %e.chain(),
                        backoff_ms = sleep.as_millis() as u64, "retrying a temporary storage error");
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(sleep);
                    attempt += 1;
                }
                Err(e) => return Err(gave_up(e, attempt)),
            }
        }
    }

    fn may_retry(&self, attempt: u32, started: Instant) -> bool {
        attempt < self.policy.max_attempts && started.elapsed() < self.policy.max_elapsed
    }
}

/// A temporary error that is returned after retries says how many attempts were made.
fn gave_up(e: Error, attempts: u32) -> Error {
    if e.is_temporary() && attempts > 1 {
        let msg = format!("{} (after {attempts} attempts)", e.message());
        let mut out = Error::new(e.kind(), msg).with_temporary(true);
        if let Some(step) = e.step() {
            out = out.with_step(step);
        }
        if let Some(p) = e.path() {
            out = out.with_path(p.to_string());
        }
        return out.with_source(e);
    }
    e
}

impl crate::StoreLayer for RetryStore {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }

    fn capabilities(&self) -> crate::Capabilities {
        crate::Capabilities {
            retries: true,
            ..self.inner.capabilities()
        }
    }

    fn write(&self, path: &str, data: &[u8]) -> Result<()> {
        self.run("write", path, || self.inner.write(path, data))
    }

    fn write_if_absent(&self, path: &str, data: &[u8]) -> Result<()> {
        self.run("write_if_absent", path, || {
            self.inner.write_if_absent(path, data)
        })
    }

    fn write_parts(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        self.run("write", path, || self.inner.write_parts(path, parts))
    }

    fn write_parts_unsynced(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        self.run("write", path, || {
            self.inner.write_parts_unsynced(path, parts)
        })
    }

    fn sync_file(&self, path: &str) -> Result<()> {
        self.run("sync_file", path, || self.inner.sync_file(path))
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.run("read", path, || self.inner.read(path))
    }

    /// Opening is retried; a stream that fails later is not (its position is the caller's).
    fn open_read(&self, path: &str) -> Result<Box<dyn ReadStream + '_>> {
        self.run("open_read", path, || self.inner.open_read(path))
    }

    fn read_range(&self, path: &str, range: Range<u64>) -> Result<Vec<u8>> {
        self.run("read_range", path, || {
            self.inner.read_range(path, range.clone())
        })
    }

    fn read_range_into(&self, path: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.run("read_range", path, || {
            self.inner.read_range_into(path, offset, buf)
        })
    }

    fn stat(&self, path: &str) -> Result<Option<EntryMeta>> {
        self.run("stat", path, || self.inner.stat(path))
    }

    fn list_dir(&self, path: &str) -> Result<Vec<Entry>> {
        self.run("list_dir", path, || self.inner.list_dir(path))
    }

    fn list_recursive(&self, path: &str) -> Result<Vec<String>> {
        self.run("list_recursive", path, || self.inner.list_recursive(path))
    }

    fn create_dir(&self, path: &str) -> Result<()> {
        self.run("create_dir", path, || self.inner.create_dir(path))
    }

    fn delete(&self, path: &str) -> Result<()> {
        self.run("delete", path, || self.inner.delete(path))
    }

    fn delete_prefix(&self, path: &str) -> Result<()> {
        self.run("delete_prefix", path, || self.inner.delete_prefix(path))
    }

    fn sync_dir(&self, path: &str) -> Result<()> {
        self.run("sync_dir", path, || self.inner.sync_dir(path))
    }
}
