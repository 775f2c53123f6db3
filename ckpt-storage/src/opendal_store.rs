//! [`OpendalStore`]: a [`Store`] over opendal's blocking operator, for process memory and the
//! object stores (S3, GCS, Azure Blob; features `s3`, `gcs`, `azblob`, configuration in
//! `object/`). The local file system is [`crate::LocalStore`]; opening either from a URI is
//! `uri.rs`.
//!
//! Facts about opendal 0.59.5 this module relies on (read in its source and checked by this
//! crate's tests): opendal trims whitespace at both ends of every path it is given (hence
//! [`crate::validate_path`] rejects components that begin or end with whitespace); the memory
//! service has no directories, `create_dir` on it would write a marker object, and it has no
//! rename.
//!
//! Object stores use the same operator calls, with these choices: no rename ([`Store::rename`]
//! is `Unsupported`, so commits use the commit-file protocol), no directories (`create_dir` and
//! `sync_dir` are no-ops; a "directory" is a common prefix), writes durable when they return
//! (no fsync); `list_dir` is one paginated delimiter listing (`prefix/`, delimiter `/`) whose
//! common prefixes are the directories; `stat` of a path holding no object is one listing of
//! `path/` with a page of one key (a directory when anything is below it); `delete_prefix` is
//! opendal's recursive delete, batched (S3 `DeleteObjects`, up to 1,000 keys a request);
//! writes of [`crate::UploadOptions::multipart_threshold`] bytes or more are concurrent
//! multipart uploads (aborted on failure), smaller ones one PUT.

use crate::error_map::from_opendal;
#[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
use crate::object::ObjectConfig;
use crate::path::{not_root, validate_path};
use crate::runtime::runtime;
use crate::stream::IoStream;
use crate::{Capabilities, Entry, EntryKind, EntryMeta, ReadStream, Store};
use chrono::{DateTime, Utc};
use ckpt_core::{Error, ErrorKind, Result};
use opendal::blocking;
use opendal::options::{DeleteOptions, ListOptions, ReadOptions, WriteOptions};
use std::fmt;
use std::ops::Range;

/// Which opendal service a store uses, and what it needs to know beyond the operator.
// One per store, so the size of the object-store variant costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum Backend {
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
            Backend::Memory => format!("memory:///{path}"),
            #[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
            Backend::Object { config, .. } => config.location(path),
        }
    }

    /// The object store's configuration, `None` for the memory store.
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
struct Ops {
    blocking: blocking::Operator,
    #[cfg_attr(
        not(any(feature = "s3", feature = "gcs", feature = "azblob")),
        allow(dead_code)
    )]
    async_op: opendal::Operator,
}

/// A [`Store`] over `opendal::blocking::Operator`: process memory, or an object store (S3, GCS,
/// Azure Blob; features `s3` (default), `gcs`, `azblob`). The local file system is
/// [`crate::LocalStore`].
///
/// Every call blocks the calling thread; do not call it from an async task (opendal's blocking
/// operator panics there, notes/dependencies.md G4); use `spawn_blocking` or a plain thread. The
/// operator is driven by one private process-wide multi-thread tokio runtime.
///
/// Object stores: see the module documentation of `opendal_store.rs` (summarised in the README):
/// no rename, no directories, one paginated listing per `list_dir`, batched prefix deletes,
/// concurrent multipart uploads for large writes. Opening one sends no request; the first call
/// does. [`Store::lock_for_writing`] has no lock to take there (`Ok(None)`).
pub struct OpendalStore {
    backend: Backend,
    /// The operator, built when the store is.
    ops: Ops,
}

impl fmt::Debug for OpendalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpendalStore")
            .field("location", &self.backend.location(""))
            .finish()
    }
}

