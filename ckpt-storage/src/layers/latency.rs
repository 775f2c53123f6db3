//! [`LatencyStore`] and [`Gate`]: a store that is slow, or that holds writes until a test lets
//! them through.

use super::{lock, PathPattern};
use crate::{Entry, EntryMeta, Store};
use ckpt_core::Result;
use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct GateState {
    open: bool,
    /// Threads blocked in [`Gate::pass`] right now.
    waiting: usize,
    /// Threads that went through [`Gate::pass`] so far.
    passed: u64,
}

/// A gate that threads pass through, which a test can close and open: while it is closed,
/// [`Gate::pass`] blocks. [`LatencyStore`] makes every write pass it, so a test can hold the
/// writes of an async save and check that `save` has returned before anything was written.
///
/// Cheap to clone; clones are the same gate. A new gate is open.
///
/// ```
/// use ckpt_storage::Gate;
/// use std::time::Duration;
/// let gate = Gate::closed();
/// let g = gate.clone();
/// let writer = std::thread::spawn(move || g.pass());
/// assert!(gate.wait_for_waiting(1, Duration::from_secs(10)));  // the writer is held
/// gate.open();
/// writer.join().unwrap();
/// assert_eq!(gate.passed(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct Gate {
    shared: Arc<(Mutex<GateState>, Condvar)>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

impl Gate {
    /// An open gate.
    pub fn new() -> Self {
        Gate {
            shared: Arc::new((
                Mutex::new(GateState {
                    open: true,
                    waiting: 0,
                    passed: 0,
                }),
                Condvar::new(),
            )),
        }
    }

    /// A closed gate.
    pub fn closed() -> Self {
        let g = Gate::new();
        g.close();
        g
    }

    /// Closes the gate: threads that call [`Gate::pass`] from now on block until it opens.
    pub fn close(&self) {
        lock(&self.shared.0).open = false;
        self.shared.1.notify_all();
    }

    /// Opens the gate and lets every blocked thread through.
    pub fn open(&self) {
        lock(&self.shared.0).open = true;
        self.shared.1.notify_all();
    }

    /// Whether the gate is open.
    pub fn is_open(&self) -> bool {
        lock(&self.shared.0).open
    }

    /// How many threads are blocked at the gate right now.
    pub fn waiting(&self) -> usize {
        lock(&self.shared.0).waiting
    }

    /// How many calls of [`Gate::pass`] have returned so far.
    pub fn passed(&self) -> u64 {
        lock(&self.shared.0).passed
    }

