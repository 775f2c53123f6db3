//! Progress of a long save or restore, reported to the caller (issue 16): [`Progress`] events
//! sent to a [`ProgressObserver`] set with
//! [`crate::CheckpointManagerOptions::progress`] (or the builder's `on_progress`).
//!
//! Bytes are counted where they cross the storage boundary, by a store layer put over the store
//! for the duration of one save or restore ([`ProgressStore`]): every file written, every byte
//! range and stream read. ckpt's own (Orbax reports no progress).

use ckpt_core::Step;
use ckpt_storage::{ReadStream, Store};
use std::fmt::{self, Debug};
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// What is in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A save (synchronous, or the background part of an asynchronous one).
    Save,
    /// A restore (`restore`, `restore_items`, `restore_leaves`, `restore_pytree_into`).
    Restore,
}

/// One progress report of a save or restore of one step.
///
/// Bytes are storage bytes: what was written to or read from the store so far, as files and
/// byte ranges go through it (a file written in one storage call — e.g. the one safetensors file
/// of a tensors item — counts when that call returns; a streamed restore counts each tensor or
/// chunk as it is read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Save or restore.
    pub operation: Operation,
    /// The step being saved or restored.
    pub step: Step,
    /// The item being written or read (its name), or `None` before the first and after the last.
    pub item: Option<String>,
    /// Items finished so far (the metrics item of a save with metrics counts as one).
    pub items_done: usize,
    /// Items the operation writes or reads in all.
    pub items_total: usize,
    /// Bytes written (save) or read (restore) so far.
    pub bytes_done: u64,
    /// The bytes the operation will move, when known before it starts: for a restore of a step
    /// written by ckpt, the sizes of the items' files recorded in its checksum manifest (a
    /// restore that reads only some leaves, or re-reads a header, may end below or above it);
    /// `None` for a save (an item's size on storage is known only once its handler has encoded
    /// it: headers, compression) and for steps without a manifest (written by Orbax). Use
    /// `items_done / items_total` then.
    pub bytes_total: Option<u64>,
    /// True on the last report only: the save committed (before retention runs) or every item
    /// was restored. A failed operation sends no finished report; in a multi-process job only the
    /// primary, which commits, sends it (each process reports the bytes and items it writes).
    pub finished: bool,
}

/// Receives [`Progress`] reports. Called on the thread doing the work — the caller's, or the
/// background save thread — after each storage call that moved bytes and at each item boundary,
/// so it must be quick (hand the report to a progress bar or a channel; do not block).
pub trait ProgressObserver: Debug + Send + Sync {
    /// One report.
    fn on_progress(&self, progress: &Progress);
}

/// A closure as a [`ProgressObserver`] (what the builder's `on_progress` wraps).
pub struct ProgressFn<F>(pub F);

impl<F> Debug for ProgressFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProgressFn(..)")
    }
}

impl<F: Fn(&Progress) + Send + Sync> ProgressObserver for ProgressFn<F> {
    fn on_progress(&self, progress: &Progress) {
        (self.0)(progress)
    }
}

/// The running state of one save or restore: updates it and tells the observer.
#[derive(Debug)]
pub(crate) struct Tracker {
    observer: Arc<dyn ProgressObserver>,
    state: Mutex<Progress>,
}

impl Tracker {
    /// A tracker of `operation` on `step` moving `items_total` items (and `bytes_total` bytes
    /// when known).
    pub(crate) fn new(
        observer: Arc<dyn ProgressObserver>,
        operation: Operation,
        step: Step,
        items_total: usize,
        bytes_total: Option<u64>,
    ) -> Arc<Tracker> {
        Arc::new(Tracker {
            observer,
            state: Mutex::new(Progress {
                operation,
                step,
                item: None,
                items_done: 0,
                items_total,
                bytes_done: 0,
                bytes_total,
                finished: false,
            }),
        })
    }

    /// Applies `change` and reports the result (outside the lock).
    fn update(&self, change: impl FnOnce(&mut Progress)) {
        let report = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            change(&mut st);
            st.clone()
        };
        self.observer.on_progress(&report);
    }

    /// `bytes` more were moved.
    pub(crate) fn add_bytes(&self, bytes: u64) {
        if bytes > 0 {
            self.update(|p| p.bytes_done += bytes);
        }
    }

    /// Item `name` starts.
    pub(crate) fn start_item(&self, name: &str) {
        self.update(|p| p.item = Some(name.to_string()));
    }

    /// The current item is done.
    pub(crate) fn finish_item(&self) {
        self.update(|p| p.items_done = (p.items_done + 1).min(p.items_total));
    }

    /// The operation is done: the last report.
    pub(crate) fn finish(&self) {
        self.update(|p| {
            p.item = None;
            p.finished = true;
        });
    }
}

