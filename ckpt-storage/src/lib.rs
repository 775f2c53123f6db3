//! Storage for ckpt: the [`Store`] trait, its implementation over `opendal::Operator`, and the two
//! commit protocols that make a step directory visible atomically (spec §1.3).
//!
//! * [`Store`], [`Capabilities`], [`Entry`], [`EntryMeta`]: what the rest of ckpt sees of storage;
//!   [`MappedFile`]: a local file mapped read-only ([`Store::map_file`], for memory-mapped
//!   restores);
//! * the implementations: [`LocalStore`] (the local file system, with `std::fs`) and
//!   [`OpendalStore`] (memory, and the object stores S3, GCS and Azure Blob behind the Cargo
//!   features `s3` (default), `gcs`, `azblob`), and [`open`], which builds one from a path or a
//!   URI (`s3://bucket/prefix`, `gs://…`, `azblob://…`);
//! * [`S3Config`], [`GcsConfig`], [`AzblobConfig`], [`UploadOptions`]: explicit configuration
//!   of the object stores, or read from the standard environment (`AWS_ENDPOINT_URL`, ...);
//! * [`CommitProtocol`], [`AtomicityMode`], [`protocol_for`]: atomic rename and commit file;
//! * [`validate_path`], [`join_path`], [`parent_path`], [`file_name`]: store paths;
//! * `testkit` (feature `testkit`): the conformance functions every store must pass;
//! * layers, stores that wrap an `Arc<dyn Store>` and add one thing (`src/layers/`, over the
//!   forwarding base [`StoreLayer`]): [`RetryStore`], [`DeferredSyncStore`], the test doubles
//!   behind the feature `test-layers` (`FaultStore`: injected failures; `CountingStore`: call
//!   counts and a log of changes; `LatencyStore` with `Gate`: delays, held writes), and the
//!   checksum layers [`RecordingStore`] and [`VerifyingStore`];
//! * checksums (ckpt's own, Orbax has none): the CRC32C of every file of a step, in
//!   `<step>/_CKPT_CHECKSUMS` ([`ChecksumManifest`], [`FileChecksum`], [`FileStatus`],
//!   `checksum_manifest.rs`). The check of a whole step (which files a step holds) is
//!   `ckpt_manager::verify_step`, where the step layout is known.
//!
//! Paths given to a [`Store`] are relative to the store's root, `/`-separated, with no leading
//! `/`, no `.` or `..` component, no empty component and no trailing `/` (the empty path is the
//! root itself); no component may begin or end with whitespace, and NUL and `\` are refused. A
//! store rejects any other path with [`ckpt_core::ErrorKind::InvalidArgument`], so nothing
//! outside the root can be named.
#![deny(missing_docs)]
// docs.rs (`cfg(docsrs)`, see Cargo.toml) marks items behind a Cargo feature with a badge
// (`doc_cfg`, which took in `doc_auto_cfg` in Rust 1.92).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod checksum_manifest;
mod commit;
mod direct_io;
mod error_map;
mod fresh_memory;
mod layer;
mod layers;
mod local_store;
mod mapped;
mod object;
mod opendal_store;
mod path;
mod runtime;
mod stream;
mod stream_copy;
#[cfg(feature = "testkit")]
pub mod testkit;
mod uri;
mod write_behind;
pub mod writer_guard;

