//! [`tree_metadata`]: what the handlers say about an item without reading its chunks.

use super::arrays::array_what;
use super::restore::read_metadata;
use super::source::Source;
use crate::pytree::{param_name, KeyEntry};
use crate::ItemDir;
use ckpt_core::Result;
use serde_json::{json, Value as Json};

/// What [`StandardHandler::metadata`](super::StandardHandler) says about an item without reading chunks: its layout, the
/// save's `custom_metadata`, and per leaf its param name (`key`), key path, value type and, for
/// arrays, dtype, shape, chunk shape and size in bytes.
///
/// # Errors
/// As [`restore_tree`](super::restore_tree), for `_METADATA`, the database's nodes and the zarr metadata.
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
