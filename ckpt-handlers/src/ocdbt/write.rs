//! Writing an OCDBT database as ckpt does: the minimal shape of docs/orbax-arrays/ocdbt.md §11
//! (one generation, one leaf node in a data file of its own, the values in other data files),
//! with Orbax's config so the result is what
//! tensorstore and Orbax read.

use super::codec::{common_prefix, encode_envelope, put_file_table, put_varint};
use super::codec::{BTREE_NODE_MAGIC, MANIFEST_MAGIC};
use ckpt_core::{Error, Result};

/// Values up to this many bytes go inline into the leaf node (Orbax's `max_inline_value_bytes`).
pub const MAX_INLINE_VALUE_BYTES: usize = 1024;
/// Orbax's `max_decoded_node_bytes` (recorded in the config; ckpt writes one leaf whatever its
/// size).
pub const MAX_DECODED_NODE_BYTES: u32 = 100_000_000;

/// What to write for one database, after the data files the entries' out-of-line values are in:
/// the leaf node's file, then the manifest.
#[derive(Debug)]
pub struct Layout {
    /// The leaf node's envelope, the whole of data file `node_file` given to [`layout`].
    pub node: Vec<u8>,
    /// The `manifest.ocdbt` bytes, written last.
    pub manifest: Vec<u8>,
}

/// Where one value of a database to write is.
#[derive(Debug, Clone, Copy)]
pub enum Stored<'a> {
    /// In the leaf node (at most [`MAX_INLINE_VALUE_BYTES`]).
    Inline(&'a [u8]),
    /// Bytes `offset .. offset + len` of data file `files[file]` (already written).
    Indirect {
        /// Index into the data files given to [`layout`].
        file: usize,
        /// Offset in the file, in bytes.
        offset: u64,
        /// Length, in bytes.
        len: u64,
    },
}

/// One key of a database to write.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// The key.
    pub key: &'a [u8],
    /// Where its value is.
    pub value: Stored<'a>,
}

impl Entry<'_> {
    fn len(&self) -> u64 {
        match self.value {
            Stored::Inline(v) => v.len() as u64,
            Stored::Indirect { len, .. } => len,
        }
    }
}

/// Lays out the leaf node and manifest of a database holding `entries`, whose out-of-line values
/// are in `files` (paths relative to the database directory, e.g. `d/<32 hex>`); the node goes
/// alone into data file `node_file`. Keys must be strictly increasing as bytes.
///
/// `uuid` is the database identifier, `commit_time_ns` the commit time (ns since the Unix epoch).
/// Bodies are zstd level 0 (zstd's default), as Orbax's; the config is Orbax's.
///
/// # Errors
/// `InvalidArgument` when keys are not strictly increasing, a key is longer than 65535 bytes, a
/// value names a file not in `files`, or there are no entries (an empty database has no root;
/// ckpt never writes one); `Handler` when zstd fails.
pub fn layout(
    entries: &[Entry<'_>],
    files: &[&str],
    node_file: &str,
    uuid: [u8; 16],
    commit_time_ns: u64,
) -> Result<Layout> {
    if entries.is_empty() {
        return Err(Error::invalid_argument(
            "an OCDBT database needs at least one key",
        ));
    }
    for (i, e) in entries.iter().enumerate() {
        let k = e.key;
        if k.len() > 65535 {
            return Err(Error::invalid_argument(format!(
                "OCDBT key {:?} is longer than 65535 bytes",
                String::from_utf8_lossy(k)
            )));
        }
        if i > 0 && k <= entries[i - 1].key {
            return Err(Error::invalid_argument(format!(
                "OCDBT keys are not strictly increasing at {:?}",
                String::from_utf8_lossy(k)
            )));
        }
        if let Stored::Indirect { file, .. } = e.value {
            if file >= files.len() {
                return Err(Error::invalid_argument(format!(
                    "OCDBT value of {:?} names data file {file} of {}",
                    String::from_utf8_lossy(k),
                    files.len()
                )));
            }
        }
    }
    // The node's table lists the data files its values use, in first-use order (sorted paths
    // share prefixes best, but any order reads).
    let mut used: Vec<usize> = Vec::new();
    for e in entries {
        if let Stored::Indirect { file, .. } = e.value {
            if !used.contains(&file) {
                used.push(file);
            }
        }
    }
    used.sort_by(|a, b| files[*a].cmp(files[*b]));
    let table_index = |file: usize| used.iter().position(|f| *f == file).unwrap_or(0) as u64;
    let indirect_bytes: u64 = entries
        .iter()
        .filter_map(|e| match e.value {
            Stored::Indirect { len, .. } => Some(len),
            Stored::Inline(_) => None,
        })
        .sum();
    let mut body = vec![0u8]; // height 0
    let table: Vec<&str> = used.iter().map(|f| files[*f]).collect();
    put_file_table(&mut body, &table);
    put_varint(&mut body, entries.len() as u64);
    let shared: Vec<usize> = (0..entries.len())
        .map(|i| {
            if i == 0 {
                0
            } else {
                common_prefix(entries[i - 1].key, entries[i].key)
            }
        })
        .collect();
    for s in &shared[1..] {
        put_varint(&mut body, *s as u64);
    }
    for (i, e) in entries.iter().enumerate() {
        put_varint(&mut body, (e.key.len() - shared[i]) as u64);
    }
    for (i, e) in entries.iter().enumerate() {
        body.extend_from_slice(&e.key[shared[i]..]);
    }
    for e in entries {
        put_varint(&mut body, e.len());
    }
    for e in entries {
        body.push(u8::from(matches!(e.value, Stored::Indirect { .. })));
    }
    for e in entries {
        if let Stored::Indirect { file, .. } = e.value {
            put_varint(&mut body, table_index(file));
        }
    }
    for e in entries {
        if let Stored::Indirect { offset, .. } = e.value {
            put_varint(&mut body, offset);
        }
    }
    for e in entries {
        if let Stored::Inline(v) = e.value {
            body.extend_from_slice(v);
        }
    }
    let node = encode_envelope(BTREE_NODE_MAGIC, &body, Some(0))?;
    // The manifest (§4, §6.1): one generation whose root is the node, alone in `node_file`.
    let mut m = Vec::with_capacity(128);
    m.extend_from_slice(&uuid);
    m.push(0); // manifest_kind single
    put_varint(&mut m, MAX_INLINE_VALUE_BYTES as u64);
    put_varint(&mut m, u64::from(MAX_DECODED_NODE_BYTES));
    m.push(4); // version_tree_arity_log2
    put_varint(&mut m, 1); // zstd
    m.extend_from_slice(&0i32.to_le_bytes());
    put_file_table(&mut m, &[node_file]);
    put_varint(&mut m, 1); // num_versions
    put_varint(&mut m, 1); // generation 1
    m.push(0); // root height
    put_varint(&mut m, 0); // data file 0
    put_varint(&mut m, 0); // offset
    put_varint(&mut m, node.len() as u64);
    put_varint(&mut m, entries.len() as u64);
    put_varint(&mut m, node.len() as u64);
    put_varint(&mut m, indirect_bytes);
    m.extend_from_slice(&commit_time_ns.to_le_bytes());
    put_varint(&mut m, 0); // no version nodes
    let manifest = encode_envelope(MANIFEST_MAGIC, &m, Some(0))?;
    Ok(Layout { node, manifest })
}
