//! Reading a step: its metrics, metadata and items (`restore` and its variants).

use super::CheckpointManager;
use crate::Restored;
use ckpt_core::{Error, ErrorKind, Metrics, Result, RootMetadata, Step, StepMetadata};
use std::collections::BTreeMap;

impl CheckpointManager {
    /// The metrics stored with `step` (`<step>/metrics/metrics`), or `None` when it has none.
    ///
    /// # Errors
    /// `NotFound` when there is no such step directory; `Corrupt` when the file is broken.
    pub fn metrics(&self, step: Step) -> Result<Option<Metrics>> {
        self.settle_if_in_flight(step);
        self.root.metrics(step)
    }

    /// The root metadata (spec §1.6): `_ROOT_METADATA`, else the legacy `metadata/metadata`, else
    /// (no `metadata/` directory) empty — or, on a read-only manager, what was given as
    /// `root_metadata`.
    ///
    /// # Errors
    /// `NotFound` when `metadata/` exists but holds neither file; `Corrupt` when the file is broken.
    pub fn metadata(&self) -> Result<RootMetadata> {
        self.root.root_metadata()
    }

    /// The step metadata of `step` (spec §5.5), its `metrics` filled from the metrics file. A step
    /// without a metadata file gets empty metadata.
    ///
    /// # Errors
    /// `NotFound` when there is no such step directory; `Corrupt` when a file is broken.
    pub fn step_metadata(&self, step: Step) -> Result<StepMetadata> {
        self.settle_if_in_flight(step);
        self.root.step_metadata(step)
    }

    /// What each item's handler tells about it without restoring (spec §5.5 `item_metadata`): one
    /// entry per item directory, `None` when its handler has nothing to say or cannot be found.
    ///
    /// # Errors
    /// `NotFound` when there is no such step; `Corrupt` when a handler finds a broken file.
    pub fn item_metadata(&self, step: Step) -> Result<BTreeMap<String, Option<serde_json::Value>>> {
        self.settle_if_in_flight(step);
        self.root.item_metadata(step)
    }

    /// The handler type string recorded for each item of a step (empty when the step has no
    /// readable metadata).
    ///
    /// # Errors
    /// `NotFound` when there is no such step.
    pub fn item_handlers(&self, step: Step) -> Result<BTreeMap<String, String>> {
        self.settle_if_in_flight(step);
        self.root.item_handlers(step)
    }

    /// The items of `step`: its item directories (the `metrics` item included when the step has
    /// metrics), sorted; what [`CheckpointManager::restore`] with no names restores.
    ///
    /// # Errors
    /// `NotFound` when there is no such step directory; `Storage` when it cannot be listed.
    pub fn item_names(&self, step: Step) -> Result<Vec<String>> {
        self.settle_if_in_flight(step);
        self.root.item_names(step)
    }

    // ----------------------------------------------------------------------------- restore

    /// Restores every item of `step` (the latest committed step when `None`), as Orbax `restore`
    /// with no args (spec §5.4, §6.4): each item's handler is the one registered for it, else the
    /// one named in the step metadata, found by type string in this process. Waits for a save in
    /// flight first (its failure is reported later, by `save`, `wait_until_finished` or `close`).
    ///
    /// # Errors
    /// `NotFound` when there are no steps or no such step directory; `InvalidArgument` when the
    /// step directory is not committed or holds no items; `Unsupported` naming the item and the
    /// handler when an item's format cannot be read (e.g. Orbax tensorstore arrays); `Corrupt`
    /// when a file is broken. A failed restore changes nothing (D6).
    pub fn restore(&self, step: Option<Step>) -> Result<Restored> {
        self.restore_impl(step, None)
    }

    /// Restores only the items `names` of `step` (the latest when `None`).
    ///
    /// # Errors
    /// As [`CheckpointManager::restore`]; `NotFound` naming the item and the available items when
    /// an asked item is not in the step.
    pub fn restore_items(&self, step: Option<Step>, names: &[&str]) -> Result<Restored> {
        self.restore_impl(step, Some(names))
    }

