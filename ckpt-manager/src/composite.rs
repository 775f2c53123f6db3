//! The items of one save (`Composite`) and the per-save options (`SaveOptions`).

use crate::staging::StagingPool;
use ckpt_core::{Metrics, DEFAULT_ITEM_NAME};
use ckpt_handlers::{PyTree, SaveItem, Tensor, TensorMap};
use std::borrow::Cow;

/// The named items of one save, as Orbax `args.Composite` (spec §6). Each item is written into
/// its own directory `<step>/<name>/` by its handler, in name order.
///
/// ```
/// # use ckpt_manager::Composite;
/// # let params = ckpt_handlers::TensorMap::new();
/// #[derive(serde::Serialize)] struct State { epoch: u32 }
/// let state = State { epoch: 3 };
/// let items = Composite::new().tensors("params", &params).json("state", &state);
/// assert_eq!(items.names(), vec!["params", "state"]);
/// ```
#[derive(Debug, Default)]
pub struct Composite<'a> {
    items: Vec<(String, SaveItem<'a>)>,
    /// Names added more than once (a save of this set fails, naming them).
    duplicates: Vec<String>,
}

impl<'a> Composite<'a> {
    /// A set of `items` split from a checked set (no name twice).
    fn of(items: Vec<(String, SaveItem<'a>)>) -> Self {
        Composite {
            items,
            duplicates: Vec::new(),
        }
    }

    /// No items yet.
    pub fn new() -> Self {
        Composite {
            items: Vec::new(),
            duplicates: Vec::new(),
        }
    }

    /// A single unnamed item, stored as `default` (Orbax's default-item mode).
    pub fn single(item: SaveItem<'a>) -> Self {
        Composite::new().item(DEFAULT_ITEM_NAME, item)
    }

    /// Adds item `name`. Adding a name twice makes a save of this set fail (`InvalidArgument`
    /// naming it) rather than drop one of the two silently.
    pub fn item(mut self, name: impl Into<String>, item: SaveItem<'a>) -> Self {
        let name = name.into();
        if self.items.iter().any(|(n, _)| *n == name) {
            self.duplicates.push(name);
        } else {
            self.items.push((name, item));
        }
        self
    }

    /// Names added more than once.
    pub(crate) fn duplicates(&self) -> &[String] {
        &self.duplicates
    }

    /// Adds a JSON item: any `serde::Serialize` value, written as Orbax's `JsonSave` would.
    pub fn json<T: serde::Serialize + Sync>(self, name: impl Into<String>, value: &'a T) -> Self {
        self.item(name, SaveItem::Json(value))
    }

    /// Adds a JSON item from a `serde_json::Value`, moved in.
    pub fn json_value(self, name: impl Into<String>, value: serde_json::Value) -> Self {
        self.item(name, SaveItem::JsonValue(Cow::Owned(value)))
    }

    /// Adds a tensor item (named n-d arrays, stored as one safetensors file), borrowed.
    pub fn tensors(self, name: impl Into<String>, tensors: &'a TensorMap) -> Self {
        self.item(name, SaveItem::Tensors(Cow::Borrowed(tensors)))
    }

    /// Adds a tensor item, moved in.
    pub fn tensors_owned(self, name: impl Into<String>, tensors: TensorMap) -> Self {
        self.item(name, SaveItem::Tensors(Cow::Owned(tensors)))
    }

    /// Adds a pytree item (nested dicts and lists of arrays and scalars), borrowed, written in
    /// Orbax's `StandardSave` format (OCDBT + zarr) unless a handler is registered for `name`
    /// (e.g. `StandardHandler::with_layout(ArrayLayout::Zarr)`, or a `PyTreeHandler`). Orbax
    /// restores it with `restore(step)` and `args.StandardRestore`.
    pub fn pytree(self, name: impl Into<String>, tree: &'a PyTree) -> Self {
        self.item(name, SaveItem::PyTree(Cow::Borrowed(tree)))
    }

    /// Adds a pytree item, moved in (see [`Composite::pytree`]).
    pub fn pytree_owned(self, name: impl Into<String>, tree: PyTree) -> Self {
        self.item(name, SaveItem::PyTree(Cow::Owned(tree)))
    }

    /// Adds pytree item `name`, of which this process gives its part `shard` (its shards of the
    /// sharded leaves, see [`ckpt_handlers::orbax_array::PyTreeShard`]): in a multi-process job
    /// every process gives an item of this name, each writes its shards' chunks into
    /// `<item>/ocdbt.process_<i>/`, the primary the item's metadata and replicated leaves, and
    /// the primary merges the per-process databases into the item's `manifest.ocdbt` before the
    /// step commits, as Orbax 0.12.8 does for `jax.Array` leaves sharded over processes. Saved
    /// by one process (not in a job) the shards must cover every array. Written by Orbax's
    /// `StandardCheckpointHandler` format unless a handler is registered for `name`; restored as
    /// any pytree item ([`crate::CheckpointManager::restore`],
    /// [`crate::CheckpointManager::restore_leaf_slice`] for a box of one leaf).
    pub fn pytree_shard(
        self,
        name: impl Into<String>,
        shard: &'a ckpt_handlers::orbax_array::PyTreeShard,
    ) -> Self {
        self.item(
            name,
            SaveItem::PyTreeShard(Cow::Borrowed(shard), Default::default()),
        )
    }

    /// As [`Composite::pytree_shard`], moving the part in.
    pub fn pytree_shard_owned(
        self,
        name: impl Into<String>,
        shard: ckpt_handlers::orbax_array::PyTreeShard,
    ) -> Self {
        self.item(
            name,
            SaveItem::PyTreeShard(Cow::Owned(shard), Default::default()),
        )
    }

    /// The names of the [`SaveItem::PyTreeShard`] items, sorted.
    pub(crate) fn shard_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .items
            .iter()
            .filter(|(_, i)| matches!(i, SaveItem::PyTreeShard(..)))
            .map(|(n, _)| n.as_str())
            .collect();
        v.sort_unstable();
        v
    }

