//! Item handlers: how one item of a step is written into its item directory and read back.
//!
//! A [`CheckpointHandler`] is registered with typetag under its *type string*, the string recorded
//! for the item in the step metadata's `item_handlers` (spec §1.5). A fresh process therefore
//! restores any item whose type string names a linked handler, without being told its type
//! ([`handler_for_type_string`]). Built in:
//! - [`JsonHandler`]: Orbax `JsonCheckpointHandler`'s format and type string (spec §2.1);
//! - [`TensorHandler`]: named n-d arrays in one safetensors file (`ckpt.tensors`);
//! - [`BytesHandler`]: one opaque byte string (`ckpt.bytes`);
//! - [`StandardHandler`], [`PyTreeHandler`]: Orbax's `StandardCheckpointHandler` and
//!   `PyTreeCheckpointHandler` (a [`PyTree`] of arrays in OCDBT or zarr, docs/orbax-arrays/).
//!
//! Orbax's `ArrayCheckpointHandler` and `ProtoCheckpointHandler` are recognised by type string and
//! restoring them fails with [`ckpt_core::ErrorKind::Unsupported`] naming the item and the handler.
#![deny(missing_docs)]
// docs.rs (`cfg(docsrs)`, see Cargo.toml) marks items behind a Cargo feature with a badge
// (`doc_cfg`, which took in `doc_auto_cfg` in Rust 1.92).
#![cfg_attr(docsrs, feature(doc_cfg))]

use ckpt_core::{Error, Result};
use ckpt_storage::Store;
use std::borrow::Cow;
use std::fmt::Debug;

/// The directory of one item inside a step directory (or inside its tmp directory while saving).
/// Handlers read and write only through it, so they cannot reach outside their item.
#[derive(Debug, Clone, Copy)]
pub struct ItemDir<'a> {
    store: &'a dyn Store,
    path: &'a str,
}

impl<'a> ItemDir<'a> {
    /// The item directory at `path` (relative to the store's root) of `store`.
    pub fn new(store: &'a dyn Store, path: &'a str) -> Self {
        ItemDir { store, path }
    }

    /// The directory's path relative to the store's root.
    pub fn path(&self) -> &str {
        self.path
    }