    /// Restores only the leaves `leaves` (Orbax param names: the key path joined by `.`, e.g.
    /// `params.dense.kernel`) of pytree item `item` of `step` (the latest when `None`), reading
    /// only their chunks; the other leaves are left out of the tree.
    ///
    /// # Errors
    /// As [`CheckpointManager::restore_items`]; `InvalidArgument` when the item is not a pytree
    /// item or a leaf is not in it.
    pub fn restore_leaves(
        &self,
        step: Option<Step>,
        item: &str,
        leaves: &[&str],
    ) -> Result<ckpt_handlers::PyTree> {
        self.settle_quietly();
        let step = self.step_to_restore(step)?;
        let _loading = self.loading();
        let only: std::collections::BTreeSet<String> =
            leaves.iter().map(|l| l.to_string()).collect();
        let restored = self.root.restore(
            step,
            Some(&[item]),
            Some(crate::open_root::PyTreeRestore::Leaves(&only)),
        )?;
        match restored.into_items().remove(item) {
            Some(ckpt_handlers::RestoredItem::PyTree(t)) => Ok(t),
            _ => Err(Error::invalid_argument(format!(
                "item {item:?} of step {step} is not a pytree item"
            ))),
        }
    }

    /// Restores pytree item `item` of `step` (the latest when `None`) into `tree`, a pytree the
    /// caller owns (e.g. the model's parameters, already allocated): every array and scalar
    /// leaf of `tree` (dtype and shape as saved) is filled in place from the item's leaf of the
    /// same param name, its chunks decoded straight into the leaf's memory, so the restore needs
    /// no fresh memory for the arrays; string leaves are replaced; the item's other leaves are
    /// not read. Checksums are verified as by [`CheckpointManager::restore`] (a ckpt-written
    /// file is checked as it streams, before the call returns `Ok`). Returns the step restored.
    /// ckpt's own (Orbax restores into new arrays).
    ///
    /// # Errors
    /// As [`CheckpointManager::restore_items`]; `InvalidArgument` when the item is not a pytree
    /// item, or naming the leaf when `tree` has a leaf the item lacks or whose dtype, shape or
    /// kind differs. After an error, leaves may hold part of the step's data.
    pub fn restore_pytree_into(
        &self,
        step: Option<Step>,
        item: &str,
        tree: &mut ckpt_handlers::PyTree,
    ) -> Result<Step> {
        self.settle_quietly();
        let step = self.step_to_restore(step)?;
        let _loading = self.loading();
        self.root.restore(
            step,
            Some(&[item]),
            Some(crate::open_root::PyTreeRestore::Into(tree)),
        )?;
        Ok(step)
    }

