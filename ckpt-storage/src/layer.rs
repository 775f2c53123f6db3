//! [`StoreLayer`]: the forwarding base of every store that wraps another (opendal's
//! `LayeredAccess`, tower's `Layer`): a layer names its inner store and overrides only the calls
//! it changes; every other call — [`Store::lock_for_writing`] and [`Store::list_recursive`]
//! included — reaches the inner store unchanged.
//!
//! Every type that implements [`StoreLayer`] is a [`Store`] (a blanket impl), so a layer cannot
//! forget a method: a method added to [`Store`] is added here once, forwarding, and every layer
//! has it. (Before, each layer re-forwarded all of them by hand, and none forwarded
//! `lock_for_writing`: a manager opened over any layer ran without the root's writer lock.)
//!
//! A layer that wants one of [`Store`]'s *own* provided behaviours instead of forwarding (e.g.
//! `write_parts` as one [`Store::write`] of the concatenated parts, so that a counting or failing
//! layer sees it as a `write`) calls the matching function of [`provided`] from its override.

use crate::{Capabilities, Entry, EntryMeta, MappedFile, ReadStream, Store, WriterLock};
use ckpt_core::Result;
use std::fmt::Debug;
use std::ops::Range;

/// A [`Store`] that wraps another: every method forwards to [`StoreLayer::inner`] unless the
/// layer overrides it. Implement this (not [`Store`]) for a layer; the blanket impl makes it a
/// [`Store`]. See the module docs.
///
/// The methods have the names and the contracts of [`Store`]'s. Call them through [`Store`], and
/// name this trait by its path where it is implemented (`impl ckpt_storage::StoreLayer for X`)
/// rather than importing it: with both traits in scope, `layer.write(..)` is ambiguous. Inside
/// the impl itself the trait is in scope, so a layer calls its own methods as
/// `Store::write(self, ..)`.
pub trait StoreLayer: Debug + Send + Sync {
    /// The store this layer wraps, which every call not overridden reaches.
    fn inner(&self) -> &dyn Store;

    /// [`Store::capabilities`]; forwards.
    fn capabilities(&self) -> Capabilities {
        self.inner().capabilities()
    }

    /// [`Store::location`]; forwards.
    fn location(&self, path: &str) -> String {
        self.inner().location(path)
    }

    /// [`Store::write`]; forwards.
    ///
    /// # Errors
    /// As [`Store::write`].
    fn write(&self, path: &str, data: &[u8]) -> Result<()> {
        self.inner().write(path, data)
    }

    /// [`Store::write_if_absent`]; forwards.
    ///
    /// # Errors
    /// As [`Store::write_if_absent`].
    fn write_if_absent(&self, path: &str, data: &[u8]) -> Result<()> {
        self.inner().write_if_absent(path, data)
    }

    /// [`Store::write_parts`]; forwards.
    ///
    /// # Errors
    /// As [`Store::write_parts`].
    fn write_parts(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        self.inner().write_parts(path, parts)
    }

    /// [`Store::write_parts_unsynced`]; forwards. A layer must pass this and
    /// [`StoreLayer::sync_file`] through alike, or neither.
    ///
    /// # Errors
    /// As [`Store::write_parts_unsynced`].
    fn write_parts_unsynced(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        self.inner().write_parts_unsynced(path, parts)
    }

    /// [`Store::sync_file`]; forwards.
    ///
    /// # Errors
    /// As [`Store::sync_file`].
    fn sync_file(&self, path: &str) -> Result<()> {
        self.inner().sync_file(path)
    }

