//! [`CountingStore`]: a store that counts calls and bytes and logs changes, for tests.

use super::{lock, OpKind};
use crate::{Entry, EntryMeta, Store};
use ckpt_core::Result;
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// How many times each [`Store`] operation was called, and how many bytes went through: a
/// snapshot taken by [`CountingStore::counts`]. Calls are counted whether they succeed or fail;
/// bytes only for calls that succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpCounts {
    /// Calls of [`Store::write`].
    pub write: u64,
    /// Calls of [`Store::write_if_absent`].
    pub write_if_absent: u64,
    /// Calls of [`Store::read`].
    pub read: u64,
    /// Calls of [`Store::read_range`].
    pub read_range: u64,
    /// Calls of [`Store::stat`].
    pub stat: u64,
    /// Calls of [`Store::list_dir`].
    pub list_dir: u64,
    /// Calls of [`Store::create_dir`].
    pub create_dir: u64,
    /// Calls of [`Store::delete`].
    pub delete: u64,
    /// Calls of [`Store::delete_prefix`].
    pub delete_prefix: u64,
    /// Calls of [`Store::rename`].
    pub rename: u64,
    /// Calls of [`Store::sync_dir`].
    pub sync_dir: u64,
    /// Calls of [`Store::sync_file`].
    pub sync_file: u64,
    /// Bytes passed to `write` and `write_if_absent` calls that succeeded.
    pub bytes_written: u64,
    /// Bytes returned by `read` and `read_range` calls that succeeded.
    pub bytes_read: u64,
    /// Calls that failed with a temporary error ([`ckpt_core::Error::is_temporary`]): each is an
    /// attempt that a retry layer above ([`crate::RetryStore`]) makes again, so these are the
    /// retries made over this store (also counted in their kind's count).
    pub temporary_failures: u64,
}

impl OpCounts {
    /// All calls, of every kind (bytes are not calls and are not included).
    pub fn total(&self) -> u64 {
        OpKind::ALL.iter().map(|&k| self.get(k)).sum()
    }

    /// The number of calls of `kind`.
    pub fn get(&self, kind: OpKind) -> u64 {
        match kind {
            OpKind::Write => self.write,
            OpKind::WriteIfAbsent => self.write_if_absent,
            OpKind::Read => self.read,
            OpKind::ReadRange => self.read_range,
            OpKind::Stat => self.stat,
            OpKind::ListDir => self.list_dir,
            OpKind::CreateDir => self.create_dir,
            OpKind::Delete => self.delete,
            OpKind::DeletePrefix => self.delete_prefix,
            OpKind::Rename => self.rename,
            OpKind::SyncDir => self.sync_dir,
            OpKind::SyncFile => self.sync_file,
        }
    }

    /// Writes of either kind: `write + write_if_absent`.
    pub fn writes(&self) -> u64 {
        self.write + self.write_if_absent
    }

    fn bump(&mut self, kind: OpKind) {
        let c = match kind {
            OpKind::Write => &mut self.write,
            OpKind::WriteIfAbsent => &mut self.write_if_absent,
            OpKind::Read => &mut self.read,
            OpKind::ReadRange => &mut self.read_range,
            OpKind::Stat => &mut self.stat,
            OpKind::ListDir => &mut self.list_dir,
            OpKind::CreateDir => &mut self.create_dir,
            OpKind::Delete => &mut self.delete,
            OpKind::DeletePrefix => &mut self.delete_prefix,
            OpKind::Rename => &mut self.rename,
            OpKind::SyncDir => &mut self.sync_dir,
            OpKind::SyncFile => &mut self.sync_file,
        };
        *c += 1;
    }
}

/// One call that changes the store, as logged by [`CountingStore::log`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedOp {
    /// The operation: one for which [`OpKind::is_mutation`] holds.
    pub op: OpKind,
    /// Its path (for `rename`, the source).
    pub path: String,
    /// For `rename`, the target; `None` otherwise.
    pub to: Option<String>,
    /// Whether the call succeeded.
    pub ok: bool,
}

#[derive(Debug, Default)]
struct CountingState {
    counts: OpCounts,
    log: Vec<LoggedOp>,
}

/// A [`Store`] that passes every call through and counts it, for tests: calls per operation and
/// bytes in [`CountingStore::counts`], and the ordered list of calls that change the store
/// (`write`, `write_if_absent`, `create_dir`, `delete`, `delete_prefix`, `rename`, successful
/// or not) in [`CountingStore::log`]. With it a test can assert, for instance, that
/// `commit_success.txt` is the last file written for a step, or that a commit-file save does no
/// rename. ckpt's own; Orbax has no such store.
///
/// A call is counted when it *returns* (so a call blocked in the inner store is not counted yet);
/// the log is in order of return, which is the order of the calls for one thread.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn Store>,
    state: Mutex<CountingState>,
}