    /// What every process of a job must agree on for the sharded leaves of each
    /// [`SaveItem::PyTreeShard`] item: `{item: {leaf: {"dtype", "global_shape", "chunk_shape"}}}`.
    pub(crate) fn shard_layouts(&self) -> serde_json::Value {
        let mut items = serde_json::Map::new();
        for (name, item) in &self.items {
            if let SaveItem::PyTreeShard(part, _) = item {
                let mut leaves = serde_json::Map::new();
                for (leaf, dtype, p) in part.sharded_leaves() {
                    leaves.insert(
                        leaf.to_string(),
                        serde_json::json!({
                            "dtype": dtype.map(|d| d.to_string()),
                            "global_shape": p.global_shape(),
                            "chunk_shape": p.chunk_shape(),
                        }),
                    );
                }
                items.insert(name.clone(), serde_json::Value::Object(leaves));
            }
        }
        serde_json::Value::Object(items)
    }

    /// Gives every [`SaveItem::PyTreeShard`] item `role` (this process's part in a job).
    pub(crate) fn set_shard_role(&mut self, role: ckpt_handlers::orbax_array::ShardRole) {
        for (_, item) in &mut self.items {
            if let SaveItem::PyTreeShard(_, r) = item {
                *r = role;
            }
        }
    }

    /// Adds an opaque bytes item, borrowed.
    pub fn bytes(self, name: impl Into<String>, bytes: &'a [u8]) -> Self {
        self.item(name, SaveItem::Bytes(Cow::Borrowed(bytes)))
    }

    /// Adds an opaque bytes item, moved in.
    pub fn bytes_owned(self, name: impl Into<String>, bytes: Vec<u8>) -> Self {
        self.item(name, SaveItem::Bytes(Cow::Owned(bytes)))
    }