    /// The store holding the directory.
    pub fn store(&self) -> &'a dyn Store {
        self.store
    }

    /// The path of file `name` in this directory.
    ///
    /// # Errors
    /// `InvalidArgument` when `name` is not one usable path component
    /// ([`ckpt_core::layout::component_problem`]: no `/`, `\\` or NUL, not empty, `.` or `..`,
    /// no edge whitespace), naming the rule broken.
    pub fn file_path(&self, name: &str) -> Result<String> {
        if let Some(problem) = ckpt_core::layout::component_problem(name) {
            return Err(Error::invalid_argument(format!(
                "invalid file name {name:?} in item directory {}: {}",
                self.path,
                problem.rule()
            )));
        }
        Ok(if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}/{}", self.path, name)
        })
    }

    /// The path of `rel`, a `/`-separated path below this directory (`d/<hex>`,
    /// `ocdbt.process_0/d/<hex>`, `params.w/0.0`), each component checked as by
    /// [`ItemDir::file_path`] ([`ckpt_core::layout::component_problem`]).
    ///
    /// # Errors
    /// `InvalidArgument` when a component is empty, `.`, `..`, holds a backslash or NUL, or
    /// begins or ends with whitespace, naming the rule broken.
    pub fn nested_path(&self, rel: &str) -> Result<String> {
        let mut out = self.path.to_string();
        for part in rel.split('/') {
            if let Some(problem) = ckpt_core::layout::component_problem(part) {
                return Err(Error::invalid_argument(format!(
                    "invalid path {rel:?} in item directory {}: {}",
                    self.path,
                    problem.rule()
                )));
            }
            out = ckpt_storage::join_path(&out, part);
        }
        Ok(out)
    }

    /// Reads bytes `range` of the file at nested path `rel` (see [`ItemDir::nested_path`]).
    ///
    /// # Errors
    /// As [`ItemDir::nested_path`] and [`Store::read_range`] (`NotFound` when it is missing).
    pub fn read_range_at(&self, rel: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>> {
        self.store.read_range(&self.nested_path(rel)?, range)
    }

    /// Fills `buf` with the bytes of the file at nested path `rel` from `offset` on
    /// ([`Store::read_range_into`]: on a local store straight into `buf`, no buffer of its own).
    ///
    /// # Errors
    /// As [`ItemDir::nested_path`] and [`Store::read_range_into`].
    pub fn read_range_into_at(&self, rel: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.store
            .read_range_into(&self.nested_path(rel)?, offset, buf)
    }

    /// Reads the file at nested path `rel`.
    ///
    /// # Errors
    /// As [`ItemDir::nested_path`] and [`Store::read`] (`NotFound` when it is missing).
    pub fn read_at(&self, rel: &str) -> Result<Vec<u8>> {
        self.store.read(&self.nested_path(rel)?)
    }

    /// The size in bytes of the file at nested path `rel`.
    ///
    /// # Errors
    /// `NotFound` when it is missing; as [`ItemDir::nested_path`] and [`Store::stat`].
    pub fn size_at(&self, rel: &str) -> Result<u64> {
        let path = self.nested_path(rel)?;
        match self.store.stat(&path)? {
            Some(m) => Ok(m.size),
            None => Err(Error::not_found(format!(
                "file not found ({})",
                self.store.location(&path)
            ))),
        }
    }

    /// Writes the file at nested path `rel` durably from `parts` (creating its directories).
    ///
    /// # Errors
    /// As [`ItemDir::nested_path`] and [`Store::write_parts`].
    pub fn write_parts_at(&self, rel: &str, parts: &[&[u8]]) -> Result<()> {
        self.store.write_parts(&self.nested_path(rel)?, parts)
    }

    /// The full location of file `name` (for messages).
    pub fn location(&self, name: &str) -> String {
        self.store.location(
            &self
                .file_path(name)
                .unwrap_or_else(|_| self.path.to_string()),
        )
    }

    /// Writes file `name` durably.
    ///
    /// # Errors
    /// As [`ItemDir::file_path`] and [`Store::write`].
    pub fn write(&self, name: &str, data: &[u8]) -> Result<()> {
        self.store.write(&self.file_path(name)?, data)
    }

    /// Writes file `name` durably from `parts`, one after another, without concatenating them
    /// first (see [`Store::write_parts`]).
    ///
    /// # Errors
    /// As [`ItemDir::file_path`] and [`Store::write_parts`].
    pub fn write_parts(&self, name: &str, parts: &[&[u8]]) -> Result<()> {
        self.store.write_parts(&self.file_path(name)?, parts)
    }

    /// Reads file `name`.
    ///
    /// # Errors
    /// `NotFound` when it is missing; as [`ItemDir::file_path`] and [`Store::read`].
    pub fn read(&self, name: &str) -> Result<Vec<u8>> {
        self.store.read(&self.file_path(name)?)
    }

    /// Opens file `name` for reading into buffers the caller sizes (see [`Store::open_read`]);
    /// end with [`ckpt_storage::ReadStream::finish`], which checks the file on a checking store.
    ///
    /// # Errors
    /// `NotFound` when it is missing; as [`ItemDir::file_path`] and [`Store::open_read`].
    pub fn open_read(&self, name: &str) -> Result<Box<dyn ckpt_storage::ReadStream + 'a>> {
        self.store.open_read(&self.file_path(name)?)
    }

    /// Whether file `name` exists.
    ///
    /// # Errors
    /// As [`ItemDir::file_path`] and [`Store::stat`].
    pub fn exists(&self, name: &str) -> Result<bool> {
        Ok(self.store.stat(&self.file_path(name)?)?.is_some())
    }
}

