//! One process's part of an Orbax pytree item saved by several processes (issue 15), in the
//! layout orbax-checkpoint 0.12.8 writes for `jax.Array` leaves sharded across processes
//! (docs/orbax-arrays/ocdbt.md §9, docs/design.md "Multi-process pytree items"):
//!
//! ```text
//! <item>/ocdbt.process_<i>/manifest.ocdbt, d/<hex>   process i's own database: the chunks of
//!                                                   its shards (and, on the primary, every
//!                                                   `.zarray` and the whole arrays' chunks)
//! <item>/array_metadatas/process_<i>                process i's write and chunk shapes
//! <item>/_METADATA, _strings.json                   the primary's
//! <item>/manifest.ocdbt, d/<hex>                    the merged database (the primary, after
//!                                                   every process wrote): one leaf node whose
//!                                                   large values point into ocdbt.process_<i>/
//! ```
//!
//! [`save_shard`] writes one process's part, [`merge_process_databases`] the merged database,
//! [`restore_leaf_box`] reads any box of a leaf, decoding only the chunks that overlap it.

use super::source::{LeafSource, Source};
use super::write::{plan, shard_jobs, write_ocdbt_at, write_tree_files};
use super::{zarr, ArrayLayout, ArrayOptions};
use crate::ocdbt::{self, Database, DbFiles, Entry, Stored};
use crate::{ItemDir, PyTree, Tensor};
use ckpt_core::{Error, ErrorKind, Result};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;

/// The name of process `i`'s database directory in an item is this prefix and `i`
/// (`ocdbt.process_3`), as Orbax's `ocdbt_process_spec.PROCESS_PREFIX`.
pub const PROCESS_DIR_PREFIX: &str = "ocdbt.process_";

/// Directory of the per-process array metadata files (`array_metadatas/process_<i>`), as
/// Orbax's `array_metadata_store`.
const ARRAY_METADATAS_DIR: &str = "array_metadatas";

/// Where one process's shard of a leaf lies in the global array, and the chunk grid the global
/// array is stored with (shapes and offsets in elements, one entry per dimension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub(crate) global_shape: Vec<usize>,
    pub(crate) offset: Vec<usize>,
    pub(crate) chunk_shape: Vec<usize>,
}

impl Placement {
    /// The global array's shape.
    pub fn global_shape(&self) -> &[usize] {
        &self.global_shape
    }

    /// Where the shard starts in the global array.
    pub fn offset(&self) -> &[usize] {
        &self.offset
    }

    /// The zarr chunk shape of the global array (the same on every process).
    pub fn chunk_shape(&self) -> &[usize] {
        &self.chunk_shape
    }
}

/// The largest chunk a shard may be stored in, in bytes (2 GiB: Orbax's OCDBT
/// `target_data_file_size`, the largest value it writes).
pub const MAX_SHARD_CHUNK_BYTES: u64 = 2 << 30;

/// One process's part of a pytree item saved by every process of a job: the tree (the same
/// structure and leaf names on every process) whose sharded array leaves hold only this
/// process's shard, plus where each shard lies in its global array.
///
/// Leaves marked with [`PyTreeShard::shard`] are *sharded*: each process writes the chunks of its
/// shard. Every other leaf is *replicated*: only the primary writes it (as Orbax writes a
/// replicated `jax.Array` from the process holding replica 0), so the other processes may give
/// any value there (e.g. the same scalar). Source: Orbax 0.12.8 saving `jax.Array` leaves
/// sharded over processes (`write_shape` = the shard's shape, chunk shape = the shard's shape,
/// each process writing the shards whose `replica_id` is 0 into `ocdbt.process_<i>/`).
#[derive(Debug, Clone, PartialEq)]
pub struct PyTreeShard {
    tree: PyTree,
    placements: BTreeMap<String, Placement>,
}

impl PyTreeShard {
    /// This process's part `tree`, every leaf replicated until marked with
    /// [`PyTreeShard::shard`].
    pub fn new(tree: PyTree) -> PyTreeShard {
        PyTreeShard {
            tree,
            placements: BTreeMap::new(),
        }
    }

