//! [`DeferredSyncStore`]: writes now, fsyncs later.

use super::lock;
use crate::Store;
use ckpt_core::Result;
use std::sync::{Arc, Mutex};

/// A [`Store`] whose `write` and `write_parts` leave the fsync for later: they call the inner
/// store's [`Store::write_parts_unsynced`] (on a local disk: into the page cache, about one copy
/// of the bytes) and remember the path; [`DeferredSyncStore::take_unsynced`] hands the paths to
/// whoever makes them durable with [`sync_files`] before anything relies on them.
///
/// What the manager writes borrowed items through while `save` blocks, so that an asynchronous
/// save of borrowed items costs its caller one copy (into the page cache) instead of a copy into
/// fresh memory followed by the whole write; its background thread then syncs and commits
/// (ckpt's own; Orbax copies device arrays to host memory instead, spec §5.8).
///
/// `write_if_absent` stays durable at once. A `rename` or `delete` through this store updates the
/// remembered paths; changes made to the inner store directly are not seen.
#[derive(Debug)]
pub struct DeferredSyncStore {
    inner: Arc<dyn Store>,
    unsynced: Mutex<Vec<String>>,
}

impl DeferredSyncStore {
    /// Wraps `inner`; nothing written yet.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        DeferredSyncStore {
            inner,
            unsynced: Mutex::new(Vec::new()),
        }
    }

    /// The paths written and not yet synced, in write order (each once); the list is emptied.
    pub fn take_unsynced(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.unsynced))
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    fn remember(&self, path: &str) {
        let mut v = lock(&self.unsynced);
        if !v.iter().any(|p| p == path) {
            v.push(path.to_string());
        }
    }

    /// Drops the remembered paths at `path` or below it, returning their suffixes.
    fn forget_tree(&self, path: &str) -> Vec<String> {
        let mut v = lock(&self.unsynced);
        let mut gone = Vec::new();
        v.retain(|p| match suffix_below(path, p) {
            Some(rest) => {
                gone.push(rest.to_string());
                false
            }
            None => true,
        });
        gone
    }
}

/// `p` relative to `dir` ("" for `dir` itself, "/rest" below it), or `None`.
fn suffix_below<'p>(dir: &str, p: &'p str) -> Option<&'p str> {
    let rest = p.strip_prefix(dir)?;
    (rest.is_empty() || rest.starts_with('/') || dir.is_empty()).then_some(rest)
}

/// Makes every file of `paths` durable with [`Store::sync_file`], in order.
///
/// # Errors
/// The first `sync_file` error (naming its file); the later files are not synced then.
pub fn sync_files(store: &dyn Store, paths: &[String]) -> Result<()> {
    paths.iter().try_for_each(|p| store.sync_file(p))
}

impl crate::StoreLayer for DeferredSyncStore {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }

    fn write(&self, path: &str, data: &[u8]) -> Result<()> {
        Store::write_parts_unsynced(self, path, &[data])
    }

    fn write_parts(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        Store::write_parts_unsynced(self, path, parts)
    }

    fn write_parts_unsynced(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        self.inner.write_parts_unsynced(path, parts)?;
        self.remember(path);
        Ok(())
    }

    fn sync_file(&self, path: &str) -> Result<()> {
        self.inner.sync_file(path)?;
        lock(&self.unsynced).retain(|p| p != path);
        Ok(())
    }

    fn delete(&self, path: &str) -> Result<()> {
        self.inner.delete(path)?;
        lock(&self.unsynced).retain(|p| p != path);
        Ok(())
    }

    fn delete_prefix(&self, path: &str) -> Result<()> {
        self.inner.delete_prefix(path)?;
        self.forget_tree(path);
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.inner.rename(from, to)?;
        for rest in self.forget_tree(from) {
            self.remember(&format!("{to}{rest}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CountingStore, LocalStore, OpKind};

    #[test]
    fn writes_unsynced_then_syncs_each_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let fs: Arc<dyn Store> = Arc::new(LocalStore::open(dir.path()).unwrap());
        let counting = Arc::new(CountingStore::new(fs));
        let d = DeferredSyncStore::new(counting.clone());
        d.write_parts("a/x.bin", &[b"he", b"llo"]).unwrap();
        d.write("a/y.bin", b"y").unwrap();
        d.write("a/x.bin", b"again").unwrap();
        d.write_if_absent("a/z.bin", b"z").unwrap();
        d.rename("a", "b").unwrap();
        d.write("c/w.bin", b"w").unwrap();
        d.delete("c/w.bin").unwrap();
        assert_eq!(counting.counts().sync_file, 0, "nothing synced yet");
        let paths = d.take_unsynced();
        assert_eq!(paths, vec!["b/x.bin".to_string(), "b/y.bin".to_string()]);
        assert!(d.take_unsynced().is_empty());
        sync_files(&d, &paths).unwrap();
        assert_eq!(counting.counts().get(OpKind::SyncFile), 2);
        assert_eq!(d.read("b/x.bin").unwrap(), b"again");
        assert_eq!(d.read("b/z.bin").unwrap(), b"z");
        let e = sync_files(&d, &["nowhere.bin".to_string()]).unwrap_err();
        assert_eq!(e.kind(), ckpt_core::ErrorKind::NotFound, "{e}");
    }
}
