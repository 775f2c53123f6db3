//! Arrays split across the processes of a job (issue 15): each process saves its shard of a
//! global array ([`ArrayShard`], [`Composite::array_shard`]) as part of a multi-process save, and
//! any process restores any box of the array ([`CheckpointManager::restore_array_slice`]) —
//! the whole array on one process, or the slices of a different process count than the save
//! used — reading only the bytes of the shards that overlap it.
//!
//! Layout: the shard of process `i` of array `a` is the tensors item `a.shard-<i>` (one
//! safetensors file, ckpt's `ckpt.tensors` handler) holding three tensors: `data` (the shard,
//! C order), `global_shape` and `offset` (`uint64`, one per dimension: where the shard lies in
//! the global array). Any safetensors reader reads them. ckpt's own format.
//!
//! Orbax's own layout for the same thing — shards of the leaves of ONE pytree item, each process
//! writing `<item>/ocdbt.process_<i>/`, the primary merging — is [`Composite::pytree_shard`]
//! (readable by Orbax); [`CheckpointManager::restore_leaf_slice`] reads any box of such a leaf.

use crate::{CheckpointManager, Composite};
use ckpt_core::{Error, Result, Step};
use ckpt_handlers::{DType, Tensor, TensorHandler, TensorMap};

/// The separator between an array's name and the process index in a shard's item name.
pub const SHARD_ITEM_INFIX: &str = ".shard-";

/// One process's shard of a global array: the global shape, where the shard starts in it (one
/// offset per dimension, in elements), and the shard's data (its shape is the shard's extent).
///
/// Source: the role of a `jax.Array`'s addressable shard (global shape, index) when Orbax saves
/// it from several processes; ckpt's own format (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayShard {
    global_shape: Vec<usize>,
    offset: Vec<usize>,
    data: Tensor,
}

impl ArrayShard {
    /// The shard `data` lying at `offset` in an array of `global_shape`.
    ///
    /// # Errors
    /// `InvalidArgument` when the three disagree in rank or the shard does not lie inside the
    /// global array.
    pub fn new(global_shape: Vec<usize>, offset: Vec<usize>, data: Tensor) -> Result<ArrayShard> {
        check_box(&global_shape, &offset, data.shape(), "the shard")?;
        Ok(ArrayShard {
            global_shape,
            offset,
            data,
        })
    }

    /// The global array's shape.
    pub fn global_shape(&self) -> &[usize] {
        &self.global_shape
    }

    /// Where the shard starts in the global array (elements, per dimension).
    pub fn offset(&self) -> &[usize] {
        &self.offset
    }

    /// The shard's data.
    pub fn data(&self) -> &Tensor {
        &self.data
    }

    /// The item name of process `process`'s shard of `array`: `<array>.shard-<process>`.
    pub fn item_name(array: &str, process: usize) -> String {
        format!("{array}{SHARD_ITEM_INFIX}{process}")
    }

    /// The tensors the shard is saved as (`data`, `global_shape`, `offset`).
    pub fn to_tensors(&self) -> TensorMap {
        let as_u64 = |v: &[usize]| {
            let v: Vec<u64> = v.iter().map(|&x| x as u64).collect();
            Tensor::from_slice([v.len()], &v)
        };
        let mut m = TensorMap::new();
        m.insert("data".into(), self.data.clone());
        // A 1-d u64 tensor of the right length always builds.
        if let Ok(t) = as_u64(&self.global_shape) {
            m.insert("global_shape".into(), t);
        }
        if let Ok(t) = as_u64(&self.offset) {
            m.insert("offset".into(), t);
        }
        m
    }
}

impl<'a> Composite<'a> {
    /// Adds process `process`'s shard of the global array `array` as the item
    /// `<array>.shard-<process>` (see [`crate::sharded`]); in a multi-process save each process
    /// adds its own shard. Copies the shard's data.
    pub fn array_shard(self, array: &str, process: usize, shard: &ArrayShard) -> Self {
        self.tensors_owned(ArrayShard::item_name(array, process), shard.to_tensors())
    }
}