pub use checksum_manifest::{
    ChecksumManifest, FileChecksum, FileStatus, CHECKSUM_ALGORITHM, MANIFEST_FILE,
};
pub use commit::{
    protocol_for, read_step_claim, AtomicRenameProtocol, AtomicityMode, CommitFileProtocol,
    CommitProtocol, StepClaim,
};
pub use fresh_memory::{try_zeroed_bytes, try_zeroed_bytes_unadvised, HUGE_PAGE_ADVICE_MIN_BYTES};
pub use layer::{provided, StoreLayer};
pub use layers::{
    sync_files, DeferredSyncStore, RecordingStore, RetryPolicy, RetryStore, VerifyingStore,
};
#[cfg(any(test, feature = "test-layers"))]
pub use layers::{
    CountingStore, FaultRule, FaultStore, Gate, LatencyStore, LoggedOp, OpCounts, OpKind,
    PathPattern,
};
pub use local_store::{LocalStore, WRITE_BEHIND_MIN_BYTES};
pub use mapped::MappedFile;
#[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
pub use object::install_http_transport;
pub use object::{
    AzblobConfig, GcsConfig, S3Config, UploadOptions, AZURITE_ACCOUNT, AZURITE_KEY,
    DEFAULT_S3_REGION,
};
pub use opendal_store::OpendalStore;
pub use path::{file_name, join_path, parent_path, validate_path};
pub use stream::{BufferStream, ReadStream};
pub use stream_copy::{copy_streaming, STREAMING_COPY_MIN_BYTES};
pub use uri::{open, open_local, open_with_retries};
pub use writer_guard::lease::{WriterLease, DEFAULT_LEASE_TTL_SECS, LEASE_FILE};
pub use writer_guard::local::LOCAL_LOCK_FILE;
pub use writer_guard::{writer_token, WriterLock};

use chrono::{DateTime, Utc};
use ckpt_core::Result;
use std::fmt::Debug;
use std::ops::Range;

/// What a store can do; the commit protocol is chosen from this (docs/design.md, "Storage and commit protocols").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// `rename` of a directory is atomic (local file systems). Object stores: false.
    pub rename: bool,
    /// `write_if_absent` is honoured (a second writer gets `AlreadyExists`).
    pub write_if_absent: bool,
    /// Directories exist on their own (an empty directory can be listed); false on object stores.
    pub directories: bool,
    /// `sync_dir` and writes reach durable storage (fsync); false for memory.
    pub durable: bool,
    /// The bytes stay on this machine (a local file system or memory): a
    /// [`Store::write_parts_unsynced`] costs about one copy of the bytes (into the page cache or
    /// the memory store), so a background save may write borrowed items before `save` returns
    /// instead of copying them first. False on object stores, where a write is an upload.
    pub local: bool,
    /// Temporary errors are already retried below this point (a [`RetryStore`] is in the
    /// stack): a layer or manager that would add retries leaves them out, so attempts do not
    /// multiply (10 × 10 attempts, each up to its 60 s, when a manager's retries were stacked on
    /// those of a store opened from a URI). False for every store itself.
    pub retries: bool,
}

/// What kind of entry a listing returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A file (an object on object stores).
    File,
    /// A directory (a common prefix on object stores).
    Dir,
    /// A symbolic link (local file systems only), whatever it points to. Stores never follow
    /// one when listing, stat-ing or deleting; the commit protocols and cleanup leave it alone.
    Symlink,
}

/// One immediate child of a listed directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The child's name: one path component, never empty, no `/`.
    pub name: String,
    /// File or directory.
    pub kind: EntryKind,
}

/// What `stat` knows of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    /// File or directory.
    pub kind: EntryKind,
    /// Size in bytes (0 for directories and symbolic links).
    pub size: u64,
    /// Last modification time, where the store keeps one.
    pub modified: Option<DateTime<Utc>>,
}

/// A place to keep checkpoints: a local directory, memory, or an object store bucket prefix.
///
/// Small and object-safe on purpose (as object_store's `ObjectStore`): the manager, the handlers
/// and the commit protocols need nothing else. Every method is blocking and may be called from
/// any non-async thread.
pub trait Store: Debug + Send + Sync {
    /// What this store can do.
    fn capabilities(&self) -> Capabilities;

    /// The full location of `path` for messages and for `commit_success.txt`: an absolute local
    /// path (`/data/run/3`) or a URI (`memory:///3`, `s3://bucket/prefix/3`).
    fn location(&self, path: &str) -> String;

    /// Writes a whole file, creating parent directories, replacing any file already there. On a
    /// durable store the data is on stable storage (fsync) when this returns.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad path, `Storage` when the backend fails.
    fn write(&self, path: &str, data: &[u8]) -> Result<()>;

    /// As [`Store::write`], but only if nothing exists at `path` (conditional create where the
    /// backend has it; check-then-write otherwise).
    ///
    /// # Errors
    /// `AlreadyExists` when `path` exists; else as [`Store::write`].
    fn write_if_absent(&self, path: &str, data: &[u8]) -> Result<()>;

