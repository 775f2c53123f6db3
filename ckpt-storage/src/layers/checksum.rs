//! The checksum layers: [`RecordingStore`] (records a CRC32C of every file written through
//! it, for the step's manifest) and [`VerifyingStore`] (checks files against a manifest as they
//! are read, with its threaded stream). The manifest format, [`ChecksumManifest`], is
//! `checksum_manifest.rs`; the check of a whole step is `ckpt_manager::verify_step`
//! (ckpt-manager/src/verify.rs), where the step layout is known.
//!
//! ckpt's own; Orbax has no checksums.

use super::lock;
use crate::checksum_manifest::corrupt;
use crate::{join_path, ChecksumManifest, FileChecksum, FileStatus, MappedFile, ReadStream, Store};
use ckpt_core::{Error, Result};
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// From this many bytes on, a checksum is computed on a second thread beside the write or read
/// it covers (16 MiB; smaller files are checked inline, where a thread would cost more than it
/// saves).
pub const PARALLEL_CRC_MIN: usize = 16 << 20;

/// The piece of a large read handed to the checksum thread at a time (4 MiB).
const CRC_CHUNK: usize = 4 << 20;

/// [`FileChecksum::of_parts`] on another thread while `f` runs on this one, for writes of at
/// least `PARALLEL_CRC_MIN` (16 MiB) bytes (below that, or when no thread can be started, one after
/// the other): the CRC then costs no time next to the write on a machine with a spare core.
fn of_parts_beside<T>(parts: &[&[u8]], f: impl FnOnce() -> T) -> (T, FileChecksum) {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if total < PARALLEL_CRC_MIN {
        return (f(), FileChecksum::of_parts(parts));
    }
    std::thread::scope(|s| {
        let spawned = std::thread::Builder::new()
            .name("ckpt-crc32c".into())
            .spawn_scoped(s, || FileChecksum::of_parts(parts));
        let out = f();
        let c = match spawned.map(|h| h.join()) {
            Ok(Ok(c)) => c,
            _ => FileChecksum::of_parts(parts),
        };
        (out, c)
    })
}

/// The CRC32C of `data`, its two halves summed on two threads (combined with
/// `crc32c_combine`) from `PARALLEL_CRC_MIN` (16 MiB) bytes on; inline below that, or when no
/// thread can be started.
fn crc_on_two_threads(data: &[u8]) -> u32 {
    if data.len() < PARALLEL_CRC_MIN {
        return crc32c::crc32c(data);
    }
    let (a, b) = data.split_at(data.len() / 2);
    std::thread::scope(|s| {
        let second = std::thread::Builder::new()
            .name("ckpt-crc32c".into())
            .spawn_scoped(s, || crc32c::crc32c(b));
        let first = crc32c::crc32c(a);
        let second = match second.map(|h| h.join()) {
            Ok(Ok(c)) => c,
            _ => crc32c::crc32c(b),
        };
        crc32c::crc32c_combine(first, second, b.len())
    })
}

/// The part of `path` below `dir` (`dir` empty: all of `path`); `None` when `path` is not
/// strictly below `dir`.
fn below<'a>(dir: &str, path: &'a str) -> Option<&'a str> {
    if dir.is_empty() {
        return (!path.is_empty()).then_some(path);
    }
    path.strip_prefix(dir)?
        .strip_prefix('/')
        .filter(|r| !r.is_empty())
}

