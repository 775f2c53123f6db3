//! Arrays out of and into a checkpoint as one safetensors file (`ckpt export`, `ckpt import`):
//! the bridge for candle and burn users to JAX-trained weights, and back.
//!
//! Export takes a tensor-holding item — an Orbax pytree (`StandardSave`/`PyTreeSave`, any layout)
//! or a `ckpt.tensors` item — and writes every array under its key path joined by `.` (Orbax's
//! param names, e.g. `params.dense.kernel`), scalars as 0-d tensors. Import reads a safetensors
//! file and commits a new step holding it, as an Orbax pytree (nested dicts rebuilt from the
//! dotted names; Orbax restores it) or as a `ckpt.tensors` item.

use crate::{CheckpointManager, Composite, SaveOptions};
use ckpt_core::{Error, ErrorKind, Result, Step};
use ckpt_handlers::{KeyEntry, PyTree, RestoredItem, Tensor, TensorHandler, TensorMap};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// How `import_safetensors` stores the arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImportFormat {
    /// An Orbax `StandardSave` pytree item (OCDBT + zarr), nested dicts from the dotted names.
    #[default]
    Orbax,
    /// A `ckpt.tensors` item (one safetensors file), names as given.
    Ckpt,
}

/// The arrays of item `item` of `step` (or, when `item` is `None`, of the step's only
/// tensor-holding item), by name: a pytree's param names, or a tensors item's names.
///
/// # Errors
/// `NotFound` for a missing step or item; `InvalidArgument` when `item` is `None` and the step
/// has no or several tensor-holding items (the message lists them), or the item holds no arrays;
/// as [`CheckpointManager::restore_items`].
pub fn step_arrays(
    mngr: &CheckpointManager,
    step: Step,
    item: Option<&str>,
) -> Result<(String, TensorMap)> {
    let name = match item {
        Some(n) => n.to_string(),
        None => {
            let handlers = mngr.item_handlers(step)?;
            let candidates: Vec<String> = handlers
                .iter()
                .filter(|(_, h)| {
                    h.as_str() == ckpt_handlers::orbax_array::STANDARD_HANDLER
                        || h.as_str() == ckpt_handlers::orbax_array::PYTREE_HANDLER
                        || h.as_str() == "ckpt.tensors"
                })
                .map(|(n, _)| n.clone())
                .collect();
            match candidates.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(Error::invalid_argument(format!(
                        "step {step} has no tensor-holding item (items: {:?})",
                        handlers.keys().collect::<Vec<_>>()
                    )))
                }
                many => {
                    return Err(Error::invalid_argument(format!(
                    "step {step} has several tensor-holding items {many:?}: choose one with --item"
                )))
                }
            }
        }
    };
    let restored = mngr.restore_items(Some(step), &[name.as_str()])?;
    let map = match restored.into_items().remove(&name) {
        Some(RestoredItem::PyTree(tree)) => {
            let mut map = TensorMap::new();
            for (k, t) in tree.tensors() {
                map.insert(k, t.clone());
            }
            map
        }
        Some(RestoredItem::Tensors(map)) => map,
        Some(_) => {
            return Err(Error::invalid_argument(format!(
                "item {name:?} of step {step} holds no arrays"
            )))
        }
        None => {
            return Err(Error::not_found(format!(
                "item {name:?} was not restored from step {step}"
            )))
        }
    };
    Ok((name, map))
}

