//! Reading an OCDBT database: the manifest (docs/orbax-arrays/ocdbt.md §4, §6), B+tree nodes
//! (§7), and the key → value listing of the latest generation (§12, the reader checklist).

use super::codec::{
    decode_envelope, read_file_table, Cursor, BTREE_NODE_MAGIC, MANIFEST_MAGIC, MAX_BODY_BYTES,
};
use ckpt_core::{Error, ErrorKind, Result};
use std::collections::BTreeMap;
use std::ops::Range;

/// The files of one database, read by path relative to the database directory (the item
/// directory for Orbax). Implemented over a ckpt [`ckpt_storage::Store`] by the Orbax array
/// handler; a test can implement it over a map.
pub trait DbFiles {
    /// The size of file `path` in bytes.
    ///
    /// # Errors
    /// `NotFound` when it is missing; `Storage` when the store fails.
    fn size(&self, path: &str) -> Result<u64>;

    /// Bytes `range` of file `path` (the caller has checked the range against [`DbFiles::size`]).
    ///
    /// # Errors
    /// `NotFound` when it is missing; `Storage` when the store fails.
    fn read_range(&self, path: &str, range: Range<u64>) -> Result<Vec<u8>>;

    /// Fills `buf` with the bytes of file `path` from `offset` on (the caller has checked the
    /// range), into memory the caller reuses. The default reads them through
    /// [`DbFiles::read_range`] and copies.
    ///
    /// # Errors
    /// As [`DbFiles::read_range`].
    fn read_range_into(&self, path: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        let bytes = self.read_range(path, offset..offset + buf.len() as u64)?;
        if bytes.len() != buf.len() {
            return Err(Error::corrupt(format!(
                "{path}: short read at {offset} ({} of {} bytes)",
                bytes.len(),
                buf.len()
            )));
        }
        buf.copy_from_slice(&bytes);
        Ok(())
    }
}

/// A database's configuration, fixed when it was created (§4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The database's random identifier.
    pub uuid: [u8; 16],
    /// Values up to this many bytes are stored inline in leaf nodes (Orbax: 1024).
    pub max_inline_value_bytes: u32,
    /// Writers split nodes above this decoded size, in bytes (Orbax: 100,000,000).
    pub max_decoded_node_bytes: u32,
    /// log2 of the version tree's arity (Orbax: 4), 1..=16.
    pub version_tree_arity_log2: u8,
    /// zstd level of every node and manifest body, or `None` for uncompressed ones (Orbax:
    /// `Some(0)`, zstd's default level).
    pub zstd_level: Option<i32>,
}

/// Where a stored value lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Held in the leaf node itself.
    Inline(Vec<u8>),
    /// Bytes `offset .. offset + length` of data file `file` (a path relative to the database
    /// directory).
    Indirect {
        /// The data file, relative to the database directory.
        file: String,
        /// Offset of the value in the file, in bytes.
        offset: u64,
        /// Length of the value, in bytes.
        length: u64,
    },
}

impl Value {
    /// The value's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Value::Inline(v) => v.len() as u64,
            Value::Indirect { length, .. } => *length,
        }
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A reference to a B+tree node: bytes `offset .. offset + length` of `file`, of `height`;
/// `base` is the transitive path its own data file table resolves against.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeRef {
    file: String,
    base: String,
    offset: u64,
    length: u64,
    height: u8,
    /// The key prefix its keys are relative to.
    prefix: Vec<u8>,
}

/// A decoded manifest: its config and the root of its latest generation (`None` for an empty
/// database).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The database's configuration.
    pub config: Config,
    /// The latest generation number (1 for what Orbax and ckpt write).
    pub generation: u64,
    root: Option<NodeRef>,
}

/// Largest valid offset + length of a reference (§6.1).
const MAX_END: u64 = (1 << 63) - 1;