/// A store layer counting the bytes written and read through it into a [`Tracker`].
#[derive(Debug)]
pub(crate) struct ProgressStore {
    inner: Arc<dyn Store>,
    tracker: Arc<Tracker>,
}

impl ProgressStore {
    /// `inner`, counted into `tracker`.
    pub(crate) fn new(inner: Arc<dyn Store>, tracker: Arc<Tracker>) -> Self {
        ProgressStore { inner, tracker }
    }

    fn counted<T>(&self, bytes: u64, r: ckpt_core::Result<T>) -> ckpt_core::Result<T> {
        if r.is_ok() {
            self.tracker.add_bytes(bytes);
        }
        r
    }
}

fn parts_len(parts: &[&[u8]]) -> u64 {
    parts.iter().map(|p| p.len() as u64).sum()
}

impl ckpt_storage::StoreLayer for ProgressStore {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }

    fn write(&self, path: &str, data: &[u8]) -> ckpt_core::Result<()> {
        self.counted(data.len() as u64, self.inner.write(path, data))
    }

    fn write_if_absent(&self, path: &str, data: &[u8]) -> ckpt_core::Result<()> {
        self.counted(data.len() as u64, self.inner.write_if_absent(path, data))
    }

    fn write_parts(&self, path: &str, parts: &[&[u8]]) -> ckpt_core::Result<()> {
        self.counted(parts_len(parts), self.inner.write_parts(path, parts))
    }

    fn write_parts_unsynced(&self, path: &str, parts: &[&[u8]]) -> ckpt_core::Result<()> {
        self.counted(
            parts_len(parts),
            self.inner.write_parts_unsynced(path, parts),
        )
    }

    fn read(&self, path: &str) -> ckpt_core::Result<Vec<u8>> {
        let r = self.inner.read(path);
        if let Ok(data) = &r {
            self.tracker.add_bytes(data.len() as u64);
        }
        r
    }

    fn open_read(&self, path: &str) -> ckpt_core::Result<Box<dyn ReadStream + '_>> {
        let stream = self.inner.open_read(path)?;
        Ok(Box::new(CountedStream {
            inner: stream,
            tracker: &self.tracker,
        }))
    }

    fn read_range(&self, path: &str, range: Range<u64>) -> ckpt_core::Result<Vec<u8>> {
        let r = self.inner.read_range(path, range);
        if let Ok(data) = &r {
            self.tracker.add_bytes(data.len() as u64);
        }
        r
    }

    fn read_range_into(&self, path: &str, offset: u64, buf: &mut [u8]) -> ckpt_core::Result<()> {
        let n = buf.len() as u64;
        let r = self.inner.read_range_into(path, offset, buf);
        self.counted(n, r)
    }

    /// A mapped file counts whole once mapped (a memory-mapped restore, issue 14).
    fn map_file(
        &self,
        path: &str,
        populate: bool,
    ) -> ckpt_core::Result<Option<ckpt_storage::MappedFile>> {
        let r = self.inner.map_file(path, populate);
        if let Ok(Some(m)) = &r {
            self.tracker.add_bytes(m.len() as u64);
        }
        r
    }
}

/// A [`ReadStream`] counting what is read from it.
struct CountedStream<'a> {
    inner: Box<dyn ReadStream + 'a>,
    tracker: &'a Tracker,
}

impl ReadStream for CountedStream<'_> {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn position(&self) -> u64 {
        self.inner.position()
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> ckpt_core::Result<()> {
        let n = buf.len() as u64;
        self.inner.read_exact(buf)?;
        self.tracker.add_bytes(n);
        Ok(())
    }

    fn read_parts(&mut self, bufs: &mut [&mut [u8]]) -> ckpt_core::Result<()> {
        let n: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        self.inner.read_parts(bufs)?;
        self.tracker.add_bytes(n);
        Ok(())
    }

    fn finish(self: Box<Self>) -> ckpt_core::Result<()> {
        self.inner.finish()
    }
}
