//! One array leaf of an item: its zarr metadata read and checked, its chunks decoded into a new
//! tensor or into the caller's.

use super::source::{LeafSource, Source};
use super::zarr;
use crate::ocdbt;
use crate::{ItemDir, Tensor};
use ckpt_core::{Error, Result};

/// Arrays above this many bytes (16 MiB) are checked against their stored bytes before their
/// buffer is allocated.
const PLAUSIBILITY_CHECK_BYTES: u64 = 16 << 20;
/// Most bytes one stored zstd byte can decode to (a 128 KiB RLE block is 4 bytes).
const MAX_ZSTD_RATIO: u64 = 40_000;

/// Decodes the array `param` of the item into `tensor`, which must have its dtype and shape.
pub(super) fn read_array_into(
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

/// How errors name an array: its param name and where its zarr metadata is (a key of the
/// item's OCDBT database, or a file).
pub(super) fn array_what(
    dir: &ItemDir<'_>,
    source: &Source<'_>,
    param: &str,
    zarr3: bool,
) -> String {
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

pub(super) fn read_array(
    dir: &ItemDir<'_>,
    source: &Source<'_>,
    param: &str,
    zarr3: bool,
) -> Result<Tensor> {
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
    // Zeroed by the allocator (no page touched twice), huge pages advised for large arrays.
    let mut buf = ckpt_storage::try_zeroed_bytes(len)
        .ok_or_else(|| Error::corrupt(format!("{what}: {len} bytes cannot be allocated")))?;
    zarr::decode_array(&meta, &mut buf, &LeafSource { source, param }, &what)?;
    Tensor::new(meta.dtype, meta.shape.clone(), buf)
        .map_err(|e| Error::corrupt(format!("{what}: {}", e.message())))
}
