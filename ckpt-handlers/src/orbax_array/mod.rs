//! Orbax's array items, both ways: [`StandardHandler`] and [`PyTreeHandler`] read and write the
//! items of Orbax's `StandardCheckpointHandler` / `PyTreeCheckpointHandler` (a pytree of arrays,
//! scalars and strings; docs/orbax-arrays/). Reading takes any layout Orbax 0.12.8 writes — OCDBT
//! with zarr v2 or v3, or a zarr v2 / v3 directory per leaf; writing gives OCDBT + zarr v2
//! (Orbax's default) or, with [`ArrayLayout::Zarr`], a zarr v2 directory per leaf (Orbax's
//! `use_ocdbt=False`).

pub mod metadata;
pub mod zarr;

use crate::ocdbt::{self, Database, DbFiles};
use crate::pytree::{param_name, KeyEntry, PyTree};
use crate::{CheckpointHandler, ItemDir, RestoredItem, SaveItem, Tensor};
use ckpt_core::{Error, ErrorKind, Result};
use metadata::{LeafMetadata, TreeMetadata, METADATA_FILE};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use zarr::ArrayMeta;

/// Type string of Orbax's `StandardCheckpointHandler` (what `args.StandardSave` records).
pub const STANDARD_HANDLER: &str =
    "orbax.checkpoint._src.handlers.standard_checkpoint_handler.StandardCheckpointHandler";
/// Type string of Orbax's `PyTreeCheckpointHandler` (what `args.PyTreeSave` records).
pub const PYTREE_HANDLER: &str =
    "orbax.checkpoint._src.handlers.pytree_checkpoint_handler.PyTreeCheckpointHandler";

/// `_strings.json`: the string leaves of an item, by param name.
const STRINGS_FILE: &str = "_strings.json";
/// Arrays above this many bytes (16 MiB) are checked against their stored bytes before their
/// buffer is allocated.
const PLAUSIBILITY_CHECK_BYTES: u64 = 16 << 20;
/// Most bytes one stored zstd byte can decode to (a 128 KiB RLE block is 4 bytes).
const MAX_ZSTD_RATIO: u64 = 40_000;

/// Largest chunk Orbax lets one OCDBT value be (its `target_data_file_size`), in bytes (2 GiB).
const OCDBT_MAX_CHUNK: u64 = 2 << 30;

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
    /// Target chunk size in bytes, as Orbax's `SaveArgs(chunk_byte_size=…)`: `None` writes each
    /// array as one chunk (arrays over 2 GiB in 2 GiB chunks with OCDBT), as Orbax does by default.
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
                save_item(dir, item, &self.options)
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

/// The database files of an item, read through its [`ItemDir`].
struct ItemFiles<'a>(&'a ItemDir<'a>);

impl DbFiles for ItemFiles<'_> {
    fn size(&self, path: &str) -> Result<u64> {
        self.0.size_at(path)
    }
    fn read_range(&self, path: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>> {
        self.0.read_range_at(path, range)
    }
}

/// Where an item's arrays are read from.
enum Source<'a> {
    Ocdbt(Database, ItemFiles<'a>),
    Dirs(&'a ItemDir<'a>),
}

