//! [`OpendalStore`]: the one [`Store`] implementation, over opendal's blocking operator.
//!
//! Every backend goes through `opendal::blocking::Operator`. The local file system adds what
//! opendal's `fs` service does not do, or does in a way a checkpoint store cannot use, with
//! `std::fs` on the resolved absolute path (the store knows its local root):
//! * `stat`, `delete` and `delete_prefix` never follow a symbolic link (opendal's fs service
//!   stats through links, so its recursive delete of a link to a directory fails);
//! * `sync_dir` fsyncs a directory (opendal has no such call);
//! * `write`, `write_parts`, `read`, `read_range` and `open_read` open the file with std::fs
//!   (writes: parent directories created, `write_all` of each part, `sync_all`, as opendal's
//!   fs writer does): each opendal blocking call hands its work to the runtime's threads and
//!   back, which cost 0.1-0.5 ms per small file (9 s to open a root of 10,000 steps), and
//!   opendal's write takes an owned buffer (a copy of the data);
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
//!
//! Object stores (features `s3`, `gcs`, `azblob`; configuration in [`crate::object`]) use the
//! same operator calls, with these choices: no rename ([`Store::rename`] is `Unsupported`, so
//! commits use the commit-file protocol), no directories (`create_dir` and `sync_dir` are
//! no-ops; a "directory" is a common prefix), writes durable when they return (no fsync);
//! `list_dir` is one paginated delimiter listing (`prefix/`, delimiter `/`) whose common
//! prefixes are the directories; `stat` of a path holding no object is one listing of
//! `path/` with a page of one key (a directory when anything is below it); `delete_prefix` is
//! opendal's recursive delete, batched (S3 `DeleteObjects`, up to 1,000 keys a request);
//! writes of [`crate::UploadOptions::multipart_threshold`] bytes or more are concurrent
//! multipart uploads (aborted on failure), smaller ones one PUT.

#[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
use crate::object::ObjectConfig;
use crate::path::validate_path;
use crate::runtime::runtime;
use crate::{Capabilities, Entry, EntryKind, EntryMeta, ReadStream, Store, WriterLock};
use chrono::{DateTime, Utc};
use ckpt_core::{Error, ErrorKind, Result};
use opendal::blocking;
use opendal::options::{DeleteOptions, ListOptions, ReadOptions, WriteOptions};
use std::fmt;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Which opendal service a store uses, and what it needs to know beyond the operator.
#[derive(Debug, Clone)]
enum Backend {
    /// The local file system below `root`: absolute, with the symlinks of its existing
    /// ancestors resolved.
    Fs { root: PathBuf },
    /// Process memory: nothing survives the store.
    Memory,
    /// An object store (S3, GCS, Azure Blob) below a prefix of a bucket. `write_if_absent` is
    /// whether the service honours conditional creates (from opendal's capability).
    #[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
    Object {
        config: ObjectConfig,
        write_if_absent: bool,
    },
}

impl Backend {
    fn capabilities(&self) -> Capabilities {
        match self {
            Backend::Fs { .. } => Capabilities {
                rename: true,
                write_if_absent: true,
                directories: true,
                durable: true,
                local: true,
            },
            Backend::Memory => Capabilities {
                rename: false,
                write_if_absent: true,
                directories: false,
                durable: false,
                local: true,
            },
            // Not `durable` in the fsync sense (there is nothing to sync): a write is durable
            // once it has returned.
            #[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
            Backend::Object {
                write_if_absent, ..
            } => Capabilities {
                rename: false,
                write_if_absent: *write_if_absent,
                directories: false,
                durable: false,
                local: false,
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
            #[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
            Backend::Object { config, .. } => config.location(path),
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
            #[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
            Backend::Object { config, .. } => config.build(),
        };
        built.map_err(|e| from_opendal(e, "opening the store", self.location("")))
    }

    fn local_root(&self) -> Option<&Path> {
        match self {
            Backend::Fs { root } => Some(root),
            _ => None,
        }
    }

    /// The object store's configuration, `None` for local and memory stores.
    #[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
    fn object(&self) -> Option<&ObjectConfig> {
        match self {
            Backend::Object { config, .. } => Some(config),
            _ => None,
        }
    }

    /// Objects per listing page, where configured.
    fn list_page_size(&self) -> Option<usize> {
        match self {
            #[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
            Backend::Object { config, .. } => config.list_page_size(),
            _ => None,
        }
    }
}

/// The two faces of one opendal operator: the blocking one for every call, and the async one
/// for multipart uploads (which need `abort`, which the blocking writer lacks).
#[derive(Clone)]
struct Ops {
    blocking: blocking::Operator,
    #[cfg_attr(
        not(any(feature = "s3", feature = "gcs", feature = "azblob")),
        allow(dead_code)
    )]
    async_op: opendal::Operator,
}