/// Checks that the box `offset`, `shape` lies in `global`.
fn check_box(global: &[usize], offset: &[usize], shape: &[usize], what: &str) -> Result<()> {
    if offset.len() != global.len() || shape.len() != global.len() {
        return Err(Error::invalid_argument(format!(
            "{what}: global shape {global:?}, offset {offset:?} and shape {shape:?} differ in rank"
        )));
    }
    for d in 0..global.len() {
        let end = offset[d].checked_add(shape[d]);
        if end.is_none_or(|e| e > global[d]) {
            return Err(Error::invalid_argument(format!(
                "{what}: offset {offset:?} + shape {shape:?} lies outside the global shape \
                 {global:?} (dimension {d})"
            )));
        }
    }
    Ok(())
}

/// The safetensors dtype names ckpt writes, and their [`DType`].
const DTYPES: [(&str, DType); 14] = [
    ("F16", DType::F16),
    ("BF16", DType::BF16),
    ("F32", DType::F32),
    ("F64", DType::F64),
    ("I8", DType::I8),
    ("I16", DType::I16),
    ("I32", DType::I32),
    ("I64", DType::I64),
    ("U8", DType::U8),
    ("U16", DType::U16),
    ("U32", DType::U32),
    ("U64", DType::U64),
    ("BOOL", DType::Bool),
    ("C64", DType::C64),
];

/// One tensor of a shard file's header.
struct Entry {
    dtype: DType,
    shape: Vec<usize>,
    /// Byte range in the file.
    start: u64,
    end: u64,
}

/// A shard as found in a step: its file, box and data tensor.
struct FoundShard {
    file: String,
    global: Vec<usize>,
    offset: Vec<usize>,
    data: Entry,
}

impl CheckpointManager {
    /// The box of the sharded array `array` (saved with [`Composite::array_shard`], by any
    /// number of processes) that starts at `offset` and has `shape`, from `step` (the latest
    /// committed step when `None`): the whole array on one process (offset zeros, the global
    /// shape), or any other slice — e.g. the half each of 2 processes holds after a save by 4.
    /// Reads each shard file's header and, of the shards that overlap the box, only the bytes
    /// inside it (one ranged read per contiguous run).
    ///
    /// Deviation: a ranged read is not checked against the step's checksum manifest (which
    /// holds whole-file checksums); `verify_step` checks the files.
    ///
    /// # Errors
    /// `NotFound` when there is no such step or it holds no shard of `array`;
    /// `InvalidArgument` when the box does not lie in the array; `Corrupt` when the shards
    /// disagree on the global shape or dtype, a shard file is not what
    /// [`ArrayShard::to_tensors`] writes, or the shards leave part of the box uncovered;
    /// `Storage` from the store.
    pub fn restore_array_slice(
        &self,
        step: Option<Step>,
        array: &str,
        offset: &[usize],
        shape: &[usize],
    ) -> Result<Tensor> {
        self.settle_quietly();
        let step = self.step_to_restore(step)?;
        let _loading = self.loading();
        let root = &self.root;
        let dir = root.existing_step_dir(step)?;
        let prefix = format!("{array}{SHARD_ITEM_INFIX}");
        let items: Vec<String> = root
            .item_names(step)?
            .into_iter()
            .filter(|n| {
                n.strip_prefix(&prefix)
                    .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
            })
            .collect();
        if items.is_empty() {
            return Err(Error::not_found(format!(
                "step {step} holds no shard of array {array:?} (items {array}.shard-<i>)"
            ))
            .with_step(step));
        }
        let store = root.store.as_ref();
        let mut shards = Vec::with_capacity(items.len());
        for item in &items {
            let file = format!("{dir}/{item}/{}", TensorHandler::FILENAME);
            shards.push(read_shard(store, file).map_err(|e| e.with_step(step))?);
        }
        let global = shards[0].global.clone();
        let dtype = shards[0].data.dtype;
        if let Some(s) = shards
            .iter()
            .find(|s| s.global != global || s.data.dtype != dtype)
        {
            return Err(Error::corrupt(format!(
                "the shards of array {array:?} disagree: {} is a {} shard of {:?}, another a {} \
                 shard of {global:?}",
                s.file,
                s.data.dtype.name(),
                s.global,
                dtype.name()
            ))
            .with_step(step));
        }
        check_box(&global, offset, shape, "the requested slice").map_err(|e| e.with_step(step))?;
        let esize = dtype.size_in_bytes();
        let total = shape
            .iter()
            .try_fold(esize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| Error::invalid_argument("the requested slice is too large"))?;
        let mut out = ckpt_storage::try_zeroed_bytes(total).ok_or_else(|| {
            Error::invalid_argument(format!(
                "the requested slice needs {total} bytes, which cannot be allocated"
            ))
        })?;
        let mut covered = 0usize;
        for s in &shards {
            covered += copy_overlap(store, s, offset, shape, esize, &mut out)
                .map_err(|e| e.with_step(step))?;
        }
        if covered != total / esize.max(1) {
            return Err(Error::corrupt(format!(
                "the shards of array {array:?} cover {covered} of the {} elements of the slice at \
                 {offset:?} of shape {shape:?} (missing or overlapping shards)",
                total / esize.max(1)
            ))
            .with_step(step));
        }
        Tensor::new(dtype, shape.to_vec(), out)
    }
}

