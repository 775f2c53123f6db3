//! Orbax's array items, both ways: [`StandardHandler`] and [`PyTreeHandler`] read and write the
//! items of Orbax's `StandardCheckpointHandler` / `PyTreeCheckpointHandler` (a pytree of arrays,
//! scalars and strings; docs/orbax-arrays/). Reading takes any layout Orbax 0.12.8 writes — OCDBT
//! with zarr v2 or v3, or a zarr v2 / v3 directory per leaf; writing gives OCDBT + zarr v2
//! (Orbax's default) or, with [`ArrayLayout::Zarr`], a zarr v2 directory per leaf (Orbax's
//! `use_ocdbt=False`).

pub mod metadata;
mod write;
pub mod zarr;

pub use write::{save_item, DATA_FILE_BYTES, DEFAULT_CHUNK_BYTES};

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
    fn read_range_into(&self, path: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.0.read_range_into_at(path, offset, buf)
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

/// The chunks of one array leaf.
struct LeafSource<'s, 'a> {
    source: &'s Source<'a>,
    param: &'s str,
}

/// Values above this many bytes (16 MiB) are decoded as a stream, [`STREAM_PIECE`] bytes of
/// stored data at a time through one reused buffer, instead of being read whole first: a value
/// that is its whole file through [`ckpt_storage::Store::open_read`] (a checking store verifies
/// the file as it streams), one sharing its file (Orbax's data files) by ranged reads.
const STREAM_VALUE_BYTES: u64 = 16 << 20;
/// The piece of a streamed value read at a time, in bytes.
const STREAM_PIECE: u64 = 8 << 20;

impl zarr::ChunkSource for LeafSource<'_, '_> {
    fn read(&self, key: &str) -> Result<Vec<u8>> {
        self.source.read(self.param, key)
    }

    fn decode_into(&self, key: &str, zstd: bool, out: &mut [u8], what: &str) -> Result<()> {
        if let Source::Ocdbt(db, files) = self.source {
            let full = format!("{}/{key}", self.param);
            if let Some(ocdbt::Value::Indirect {
                file,
                offset,
                length,
            }) = db.get(full.as_bytes())
            {
                if *length > STREAM_VALUE_BYTES {
                    let size = db.file_size(files, file)?;
                    if offset.saturating_add(*length) > size {
                        return Err(Error::corrupt(format!(
                            "OCDBT reference {file}@{offset}+{length} is outside the file ({size} bytes)"
                        )));
                    }
                    let whole_file = *offset == 0 && *length == size;
                    return stream_decode(
                        files, file, *offset, *length, whole_file, zstd, out, what,
                    );
                }
            }
        }
        zarr::decode_plain(&self.read(key)?, zstd, out, what)
    }
}

/// Where a [`PieceReader`] gets its pieces from.
enum Pieces<'f> {
    /// Ranged reads of bytes `pos .. end` of a file.
    Ranged {
        files: &'f ItemFiles<'f>,
        file: &'f str,
        pos: u64,
        end: u64,
    },
    /// A whole file, streamed ([`ckpt_storage::Store::open_read`]).
    Stream(Box<dyn ckpt_storage::ReadStream + 'f>),
}

/// A stored value read [`STREAM_PIECE`] bytes at a time into one buffer reused for every
/// piece (fresh memory costs as much as the read itself on some machines: README,
/// "Performance").
struct PieceReader<'f> {
    pieces: Pieces<'f>,
    piece: Vec<u8>,
    /// Valid bytes of `piece`.
    filled: usize,
    at: usize,
}

impl PieceReader<'_> {
    /// Reads the next piece into `piece`: its length, 0 at the end.
    fn refill(&mut self) -> Result<usize> {
        let left = match &self.pieces {
            Pieces::Ranged { pos, end, .. } => end - pos,
            Pieces::Stream(s) => s.size() - s.position(),
        };
        let n = STREAM_PIECE.min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        if self.piece.len() < n {
            self.piece.resize(n, 0);
        }
        match &mut self.pieces {
            Pieces::Ranged {
                files, file, pos, ..
            } => {
                files.read_range_into(file, *pos, &mut self.piece[..n])?;
                *pos += n as u64;
            }
            Pieces::Stream(s) => s.read_exact(&mut self.piece[..n])?,
        }
        Ok(n)
    }
}