    /// Writes a whole file whose contents are `parts` one after another: the same file as
    /// [`Store::write`] of their concatenation, without the caller first copying them into one
    /// buffer (a safetensors header, then each tensor's bytes straight from the tensor).
    ///
    /// The default concatenates and calls [`Store::write`] (so a layer that does not override
    /// it still sees one `write`); [`LocalStore`] writes the parts straight to the file (std::fs
    /// `write_all` of each part, then `sync_all`) and [`OpendalStore`] hands them to opendal
    /// without concatenating them elsewhere.
    ///
    /// # Errors
    /// As [`Store::write`].
    fn write_parts(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        layer::provided::write_parts(self, path, parts)
    }

    /// As [`Store::write_parts`], except that the file need not be durable when this returns:
    /// it is once [`Store::sync_file`] of `path` has returned `Ok`. On a local file system the
    /// bytes go to the page cache (no fsync), so the write costs about one copy of them; the
    /// fsync is left to whoever calls `sync_file`, e.g. a background thread. Nothing may rely on
    /// the file surviving a crash before that (the manager commits a step only after it).
    ///
    /// The default is [`Store::write_parts`] (durable at once; `sync_file` has nothing left to
    /// do). A layer must pass both calls through, or neither.
    ///
    /// # Errors
    /// As [`Store::write_parts`].
    fn write_parts_unsynced(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        layer::provided::write_parts_unsynced(self, path, parts)
    }

    /// Makes the file at `path` durable (fsync of the file), after
    /// [`Store::write_parts_unsynced`]. The default does nothing: every other write is durable
    /// when it returns. A no-op on stores that are not [`Capabilities::durable`].
    ///
    /// # Errors
    /// `NotFound` when there is no file at `path` (a durable store); `Storage` when the fsync
    /// fails: the file's contents are then not known to be on stable storage.
    fn sync_file(&self, path: &str) -> Result<()> {
        layer::provided::sync_file(path)
    }

    /// Reads a whole file.
    ///
    /// # Errors
    /// `NotFound` when there is no file at `path`; `InvalidArgument`, `Storage` as above.
    fn read(&self, path: &str) -> Result<Vec<u8>>;

