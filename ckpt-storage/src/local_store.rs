//! [`LocalStore`]: a [`Store`] on the local file system, with `std::fs` on the resolved absolute
//! path of its root: no opendal, no runtime, no task hand-off per call.
//!
//! What a checkpoint store needs of a local file system, and how it is done here:
//! * writes create the missing parent directories, then `write_all` each part straight from the
//!   caller's buffers, then `sync_all` (none for [`Store::write_parts_unsynced`], whose fsync is
//!   [`Store::sync_file`]); durable files of 8 MiB or more start their writeback piece by piece
//!   as they are written and leave the page cache once on the device
//!   ([`LocalStore::with_write_behind`]); [`Store::write_if_absent`] is `O_CREAT | O_EXCL`
//!   (`create_new`);
//! * `rename` is a plain `rename(2)` (directories too), after checking that the target does not
//!   exist (`rename(2)` would replace a file or an empty directory) and creating its parent;
//! * `stat`, `delete` and `delete_prefix` never follow a symbolic link (deleting a link removes
//!   the link only; `remove_dir_all` does not follow links inside the tree either);
//! * `list_dir` reads the directory with `std::fs::read_dir` and reports symbolic links as
//!   [`EntryKind::Symlink`]; `list_recursive` walks it, never through a link;
//! * every call but `stat`, `delete`, `delete_prefix`, `open_read` and `sync_dir` refuses a path
//!   that is, or goes through, a symbolic link below the root (nothing outside the root is read,
//!   written or listed);
//! * `sync_dir` fsyncs a directory; [`Store::lock_for_writing`] takes the root's writer lock
//!   ([`crate::writer_guard::local`]).
//!
//! Until issue 12 this was the local face of `OpendalStore`, which went through opendal's `fs`
//! service for `write_if_absent`, `create_dir` and `rename`; those now do with `std::fs` what
//! that service did (parents created, `create_new`, `sync_all`), so their errors carry the io
//! error itself as their source.

use crate::error_map::from_io;
use crate::path::{not_root, validate_path};
use crate::stream::IoStream;
use crate::{Capabilities, Entry, EntryKind, EntryMeta, MappedFile, ReadStream, Store, WriterLock};
use chrono::{DateTime, Utc};
use ckpt_core::{Error, ErrorKind, Result};
use std::fmt;
use std::io::Write as _;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

/// The default size (bytes) from which [`LocalStore`] writes durable files with write-behind
/// ([`LocalStore::with_write_behind`]): 8 MiB, one piece.
pub const WRITE_BEHIND_MIN_BYTES: u64 = crate::write_behind::PIECE_BYTES;

/// A [`Store`] on the local file system below a root directory.
///
/// Every call blocks the calling thread (plain `std::fs`).
///
/// Opening a store never creates its root: the root directory is created by the first call that
/// writes (`write`, `write_if_absent`, `create_dir`), and read-only calls on a missing root see
/// an empty store.
///
/// Symbolic links are listed and stat-ed as [`EntryKind::Symlink`] and are never followed by
/// `stat`, `delete` or `delete_prefix` (deleting a link removes the link only); reads, writes,
/// listings and renames refuse a path through a link below the root (see the module docs).
pub struct LocalStore {
    /// Absolute, with the symlinks of its existing ancestors resolved; valid UTF-8.
    root: PathBuf,
    /// Durable writes of at least this many bytes go through `O_DIRECT`
    /// ([`LocalStore::with_direct_io`]); `None`: never.
    direct_io_min_bytes: Option<u64>,
    /// Durable buffered writes of at least this many bytes use write-behind
    /// ([`LocalStore::with_write_behind`]); `None`: never.
    write_behind_min_bytes: Option<u64>,
}

impl fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("LocalStore");
        d.field("location", &self.location(""));
        if let Some(min) = self.direct_io_min_bytes {
            d.field("direct_io_min_bytes", &min);
        }
        if self.write_behind_min_bytes != Some(WRITE_BEHIND_MIN_BYTES) {
            d.field("write_behind_min_bytes", &self.write_behind_min_bytes);
        }
        d.finish()
    }
}