/// Writes `tensors` to `out` as one safetensors file, durably (written to `<out>.tmp`, fsynced,
/// renamed), calling `progress(bytes_written, total_bytes)` after each tensor.
///
/// # Errors
/// `InvalidArgument` when a name is `__metadata__`; `Unsupported` for a complex128 array
/// (safetensors has no such dtype); `Storage` when the file cannot be written.
pub fn write_safetensors(
    tensors: &TensorMap,
    out: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<()> {
    let (start, order) = TensorHandler::encode_parts(tensors)?;
    let total = start.len() as u64 + order.iter().map(|t| t.as_bytes().len() as u64).sum::<u64>();
    let io = |e: std::io::Error| {
        Error::new(
            ErrorKind::Storage,
            format!("cannot write {}", out.display()),
        )
        .with_source(e)
    };
    let tmp = out.with_extension("safetensors.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&start).map_err(io)?;
    let mut done = start.len() as u64;
    progress(done, total);
    for t in order {
        f.write_all(t.as_bytes()).map_err(io)?;
        done += t.as_bytes().len() as u64;
        progress(done, total);
    }
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, out).map_err(io)
}

/// Exports the arrays of `item` (see [`step_arrays`]) of `step` to the safetensors file `out`;
/// returns the item's name and the number of arrays written.
///
/// # Errors
/// As [`step_arrays`] and [`write_safetensors`].
pub fn export_safetensors(
    mngr: &CheckpointManager,
    step: Step,
    item: Option<&str>,
    out: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(String, usize)> {
    let (name, map) = step_arrays(mngr, step, item)?;
    write_safetensors(&map, out, progress)?;
    Ok((name, map.len()))
}

/// The pytree of dotted names: `params.dense.kernel` → `{"params": {"dense": {"kernel": …}}}`.
///
/// # Errors
/// `InvalidArgument` when a name is empty, has an empty part (`a..b`, `.a`), or is both a leaf
/// and a prefix of another (`a` and `a.b`).
pub fn tree_from_dotted(tensors: TensorMap) -> Result<PyTree> {
    let mut leaves = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        if name.split('.').any(str::is_empty) {
            return Err(Error::invalid_argument(format!(
                "tensor name {name:?} has an empty part between dots"
            )));
        }
        let path: Vec<KeyEntry> = name
            .split('.')
            .map(|p| KeyEntry::Key(p.to_string()))
            .collect();
        leaves.push((path, PyTree::Array(t)));
    }
    PyTree::from_leaves(leaves)
}

/// Reads the safetensors file `input` and commits it as item `item` of a new step `step` of
/// `mngr`'s root, in `format`; waits for the commit.
///
/// # Errors
/// `Corrupt` or `Unsupported` when `input` is not a safetensors file ckpt reads; `Storage` when
/// it cannot be read; `AlreadyExists` when the step is already committed; `InvalidArgument` as
/// [`tree_from_dotted`] or when the manager does not save the step (the reason is given); as
/// [`CheckpointManager::save_with_outcome`].
pub fn import_safetensors(
    mngr: &mut CheckpointManager,
    input: &Path,
    step: Step,
    item: &str,
    format: ImportFormat,
) -> Result<usize> {
    let bytes = std::fs::read(input).map_err(|e| {
        Error::new(
            ErrorKind::Storage,
            format!("cannot read {}", input.display()),
        )
        .with_source(e)
    })?;
    let tensors =
        TensorHandler::decode(&bytes).map_err(|e| e.prefixed(&format!("{}: ", input.display())))?;
    drop(bytes);
    if tensors.is_empty() {
        // Orbax cannot restore an item of no leaves ("Unable to uniquely reconstruct tree from
        // empty flattened list"): nothing to import is an error, not an unrestorable step.
        return Err(Error::invalid_argument(format!(
            "{} holds no tensors: nothing to import",
            input.display()
        )));
    }
    if mngr.all_steps().contains(&step) {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("step {step} is already committed in {}", mngr.directory()),
        ));
    }
    let n = tensors.len();
    let items = match format {
        ImportFormat::Orbax => Composite::new().pytree_owned(item, tree_from_dotted(tensors)?),
        ImportFormat::Ckpt => Composite::new().tensors_owned(item, tensors),
    };
    let outcome = mngr.save_with_outcome(step, items, SaveOptions::default().force(true))?;
    if !outcome.saved() {
        return Err(Error::invalid_argument(format!(
            "step {step} was not saved: {}",
            outcome.reason().unwrap_or_default()
        )));
    }
    mngr.wait_until_finished()?;
    Ok(n)
}

/// Every array of `tree` by param name, scalars as 0-d tensors (what export writes).
pub fn tree_tensors(tree: &PyTree) -> BTreeMap<String, Tensor> {
    tree.tensors()
        .into_iter()
        .map(|(k, t)| (k, t.clone()))
        .collect()
}