    /// Blocks the calling thread while the gate is closed, then returns. There is no time limit:
    /// a test that closes a gate must open it (or the blocked threads never finish).
    pub fn pass(&self) {
        let (m, cv) = &*self.shared;
        let mut st = lock(m);
        if !st.open {
            st.waiting += 1;
            cv.notify_all();
            while !st.open {
                st = cv.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            st.waiting -= 1;
        }
        st.passed += 1;
        cv.notify_all();
    }

    /// Waits until at least `n` threads are blocked at the gate, for at most `timeout`; returns
    /// whether they are. Lets a test know, without sleeping, that a writer has reached the gate.
    pub fn wait_for_waiting(&self, n: usize, timeout: Duration) -> bool {
        let (m, cv) = &*self.shared;
        let deadline = Instant::now() + timeout;
        let mut st = lock(m);
        while st.waiting < n {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = match cv.wait_timeout(st, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        true
    }
}

/// A [`Store`] that adds a fixed delay to every operation (or to those on paths matching a
/// pattern), and optionally makes every write wait at a [`Gate`], for tests. ckpt's own; Orbax
/// has no such store.
///
/// Per call: first the gate (for `write` and `write_if_absent` only), then the delay, then the
/// inner store. When a pattern is set ([`LatencyStore::only_paths`]) both apply only to calls on a
/// matching path (for `rename`, either path). `capabilities` and `location` are never delayed.
/// With a zero delay and no gate it adds nothing.
#[derive(Debug)]
pub struct LatencyStore {
    inner: Arc<dyn Store>,
    delay: Duration,
    pattern: Option<PathPattern>,
    gate: Option<Gate>,
}

impl LatencyStore {
    /// Wraps `inner`, adding `delay` (a [`Duration`]; zero adds nothing) to every operation.
    pub fn new(inner: Arc<dyn Store>, delay: Duration) -> Self {
        LatencyStore {
            inner,
            delay,
            pattern: None,
            gate: None,
        }
    }

    /// Restricts the delay and the gate to calls on paths matching `pattern` (see
    /// [`PathPattern`]).
    pub fn only_paths(mut self, pattern: impl Into<PathPattern>) -> Self {
        self.pattern = Some(pattern.into());
        self
    }

    /// Makes every `write` and `write_if_absent` (on a matching path) wait at `gate` first. Keep
    /// a clone of the gate to open and close it.
    pub fn with_gate(mut self, gate: Gate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// The delay added to each selected operation.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// The gate writes wait at, if any.
    pub fn gate(&self) -> Option<&Gate> {
        self.gate.as_ref()
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    fn selected(&self, paths: &[&str]) -> bool {
        self.pattern
            .as_ref()
            .is_none_or(|p| paths.iter().any(|path| p.matches(path)))
    }

    fn slow(&self, paths: &[&str]) {
        if !self.delay.is_zero() && self.selected(paths) {
            std::thread::sleep(self.delay);
        }
    }

    fn slow_write(&self, path: &str) {
        if let Some(gate) = &self.gate {
            if self.selected(&[path]) {
                gate.pass();
            }
        }
        self.slow(&[path]);
    }
}

impl crate::StoreLayer for LatencyStore {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }

    /// Not forwarded: as one [`Store::write`] of the concatenated parts, so that it is delayed as
    /// a `write` (what [`Store::write_parts`] does by default).
    fn write_parts(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        crate::provided::write_parts(self, path, parts)
    }

    /// Not forwarded: one [`Store::read`], served from memory, so that it is delayed as a `read`
    /// (what [`Store::open_read`] does by default).
    fn open_read(&self, path: &str) -> Result<Box<dyn crate::ReadStream + '_>> {
        crate::provided::open_read(self, path)
    }

    fn write(&self, path: &str, data: &[u8]) -> Result<()> {
        self.slow_write(path);
        self.inner.write(path, data)
    }

    fn write_if_absent(&self, path: &str, data: &[u8]) -> Result<()> {
        self.slow_write(path);
        self.inner.write_if_absent(path, data)
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.slow(&[path]);
        self.inner.read(path)
    }

    fn read_range(&self, path: &str, range: Range<u64>) -> Result<Vec<u8>> {
        self.slow(&[path]);
        self.inner.read_range(path, range)
    }

    fn stat(&self, path: &str) -> Result<Option<EntryMeta>> {
        self.slow(&[path]);
        self.inner.stat(path)
    }

    fn list_dir(&self, path: &str) -> Result<Vec<Entry>> {
        self.slow(&[path]);
        self.inner.list_dir(path)
    }

    /// Delayed as one listing call.
    fn list_recursive(&self, path: &str) -> Result<Vec<String>> {
        self.slow(&[path]);
        self.inner.list_recursive(path)
    }

    fn create_dir(&self, path: &str) -> Result<()> {
        self.slow(&[path]);
        self.inner.create_dir(path)
    }

    fn delete(&self, path: &str) -> Result<()> {
        self.slow(&[path]);
        self.inner.delete(path)
    }

    fn delete_prefix(&self, path: &str) -> Result<()> {
        self.slow(&[path]);
        self.inner.delete_prefix(path)
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.slow(&[from, to]);
        self.inner.rename(from, to)
    }

    fn sync_dir(&self, path: &str) -> Result<()> {
        self.slow(&[path]);
        self.inner.sync_dir(path)
    }

    fn write_parts_unsynced(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        self.slow_write(path);
        self.inner.write_parts_unsynced(path, parts)
    }

    fn sync_file(&self, path: &str) -> Result<()> {
        self.slow(&[path]);
        self.inner.sync_file(path)
    }
}