    /// [`Store::read`]; forwards.
    ///
    /// # Errors
    /// As [`Store::read`].
    fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.inner().read(path)
    }

    /// [`Store::open_read`]; forwards.
    ///
    /// # Errors
    /// As [`Store::open_read`].
    fn open_read(&self, path: &str) -> Result<Box<dyn ReadStream + '_>> {
        self.inner().open_read(path)
    }

    /// [`Store::read_range`]; forwards.
    ///
    /// # Errors
    /// As [`Store::read_range`].
    fn read_range(&self, path: &str, range: Range<u64>) -> Result<Vec<u8>> {
        self.inner().read_range(path, range)
    }

    /// [`Store::read_range_into`]; by default through this layer's own
    /// [`StoreLayer::read_range`] and a copy ([`provided::read_range_into`]), so that a layer
    /// that changes ranged reads (counts, checks, fails or retries them) sees these too. A layer
    /// that leaves reads alone may forward it to the inner store instead.
    ///
    /// # Errors
    /// As [`Store::read_range_into`].
    fn read_range_into(&self, path: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        provided::copy_range(
            |range| StoreLayer::read_range(self, path, range),
            || StoreLayer::location(self, path),
            offset,
            buf,
        )
    }

    /// [`Store::map_file`]; forwards.
    ///
    /// # Errors
    /// As [`Store::map_file`].
    fn map_file(&self, path: &str, populate: bool) -> Result<Option<MappedFile>> {
        self.inner().map_file(path, populate)
    }

    /// [`Store::stat`]; forwards.
    ///
    /// # Errors
    /// As [`Store::stat`].
    fn stat(&self, path: &str) -> Result<Option<EntryMeta>> {
        self.inner().stat(path)
    }

    /// [`Store::list_dir`]; forwards.
    ///
    /// # Errors
    /// As [`Store::list_dir`].
    fn list_dir(&self, path: &str) -> Result<Vec<Entry>> {
        self.inner().list_dir(path)
    }

    /// [`Store::list_recursive`]; forwards (one call of the inner store's, not a walk).
    ///
    /// # Errors
    /// As [`Store::list_recursive`].
    fn list_recursive(&self, path: &str) -> Result<Vec<String>> {
        self.inner().list_recursive(path)
    }

    /// [`Store::create_dir`]; forwards.
    ///
    /// # Errors
    /// As [`Store::create_dir`].
    fn create_dir(&self, path: &str) -> Result<()> {
        self.inner().create_dir(path)
    }

    /// [`Store::delete`]; forwards.
    ///
    /// # Errors
    /// As [`Store::delete`].
    fn delete(&self, path: &str) -> Result<()> {
        self.inner().delete(path)
    }

    /// [`Store::delete_prefix`]; forwards.
    ///
    /// # Errors
    /// As [`Store::delete_prefix`].
    fn delete_prefix(&self, path: &str) -> Result<()> {
        self.inner().delete_prefix(path)
    }

    /// [`Store::rename`]; forwards.
    ///
    /// # Errors
    /// As [`Store::rename`].
    fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.inner().rename(from, to)
    }

    /// [`Store::lock_for_writing`]; forwards, so a manager opened through the layer holds the
    /// inner store's writer lock.
    ///
    /// # Errors
    /// As [`Store::lock_for_writing`].
    fn lock_for_writing(&self) -> Result<Option<Box<dyn WriterLock>>> {
        self.inner().lock_for_writing()
    }

    /// [`Store::sync_dir`]; forwards.
    ///
    /// # Errors
    /// As [`Store::sync_dir`].
    fn sync_dir(&self, path: &str) -> Result<()> {
        self.inner().sync_dir(path)
    }
}