impl LocalStore {
    /// A store on the local file system rooted at `path`, which may be relative (to the current
    /// directory) and need not exist yet. The root is made absolute, with the symlinks of its
    /// existing ancestors resolved, and is what [`Store::location`] reports. Nothing is created.
    ///
    /// # Errors
    /// `InvalidArgument` for an empty path or one that is not valid UTF-8; `Storage` when the
    /// current directory cannot be read.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let root = resolve_root(path.as_ref())?;
        if root.to_str().is_none() {
            return Err(Error::invalid_argument("the local root is not valid UTF-8")
                .with_path(root.to_string_lossy().into_owned()));
        }
        Ok(LocalStore {
            root,
            direct_io_min_bytes: None,
            write_behind_min_bytes: Some(WRITE_BEHIND_MIN_BYTES),
        })
    }

    /// This store, writing every durable file ([`Store::write`], [`Store::write_parts`]) of at
    /// least `min_bytes` bytes with `O_DIRECT` (Linux): from a reused 8 MiB aligned buffer
    /// straight to the device, bypassing the page cache, then fsynced as always. ckpt's own,
    /// opt-in (issue 14): on machines where fresh page-cache pages are expensive (VMs that give
    /// freed memory back to their host) it about halves the time of a large save; in exchange
    /// the file is not left in the page cache (a restore right after the save reads the
    /// device) and each byte is copied once into the buffer. Files below `min_bytes`, writes
    /// without fsync ([`Store::write_parts_unsynced`]), file systems that refuse `O_DIRECT`
    /// (tmpfs) and other systems are written as before.
    pub fn with_direct_io(mut self, min_bytes: u64) -> Self {
        self.direct_io_min_bytes = Some(min_bytes);
        self
    }

    /// This store, writing every durable file ([`Store::write`], [`Store::write_parts`]) of at
    /// least `min_bytes` bytes with write-behind, or none with `None`. The default is
    /// [`WRITE_BEHIND_MIN_BYTES`] (8 MiB). ckpt's own (issue 14).
    ///
    /// Write-behind: the file goes through the page cache as usual, but the writeback of each
    /// 8 MiB piece starts as soon as it is written (`sync_file_range(2)`), and each piece's
    /// pages leave the cache once on the device, four pieces behind the writer
    /// (`POSIX_FADV_DONTNEED`); then the file is fsynced as always. The device is busy from
    /// the first piece instead of from the fsync, and the file holds at most 40 MiB of page
    /// cache, reused piece after piece. On this project's VMs a 1 GiB save went from 0.8–3.8 s
    /// to 0.5–0.9 s (`ckpt-bench profile sync-loop`). In exchange the file is not left in the
    /// page cache: a restore right after the save reads the device. Linux only; elsewhere, and
    /// on file systems that cannot start a range's writeback, the file is written plainly.
    /// Files written with `O_DIRECT` ([`LocalStore::with_direct_io`]) do not use it.
    pub fn with_write_behind(mut self, min_bytes: Option<u64>) -> Self {
        self.write_behind_min_bytes = min_bytes;
        self
    }

    /// The absolute local path of a (validated) store path.
    fn local_path(&self, path: &str) -> PathBuf {
        if path.is_empty() {
            self.root.clone()
        } else {
            self.root.join(path)
        }
    }

    fn io_err(&self, e: std::io::Error, what: &str, path: &str) -> Error {
        from_io(e, what, self.location(path))
    }

    /// Refuses `path` if it, or a directory on the way to it below the root, is a symbolic
    /// link, so that no read, write, listing or rename ever goes through a link to a place
    /// outside the root (issue 4: nothing outside the root is read, written or deleted).
    /// Components that do not exist end the check (the operation itself then reports them).
    ///
    /// # Errors
    /// `InvalidArgument` naming the link.
    fn refuse_links(&self, path: &str) -> Result<()> {
        let mut at = self.root.clone();
        for component in path.split('/').filter(|c| !c.is_empty()) {
            at.push(component);
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(Error::invalid_argument(format!(
                        "refusing to follow the symbolic link {} inside the checkpoint root",
                        at.display()
                    ))
                    .with_path(self.location(path)))
                }
                Ok(_) => {}
                Err(_) => return Ok(()),
            }
        }
        Ok(())
    }

    /// `symlink_metadata` of a store path; `None` when nothing is there (also when a parent is
    /// a file).
    fn local_meta(&self, path: &str) -> Result<Option<std::fs::Metadata>> {
        match std::fs::symlink_metadata(self.local_path(path)) {
            Ok(m) => Ok(Some(m)),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(self.io_err(e, "stat", path)),
        }
    }

    /// Creates the missing parent directories of the file `abs` (`what` names the call in the
    /// error).
    fn create_parents(&self, abs: &Path, what: &str, path: &str) -> Result<()> {
        if let Some(parent) = abs.parent() {
            std::fs::create_dir_all(parent).map_err(|e| self.io_err(e, what, path))?;
        }
        Ok(())
    }

    /// Writes `parts` to the local file `path`: creates the missing parent directories, creates
    /// or truncates the file, writes each part, then `sync_all` when `sync`.
    fn write_local(&self, path: &str, parts: &[&[u8]], sync: bool) -> Result<()> {
        let abs = self.local_path(path);
        self.create_parents(&abs, "write", path)?;
        let total: u64 = parts.iter().map(|p| p.len() as u64).sum();
        if sync && self.direct_io_min_bytes.is_some_and(|min| total >= min) {
            let written = crate::direct_io::write_direct(&abs, parts)
                .map_err(|e| self.io_err(e, "write (O_DIRECT)", path))?;
            if let Some(f) = written {
                return f.sync_all().map_err(|e| self.io_err(e, "fsync", path));
            }
        }
        let mut f = std::fs::File::create(&abs).map_err(|e| self.io_err(e, "write", path))?;
        if sync && self.write_behind_min_bytes.is_some_and(|min| total >= min) {
            crate::write_behind::write_behind(&mut f, parts)
                .map_err(|e| self.io_err(e, "write", path))?;
            f.sync_all().map_err(|e| self.io_err(e, "fsync", path))?;
            crate::write_behind::drop_cached(&f);
            return Ok(());
        }
        for part in parts {
            f.write_all(part)
                .map_err(|e| self.io_err(e, "write", path))?;
        }
        if !sync {
            return Ok(());
        }
        f.sync_all().map_err(|e| self.io_err(e, "fsync", path))
    }

    /// Opens the local file `path` for reading, with its size: `NotFound` when nothing is there
    /// or it is a directory.
    fn open_local(&self, path: &str) -> Result<(std::fs::File, u64)> {
        let f = std::fs::File::open(self.local_path(path)).map_err(|e| {
            let kind = if is_missing(&e) {
                ErrorKind::NotFound
            } else {
                ErrorKind::Storage
            };
            Error::new(kind, "read failed")
                .with_path(self.location(path))
                .with_source(e)
        })?;
        let meta = f.metadata().map_err(|e| self.io_err(e, "stat", path))?;
        if meta.is_dir() {
            return Err(
                Error::not_found("no file: the path is a directory").with_path(self.location(path))
            );
        }
        Ok((f, meta.len()))
    }

    /// The file at `path` (no symlink on the way) for reading `len` bytes from `start`, checked
    /// to hold them.
    ///
    /// # Errors
    /// As [`LocalStore::open_local`]; `InvalidArgument` when the range lies beyond the end.
    fn open_range(&self, path: &str, start: u64, len: u64) -> Result<std::fs::File> {
        self.refuse_links(path)?;
        let (f, size) = self.open_local(path)?;
        if start.checked_add(len).is_none_or(|end| end > size) {
            return Err(Error::invalid_argument(format!(
                "byte range {start}..{} lies beyond the end of the file ({size} bytes)",
                start.saturating_add(len)
            ))
            .with_path(self.location(path)));
        }
        Ok(f)
    }

    /// The entries of directory `path`, with `std::fs::read_dir`, links reported as links.
    fn list_local(&self, path: &str) -> Result<Vec<Entry>> {
        let rd = match std::fs::read_dir(self.local_path(path)) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                return Err(Error::storage("cannot list: not a directory")
                    .with_path(self.location(path))
                    .with_source(e));
            }
            Err(e) => return Err(self.io_err(e, "list", path)),
        };
        let mut out = Vec::new();
        for de in rd {
            let de = de.map_err(|e| self.io_err(e, "list", path))?;
            let ft = match de.file_type() {
                Ok(ft) => ft,
                // Removed between readdir and the type lookup.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io_err(e, "list", path)),
            };
            let Ok(name) = de.file_name().into_string() else {
                tracing::warn!(
                    dir = %self.location(path),
                    name = ?de.file_name(),
                    "skipping a directory entry whose name is not UTF-8"
                );
                continue;
            };
            let kind = if ft.is_symlink() {
                EntryKind::Symlink
            } else if ft.is_dir() {
                EntryKind::Dir
            } else {
                EntryKind::File
            };
            out.push(Entry { name, kind });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// Makes `path` absolute: the longest existing prefix is canonicalized (symlinks resolved), the
/// rest is appended with `.` and `..` resolved lexically.
fn resolve_root(path: &Path) -> Result<PathBuf> {
    if path.as_os_str().is_empty() {
        return Err(Error::invalid_argument("the local root path is empty"));
    }
    let abs = std::path::absolute(path).map_err(|e| {
        from_io(
            e,
            "making the local root absolute",
            path.to_string_lossy().into_owned(),
        )
    })?;
    let comps: Vec<Component<'_>> = abs.components().collect();
    for split in (1..=comps.len()).rev() {
        let head: PathBuf = comps[..split].iter().collect();
        if let Ok(mut out) = head.canonicalize() {
            for c in &comps[split..] {
                match c {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::Normal(n) => out.push(n),
                    Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
                }
            }
            return Ok(out);
        }
    }
    Ok(abs)
}

/// Whether an io error means "nothing is there".
fn is_missing(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    )
}