impl Source<'_> {
    fn open<'a>(dir: &'a ItemDir<'a>) -> Result<Source<'a>> {
        if dir.exists(ocdbt::MANIFEST_FILE)? {
            let manifest = dir.read(ocdbt::MANIFEST_FILE)?;
            let files = ItemFiles(dir);
            let db = Database::open(&files, &manifest, &dir.location(ocdbt::MANIFEST_FILE))?;
            Ok(Source::Ocdbt(db, files))
        } else {
            Ok(Source::Dirs(dir))
        }
    }

    /// Reads `<param>/<key>`.
    fn read(&self, param: &str, key: &str) -> Result<Vec<u8>> {
        let full = format!("{param}/{key}");
        match self {
            Source::Ocdbt(db, files) => db
                .read(files, full.as_bytes())
                .map_err(|e| e.prefixed(&format!("{}: ", files.0.location(ocdbt::MANIFEST_FILE)))),
            Source::Dirs(dir) => dir.read_at(&full),
        }
    }

    /// The stored length of `<param>/<key>` in bytes, without reading it.
    fn stored_len(&self, param: &str, key: &str) -> Result<u64> {
        let full = format!("{param}/{key}");
        match self {
            Source::Ocdbt(db, files) => db.get(full.as_bytes()).map(|v| v.len()).ok_or_else(|| {
                Error::not_found(format!(
                    "{}: key {full:?} is not in the OCDBT database",
                    files.0.location(ocdbt::MANIFEST_FILE)
                ))
            }),
            Source::Dirs(dir) => dir.size_at(&full),
        }
    }

    fn array_meta(&self, param: &str, zarr3: bool, what: &str) -> Result<ArrayMeta> {
        if zarr3 {
            zarr::parse_zarr_json(&self.read(param, "zarr.json")?, what)
        } else {
            zarr::parse_zarray(&self.read(param, ".zarray")?, what)
        }
    }
}

fn read_metadata(dir: &ItemDir<'_>) -> Result<TreeMetadata> {
    let bytes = dir.read(METADATA_FILE)?;
    metadata::parse(&bytes, &dir.location(METADATA_FILE))
}

/// Restores an Orbax array item as a [`PyTree`]: every leaf, or with `only`, just the leaves whose
/// param names are in it (their chunks alone are read; the other leaves are left out of the tree).
///
/// # Errors
/// `NotFound` when `_METADATA`, the database or a chunk is missing (Orbax never fills missing
/// chunks); `Corrupt` naming the file and key for anything that does not decode; `Unsupported`
/// for a leaf kind or zarr feature Orbax 0.12.8 does not write; `InvalidArgument` when `only`
/// names a leaf the item does not have.
pub fn restore_tree(dir: &ItemDir<'_>, only: Option<&BTreeSet<String>>) -> Result<PyTree> {
    let meta = read_metadata(dir)?;
    let wanted: Vec<&LeafMetadata> = meta
        .leaves
        .iter()
        .filter(|l| only.is_none_or(|o| o.contains(&param_name(&l.path))))
        .collect();
    if let Some(o) = only {
        let have: BTreeSet<String> = meta.leaves.iter().map(|l| param_name(&l.path)).collect();
        if let Some(missing) = o.iter().find(|n| !have.contains(*n)) {
            return Err(Error::invalid_argument(format!(
                "leaf {missing:?} is not in the item ({})",
                dir.location(METADATA_FILE)
            )));
        }
    }
    let needs_arrays = wanted
        .iter()
        .any(|l| matches!(l.value_type.as_str(), "np.ndarray" | "jax.Array" | "scalar"));
    let source = if needs_arrays {
        Some(Source::open(dir)?)
    } else {
        None
    };
    let strings = if wanted.iter().any(|l| l.value_type == "string") {
        let bytes = dir.read(STRINGS_FILE)?;
        let v: BTreeMap<String, String> = serde_json::from_slice(&bytes).map_err(|e| {
            Error::corrupt(format!(
                "{}: not a JSON object of strings",
                dir.location(STRINGS_FILE)
            ))
            .with_source(e)
        })?;
        v
    } else {
        BTreeMap::new()
    };
    let results: Vec<std::sync::Mutex<Option<Result<PyTree>>>> =
        wanted.iter().map(|_| std::sync::Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(leaf) = wanted.get(i) else { break };
        let r = restore_leaf(dir, leaf, source.as_ref(), meta.use_zarr3, &strings);
        if let Ok(mut slot) = results[i].lock() {
            *slot = Some(r);
        }
    };
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(wanted.len())
        .max(1);
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(work);
        }
        work();
    });
    let mut leaves = Vec::with_capacity(wanted.len());
    for (leaf, slot) in wanted.iter().zip(results) {
        let value =
            slot.into_inner().ok().flatten().unwrap_or_else(|| {
                Err(Error::new(ErrorKind::Handler, "a restore thread failed"))
            })?;
        leaves.push((leaf.path.clone(), value));
    }
    PyTree::from_leaves(leaves)
        .map_err(|e| Error::corrupt(format!("{}: {}", dir.location(METADATA_FILE), e.message())))
}