    /// The item names, in name order.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.items.iter().map(|(n, _)| n.as_str()).collect();
        v.sort_unstable();
        v
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The items, sorted by name (Orbax processes items in sorted name order, spec §6.4).
    pub(crate) fn sorted(&self) -> Vec<(&str, &SaveItem<'a>)> {
        let mut v: Vec<(&str, &SaveItem<'a>)> =
            self.items.iter().map(|(n, i)| (n.as_str(), i)).collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }
}

/// The items of a save, made independent of the caller's memory for a background save.
pub(crate) enum Captured<'a> {
    /// Every item is owned now: moved-in items were moved, borrowed ones copied once, JSON
    /// values serialized once.
    Owned(Composite<'static>),
    /// An item cannot be captured (a borrowed `SaveItem::Custom`); the save must be written
    /// before `save` returns.
    NotCapturable(Composite<'a>),
}

impl<'a> Composite<'a> {
    /// Splits off the items that borrow the caller's memory: tensors, bytes and custom items
    /// passed by reference. Returns `(borrowed, the rest)`; JSON items stay in the rest (a
    /// capture serializes them, which costs little).
    pub(crate) fn split_borrowed(self) -> (Composite<'a>, Composite<'a>) {
        let (borrowed, rest) = self.items.into_iter().partition(|(_, i)| {
            matches!(
                i,
                SaveItem::Tensors(Cow::Borrowed(_))
                    | SaveItem::Bytes(Cow::Borrowed(_))
                    | SaveItem::PyTree(Cow::Borrowed(_))
                    | SaveItem::PyTreeShard(Cow::Borrowed(_), _)
                    | SaveItem::Custom(_)
            )
        });
        (
            Composite {
                items: borrowed,
                duplicates: self.duplicates,
            },
            Composite::of(rest),
        )
    }

    /// Whether [`Composite::capture`] can make every item owned (no borrowed `Custom` item).
    pub(crate) fn capturable(&self) -> bool {
        !self
            .items
            .iter()
            .any(|(_, i)| matches!(i, SaveItem::Custom(_)))
    }

    /// Captures the items for a background save (at most one copy of each borrowed item; none
    /// for items moved in).
    ///
    /// # Errors
    /// `InvalidArgument` naming the item when a JSON item cannot be serialized, or is nested
    /// deeper than a restore can read ([`ckpt_core::pyjson::MAX_NESTING_DEPTH`]).
    pub(crate) fn capture(self) -> ckpt_core::Result<Captured<'a>> {
        if !self.capturable() {
            return Ok(Captured::NotCapturable(self));
        }
        let mut owned: Vec<(String, SaveItem<'static>)> = Vec::with_capacity(self.items.len());
        for (name, item) in self.items {
            let item = match item {
                SaveItem::Json(v) => {
                    let value = serde_json::to_value(v).map_err(|e| {
                        ckpt_core::Error::invalid_argument(format!(
                            "item {name:?} cannot be serialized as JSON"
                        ))
                        .with_source(e)
                    })?;
                    // What a restore could not parse is refused here, before `save` returns.
                    let max = ckpt_core::pyjson::MAX_NESTING_DEPTH;
                    let depth = ckpt_core::pyjson::value_nesting_depth(&value, max);
                    ckpt_core::pyjson::check_nesting_depth(&format!("item {name:?}"), depth, max)?;
                    SaveItem::JsonValue(Cow::Owned(value))
                }
                SaveItem::JsonValue(v) => SaveItem::JsonValue(Cow::Owned(v.into_owned())),
                SaveItem::Tensors(Cow::Borrowed(t)) => SaveItem::Tensors(Cow::Owned(
                    copy_tensors(t).map_err(|e| e.with_path(name.clone()))?,
                )),
                SaveItem::Tensors(Cow::Owned(t)) => SaveItem::Tensors(Cow::Owned(t)),
                SaveItem::Bytes(Cow::Borrowed(b)) => {
                    let mut copies = parallel_copy(&[b]);
                    SaveItem::Bytes(Cow::Owned(copies.pop().unwrap_or_default()))
                }
                SaveItem::Bytes(Cow::Owned(b)) => SaveItem::Bytes(Cow::Owned(b)),
                SaveItem::PyTree(Cow::Borrowed(t)) => SaveItem::PyTree(Cow::Owned(t.clone())),
                SaveItem::PyTree(Cow::Owned(t)) => SaveItem::PyTree(Cow::Owned(t)),
                SaveItem::PyTreeShard(t, role) => {
                    SaveItem::PyTreeShard(Cow::Owned(t.into_owned()), role)
                }
                SaveItem::Custom(_) => {
                    return Err(ckpt_core::Error::invalid_argument(format!(
                        "item {name:?} cannot be captured"
                    )))
                }
            };
            owned.push((name, item));
        }
        Ok(Captured::Owned(Composite::of(owned)))
    }
}

/// An item and its name.
type NamedItem<'a> = (String, SaveItem<'a>);

/// What [`Composite::stage`] made of the items of a save.
pub(crate) struct StagedCopies<'a> {
    /// The borrowed tensors and bytes items, copied into the pool's buffers (owned).
    pub staged: Composite<'static>,
    /// Their names, sorted: the buffers go back to the pool from these items
    /// ([`Composite::take_staging_buffers`]).
    pub names: Vec<String>,
    /// Every other item as it was given (borrowed items the pool had no room for included).
    pub rest: Composite<'a>,
}