impl OpendalStore {
    /// A fresh, empty store in process memory (each call gives a new one); locations are
    /// `memory:///<path>`. It has no rename, no directories and no durability, so commits on it
    /// use the commit-file protocol.
    ///
    /// # Errors
    /// `Storage` when the tokio runtime cannot be built.
    pub fn memory() -> Result<Self> {
        let backend = Backend::Memory;
        runtime()?;
        let async_op = opendal::Operator::new(opendal::services::Memory::default())
            .map_err(|e| from_opendal(e, "opening the store", backend.location("")))?;
        Self::with_operator(backend, async_op)
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
        runtime()?;
        let async_op = config
            .build()
            .map_err(|e| from_opendal(e, "opening the store", config.location("")))?;
        let write_if_absent = async_op.info().capability().write_with_if_not_exists;
        let backend = Backend::Object {
            config,
            write_if_absent,
        };
        Self::with_operator(backend, async_op)
    }

    /// The store of `backend` over `async_op` and its blocking face.
    fn with_operator(backend: Backend, async_op: opendal::Operator) -> Result<Self> {
        let rt = runtime()?;
        let _guard = rt.enter();
        let blocking = blocking::Operator::new(async_op.clone())
            .map_err(|e| from_opendal(e, "opening the store", backend.location("")))?;
        Ok(OpendalStore {
            backend,
            ops: Ops { blocking, async_op },
        })
    }