impl CheckpointManager {
    /// The box of leaf `leaf` (its param name, the key path joined by `.`) of pytree item `item`
    /// of `step` (the latest committed step when `None`) that starts at `offset` and has `shape`
    /// (elements per dimension): e.g. the whole array on one process, or the half each of 2
    /// processes holds after a save by 4 with [`Composite::pytree_shard`]. Reads only the zarr
    /// chunks that overlap the box ([`ckpt_handlers::orbax_array::restore_leaf_box`]), from any
    /// Orbax array item (written by ckpt or by Orbax, one process or several). ckpt's own (Orbax
    /// restores slices through the sharding in `ArrayRestoreArgs`).
    ///
    /// Deviation: as [`CheckpointManager::restore_array_slice`], ranged reads are not checked
    /// against the step's checksum manifest; `verify_step` checks the files.
    ///
    /// # Errors
    /// `NotFound` when there is no such step, item or leaf, or a chunk is missing;
    /// `InvalidArgument` when the box does not lie inside the array; `Corrupt` when a chunk or
    /// the item's database does not decode; `Storage` from the store.
    pub fn restore_leaf_slice(
        &self,
        step: Option<Step>,
        item: &str,
        leaf: &str,
        offset: &[usize],
        shape: &[usize],
    ) -> Result<Tensor> {
        self.settle_quietly();
        let step = self.step_to_restore(step)?;
        let _loading = self.loading();
        let root = &self.root;
        ckpt_core::validate_item_name(item).map_err(|e| e.with_step(step))?;
        let dir = root.existing_step_dir(step)?;
        if !root.item_names(step)?.iter().any(|n| n == item) {
            return Err(
                Error::not_found(format!("step {step} has no item {item:?}")).with_step(step),
            );
        }
        let path = format!("{dir}/{item}");
        ckpt_handlers::orbax_array::restore_leaf_box(
            &ckpt_handlers::ItemDir::new(root.store.as_ref(), &path),
            leaf,
            offset,
            shape,
        )
        .map_err(|e| e.with_step(step))
    }
}

