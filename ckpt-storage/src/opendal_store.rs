//! [`OpendalStore`]: the one [`Store`] implementation, over opendal's blocking operator.
//!
//! Every backend goes through `opendal::blocking::Operator`. The local file system adds what
//! opendal's `fs` service does not do, or does in a way a checkpoint store cannot use, with
//! `std::fs` on the resolved absolute path (the store knows its local root):
//! * `stat`, `delete` and `delete_prefix` never follow a symbolic link (opendal's fs service
//!   stats through links, so its recursive delete of a link to a directory fails);
//! * `sync_dir` fsyncs a directory (opendal has no such call);
//! * `list_dir` reads the directory with `std::fs::read_dir` and reports symbolic links as
//!   [`EntryKind::Symlink`]: opendal's lister stats entries it calls "unknown" through the link,
//!   drops dangling links, and in debug builds panics (a `debug_assert` in `oio::Entry::with`,
//!   inside its blocking task, so it comes back as an error) on a link to a directory.
//!
//! Facts about opendal 0.59.5 this module relies on (read in its source and checked by this
//! crate's tests): the fs writer calls `sync_all` on the file when it closes; fs `rename` is a
//! plain `rename(2)`, so it moves directories too (as long as neither path ends in `/`), creates
//! the parent of the target, and silently replaces an existing file or empty directory; reading
//! a directory is an "unexpected" io error; opendal trims
//! whitespace at both ends of every path it is given (hence [`crate::validate_path`] rejects
//! components that begin or end with whitespace); the memory service has no directories,
//! `create_dir` on it would write a marker object, and it has no rename.

use crate::path::validate_path;
use crate::runtime::runtime;
use crate::{Capabilities, Entry, EntryKind, EntryMeta, Store, WriterLock};
use chrono::{DateTime, Utc};
use ckpt_core::{Error, ErrorKind, Result};
use opendal::blocking;
use opendal::options::{DeleteOptions, ReadOptions, WriteOptions};
use std::fmt;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Which opendal service a store uses, and what it needs to know beyond the operator. Adding a
/// service (S3, GCS, Azure) is one variant here and one arm in each `match` on it.
#[derive(Debug, Clone)]
enum Backend {
    /// The local file system below `root`: absolute, with the symlinks of its existing
    /// ancestors resolved.
    Fs { root: PathBuf },
    /// Process memory: nothing survives the store.
    Memory,
}

impl Backend {
    fn capabilities(&self) -> Capabilities {
        match self {
            Backend::Fs { .. } => Capabilities {
                rename: true,
                write_if_absent: true,
                directories: true,
                durable: true,
            },
            Backend::Memory => Capabilities {
                rename: false,
                write_if_absent: true,
                directories: false,
                durable: false,
            },
        }
    }

    fn location(&self, path: &str) -> String {
        match self {
            Backend::Fs { root } => {
                if path.is_empty() {
                    root.to_string_lossy().into_owned()
                } else {
                    root.join(path).to_string_lossy().into_owned()
                }
            }
            Backend::Memory => format!("memory:///{path}"),
        }
    }

    /// Builds the async operator. For `Fs` this creates the root directory when it is missing
    /// (opendal's fs builder does so), so it is deferred until something is written.
    fn build(&self) -> Result<opendal::Operator> {
        let built = match self {
            Backend::Fs { root } => {
                let root_str = root.to_str().ok_or_else(|| {
                    Error::invalid_argument("the local root is not valid UTF-8")
                        .with_path(root.to_string_lossy().into_owned())
                })?;
                opendal::Operator::new(opendal::services::Fs::default().root(root_str))
            }
            Backend::Memory => opendal::Operator::new(opendal::services::Memory::default()),
        };
        built.map_err(|e| from_opendal(e, "opening the store", self.location("")))
    }

    fn local_root(&self) -> Option<&Path> {
        match self {
            Backend::Fs { root } => Some(root),
            Backend::Memory => None,
        }
    }
}

