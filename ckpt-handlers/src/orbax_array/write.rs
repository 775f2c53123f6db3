//! Writing an Orbax array item (`StandardSave`/`PyTreeSave` format): the tree's leaves planned
//! (param names, value types), each array cut into zarr v2 chunks and compressed on several
//! threads, a group of about [`DATA_FILE_BYTES`] at a time so at most one group's compressed
//! bytes are in memory; then the OCDBT node and manifest (or, without OCDBT, a file per chunk),
//! `_strings.json` and `_METADATA`.

use super::buffers::BufferPool;
use super::metadata::{self, LeafMetadata, TreeMetadata, METADATA_FILE};
use super::{zarr, ArrayLayout, ArrayOptions, STRINGS_FILE};
use crate::ocdbt::{self, Entry, Stored};
use crate::pytree::{param_name, KeyEntry, PyTree};
use crate::{ItemDir, SaveItem, Tensor};
use ckpt_core::{Error, ErrorKind, Result};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};

/// Target size of one OCDBT data file ckpt writes, and of one group of chunks compressed at a
/// time, in bytes (32 MiB, uncompressed): chunk values are packed into data files of about this
/// size (a larger chunk gets a file of its own). Twice [`DEFAULT_CHUNK_BYTES`], so that a group
/// of default-size chunks is compressed on two threads at once (with 16 MiB groups, each held one
/// chunk and compression ran on one core); at most two groups' compressed bytes (≤ 64 MiB) are
/// held at a time, whatever the number of cores.
pub const DATA_FILE_BYTES: usize = 32 << 20;

/// ckpt's chunk size when [`ArrayOptions::chunk_byte_size`] is `None`, in bytes (16 MiB).
/// Deviation: Orbax writes each array under 2 GiB as one chunk; ckpt cuts larger arrays into
/// chunks of at most this size (along the leading dimensions first, as Orbax's own chooser) so
/// a save never holds more than a group of compressed chunks and a restore decodes chunks in
/// parallel. Orbax reads any chunking.
pub const DEFAULT_CHUNK_BYTES: u64 = 16 << 20;

/// Largest chunk Orbax lets one OCDBT value be (its `target_data_file_size`), in bytes (2 GiB).
const OCDBT_MAX_CHUNK: u64 = 2 << 30;

/// A tree's leaves as ckpt writes them: path, param name, value type, and what is stored.
pub(super) struct PlannedLeaf<'t> {
    pub(super) path: Vec<KeyEntry>,
    pub(super) param: String,
    pub(super) value_type: &'static str,
    pub(super) array: Option<&'t Tensor>,
    pub(super) string: Option<&'t str>,
    /// Where this process's shard lies in the global array (a [`super::PyTreeShard`] leaf),
    /// `None` for a whole array.
    pub(super) placement: Option<&'t super::Placement>,
}

pub(super) fn plan(tree: &PyTree) -> Result<Vec<PlannedLeaf<'_>>> {
    if !matches!(tree, PyTree::Dict(_) | PyTree::List(_)) {
        return Err(Error::invalid_argument(
            "an Orbax pytree item must be a dict or a list at its top",
        ));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (path, leaf) in tree.leaves() {
        let param = param_name(&path);
        for k in &path {
            if let KeyEntry::Key(s) = k {
                if s.is_empty() || s.contains('/') || s.contains('\0') {
                    return Err(Error::invalid_argument(format!(
                        "pytree key {s:?} (leaf {param:?}) cannot name an Orbax array: keys must be non-empty and hold no '/' or NUL"
                    )));
                }
            }
        }
        if path.is_empty() {
            continue; // an empty top-level dict or list: no leaves at all
        }
        if !seen.insert(param.clone()) {
            return Err(Error::invalid_argument(format!(
                "two pytree leaves have the param name {param:?} (keys joined by '.'), which Orbax stores under one name"
            )));
        }
        let (value_type, array, string) = match leaf {
            PyTree::Array(t) => {
                if t.num_elements() == 0 {
                    return Err(Error::invalid_argument(format!(
                        "leaf {param:?} has shape {:?}: Orbax cannot save arrays with zero size",
                        t.shape()
                    )));
                }
                ("np.ndarray", Some(t), None)
            }
            PyTree::Scalar(t) => {
                if !t.shape().is_empty() {
                    return Err(Error::invalid_argument(format!(
                        "scalar leaf {param:?} has shape {:?}, not [] (use PyTree::Array)",
                        t.shape()
                    )));
                }
                ("scalar", Some(t), None)
            }
            PyTree::String(s) => ("string", None, Some(s.as_str())),
            PyTree::None => ("None", None, None),
            PyTree::Dict(_) => ("Dict", None, None),
            PyTree::List(_) => ("List", None, None),
        };
        out.push(PlannedLeaf {
            path,
            param,
            value_type,
            array,
            string,
            placement: None,
        });
    }
    Ok(out)
}

