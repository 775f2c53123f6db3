//! tensorstore's OCDBT key-value database, the container of Orbax's default array items
//! (docs/orbax-arrays/ocdbt.md): [`Database::open`] reads the latest generation of any database
//! tensorstore writes (interior nodes, several data files, per-process base paths, raw or zstd
//! bodies); [`layout`] writes the minimal one-leaf database Orbax and tensorstore read.
//!
//! Everything read is untrusted: every decoder checks lengths before it allocates and fails with
//! `Corrupt` naming the file and the structure, never a panic.

mod codec;
mod read;
mod write;

pub use codec::{
    decode_envelope, encode_envelope, BTREE_NODE_MAGIC, MANIFEST_MAGIC, MAX_BODY_BYTES,
    VERSION_NODE_MAGIC,
};
pub use read::{decode_manifest, Config, Database, DbFiles, Manifest, Value};
pub use write::{layout, Entry, Layout, Stored, MAX_DECODED_NODE_BYTES, MAX_INLINE_VALUE_BYTES};

/// The manifest's file name at the top of a database (and an Orbax item directory).
pub const MANIFEST_FILE: &str = "manifest.ocdbt";