impl std::io::Read for PieceReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.filled {
            self.filled = self.refill().map_err(std::io::Error::other)?;
            self.at = 0;
            if self.filled == 0 {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.filled - self.at);
        buf[..n].copy_from_slice(&self.piece[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Decodes the value at `file[offset .. offset + length]` (the whole file when `whole_file`)
/// into `out` as a stream — a zstd frame when `zstd`, else raw bytes — which must fill `out`
/// exactly; a checking store's verdict on a whole file is taken at the end.
#[allow(clippy::too_many_arguments)]
fn stream_decode(
    files: &ItemFiles<'_>,
    file: &str,
    offset: u64,
    length: u64,
    whole_file: bool,
    zstd: bool,
    out: &mut [u8],
    what: &str,
) -> Result<()> {
    use std::io::Read;
    let pieces = if whole_file {
        let dir = files.0;
        Pieces::Stream(dir.store().open_read(&dir.nested_path(file)?)?)
    } else {
        Pieces::Ranged {
            files,
            file,
            pos: offset,
            end: offset + length,
        }
    };
    let mut reader = PieceReader {
        pieces,
        piece: Vec::new(),
        filled: 0,
        at: 0,
    };
    let short = |e: std::io::Error| {
        Error::corrupt(format!(
            "{what}: the stored chunk does not decode to the chunk's size"
        ))
        .with_source(e)
    };
    let mut extra = [0u8; 1];
    let more = if zstd {
        let mut decoder = zstd::stream::read::Decoder::with_buffer(
            std::io::BufReader::with_capacity(1 << 16, &mut reader),
        )
        .map_err(|e| Error::corrupt(format!("{what}: zstd")).with_source(e))?
        .single_frame();
        decoder.read_exact(out).map_err(short)?;
        decoder
            .read(&mut extra)
            .map_err(|e| Error::corrupt(format!("{what}: zstd chunk")).with_source(e))?
    } else {
        reader.read_exact(out).map_err(short)?;
        reader
            .read(&mut extra)
            .map_err(|e| Error::corrupt(what.to_string()).with_source(e))?
    };
    if more != 0 {
        return Err(Error::corrupt(format!(
            "{what}: the stored chunk decodes to more than {} bytes",
            out.len()
        )));
    }
    if let Pieces::Stream(s) = reader.pieces {
        s.finish()?;
    }
    Ok(())
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
        read_strings(dir)?
    } else {
        BTreeMap::new()
    };
    let results = in_parallel(wanted.len(), |i| {
        restore_leaf(dir, wanted[i], source.as_ref(), meta.use_zarr3, &strings)
    })?;
    let mut leaves = Vec::with_capacity(wanted.len());
    for (leaf, value) in wanted.iter().zip(results) {
        leaves.push((leaf.path.clone(), value?));
    }
    PyTree::from_leaves(leaves)
        .map_err(|e| Error::corrupt(format!("{}: {}", dir.location(METADATA_FILE), e.message())))
}

/// Restores an Orbax array item into `tree`, a pytree the caller owns (its parameters, say):
/// each array and scalar leaf of `tree` is filled in place from the item's leaf of the same
/// param name, its chunks decoded straight into the leaf's memory (no fresh buffer per array);
/// string leaves are replaced by the item's; `None` and empty leaves are left. The item's
/// other leaves are not read. ckpt's own (Orbax restores into new arrays only); as
/// `restore_tree`, checksums are verified by the store the item is read through.
///
/// # Errors
/// `InvalidArgument` naming the leaf when `tree` has a leaf the item does not, or whose dtype,
/// shape or kind differs from the item's; otherwise as [`restore_tree`]. On an error a leaf may
/// hold part of the item's data (the tree is the caller's to discard or restore again).
pub fn restore_tree_into(dir: &ItemDir<'_>, tree: &mut PyTree) -> Result<()> {
    let meta = read_metadata(dir)?;
    let by_name: BTreeMap<String, &LeafMetadata> = meta
        .leaves
        .iter()
        .map(|l| (param_name(&l.path), l))
        .collect();
    let mut targets = Vec::new();
    for (path, leaf) in tree.leaves_mut() {
        let name = param_name(&path);
        let Some(m) = by_name.get(&name) else {
            return Err(Error::invalid_argument(format!(
                "leaf {name:?} is not in the item ({})",
                dir.location(METADATA_FILE)
            )));
        };
        let wanted_kind = match &*leaf {
            PyTree::Array(_) => &["np.ndarray", "jax.Array"][..],
            PyTree::Scalar(_) => &["scalar"][..],
            PyTree::String(_) => &["string"][..],
            _ => continue,
        };
        if !wanted_kind.contains(&m.value_type.as_str()) {
            return Err(Error::invalid_argument(format!(
                "leaf {name:?} is a {} in the item ({}), not what the tree holds there",
                m.value_type,
                dir.location(METADATA_FILE)
            )));
        }
        targets.push((name, leaf));
    }
    let needs_arrays = targets
        .iter()
        .any(|(_, l)| matches!(l, PyTree::Array(_) | PyTree::Scalar(_)));
    let source = if needs_arrays {
        Some(Source::open(dir)?)
    } else {
        None
    };
    if targets.iter().any(|(_, l)| matches!(l, PyTree::String(_))) {
        let strings = read_strings(dir)?;
        for (name, leaf) in targets.iter_mut() {
            if let PyTree::String(s) = leaf {
                *s = strings.get(name.as_str()).cloned().ok_or_else(|| {
                    Error::not_found(format!(
                        "string leaf {name:?} is not in {}",
                        dir.location(STRINGS_FILE)
                    ))
                })?;
            }
        }
    }
    let Some(source) = source else {
        return Ok(());
    };
    let jobs: Vec<(String, &mut Tensor)> = targets
        .into_iter()
        .filter_map(|(name, leaf)| match leaf {
            PyTree::Array(t) | PyTree::Scalar(t) => Some((name, t)),
            _ => None,
        })
        .collect();
    let jobs: Vec<std::sync::Mutex<Option<(String, &mut Tensor)>>> = jobs
        .into_iter()
        .map(|j| std::sync::Mutex::new(Some(j)))
        .collect();
    // Each job is taken once; the first error in leaf order wins.
    in_parallel(jobs.len(), |i| {
        match jobs[i].lock().ok().and_then(|mut g| g.take()) {
            Some((name, tensor)) => read_array_into(dir, &source, &name, meta.use_zarr3, tensor),
            None => Err(Error::new(
                ErrorKind::Handler,
                "a restore job was taken twice",
            )),
        }
    })?
    .into_iter()
    .collect()
}

/// `_strings.json`: the string leaves of an item, by param name.
///
/// # Errors
/// `NotFound` when it is missing; `Corrupt` naming it when it is not a JSON object of strings.
fn read_strings(dir: &ItemDir<'_>) -> Result<BTreeMap<String, String>> {
    let bytes = dir.read(STRINGS_FILE)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::corrupt(format!(
            "{}: not a JSON object of strings",
            dir.location(STRINGS_FILE)
        ))
        .with_source(e)
    })
}