impl<'a> Composite<'a> {
    /// Copies the borrowed tensors and bytes items into buffers of `pool` (issue 14): one copy
    /// into memory that earlier saves already faulted in, on several threads when large
    /// ([`parallel_copy_into`]); no storage call. Items the pool has no room for (its cap)
    /// stay in `rest`, borrowed, with everything else.
    ///
    /// # Errors
    /// `InvalidArgument` naming the item if a copy cannot be rebuilt as a tensor (it always can
    /// for a valid tensor: [`Tensor::new`] checks it again).
    pub(crate) fn stage(self, pool: &StagingPool) -> ckpt_core::Result<StagedCopies<'a>> {
        let (mut candidates, mut rest): (Vec<_>, Vec<_>) =
            self.items.into_iter().partition(|(_, i)| {
                matches!(
                    i,
                    SaveItem::Tensors(Cow::Borrowed(_)) | SaveItem::Bytes(Cow::Borrowed(_))
                )
            });
        if candidates.is_empty() {
            return Ok(StagedCopies {
                staged: Composite::new(),
                names: Vec::new(),
                rest: Composite::of(rest),
            });
        }
        // Name order: which items the cap leaves out does not depend on how they were added.
        candidates.sort_by(|a, b| a.0.cmp(&b.0));
        let groups: Vec<Vec<usize>> = candidates
            .iter()
            .map(|(_, i)| sources(i).iter().map(|s| s.len()).collect())
            .collect();
        let buffers = pool.take(&groups);
        let mut chosen: Vec<(NamedItem<'a>, Vec<Vec<u8>>)> = Vec::new();
        for (candidate, bufs) in candidates.into_iter().zip(buffers) {
            match bufs {
                Some(bufs) => chosen.push((candidate, bufs)),
                None => rest.push(candidate),
            }
        }
        let mut pairs: Vec<(&[u8], &mut [u8])> = Vec::new();
        for ((_, item), bufs) in chosen.iter_mut() {
            pairs.extend(
                sources(item)
                    .into_iter()
                    .zip(bufs.iter_mut().map(Vec::as_mut_slice)),
            );
        }
        parallel_copy_into(pairs);
        let mut staged = Vec::with_capacity(chosen.len());
        let mut names = Vec::with_capacity(chosen.len());
        for ((name, item), bufs) in chosen {
            let owned = match item {
                SaveItem::Tensors(t) => {
                    let mut out = TensorMap::new();
                    for ((key, t), data) in t.iter().zip(bufs) {
                        let copy = Tensor::new(t.dtype(), t.shape(), data)
                            .map_err(|e| e.with_path(name.clone()))?;
                        out.insert(key.clone(), copy);
                    }
                    SaveItem::Tensors(Cow::Owned(out))
                }
                SaveItem::Bytes(_) => {
                    SaveItem::Bytes(Cow::Owned(bufs.into_iter().next().unwrap_or_default()))
                }
                other => {
                    // Not a staging candidate (the partition above keeps none such).
                    rest.push((name, other));
                    continue;
                }
            };
            names.push(name.clone());
            staged.push((name, owned));
        }
        Ok(StagedCopies {
            staged: Composite::of(staged),
            names,
            rest: Composite::of(rest),
        })
    }