fn restore_leaf(
    dir: &ItemDir<'_>,
    leaf: &LeafMetadata,
    source: Option<&Source<'_>>,
    zarr3: bool,
    strings: &BTreeMap<String, String>,
) -> Result<PyTree> {
    let param = param_name(&leaf.path);
    Ok(match leaf.value_type.as_str() {
        "np.ndarray" | "jax.Array" | "scalar" => {
            let source = source.ok_or_else(|| Error::new(ErrorKind::Handler, "no array source"))?;
            let tensor = read_array(dir, source, &param, zarr3)?;
            if leaf.value_type == "scalar" {
                if !tensor.shape().is_empty() {
                    return Err(Error::corrupt(format!(
                        "{}: scalar leaf {param:?} has shape {:?}",
                        dir.location(METADATA_FILE),
                        tensor.shape()
                    )));
                }
                PyTree::Scalar(tensor)
            } else {
                PyTree::Array(tensor)
            }
        }
        "string" => PyTree::String(strings.get(&param).cloned().ok_or_else(|| {
            Error::not_found(format!(
                "string leaf {param:?} is not in {}",
                dir.location(STRINGS_FILE)
            ))
        })?),
        "None" => PyTree::None,
        "Dict" => PyTree::dict(),
        "List" | "Tuple" => PyTree::List(Vec::new()),
        other => {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "leaf {param:?} of {} has value type {other:?}, which ckpt cannot restore",
                    dir.location(METADATA_FILE)
                ),
            ))
        }
    })
}

/// How errors name an array: its param name and where its zarr metadata is (a key of the
/// item's OCDBT database, or a file).
fn array_what(dir: &ItemDir<'_>, source: &Source<'_>, param: &str, zarr3: bool) -> String {
    let meta_key = if zarr3 { "zarr.json" } else { ".zarray" };
    match source {
        Source::Ocdbt(..) => format!(
            "array {param:?} (key {param}/{meta_key} of {})",
            dir.location(ocdbt::MANIFEST_FILE)
        ),
        Source::Dirs(_) => {
            let rel = format!("{param}/{meta_key}");
            let at = dir
                .nested_path(&rel)
                .map(|p| dir.store().location(&p))
                .unwrap_or(rel);
            format!("array {param:?} ({at})")
        }
    }
}

fn read_array(dir: &ItemDir<'_>, source: &Source<'_>, param: &str, zarr3: bool) -> Result<Tensor> {
    let what = array_what(dir, source, param, zarr3);
    let meta = source.array_meta(param, zarr3, &what)?;
    let (_, len) = crate::tensor::checked_sizes(meta.dtype, &meta.shape)
        .ok_or_else(|| Error::corrupt(format!("{what}: size overflows")))?;
    if len as u64 > PLAUSIBILITY_CHECK_BYTES {
        // The size comes from metadata anyone can write: before allocating it, check that the
        // stored chunks could hold it (zstd expands at most ~32768:1).
        let mut stored = 0u64;
        for index in zarr::chunk_grid(&meta) {
            stored = stored
                .saturating_add(source.stored_len(param, &zarr::chunk_key(meta.version, &index))?);
        }
        let limit = if meta.zstd {
            stored.saturating_mul(MAX_ZSTD_RATIO)
        } else {
            stored
        };
        if len as u64 > limit.saturating_add(1 << 20) {
            return Err(Error::corrupt(format!(
                "{what}: shape {:?} of {} needs {len} bytes, more than its {stored} stored bytes can hold",
                meta.shape, meta.dtype
            )));
        }
    }
    let mut buf: Vec<u8> = Vec::new();
    buf.try_reserve_exact(len)
        .map_err(|_| Error::corrupt(format!("{what}: {len} bytes cannot be allocated")))?;
    buf.resize(len, 0);
    zarr::decode_array(&meta, &mut buf, &mut |key| source.read(param, key), &what)?;
    Tensor::new(meta.dtype, meta.shape.clone(), buf)
        .map_err(|e| Error::corrupt(format!("{what}: {}", e.message())))
}