/// 128 random bits as 32 lowercase hex digits (OCDBT data file names and uuids).
pub(super) fn random_hex() -> (String, [u8; 16]) {
    use std::hash::{BuildHasher, Hasher};
    let mut bytes = [0u8; 16];
    for half in bytes.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    let hex = bytes.iter().map(|b| format!("{b:02x}")).collect();
    (hex, bytes)
}

/// One value to store under `<param>/<key>`: a `.zarray` or one chunk of an array.
pub(super) struct Job<'t> {
    key: Vec<u8>,
    /// Path below the item for the zarr directory layout (`<param>/<key>`).
    rel: String,
    what: JobKind<'t>,
}

enum JobKind<'t> {
    Metadata(Vec<u8>),
    Chunk {
        tensor: &'t Tensor,
        chunks: Vec<usize>,
        index: Vec<usize>,
        raw_bytes: usize,
    },
}

/// The chunk shape ckpt writes `t` with under `options` (see [`DEFAULT_CHUNK_BYTES`]).
fn chunk_shape(t: &Tensor, options: &ArrayOptions) -> Result<Vec<usize>> {
    let target = match (options.layout, options.chunk_byte_size) {
        (ArrayLayout::Ocdbt, Some(c)) => c.min(OCDBT_MAX_CHUNK),
        (ArrayLayout::Ocdbt, None) | (ArrayLayout::Zarr, None) => DEFAULT_CHUNK_BYTES,
        (ArrayLayout::Zarr, Some(c)) => c,
    };
    if target < t.dtype().size_in_bytes() as u64 {
        return Err(Error::invalid_argument(format!(
            "chunk_byte_size {target} is smaller than one {} element",
            t.dtype()
        )));
    }
    let target = usize::try_from(target).unwrap_or(usize::MAX);
    let whole = t.as_bytes().len() <= target;
    Ok(zarr::choose_chunk_shape(
        t.shape(),
        t.dtype(),
        (!whole).then_some(target),
    ))
}

/// Buffers of compressed chunks, kept from one group and one save to the next (at most 16, and
/// 64 MiB in all: a group's worth): a loop saving the same shapes compresses into memory it
/// already has instead of faulting in fresh pages for every chunk.
static ENCODED: BufferPool = BufferPool::new(16, 64 << 20);

/// The stored bytes of a job: the metadata as is, a chunk compressed (into a buffer from
/// [`ENCODED`], to be given back once written).
fn encode(job: &Job<'_>) -> Result<Vec<u8>> {
    match &job.what {
        JobKind::Metadata(b) => Ok(b.clone()),
        JobKind::Chunk {
            tensor,
            chunks,
            index,
            ..
        } => {
            let raw = zarr::chunk_data(
                tensor.dtype(),
                tensor.shape(),
                chunks,
                index,
                tensor.as_bytes(),
            );
            let mut out = ENCODED.take(0);
            zarr::compress_into(&raw, &mut out)?;
            Ok(out)
        }
    }
}