/// Decodes `manifest.ocdbt` (§4): config, data file table, inline versions (the last one is the
/// latest), version nodes (parsed and checked, not followed).
///
/// # Errors
/// `Corrupt` naming `what` for any malformed field (see [`decode_envelope`]); `Unsupported`
/// for a numbered manifest (`manifest_kind` 1), which Orbax never writes.
pub fn decode_manifest(bytes: &[u8], what: &str) -> Result<Manifest> {
    let body = decode_envelope(bytes, MANIFEST_MAGIC, what)?;
    let mut c = Cursor::new(&body, what);
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(c.bytes(16)?);
    let kind = c.u8()?;
    let max_inline_value_bytes =
        c.varint_max(u64::from(u32::MAX), "max_inline_value_bytes")? as u32;
    let max_decoded_node_bytes =
        c.varint_max(u64::from(u32::MAX), "max_decoded_node_bytes")? as u32;
    let arity = c.u8()?;
    if !(1..=16).contains(&arity) {
        return Err(c.error(format!("version_tree_arity_log2 {arity} is not in 1..=16")));
    }
    let zstd_level = match c.varint_max(u64::from(u32::MAX), "compression method")? {
        0 => None,
        1 => Some(c.i32le()?),
        m => return Err(c.error(format!("compression method {m} is unknown"))),
    };
    let config = Config {
        uuid,
        max_inline_value_bytes,
        max_decoded_node_bytes,
        version_tree_arity_log2: arity,
        zstd_level,
    };
    match kind {
        0 => {}
        1 => {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{what}: a numbered OCDBT manifest (manifest_kind 1), which Orbax never writes"
                ),
            ))
        }
        k => return Err(c.error(format!("manifest_kind {k} is unknown"))),
    }
    let files = read_file_table(&mut c, "")?;
    let n = c.count(1 << arity, 16, "num_versions")?;
    if n == 0 {
        return Err(c.error("a manifest with no version"));
    }
    let generation = c.varints(n, u64::MAX, "generation_number")?;
    let heights: Vec<u8> = (0..n).map(|_| c.u8()).collect::<Result<_>>()?;
    let file_ids = c.varints(n, u64::from(u32::MAX), "data_file_id")?;
    let offsets = c.varints(n, u64::MAX, "offset")?;
    let lengths = c.varints(n, u64::MAX, "length")?;
    let _num_keys = c.varints(n, u64::MAX, "num_keys")?;
    let _tree_bytes = c.varints(n, u64::MAX, "num_tree_bytes")?;
    let _indirect = c.varints(n, u64::MAX, "num_indirect_value_bytes")?;
    for _ in 0..n {
        c.u64le()?;
    }
    for i in 0..n {
        if generation[i] == 0 || (i > 0 && generation[i] <= generation[i - 1]) {
            return Err(c.error("generation numbers are not nonzero and increasing"));
        }
    }
    let last = n - 1;
    let bucket = 1u64 << arity;
    if generation[0] < generation[last] - (generation[last] - 1) % bucket {
        return Err(c.error("inline versions span more than one version tree leaf"));
    }
    // Version tree interior entries (older generations); checked, not followed.
    let m = c.count(64, 14, "num version nodes")?;
    let _ = c.varints(m, u64::MAX, "version node generation")?;
    let vfiles = c.varints(m, u64::from(u32::MAX), "version node data_file_id")?;
    let _ = c.varints(m * 3, u64::MAX, "version node reference")?;
    for _ in 0..m {
        c.u64le()?;
    }
    for _ in 0..m {
        c.u8()?;
    }
    c.finish()?;
    if vfiles.iter().any(|&f| f as usize >= files.len()) {
        return Err(Error::corrupt(format!(
            "{what}: a version node names a data file that is not in its table"
        )));
    }
    let root = if offsets[last] == u64::MAX && lengths[last] == u64::MAX {
        None
    } else {
        let f = file_ids[last] as usize;
        let (file, base) = files.get(f).cloned().ok_or_else(|| {
            Error::corrupt(format!(
                "{what}: the latest version names data file {f} of {}",
                files.len()
            ))
        })?;
        check_range(offsets[last], lengths[last], what)?;
        Some(NodeRef {
            file,
            base,
            offset: offsets[last],
            length: lengths[last],
            height: heights[last],
            prefix: Vec::new(),
        })
    };
    Ok(Manifest {
        config,
        generation: generation[last],
        root,
    })
}

fn check_range(offset: u64, length: u64, what: &str) -> Result<()> {
    match offset.checked_add(length) {
        Some(end) if end <= MAX_END => Ok(()),
        _ => Err(Error::corrupt(format!(
            "{what}: reference at offset {offset} of length {length} overflows"
        ))),
    }
}

/// Largest number of entries in one B+tree node (§7).
const MAX_ENTRIES: u64 = 1 << 20;
/// Largest key, in bytes.
const MAX_KEY: u64 = 65535;

/// A decoded B+tree node: a leaf's entries or an interior node's children.
enum Node {
    Leaf(Vec<(Vec<u8>, Value)>),
    Interior(Vec<NodeRef>),
}