impl Store for LocalStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            rename: true,
            write_if_absent: true,
            directories: true,
            durable: true,
            local: true,
            retries: false,
        }
    }

    fn location(&self, path: &str) -> String {
        self.local_path(path).to_string_lossy().into_owned()
    }

    /// As `write_parts` of one part.
    fn write(&self, path: &str, data: &[u8]) -> Result<()> {
        self.write_parts(path, &[data])
    }

    /// `write_all` of each part straight from the caller's buffers, then `sync_all` (parent
    /// directories created first).
    fn write_parts(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        validate_path(path)?;
        not_root(path, "write")?;
        self.refuse_links(path)?;
        self.write_local(path, parts, true)
    }

    /// The parts go to the page cache without an fsync (see [`Store::sync_file`]).
    fn write_parts_unsynced(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        validate_path(path)?;
        not_root(path, "write")?;
        self.refuse_links(path)?;
        self.write_local(path, parts, false)
    }

    /// fsync of the file `path` (opened again: the fsync covers the file's data whoever wrote
    /// it).
    fn sync_file(&self, path: &str) -> Result<()> {
        validate_path(path)?;
        self.refuse_links(path)?;
        let f = self.open_local(path).map(|(f, _)| f)?;
        f.sync_all().map_err(|e| self.io_err(e, "fsync", path))
    }

    /// `create_new` (`O_CREAT | O_EXCL`): of two writers only one creates the file, the other
    /// gets `AlreadyExists` (also when a directory is there). Parents created first; the file
    /// is fsynced.
    fn write_if_absent(&self, path: &str, data: &[u8]) -> Result<()> {
        validate_path(path)?;
        not_root(path, "write_if_absent")?;
        self.refuse_links(path)?;
        let abs = self.local_path(path);
        self.create_parents(&abs, "conditional write", path)?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&abs)
            .map_err(|e| self.io_err(e, "conditional write", path))?;
        f.write_all(data)
            .and_then(|()| f.sync_all())
            .map_err(|e| self.io_err(e, "conditional write", path))
    }

    /// One open and read.
    fn read(&self, path: &str) -> Result<Vec<u8>> {
        use std::io::Read as _;
        validate_path(path)?;
        not_root(path, "read")?;
        self.refuse_links(path)?;
        let (mut f, size) = self.open_local(path)?;
        let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        f.read_to_end(&mut buf)
            .map_err(|e| self.io_err(e, "read", path))?;
        Ok(buf)
    }

    /// A seek and one read of the range.
    fn read_range(&self, path: &str, range: Range<u64>) -> Result<Vec<u8>> {
        use std::os::unix::fs::FileExt as _;
        validate_path(path)?;
        not_root(path, "read_range")?;
        if range.start > range.end {
            return Err(Error::invalid_argument(format!(
                "bad byte range {}..{}: start after end",
                range.start, range.end
            ))
            .with_path(self.location(path)));
        }
        let f = self.open_range(path, range.start, range.end - range.start)?;
        let len = usize::try_from(range.end - range.start).map_err(|_| {
            Error::invalid_argument("byte range too large for this platform")
                .with_path(self.location(path))
        })?;
        let mut buf = crate::try_zeroed_bytes(len).ok_or_else(|| {
            Error::invalid_argument(format!("{len} bytes cannot be allocated for a ranged read"))
                .with_path(self.location(path))
        })?;
        f.read_exact_at(&mut buf, range.start)
            .map_err(|e| self.io_err(e, "ranged read", path))?;
        Ok(buf)
    }

    /// Straight into `buf` with `pread` (no buffer of its own).
    fn read_range_into(&self, path: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        use std::os::unix::fs::FileExt as _;
        validate_path(path)?;
        not_root(path, "read_range")?;
        let f = self.open_range(path, offset, buf.len() as u64)?;
        f.read_exact_at(buf, offset)
            .map_err(|e| self.io_err(e, "ranged read", path))
    }

    /// The open file, read as the caller asks (no copy of the whole file).
    fn open_read(&self, path: &str) -> Result<Box<dyn ReadStream + '_>> {
        validate_path(path)?;
        not_root(path, "read")?;
        let (f, size) = self.open_local(path)?;
        Ok(Box::new(IoStream {
            inner: f,
            size,
            pos: 0,
            location: self.location(path),
        }))
    }

    /// `mmap` of the open file (no symbolic link on the way, as for reads).
    fn map_file(&self, path: &str, populate: bool) -> Result<Option<MappedFile>> {
        validate_path(path)?;
        not_root(path, "map")?;
        self.refuse_links(path)?;
        let (f, _) = self.open_local(path)?;
        MappedFile::map(&f, self.location(path), populate).map(Some)
    }

    /// `symlink_metadata`: a link is a [`EntryKind::Symlink`] of size 0, never followed.
    fn stat(&self, path: &str) -> Result<Option<EntryMeta>> {
        validate_path(path)?;
        let Some(m) = self.local_meta(path)? else {
            return Ok(None);
        };
        let ft = m.file_type();
        let (kind, size) = if ft.is_symlink() {
            (EntryKind::Symlink, 0)
        } else if ft.is_dir() {
            (EntryKind::Dir, 0)
        } else {
            (EntryKind::File, m.len())
        };
        Ok(Some(EntryMeta {
            kind,
            size,
            modified: m.modified().ok().map(DateTime::<Utc>::from),
        }))
    }

    /// `std::fs::read_dir`: opendal's fs lister could not report links (it stats "unknown"
    /// entries through the link, drops dangling links, and in debug builds panics on a link to
    /// a directory).
    fn list_dir(&self, path: &str) -> Result<Vec<Entry>> {
        validate_path(path)?;
        self.refuse_links(path)?;
        self.list_local(path)
    }

    /// A walk with `read_dir` per directory; links are not followed (nor listed).
    fn list_recursive(&self, path: &str) -> Result<Vec<String>> {
        validate_path(path)?;
        self.refuse_links(path)?;
        let mut out = Vec::new();
        let mut stack = vec![String::new()];
        while let Some(rel) = stack.pop() {
            let dir = crate::join_path(path, &rel);
            for e in self.list_local(&dir)? {
                let child = crate::join_path(&rel, &e.name);
                match e.kind {
                    EntryKind::File => out.push(child),
                    EntryKind::Dir => stack.push(child),
                    EntryKind::Symlink => {}
                }
            }
        }
        Ok(out)
    }

    /// `create_dir_all` (the root too, for `""`).
    fn create_dir(&self, path: &str) -> Result<()> {
        validate_path(path)?;
        self.refuse_links(path)?;
        std::fs::create_dir_all(self.local_path(path))
            .map_err(|e| self.io_err(e, "create_dir", path))
    }

    /// Removes one file or link; a directory is refused (`InvalidArgument`).
    fn delete(&self, path: &str) -> Result<()> {
        validate_path(path)?;
        not_root(path, "delete")?;
        let Some(m) = self.local_meta(path)? else {
            return Ok(());
        };
        if m.file_type().is_dir() {
            return Err(Error::invalid_argument(
                "delete removes one file; this is a directory (use delete_prefix)",
            )
            .with_path(self.location(path)));
        }
        match std::fs::remove_file(self.local_path(path)) {
            Ok(()) => Ok(()),
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) => Err(self.io_err(e, "delete", path)),
        }
    }

    /// `remove_dir_all` of a directory; a link (even to a directory) is removed as a file, its
    /// target never touched.
    fn delete_prefix(&self, path: &str) -> Result<()> {
        validate_path(path)?;
        if path.is_empty() {
            return Err(
                Error::invalid_argument("refusing to delete the whole store root")
                    .with_path(self.location(path)),
            );
        }
        let Some(m) = self.local_meta(path)? else {
            return Ok(());
        };
        let abs = self.local_path(path);
        // `remove_dir_all` does not follow links found inside the tree either.
        let removed = if m.file_type().is_dir() {
            std::fs::remove_dir_all(&abs)
        } else {
            std::fs::remove_file(&abs)
        };
        match removed {
            Ok(()) => Ok(()),
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) => Err(self.io_err(e, "delete_prefix", path)),
        }
    }

    /// `rename(2)`, after the checks (the parent of `to` is created).
    fn rename(&self, from: &str, to: &str) -> Result<()> {
        validate_path(from)?;
        validate_path(to)?;
        not_root(from, "rename")?;
        not_root(to, "rename")?;
        self.refuse_links(from)?;
        self.refuse_links(to)?;
        if from == to || to.starts_with(&format!("{from}/")) {
            return Err(Error::invalid_argument(format!(
                "cannot rename {from:?} to itself or into itself ({to:?})"
            ))
            .with_path(self.location(from)));
        }
        if self.stat(from)?.is_none() {
            return Err(Error::not_found("nothing to rename").with_path(self.location(from)));
        }
        // Check first: rename(2) would silently replace a file or an empty directory. Another
        // process creating `to` between the check and the rename can still be replaced.
        if self.stat(to)?.is_some() {
            return Err(Error::new(ErrorKind::AlreadyExists, "rename target exists")
                .with_path(self.location(to)));
        }
        let target = self.local_path(to);
        self.create_parents(&target, "rename", from)?;
        std::fs::rename(self.local_path(from), &target).map_err(|e| self.io_err(e, "rename", from))
    }

    /// A POSIX record lock on `<root>/.ckpt-writer.lock`, released by the kernel when the
    /// process dies (so a crashed writer never leaves a stale lock) and never inherited by child
    /// processes ([`crate::writer_guard::local`]). The root must exist (managers create it
    /// first).
    fn lock_for_writing(&self) -> Result<Option<Box<dyn WriterLock>>> {
        crate::writer_guard::local::lock_local_root(&self.root, &self.location("")).map(Some)
    }

    /// fsync of the directory.
    fn sync_dir(&self, path: &str) -> Result<()> {
        validate_path(path)?;
        let dir = std::fs::File::open(self.local_path(path))
            .map_err(|e| self.io_err(e, "opening the directory to sync it", path))?;
        dir.sync_all()
            .map_err(|e| self.io_err(e, "fsync of the directory", path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_root_lexically_below_existing() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let got = resolve_root(&tmp.path().join("a/./b/../c")).unwrap();
        assert_eq!(got, base.join("a/c"));
        assert!(
            !base.join("a").exists(),
            "resolving must not create anything"
        );
    }
}