/// A [`Store`] over `opendal::blocking::Operator`: the local file system, memory, or an object
/// store (S3, GCS, Azure Blob; features `s3` (default), `gcs`, `azblob`).
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
///
/// Object stores: see the module documentation of `opendal_store.rs` (summarised in the README):
/// no rename, no directories, one paginated listing per `list_dir`, batched prefix deletes,
/// concurrent multipart uploads for large writes. Opening one sends no request; the first call
/// does. [`Store::lock_for_writing`] has no lock to take there (`Ok(None)`).
pub struct OpendalStore {
    backend: Backend,
    /// The operator once built (see [`Backend::build`]); cloning one is cheap.
    op: Mutex<Option<Ops>>,
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

    /// An S3 or S3-compatible store (feature `s3`): objects below `config.prefix` in
    /// `config.bucket`, locations `s3://<bucket>/<prefix>/<path>`. Sends no request: a wrong
    /// endpoint, bucket or key shows at the first call.
    ///
    /// # Errors
    /// `InvalidConfig` / `InvalidArgument` from [`S3Config::validate`](crate::S3Config::validate);
    /// `Storage` when opendal rejects the configuration or the tokio runtime cannot be built.
    #[cfg(feature = "s3")]
    pub fn s3(config: crate::S3Config) -> Result<Self> {
        Self::object(ObjectConfig::S3(config))
    }

    /// A Google Cloud Storage store (feature `gcs`): objects below `config.prefix` in
    /// `config.bucket`, locations `gs://<bucket>/<prefix>/<path>`. Sends no request.
    ///
    /// # Errors
    /// As [`OpendalStore::s3`], with [`GcsConfig::validate`](crate::GcsConfig::validate).
    #[cfg(feature = "gcs")]
    pub fn gcs(config: crate::GcsConfig) -> Result<Self> {
        Self::object(ObjectConfig::Gcs(config))
    }

    /// An Azure Blob Storage store (feature `azblob`): blobs below `config.prefix` in
    /// `config.container`, locations `azblob://<container>/<prefix>/<path>`. Sends no request.
    ///
    /// # Errors
    /// As [`OpendalStore::s3`], with [`AzblobConfig::validate`](crate::AzblobConfig::validate)
    /// (which also refuses a configuration without credentials).
    #[cfg(feature = "azblob")]
    pub fn azblob(config: crate::AzblobConfig) -> Result<Self> {
        Self::object(ObjectConfig::Azblob(config))
    }

    #[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
    fn object(config: ObjectConfig) -> Result<Self> {
        config.validate()?;
        let rt = runtime()?;
        let async_op = config
            .build()
            .map_err(|e| from_opendal(e, "opening the store", config.location("")))?;
        let write_if_absent = async_op.info().capability().write_with_if_not_exists;
        let _guard = rt.enter();
        let op = blocking::Operator::new(async_op.clone())
            .map_err(|e| from_opendal(e, "opening the store", config.location("")))?;
        Ok(OpendalStore {
            backend: Backend::Object {
                config,
                write_if_absent,
            },
            op: Mutex::new(Some(Ops {
                blocking: op,
                async_op,
            })),
        })
    }