/// `job(i)` for every `i` in `0..n`, on up to `available_parallelism` threads (this one
/// included), each index once; the results in index order.
///
/// # Errors
/// `Handler` when a thread died before storing its result (a panic in `job`).
fn in_parallel<T: Send>(n: usize, job: impl Fn(usize) -> T + Sync) -> Result<Vec<T>> {
    let results: Vec<std::sync::Mutex<Option<T>>> =
        (0..n).map(|_| std::sync::Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            break;
        }
        let r = job(i);
        if let Ok(mut slot) = results[i].lock() {
            *slot = Some(r);
        }
    };
    let threads = std::thread::available_parallelism()
        .map(|t| t.get())
        .unwrap_or(1)
        .min(n)
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
                .ok_or_else(|| Error::new(ErrorKind::Handler, "a restore thread failed"))
        })
        .collect()
}

/// Decodes the array `param` of the item into `tensor`, which must have its dtype and shape.
fn read_array_into(
    dir: &ItemDir<'_>,
    source: &Source<'_>,
    param: &str,
    zarr3: bool,
    tensor: &mut Tensor,
) -> Result<()> {
    let what = array_what(dir, source, param, zarr3);
    let meta = source.array_meta(param, zarr3, &what)?;
    if meta.dtype != tensor.dtype() || meta.shape != tensor.shape() {
        return Err(Error::invalid_argument(format!(
            "leaf {param:?}: the tree holds {} {:?}, the item {} {:?} ({what})",
            tensor.dtype(),
            tensor.shape(),
            meta.dtype,
            meta.shape
        )));
    }
    zarr::decode_array(
        &meta,
        tensor.bytes_mut(),
        &LeafSource { source, param },
        &what,
    )?;
    tensor
        .check_bool_bytes()
        .map_err(|e| Error::corrupt(format!("{what}: {}", e.message())))
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
    zarr::decode_array(&meta, &mut buf, &LeafSource { source, param }, &what)?;
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
