//! Restoring an Orbax array item: as a new [`PyTree`] ([`restore_tree`]) or into the caller's
//! ([`restore_tree_into`]).

use super::arrays::{read_array, read_array_into};
use super::metadata::{self, LeafMetadata, TreeMetadata, METADATA_FILE};
use super::parallel::in_parallel;
use super::source::Source;
use super::STRINGS_FILE;
use crate::pytree::{param_name, PyTree};
use crate::{ItemDir, Tensor};
use ckpt_core::{Error, ErrorKind, Result};
use std::collections::{BTreeMap, BTreeSet};

pub(super) fn read_metadata(dir: &ItemDir<'_>) -> Result<TreeMetadata> {
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