/// A [`Store`] that records the size and CRC32C of every file written through it, so that they
/// can be stored in the step's [`MANIFEST_FILE`](crate::MANIFEST_FILE). ckpt's own; Orbax has no checksums.
///
/// Every call passes through unchanged. After each *successful* `write` or `write_if_absent` of a
/// path `P` below `strip_prefix` (`P` = `strip_prefix/rest`), it records
/// `key_prefix/rest` → [`FileChecksum::of`] the data written (a later write of the same path
/// replaces it). Paths elsewhere are not recorded. An empty `strip_prefix` records every path,
/// an empty `key_prefix` records `rest` as it is.
///
/// The manager writes an item through it with `strip_prefix` = the item's working directory
/// (`3.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp`) and `key_prefix` = the item's name
/// (`state`), so the keys are relative to the *final* step directory.
///
/// So that the manifest describes what is on storage, successful changes through this store
/// update it too: `delete` of a recorded path forgets it; `delete_prefix` of a recorded
/// directory forgets everything below it, and of `strip_prefix` itself or one of its ancestors
/// forgets everything; `rename` within `strip_prefix` moves the entries, and out of it forgets
/// them. A `rename` of `strip_prefix` itself (or an ancestor), as when the item is committed,
/// changes nothing: keys are relative to it and move with it. (Committing the item through this
/// store therefore also records the item's `commit_success.txt`, a file written below
/// `strip_prefix`: harmless, it is then checked like any other file.)
///
/// Cost: one CRC32C pass over the data of each write (hardware-accelerated).
#[derive(Debug)]
pub struct RecordingStore {
    inner: Arc<dyn Store>,
    strip_prefix: String,
    key_prefix: String,
    recorded: Mutex<ChecksumManifest>,
}

impl RecordingStore {
    /// Wraps `inner`, recording files written below `strip_prefix` under `key_prefix` (see the
    /// type's docs).
    pub fn new(inner: Arc<dyn Store>, strip_prefix: &str, key_prefix: &str) -> Self {
        RecordingStore {
            inner,
            strip_prefix: strip_prefix.to_string(),
            key_prefix: key_prefix.to_string(),
            recorded: Mutex::new(ChecksumManifest::new()),
        }
    }

    /// What has been recorded so far; the store's record is emptied.
    pub fn take_manifest(&self) -> ChecksumManifest {
        std::mem::take(&mut *lock(&self.recorded))
    }

    /// A copy of what has been recorded so far.
    pub fn manifest(&self) -> ChecksumManifest {
        lock(&self.recorded).clone()
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// The manifest key of `path`, when it lies below `strip_prefix`.
    fn key(&self, path: &str) -> Option<String> {
        below(&self.strip_prefix, path).map(|rest| join_path(&self.key_prefix, rest))
    }

    /// Whether `path` is `strip_prefix` itself or one of its ancestors.
    fn covers_prefix(&self, path: &str) -> bool {
        path == self.strip_prefix || below(path, &self.strip_prefix).is_some()
    }

    fn record_write(&self, path: &str, data: &[u8]) {
        if let Some(key) = self.key(path) {
            let c = FileChecksum::of(data);
            lock(&self.recorded).insert(key, c);
        }
    }

    /// Removes `key` and every key below it, returning them with their suffix after `key`.
    fn take_tree(
        files: &mut BTreeMap<String, FileChecksum>,
        key: &str,
    ) -> Vec<(String, FileChecksum)> {
        let keys: Vec<String> = files
            .keys()
            .filter(|k| k.as_str() == key || below(key, k).is_some())
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|k| {
                let c = files.remove(&k)?;
                Some((k[key.len()..].to_string(), c))
            })
            .collect()
    }
}