/// An item given to `save`. Borrowed variants are written from the caller's memory; owned ones
/// are moved in.
pub enum SaveItem<'a> {
    /// Any `serde::Serialize` value, written as JSON by [`JsonHandler`].
    Json(&'a (dyn erased_serde::Serialize + Sync)),
    /// A JSON value, written by [`JsonHandler`].
    JsonValue(Cow<'a, serde_json::Value>),
    /// Named tensors, written by [`TensorHandler`].
    Tensors(Cow<'a, TensorMap>),
    /// Opaque bytes, written by [`BytesHandler`].
    Bytes(Cow<'a, [u8]>),
    /// A pytree of arrays, written in Orbax's format by [`StandardHandler`] (or
    /// [`PyTreeHandler`]).
    PyTree(Cow<'a, PyTree>),
    /// One process's part of a pytree item saved by every process of a job (its shards of the
    /// sharded leaves), written by [`StandardHandler`] (or [`PyTreeHandler`]) in Orbax's
    /// multi-process layout (`ocdbt.process_<i>/`, merged by the primary), as the process the
    /// [`orbax_array::ShardRole`] names. The manager sets the role; a single-process save uses
    /// [`orbax_array::ShardRole::default`].
    PyTreeShard(Cow<'a, orbax_array::PyTreeShard>, orbax_array::ShardRole),
    /// Anything else, for third-party handlers, which downcast it.
    Custom(&'a (dyn std::any::Any + Sync)),
}

impl SaveItem<'_> {
    /// The value of a [`SaveItem::Custom`] item if it is a `T`, else `None` (also for the other
    /// variants). For third-party handlers: `dyn Any + Sync` has no `downcast_ref` of its own.
    pub fn downcast_custom<T: std::any::Any>(&self) -> Option<&T> {
        match self {
            SaveItem::Custom(any) => {
                let any: &dyn std::any::Any = *any;
                any.downcast_ref::<T>()
            }
            _ => None,
        }
    }
}

impl Debug for SaveItem<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SaveItem::Json(_) => f.write_str("SaveItem::Json(..)"),
            SaveItem::JsonValue(v) => write!(f, "SaveItem::JsonValue({v})"),
            SaveItem::Tensors(t) => write!(f, "SaveItem::Tensors({} tensors)", t.len()),
            SaveItem::Bytes(b) => write!(f, "SaveItem::Bytes({} bytes)", b.len()),
            SaveItem::PyTree(t) => write!(f, "SaveItem::PyTree({} leaves)", t.leaves().len()),
            SaveItem::PyTreeShard(t, role) => write!(
                f,
                "SaveItem::PyTreeShard({} leaves, process {})",
                t.tree().leaves().len(),
                role.process
            ),
            SaveItem::Custom(_) => f.write_str("SaveItem::Custom(..)"),
        }
    }
}

/// An item as a handler restored it.
#[derive(Debug)]
pub enum RestoredItem {
    /// A JSON value (from [`JsonHandler`]).
    Json(serde_json::Value),
    /// Named tensors (from [`TensorHandler`]).
    Tensors(TensorMap),
    /// Opaque bytes (from [`BytesHandler`]).
    Bytes(Vec<u8>),
    /// A pytree (from [`StandardHandler`] / [`PyTreeHandler`]: Orbax's array items).
    PyTree(PyTree),
    /// Anything else, from third-party handlers.
    Custom(Box<dyn std::any::Any + Send + Sync>),
}

/// Writes one item into its item directory and reads it back (Orbax `CheckpointHandler`).
///
/// Implementations are registered with `#[typetag::serde(name = "<type string>")]`, the name being
/// exactly what [`CheckpointHandler::type_string`] returns, so that [`handler_for_type_string`]
/// finds them. Handlers write only inside the [`ItemDir`] they are given and never commit.
#[typetag::serde(tag = "type")]
pub trait CheckpointHandler: Debug + Send + Sync {
    /// The type string recorded in `_CHECKPOINT_METADATA.item_handlers`, e.g. Orbax's
    /// `orbax.checkpoint._src.handlers.json_checkpoint_handler.JsonCheckpointHandler`.
    fn type_string(&self) -> String;

    /// Writes `item` into `dir`.
    ///
    /// # Errors
    /// `InvalidArgument` when `item` is a variant this handler does not write; `Handler` or
    /// `Storage` when writing fails.
    fn save(&self, dir: &ItemDir<'_>, item: &SaveItem<'_>) -> Result<()>;

    /// Reads the item back from `dir`.
    ///
    /// # Errors
    /// `NotFound` when the item's files are missing; `Corrupt` when they cannot be parsed;
    /// `Unsupported` when the format cannot be read by ckpt.
    fn restore(&self, dir: &ItemDir<'_>) -> Result<RestoredItem>;

    /// What the handler can tell about the item without restoring it (Orbax `metadata()`), or
    /// `None` (as Orbax's JSON handler).
    ///
    /// # Errors
    /// As [`CheckpointHandler::restore`].
    fn metadata(&self, dir: &ItemDir<'_>) -> Result<Option<serde_json::Value>>;
}

mod bytes;
mod common;
mod json;
pub mod ocdbt;
mod orbax;
pub mod orbax_array;
mod pytree;
mod registry;
mod tensor;
mod tensor_handler;
mod tensor_interop;

pub use bytes::BytesHandler;
pub use json::JsonHandler;
pub use orbax::{is_orbax_tensorstore_handler, ORBAX_JSON_HANDLER, ORBAX_TENSORSTORE_HANDLERS};
pub use orbax_array::{ArrayLayout, ArrayOptions, PyTreeHandler, StandardHandler};
pub use pytree::{param_name, KeyEntry, PyTree};
pub use registry::{default_handler_for, handler_for_type_string, HandlerRegistry};
pub use tensor::{DType, Element, Tensor, TensorMap};
pub use tensor_handler::{MappedTensor, MappedTensors, TensorHandler};

/// The `half` crate, whose [`half::f16`] and [`half::bf16`] are the element types of
/// [`DType::F16`] and [`DType::BF16`] tensors.
pub use half;
/// The `safetensors` crate, whose `Dtype` converts to and from [`DType`].
pub use safetensors;

/// The examples of this crate's README.md, run as doctests so they stay true to the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
