//! Orbax's array items, both ways: [`StandardHandler`] and [`PyTreeHandler`] read and write the
//! items of Orbax's `StandardCheckpointHandler` / `PyTreeCheckpointHandler` (a pytree of arrays,
//! scalars and strings; docs/orbax-arrays/). Reading takes any layout Orbax 0.12.8 writes — OCDBT
//! with zarr v2 or v3, or a zarr v2 / v3 directory per leaf; writing gives OCDBT + zarr v2
//! (Orbax's default) or, with [`ArrayLayout::Zarr`], a zarr v2 directory per leaf (Orbax's
//! `use_ocdbt=False`).
//!
//! Here: the handlers and their options. Reading: [`restore_tree`], [`restore_tree_into`]
//! (`restore.rs`), one array leaf (`arrays.rs`) from its source (`source.rs`: OCDBT or
//! directories), large values streamed (`stream.rs`), leaves in parallel (`parallel.rs`);
//! [`tree_metadata`] (`describe.rs`); writing: [`save_item`] (`write.rs`); one process's part
//! of an item saved by several ([`PyTreeShard`], [`save_shard`], [`merge_process_databases`],
//! and [`restore_leaf_box`] to read any box of a leaf: `shard.rs`); the formats:
//! [`metadata`] (`_METADATA`) and [`zarr`].

mod arrays;
mod buffers;
mod describe;
pub mod metadata;
mod parallel;
mod restore;
mod shard;
mod source;
mod stream;
mod write;
pub mod zarr;

pub use describe::tree_metadata;
pub use restore::{restore_tree, restore_tree_into};
pub use shard::{
    merge_process_databases, restore_leaf_box, save_shard, Placement, PyTreeShard, ShardRole,
    MAX_SHARD_CHUNK_BYTES, PROCESS_DIR_PREFIX,
};
pub use write::{save_item, DATA_FILE_BYTES, DEFAULT_CHUNK_BYTES};

use crate::{CheckpointHandler, ItemDir, RestoredItem, SaveItem};
use ckpt_core::Result;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// Type string of Orbax's `StandardCheckpointHandler` (what `args.StandardSave` records).
pub const STANDARD_HANDLER: &str =
    "orbax.checkpoint._src.handlers.standard_checkpoint_handler.StandardCheckpointHandler";
/// Type string of Orbax's `PyTreeCheckpointHandler` (what `args.PyTreeSave` records).
pub const PYTREE_HANDLER: &str =
    "orbax.checkpoint._src.handlers.pytree_checkpoint_handler.PyTreeCheckpointHandler";

/// `_strings.json`: the string leaves of an item, by param name.
const STRINGS_FILE: &str = "_strings.json";

/// How an item's arrays are laid out when ckpt writes them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArrayLayout {
    /// One OCDBT database holding a zarr v2 array per leaf (Orbax's default, `use_ocdbt=True`).
    #[default]
    Ocdbt,
    /// A zarr v2 directory per leaf (Orbax's `use_ocdbt=False`).
    Zarr,
}

/// Options of the Orbax array handlers (serde defaults: OCDBT, one chunk per array).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayOptions {
    /// The layout written (reading takes any).
    #[serde(default)]
    pub layout: ArrayLayout,
    /// Target chunk size in bytes, as Orbax's `SaveArgs(chunk_byte_size=…)`; `None` is ckpt's
    /// default, [`DEFAULT_CHUNK_BYTES`] (16 MiB; deviation: Orbax's default is one chunk per
    /// array). An array no larger than the target is one chunk; with OCDBT the target is capped at
    /// 2 GiB, as Orbax's.
    #[serde(default)]
    pub chunk_byte_size: Option<u64>,
}

macro_rules! orbax_array_handler {
    ($name:ident, $type_string:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct $name {
            /// What is written (the layout, chunking).
            #[serde(default)]
            pub options: ArrayOptions,
        }

        impl $name {
            /// A handler writing `layout`, one chunk per array.
            pub fn with_layout(layout: ArrayLayout) -> Self {
                $name {
                    options: ArrayOptions {
                        layout,
                        chunk_byte_size: None,
                    },
                }
            }
        }

        #[typetag::serde(name = $type_string)]
        impl CheckpointHandler for $name {
            fn type_string(&self) -> String {
                $type_string.to_string()
            }

            fn save(&self, dir: &ItemDir<'_>, item: &SaveItem<'_>) -> Result<()> {
                match item {
                    SaveItem::PyTreeShard(shard, role) => {
                        save_shard(dir, shard, *role, &self.options)
                    }
                    _ => save_item(dir, item, &self.options),
                }
            }

            fn restore(&self, dir: &ItemDir<'_>) -> Result<RestoredItem> {
                Ok(RestoredItem::PyTree(restore_tree(dir, None)?))
            }

            fn metadata(&self, dir: &ItemDir<'_>) -> Result<Option<Json>> {
                Ok(Some(tree_metadata(dir)?))
            }
        }
    };
}

orbax_array_handler!(
    StandardHandler,
    "orbax.checkpoint._src.handlers.standard_checkpoint_handler.StandardCheckpointHandler",
    "Orbax's `StandardCheckpointHandler` format and type string: a pytree of arrays and scalars \
     (`SaveItem::PyTree`, or `SaveItem::Tensors` as a flat dict), restored as \
     `RestoredItem::PyTree`. Orbax restores what it writes with `restore()` and \
     `args.StandardRestore`."
);
orbax_array_handler!(
    PyTreeHandler,
    "orbax.checkpoint._src.handlers.pytree_checkpoint_handler.PyTreeCheckpointHandler",
    "Orbax's `PyTreeCheckpointHandler` format and type string (the same bytes as \
     [`StandardHandler`]; only the recorded type string differs), which also stores string \
     leaves."
);