impl crate::StoreLayer for RecordingStore {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }

    /// Not forwarded: a durable [`Store::write_parts`] through this store (so it is recorded), what
    /// [`Store::write_parts_unsynced`] does by default; [`Store::sync_file`] then has nothing to do.
    fn write_parts_unsynced(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        crate::provided::write_parts_unsynced(self, path, parts)
    }

    /// Not forwarded: nothing to do, every write through this store is durable.
    fn sync_file(&self, path: &str) -> Result<()> {
        crate::provided::sync_file(path)
    }

    fn write(&self, path: &str, data: &[u8]) -> Result<()> {
        Store::write_parts(self, path, &[data])
    }

    /// Passes the parts through to the inner store's `write_parts` (no concatenation), and
    /// computes their CRC32C incrementally in file order — on a second thread during the write
    /// from `PARALLEL_CRC_MIN` (16 MiB) bytes on.
    fn write_parts(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        let Some(key) = self.key(path) else {
            return self.inner.write_parts(path, parts);
        };
        let (written, c) = of_parts_beside(parts, || self.inner.write_parts(path, parts));
        written?;
        lock(&self.recorded).insert(key, c);
        Ok(())
    }

    fn write_if_absent(&self, path: &str, data: &[u8]) -> Result<()> {
        self.inner.write_if_absent(path, data)?;
        self.record_write(path, data);
        Ok(())
    }

    fn delete(&self, path: &str) -> Result<()> {
        self.inner.delete(path)?;
        if let Some(key) = self.key(path) {
            lock(&self.recorded).files.remove(&key);
        }
        Ok(())
    }

    fn delete_prefix(&self, path: &str) -> Result<()> {
        self.inner.delete_prefix(path)?;
        if self.covers_prefix(path) {
            lock(&self.recorded).files.clear();
        } else if let Some(key) = self.key(path) {
            Self::take_tree(&mut lock(&self.recorded).files, &key);
        }
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.inner.rename(from, to)?;
        if self.covers_prefix(from) {
            return Ok(());
        }
        if let Some(from_key) = self.key(from) {
            let mut rec = lock(&self.recorded);
            let moved = Self::take_tree(&mut rec.files, &from_key);
            if let Some(to_key) = self.key(to) {
                for (suffix, c) in moved {
                    rec.files.insert(format!("{to_key}{suffix}"), c);
                }
            }
        }
        Ok(())
    }
}

/// A [`Store`] that checks files against a [`ChecksumManifest`] as they are read, so that a
/// restore gets a `Corrupt` error instead of wrong data. ckpt's own; Orbax has no checksums.
///
/// On `read` of a path below `step_dir` whose key (path relative to `step_dir`) is in the
/// manifest, the data read is checked, size first, then CRC32C; a mismatch is an
/// [`ErrorKind::Corrupt`](ckpt_core::ErrorKind::Corrupt) error naming the file's location and saying what differs
/// (`truncated: 5 of 10 bytes`, `wrong size: 11 bytes, expected 10`,
/// `wrong crc32c: …, expected …`). A CRC covers a whole file, so the first `read_range` (or
/// `read_range_into`) of such a file streams the *whole* file through the check (in pieces, no
/// whole-file buffer); once it passed, that and every later range of the file is read straight
/// from the inner store. A file is so verified once per `VerifyingStore` (one restore): a file
/// rewritten during the restore, after its check, is not caught, as with any check made before
/// use. (Before, every range read the whole file again: restoring a 1 GiB pytree item ckpt
/// wrote, read in 1 MiB ranges of 32 MiB data files, read 32 GiB and took 14 s here.) Files not
/// in the manifest, and every other call, pass through unchecked. Meant for reading a committed
/// step; writing through it changes nothing in the manifest.
#[derive(Debug)]
pub struct VerifyingStore {
    inner: Arc<dyn Store>,
    step_dir: String,
    manifest: ChecksumManifest,
    /// Whether an item file the manifest does not list is refused
    /// ([`VerifyingStore::requiring_recorded_item_files`]).
    require_recorded: bool,
    /// Per manifest file read by ranges, whether it was checked whole: later ranges come
    /// straight from `inner`. A thread that wants a file another thread is checking waits for
    /// that check instead of reading the file again.
    verified: Mutex<std::collections::BTreeMap<String, Arc<Mutex<bool>>>>,
}