/// Encodes `jobs` on up to `available_parallelism` threads, in order.
fn encode_group(jobs: &[&Job<'_>]) -> Result<Vec<Vec<u8>>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(jobs.len())
        .max(1);
    let slots: Vec<std::sync::Mutex<Option<Result<Vec<u8>>>>> =
        jobs.iter().map(|_| std::sync::Mutex::new(None)).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || loop {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(job) = jobs.get(i) else { break };
        let r = encode(job);
        if let Ok(mut s) = slots[i].lock() {
            *s = Some(r);
        }
    };
    super::parallel::on_threads(threads, work);
    slots
        .into_iter()
        .map(|s| {
            s.into_inner()
                .ok()
                .flatten()
                .unwrap_or_else(|| Err(Error::new(ErrorKind::Handler, "an encoding thread failed")))
        })
        .collect()
}

/// The jobs of every array leaf, sorted by key (the OCDBT order).
fn jobs<'t>(leaves: &[PlannedLeaf<'t>], options: &ArrayOptions) -> Result<Vec<Job<'t>>> {
    shard_jobs(leaves, options, true)
}

/// The jobs of the array leaves, sorted by key: with `primary`, every leaf's `.zarray` (of the
/// global shape) and the chunks of the whole arrays; the chunks of every shard (a leaf with a
/// placement) keyed by their index in the global chunk grid. Without `primary`, only the
/// shards' chunks.
pub(super) fn shard_jobs<'t>(
    leaves: &[PlannedLeaf<'t>],
    options: &ArrayOptions,
    primary: bool,
) -> Result<Vec<Job<'t>>> {
    let mut out = Vec::new();
    for leaf in leaves {
        let Some(t) = leaf.array else { continue };
        if leaf.placement.is_none() && !primary {
            continue; // a whole (replicated) array: the primary writes it
        }
        let (chunks, global, first) = match leaf.placement {
            Some(p) => (
                p.chunk_shape.clone(),
                p.global_shape.clone(),
                p.offset
                    .iter()
                    .zip(&p.chunk_shape)
                    .map(|(o, c)| o / c.max(&1))
                    .collect(),
            ),
            None => (chunk_shape(t, options)?, t.shape().to_vec(), Vec::new()),
        };
        if primary {
            let zarray = zarr::zarray_bytes(t.dtype(), &global, &chunks);
            out.push(Job {
                key: format!("{}/.zarray", leaf.param).into_bytes(),
                rel: format!("{}/.zarray", leaf.param),
                what: JobKind::Metadata(zarray),
            });
        }
        let meta = zarr::ArrayMeta {
            version: zarr::ZarrVersion::V2,
            dtype: t.dtype(),
            shape: t.shape().to_vec(),
            chunks: chunks.clone(),
            inner: None,
            zstd: true,
            index_at_start: false,
        };
        let raw_bytes = chunks.iter().product::<usize>().max(1) * t.dtype().size_in_bytes();
        for index in zarr::chunk_grid(&meta) {
            let global_index: Vec<usize> = if first.is_empty() {
                index.clone()
            } else {
                index.iter().zip(&first).map(|(i, f)| i + f).collect()
            };
            let key = zarr::chunk_key(zarr::ZarrVersion::V2, &global_index);
            out.push(Job {
                key: format!("{}/{key}", leaf.param).into_bytes(),
                rel: format!("{}/{key}", leaf.param),
                what: JobKind::Chunk {
                    tensor: t,
                    chunks: chunks.clone(),
                    index,
                    raw_bytes,
                },
            });
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// Consecutive jobs in groups of about [`DATA_FILE_BYTES`] (uncompressed), at least one each.
fn groups<'a, 't>(jobs: &'a [Job<'t>]) -> Vec<Vec<&'a Job<'t>>> {
    let mut out: Vec<Vec<&Job<'_>>> = Vec::new();
    let mut size = 0usize;
    for job in jobs {
        let n = match &job.what {
            JobKind::Metadata(b) => b.len(),
            JobKind::Chunk { raw_bytes, .. } => *raw_bytes,
        };
        if out.is_empty() || size + n > DATA_FILE_BYTES && size > 0 {
            out.push(Vec::new());
            size = 0;
        }
        size += n;
        if let Some(g) = out.last_mut() {
            g.push(job);
        }
    }
    out
}

/// Writes `item` (a [`SaveItem::PyTree`], or [`SaveItem::Tensors`] as a flat dict) into `dir` as
/// Orbax's `StandardSave`/`PyTreeSave` would, in `options.layout`: the arrays (for OCDBT the data
/// files, then the node's, then `manifest.ocdbt`), `_strings.json` when there are string leaves,
/// then `_METADATA`.
///
/// # Errors
/// `InvalidArgument` for another item kind, a tree that is not a dict or list at its top, a key
/// that is empty or holds `/`, two leaves with one param name, a zero-size array, a non-0-d
/// scalar; `Storage` when writing fails; `Handler` when compression fails.
pub fn save_item(dir: &ItemDir<'_>, item: &SaveItem<'_>, options: &ArrayOptions) -> Result<()> {
    let flat;
    let tree = match item {
        SaveItem::PyTree(t) => t.as_ref(),
        SaveItem::Tensors(map) => {
            flat = PyTree::Dict(
                map.iter()
                    .map(|(k, t)| (k.clone(), PyTree::Array(t.clone())))
                    .collect(),
            );
            &flat
        }
        other => {
            return Err(crate::common::wrong_item(
                "the Orbax array handler",
                other,
                "SaveItem::PyTree or SaveItem::Tensors",
            ))
        }
    };
    let leaves = plan(tree)?;
    let jobs = jobs(&leaves, options)?;
    match options.layout {
        ArrayLayout::Ocdbt if !jobs.is_empty() => write_ocdbt(dir, &jobs)?,
        ArrayLayout::Ocdbt => {}
        ArrayLayout::Zarr => {
            for group in groups(&jobs) {
                for (job, bytes) in group.iter().zip(encode_group(&group)?) {
                    dir.write_parts_at(&job.rel, &[&bytes])?;
                    ENCODED.give(bytes);
                }
            }
        }
    }
    write_tree_files(dir, &leaves, options.layout == ArrayLayout::Ocdbt)
}

/// Writes the item's JSON files: `_strings.json` when there are string leaves, then
/// `_METADATA` (`use_ocdbt` as given).
pub(super) fn write_tree_files(
    dir: &ItemDir<'_>,
    leaves: &[PlannedLeaf<'_>],
    use_ocdbt: bool,
) -> Result<()> {
    let strings: BTreeMap<&str, &str> = leaves
        .iter()
        .filter_map(|l| l.string.map(|s| (l.param.as_str(), s)))
        .collect();
    if !strings.is_empty() {
        let bytes = serde_json::to_vec(&strings).map_err(|e| {
            Error::invalid_argument("string leaves cannot be written").with_source(e)
        })?;
        dir.write(STRINGS_FILE, &bytes)?;
    }
    let meta = TreeMetadata {
        leaves: leaves
            .iter()
            .map(|l| LeafMetadata {
                path: l.path.clone(),
                value_type: l.value_type.to_string(),
                skip_deserialize: matches!(l.value_type, "None" | "Dict" | "List"),
            })
            .collect(),
        use_ocdbt,
        use_zarr3: false,
        custom_metadata: Json::Null,
    };
    dir.write(METADATA_FILE, &metadata::to_bytes(&meta)?)
}

/// Writes one OCDBT database of `jobs` at the top of `dir`: the values over 1024 bytes into data
/// files `d/<hex>` of about [`DATA_FILE_BYTES`] (one group of jobs each), the leaf node into a
/// file of its own, then `manifest.ocdbt`.
fn write_ocdbt(dir: &ItemDir<'_>, jobs: &[Job<'_>]) -> Result<()> {
    write_ocdbt_at(dir, jobs, "")
}

/// [`write_ocdbt`] into the database directory `prefix` below `dir` (`""` or ending in `/`,
/// e.g. `ocdbt.process_2/`): the database's own paths (its node's and manifest's tables) are
/// relative to that directory, as tensorstore's.
pub(super) fn write_ocdbt_at(dir: &ItemDir<'_>, jobs: &[Job<'_>], prefix: &str) -> Result<()> {
    let mut files: Vec<String> = Vec::new();
    let mut stored: Vec<Option<(usize, u64, u64)>> = Vec::with_capacity(jobs.len());
    let mut inline: Vec<Option<Vec<u8>>> = Vec::with_capacity(jobs.len());
    // Each group is written (and synced) on a writer thread while the next one is compressed:
    // the disk's time hides behind the compression's. At most two groups' compressed bytes are
    // held (the one being written and the one handed over next).
    std::thread::scope(|s| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(String, Vec<Vec<u8>>)>(0);
        let writer = s.spawn(move || -> Result<()> {
            for (name, bytes) in rx {
                let parts: Vec<&[u8]> = bytes
                    .iter()
                    .filter(|b| b.len() > ocdbt::MAX_INLINE_VALUE_BYTES)
                    .map(Vec::as_slice)
                    .collect();
                dir.write_parts_at(&format!("{prefix}{name}"), &parts)?;
                for b in bytes {
                    ENCODED.give(b);
                }
            }
            Ok(())
        });
        let encoded = (|| -> Result<()> {
            for group in groups(jobs) {
                let bytes = encode_group(&group)?;
                let mut offset = 0u64;
                let file = files.len();
                for b in &bytes {
                    if b.len() <= ocdbt::MAX_INLINE_VALUE_BYTES {
                        stored.push(None);
                        inline.push(Some(b.clone()));
                    } else {
                        stored.push(Some((file, offset, b.len() as u64)));
                        inline.push(None);
                        offset += b.len() as u64;
                    }
                }
                if offset == 0 {
                    bytes.into_iter().for_each(|b| ENCODED.give(b));
                    continue;
                }
                let name = format!("d/{}", random_hex().0);
                files.push(name.clone());
                if tx.send((name, bytes)).is_err() {
                    // The writer stopped at an error, which its join gives.
                    break;
                }
            }
            Ok(())
        })();
        drop(tx);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(Error::new(ErrorKind::Handler, "the writer thread failed")));
        encoded.and(written)
    })?;
    let entries: Vec<Entry<'_>> = jobs
        .iter()
        .zip(stored.iter().zip(&inline))
        .map(|(job, (s, i))| Entry {
            key: &job.key,
            value: match (s, i) {
                (Some((file, offset, len)), _) => Stored::Indirect {
                    file: *file,
                    offset: *offset,
                    len: *len,
                },
                (None, Some(v)) => Stored::Inline(v),
                (None, None) => Stored::Inline(&[]),
            },
        })
        .collect();
    let (hex, uuid) = random_hex();
    let node_file = format!("d/{hex}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let names: Vec<&str> = files.iter().map(String::as_str).collect();
    let layout = ocdbt::layout(&entries, &names, &node_file, uuid, now)?;
    dir.write_parts_at(&format!("{prefix}{node_file}"), &[&layout.node])?;
    if prefix.is_empty() {
        dir.write(ocdbt::MANIFEST_FILE, &layout.manifest)
    } else {
        dir.write_parts_at(
            &format!("{prefix}{}", ocdbt::MANIFEST_FILE),
            &[&layout.manifest],
        )
    }
}
