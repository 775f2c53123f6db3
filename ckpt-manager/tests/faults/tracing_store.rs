//! A store layer that records every call it forwards (the trace the fault cases index into).

use super::*;

/// One store call as [`Tracer`] saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Op {
    pub(super) kind: OpKind,
    pub(super) path: String,
    pub(super) to: Option<String>,
}

/// Passes every call through and records it (every call `FaultStore` counts, in the same order,
/// so op k of the trace is the op `FaultRule::nth` selects). Optionally cuts short the
/// `delete_prefix` of an existing directory whose name is `<step>` or starts with
/// `<step>.orbax-checkpoint-tmp` (the step directory, under whatever name it is deleted): removes
/// only the named files below it and fails, as a delete that stops half way (an I/O error, or a
/// kill, in the middle of `remove_dir_all`) leaves it.
#[derive(Debug)]
pub(super) struct Tracer {
    pub(super) inner: Arc<dyn Store>,
    pub(super) ops: Mutex<Vec<Op>>,
    /// (step directory name, files below it to delete before failing)
    pub(super) cut_delete: Mutex<Option<(String, Vec<String>)>>,
    /// How many deletes were cut short.
    pub(super) cuts: Mutex<u32>,
}

impl Tracer {
    pub(super) fn new(inner: Arc<dyn Store>) -> Self {
        Tracer {
            inner,
            ops: Mutex::new(Vec::new()),
            cut_delete: Mutex::new(None),
            cuts: Mutex::new(0),
        }
    }
    pub(super) fn rec(&self, kind: OpKind, path: &str, to: Option<&str>) {
        self.ops.lock().unwrap().push(Op {
            kind,
            path: path.to_string(),
            to: to.map(str::to_string),
        });
    }
    pub(super) fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap().clone()
    }
}

impl ckpt_manager::storage::StoreLayer for Tracer {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }
    // As `Store`'s provided methods (not forwarded), so that they reach the traced calls below.
    fn write_parts(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        provided::write_parts(self, path, parts)
    }
    fn write_parts_unsynced(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        provided::write_parts_unsynced(self, path, parts)
    }
    fn sync_file(&self, path: &str) -> Result<()> {
        provided::sync_file(path)
    }
    fn open_read(&self, path: &str) -> Result<Box<dyn ReadStream + '_>> {
        provided::open_read(self, path)
    }
    fn list_recursive(&self, path: &str) -> Result<Vec<String>> {
        provided::list_recursive(self, path)
    }
    fn write(&self, path: &str, data: &[u8]) -> Result<()> {
        self.rec(OpKind::Write, path, None);
        self.inner.write(path, data)
    }
    fn write_if_absent(&self, path: &str, data: &[u8]) -> Result<()> {
        self.rec(OpKind::WriteIfAbsent, path, None);
        self.inner.write_if_absent(path, data)
    }
    fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.rec(OpKind::Read, path, None);
        self.inner.read(path)
    }
    fn read_range(&self, path: &str, range: Range<u64>) -> Result<Vec<u8>> {
        self.rec(OpKind::ReadRange, path, None);
        self.inner.read_range(path, range)
    }
    fn stat(&self, path: &str) -> Result<Option<EntryMeta>> {
        self.rec(OpKind::Stat, path, None);
        self.inner.stat(path)
    }
    fn list_dir(&self, path: &str) -> Result<Vec<Entry>> {
        self.rec(OpKind::ListDir, path, None);
        self.inner.list_dir(path)
    }
    fn create_dir(&self, path: &str) -> Result<()> {
        self.rec(OpKind::CreateDir, path, None);
        self.inner.create_dir(path)
    }
    fn delete(&self, path: &str) -> Result<()> {
        self.rec(OpKind::Delete, path, None);
        self.inner.delete(path)
    }
    fn delete_prefix(&self, path: &str) -> Result<()> {
        self.rec(OpKind::DeletePrefix, path, None);
        let cut = self.cut_delete.lock().unwrap().clone();
        if let Some((name, files)) = cut {
            let doomed = path == name || path.starts_with(&format!("{name}{TMP_DIR_SUFFIX}"));
            if doomed && self.inner.stat(path)?.is_some() {
                for f in files {
                    self.inner.delete(&format!("{path}/{f}"))?;
                }
                *self.cuts.lock().unwrap() += 1;
                return Err(Error::storage(format!(
                    "delete of {path:?} stopped half way (test)"
                )));
            }
        }
        self.inner.delete_prefix(path)
    }
    fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.rec(OpKind::Rename, from, Some(to));
        self.inner.rename(from, to)
    }
    fn sync_dir(&self, path: &str) -> Result<()> {
        self.rec(OpKind::SyncDir, path, None);
        self.inner.sync_dir(path)
    }
}