    /// Opens a file for reading from its start into buffers the caller sizes itself
    /// ([`ReadStream::read_exact`]), e.g. a header first, then one buffer per tensor: no copy of
    /// the whole file is made on the way. End with [`ReadStream::finish`], which a checking
    /// store uses to verify the file.
    ///
    /// The default reads the whole file with [`Store::read`] and serves it from memory (so a
    /// layer that does not override it still sees one `read`); [`LocalStore`] reads the file
    /// as it goes, and [`OpendalStore`] reads the whole object once (one GET) and copies it out
    /// of opendal's buffer once.
    ///
    /// # Errors
    /// As [`Store::read`].
    fn open_read(&self, path: &str) -> Result<Box<dyn ReadStream + '_>> {
        layer::provided::open_read(self, path)
    }

    /// Reads the bytes `range` (byte offsets, end exclusive) of a file.
    ///
    /// # Errors
    /// As [`Store::read`]; `InvalidArgument` when the range lies beyond the end of the file.
    fn read_range(&self, path: &str, range: Range<u64>) -> Result<Vec<u8>>;

    /// Fills `buf` with the bytes `offset .. offset + buf.len()` of a file, into memory the
    /// caller owns and reuses (no buffer of its own per call): for reading a large value piece by
    /// piece. Provided: [`Store::read_range`] and a copy; [`LocalStore`] reads straight into
    /// `buf` (`pread`). ckpt's own.
    ///
    /// # Errors
    /// As [`Store::read_range`].
    fn read_range_into(&self, path: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        layer::provided::read_range_into(self, path, offset, buf)
    }

    /// The file at `path` mapped read-only into memory ([`MappedFile`]), when the store keeps
    /// it as a file on the local file system; `Ok(None)` on every other store (the default:
    /// memory, object stores). With `populate`, every page is mapped at once (for a caller that
    /// reads all of it). A checking layer ([`VerifyingStore`]) verifies the file over the
    /// mapping before returning it. ckpt's own (for memory-mapped restores, issue 14).
    ///
    /// The file must not be truncated or rewritten while it is mapped (see [`MappedFile`]).
    ///
    /// # Errors
    /// `NotFound` when there is no file at `path`; `InvalidArgument` for a bad path (or, on
    /// [`LocalStore`], one through a symbolic link); `Storage` when it cannot be mapped;
    /// `Corrupt` from a checking layer.
    fn map_file(&self, path: &str, populate: bool) -> Result<Option<MappedFile>> {
        let _ = (path, populate);
        Ok(None)
    }

    /// Metadata of `path`, or `None` when nothing is there.
    ///
    /// # Errors
    /// `InvalidArgument`, `Storage`.
    fn stat(&self, path: &str) -> Result<Option<EntryMeta>>;

    /// The immediate children of directory `path` (`""` for the root), in no particular order.
    /// A directory that does not exist lists as empty.
    ///
    /// # Errors
    /// `InvalidArgument`, `Storage` (e.g. `path` is a file on a local file system).
    fn list_dir(&self, path: &str) -> Result<Vec<Entry>>;

    /// The paths, relative to directory `path` (`""` for the root), of every file below it at
    /// any depth, in no particular order: e.g. `["3/commit_success.txt", "3/state/data"]` for
    /// `path` = `""`. Directories themselves and symbolic links are not listed (nor is anything
    /// reached through a link). A directory that does not exist lists as empty.
    ///
    /// The default walks the tree with [`Store::list_dir`] (one call per directory), so layers
    /// that do not override it stay correct. [`OpendalStore`] on an object store (and memory)
    /// makes it one paginated listing without delimiter (every page fetched): a root of 2,000
    /// steps is listed in a few requests instead of one per step. Layers that count or delay
    /// calls treat it as one listing call.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad path; `Storage` (e.g. `path` is a file on a local file system).
    fn list_recursive(&self, path: &str) -> Result<Vec<String>> {
        layer::provided::list_recursive(self, path)
    }

    /// Creates directory `path` and its parents; succeeds if it exists. A no-op where directories
    /// do not exist on their own.
    ///
    /// # Errors
    /// `InvalidArgument`, `Storage`.
    fn create_dir(&self, path: &str) -> Result<()>;

    /// Deletes one file; succeeds if it does not exist.
    ///
    /// # Errors
    /// `InvalidArgument`, `Storage`.
    fn delete(&self, path: &str) -> Result<()>;

    /// Deletes directory `path` and everything below it; succeeds if it does not exist.
    ///
    /// # Errors
    /// `InvalidArgument` (also for the root itself, `""`), `Storage`.
    fn delete_prefix(&self, path: &str) -> Result<()>;

    /// Renames the file or directory `from` to `to` atomically; `to` must not exist.
    ///
    /// # Errors
    /// `Unsupported` when [`Capabilities::rename`] is false; `NotFound` when `from` is missing;
    /// `AlreadyExists` when `to` exists; `InvalidArgument`, `Storage`.
    fn rename(&self, from: &str, to: &str) -> Result<()>;

    /// Takes the root's single-writer lock, held until the returned guard is dropped, so that a
    /// second manager opened for writing on the same root fails instead of racing the first.
    /// Stores without such a lock (memory, object stores) return `Ok(None)`: the default.
    /// ckpt's own: Orbax has no writer lock. Readers never take it, so they are never blocked.
    ///
    /// # Errors
    /// `Locked` when another live writer (in this or another process) holds the lock; `Storage`
    /// when the lock cannot be taken for another reason.
    fn lock_for_writing(&self) -> Result<Option<Box<dyn WriterLock>>> {
        Ok(None)
    }

    /// Makes the entries of directory `path` durable (fsync of the directory). A no-op on stores
    /// that are not [`Capabilities::durable`] or have no directories.
    ///
    /// # Errors
    /// `InvalidArgument`, `Storage`.
    fn sync_dir(&self, path: &str) -> Result<()>;
}

/// The examples of this crate's README.md, run as doctests so they stay true to the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