impl<L: StoreLayer> Store for L {
    fn capabilities(&self) -> Capabilities {
        StoreLayer::capabilities(self)
    }
    fn location(&self, path: &str) -> String {
        StoreLayer::location(self, path)
    }
    fn write(&self, path: &str, data: &[u8]) -> Result<()> {
        StoreLayer::write(self, path, data)
    }
    fn write_if_absent(&self, path: &str, data: &[u8]) -> Result<()> {
        StoreLayer::write_if_absent(self, path, data)
    }
    fn write_parts(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        StoreLayer::write_parts(self, path, parts)
    }
    fn write_parts_unsynced(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        StoreLayer::write_parts_unsynced(self, path, parts)
    }
    fn sync_file(&self, path: &str) -> Result<()> {
        StoreLayer::sync_file(self, path)
    }
    fn read(&self, path: &str) -> Result<Vec<u8>> {
        StoreLayer::read(self, path)
    }
    fn open_read(&self, path: &str) -> Result<Box<dyn ReadStream + '_>> {
        StoreLayer::open_read(self, path)
    }
    fn read_range(&self, path: &str, range: Range<u64>) -> Result<Vec<u8>> {
        StoreLayer::read_range(self, path, range)
    }
    fn read_range_into(&self, path: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        StoreLayer::read_range_into(self, path, offset, buf)
    }
    fn map_file(&self, path: &str, populate: bool) -> Result<Option<MappedFile>> {
        StoreLayer::map_file(self, path, populate)
    }
    fn stat(&self, path: &str) -> Result<Option<EntryMeta>> {
        StoreLayer::stat(self, path)
    }
    fn list_dir(&self, path: &str) -> Result<Vec<Entry>> {
        StoreLayer::list_dir(self, path)
    }
    fn list_recursive(&self, path: &str) -> Result<Vec<String>> {
        StoreLayer::list_recursive(self, path)
    }
    fn create_dir(&self, path: &str) -> Result<()> {
        StoreLayer::create_dir(self, path)
    }
    fn delete(&self, path: &str) -> Result<()> {
        StoreLayer::delete(self, path)
    }
    fn delete_prefix(&self, path: &str) -> Result<()> {
        StoreLayer::delete_prefix(self, path)
    }
    fn rename(&self, from: &str, to: &str) -> Result<()> {
        StoreLayer::rename(self, from, to)
    }
    fn lock_for_writing(&self) -> Result<Option<Box<dyn WriterLock>>> {
        StoreLayer::lock_for_writing(self)
    }
    fn sync_dir(&self, path: &str) -> Result<()> {
        StoreLayer::sync_dir(self, path)
    }
}

/// [`Store`]'s own provided behaviours, for a layer that wants one of them instead of forwarding
/// (each is exactly what the [`Store`] method of that name does when a store does not override
/// it).
pub mod provided {
    use crate::{join_path, stream, BufferStream, EntryKind, ReadStream, Store};
    use ckpt_core::{Error, ErrorKind, Result};

    /// [`Store::write_parts`]'s provided behaviour: one [`Store::write`] of `store` with the
    /// parts concatenated.
    ///
    /// # Errors
    /// As [`Store::write`].
    pub fn write_parts<S: Store + ?Sized>(store: &S, path: &str, parts: &[&[u8]]) -> Result<()> {
        store.write(path, &stream::concat(parts))
    }

    /// [`Store::write_parts_unsynced`]'s provided behaviour: [`Store::write_parts`] of `store`
    /// (durable at once).
    ///
    /// # Errors
    /// As [`Store::write_parts`].
    pub fn write_parts_unsynced<S: Store + ?Sized>(
        store: &S,
        path: &str,
        parts: &[&[u8]],
    ) -> Result<()> {
        store.write_parts(path, parts)
    }

    /// [`Store::sync_file`]'s provided behaviour: nothing (every write was durable already).
    ///
    /// # Errors
    /// None.
    pub fn sync_file(path: &str) -> Result<()> {
        let _ = path;
        Ok(())
    }