    /// Marks array leaf `leaf` (its param name, the key path joined by `.`) as this process's
    /// shard of a global array of `global_shape`, starting at `offset` (elements per dimension);
    /// the leaf's own shape is the shard's extent. The global array is stored in chunks of the
    /// shard's shape, as Orbax does, so every process must hold a shard of the same shape (the
    /// last one along a dimension may be shorter: see [`PyTreeShard::shard_chunked`]). A shard
    /// of more than [`MAX_SHARD_CHUNK_BYTES`] is cut into chunks of at most that size, by
    /// Orbax's chunk chooser (the same cut on every process for shards of one shape). Marking a
    /// leaf again replaces its placement.
    ///
    /// # Errors
    /// `InvalidArgument` when `leaf` is not an array leaf of the tree, the ranks disagree, the
    /// shard does not lie inside the global array, its offset is not a multiple of its shape, or
    /// the global shape's size overflows.
    pub fn shard(self, leaf: &str, global_shape: &[usize], offset: &[usize]) -> Result<Self> {
        let (shape, dtype) = match self.tree.get(leaf) {
            Some(PyTree::Array(t)) => (t.shape().to_vec(), t.dtype()),
            _ => return Err(not_an_array(leaf)),
        };
        let max = usize::try_from(MAX_SHARD_CHUNK_BYTES).unwrap_or(usize::MAX);
        let chunks = super::zarr::choose_chunk_shape(&shape, dtype, Some(max));
        self.shard_chunked(leaf, global_shape, offset, &chunks)
    }

    /// As [`PyTreeShard::shard`], with the chunk shape of the global array given: every process
    /// must give the same one for a leaf, each shard must start on a chunk boundary and hold
    /// whole chunks except where it reaches the end of the global array (zarr's edge chunks).
    /// This is how uneven shards are saved (a global length of 10 over 4 processes: shards of
    /// 3, 3, 3, 1 with chunk shape 3).
    ///
    /// # Errors
    /// As [`PyTreeShard::shard`]; `InvalidArgument` when a chunk dimension is 0, the shard does
    /// not hold whole chunks as above, or a chunk is larger than [`MAX_SHARD_CHUNK_BYTES`].
    pub fn shard_chunked(
        mut self,
        leaf: &str,
        global_shape: &[usize],
        offset: &[usize],
        chunk_shape: &[usize],
    ) -> Result<Self> {
        let (shape, dtype) = match self.tree.get(leaf) {
            Some(PyTree::Array(t)) => (t.shape().to_vec(), t.dtype()),
            _ => return Err(not_an_array(leaf)),
        };
        let rank = shape.len();
        // Sizes the save computes from these: the global array's and one chunk's bytes.
        if crate::tensor::checked_sizes(dtype, global_shape).is_none() {
            return Err(Error::invalid_argument(format!(
                "leaf {leaf:?}: the global shape {global_shape:?} of {dtype} overflows the \
                 address space"
            )));
        }
        let chunk_bytes = crate::tensor::checked_sizes(dtype, chunk_shape).map(|(_, b)| b);
        if chunk_bytes.is_none_or(|b| b as u64 > MAX_SHARD_CHUNK_BYTES) {
            return Err(Error::invalid_argument(format!(
                "leaf {leaf:?}: a chunk of shape {chunk_shape:?} of {dtype} is larger than \
                 {MAX_SHARD_CHUNK_BYTES} bytes, the largest value Orbax's OCDBT writes"
            )));
        }
        if global_shape.len() != rank || offset.len() != rank || chunk_shape.len() != rank {
            return Err(Error::invalid_argument(format!(
                "leaf {leaf:?}: the shard has rank {rank}, the global shape {global_shape:?}, \
                 the offset {offset:?} and the chunk shape {chunk_shape:?} must have as many \
                 dimensions"
            )));
        }
        for d in 0..rank {
            let (g, o, n, c) = (global_shape[d], offset[d], shape[d], chunk_shape[d]);
            if o.checked_add(n).is_none_or(|end| end > g) {
                return Err(Error::invalid_argument(format!(
                    "leaf {leaf:?}: the shard of shape {shape:?} at {offset:?} does not lie \
                     inside the global shape {global_shape:?}"
                )));
            }
            if c == 0 || o % c != 0 || (n % c != 0 && o + n != g) {
                return Err(Error::invalid_argument(format!(
                    "leaf {leaf:?}: the shard of shape {shape:?} at {offset:?} does not hold \
                     whole chunks of shape {chunk_shape:?} (dimension {d}: a shard starts on a \
                     chunk boundary and holds whole chunks unless it ends the array)"
                )));
            }
        }
        self.placements.insert(
            leaf.to_string(),
            Placement {
                global_shape: global_shape.to_vec(),
                offset: offset.to_vec(),
                chunk_shape: chunk_shape.to_vec(),
            },
        );
        Ok(self)
    }