    /// Uploads `parts` (one after another) to `path` as a multipart upload of
    /// `up.chunk_size`-byte parts, `up.concurrency` at a time, aborting the upload (so no parts
    /// are left behind) when a part or the completion fails. Holds about
    /// `chunk_size * (concurrency + 1)` bytes of copies.
    #[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
    fn write_multipart(&self, path: &str, parts: &[&[u8]], up: crate::UploadOptions) -> Result<()> {
        let op = self.ops()?.async_op;
        let rt = runtime()?;
        let uploaded: opendal::Result<()> = rt.block_on(async move {
            let mut w = op
                .writer_with(path)
                .content_type("application/octet-stream")
                .chunk(up.chunk_size)
                .concurrent(up.concurrency)
                .await?;
            for part in parts.iter().flat_map(|p| p.chunks(up.chunk_size)) {
                if let Err(e) = w.write(part.to_vec()).await {
                    let _ = w.abort().await;
                    return Err(e);
                }
            }
            if let Err(e) = w.close().await {
                let _ = w.abort().await;
                return Err(e);
            }
            Ok(())
        });
        uploaded.map_err(|e| self.err(e, "multipart upload", path))
    }

    /// The options of every write: object stores get `Content-Type: application/octet-stream`
    /// (what S3 and GCS assume anyway; GCS emulators otherwise record a null content type, which
    /// opendal then fails to parse).
    fn write_options(&self) -> WriteOptions {
        #[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
        if self.backend.object().is_some() {
            return WriteOptions {
                content_type: Some("application/octet-stream".to_string()),
                ..Default::default()
            };
        }
        WriteOptions::default()
    }

    /// The blocking operator, built on first use (which creates a missing local root).
    fn op(&self) -> Result<blocking::Operator> {
        Ok(self.ops()?.blocking)
    }

    /// Both faces of the operator, built on first use.
    fn ops(&self) -> Result<Ops> {
        let mut slot = self
            .op
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(ops) = slot.as_ref() {
            return Ok(ops.clone());
        }
        let rt = runtime()?;
        let async_op = self.backend.build()?;
        let _guard = rt.enter();
        let op = blocking::Operator::new(async_op.clone())
            .map_err(|e| from_opendal(e, "opening the store", self.backend.location("")))?;
        let ops = Ops {
            blocking: op,
            async_op,
        };
        *slot = Some(ops.clone());
        Ok(ops)
    }

    /// The operator for a read-only call, or `None` when the local root does not exist yet (and
    /// so must not be created by reading).
    fn op_for_reading(&self) -> Result<Option<blocking::Operator>> {
        {
            let slot = self
                .op
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(ops) = slot.as_ref() {
                return Ok(Some(ops.blocking.clone()));
            }
        }
        match self.backend.local_root() {
            Some(root) if !root.exists() => Ok(None),
            _ => self.op().map(Some),
        }
    }

