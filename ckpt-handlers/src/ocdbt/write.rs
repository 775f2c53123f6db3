//! Writing an OCDBT database as ckpt does: the minimal shape of docs/orbax-arrays/ocdbt.md §11
//! (one generation, one leaf node, one data file), with Orbax's config so the result is what
//! tensorstore and Orbax read.

use super::codec::{common_prefix, encode_envelope, put_file_table, put_varint};
use super::codec::{BTREE_NODE_MAGIC, MANIFEST_MAGIC};
use ckpt_core::{Error, Result};

/// Values up to this many bytes go inline into the leaf node (Orbax's `max_inline_value_bytes`).
pub const MAX_INLINE_VALUE_BYTES: usize = 1024;
/// Orbax's `max_decoded_node_bytes` (recorded in the config; ckpt writes one leaf whatever its
/// size).
pub const MAX_DECODED_NODE_BYTES: u32 = 100_000_000;

/// What to write for one database: the data file (the out-of-line values in [`Layout::indirect`]
/// order, then [`Layout::node`]) and, after it, the manifest.
#[derive(Debug)]
pub struct Layout {
    /// Indices (into the entries given to [`layout`]) of the values stored out of line, in the
    /// order they are written at the start of the data file.
    pub indirect: Vec<usize>,
    /// The leaf node's envelope, written after the values.
    pub node: Vec<u8>,
    /// The `manifest.ocdbt` bytes, written last.
    pub manifest: Vec<u8>,
}

/// One key of a database to write.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The value's length in bytes.
    pub len: u64,
    /// The value when it goes inline into the leaf (at most [`MAX_INLINE_VALUE_BYTES`]), `None`
    /// when it is written out of line into the data file.
    pub inline: Option<&'a [u8]>,
}

/// Lays out a database holding `entries` in data file `data_file` (a path relative to the database
/// directory, e.g. `d/<32 hex>`): keys must be strictly increasing as bytes.
///
/// `uuid` is the database identifier, `commit_time_ns` the commit time (ns since the Unix epoch).
/// Bodies are zstd level 0 (zstd's default), as Orbax's.
///
/// # Errors
/// `InvalidArgument` when keys are not strictly increasing, a key is longer than 65535 bytes,
/// or there are no entries (an empty database has no root; ckpt never writes one); `Handler`
/// when zstd fails.
pub fn layout(
    entries: &[Entry<'_>],
    data_file: &str,
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
    }
    let mut indirect = Vec::new();
    let mut offsets = Vec::new();
    let mut offset = 0u64;
    for (i, e) in entries.iter().enumerate() {
        if e.inline.is_none() {
            indirect.push(i);
            offsets.push(offset);
            offset += e.len;
        }
    }
    let values_bytes = offset;
    // The leaf node (§7).
    let mut body = vec![0u8]; // height 0
    if indirect.is_empty() {
        put_file_table(&mut body, &[]);
    } else {
        put_file_table(&mut body, &[data_file]);
    }
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
        put_varint(&mut body, e.len);
    }
    for e in entries {
        body.push(u8::from(e.inline.is_none()));
    }
    for _ in &indirect {
        put_varint(&mut body, 0);
    }
    for o in &offsets {
        put_varint(&mut body, *o);
    }
    for e in entries {
        if let Some(v) = e.inline {
            if v.len() as u64 != e.len {
                return Err(Error::invalid_argument("inline value length mismatch"));
            }
            body.extend_from_slice(v);
        }
    }
    let node = encode_envelope(BTREE_NODE_MAGIC, &body, Some(0))?;
    // The manifest (§4, §6.1): one generation whose root is the leaf after the values.
    let mut m = Vec::with_capacity(128);
    m.extend_from_slice(&uuid);
    m.push(0); // manifest_kind single
    put_varint(&mut m, MAX_INLINE_VALUE_BYTES as u64);
    put_varint(&mut m, u64::from(MAX_DECODED_NODE_BYTES));
    m.push(4); // version_tree_arity_log2
    put_varint(&mut m, 1); // zstd
    m.extend_from_slice(&0i32.to_le_bytes());
    put_file_table(&mut m, &[data_file]);
    put_varint(&mut m, 1); // num_versions
    put_varint(&mut m, 1); // generation 1
    m.push(0); // root height
    put_varint(&mut m, 0); // data file 0
    put_varint(&mut m, values_bytes);
    put_varint(&mut m, node.len() as u64);
    put_varint(&mut m, entries.len() as u64);
    put_varint(&mut m, node.len() as u64);
    put_varint(&mut m, values_bytes);
    m.extend_from_slice(&commit_time_ns.to_le_bytes());
    put_varint(&mut m, 0); // no version nodes
    let manifest = encode_envelope(MANIFEST_MAGIC, &m, Some(0))?;
    Ok(Layout {
        indirect,
        node,
        manifest,
    })
}