    /// The tree (sharded leaves hold this process's shard).
    pub fn tree(&self) -> &PyTree {
        &self.tree
    }

    /// The sharded leaves (param names, ascending) with their dtype and placement: what every
    /// process of a job must agree on for a leaf (dtype, global shape, chunk shape).
    pub fn sharded_leaves(&self) -> Vec<(&str, Option<crate::DType>, &Placement)> {
        self.placements
            .iter()
            .map(|(leaf, p)| {
                let dtype = match self.tree.get(leaf) {
                    Some(PyTree::Array(t)) => Some(t.dtype()),
                    _ => None,
                };
                (leaf.as_str(), dtype, p)
            })
            .collect()
    }

    /// Where leaf `leaf`'s shard lies, `None` for a replicated leaf.
    pub fn placement(&self, leaf: &str) -> Option<&Placement> {
        self.placements.get(leaf)
    }
}

fn not_an_array(leaf: &str) -> Error {
    Error::invalid_argument(format!(
        "leaf {leaf:?} is not an array leaf of the tree (PyTree::Array), so it cannot be a shard"
    ))
}

/// What a process does with its [`PyTreeShard`] in a save: which `ocdbt.process_<i>` it writes,
/// whether it is the primary (writes `_METADATA`, every `.zarray` and the replicated leaves),
/// and whether the merge follows right away (a single-process save) or is left to the primary
/// once every process wrote ([`merge_process_databases`]). ckpt's own: Orbax takes these from
/// `jax.process_index()` and `multiprocessing_options.primary_host`; ckpt's manager sets them
/// from its job ([`SaveItem::PyTreeShard`](crate::SaveItem::PyTreeShard)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardRole {
    /// This process's index (the `<i>` of `ocdbt.process_<i>`).
    pub process: usize,
    /// Whether this process writes the item's shared files.
    pub primary: bool,
    /// Whether [`save_shard`] merges the item's databases itself (only process `process`'s).
    pub merge: bool,
}

impl Default for ShardRole {
    /// One process doing everything: process 0, primary, merging.
    fn default() -> Self {
        ShardRole {
            process: 0,
            primary: true,
            merge: true,
        }
    }
}