impl CountingStore {
    /// Wraps `inner`, with every count at zero and an empty log.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        CountingStore {
            inner,
            state: Mutex::new(CountingState::default()),
        }
    }

    /// A snapshot of the counts so far.
    pub fn counts(&self) -> OpCounts {
        lock(&self.state).counts
    }

    /// The calls that changed (or tried to change) the store so far, oldest first.
    pub fn log(&self) -> Vec<LoggedOp> {
        lock(&self.state).log.clone()
    }

    /// The paths of the `write` and `write_if_absent` calls that succeeded, oldest first.
    pub fn written_paths(&self) -> Vec<String> {
        lock(&self.state)
            .log
            .iter()
            .filter(|l| l.ok && matches!(l.op, OpKind::Write | OpKind::WriteIfAbsent))
            .map(|l| l.path.clone())
            .collect()
    }

    /// Sets every count back to zero and empties the log.
    pub fn reset(&self) {
        *lock(&self.state) = CountingState::default();
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// Records one returned call.
    fn record<T>(
        &self,
        op: OpKind,
        path: &str,
        to: Option<&str>,
        result: &Result<T>,
        bytes: impl FnOnce(&T) -> (u64, u64),
    ) {
        let mut st = lock(&self.state);
        st.counts.bump(op);
        if result.as_ref().is_err_and(|e| e.is_temporary()) {
            st.counts.temporary_failures += 1;
        }
        if let Ok(v) = result {
            let (written, read) = bytes(v);
            st.counts.bytes_written += written;
            st.counts.bytes_read += read;
        }
        if op.is_mutation() {
            st.log.push(LoggedOp {
                op,
                path: path.to_string(),
                to: to.map(str::to_string),
                ok: result.is_ok(),
            });
        }
    }

    fn plain<T>(&self, op: OpKind, path: &str, result: Result<T>) -> Result<T> {
        self.record(op, path, None, &result, |_| (0, 0));
        result
    }
}

impl crate::StoreLayer for CountingStore {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }

    /// Not forwarded: as one [`Store::write`] of the concatenated parts, so that it is counted as
    /// a `write` (what [`Store::write_parts`] does by default).
    fn write_parts(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        crate::provided::write_parts(self, path, parts)
    }

    /// Not forwarded: one [`Store::read`], served from memory, so that it is counted as a `read`
    /// (what [`Store::open_read`] does by default).
    fn open_read(&self, path: &str) -> Result<Box<dyn crate::ReadStream + '_>> {
        crate::provided::open_read(self, path)
    }

    fn write(&self, path: &str, data: &[u8]) -> Result<()> {
        let r = self.inner.write(path, data);
        self.record(OpKind::Write, path, None, &r, |_| (data.len() as u64, 0));
        r
    }

    fn write_if_absent(&self, path: &str, data: &[u8]) -> Result<()> {
        let r = self.inner.write_if_absent(path, data);
        self.record(OpKind::WriteIfAbsent, path, None, &r, |_| {
            (data.len() as u64, 0)
        });
        r
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        let r = self.inner.read(path);
        self.record(OpKind::Read, path, None, &r, |v| (0, v.len() as u64));
        r
    }

    fn read_range(&self, path: &str, range: Range<u64>) -> Result<Vec<u8>> {
        let r = self.inner.read_range(path, range);
        self.record(OpKind::ReadRange, path, None, &r, |v| (0, v.len() as u64));
        r
    }

    fn stat(&self, path: &str) -> Result<Option<EntryMeta>> {
        self.plain(OpKind::Stat, path, self.inner.stat(path))
    }

    fn list_dir(&self, path: &str) -> Result<Vec<Entry>> {
        self.plain(OpKind::ListDir, path, self.inner.list_dir(path))
    }

    /// Counted as one [`OpKind::ListDir`] call (one logical listing, however many pages).
    fn list_recursive(&self, path: &str) -> Result<Vec<String>> {
        self.plain(OpKind::ListDir, path, self.inner.list_recursive(path))
    }

    fn create_dir(&self, path: &str) -> Result<()> {
        self.plain(OpKind::CreateDir, path, self.inner.create_dir(path))
    }

    fn delete(&self, path: &str) -> Result<()> {
        self.plain(OpKind::Delete, path, self.inner.delete(path))
    }

    fn delete_prefix(&self, path: &str) -> Result<()> {
        self.plain(OpKind::DeletePrefix, path, self.inner.delete_prefix(path))
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        let r = self.inner.rename(from, to);
        self.record(OpKind::Rename, from, Some(to), &r, |_| (0, 0));
        r
    }

    fn sync_dir(&self, path: &str) -> Result<()> {
        self.plain(OpKind::SyncDir, path, self.inner.sync_dir(path))
    }

    /// Counted as one [`OpKind::Write`] of the parts' total size.
    fn write_parts_unsynced(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        let r = self.inner.write_parts_unsynced(path, parts);
        let n: usize = parts.iter().map(|p| p.len()).sum();
        self.record(OpKind::Write, path, None, &r, |_| (n as u64, 0));
        r
    }

    fn sync_file(&self, path: &str) -> Result<()> {
        self.plain(OpKind::SyncFile, path, self.inner.sync_file(path))
    }
}