    /// Uploads `parts` (one after another) to `path` as a multipart upload of
    /// `up.chunk_size`-byte parts, `up.concurrency` at a time, aborting the upload (so no parts
    /// are left behind) when a part or the completion fails. Holds about
    /// `chunk_size * (concurrency + 1)` bytes of copies.
    #[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
    fn write_multipart(&self, path: &str, parts: &[&[u8]], up: crate::UploadOptions) -> Result<()> {
        let op = self.ops.async_op.clone();
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

    /// The blocking operator.
    fn op(&self) -> &blocking::Operator {
        &self.ops.blocking
    }

    fn err(&self, e: opendal::Error, what: &str, path: &str) -> Error {
        from_opendal(e, what, self.backend.location(path))
    }
}

fn to_utc(t: std::time::SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(t)
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
    fn write(&self, path: &str, data: &[u8]) -> Result<()> {
        self.write_parts(path, &[data])
    }

    /// Each part copied once into opendal's buffer (object stores: a multipart upload from
    /// [`crate::UploadOptions::multipart_threshold`] bytes on, as `write`).
    fn write_parts(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        validate_path(path)?;
        not_root(path, "write")?;
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
        self.op()
            .write_options(path, buf, self.write_options())
            .map_err(|e| self.err(e, "write", path))?;
        Ok(())
    }

    /// As [`Store::write_parts`]: memory has nothing to sync, and an object store's write is
    /// durable when it returns.
    fn write_parts_unsynced(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        validate_path(path)?;
        not_root(path, "write")?;
        self.write_parts(path, parts)
    }

    /// Nothing to do (every write is durable, or there is no durability, when it returns).
    fn sync_file(&self, path: &str) -> Result<()> {
        validate_path(path)
    }

    /// A conditional create (`If-None-Match: *` on S3) where the store has one; on an object
    /// store without it, a check then a write (racy: [`Capabilities::write_if_absent`] is false
    /// there). Always one PUT, whatever the size.
    fn write_if_absent(&self, path: &str, data: &[u8]) -> Result<()> {
        validate_path(path)?;
        not_root(path, "write_if_absent")?;
        if !self.capabilities().write_if_absent {
            if self.stat(path)?.is_some() {
                return Err(Error::new(ErrorKind::AlreadyExists, "the file exists")
                    .with_path(self.location(path)));
            }
            return self
                .op()
                .write_options(path, data.to_vec(), self.write_options())
                .map(|_| ())
                .map_err(|e| self.err(e, "write", path));
        }
        let opts = WriteOptions {
            if_not_exists: true,
            ..self.write_options()
        };
        self.op()
            .write_options(path, data.to_vec(), opts)
            .map_err(|e| self.err(e, "conditional write", path))?;
        Ok(())
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        validate_path(path)?;
        not_root(path, "read")?;
        match self.op().read(path) {
            Ok(buf) => Ok(buf.to_vec()),
            Err(e) if e.kind() == opendal::ErrorKind::IsADirectory => {
                Err(Error::not_found("no file: the path is a directory")
                    .with_path(self.location(path))
                    .with_source(e))
            }
            Err(e) => Err(self.err(e, "read", path)),
        }
    }

    /// One `stat` (for the size), then one ranged read.
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
        let op = self.op();
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

    /// One read of the whole object (one GET: ranged GETs are far slower on some servers), then
    /// copied out of opendal's buffer once.
    fn open_read(&self, path: &str) -> Result<Box<dyn ReadStream + '_>> {
        validate_path(path)?;
        not_root(path, "read")?;
        let buf = self.op().read(path).map_err(|e| {
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

    /// The root is always a directory; a path holding an object is a file; any other path is
    /// a directory when something is stored below it (one listing with a page of one key).
    fn stat(&self, path: &str) -> Result<Option<EntryMeta>> {
        validate_path(path)?;
        if path.is_empty() {
            return Ok(Some(EntryMeta {
                kind: EntryKind::Dir,
                size: 0,
                modified: None,
            }));
        }
        let op = self.op();
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

    /// One paginated listing (every page is fetched) of `path/` with delimiter `/`: the objects
    /// are the files, the common prefixes the directories.
    fn list_dir(&self, path: &str) -> Result<Vec<Entry>> {
        validate_path(path)?;
        let prefix = dir_prefix(path);
        let opts = ListOptions {
            limit: self.backend.list_page_size(),
            ..Default::default()
        };
        let listed = self
            .op()
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

    /// One listing of `path/` without delimiter, every page fetched (S3 `ListObjectsV2` pages
    /// of [`crate::S3Config::list_page_size`] keys, 1,000 by default).
    fn list_recursive(&self, path: &str) -> Result<Vec<String>> {
        validate_path(path)?;
        let prefix = dir_prefix(path);
        let opts = ListOptions {
            limit: self.backend.list_page_size(),
            recursive: true,
            ..Default::default()
        };
        let listed = self
            .op()
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

    /// A no-op: directories do not exist on their own here.
    fn create_dir(&self, path: &str) -> Result<()> {
        validate_path(path)
    }

    fn delete(&self, path: &str) -> Result<()> {
        validate_path(path)?;
        not_root(path, "delete")?;
        self.op()
            .delete(path)
            .map_err(|e| self.err(e, "delete", path))
    }

    /// opendal's recursive delete of `path/` (batched), then of an object at `path` itself.
    fn delete_prefix(&self, path: &str) -> Result<()> {
        validate_path(path)?;
        if path.is_empty() {
            return Err(
                Error::invalid_argument("refusing to delete the whole store root")
                    .with_path(self.location(path)),
            );
        }
        let op = self.op();
        let opts = DeleteOptions {
            recursive: true,
            ..Default::default()
        };
        op.delete_options(&format!("{path}/"), opts)
            .map_err(|e| self.err(e, "recursive delete", path))?;
        op.delete(path).map_err(|e| self.err(e, "delete", path))
    }

    /// `Unsupported` (after the paths are checked): neither memory nor object stores rename.
    fn rename(&self, from: &str, to: &str) -> Result<()> {
        validate_path(from)?;
        validate_path(to)?;
        not_root(from, "rename")?;
        not_root(to, "rename")?;
        Err(
            Error::new(ErrorKind::Unsupported, "this store cannot rename")
                .with_path(self.location(from)),
        )
    }

    /// A no-op: nothing to fsync.
    fn sync_dir(&self, path: &str) -> Result<()> {
        validate_path(path)
    }
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