/// Writes `shard` into item directory `dir` as process `role.process` of a multi-process save:
/// its shards' chunks (zstd zarr v2, keyed by their index in the global chunk grid) into its own
/// database `ocdbt.process_<i>/`, `array_metadatas/process_<i>`; the primary also every
/// `.zarray` (global shape, the placement's chunk shape), the replicated leaves, `_METADATA` and
/// `_strings.json`; with `role.merge`, then the merged database. Source: what Orbax 0.12.8's
/// `PyTreeCheckpointHandler` writes on process i (docs/orbax-arrays/ocdbt.md §9), checked
/// against a 4-process JAX job's root (`testdata/orbax/multiprocess/`).
///
/// # Errors
/// `InvalidArgument` as [`super::save_item`] for the tree, or when `options.layout` is not OCDBT
/// (deviation: ckpt writes shards only in Orbax's default layout); `Storage` from the store;
/// errors of [`merge_process_databases`] with `role.merge`.
pub fn save_shard(
    dir: &ItemDir<'_>,
    shard: &PyTreeShard,
    role: ShardRole,
    options: &ArrayOptions,
) -> Result<()> {
    if options.layout != ArrayLayout::Ocdbt {
        return Err(Error::invalid_argument(
            "a pytree shard is written in the OCDBT layout only (ArrayLayout::Ocdbt)",
        ));
    }
    let mut leaves = plan(&shard.tree)?;
    for leaf in &mut leaves {
        leaf.placement = shard.placements.get(&leaf.param);
    }
    let jobs = shard_jobs(&leaves, options, role.primary)?;
    if !jobs.is_empty() {
        let prefix = format!("{PROCESS_DIR_PREFIX}{}/", role.process);
        write_ocdbt_at(dir, &jobs, &prefix)?;
    }
    let written: Vec<Json> = leaves
        .iter()
        .filter_map(|l| {
            let t = l.array?;
            let (write_shape, chunks) = match l.placement {
                Some(p) => (t.shape().to_vec(), p.chunk_shape.clone()),
                None if role.primary && l.value_type != "scalar" => {
                    (t.shape().to_vec(), t.shape().to_vec())
                }
                None => return None,
            };
            Some(
                json!({"array_metadata": {"param_name": l.param, "write_shape": write_shape,
                "chunk_shape": chunks, "ext_metadata": null}}),
            )
        })
        .collect();
    if !written.is_empty() {
        let bytes = ckpt_core::pyjson::to_vec(&json!({ "array_metadatas": written }))?;
        dir.write_parts_at(
            &format!("{ARRAY_METADATAS_DIR}/process_{}", role.process),
            &[&bytes],
        )?;
    }
    if role.primary {
        write_tree_files(dir, &leaves, true)?;
    }
    if role.merge {
        merge_process_databases(dir, &[role.process])?;
    }
    Ok(())
}

/// The files of database `ocdbt.process_<i>/` of an item, by path relative to that directory.
struct SubFiles<'a> {
    dir: &'a ItemDir<'a>,
    prefix: String,
}

impl DbFiles for SubFiles<'_> {
    fn size(&self, path: &str) -> Result<u64> {
        self.dir.size_at(&format!("{}/{path}", self.prefix))
    }
    fn read_range(&self, path: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>> {
        self.dir
            .read_range_at(&format!("{}/{path}", self.prefix), range)
    }
}