/// Decodes a B+tree node body (§7) reached through `at`.
fn decode_node(bytes: &[u8], at: &NodeRef, what: &str) -> Result<Node> {
    let body = decode_envelope(bytes, BTREE_NODE_MAGIC, what)?;
    let mut c = Cursor::new(&body, what);
    let height = c.u8()?;
    if height != at.height {
        return Err(c.error(format!(
            "node height {height}, its reference says {}",
            at.height
        )));
    }
    let files = read_file_table(&mut c, &at.base)?;
    let n = c.count(MAX_ENTRIES, 2, "num_entries")?;
    if n == 0 {
        return Err(c.error("an empty B+tree node"));
    }
    let prefix_len = c.varints(n - 1, MAX_KEY, "key_prefix_length")?;
    let suffix_len = c.varints(n, MAX_KEY, "key_suffix_length")?;
    let subtree = if height > 0 {
        c.varints(n, MAX_KEY, "subtree_common_prefix_length")?
    } else {
        Vec::new()
    };
    let mut keys: Vec<Vec<u8>> = Vec::with_capacity(n);
    for i in 0..n {
        let mut key = if i == 0 {
            Vec::new()
        } else {
            let keep = prefix_len[i - 1] as usize;
            let prev = &keys[i - 1];
            if keep > prev.len() {
                return Err(c.error(format!("key {i}: prefix longer than the previous key")));
            }
            prev[..keep].to_vec()
        };
        key.extend_from_slice(c.bytes(suffix_len[i] as usize)?);
        if (at.prefix.len() + key.len()) as u64 > MAX_KEY {
            return Err(c.error(format!("key {i} is longer than {MAX_KEY} bytes")));
        }
        if i > 0 && key <= keys[i - 1] {
            return Err(c.error(format!("key {i} is not above key {}", i - 1)));
        }
        keys.push(key);
    }
    let file_of = |c: &Cursor<'_>, id: u64| -> Result<(String, String)> {
        files
            .get(id as usize)
            .cloned()
            .ok_or_else(|| c.error(format!("data file id {id}, the table has {}", files.len())))
    };
    if height == 0 {
        let lengths = c.varints(n, u64::MAX, "value_length")?;
        let kinds: Vec<u8> = (0..n).map(|_| c.u8()).collect::<Result<_>>()?;
        let indirect = kinds.iter().filter(|&&k| k == 1).count();
        if let Some(k) = kinds.iter().find(|&&k| k > 1) {
            return Err(c.error(format!("value_kind {k} is unknown")));
        }
        let ids = c.varints(indirect, u64::from(u32::MAX), "data_file_id")?;
        let offs = c.varints(indirect, u64::MAX, "offset")?;
        let mut out = Vec::with_capacity(n);
        let mut k = 0;
        for (i, key) in keys.into_iter().enumerate() {
            let mut full = at.prefix.clone();
            full.extend_from_slice(&key);
            let value = if kinds[i] == 0 {
                if lengths[i] > 1 << 20 {
                    return Err(c.error(format!("inline value {i} is over 1 MiB")));
                }
                Value::Inline(c.bytes(lengths[i] as usize)?.to_vec())
            } else {
                let (file, _) = file_of(&c, ids[k])?;
                check_range(offs[k], lengths[i], what)?;
                let v = Value::Indirect {
                    file,
                    offset: offs[k],
                    length: lengths[i],
                };
                k += 1;
                v
            };
            out.push((full, value));
        }
        c.finish()?;
        Ok(Node::Leaf(out))
    } else {
        let ids = c.varints(n, u64::from(u32::MAX), "data_file_id")?;
        let offs = c.varints(n, u64::MAX, "offset")?;
        let lens = c.varints(n, u64::MAX, "length")?;
        let _stats = c.varints(3 * n, u64::MAX, "statistics")?;
        c.finish()?;
        let mut out = Vec::with_capacity(n);
        for (i, key) in keys.iter().enumerate() {
            let keep = subtree[i] as usize;
            if keep > key.len() {
                return Err(Error::corrupt(format!(
                    "{what}: subtree prefix of entry {i} is longer than its key"
                )));
            }
            let (file, base) = file_of(&c, ids[i])?;
            check_range(offs[i], lens[i], what)?;
            let mut prefix = at.prefix.clone();
            prefix.extend_from_slice(&key[..keep]);
            out.push(NodeRef {
                file,
                base,
                offset: offs[i],
                length: lens[i],
                height: height - 1,
                prefix,
            });
        }
        Ok(Node::Interior(out))
    }
}

/// The latest generation of a database: every key and where its value is.
#[derive(Debug, Default)]
pub struct Database {
    entries: BTreeMap<Vec<u8>, Value>,
    /// Sizes of the data files read so far (each is asked for once).
    sizes: std::sync::Mutex<BTreeMap<String, u64>>,
}

/// Most B+tree nodes a reader visits (bounds the work a crafted tree can cause).
const MAX_NODES: usize = 1 << 16;