    /// The absolute local path of a (validated) store path, for the fs-only calls.
    /// Local roots: refuses `path` if it, or a directory on the way to it below the root, is a
    /// symbolic link, so that no read, write, listing or rename ever goes through a link to a
    /// place outside the root (issue 4: nothing outside the root is read, written or deleted).
    /// Components that do not exist end the check (the operation itself then reports them).
    ///
    /// # Errors
    /// `InvalidArgument` naming the link.
    fn refuse_links(&self, path: &str) -> Result<()> {
        let Some(root) = self.backend.local_root() else {
            return Ok(());
        };
        let mut at = root.to_path_buf();
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
    /// Writes `parts` to the local file `path` with std::fs: creates the missing parent
    /// directories, creates or truncates the file, writes each part, then `sync_all` — what
    /// opendal's fs writer does, without its task hand-offs per call (about 0.1-0.5 ms, most of
    /// a small write) and without copying the data into an owned buffer first.
    /// Writes `parts` to the local file `path` (parents created), then fsyncs it when `sync`.
    fn write_local(&self, root: &Path, path: &str, parts: &[&[u8]], sync: bool) -> Result<()> {
        use std::io::Write as _;
        let abs = Self::local_path(root, path);
        if let Some(parent) = abs.parent() {
            std::fs::create_dir_all(parent).map_err(|e| self.io_err(e, "write", path))?;
        }
        let mut f = std::fs::File::create(&abs).map_err(|e| self.io_err(e, "write", path))?;
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
    fn open_local(&self, root: &Path, path: &str) -> Result<(std::fs::File, u64)> {
        let f = std::fs::File::open(Self::local_path(root, path)).map_err(|e| {
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
    let temporary = e.is_temporary();
    Error::new(kind, format!("{what} failed"))
        .with_path(location)
        .with_temporary(temporary)
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

    /// Object stores: `data` of [`crate::UploadOptions::multipart_threshold`] bytes or more is
    /// a concurrent multipart upload, anything smaller one PUT.
    ///
    /// Local file system: std::fs (see `write_parts`).
    fn write(&self, path: &str, data: &[u8]) -> Result<()> {
        self.write_parts(path, &[data])
    }

    /// Local file system: std::fs `write_all` of each part straight from the caller's buffers,
    /// then `sync_all` (parent directories created as opendal's fs writer does). Memory and
    /// object stores: each part copied once into opendal's buffer (object stores: a multipart
    /// upload from [`crate::UploadOptions::multipart_threshold`] bytes on, as `write`).
    fn write_parts(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        validate_path(path)?;
        not_root(path, "write")?;
        if let Some(root) = self.backend.local_root() {
            self.refuse_links(path)?;
            return self.write_local(root, path, parts, true);
        }
        #[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
        if let Some(config) = self.backend.object() {
            let up = config.upload();
            let total: usize = parts.iter().map(|p| p.len()).sum();
            if total >= up.multipart_threshold {
                return self.write_multipart(path, parts, up);
            }
        }
        let buf: opendal::Buffer = parts
            .iter()
            .flat_map(|p| opendal::Buffer::from(p.to_vec()))
            .collect();
        self.op()?
            .write_options(path, buf, self.write_options())
            .map_err(|e| self.err(e, "write", path))?;
        Ok(())
    }

    /// On a local file system the parts go to the page cache without an fsync (see
    /// [`Store::sync_file`]); elsewhere as [`Store::write_parts`] (memory has nothing to sync;
    /// an object store's write is durable when it returns).
    fn write_parts_unsynced(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        validate_path(path)?;
        not_root(path, "write")?;
        match self.backend.local_root() {
            Some(root) => {
                self.refuse_links(path)?;
                self.write_local(root, path, parts, false)
            }
            None => self.write_parts(path, parts),
        }
    }

    /// fsync of the local file `path` (opened again: the fsync covers the file's data whoever
    /// wrote it); nothing to do on other stores.
    fn sync_file(&self, path: &str) -> Result<()> {
        validate_path(path)?;
        let Some(root) = self.backend.local_root() else {
            return Ok(());
        };
        self.refuse_links(path)?;
        let f = self.open_local(root, path).map(|(f, _)| f)?;
        f.sync_all().map_err(|e| self.io_err(e, "fsync", path))
    }

    /// A conditional create (`If-None-Match: *` on S3) where the store has one; on an object
    /// store without it, a check then a write (racy: [`Capabilities::write_if_absent`] is false
    /// there). Always one PUT, whatever the size.
    fn write_if_absent(&self, path: &str, data: &[u8]) -> Result<()> {
        validate_path(path)?;
        not_root(path, "write_if_absent")?;
        self.refuse_links(path)?;
        if !self.capabilities().write_if_absent {
            if self.stat(path)?.is_some() {
                return Err(Error::new(ErrorKind::AlreadyExists, "the file exists")
                    .with_path(self.location(path)));
            }
            return self
                .op()?
                .write_options(path, data.to_vec(), self.write_options())
                .map(|_| ())
                .map_err(|e| self.err(e, "write", path));
        }
        let opts = WriteOptions {
            if_not_exists: true,
            ..self.write_options()
        };
        self.op()?
            .write_options(path, data.to_vec(), opts)
            .map_err(|e| self.err(e, "conditional write", path))?;
        Ok(())
    }

    /// Local file system: `std::fs` (one open and read, no task hand-off).
    fn read(&self, path: &str) -> Result<Vec<u8>> {
        validate_path(path)?;
        not_root(path, "read")?;
        if let Some(root) = self.backend.local_root() {
            use std::io::Read as _;
            self.refuse_links(path)?;
            let (mut f, size) = self.open_local(root, path)?;
            let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            f.read_to_end(&mut buf)
                .map_err(|e| self.io_err(e, "read", path))?;
            return Ok(buf);
        }
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
        if let Some(root) = self.backend.local_root() {
            use std::io::{Read as _, Seek as _};
            self.refuse_links(path)?;
            let (mut f, size) = self.open_local(root, path)?;
            if range.end > size {
                return Err(Error::invalid_argument(format!(
                    "byte range {}..{} lies beyond the end of the file ({size} bytes)",
                    range.start, range.end
                ))
                .with_path(self.location(path)));
            }
            let len = usize::try_from(range.end - range.start).map_err(|_| {
                Error::invalid_argument("byte range too large for this platform")
                    .with_path(self.location(path))
            })?;
            let mut buf = vec![0u8; len];
            f.seek(std::io::SeekFrom::Start(range.start))
                .and_then(|_| f.read_exact(&mut buf))
                .map_err(|e| self.io_err(e, "ranged read", path))?;
            return Ok(buf);
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

    /// Local file system: the open file, read as the caller asks (no copy of the whole file).
    /// Memory and object stores: one read of the whole object (one GET: ranged GETs are far
    /// slower on some servers), then copied out of opendal's buffer once.
    fn open_read(&self, path: &str) -> Result<Box<dyn ReadStream + '_>> {
        validate_path(path)?;
        not_root(path, "read")?;
        if let Some(root) = self.backend.local_root() {
            let (f, size) = self.open_local(root, path)?;
            return Ok(Box::new(IoStream {
                inner: f,
                size,
                pos: 0,
                location: self.location(path),
            }));
        }
        let Some(op) = self.op_for_reading()? else {
            return Err(Error::not_found("no file (the store root does not exist)")
                .with_path(self.location(path)));
        };
        let buf = op.read(path).map_err(|e| {
            if e.kind() == opendal::ErrorKind::IsADirectory {
                Error::not_found("no file: the path is a directory")
                    .with_path(self.location(path))
                    .with_source(e)
            } else {
                self.err(e, "read", path)
            }
        })?;
        Ok(Box::new(IoStream {
            size: buf.len() as u64,
            inner: buf,
            pos: 0,
            location: self.location(path),
        }))
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
        // One listing request with a page of one key.
        let prefix = format!("{path}/");
        let opts = ListOptions {
            limit: Some(1),
            ..Default::default()
        };
        let mut lister = op
            .lister_options(&prefix, opts)
            .map_err(|e| self.err(e, "list", path))?;
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
            self.refuse_links(path)?;
            return self.list_local(root, path);
        }
        let Some(op) = self.op_for_reading()? else {
            return Ok(Vec::new());
        };
        let prefix = dir_prefix(path);
        // One paginated listing (every page is fetched) of `prefix` with delimiter `/`.
        let opts = ListOptions {
            limit: self.backend.list_page_size(),
            ..Default::default()
        };
        let listed = op
            .list_options(if path.is_empty() { "/" } else { &prefix }, opts)
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

    /// Local file systems: the default walk (`list_dir` per directory, links not followed).
    /// Memory and object stores: one listing of `path/` without delimiter, every page fetched
    /// (S3 `ListObjectsV2` pages of [`crate::S3Config::list_page_size`] keys, 1,000 by default).
    fn list_recursive(&self, path: &str) -> Result<Vec<String>> {
        validate_path(path)?;
        if let Some(root) = self.backend.local_root() {
            self.refuse_links(path)?;
            let mut out = Vec::new();
            let mut stack = vec![String::new()];
            while let Some(rel) = stack.pop() {
                let dir = crate::join_path(path, &rel);
                for e in self.list_local(root, &dir)? {
                    let child = crate::join_path(&rel, &e.name);
                    match e.kind {
                        EntryKind::File => out.push(child),
                        EntryKind::Dir => stack.push(child),
                        EntryKind::Symlink => {}
                    }
                }
            }
            return Ok(out);
        }
        let Some(op) = self.op_for_reading()? else {
            return Ok(Vec::new());
        };
        let prefix = dir_prefix(path);
        let opts = ListOptions {
            limit: self.backend.list_page_size(),
            recursive: true,
            ..Default::default()
        };
        let listed = op
            .list_options(if path.is_empty() { "/" } else { &prefix }, opts)
            .map_err(|e| self.err(e, "list", path))?;
        let mut out = Vec::with_capacity(listed.len());
        for entry in listed {
            let rel = entry.path().trim_start_matches('/');
            let Some(rest) = rel.strip_prefix(prefix.as_str()) else {
                continue;
            };
            // Directory markers (`a/`) and the listed directory itself are not files.
            if rest.is_empty()
                || rest.ends_with('/')
                || entry.metadata().mode() == opendal::EntryMode::DIR
            {
                continue;
            }
            out.push(rest.to_string());
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn create_dir(&self, path: &str) -> Result<()> {
        validate_path(path)?;
        self.refuse_links(path)?;
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
        self.op()?
            .rename(from, to)
            .map_err(|e| self.err(e, "rename", from))
    }

    /// Local roots: a POSIX record lock on `<root>/.ckpt-writer.lock`, released by the kernel
    /// when the process dies (so a crashed writer never leaves a stale lock) and never inherited
    /// by child processes ([`crate::writer_guard::local`]). The root must exist (managers create
    /// it first). Other backends: `None` (the manager takes a [`crate::WriterLease`] instead).
    fn lock_for_writing(&self) -> Result<Option<Box<dyn WriterLock>>> {
        let Some(root) = self.backend.local_root() else {
            return Ok(None);
        };
        crate::writer_guard::local::lock_local_root(root, &self.location("")).map(Some)
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

/// A [`ReadStream`] over anything `std::io::Read` of a known size: an open local file, or the
/// buffer of a whole object read by opendal.
struct IoStream<R> {
    inner: R,
    size: u64,
    pos: u64,
    location: String,
}

impl<R: std::io::Read + Send> ReadStream for IoStream<R> {
    fn size(&self) -> u64 {
        self.size
    }

    fn position(&self) -> u64 {
        self.pos
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        let len = buf.len() as u64;
        if self.pos.checked_add(len).is_none_or(|end| end > self.size) {
            return Err(crate::stream::beyond_end(
                &self.location,
                self.pos,
                buf.len(),
                self.size,
            ));
        }
        self.inner
            .read_exact(buf)
            .map_err(|e| from_io(e, "read", self.location.clone()))?;
        self.pos += len;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

/// Opens a store from a URI or a plain path:
/// * a plain path, relative (to the current directory) or absolute → [`OpendalStore::local`];
/// * `file:///abs/path` (an empty or `localhost` host; no percent-decoding) → the same;
/// * `memory://` (or `memory:///`) → a fresh [`OpendalStore::memory`] each call;
/// * `s3://bucket[/prefix]` → [`OpendalStore::s3`] with [`crate::S3Config::from_env`] (feature
///   `s3`, on by default): `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ...;
/// * `gs://bucket[/prefix]` (or `gcs://`) → [`OpendalStore::gcs`] with
///   [`crate::GcsConfig::from_env`] (feature `gcs`);
/// * `azblob://container[/prefix]` (or `az://`) → [`OpendalStore::azblob`] with
///   [`crate::AzblobConfig::from_env`] (feature `azblob`).
///
/// The object stores come wrapped in a [`crate::RetryStore`] (default [`crate::RetryPolicy`]:
/// up to 10 attempts, exponential backoff with full jitter, 60 s at most), which retries the
/// temporary errors (500, 503, `SlowDown`, lost connections) that every SDK retries.
///
/// A string is taken as a URI when it starts with `<scheme>://`, the scheme being a letter then
/// letters, digits, `+`, `-` or `.`. Bucket URIs are not percent-decoded and take no query; a
/// trailing `/` is ignored; the prefix must be a valid store path.
///
/// # Errors
/// `InvalidArgument` for an empty string, an unknown scheme (the message names it), a `file://`
/// URI with another host or a relative path, `memory://` followed by a path, a bucket URI
/// without a bucket or with a bad prefix; `Unsupported` for an object-store scheme whose Cargo
/// feature is off (the message names the feature); `InvalidConfig` for a bad setting in the
/// environment; else as the constructors.
pub fn open(uri: &str) -> Result<Arc<dyn Store>> {
    open_with_retries(uri, Some(crate::RetryPolicy::default()))
}

/// As [`open`], with the object stores behind a [`crate::RetryStore`] of `retry`, or of none
/// (`None`: the bare [`OpendalStore`], for a caller that puts its own retry layer on top).
///
/// # Errors
/// As [`open`].
pub fn open_with_retries(uri: &str, retry: Option<crate::RetryPolicy>) -> Result<Arc<dyn Store>> {
    #[cfg(not(any(feature = "s3", feature = "gcs", feature = "azblob")))]
    let _ = retry;
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
        "s3" => {
            let (bucket, prefix) = crate::object::split_bucket_uri(uri, rest)?;
            #[cfg(feature = "s3")]
            return Ok(retrying(
                retry,
                OpendalStore::s3(crate::S3Config::from_env(bucket, prefix)?)?,
            ));
            #[cfg(not(feature = "s3"))]
            return Err(feature_off(uri, "s3", (bucket, prefix)));
        }
        "gs" | "gcs" => {
            let (bucket, prefix) = crate::object::split_bucket_uri(uri, rest)?;
            #[cfg(feature = "gcs")]
            return Ok(retrying(
                retry,
                OpendalStore::gcs(crate::GcsConfig::from_env(bucket, prefix)?)?,
            ));
            #[cfg(not(feature = "gcs"))]
            return Err(feature_off(uri, "gcs", (bucket, prefix)));
        }
        "azblob" | "az" => {
            let (container, prefix) = crate::object::split_bucket_uri(uri, rest)?;
            #[cfg(feature = "azblob")]
            return Ok(retrying(
                retry,
                OpendalStore::azblob(crate::AzblobConfig::from_env(container, prefix)?)?,
            ));
            #[cfg(not(feature = "azblob"))]
            return Err(feature_off(uri, "azblob", (container, prefix)));
        }
        other => Err(Error::invalid_argument(format!(
            "unknown store scheme {other:?} in {uri:?} (supported: file://, memory://, s3://, \
             gs://, azblob://, or a plain path)"
        ))
        .with_path(uri.to_string())),
    }
}

/// An object store behind a [`crate::RetryStore`] of `retry` (when given): object stores answer
/// 500, 503 and `SlowDown` now and then, and every SDK retries them.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
fn retrying(retry: Option<crate::RetryPolicy>, store: OpendalStore) -> Arc<dyn Store> {
    match retry {
        Some(policy) => Arc::new(crate::RetryStore::new(Arc::new(store), policy)),
        None => Arc::new(store),
    }
}

/// The error for a bucket URI whose service was not compiled in.
#[cfg(not(all(feature = "s3", feature = "gcs", feature = "azblob")))]
fn feature_off(uri: &str, feature: &str, _parsed: (String, String)) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!(
            "{uri:?} needs the `{feature}` Cargo feature of ckpt-storage, which this build does not have"
        ),
    )
    .with_path(uri.to_string())
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

/// The object-key prefix of the entries below directory `path`: `"{path}/"`, or `""` for the
/// root.
fn dir_prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    }
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
        let e = open("s4://bucket/prefix").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("\"s4\""), "{e}");
        for bad in [
            "s3://",
            "s3:///x",
            "gs://b//x",
            "azblob://c/../x",
            "s3://b/x?versionId=1",
        ] {
            assert_eq!(
                open(bad).unwrap_err().kind(),
                ErrorKind::InvalidArgument,
                "{bad}"
            );
        }
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