impl VerifyingStore {
    /// Wraps `inner`, checking files below `step_dir` against `manifest` (keys relative to
    /// `step_dir`).
    pub fn new(inner: Arc<dyn Store>, step_dir: &str, manifest: ChecksumManifest) -> Self {
        VerifyingStore {
            inner,
            step_dir: step_dir.to_string(),
            manifest,
            require_recorded: false,
            verified: Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    /// This store, refusing instead of passing through a read of a file *inside an item
    /// directory* (a key with a `/`: `state/tensors.safetensors`) that the manifest does not
    /// list: an [`ErrorKind::Corrupt`](ckpt_core::ErrorKind::Corrupt) error naming the file
    /// ([`FileStatus::Unrecorded`]). For steps ckpt wrote, whose manifest records every file
    /// of every item: an entry missing there means the manifest was emptied or replaced, or
    /// the file was added afterwards, and nothing vouches for its contents.
    pub fn requiring_recorded_item_files(mut self) -> Self {
        self.require_recorded = true;
        self
    }

    /// Wraps `inner` with the manifest stored in `<step_dir>/_CKPT_CHECKSUMS`; with an empty one
    /// (nothing checked) when the step has none.
    ///
    /// # Errors
    /// As [`ChecksumManifest::read_from`].
    pub fn load(inner: Arc<dyn Store>, step_dir: &str) -> Result<Self> {
        let manifest = ChecksumManifest::read_from(inner.as_ref(), step_dir)?.unwrap_or_default();
        Ok(VerifyingStore::new(inner, step_dir, manifest))
    }

    /// The manifest files are checked against.
    pub fn manifest(&self) -> &ChecksumManifest {
        &self.manifest
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// The checksum `path` must match, `None` when it is not checked.
    ///
    /// # Errors
    /// `Corrupt` ([`FileStatus::Unrecorded`]) for an unlisted item file that exists when
    /// recorded files are required (one that does not exist passes through, so that the read
    /// says `NotFound` as without this layer: handlers probe optional files); `Storage` when
    /// that existence check fails.
    fn expected(&self, path: &str) -> Result<Option<&FileChecksum>> {
        let Some(key) = below(&self.step_dir, path) else {
            return Ok(None);
        };
        match self.manifest.get(key) {
            Some(c) => Ok(Some(c)),
            None if self.require_recorded
                && key.contains('/')
                && self.inner.stat(path)?.is_some() =>
            {
                Err(corrupt(&self.inner.location(path), FileStatus::Unrecorded))
            }
            None => Ok(None),
        }
    }

    /// Checks that `start .. end` lies inside the file's recorded size (nothing is read when it
    /// does not), then the whole file at `path` against `expected`, once (streamed through
    /// [`VerifyingStream`]: size first, then CRC32C), unless an earlier call did.
    ///
    /// # Errors
    /// `Corrupt` when the file does not match; `InvalidArgument` for a range that is reversed
    /// or reaches beyond the end; as the inner store for the reads.
    fn verified_range(
        &self,
        path: &str,
        expected: &FileChecksum,
        start: u64,
        end: u64,
    ) -> Result<()> {
        if start > end {
            return Err(Error::invalid_argument(format!(
                "bad byte range {start}..{end}: start after end"
            ))
            .with_path(self.inner.location(path)));
        }
        // Against the recorded size, before anything is read: a range no intact file can hold
        // is refused at once.
        if end > expected.size {
            return Err(Error::invalid_argument(format!(
                "byte range {start}..{end} lies beyond the end of the file ({} bytes)",
                expected.size
            ))
            .with_path(self.inner.location(path)));
        }
        let gate = Arc::clone(lock(&self.verified).entry(path.to_string()).or_default());
        let mut checked = lock(&gate);
        if !*checked {
            self.open_read(path)?.finish()?;
            *checked = true;
        }
        Ok(())
    }

    fn checked(&self, path: &str, data: &[u8], expected: &FileChecksum) -> Result<()> {
        match expected.check(data) {
            FileStatus::Ok => Ok(()),
            status => Err(corrupt(&self.inner.location(path), status)),
        }
    }
}

impl crate::StoreLayer for VerifyingStore {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }

    /// Not forwarded: a durable [`Store::write_parts`] through this store (unchecked, as every write), what
    /// [`Store::write_parts_unsynced`] does by default; [`Store::sync_file`] then has nothing to do.
    fn write_parts_unsynced(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        crate::provided::write_parts_unsynced(self, path, parts)
    }

    /// Not forwarded: nothing to do, every write through this store is durable.
    fn sync_file(&self, path: &str) -> Result<()> {
        crate::provided::sync_file(path)
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        let data = self.inner.read(path)?;
        if let Some(expected) = self.expected(path)? {
            self.checked(path, &data, expected)?;
        }
        Ok(data)
    }

    /// A file in the manifest: its size is checked at once (a wrong size is `Corrupt` before
    /// anything is read), its CRC32C computed incrementally, in file order, over the buffers as
    /// they are filled (on a second thread, pipelined with the reading, for reads of
    /// `PARALLEL_CRC_MIN` (16 MiB) bytes or more), and compared in [`ReadStream::finish`], which first
    /// reads whatever the caller left unread. Other files pass through unchecked.
    fn open_read(&self, path: &str) -> Result<Box<dyn ReadStream + '_>> {
        let inner = self.inner.open_read(path)?;
        let Some(expected) = self.expected(path)? else {
            return Ok(inner);
        };
        let location = self.inner.location(path);
        if inner.size() != expected.size {
            return Err(corrupt(
                &location,
                FileStatus::WrongSize {
                    expected: expected.size,
                    actual: inner.size(),
                },
            ));
        }
        Ok(Box::new(VerifyingStream {
            inner,
            expected: *expected,
            crc: 0,
            location,
        }))
    }

    /// A file in the manifest is mapped with every page populated and checked over the
    /// mapping (size, then CRC32C, on two threads from `PARALLEL_CRC_MIN` (16 MiB) bytes on)
    /// before it is returned: a `Corrupt` error instead of a mapping of damaged bytes. Other
    /// files pass through unchecked.
    fn map_file(&self, path: &str, populate: bool) -> Result<Option<MappedFile>> {
        let Some(expected) = self.expected(path)? else {
            return self.inner.map_file(path, populate);
        };
        let Some(map) = self.inner.map_file(path, true)? else {
            return Ok(None);
        };
        let actual = map.len() as u64;
        if actual != expected.size {
            return Err(corrupt(
                map.location(),
                FileStatus::WrongSize {
                    expected: expected.size,
                    actual,
                },
            ));
        }
        let crc = crc_on_two_threads(&map);
        if crc != expected.crc32c {
            return Err(corrupt(
                map.location(),
                FileStatus::WrongCrc {
                    expected: expected.crc32c,
                    actual: crc,
                },
            ));
        }
        Ok(Some(map))
    }

    /// A file the manifest does not list (Orbax's) straight through; a listed one is checked
    /// whole the first time (see the type's docs), then the range read from the inner store.
    fn read_range_into(&self, path: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        let Some(expected) = self.expected(path)? else {
            return self.inner.read_range_into(path, offset, buf);
        };
        let end = offset.saturating_add(buf.len() as u64);
        self.verified_range(path, expected, offset, end)?;
        self.inner.read_range_into(path, offset, buf)
    }

    /// As [`Store::read_range_into`] above.
    fn read_range(&self, path: &str, range: Range<u64>) -> Result<Vec<u8>> {
        let Some(expected) = self.expected(path)? else {
            return self.inner.read_range(path, range);
        };
        self.verified_range(path, expected, range.start, range.end)?;
        self.inner.read_range(path, range)
    }
}

/// The piece [`VerifyingStream::finish`] reads at a time (256 KiB: it stays in the CPU's cache
/// between the read's copy and the CRC).
const FINISH_PIECE: usize = 256 << 10;

thread_local! {
    /// Each thread's buffer for [`VerifyingStream::finish`], kept between files.
    static FINISH_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The stream of [`VerifyingStore::open_read`] for a file in the manifest.
struct VerifyingStream<'a> {
    inner: Box<dyn ReadStream + 'a>,
    expected: FileChecksum,
    /// CRC32C of the bytes read so far.
    crc: u32,
    location: String,
}

impl VerifyingStream<'_> {
    /// Fills `bufs` in turn while a second thread computes the CRC of each piece (at most
    /// 4 MiB) as soon as it is filled (inline when no thread can be started).
    fn read_pipelined(&mut self, bufs: &mut [&mut [u8]]) -> Result<()> {
        let crc0 = self.crc;
        let inner = &mut self.inner;
        let pieces: Vec<&mut [u8]> = bufs
            .iter_mut()
            .flat_map(|b| b.chunks_mut(CRC_CHUNK))
            .collect();
        let summed: Result<u32> = std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<&[u8]>(4);
            let summer = std::thread::Builder::new()
                .name("ckpt-crc32c".into())
                .spawn_scoped(s, move || rx.iter().fold(crc0, crc32c::crc32c_append));
            let Ok(summer) = summer else {
                let mut c = crc0;
                for piece in pieces {
                    inner.read_exact(piece)?;
                    c = crc32c::crc32c_append(c, piece);
                }
                return Ok(c);
            };
            for piece in pieces {
                inner.read_exact(piece)?;
                let piece: &[u8] = piece;
                // Fails only if the summing thread is gone, which `join` reports below.
                let _ = tx.send(piece);
            }
            drop(tx);
            summer
                .join()
                .map_err(|_| Error::storage("the checksum thread panicked"))
        });
        self.crc = summed.map_err(|e| {
            if e.path().is_some() {
                e
            } else {
                e.with_path(self.location.clone())
            }
        })?;
        Ok(())
    }
}