/// A [`Store`] over `opendal::blocking::Operator`: the local file system or memory (object stores
/// come later, as more opendal services).
///
/// Every call blocks the calling thread; do not call it from an async task (opendal's blocking
/// operator panics there, notes/dependencies.md G4); use `spawn_blocking` or a plain thread. The
/// operator is driven by one private process-wide multi-thread tokio runtime.
///
/// Local stores never create their root just by being opened: the root directory is created by
/// the first call that writes (`write`, `write_if_absent`, `create_dir`, `rename`), and read-only
/// calls on a missing root see an empty store.
///
/// Symbolic links on a local file system are listed and stat-ed as [`EntryKind::Symlink`] and are
/// never followed by `stat`, `delete` or `delete_prefix` (deleting a link removes the link only).
/// `read` and `write` do go through a link, as `open(2)` does.
pub struct OpendalStore {
    backend: Backend,
    /// The blocking operator once built (see [`Backend::build`]); cloning one is cheap.
    op: Mutex<Option<blocking::Operator>>,
}

impl fmt::Debug for OpendalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpendalStore")
            .field("location", &self.backend.location(""))
            .finish()
    }
}

impl OpendalStore {
    /// A store on the local file system rooted at `path`, which may be relative (to the current
    /// directory) and need not exist yet. The root is made absolute, with the symlinks of its
    /// existing ancestors resolved, and is what [`Store::location`] reports.
    ///
    /// # Errors
    /// `InvalidArgument` for an empty path or one that is not valid UTF-8; `Storage` when the
    /// current directory cannot be read or the tokio runtime cannot be built; any error of
    /// opening the fs service when the root already exists.
    pub fn local(path: impl AsRef<Path>) -> Result<Self> {
        let root = resolve_root(path.as_ref())?;
        if root.to_str().is_none() {
            return Err(Error::invalid_argument("the local root is not valid UTF-8")
                .with_path(root.to_string_lossy().into_owned()));
        }
        let store = OpendalStore {
            backend: Backend::Fs { root },
            op: Mutex::new(None),
        };
        runtime()?;
        if store.backend.local_root().is_some_and(Path::exists) {
            store.op()?;
        }
        Ok(store)
    }

    /// A fresh, empty store in process memory (each call gives a new one); locations are
    /// `memory:///<path>`. It has no rename, no directories and no durability, so commits on it
    /// use the commit-file protocol.
    ///
    /// # Errors
    /// `Storage` when the tokio runtime cannot be built.
    pub fn memory() -> Result<Self> {
        let store = OpendalStore {
            backend: Backend::Memory,
            op: Mutex::new(None),
        };
        store.op()?;
        Ok(store)
    }

    /// The blocking operator, built on first use (which creates a missing local root).
    fn op(&self) -> Result<blocking::Operator> {
        let mut slot = self
            .op
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(op) = slot.as_ref() {
            return Ok(op.clone());
        }
        let rt = runtime()?;
        let async_op = self.backend.build()?;
        let _guard = rt.enter();
        let op = blocking::Operator::new(async_op)
            .map_err(|e| from_opendal(e, "opening the store", self.backend.location("")))?;
        *slot = Some(op.clone());
        Ok(op)
    }

    /// The operator for a read-only call, or `None` when the local root does not exist yet (and
    /// so must not be created by reading).
    fn op_for_reading(&self) -> Result<Option<blocking::Operator>> {
        {
            let slot = self
                .op
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(op) = slot.as_ref() {
                return Ok(Some(op.clone()));
            }
        }
        match self.backend.local_root() {
            Some(root) if !root.exists() => Ok(None),
            _ => self.op().map(Some),
        }
    }

    /// The absolute local path of a (validated) store path, for the fs-only calls.
    fn local_path(root: &Path, path: &str) -> PathBuf {
        if path.is_empty() {
            root.to_path_buf()
        } else {
            root.join(path)
        }
    }

    fn err(&self, e: opendal::Error, what: &str, path: &str) -> Error {
        from_opendal(e, what, self.backend.location(path))
    }

    fn io_err(&self, e: std::io::Error, what: &str, path: &str) -> Error {
        from_io(e, what, self.backend.location(path))
    }