    /// [`Store::read_range_into`]'s provided behaviour: one [`Store::read_range`] of `store`,
    /// copied into `buf`.
    ///
    /// # Errors
    /// As [`Store::read_range`]; `Storage` when the store returned another length.
    pub fn read_range_into<S: Store + ?Sized>(
        store: &S,
        path: &str,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<()> {
        copy_range(
            |range| store.read_range(path, range),
            || store.location(path),
            offset,
            buf,
        )
    }

    /// Fills `buf` from `read(offset .. offset + buf.len())`: the one body of
    /// [`read_range_into`] and of [`super::StoreLayer::read_range_into`]'s default.
    ///
    /// # Errors
    /// `InvalidArgument` when the range overflows; as `read`; `Storage` (at `location()`) when
    /// `read` returned another length.
    pub(crate) fn copy_range(
        read: impl FnOnce(std::ops::Range<u64>) -> Result<Vec<u8>>,
        location: impl Fn() -> String,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<()> {
        let end = offset.checked_add(buf.len() as u64).ok_or_else(|| {
            Error::invalid_argument(format!("byte range from {offset} overflows"))
                .with_path(location())
        })?;
        let data = read(offset..end)?;
        if data.len() != buf.len() {
            return Err(Error::new(
                ErrorKind::Storage,
                format!(
                    "ranged read of {offset}..{end} returned {} bytes",
                    data.len()
                ),
            )
            .with_path(location()));
        }
        buf.copy_from_slice(&data);
        Ok(())
    }

    /// [`Store::open_read`]'s provided behaviour: one [`Store::read`] of `store`, served from
    /// memory.
    ///
    /// # Errors
    /// As [`Store::read`].
    pub fn open_read<'s, S: Store + ?Sized>(
        store: &'s S,
        path: &str,
    ) -> Result<Box<dyn ReadStream + 's>> {
        let data = store.read(path)?;
        Ok(Box::new(BufferStream::new(data, store.location(path))))
    }