    /// Takes the buffers out of the items named in `names` (sorted; as [`Composite::stage`]
    /// made them) to give them back to the staging pool; those items are left empty.
    pub(crate) fn take_staging_buffers(&mut self, names: &[String]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (name, item) in self.items.iter_mut() {
            if names.binary_search(name).is_err() {
                continue;
            }
            match item {
                SaveItem::Tensors(Cow::Owned(map)) => {
                    out.extend(std::mem::take(map).into_values().map(Tensor::into_bytes));
                }
                SaveItem::Bytes(Cow::Owned(b)) => out.push(std::mem::take(b)),
                _ => {}
            }
        }
        out
    }

    /// These items followed by those of `other` (whose names are not among these).
    pub(crate) fn append(mut self, other: Composite<'a>) -> Composite<'a> {
        self.items.extend(other.items);
        self
    }
}

/// The byte arrays of a tensors or bytes item, in the order [`Composite::stage`] copies them.
fn sources<'s>(item: &'s SaveItem<'_>) -> Vec<&'s [u8]> {
    match item {
        SaveItem::Tensors(t) => t.values().map(Tensor::as_bytes).collect(),
        SaveItem::Bytes(b) => vec![&b[..]],
        _ => Vec::new(),
    }
}

/// From this many bytes on, a capture copies on several threads (below, one thread is faster
/// than starting others).
const PARALLEL_COPY_MIN: usize = 32 << 20;

/// The piece of an array one copying thread takes at a time (8 MiB).
const COPY_PIECE: usize = 8 << 20;

/// Copies of `srcs`, made on up to 4 threads (never more than the machine has cores) when they
/// hold [`PARALLEL_COPY_MIN`] bytes or more in all: see [`parallel_copy_into`]. A copy into
/// fresh memory costs mostly page faults and memory bandwidth, which a second core nearly halves
/// (`save` of borrowed items blocks for this copy when staging is off).
pub(crate) fn parallel_copy(srcs: &[&[u8]]) -> Vec<Vec<u8>> {
    let total: usize = srcs.iter().map(|s| s.len()).sum();
    if total < PARALLEL_COPY_MIN || copy_threads() < 2 {
        return srcs.iter().map(|s| s.to_vec()).collect();
    }
    // Fresh zeroed buffers are mapped lazily (large ones advised for huge pages): the copy
    // below is the first touch of each page.
    let mut out: Vec<Vec<u8>> = srcs
        .iter()
        .map(|s| ckpt_storage::try_zeroed_bytes(s.len()).unwrap_or_else(|| vec![0u8; s.len()]))
        .collect();
    let pairs: Vec<(&[u8], &mut [u8])> = srcs
        .iter()
        .copied()
        .zip(out.iter_mut().map(Vec::as_mut_slice))
        .collect();
    parallel_copy_into(pairs);
    out
}

/// How many threads a large copy uses: up to 4, never more than the machine has cores.
fn copy_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4)
}