impl ReadStream for VerifyingStream<'_> {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn position(&self) -> u64 {
        self.inner.position()
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        self.read_parts(&mut [buf])
    }

    /// Pipelined (see `read_pipelined`) when the buffers hold `PARALLEL_CRC_MIN` (16 MiB) bytes or
    /// more in all: the CRC of one piece is computed while the next is read.
    fn read_parts(&mut self, bufs: &mut [&mut [u8]]) -> Result<()> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total >= PARALLEL_CRC_MIN {
            return self.read_pipelined(bufs);
        }
        for b in bufs.iter_mut() {
            self.inner.read_exact(b)?;
            self.crc = crc32c::crc32c_append(self.crc, b);
        }
        Ok(())
    }

    /// Reads what the caller left unread in pieces of [`FINISH_PIECE`] bytes through a buffer
    /// kept per thread (a checked ranged read verifies each file this way: fresh memory per file
    /// cost more than the read itself), then compares the CRC.
    fn finish(mut self: Box<Self>) -> Result<()> {
        FINISH_BUF.with(|cell| -> Result<()> {
            let mut own = Vec::new();
            let mut kept = cell.try_borrow_mut();
            let rest = match kept.as_mut() {
                Ok(b) => &mut **b,
                Err(_) => &mut own,
            };
            let left = self.size().saturating_sub(self.position());
            let want = FINISH_PIECE.min(usize::try_from(left).unwrap_or(FINISH_PIECE));
            if rest.len() < want {
                rest.resize(want, 0);
            }
            while self.position() < self.size() {
                let n = want.min((self.size() - self.position()) as usize);
                self.inner.read_exact(&mut rest[..n])?;
                self.crc = crc32c::crc32c_append(self.crc, &rest[..n]);
            }
            Ok(())
        })?;
        let this = *self;
        this.inner.finish()?;
        if this.crc != this.expected.crc32c {
            return Err(corrupt(
                &this.location,
                FileStatus::WrongCrc {
                    expected: this.expected.crc32c,
                    actual: this.crc,
                },
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ckpt_core::ErrorKind;

    #[test]
    fn below_is_strict() {
        assert_eq!(below("a/b", "a/b/c"), Some("c"));
        assert_eq!(below("a/b", "a/b"), None);
        assert_eq!(below("a/b", "a/bc"), None);
        assert_eq!(below("a/b", "a/b/"), None);
        assert_eq!(below("", "x/y"), Some("x/y"));
        assert_eq!(below("", ""), None);
    }

    fn memory() -> Arc<dyn Store> {
        Arc::new(crate::OpendalStore::memory().unwrap())
    }

    /// Bytes that differ everywhere, `n` of them.
    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8 ^ (i >> 12) as u8).collect()
    }

    #[test]
    fn recording_write_parts_records_the_file_written() {
        // Small (inline CRC) and above PARALLEL_CRC_MIN (CRC on a second thread).
        for n in [1000, PARALLEL_CRC_MIN + 12345] {
            let inner = memory();
            let rec = RecordingStore::new(Arc::clone(&inner), "w", "item");
            let d = data(n);
            let (a, b) = d.split_at(n / 3);
            rec.write_parts("w/f", &[a, b]).unwrap();
            assert_eq!(inner.read("w/f").unwrap(), d);
            assert_eq!(rec.manifest().get("item/f"), Some(&FileChecksum::of(&d)));
            rec.write("w/g", b"xyz").unwrap();
            assert_eq!(
                rec.manifest().get("item/g"),
                Some(&FileChecksum::of(b"xyz"))
            );
            // Outside strip_prefix: written, not recorded.
            rec.write_parts("other", &[b"q"]).unwrap();
            assert_eq!(rec.manifest().len(), 2);
        }
    }

    /// Reads `path` of `store` in pieces of `piece` bytes (then `finish`), as a handler would.
    fn stream_all(store: &dyn Store, path: &str, piece: usize) -> Result<Vec<u8>> {
        let mut s = store.open_read(path)?;
        let mut out = vec![0u8; s.size() as usize];
        for chunk in out.chunks_mut(piece.max(1)) {
            s.read_exact(chunk)?;
        }
        s.finish()?;
        Ok(out)
    }

    /// Ranges of a checked file: the first checks the whole file once (a damaged file is
    /// `Corrupt` on any range, and stays so), later ones read only their bytes; ranges that
    /// reach beyond the end or run backwards are `InvalidArgument`.
    #[test]
    fn verifying_ranges_check_the_file_once_then_read_only_the_range() {
        let n = 1 << 20;
        let d = data(n);
        let counting = Arc::new(crate::CountingStore::new(memory()));
        counting.write("s/f", &d).unwrap();
        counting.write("s/g", &d).unwrap();
        let mut manifest = ChecksumManifest::new();
        manifest.insert("f", FileChecksum::of(&d));
        let mut damaged = d.clone();
        damaged[n / 2] ^= 1;
        manifest.insert("g", FileChecksum::of(&damaged));
        let inner: Arc<dyn Store> = counting.clone();
        let v = VerifyingStore::new(inner, "s", manifest);
        counting.reset();
        let piece = 64 << 10;
        for (i, at) in (0..n).step_by(piece).enumerate() {
            let mut buf = vec![0u8; piece];
            if i % 2 == 0 {
                v.read_range_into("s/f", at as u64, &mut buf).unwrap();
            } else {
                buf = v.read_range("s/f", at as u64..(at + piece) as u64).unwrap();
            }
            assert_eq!(buf, d[at..at + piece], "range at {at}");
        }
        // One whole pass for the check, then each range once: 2 MiB, not 16 x 1 MiB.
        assert_eq!(counting.counts().bytes_read, 2 * n as u64);
        for _ in 0..2 {
            let e = v.read_range("s/g", 0..10).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
        }
        let e = v.read_range("s/f", 10..(n as u64 + 1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        // A range beyond the recorded size is refused before anything is read.
        let fresh = VerifyingStore::new(counting.clone(), "s", {
            let mut m = ChecksumManifest::new();
            m.insert("f", FileChecksum::of(&d));
            m
        });
        counting.reset();
        let e = fresh.read_range("s/f", 0..(n as u64 + 1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert_eq!(counting.counts().bytes_read, 0);
        #[allow(clippy::reversed_empty_ranges)]
        let e = v.read_range("s/f", 10..5).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    }

    #[test]
    fn two_thread_crc_is_the_crc() {
        for n in [0, 5, PARALLEL_CRC_MIN, PARALLEL_CRC_MIN + 7] {
            let d = data(n);
            assert_eq!(crc_on_two_threads(&d), crc32c::crc32c(&d), "{n}");
        }
    }

    #[test]
    fn verifying_map_file_checks_over_the_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Store> = Arc::new(crate::LocalStore::open(dir.path()).unwrap());
        for n in [1000, PARALLEL_CRC_MIN + 4321] {
            let d = data(n);
            inner.write("s/f", &d).unwrap();
            let mut m = ChecksumManifest::new();
            m.insert("f", FileChecksum::of(&d));
            let v = VerifyingStore::new(Arc::clone(&inner), "s", m);
            let map = v.map_file("s/f", false).unwrap().unwrap();
            assert_eq!(&map[..], &d[..]);
            drop(map);
            // A flipped byte, a truncated file: Corrupt, naming the file.
            let mut bad = d.clone();
            bad[n - 2] ^= 0x01;
            inner.write("s/f", &bad).unwrap();
            let e = v.map_file("s/f", false).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
            assert!(e.to_string().contains("wrong crc32c"), "{e}");
            assert!(e.to_string().contains("/s/f"), "{e}");
            inner.write("s/f", &d[..n - 1]).unwrap();
            let e = v.map_file("s/f", false).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
            // Not in the manifest: mapped unchecked.
            inner.write("s/other", b"anything").unwrap();
            assert_eq!(
                &v.map_file("s/other", false).unwrap().unwrap()[..],
                b"anything"
            );
        }
        // No file: NotFound; a store without local files: None.
        let v = VerifyingStore::new(Arc::clone(&inner), "s", ChecksumManifest::new());
        assert_eq!(
            v.map_file("s/none", false).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        let mem = memory();
        mem.write("s/f", b"abc").unwrap();
        assert!(mem.map_file("s/f", true).unwrap().is_none());
    }

    #[test]
    fn verifying_open_read_checks_size_and_crc() {
        for n in [1000, PARALLEL_CRC_MIN + 4321] {
            let inner = memory();
            let d = data(n);
            inner.write("s/f", &d).unwrap();
            let mut m = ChecksumManifest::new();
            m.insert("f", FileChecksum::of(&d));
            let v = VerifyingStore::new(Arc::clone(&inner), "s", m.clone());
            // Whole, in pieces, and partly (finish reads and checks the rest).
            assert_eq!(stream_all(&v, "s/f", n).unwrap(), d);
            assert_eq!(stream_all(&v, "s/f", 7 << 20).unwrap(), d);
            let mut s = v.open_read("s/f").unwrap();
            let mut head = vec![0u8; n / 2];
            s.read_exact(&mut head).unwrap();
            s.finish().unwrap();
            // One flipped bit in the middle: the read succeeds, finish says Corrupt.
            let mut bad = d.clone();
            bad[n / 2 + 1] ^= 0x10;
            inner.write("s/f", &bad).unwrap();
            let e = stream_all(&v, "s/f", n).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
            assert!(e.to_string().contains("wrong crc32c"), "{e}");
            let mut s = v.open_read("s/f").unwrap();
            let mut head = vec![0u8; 10];
            s.read_exact(&mut head).unwrap();
            assert_eq!(s.finish().unwrap_err().kind(), ErrorKind::Corrupt);
            // Truncated: refused at open.
            inner.write("s/f", &d[..n - 1]).unwrap();
            let e = v.open_read("s/f").map(|s| s.size()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupt);
            assert!(e.to_string().contains("truncated"), "{e}");
            // Files not in the manifest pass through unchecked.
            inner.write("s/other", b"anything").unwrap();
            assert_eq!(stream_all(&v, "s/other", 3).unwrap(), b"anything");
        }
    }
}