impl Database {
    /// Opens the database whose manifest bytes are `manifest` (read from `manifest.ocdbt`), reading
    /// every B+tree node of the latest generation through `files` (no value is read).
    ///
    /// # Errors
    /// `Corrupt` naming the file for any malformed structure, a node reference outside its file,
    /// a node whose keys break the B+tree order; `NotFound` when a referenced file is missing;
    /// `Unsupported` as [`decode_manifest`].
    pub fn open(files: &dyn DbFiles, manifest: &[u8], manifest_what: &str) -> Result<Database> {
        let m = decode_manifest(manifest, manifest_what)?;
        let db = Database::default();
        let Some(root) = m.root else {
            return Ok(db);
        };
        let mut all = BTreeMap::new();
        let mut stack = vec![(root, Vec::<u8>::new())];
        let mut visited = 0usize;
        while let Some((at, lower)) = stack.pop() {
            visited += 1;
            if visited > MAX_NODES {
                return Err(Error::corrupt(format!(
                    "{manifest_what}: the B+tree has more than {MAX_NODES} nodes"
                )));
            }
            if at.length > MAX_BODY_BYTES {
                return Err(Error::corrupt(format!(
                    "{}: node of {} bytes is over the {MAX_BODY_BYTES}-byte limit",
                    at.file, at.length
                )));
            }
            let bytes = db.read_checked(files, &at.file, at.offset, at.length)?;
            let what = format!("B+tree node {}@{}+{}", at.file, at.offset, at.length);
            match decode_node(&bytes, &at, &what)? {
                Node::Leaf(entries) => {
                    for (key, value) in entries {
                        if key < lower {
                            return Err(Error::corrupt(format!(
                                "{what}: key {:?} is below its subtree's first key",
                                String::from_utf8_lossy(&key)
                            )));
                        }
                        if all.insert(key.clone(), value).is_some() {
                            return Err(Error::corrupt(format!(
                                "{what}: key {:?} appears twice",
                                String::from_utf8_lossy(&key)
                            )));
                        }
                    }
                }
                Node::Interior(children) => {
                    if at.height == 0 {
                        return Err(Error::corrupt(format!("{what}: interior node at height 0")));
                    }
                    for child in children.into_iter().rev() {
                        let first = child.prefix.clone();
                        stack.push((child, first));
                    }
                }
            }
        }
        Ok(Database { entries: all, ..db })
    }

    fn size_of(&self, files: &dyn DbFiles, file: &str) -> Result<u64> {
        let known = self
            .sizes
            .lock()
            .map(|m| m.get(file).copied())
            .unwrap_or(None);
        if let Some(s) = known {
            return Ok(s);
        }
        let s = files.size(file)?;
        if let Ok(mut m) = self.sizes.lock() {
            m.insert(file.to_string(), s);
        }
        Ok(s)
    }

    fn read_checked(
        &self,
        files: &dyn DbFiles,
        file: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>> {
        let size = self.size_of(files, file)?;
        if offset.saturating_add(length) > size {
            return Err(Error::corrupt(format!(
                "OCDBT reference {file}@{offset}+{length} is outside the file ({size} bytes)"
            )));
        }
        let bytes = files.read_range(file, offset..offset + length)?;
        if bytes.len() as u64 != length {
            return Err(Error::corrupt(format!(
                "{file}: read {} bytes at {offset}, expected {length}",
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    /// The size in bytes of data file `file` (asked of `files` once, then remembered).
    ///
    /// # Errors
    /// As [`DbFiles::size`].
    pub fn file_size(&self, files: &dyn DbFiles, file: &str) -> Result<u64> {
        self.size_of(files, file)
    }

    /// Every key and its value's location, in key order.
    pub fn entries(&self) -> &BTreeMap<Vec<u8>, Value> {
        &self.entries
    }

    /// The value location of `key`, if present.
    pub fn get(&self, key: &[u8]) -> Option<&Value> {
        self.entries.get(key)
    }

    /// Reads the value of `key`.
    ///
    /// # Errors
    /// `NotFound` when the key is absent or its data file is missing; `Corrupt` when its
    /// reference lies outside its file.
    pub fn read(&self, files: &dyn DbFiles, key: &[u8]) -> Result<Vec<u8>> {
        match self.entries.get(key).cloned() {
            None => Err(Error::not_found(format!(
                "key {:?} is not in the OCDBT database",
                String::from_utf8_lossy(key)
            ))),
            Some(Value::Inline(v)) => Ok(v),
            Some(Value::Indirect {
                file,
                offset,
                length,
            }) => self.read_checked(files, &file, offset, length),
        }
    }
}