/// What [`StandardHandler::metadata`] says about an item without reading chunks: its layout, the
/// save's `custom_metadata`, and per leaf its param name (`key`), key path, value type and, for
/// arrays, dtype, shape, chunk shape and size in bytes.
///
/// # Errors
/// As [`restore_tree`], for `_METADATA`, the database's nodes and the zarr metadata.
pub fn tree_metadata(dir: &ItemDir<'_>) -> Result<Json> {
    let meta = read_metadata(dir)?;
    let source = Source::open(dir)?;
    let layout = match (&source, meta.use_zarr3) {
        (Source::Ocdbt(..), false) => "ocdbt+zarr2",
        (Source::Ocdbt(..), true) => "ocdbt+zarr3",
        (Source::Dirs(_), false) => "zarr2",
        (Source::Dirs(_), true) => "zarr3",
    };
    let mut leaves = Vec::with_capacity(meta.leaves.len());
    for leaf in &meta.leaves {
        let param = param_name(&leaf.path);
        let path: Vec<Json> = leaf
            .path
            .iter()
            .map(|k| match k {
                KeyEntry::Key(s) => Json::String(s.clone()),
                KeyEntry::Index(i) => json!(i),
            })
            .collect();
        let mut entry = json!({"key": param, "path": path, "value_type": leaf.value_type});
        if matches!(
            leaf.value_type.as_str(),
            "np.ndarray" | "jax.Array" | "scalar"
        ) {
            let what = array_what(dir, &source, &param, meta.use_zarr3);
            let a = source.array_meta(&param, meta.use_zarr3, &what)?;
            let bytes = crate::tensor::checked_sizes(a.dtype, &a.shape).map(|(_, b)| b);
            entry["dtype"] = json!(a.dtype.name());
            entry["shape"] = json!(a.shape);
            entry["chunks"] = json!(a.chunks);
            entry["bytes"] = json!(bytes);
        }
        leaves.push(entry);
    }
    Ok(json!({
        "format": "orbax-pytree",
        "layout": layout,
        "custom_metadata": meta.custom_metadata,
        "leaves": leaves,
    }))
}

/// A tree's leaves as ckpt writes them: path, param name, value type, and what is stored.
struct PlannedLeaf<'t> {
    path: Vec<KeyEntry>,
    param: String,
    value_type: &'static str,
    array: Option<&'t Tensor>,
    string: Option<&'t str>,
}

fn plan(tree: &PyTree) -> Result<Vec<PlannedLeaf<'_>>> {
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
        });
    }
    Ok(out)
}