/// Copies each source into its destination (of the same length), on up to 4 threads when they
/// hold [`PARALLEL_COPY_MIN`] bytes or more in all: the arrays are cut into 8 MiB pieces that
/// the threads take from one queue. This thread takes pieces too, so everything is copied even
/// if no other thread starts. Pieces are copied with streaming stores
/// ([`ckpt_storage::copy_streaming`]: the staged bytes are read next by the device, not the
/// CPU). A pair whose lengths differ copies nothing (callers pass equal lengths).
pub(crate) fn parallel_copy_into(pairs: Vec<(&[u8], &mut [u8])>) {
    let total: usize = pairs.iter().map(|(s, _)| s.len()).sum();
    let threads = copy_threads();
    let pieces: Vec<(&[u8], &mut [u8])> = pairs
        .into_iter()
        .filter(|(s, d)| s.len() == d.len())
        .flat_map(|(s, d)| s.chunks(COPY_PIECE).zip(d.chunks_mut(COPY_PIECE)))
        .collect();
    if total < PARALLEL_COPY_MIN || threads < 2 {
        for (s, d) in pieces {
            ckpt_storage::copy_streaming(d, s);
        }
        return;
    }
    // A queue of pieces every thread takes from until it is empty: this thread works too, so
    // all is copied even if no other thread can be started.
    let queue = std::sync::Mutex::new(pieces);
    let work = || loop {
        let piece = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match piece {
            Some((s, d)) => ckpt_storage::copy_streaming(d, s),
            None => break,
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..threads {
            if let Err(e) = std::thread::Builder::new()
                .name("ckpt-capture".into())
                .spawn_scoped(scope, work)
            {
                tracing::debug!(error = %e, "capture copies on fewer threads: none could be started");
                break;
            }
        }
        work();
    });
}

/// A copy of `tensors` for a capture: every array copied by [`parallel_copy`].
///
/// # Errors
/// Cannot fail for tensors that were valid (the copies are rebuilt with [`Tensor::new`], which
/// checks them again).
fn copy_tensors(tensors: &TensorMap) -> ckpt_core::Result<TensorMap> {
    let srcs: Vec<&[u8]> = tensors.values().map(Tensor::as_bytes).collect();
    let copies = parallel_copy(&srcs);
    let mut out = TensorMap::new();
    for ((name, t), data) in tensors.iter().zip(copies) {
        out.insert(name.clone(), Tensor::new(t.dtype(), t.shape(), data)?);
    }
    Ok(out)
}

/// Per-save options: metrics, custom metadata, force (the other arguments of Orbax `save`, spec §3.5).
#[derive(Debug, Clone, Default)]
pub struct SaveOptions {
    /// The step's metrics, e.g. `{"val_loss": 0.31}`: written to `<step>/metrics/metrics` (always,
    /// unless `prevent_write_metrics`; deviation D2) and used by `best_metric` retention.
    ///
    /// Values that rank must be finite numbers. A NaN or ±infinite `f64` cannot be held by
    /// `serde_json::Value`: it becomes `null` (`Value::from(f64::NAN)`, `json!(f64::NAN)`), is
    /// written as `null`, and ranks below every number (never the best step, the first
    /// `BestN` drops). `save` logs a `tracing` warning for each such metric, once, naming the
    /// step and the metric; retention that deletes a step without a usable value of the metric it
    /// ranks by (missing, `null`) logs that deletion at WARN rather than INFO.
    pub metrics: Option<Metrics>,
    /// Stored in the step metadata's `custom_metadata`.
    pub custom_metadata: Option<Metrics>,
    /// Save even if the save decision says no (never on a read-only manager, deviation D3).
    pub force: bool,
}

impl SaveOptions {
    /// Sets the metrics (see [`SaveOptions::metrics`]: a NaN becomes `null`, with a warning).
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Sets the custom metadata.
    pub fn custom_metadata(mut self, custom: Metrics) -> Self {
        self.custom_metadata = Some(custom);
        self
    }

    /// Sets `force`.
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }
}