    /// `symlink_metadata` of a local path; `None` when nothing is there (also when a parent is
    /// a file).
    fn local_meta(&self, root: &Path, path: &str) -> Result<Option<std::fs::Metadata>> {
        match std::fs::symlink_metadata(Self::local_path(root, path)) {
            Ok(m) => Ok(Some(m)),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(self.io_err(e, "stat", path)),
        }
    }
}

impl OpendalStore {
    /// `list_dir` on a local file system, with `std::fs::read_dir`: opendal's fs lister cannot
    /// report links (its listing stats "unknown" entries through the link, drops dangling links,
    /// and in debug builds panics on a link to a directory).
    fn list_local(&self, root: &Path, path: &str) -> Result<Vec<Entry>> {
        let abs = Self::local_path(root, path);
        let rd = match std::fs::read_dir(&abs) {
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

/// Maps an opendal error to ours: NotFound → NotFound, AlreadyExists and ConditionNotMatch (a
/// lost conditional create) → AlreadyExists, Unsupported → Unsupported, anything else → Storage;
/// with the location and the opendal error as the source.
pub(crate) fn from_opendal(e: opendal::Error, what: &str, location: String) -> Error {
    let kind = match e.kind() {
        opendal::ErrorKind::NotFound => ErrorKind::NotFound,
        opendal::ErrorKind::AlreadyExists | opendal::ErrorKind::ConditionNotMatch => {
            ErrorKind::AlreadyExists
        }
        opendal::ErrorKind::Unsupported => ErrorKind::Unsupported,
        _ => ErrorKind::Storage,
    };
    Error::new(kind, format!("{what} failed"))
        .with_path(location)
        .with_source(e)
}

/// Maps a std io error as [`from_opendal`] does.
pub(crate) fn from_io(e: std::io::Error, what: &str, location: String) -> Error {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        std::io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
        std::io::ErrorKind::Unsupported => ErrorKind::Unsupported,
        _ => ErrorKind::Storage,
    };
    Error::new(kind, format!("{what} failed"))
        .with_path(location)
        .with_source(e)
}

fn to_utc(t: std::time::SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(t)
}

/// Rejects the root where a call needs a path below it.
fn not_root(path: &str, what: &str) -> Result<()> {
    if path.is_empty() {
        return Err(Error::invalid_argument(format!(
            "{what} needs a path below the root, not the root itself"
        ))
        .with_path(path.to_string()));
    }
    Ok(())
}

impl Store for OpendalStore {
    fn capabilities(&self) -> Capabilities {
        self.backend.capabilities()
    }

    fn location(&self, path: &str) -> String {
        self.backend.location(path)
    }

    fn write(&self, path: &str, data: &[u8]) -> Result<()> {
        validate_path(path)?;
        not_root(path, "write")?;
        self.op()?
            .write(path, data.to_vec())
            .map_err(|e| self.err(e, "write", path))?;
        Ok(())
    }

    fn write_if_absent(&self, path: &str, data: &[u8]) -> Result<()> {
        validate_path(path)?;
        not_root(path, "write_if_absent")?;
        let opts = WriteOptions {
            if_not_exists: true,
            ..Default::default()
        };
        self.op()?
            .write_options(path, data.to_vec(), opts)
            .map_err(|e| self.err(e, "conditional write", path))?;
        Ok(())
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        validate_path(path)?;
        not_root(path, "read")?;
        let Some(op) = self.op_for_reading()? else {
            return Err(Error::not_found("no file (the store root does not exist)")
                .with_path(self.location(path)));
        };
        match op.read(path) {
            Ok(buf) => Ok(buf.to_vec()),
            Err(e) if e.kind() == opendal::ErrorKind::IsADirectory => {
                Err(Error::not_found("no file: the path is a directory")
                    .with_path(self.location(path))
                    .with_source(e))
            }
            Err(e) => {
                // opendal's fs service reports reading a directory as an "unexpected" io error.
                if let Some(root) = self.backend.local_root() {
                    if let Ok(Some(m)) = self.local_meta(root, path) {
                        if m.is_dir() {
                            return Err(Error::not_found("no file: the path is a directory")
                                .with_path(self.location(path))
                                .with_source(e));
                        }
                    }
                }
                Err(self.err(e, "read", path))
            }
        }
    }

    fn read_range(&self, path: &str, range: Range<u64>) -> Result<Vec<u8>> {
        validate_path(path)?;
        not_root(path, "read_range")?;
        if range.start > range.end {
            return Err(Error::invalid_argument(format!(
                "bad byte range {}..{}: start after end",
                range.start, range.end
            ))
            .with_path(self.location(path)));
        }
        let Some(op) = self.op_for_reading()? else {
            return Err(Error::not_found("no file (the store root does not exist)")
                .with_path(self.location(path)));
        };
        let meta = op.stat(path).map_err(|e| self.err(e, "stat", path))?;
        if meta.is_dir() {
            return Err(
                Error::not_found("no file: the path is a directory").with_path(self.location(path))
            );
        }
        let size = meta.content_length();
        if range.end > size {
            return Err(Error::invalid_argument(format!(
                "byte range {}..{} lies beyond the end of the file ({size} bytes)",
                range.start, range.end
            ))
            .with_path(self.location(path)));
        }
        if range.start == range.end {
            return Ok(Vec::new());
        }
        let len = range.end - range.start;
        let opts = ReadOptions {
            range: range.into(),
            ..Default::default()
        };
        let buf = op
            .read_options(path, opts)
            .map_err(|e| self.err(e, "ranged read", path))?;
        if buf.len() as u64 != len {
            return Err(Error::storage(format!(
                "ranged read returned {} bytes where {len} were asked for",
                buf.len()
            ))
            .with_path(self.location(path)));
        }
        Ok(buf.to_vec())
    }

    fn stat(&self, path: &str) -> Result<Option<EntryMeta>> {
        validate_path(path)?;
        if let Some(root) = self.backend.local_root() {
            let Some(m) = self.local_meta(root, path)? else {
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
            return Ok(Some(EntryMeta {
                kind,
                size,
                modified: m.modified().ok().map(to_utc),
            }));
        }
        if path.is_empty() {
            return Ok(Some(EntryMeta {
                kind: EntryKind::Dir,
                size: 0,
                modified: None,
            }));
        }
        let Some(op) = self.op_for_reading()? else {
            return Ok(None);
        };
        match op.stat(path) {
            Ok(m) => {
                let modified = m.last_modified().map(|t| to_utc(t.into()));
                if m.is_dir() {
                    return Ok(Some(EntryMeta {
                        kind: EntryKind::Dir,
                        size: 0,
                        modified,
                    }));
                }
                return Ok(Some(EntryMeta {
                    kind: EntryKind::File,
                    size: m.content_length(),
                    modified,
                }));
            }
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => {}
            Err(e) => return Err(self.err(e, "stat", path)),
        }
        // No object at `path`: a directory exists where something is stored below it.
        let prefix = format!("{path}/");
        let mut lister = op.lister(&prefix).map_err(|e| self.err(e, "list", path))?;
        match lister.next() {
            Some(Ok(_)) => Ok(Some(EntryMeta {
                kind: EntryKind::Dir,
                size: 0,
                modified: None,
            })),
            Some(Err(e)) => Err(self.err(e, "list", path)),
            None => Ok(None),
        }
    }

    fn list_dir(&self, path: &str) -> Result<Vec<Entry>> {
        validate_path(path)?;
        if let Some(root) = self.backend.local_root() {
            return self.list_local(root, path);
        }
        let Some(op) = self.op_for_reading()? else {
            return Ok(Vec::new());
        };
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let listed = op
            .list(if path.is_empty() { "/" } else { &prefix })
            .map_err(|e| self.err(e, "list", path))?;
        let mut out = Vec::with_capacity(listed.len());
        for entry in listed {
            let rel = entry.path().trim_start_matches('/');
            let Some(rest) = rel.strip_prefix(prefix.as_str()) else {
                continue;
            };
            let (name, is_dir) = match rest.strip_suffix('/') {
                Some(name) => (name, true),
                None => (rest, false),
            };
            // Skip the listed directory itself and anything deeper than one level.
            if name.is_empty() || name.contains('/') {
                continue;
            }
            let kind = if is_dir || entry.metadata().mode() == opendal::EntryMode::DIR {
                EntryKind::Dir
            } else {
                EntryKind::File
            };
            out.push(Entry {
                name: name.to_string(),
                kind,
            });
        }
        out.sort_by(|a, b| {
            a.name
                .cmp(&b.name)
                .then((a.kind as u8).cmp(&(b.kind as u8)))
        });
        out.dedup();
        Ok(out)
    }

    fn create_dir(&self, path: &str) -> Result<()> {
        validate_path(path)?;
        if !self.capabilities().directories {
            return Ok(());
        }
        let dir = if path.is_empty() {
            "/".to_string()
        } else {
            format!("{path}/")
        };
        self.op()?
            .create_dir(&dir)
            .map_err(|e| self.err(e, "create_dir", path))
    }

    fn delete(&self, path: &str) -> Result<()> {
        validate_path(path)?;
        not_root(path, "delete")?;
        if let Some(root) = self.backend.local_root() {
            let Some(m) = self.local_meta(root, path)? else {
                return Ok(());
            };
            if m.file_type().is_dir() {
                return Err(Error::invalid_argument(
                    "delete removes one file; this is a directory (use delete_prefix)",
                )
                .with_path(self.location(path)));
            }
            return match std::fs::remove_file(Self::local_path(root, path)) {
                Ok(()) => Ok(()),
                Err(e) if is_missing(&e) => Ok(()),
                Err(e) => Err(self.io_err(e, "delete", path)),
            };
        }
        let Some(op) = self.op_for_reading()? else {
            return Ok(());
        };
        op.delete(path).map_err(|e| self.err(e, "delete", path))
    }

    fn delete_prefix(&self, path: &str) -> Result<()> {
        validate_path(path)?;
        if path.is_empty() {
            return Err(
                Error::invalid_argument("refusing to delete the whole store root")
                    .with_path(self.location(path)),
            );
        }
        if let Some(root) = self.backend.local_root() {
            let Some(m) = self.local_meta(root, path)? else {
                return Ok(());
            };
            let abs = Self::local_path(root, path);
            // A link (even to a directory) is removed as a file: its target is never touched.
            // `remove_dir_all` does not follow links found inside the tree either.
            let removed = if m.file_type().is_dir() {
                std::fs::remove_dir_all(&abs)
            } else {
                std::fs::remove_file(&abs)
            };
            return match removed {
                Ok(()) => Ok(()),
                Err(e) if is_missing(&e) => Ok(()),
                Err(e) => Err(self.io_err(e, "delete_prefix", path)),
            };
        }
        let Some(op) = self.op_for_reading()? else {
            return Ok(());
        };
        let opts = DeleteOptions {
            recursive: true,
            ..Default::default()
        };
        op.delete_options(&format!("{path}/"), opts)
            .map_err(|e| self.err(e, "recursive delete", path))?;
        op.delete(path).map_err(|e| self.err(e, "delete", path))
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        validate_path(from)?;
        validate_path(to)?;
        not_root(from, "rename")?;
        not_root(to, "rename")?;
        if !self.capabilities().rename {
            return Err(
                Error::new(ErrorKind::Unsupported, "this store cannot rename")
                    .with_path(self.location(from)),
            );
        }
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
        self.op()?
            .rename(from, to)
            .map_err(|e| self.err(e, "rename", from))
    }

    /// Local roots: an exclusive `flock` on the root directory itself (no file is created in the
    /// root, so Orbax sees nothing new); the kernel releases it when the process dies, so a
    /// crashed writer never leaves a stale lock. The root must exist (managers create it first).
    fn lock_for_writing(&self) -> Result<Option<Box<dyn WriterLock>>> {
        let Some(root) = self.backend.local_root() else {
            return Ok(None);
        };
        let dir = std::fs::File::open(root)
            .map_err(|e| self.io_err(e, "opening the root to lock it", ""))?;
        match dir.try_lock() {
            Ok(()) => Ok(Some(Box::new(LocalWriterLock { _dir: dir }))),
            Err(std::fs::TryLockError::WouldBlock) => Err(ckpt_core::Error::new(
                ckpt_core::ErrorKind::Locked,
                "another live checkpoint manager is writing this root; open it read-only, or close the other manager first",
            )
            .with_path(self.location(""))),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(self.io_err(e, "locking the root for writing", ""))
            }
        }
    }

    fn sync_dir(&self, path: &str) -> Result<()> {
        validate_path(path)?;
        let Some(root) = self.backend.local_root() else {
            return Ok(());
        };
        if !self.capabilities().durable {
            return Ok(());
        }
        let dir = std::fs::File::open(Self::local_path(root, path))
            .map_err(|e| self.io_err(e, "opening the directory to sync it", path))?;
        dir.sync_all()
            .map_err(|e| self.io_err(e, "fsync of the directory", path))
    }
}

/// The writer lock of a local root: an open descriptor of the root directory holding `flock`.
#[derive(Debug)]
struct LocalWriterLock {
    _dir: std::fs::File,
}

impl WriterLock for LocalWriterLock {}

/// Opens a store from a URI or a plain path:
/// * a plain path, relative (to the current directory) or absolute → [`OpendalStore::local`];
/// * `file:///abs/path` (an empty or `localhost` host; no percent-decoding) → the same;
/// * `memory://` (or `memory:///`) → a fresh [`OpendalStore::memory`] each call.
///
/// A string is taken as a URI when it starts with `<scheme>://`, the scheme being a letter then
/// letters, digits, `+`, `-` or `.`.
///
/// # Errors
/// `InvalidArgument` for an empty string, an unknown scheme (the message names it), a `file://`
/// URI with another host or a relative path, or `memory://` followed by a path; else as the
/// constructors.
pub fn open(uri: &str) -> Result<Arc<dyn Store>> {
    if uri.is_empty() {
        return Err(Error::invalid_argument("empty store location"));
    }
    let Some((scheme, rest)) = split_scheme(uri) else {
        return Ok(Arc::new(OpendalStore::local(uri)?));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "file" => {
            let path = rest.strip_prefix("localhost").unwrap_or(rest);
            if !path.starts_with('/') {
                return Err(Error::invalid_argument(format!(
                    "a file URI needs an absolute path and no host (file:///abs/path), got {uri:?}"
                ))
                .with_path(uri.to_string()));
            }
            Ok(Arc::new(OpendalStore::local(path)?))
        }
        "memory" => {
            if !rest.is_empty() && rest != "/" {
                return Err(Error::invalid_argument(format!(
                    "a memory store has no path: use \"memory://\", got {uri:?}"
                ))
                .with_path(uri.to_string()));
            }
            Ok(Arc::new(OpendalStore::memory()?))
        }
        other => Err(Error::invalid_argument(format!(
            "unknown store scheme {other:?} in {uri:?} (supported: file://, memory://, or a plain path)"
        ))
        .with_path(uri.to_string())),
    }
}

/// `Some((scheme, rest))` when `s` is `<scheme>://<rest>`.
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = s.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let ok = first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    ok.then_some((scheme, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        assert_eq!(split_scheme("memory://"), Some(("memory", "")));
        assert_eq!(split_scheme("file:///a/b"), Some(("file", "/a/b")));
        assert_eq!(split_scheme("s3://bucket/p"), Some(("s3", "bucket/p")));
        assert_eq!(split_scheme("runs/exp1"), None);
        assert_eq!(split_scheme("a b://x"), None);
        assert_eq!(split_scheme("://x"), None);
    }

    #[test]
    fn unknown_scheme_is_named() {
        let e = open("s3://bucket/prefix").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("\"s3\""), "{e}");
        assert_eq!(open("").unwrap_err().kind(), ErrorKind::InvalidArgument);
        assert_eq!(
            open("file://host/x").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            open("memory://x").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }

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