/// Merges the databases `ocdbt.process_<i>/` of item `dir`, for each `i` in `processes` (a
/// missing one is skipped: that process wrote no chunk), into the item's top-level database, as
/// Orbax's `merge_ocdbt_per_process_files`: one generation, one leaf node in `d/<hex>`, values
/// up to 1024 bytes copied inline, larger ones referenced where their process wrote them
/// (`ocdbt.process_<i>/d/<hex>`). A key two processes wrote is taken from the lower index. Before
/// writing, checks that every `.zarray`'s chunk grid is complete and agrees with each process's
/// `array_metadatas/process_<i>` chunk shape. Nothing is written for an item with no database
/// at all (a tree without arrays).
///
/// # Errors
/// `InvalidArgument` when the shards leave a chunk of a leaf unwritten, a process wrote chunks
/// of a leaf with no `.zarray` or with another chunk shape than the primary's; `Corrupt` when a
/// process database or metadata file does not decode; `Storage` from the store.
pub fn merge_process_databases(dir: &ItemDir<'_>, processes: &[usize]) -> Result<()> {
    let mut entries: BTreeMap<Vec<u8>, ocdbt::Value> = BTreeMap::new();
    let mut chunk_shapes: BTreeMap<String, (usize, Vec<usize>)> = BTreeMap::new();
    let mut sorted = processes.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    for &i in &sorted {
        let meta_rel = format!("{ARRAY_METADATAS_DIR}/process_{i}");
        match dir.read_at(&meta_rel) {
            Ok(bytes) => read_array_metadatas(dir, &meta_rel, &bytes, i, &mut chunk_shapes)?,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let sub = format!("{PROCESS_DIR_PREFIX}{i}");
        let manifest_rel = format!("{sub}/{}", ocdbt::MANIFEST_FILE);
        let manifest = match dir.read_at(&manifest_rel) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let files = SubFiles {
            dir,
            prefix: sub.clone(),
        };
        let what = dir
            .nested_path(&manifest_rel)
            .map(|p| dir.store().location(&p))
            .unwrap_or(manifest_rel);
        let db = Database::open(&files, &manifest, &what)?;
        for (key, value) in db.entries() {
            let value = match value {
                ocdbt::Value::Inline(b) => ocdbt::Value::Inline(b.clone()),
                ocdbt::Value::Indirect {
                    file,
                    offset,
                    length,
                } => ocdbt::Value::Indirect {
                    file: format!("{sub}/{file}"),
                    offset: *offset,
                    length: *length,
                },
            };
            entries.entry(key.clone()).or_insert(value);
        }
    }
    if entries.is_empty() {
        return Ok(());
    }
    check_complete(dir, &entries, &chunk_shapes)?;
    let mut files: Vec<String> = Vec::new();
    let mut file_ids: BTreeMap<String, usize> = BTreeMap::new();
    for v in entries.values() {
        if let ocdbt::Value::Indirect { file, .. } = v {
            if !file_ids.contains_key(file) {
                file_ids.insert(file.clone(), files.len());
                files.push(file.clone());
            }
        }
    }
    let list: Vec<Entry<'_>> = entries
        .iter()
        .map(|(key, v)| Entry {
            key,
            value: match v {
                ocdbt::Value::Inline(b) => Stored::Inline(b),
                ocdbt::Value::Indirect {
                    file,
                    offset,
                    length,
                } => Stored::Indirect {
                    file: file_ids.get(file).copied().unwrap_or(0),
                    offset: *offset,
                    len: *length,
                },
            },
        })
        .collect();
    let (hex, uuid) = super::write::random_hex();
    let node_file = format!("d/{hex}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let names: Vec<&str> = files.iter().map(String::as_str).collect();
    let layout = ocdbt::layout(&list, &names, &node_file, uuid, now)?;
    dir.write_parts_at(&node_file, &[&layout.node])?;
    dir.write(ocdbt::MANIFEST_FILE, &layout.manifest)
}

/// Reads `array_metadatas/process_<i>` into `chunk_shapes` (param → first process, its chunk
/// shape), failing when two processes disagree on a leaf's chunk shape.
fn read_array_metadatas(
    dir: &ItemDir<'_>,
    rel: &str,
    bytes: &[u8],
    process: usize,
    chunk_shapes: &mut BTreeMap<String, (usize, Vec<usize>)>,
) -> Result<()> {
    let bad = || {
        Error::corrupt(format!(
            "{}: not an Orbax array metadata file",
            dir.nested_path(rel)
                .map(|p| dir.store().location(&p))
                .unwrap_or_else(|_| rel.to_string())
        ))
    };
    let v: Json = ckpt_core::pyjson::from_slice(bytes).map_err(|_| bad())?;
    let list = v
        .get("array_metadatas")
        .and_then(Json::as_array)
        .ok_or_else(bad)?;
    for m in list {
        let m = m.get("array_metadata").ok_or_else(bad)?;
        let param = m.get("param_name").and_then(Json::as_str).ok_or_else(bad)?;
        let chunks: Vec<usize> = m
            .get("chunk_shape")
            .cloned()
            .map(serde_json::from_value)
            .ok_or_else(bad)?
            .map_err(|_| bad())?;
        match chunk_shapes.get(param) {
            Some((p, c)) if *c != chunks => {
                return Err(Error::invalid_argument(format!(
                    "leaf {param:?}: process {p} wrote chunks of shape {c:?}, process {process} \
                     of shape {chunks:?}; every process must use the same chunk shape \
                     (PyTreeShard::shard_chunked)"
                )))
            }
            Some(_) => {}
            None => {
                chunk_shapes.insert(param.to_string(), (process, chunks));
            }
        }
    }
    Ok(())
}

/// Every chunk key belongs to a leaf with a `.zarray`, every `.zarray`'s grid is complete, and
/// its chunk shape is the one the processes wrote with.
fn check_complete(
    dir: &ItemDir<'_>,
    entries: &BTreeMap<Vec<u8>, ocdbt::Value>,
    chunk_shapes: &BTreeMap<String, (usize, Vec<usize>)>,
) -> Result<()> {
    let mut metas: BTreeMap<String, zarr::ArrayMeta> = BTreeMap::new();
    for (key, value) in entries {
        let Some(param) = key.strip_suffix(b"/.zarray") else {
            continue;
        };
        let param = String::from_utf8_lossy(param).into_owned();
        let bytes = match value {
            ocdbt::Value::Inline(b) => b.clone(),
            ocdbt::Value::Indirect {
                file,
                offset,
                length,
            } => dir.read_range_at(file, *offset..offset.saturating_add(*length))?,
        };
        let meta = zarr::parse_zarray(&bytes, &format!("array {param:?} (merged .zarray)"))?;
        if let Some((p, c)) = chunk_shapes.get(&param) {
            if !meta.shape.is_empty() && *c != meta.chunks {
                return Err(Error::invalid_argument(format!(
                    "leaf {param:?}: the primary stores chunks of shape {:?}, process {p} wrote \
                     chunks of shape {c:?}; every process must use the same chunk shape",
                    meta.chunks
                )));
            }
        }
        // The grid is enumerated only when the processes wrote as many chunks as it has: a
        // global shape far larger than the shards given is refused without walking its grid.
        let prefix = format!("{param}/");
        let written = entries
            .range(prefix.as_bytes().to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix.as_bytes()))
            .filter(|(k, _)| !k.ends_with(b"/.zarray"))
            .count();
        let needed = zarr::chunk_count(&meta);
        if needed.is_none_or(|n| n > written) {
            return Err(Error::invalid_argument(format!(
                "leaf {param:?} of global shape {:?} has {} chunks of shape {:?}, the processes \
                 wrote {written}; the shards given do not cover the global array",
                meta.shape,
                needed.map_or_else(|| "too many".to_string(), |n| n.to_string()),
                meta.chunks
            )));
        }
        for index in zarr::chunk_grid(&meta) {
            let k = format!("{param}/{}", zarr::chunk_key(zarr::ZarrVersion::V2, &index));
            if !entries.contains_key(k.as_bytes()) {
                return Err(Error::invalid_argument(format!(
                    "leaf {param:?} of global shape {:?}: chunk {index:?} (chunk shape {:?}) was \
                     written by no process; the shards given do not cover the global array",
                    meta.shape, meta.chunks
                )));
            }
        }
        metas.insert(param, meta);
    }
    for key in entries.keys() {
        let k = String::from_utf8_lossy(key);
        let Some((param, _)) = k.rsplit_once('/') else {
            continue;
        };
        if !metas.contains_key(param) {
            return Err(Error::invalid_argument(format!(
                "a process wrote {k:?}, but the primary's tree has no array leaf {param:?}; every \
                 process must give the same tree"
            )));
        }
    }
    Ok(())
}

/// Reads the box of leaf `leaf` (param name) of the pytree item in `dir` that starts at `offset`
/// and has `shape` (elements per dimension): for zarr v2 arrays (what Orbax and ckpt write by
/// default) only the chunks that overlap the box are read and decoded; a zarr v3 array is
/// decoded whole, then cut. Any layout Orbax 0.12.8 writes (OCDBT, merged or not, or a directory
/// per leaf). ckpt's own (Orbax restores a slice through a sharding in `ArrayRestoreArgs`).
///
/// # Errors
/// `NotFound` when the item has no array `leaf` or a chunk is missing; `InvalidArgument` when the
/// box does not lie inside the array (rank, bounds) or is too large; `Corrupt` when a chunk does
/// not decode; `Storage` from the store.
pub fn restore_leaf_box(
    dir: &ItemDir<'_>,
    leaf: &str,
    offset: &[usize],
    shape: &[usize],
) -> Result<Tensor> {
    let source = Source::open(dir)?;
    let what = format!("array {leaf:?} of {}", dir.location(""));
    let (meta, zarr3) = match source.array_meta(leaf, false, &what) {
        Ok(m) => (m, false),
        Err(e) if e.kind() == ErrorKind::NotFound => match source.array_meta(leaf, true, &what) {
            Ok(m) => (m, true),
            // Neither `.zarray` nor `zarr.json`: name the leaf, not the last key tried.
            Err(e3) if e3.kind() == ErrorKind::NotFound => {
                return Err(Error::not_found(format!(
                    "{what}: no array leaf {leaf:?} in this item (neither {leaf}/.zarray nor \
                     {leaf}/zarr.json is there; leaves are named by their key path joined with \
                     '.', e.g. params.dense.kernel)"
                ))
                .with_source(e))
            }
            Err(e3) => return Err(e3),
        },
        Err(e) => return Err(e),
    };
    let rank = meta.shape.len();
    if offset.len() != rank
        || shape.len() != rank
        || (0..rank).any(|d| {
            offset[d]
                .checked_add(shape[d])
                .is_none_or(|e| e > meta.shape[d])
        })
    {
        return Err(Error::invalid_argument(format!(
            "the box of shape {shape:?} at {offset:?} does not lie inside {what} of shape {:?}",
            meta.shape
        )));
    }
    let esize = meta.dtype.size_in_bytes();
    let total = shape
        .iter()
        .try_fold(esize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::invalid_argument("the requested box is too large"))?;
    let mut out = ckpt_storage::try_zeroed_bytes(total)
        .ok_or_else(|| Error::invalid_argument("the requested box cannot be allocated"))?;
    if rank == 0 || meta.inner.is_some() {
        let whole = super::arrays::read_array(dir, &source, leaf, zarr3)?;
        copy_box(
            whole.as_bytes(),
            &meta.shape,
            &vec![0; rank],
            offset,
            shape,
            esize,
            &mut out,
        );
        return Tensor::new(meta.dtype, shape.to_vec(), out);
    }
    let chunk_bytes = meta
        .chunks
        .iter()
        .try_fold(esize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::corrupt(format!("{what}: chunk size overflows")))?;
    let src = LeafSource {
        source: &source,
        param: leaf,
    };
    // The chunk size comes from metadata anyone can write: allocate it fallibly.
    let mut scratch = ckpt_storage::try_zeroed_bytes(chunk_bytes).ok_or_else(|| {
        Error::corrupt(format!(
            "{what}: a chunk of {chunk_bytes} bytes cannot be allocated"
        ))
    })?;
    // The chunk indices overlapping the box, per dimension.
    let ranges: Vec<(usize, usize)> = (0..rank)
        .map(|d| {
            let c = meta.chunks[d].max(1);
            let last = (offset[d] + shape[d]).saturating_sub(1) / c;
            (offset[d] / c, last)
        })
        .collect();
    if shape.contains(&0) {
        return Tensor::new(meta.dtype, shape.to_vec(), out);
    }
    let mut index: Vec<usize> = ranges.iter().map(|r| r.0).collect();
    loop {
        let key = zarr::chunk_key(meta.version, &index);
        zarr::ChunkSource::decode_into(&src, &key, meta.zstd, &mut scratch, &what)?;
        let origin: Vec<usize> = index
            .iter()
            .zip(&meta.chunks)
            .map(|(i, c)| i.saturating_mul(*c))
            .collect();
        copy_box(
            &scratch,
            &meta.chunks,
            &origin,
            offset,
            shape,
            esize,
            &mut out,
        );
        // Next index, last dimension fastest.
        let mut d = rank;
        loop {
            if d == 0 {
                let t = Tensor::new(meta.dtype, shape.to_vec(), out)?;
                t.check_bool_bytes()
                    .map_err(|e| Error::corrupt(format!("{what}: {}", e.message())))?;
                return Ok(t);
            }
            d -= 1;
            if index[d] < ranges[d].1 {
                index[d] += 1;
                break;
            }
            index[d] = ranges[d].0;
        }
    }
}

/// Copies the intersection of a block (C-order bytes `src` of `src_shape`, lying at `src_origin`
/// in the global array) and the box at `box_origin` of `box_shape` into `dst` (the box's C-order
/// bytes), one run of the last dimension at a time.
fn copy_box(
    src: &[u8],
    src_shape: &[usize],
    src_origin: &[usize],
    box_origin: &[usize],
    box_shape: &[usize],
    esize: usize,
    dst: &mut [u8],
) {
    let rank = src_shape.len();
    if rank == 0 {
        let n = esize.min(src.len()).min(dst.len());
        dst[..n].copy_from_slice(&src[..n]);
        return;
    }
    let lo: Vec<usize> = (0..rank)
        .map(|d| src_origin[d].max(box_origin[d]))
        .collect();
    let hi: Vec<usize> = (0..rank)
        .map(|d| {
            src_origin[d]
                .saturating_add(src_shape[d])
                .min(box_origin[d].saturating_add(box_shape[d]))
        })
        .collect();
    if (0..rank).any(|d| lo[d] >= hi[d]) {
        return;
    }
    let run = (hi[rank - 1] - lo[rank - 1]) * esize;
    let mut at = lo.clone();
    loop {
        let mut s = 0usize;
        let mut t = 0usize;
        for d in 0..rank {
            s = s * src_shape[d] + (at[d] - src_origin[d]);
            t = t * box_shape[d] + (at[d] - box_origin[d]);
        }
        let (s, t) = (s * esize, t * esize);
        if s + run <= src.len() && t + run <= dst.len() {
            dst[t..t + run].copy_from_slice(&src[s..s + run]);
        }
        let mut d = rank - 1;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            at[d] += 1;
            if at[d] < hi[d] {
                break;
            }
            at[d] = lo[d];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_box_cuts_the_overlap() {
        // A 4x4 block at (2, 2) of a global array; the box (3..5, 1..4).
        let src: Vec<u8> = (0u8..16).collect();
        let mut dst = vec![0xffu8; 6];
        copy_box(&src, &[4, 4], &[2, 2], &[3, 1], &[2, 3], 1, &mut dst);
        // Row 3: globals (3,1) outside, (3,2)=src[1*4+0]=4, (3,3)=5; row 4: -, 8, 9.
        assert_eq!(dst, vec![0xff, 4, 5, 0xff, 8, 9]);
    }

    #[test]
    fn shard_rejects_boxes_off_the_grid() {
        let t = Tensor::from_slice([3], &[1.0f32, 2.0, 3.0]).unwrap();
        let tree = PyTree::dict().with("w", PyTree::Array(t));
        let s = PyTreeShard::new(tree.clone());
        assert!(s.clone().shard("w", &[12], &[3]).is_ok());
        assert_eq!(
            s.clone().shard("w", &[12], &[2]).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            s.clone().shard("w", &[4], &[3]).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            s.clone().shard("x", &[4], &[0]).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        // An edge shard shorter than the chunks.
        assert!(s.clone().shard_chunked("w", &[12], &[6], &[6]).is_err());
        assert!(s.clone().shard_chunked("w", &[9], &[6], &[6]).is_ok());
        assert!(s.shard_chunked("w", &[11], &[8], &[4]).is_ok());
    }
}