    /// [`Store::list_recursive`]'s provided behaviour: a walk of the tree with [`Store::list_dir`]
    /// of `store` (one call per directory).
    ///
    /// # Errors
    /// As [`Store::list_dir`].
    pub fn list_recursive<S: Store + ?Sized>(store: &S, path: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = vec![String::new()];
        while let Some(rel) = stack.pop() {
            let dir = join_path(path, &rel);
            for e in store.list_dir(&dir)? {
                let child = join_path(&rel, &e.name);
                match e.kind {
                    EntryKind::File => out.push(child),
                    EntryKind::Dir => stack.push(child),
                    EntryKind::Symlink => {}
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EntryKind, OpendalStore};
    use std::sync::{Arc, Mutex};

    /// Records the name of every call that reaches it; answers from a memory store.
    #[derive(Debug)]
    struct Probe {
        seen: Mutex<Vec<&'static str>>,
        mem: OpendalStore,
    }

    impl Probe {
        fn saw(&self, name: &'static str) {
            self.seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(name);
        }
    }

    /// A lock that holds nothing, to tell the probe's `lock_for_writing` from the default `None`.
    #[derive(Debug)]
    struct NoLock;
    impl WriterLock for NoLock {
        fn check(&self) -> Result<()> {
            Ok(())
        }
    }

    impl Store for Probe {
        fn capabilities(&self) -> Capabilities {
            self.saw("capabilities");
            self.mem.capabilities()
        }
        fn location(&self, path: &str) -> String {
            self.saw("location");
            self.mem.location(path)
        }
        fn write(&self, path: &str, data: &[u8]) -> Result<()> {
            self.saw("write");
            self.mem.write(path, data)
        }
        fn write_if_absent(&self, path: &str, data: &[u8]) -> Result<()> {
            self.saw("write_if_absent");
            self.mem.write_if_absent(path, data)
        }
        fn write_parts(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
            self.saw("write_parts");
            self.mem.write_parts(path, parts)
        }
        fn write_parts_unsynced(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
            self.saw("write_parts_unsynced");
            self.mem.write_parts_unsynced(path, parts)
        }
        fn sync_file(&self, path: &str) -> Result<()> {
            self.saw("sync_file");
            self.mem.sync_file(path)
        }
        fn read(&self, path: &str) -> Result<Vec<u8>> {
            self.saw("read");
            self.mem.read(path)
        }
        fn open_read(&self, path: &str) -> Result<Box<dyn ReadStream + '_>> {
            self.saw("open_read");
            self.mem.open_read(path)
        }
        fn read_range(&self, path: &str, range: Range<u64>) -> Result<Vec<u8>> {
            self.saw("read_range");
            self.mem.read_range(path, range)
        }
        fn stat(&self, path: &str) -> Result<Option<EntryMeta>> {
            self.saw("stat");
            self.mem.stat(path)
        }
        fn list_dir(&self, path: &str) -> Result<Vec<Entry>> {
            self.saw("list_dir");
            self.mem.list_dir(path)
        }
        fn list_recursive(&self, path: &str) -> Result<Vec<String>> {
            self.saw("list_recursive");
            self.mem.list_recursive(path)
        }
        fn create_dir(&self, path: &str) -> Result<()> {
            self.saw("create_dir");
            self.mem.create_dir(path)
        }
        fn delete(&self, path: &str) -> Result<()> {
            self.saw("delete");
            self.mem.delete(path)
        }
        fn delete_prefix(&self, path: &str) -> Result<()> {
            self.saw("delete_prefix");
            self.mem.delete_prefix(path)
        }
        fn rename(&self, from: &str, to: &str) -> Result<()> {
            self.saw("rename");
            let _ = (from, to);
            Ok(())
        }
        fn lock_for_writing(&self) -> Result<Option<Box<dyn WriterLock>>> {
            self.saw("lock_for_writing");
            Ok(Some(Box::new(NoLock)))
        }
        fn sync_dir(&self, path: &str) -> Result<()> {
            self.saw("sync_dir");
            self.mem.sync_dir(path)
        }
    }

    /// A layer that overrides nothing.
    #[derive(Debug)]
    struct Nothing(Arc<Probe>);
    impl StoreLayer for Nothing {
        fn inner(&self) -> &dyn Store {
            self.0.as_ref()
        }
    }

    #[test]
    fn a_layer_that_overrides_nothing_forwards_every_call_once() {
        let probe = Arc::new(Probe {
            seen: Mutex::new(Vec::new()),
            mem: OpendalStore::memory().unwrap(),
        });
        let layer: &dyn Store = &Nothing(Arc::clone(&probe));
        let _ = layer.capabilities();
        let _ = layer.location("a");
        layer.write("a/x", b"x").unwrap();
        layer.write_if_absent("a/y", b"y").unwrap();
        layer.write_parts("a/z", &[b"z"]).unwrap();
        layer.write_parts_unsynced("a/u", &[b"u"]).unwrap();
        layer.sync_file("a/u").unwrap();
        assert_eq!(layer.read("a/x").unwrap(), b"x");
        layer.open_read("a/x").unwrap().finish().unwrap();
        assert_eq!(layer.read_range("a/y", 0..1).unwrap(), b"y");
        assert!(layer.stat("a/x").unwrap().is_some());
        assert!(layer
            .list_dir("a")
            .unwrap()
            .iter()
            .all(|e| e.kind == EntryKind::File));
        assert_eq!(layer.list_recursive("a").unwrap().len(), 4);
        layer.create_dir("b").unwrap();
        layer.delete("a/x").unwrap();
        layer.delete_prefix("a").unwrap();
        layer.rename("c", "d").unwrap();
        assert!(layer.lock_for_writing().unwrap().is_some());
        layer.sync_dir("").unwrap();
        let seen = probe.seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                "capabilities",
                "location",
                "write",
                "write_if_absent",
                "write_parts",
                "write_parts_unsynced",
                "sync_file",
                "read",
                "open_read",
                "read_range",
                "stat",
                "list_dir",
                "list_recursive",
                "create_dir",
                "delete",
                "delete_prefix",
                "rename",
                "lock_for_writing",
                "sync_dir",
            ],
            "each call reaches the inner store once, as itself"
        );
    }
}