/// Reads a shard file's header and its `global_shape` and `offset` tensors.
fn read_shard(store: &dyn ckpt_storage::Store, file: String) -> Result<FoundShard> {
    let bad = |what: &str| {
        Error::corrupt(format!("not an array shard file: {what}")).with_path(store.location(&file))
    };
    let len = store.read_range(&file, 0..8)?;
    let len = u64::from_le_bytes(len.try_into().map_err(|_| bad("shorter than 8 bytes"))?);
    if len > 100_000_000 {
        return Err(bad("its header is larger than 100 MB"));
    }
    let header = store.read_range(&file, 8..8 + len)?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| bad(&format!("header: {e}")))?;
    let entry = |name: &str| -> Result<Entry> {
        let e = header
            .get(name)
            .ok_or_else(|| bad(&format!("no tensor {name:?}")))?;
        let dtype_name = e.get("dtype").and_then(|d| d.as_str()).unwrap_or("");
        let dtype = DTYPES
            .iter()
            .find(|(n, _)| *n == dtype_name)
            .map(|(_, d)| *d)
            .ok_or_else(|| bad(&format!("tensor {name:?} has dtype {dtype_name:?}")))?;
        let shape: Vec<usize> = e
            .get("shape")
            .cloned()
            .and_then(|s| serde_json::from_value(s).ok())
            .ok_or_else(|| bad(&format!("tensor {name:?} has no shape")))?;
        let offsets: [u64; 2] = e
            .get("data_offsets")
            .cloned()
            .and_then(|s| serde_json::from_value(s).ok())
            .ok_or_else(|| bad(&format!("tensor {name:?} has no data offsets")))?;
        let n = shape
            .iter()
            .try_fold(dtype.size_in_bytes() as u64, |a, &d| {
                a.checked_mul(d as u64)
            });
        if offsets[0] > offsets[1] || n != Some(offsets[1] - offsets[0]) {
            return Err(bad(&format!("tensor {name:?}: data offsets {offsets:?}")));
        }
        let base = 8 + len;
        Ok(Entry {
            dtype,
            shape,
            start: base + offsets[0],
            end: base + offsets[1],
        })
    };
    let read_u64s = |name: &str| -> Result<Vec<usize>> {
        let e = entry(name)?;
        if e.dtype != DType::U64 || e.shape.len() != 1 {
            return Err(bad(&format!("{name:?} is not a 1-d uint64 tensor")));
        }
        let bytes = store.read_range(&file, e.start..e.end)?;
        bytes
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                usize::try_from(u64::from_le_bytes(b)).map_err(|_| bad("a dimension is too large"))
            })
            .collect()
    };
    let global = read_u64s("global_shape")?;
    let offset = read_u64s("offset")?;
    let data = entry("data")?;
    check_box(&global, &offset, &data.shape, "the shard").map_err(|e| bad(e.message()))?;
    Ok(FoundShard {
        file,
        global,
        offset,
        data,
    })
}

/// Copies the part of shard `s` inside the box (`offset`, `shape`) into `out` (the box, C
/// order) with ranged reads of contiguous runs; the number of elements copied.
fn copy_overlap(
    store: &dyn ckpt_storage::Store,
    s: &FoundShard,
    offset: &[usize],
    shape: &[usize],
    esize: usize,
    out: &mut [u8],
) -> Result<usize> {
    let rank = shape.len();
    let local = &s.data.shape;
    let mut lo = vec![0usize; rank];
    let mut ext = vec![0usize; rank];
    for d in 0..rank {
        let a = offset[d].max(s.offset[d]);
        let b = (offset[d] + shape[d]).min(s.offset[d] + local[d]);
        if a >= b {
            return Ok(0);
        }
        lo[d] = a;
        ext[d] = b - a;
    }
    if rank == 0 {
        let bytes = store.read_range(&s.file, s.data.start..s.data.end)?;
        out[..esize].copy_from_slice(&bytes);
        return Ok(1);
    }
    // The run: the dimensions from `first` on, where every later dimension is whole in the
    // overlap, the shard and the box, so one read covers them.
    let mut first = rank - 1;
    while first > 0 && ext[first] == local[first] && ext[first] == shape[first] {
        first -= 1;
    }
    let run: usize = ext[first..].iter().product();
    let strides = |dims: &[usize]| {
        let mut st = vec![1usize; rank];
        for d in (0..rank - 1).rev() {
            st[d] = st[d + 1] * dims[d + 1];
        }
        st
    };
    let (src_st, dst_st) = (strides(local), strides(shape));
    // Iterate over the index tuples of the dimensions before `first` (the outer runs).
    let outer: usize = ext[..first].iter().product();
    let mut idx = vec![0usize; first];
    for _ in 0..outer {
        let (mut src, mut dst) = (0usize, 0usize);
        for d in 0..rank {
            let i = if d < first { lo[d] + idx[d] } else { lo[d] };
            src += (i - s.offset[d]) * src_st[d];
            dst += (i - offset[d]) * dst_st[d];
        }
        let start = s.data.start + (src * esize) as u64;
        let bytes = store.read_range(&s.file, start..start + (run * esize) as u64)?;
        out[dst * esize..(dst + run) * esize].copy_from_slice(&bytes);
        for d in (0..first).rev() {
            idx[d] += 1;
            if idx[d] < ext[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(outer * run)
}
