//! [`OpendalStore`]: a [`Store`](crate::Store) over opendal's blocking operator, for process
//! memory and the object stores (S3, GCS, Azure Blob; features `s3`, `gcs`, `azblob`,
//! configuration in `object/`). The local file system is [`crate::LocalStore`]; opening either
//! from a URI is `uri.rs`.
//!
//! Facts about opendal 0.59.5 this module relies on (read in its source and checked by this
//! crate's tests): opendal trims whitespace at both ends of every path it is given (hence
//! [`crate::validate_path`] rejects components that begin or end with whitespace); the memory
//! service has no directories, `create_dir` on it would write a marker object, and it has no
//! rename.
//!
//! Object stores use the same operator calls, with these choices: no rename
//! ([`crate::Store::rename`] is `Unsupported`, so commits use the commit-file protocol), no
//! directories (`create_dir` and `sync_dir` are no-ops; a "directory" is a common prefix), writes
//! durable when they return (no fsync); `list_dir` is one paginated delimiter listing (`prefix/`,
//! delimiter `/`) whose common prefixes are the directories; `stat` of a path holding no object is
//! one listing of `path/` with a page of one key (a directory when anything is below it);
//! `delete_prefix` is opendal's recursive delete, batched (S3 `DeleteObjects`, up to 1,000 keys a
//! request); writes of [`crate::UploadOptions::multipart_threshold`] bytes or more are concurrent
//! multipart uploads (aborted on failure), smaller ones one PUT.
//!
//! Here: the store and how it is opened; which service it talks to is `backend.rs`, the
//! [`Store`](crate::Store) calls are `store.rs`, multipart uploads and write options `upload.rs`.

mod backend;
mod store;
mod upload;

use crate::error_map::from_opendal;
#[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
use crate::object::ObjectConfig;
use crate::runtime::runtime;
use backend::Backend;
use ckpt_core::{Error, Result};
use opendal::blocking;
use std::fmt;

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

/// A [`Store`](crate::Store) over `opendal::blocking::Operator`: process memory, or an object
/// store (S3, GCS, Azure Blob; features `s3` (default), `gcs`, `azblob`). The local file system
/// is [`crate::LocalStore`].
///
/// Every call blocks the calling thread; do not call it from an async task (opendal's blocking
/// operator panics there, notes/dependencies.md G4); use `spawn_blocking` or a plain thread. The
/// operator is driven by one private process-wide multi-thread tokio runtime.
///
/// Object stores: see the module documentation of `opendal_store/` (summarised in the README):
/// no rename, no directories, one paginated listing per `list_dir`, batched prefix deletes,
/// concurrent multipart uploads for large writes. Opening one sends no request; the first call
/// does. [`crate::Store::lock_for_writing`] has no lock to take there (`Ok(None)`).
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

    /// The blocking operator.
    fn op(&self) -> &blocking::Operator {
        &self.ops.blocking
    }

    /// `e` of the call `what` on `path` as ckpt's error; a request that could not be signed
    /// for want of credentials becomes `InvalidConfig` saying what was tried.
    fn err(&self, e: opendal::Error, what: &str, path: &str) -> Error {
        #[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
        if let Some(config) = self.backend.object() {
            if crate::object::is_missing_credential(&e) {
                return crate::object::missing_credentials(
                    config,
                    e,
                    what,
                    self.backend.location(path),
                );
            }
        }
        from_opendal(e, what, self.backend.location(path))
    }
}