    /// Restores tensors item `item` of `step` (the latest committed step when `None`) into
    /// `tensors`, tensors the caller owns (e.g. the model's parameters, already allocated, as
    /// they were saved with [`crate::Composite::tensors`]): each `(name, tensor)` is filled in
    /// place from the item's tensor of that name, read straight from the file into the
    /// tensor's memory, so the restore needs no fresh memory. The item's tensors that
    /// `tensors` does not name are not kept. Checksums are verified as by
    /// [`CheckpointManager::restore`]: the file is checked as it streams, and the call returns
    /// `Ok` only once every byte read was verified. Returns the step restored. ckpt's own
    /// (Orbax restores into new arrays only).
    ///
    /// `tensors` is anything that yields `(name, &mut Tensor)` pairs: `&mut TensorMap`, or
    /// `[("w", &mut w), ("b", &mut b)]`. With
    /// [`single_host_load_and_broadcast`](crate::CheckpointManagerOptions::single_host_load_and_broadcast)
    /// in a job, as every restore, the primary alone reads the file and the other processes get
    /// its bytes through the coordinator (a collective call; meant for small items).
    ///
    /// # Errors
    /// As [`CheckpointManager::restore_items`] (`NotFound` naming the item when the step has no
    /// such item); `InvalidArgument` when the item is not a `ckpt.tensors` item, or naming the
    /// tensor when the item has no tensor of that name, a name is given twice, or the dtype or
    /// shape differs from the item's (nothing is read into any tensor then); `Corrupt` naming
    /// the file when it does not match its checksum or is not valid safetensors. After a
    /// `Corrupt` or storage error, tensors may hold part of the step's data.
    pub fn restore_tensors_into<'t, K, I>(
        &self,
        step: Option<Step>,
        item: &str,
        tensors: I,
    ) -> Result<Step>
    where
        K: AsRef<str>,
        I: IntoIterator<Item = (K, &'t mut ckpt_handlers::Tensor)>,
    {
        let mut pairs: Vec<(K, &'t mut ckpt_handlers::Tensor)> = tensors.into_iter().collect();
        let mut targets: Vec<(&str, &mut ckpt_handlers::Tensor)> = pairs
            .iter_mut()
            .map(|(k, t)| (<K as AsRef<str>>::as_ref(k), &mut **t))
            .collect();
        self.settle_quietly();
        let step = self.step_to_restore(step)?;
        let _loading = self.loading();
        self.root.restore_tensors_into(step, item, &mut targets)?;
        Ok(step)
    }

    /// Restores tensors item `item` of `step` (the latest committed step when `None`) by
    /// mapping its safetensors file read-only into memory: the tensors are served from the
    /// mapping ([`ckpt_handlers::MappedTensors`]), without copying them and without fresh
    /// memory. Opt-in; a local-disk root only. Checksums are verified as by
    /// [`CheckpointManager::restore`]: the whole file is checked over the mapping before this
    /// returns. Returns the step restored and the tensors. ckpt's own (Orbax has no mapped
    /// restore).
    ///
    /// **Caveat**: the file must not be truncated or rewritten while the returned tensors are
    /// alive: a truncated file kills the process (`SIGBUS`) when a tensor is read, a rewritten
    /// one changes the tensors after they were verified. ckpt never changes a committed step's
    /// files, and deleting the step (retention, [`CheckpointManager::delete`]) is harmless
    /// (the mapping keeps the file's data until it is dropped); the caveat is about other
    /// programs writing into the root.
    ///
    /// # Errors
    /// As [`CheckpointManager::restore_items`]; `Unsupported` when the root is not on the local
    /// file system (memory, object stores: restore into memory there), for a dtype ckpt
    /// cannot read, or on a manager with
    /// [`single_host_load_and_broadcast`](crate::CheckpointManagerOptions::single_host_load_and_broadcast)
    /// (a mapping cannot be broadcast; nothing is read); `InvalidArgument` when the item is not a `ckpt.tensors` item; `Corrupt`
    /// naming the file when it does not match its checksum or is not valid safetensors;
    /// `Storage` when it cannot be mapped.
    pub fn restore_tensors_mapped(
        &self,
        step: Option<Step>,
        item: &str,
    ) -> Result<(Step, ckpt_handlers::MappedTensors)> {
        if self.broadcast.is_some() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "a memory-mapped restore maps the file in this process, which \
                 single_host_load_and_broadcast forbids (only the primary reads the store): use \
                 restore_tensors_into, or a manager without that option",
            ));
        }
        self.settle_quietly();
        let step = self.step_to_restore(step)?;
        let tensors = self.root.restore_tensors_mapped(step, item)?;
        Ok((step, tensors))
    }

    /// `step`, or the latest committed step when `None`.
    pub(crate) fn step_to_restore(&self, step: Option<Step>) -> Result<Step> {
        match step {
            Some(s) => Ok(s),
            None => self.latest_step().ok_or_else(|| {
                Error::not_found("no committed steps to restore")
                    .with_path(self.root.store.location(""))
            }),
        }
    }

    pub(super) fn restore_impl(
        &self,
        step: Option<Step>,
        names: Option<&[&str]>,
    ) -> Result<Restored> {
        self.settle_quietly();
        let step = self.step_to_restore(step)?;
        let _loading = self.loading();
        self.root.restore(step, names, None)
    }

    /// With `single_host_load_and_broadcast` in a job: the reads until the guard is dropped
    /// come from the primary (see [`super::broadcast`]); `None` otherwise.
    pub(crate) fn loading(&self) -> Option<super::broadcast::Loading<'_>> {
        let (layer, job) = (self.broadcast.as_ref()?, self.job.as_ref()?);
        Some(layer.begin(job.op_name("load")))
    }
}