/// 128 random bits as 32 lowercase hex digits (OCDBT data file names and uuids).
fn random_hex() -> (String, [u8; 16]) {
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

/// The stored zarr files of one array leaf: `(key below the param name, bytes)`.
type ArrayFiles = Vec<(String, Vec<u8>)>;

fn encode_array(t: &Tensor, options: &ArrayOptions) -> Result<ArrayFiles> {
    let bytes = t.as_bytes().len() as u64;
    let target = match (options.layout, options.chunk_byte_size) {
        (ArrayLayout::Ocdbt, Some(c)) => Some(c.min(OCDBT_MAX_CHUNK)),
        (ArrayLayout::Ocdbt, None) if bytes > OCDBT_MAX_CHUNK => Some(OCDBT_MAX_CHUNK),
        (ArrayLayout::Ocdbt, None) => None,
        (ArrayLayout::Zarr, c) => c,
    };
    if target.is_some_and(|c| c < t.dtype().size_in_bytes() as u64) {
        return Err(Error::invalid_argument(format!(
            "chunk_byte_size {target:?} is smaller than one {} element",
            t.dtype()
        )));
    }
    let chunks = zarr::choose_chunk_shape(
        t.shape(),
        t.dtype(),
        target.map(|c| usize::try_from(c).unwrap_or(usize::MAX)),
    );
    let mut out = vec![(
        ".zarray".to_string(),
        zarr::zarray_bytes(t.dtype(), t.shape(), &chunks),
    )];
    zarr::encode_chunks(t.dtype(), t.shape(), &chunks, t.as_bytes(), &mut |k, v| {
        out.push((k, v));
        Ok(())
    })?;
    Ok(out)
}

/// Encodes every array leaf, in parallel across leaves.
fn encode_all(leaves: &[PlannedLeaf<'_>], options: &ArrayOptions) -> Result<Vec<ArrayFiles>> {
    let arrays: Vec<&Tensor> = leaves.iter().filter_map(|l| l.array).collect();
    let results: Vec<std::sync::Mutex<Option<Result<ArrayFiles>>>> =
        arrays.iter().map(|_| std::sync::Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(t) = arrays.get(i) else { break };
        let r = encode_array(t, options);
        if let Ok(mut slot) = results[i].lock() {
            *slot = Some(r);
        }
    };
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(arrays.len())
        .max(1);
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(work);
        }
        work();
    });
    results
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .ok()
                .flatten()
                .unwrap_or_else(|| Err(Error::new(ErrorKind::Handler, "an encode thread failed")))
        })
        .collect()
}

/// Writes `item` (a [`SaveItem::PyTree`], or [`SaveItem::Tensors`] as a flat dict) into `dir` as
/// Orbax's `StandardSave`/`PyTreeSave` would, in `options.layout`: the arrays, `_strings.json`
/// when there are string leaves, then `_METADATA`; for OCDBT the data file before
/// `manifest.ocdbt`.
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
    let encoded = encode_all(&leaves, options)?;
    let mut per_array = leaves
        .iter()
        .filter(|l| l.array.is_some())
        .zip(encoded.iter());
    match options.layout {
        ArrayLayout::Ocdbt => {
            let mut entries: BTreeMap<Vec<u8>, &[u8]> = BTreeMap::new();
            for (leaf, files) in per_array.by_ref() {
                for (key, bytes) in files {
                    entries.insert(format!("{}/{key}", leaf.param).into_bytes(), bytes);
                }
            }
            if !entries.is_empty() {
                write_ocdbt(dir, &entries)?;
            }
        }
        ArrayLayout::Zarr => {
            for (leaf, files) in per_array.by_ref() {
                for (key, bytes) in files {
                    dir.write_parts_at(&format!("{}/{key}", leaf.param), &[bytes])?;
                }
            }
        }
    }
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
        use_ocdbt: options.layout == ArrayLayout::Ocdbt,
        use_zarr3: false,
        custom_metadata: Json::Null,
    };
    dir.write(METADATA_FILE, &metadata::to_bytes(&meta)?)
}

/// Writes one OCDBT database of `entries` (key → value) at the top of `dir`: `d/<hex>` (the
/// values over 1024 bytes, then the leaf node), then `manifest.ocdbt`.
fn write_ocdbt(dir: &ItemDir<'_>, entries: &BTreeMap<Vec<u8>, &[u8]>) -> Result<()> {
    let (hex, uuid) = random_hex();
    let data_file = format!("d/{hex}");
    let list: Vec<ocdbt::Entry<'_>> = entries
        .iter()
        .map(|(k, v)| ocdbt::Entry {
            key: k.as_slice(),
            len: v.len() as u64,
            inline: (v.len() <= ocdbt::MAX_INLINE_VALUE_BYTES).then_some(*v),
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let layout = ocdbt::layout(&list, &data_file, uuid, now)?;
    let values: Vec<&[u8]> = entries.values().copied().collect();
    let mut parts: Vec<&[u8]> = layout.indirect.iter().map(|&i| values[i]).collect();
    parts.push(&layout.node);
    dir.write_parts_at(&data_file, &parts)?;
    dir.write(ocdbt::MANIFEST_FILE, &layout.manifest)
}
