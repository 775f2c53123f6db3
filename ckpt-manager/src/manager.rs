//! `CheckpointManager`: the public API.

use crate::composite::Captured;
use crate::open_root::OpenRoot;
use crate::options::{CheckpointManagerBuilder, CheckpointManagerOptions, RootSpec};
use crate::save::{self, Fence, Phase, PhaseCell, SaveJob, Staged};
use crate::RetentionDecision;
use crate::{Composite, Restored, SaveOptions};
use ckpt_core::{
    CheckpointInfo, Error, ErrorKind, Metrics, Result, RootMetadata, Step, StepMetadata,
};
use ckpt_policy::{DecisionContext, PreservationContext, PreservationPolicy, Verdict};
use ckpt_storage::{AtomicityMode, Store};
use std::collections::BTreeMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Manages a series of checkpoints in one root: decides when to save, writes and commits steps,
/// keeps what the preservation policy keeps, and restores (as Orbax `CheckpointManager`, spec §5).
///
/// Saves are asynchronous by default (`enable_async_checkpointing`, spec §5.8): `save` returns
/// once the items are captured, and the write, commit, retention and deletions run on a background
/// thread; at most one save is in flight and the next `save` waits for it.
///
/// Deviations from Orbax 0.12.8 (docs/deviations.md): `all_steps` is ascending and lists committed steps
/// only, and `latest_step` is the largest committed step (D1); metrics given to `save` are always
/// written (D2); a forced save or a delete on a read-only manager is a `ReadOnly` error (D3); zero
/// intervals are rejected when the manager is built (D4); metrics lacking the best metric are
/// refused before anything is written (D5); a failed restore changes nothing (D6); the step prefix
/// is matched literally (D7); a failed background save never deletes anything for it.
///
/// One writer per root; the manager itself is not meant to be shared between threads for writing
/// (`&mut self`).
#[derive(Debug)]
pub struct CheckpointManager {
    root: Arc<OpenRoot>,
    in_flight: Mutex<Option<InFlight>>,
    pending_error: Mutex<Option<Error>>,
}

/// A save running on the background thread.
#[derive(Debug)]
struct InFlight {
    info: CheckpointInfo,
    done: mpsc::Receiver<Result<()>>,
    handle: JoinHandle<()>,
    phase: PhaseCell,
    started: Instant,
    /// Abandoned by a `Timeout` or not; an abandoned save stays here until its thread stops.
    fence: Arc<Fence>,
}

impl InFlight {
    /// Whether the save has finished (committed and retention run, or failed): its result is
    /// then sent or about to be. The thread itself may still be freeing the captured items.
    fn is_done(&self) -> bool {
        *lock(&self.phase) == Phase::Done || self.handle.is_finished()
    }
}

/// What a call of [`CheckpointManager::save_with_outcome`] did, and why when it did not save
/// (issue 11, item 10; Orbax's `save` returns a bare `False`, Orbax issue 527).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaveOutcome {
    /// The step is saved (or, asynchronously, being saved).
    Saved,
    /// Not saved: the manager is read-only (and the save was not forced).
    ReadOnly,
    /// Not saved: the step is not above the latest step, committed or in flight (spec §3.4).
    NotAboveLatest {
        /// The latest step.
        latest: Step,
    },
    /// Not saved: the save decision policy said no for this step.
    DeclinedByPolicy {
        /// The policy, as its `Debug` form.
        policy: String,
    },
}

impl SaveOutcome {
    /// Whether the step was saved.
    pub fn saved(&self) -> bool {
        *self == SaveOutcome::Saved
    }

    /// Why the step was not saved, in words (`None` when it was).
    pub fn reason(&self) -> Option<String> {
        match self {
            SaveOutcome::Saved => None,
            SaveOutcome::ReadOnly => Some("the manager is read-only".to_string()),
            SaveOutcome::NotAboveLatest { latest } => Some(format!(
                "the step is not above the latest step {latest} (a forced save saves it anyway)"
            )),
            SaveOutcome::DeclinedByPolicy { policy } => {
                Some(format!("the save decision policy {policy} said no"))
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The listing, locked, with the save in flight put in at `added` for a save decision; taken out
/// again when dropped (also if the policy panics).
struct DecisionView<'a> {
    state: MutexGuard<'a, crate::open_root::State>,
    added: Option<usize>,
}

impl Drop for DecisionView<'_> {
    fn drop(&mut self) {
        if let Some(pos) = self.added.take() {
            self.state.checkpoints.remove(pos);
        }
    }
}

impl CheckpointManager {
    /// A builder for a manager of the root at `root`: a local path, `file:///abs/path` or
    /// `memory://`.
    pub fn builder(root: impl Into<String>) -> CheckpointManagerBuilder {
        CheckpointManagerBuilder::new(RootSpec::Uri(root.into()))
    }

    /// A builder for a manager of the root of `store`.
    pub fn builder_with_store(store: Arc<dyn Store>) -> CheckpointManagerBuilder {
        CheckpointManagerBuilder::new(RootSpec::Store(store))
    }

    /// Opens the root at `root` (a local path, `file:///…`, `memory://`) with `options`.
    ///
    /// # Errors
    /// `InvalidArgument` for an unknown URI scheme or a root that is a file; otherwise as
    /// [`CheckpointManager::with_store`].
    pub fn open(root: &str, options: CheckpointManagerOptions) -> Result<Self> {
        // Retries come from the manager's own policy (OpenRoot::open), not from `open`'s default.
        let store = ckpt_storage::open_with_retries(root, None)?;
        Self::with_store(store, options)
    }

    /// Opens the root of `store` with `options` (spec §5.2): validates the options, builds the
    /// policies, creates the root (`create`), removes tmp directories (`cleanup_tmp_directories`),
    /// lists the committed steps with their times and metrics, and writes the root metadata if it
    /// was given and the root has none. Opening a root for reading changes no file in it.
    ///
    /// # Errors
    /// `InvalidConfig` for options that cannot work (see [`CheckpointManagerOptions::validate`]),
    /// or (a writer) when the preservation policy ranks by a metric none of the root's steps has
    /// while some have metrics (unless [`CheckpointManagerOptions::allow_missing_best_metric`]);
    /// `InvalidArgument` when the root is a file; `Storage` when the store fails.
    pub fn with_store(store: Arc<dyn Store>, options: CheckpointManagerOptions) -> Result<Self> {
        Ok(CheckpointManager {
            root: Arc::new(OpenRoot::open(store, options)?),
            in_flight: Mutex::new(None),
            pending_error: Mutex::new(None),
        })
    }

    // ----------------------------------------------------------------------------- queries

    /// The committed steps, ascending (deviation D1: Orbax keeps insertion order and also lists
    /// a save still in flight).
    pub fn all_steps(&self) -> Vec<Step> {
        self.root
            .state()
            .checkpoints
            .iter()
            .map(|c| c.step)
            .collect()
    }

    /// The committed checkpoints with their times and metrics, ascending by step.
    pub fn checkpoints(&self) -> Vec<CheckpointInfo> {
        self.root.state().checkpoints.clone()
    }

    /// The largest committed step, or `None` (deviation D1: Orbax returns the step saved last).
    pub fn latest_step(&self) -> Option<Step> {
        self.root.state().checkpoints.last().map(|c| c.step)
    }

    /// The best committed step by `best_metric` (ties: the higher step), or the latest step when
    /// no `best_metric` is set; `None` when no listed checkpoint has a usable value (spec §5.3).
    pub fn best_step(&self) -> Option<Step> {
        let o = &self.root.options;
        match &o.best_metric {
            None => self.latest_step(),
            Some(metric) => {
                ckpt_policy::best_step(&self.root.state().checkpoints, metric, o.best_mode)
            }
        }
    }

    /// The root, as a local path or URI.
    pub fn directory(&self) -> String {
        self.root.store.location("")
    }

    /// The store holding the root.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.root.store
    }

    /// The options in effect (after the read-only rewrites of spec §5.1).
    pub fn options(&self) -> &CheckpointManagerOptions {
        &self.root.options
    }

    /// The verdicts of the last retention run (one per checkpoint it saw, with reasons), empty
    /// before the first save.
    pub fn last_retention(&self) -> Vec<(Step, Verdict)> {
        self.root
            .state()
            .retention_verdicts(self.root.preservation.as_ref())
    }

    /// The directory name of `step` in this root: the name it was listed under, else the name the
    /// format builds.
    pub fn step_dir_name(&self, step: Step) -> String {
        self.root.step_dir_name(step)
    }

    /// The committed steps the configured preservation policy would delete if retention ran now
    /// (the decision every save makes after it commits), ascending; nothing is deleted. No
    /// reasons: [`CheckpointManager::apply_preservation`] with `dry_run` gives those, and
    /// [`CheckpointManager::last_retention`] those of the last run. ckpt's own (Orbax has no
    /// such query).
    pub fn steps_to_delete(&self) -> Vec<Step> {
        let cx = PreservationContext {
            now: self.root.options.clock.now(),
        };
        let st = self.root.state();
        crate::retention::decision(self.root.preservation.as_ref(), &st.checkpoints, &cx).1
    }

    /// Whether a save is still being written or committed in the background (spec §5.3).
    pub fn is_saving_in_progress(&self) -> bool {
        lock(&self.in_flight).as_ref().is_some_and(|f| !f.is_done())
    }

    /// Whether the preemption source (if any) reports a preemption at `step`.
    pub fn reached_preemption(&self, step: Step) -> bool {
        self.root
            .options
            .preemption
            .as_ref()
            .is_some_and(|p| p.reached_preemption(step))
    }

    /// Whether `save(step)` would save (spec §3.4): false when read-only or when `step` is not
    /// above the latest step (committed or in flight); else the save decision policy's answer.
    ///
    /// The policy sees the committed checkpoints plus the one in flight (spec §3.4), without a
    /// copy of the listing: the in-flight step is put into the listing for the duration of the
    /// call, under its lock, and taken out again (so this stays in microseconds with 10,000
    /// steps).
    pub fn should_save(&self, step: Step) -> bool {
        self.save_decision(step).saved()
    }

    /// [`CheckpointManager::should_save`] with the reason when the answer is no.
    pub fn save_decision(&self, step: Step) -> SaveOutcome {
        if self.root.options.read_only {
            return SaveOutcome::ReadOnly;
        }
        let (in_flight, running) = match lock(&self.in_flight).as_ref() {
            Some(f) => (Some(f.info.clone()), !f.is_done()),
            None => (None, false),
        };
        let reached_preemption = self.reached_preemption(step);
        let now = self.root.options.clock.now();
        let mut view = DecisionView {
            state: self.root.state(),
            added: None,
        };
        if let Some(info) = in_flight {
            let list = &mut view.state.checkpoints;
            let pos = list.partition_point(|c| c.step < info.step);
            if list.get(pos).is_none_or(|c| c.step != info.step) {
                list.insert(pos, info);
                view.added = Some(pos);
            }
        }
        let previous = &view.state.checkpoints;
        if let Some(l) = previous.last().filter(|l| step <= l.step) {
            return SaveOutcome::NotAboveLatest { latest: l.step };
        }
        let cx = DecisionContext {
            is_saving_in_progress: running,
            reached_preemption,
            now,
        };
        let policy = &self.root.save_policy;
        if policy.should_save(&CheckpointInfo::new(step, now, None), previous, &cx) {
            SaveOutcome::Saved
        } else {
            SaveOutcome::DeclinedByPolicy {
                policy: format!("{policy:?}"),
            }
        }
    }

    /// Re-reads the steps, their times and metrics from the root (Orbax `reload`, always a full
    /// metadata read). Waits for a save in flight first; its failure, if any, is reported by the
    /// next `save`, `wait_until_finished` or `close`.
    ///
    /// # Errors
    /// `Storage` when the root cannot be listed.
    pub fn reload(&mut self) -> Result<()> {
        self.settle_quietly();
        self.root.load(false)
    }

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
        self.root.restore(
            step,
            Some(&[item]),
            Some(crate::open_root::PyTreeRestore::Into(tree)),
        )?;
        Ok(step)
    }

    /// `step`, or the latest committed step when `None`.
    fn step_to_restore(&self, step: Option<Step>) -> Result<Step> {
        match step {
            Some(s) => Ok(s),
            None => self.latest_step().ok_or_else(|| {
                Error::not_found("no committed steps to restore")
                    .with_path(self.root.store.location(""))
            }),
        }
    }

    fn restore_impl(&self, step: Option<Step>, names: Option<&[&str]>) -> Result<Restored> {
        self.settle_quietly();
        let step = self.step_to_restore(step)?;
        self.root.restore(step, names, None)
    }

    // ----------------------------------------------------------------------------- save

    /// Saves `items` as `step` (spec §3.5), returning `Ok(false)` when the save decision says no
    /// (or, read-only, without `force`). Writes every item into the step's tmp directory, commits
    /// items then the step, records the step, then applies the preservation policy over all steps
    /// and deletes what it does not keep — possibly the new step itself. A metric whose value is
    /// `null` (what a NaN becomes, see [`SaveOptions::metrics`]) is logged as a warning naming
    /// the step and the metric.
    ///
    /// With `enable_async_checkpointing` (the default) `save` returns `Ok(true)` as soon as the
    /// items no longer need the caller's memory, and the rest runs on a background thread: items
    /// moved in are not copied; JSON items are serialized once; borrowed tensors, bytes and
    /// `SaveItem::Custom` items are, on a local store ([`ckpt_storage::Capabilities::local`]),
    /// written into the step's tmp directory before `save` returns, without fsync (the
    /// background thread fsyncs them, then commits), and on an object store copied once (a
    /// borrowed `Custom` item cannot be copied: there the whole save is written before `save`
    /// returns).
    ///
    /// # Errors
    /// - the error of the previous background save, if it failed and was not reported yet (this
    ///   save is then not made);
    /// - `ReadOnly` for a forced save on a read-only manager (D3);
    /// - `AlreadyExists` when `step` is already committed, or a committed directory for it exists;
    /// - `InvalidArgument` when `items` is empty, an item name is not one path component, is
    ///   reserved (`_CHECKPOINT_METADATA`, `commit_success.txt`, `_CKPT_CHECKSUMS`, or `metrics`
    ///   when metrics are written), or the metrics lack `best_metric` (D5) — nothing is written;
    /// - `InvalidConfig` naming the metric and the metrics that exist when the preservation
    ///   policy ranks by a metric that neither this step's metrics nor any committed step's
    ///   have while some do have metrics (a misspelt name; see
    ///   [`CheckpointManagerOptions::allow_missing_best_metric`]) — nothing is written;
    /// - `InvalidArgument` naming the item when a JSON item (or the metrics, or the custom
    ///   metadata) is nested deeper than a restore can read back
    ///   ([`ckpt_core::pyjson::MAX_NESTING_DEPTH`] levels of arrays and objects) — nothing is
    ///   written (a borrowed `serde::Serialize` item of a synchronous save is measured when its
    ///   handler serializes it: the step's tmp directory is then removed);
    /// - `Timeout` when waiting for the previous save takes longer than `async_timeout_secs`;
    /// - `Handler`/`Storage`/… from writing what is written before `save` returns (a synchronous
    ///   save; the borrowed items of an asynchronous one on a local store), naming the step; the
    ///   tmp directory is removed and no step becomes visible. Failures of the background part
    ///   come from the next call instead.
    pub fn save(&mut self, step: Step, items: Composite<'_>, options: SaveOptions) -> Result<bool> {
        self.save_with_outcome(step, items, options)
            .map(|o| o.saved())
    }

    /// As [`CheckpointManager::save`], saying what was done: [`SaveOutcome::Saved`], or why the
    /// step was not saved (read-only, not above the latest step, declined by the save decision
    /// policy). A step not above the latest one is also logged at WARN (it is usually a
    /// mistake: a restarted loop counting from 0, Orbax issue 527); a policy's no at DEBUG.
    ///
    /// # Errors
    /// As [`CheckpointManager::save`].
    pub fn save_with_outcome(
        &mut self,
        step: Step,
        items: Composite<'_>,
        options: SaveOptions,
    ) -> Result<SaveOutcome> {
        if self.root.options.read_only {
            if options.force {
                return Err(Error::new(
                    ErrorKind::ReadOnly,
                    format!("cannot save step {step}: the manager is read-only"),
                )
                .with_step(step));
            }
            return Ok(SaveOutcome::ReadOnly);
        }
        self.report_finished()?;
        if !options.force {
            let decision = self.save_decision(step);
            match &decision {
                SaveOutcome::Saved => {}
                SaveOutcome::NotAboveLatest { latest } => {
                    tracing::warn!(
                        step,
                        latest,
                        "save skipped: the step is not above the latest step"
                    );
                    return Ok(decision);
                }
                other => {
                    tracing::debug!(
                        step,
                        reason = other.reason().unwrap_or_default(),
                        "save skipped"
                    );
                    return Ok(decision);
                }
            }
        }
        self.wait_until_finished()?;
        let root = &self.root;
        if root.state().dir_names.contains_key(&step) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("checkpoint for step {step} already exists"),
            )
            .with_step(step));
        }
        let write_metrics = options.metrics.is_some() && !root.options.prevent_write_metrics;
        save::check_items(step, &items, write_metrics)?;
        if let (Some(metric), Some(m)) = (&root.options.best_metric, &options.metrics) {
            if !m.contains_key(metric) {
                return Err(Error::invalid_argument(format!(
                    "metrics of step {step} lack the best metric {metric:?}; nothing was saved"
                ))
                .with_step(step));
            }
        }
        // A policy ranking by a metric that neither this step nor any committed one has (a
        // typo) would delete the best steps: refused before anything is written (issue 11,
        // item 8). The new step comes first: it usually has the metric, which ends the check.
        if !root.ranking_metrics.is_empty() && !root.options.allow_missing_best_metric {
            let new = CheckpointInfo::new(step, root.options.clock.now(), options.metrics.clone());
            let st = root.state();
            root.check_metrics_exist(std::iter::once(&new).chain(st.checkpoints.iter()))
                .map_err(|e| e.with_step(step))?;
        }
        save::check_json_depth(step, &items, &options)?;
        save::warn_unusable_metrics(step, options.metrics.as_ref());
        let name = root.format.build_name(step);
        // Whether a committed step is there unlisted: checked here and now, except for a
        // background save on an object store (commit-file mode), where it is a network round
        // trip that would block the caller; its background thread checks first, before writing
        // anything (Orbax checks only its cached listing, spec §5.1).
        let deferred_check = root.options.enable_async_checkpointing
            && root.protocol.mode() == AtomicityMode::CommitFile
            && items.capturable();
        if !deferred_check {
            save::check_not_committed(root, step, &name)?;
        }
        let async_save = root.options.enable_async_checkpointing;
        // On a local store (disk or memory), a background save writes the borrowed items here
        // and now: into the page cache without fsync, about one copy of them, which is what
        // copying them for the background thread would cost anyway. The thread then syncs and
        // commits them, so the save reaches its commit as soon as a synchronous one would. On
        // object stores (a write is an upload) they are copied instead.
        let (now_items, later_items) = if async_save && root.store.capabilities().local {
            items.split_borrowed()
        } else {
            (Composite::new(), items)
        };
        let staged = if now_items.is_empty() {
            None
        } else {
            let mut staged = Staged::begin(root, step, &name)?;
            if let Err(e) = staged.write_items(root, &now_items, None, true) {
                return Err(staged.abandon(root, e));
            }
            Some(staged)
        };
        let time = root.options.clock.now();
        let info = CheckpointInfo::new(step, time, options.metrics.clone());
        let phase: PhaseCell = Arc::new(Mutex::new(Phase::Queued));
        let fence = Arc::new(Fence::default());
        // Captured items go to the background thread; anything else is written here and now.
        let captured = match async_save {
            true => match later_items.capture().map_err(|e| e.with_step(step)) {
                Ok(Captured::Owned(owned)) => Ok(owned),
                Ok(Captured::NotCapturable(items)) => Err(items),
                Err(e) => {
                    return Err(match staged {
                        Some(staged) => staged.abandon(root, e),
                        None => e,
                    });
                }
            },
            false => Err(later_items),
        };
        let items = match captured {
            Ok(owned) => owned,
            Err(items) => {
                let job = SaveJob {
                    step,
                    name,
                    items,
                    options,
                    write_metrics,
                    time,
                    check_committed: deferred_check,
                    fence,
                };
                return save::run(root, &job, staged, &phase).map(|()| SaveOutcome::Saved);
            }
        };
        let job = SaveJob {
            step,
            name,
            items,
            options,
            write_metrics,
            time,
            check_committed: deferred_check,
            fence: Arc::clone(&fence),
        };
        let (tx, done) = mpsc::channel();
        let (core2, phase2) = (Arc::clone(root), Arc::clone(&phase));
        let handle = std::thread::Builder::new()
            .name(format!("ckpt-save-{step}"))
            .spawn(move || {
                let result = save::run(&core2, &job, staged, &phase2);
                // Never keep the open root (and its writer lock) alive while freeing memory.
                drop(core2);
                // The receiver is gone only if the manager abandoned this save.
                let _ = tx.send(result);
                // The captured items are freed only now, after the save is reported: freeing
                // 1 GiB costs tens of milliseconds nobody needs to wait for.
                drop(job);
            })
            .map_err(|e| {
                Error::storage("cannot start the background save thread")
                    .with_step(step)
                    .with_source(e)
            })?;
        *lock(&self.in_flight) = Some(InFlight {
            info,
            done,
            handle,
            phase,
            started: Instant::now(),
            fence,
        });
        Ok(SaveOutcome::Saved)
    }

    /// Blocks until the save in flight (if any) has committed and its retention has run, and
    /// reports its failure once (spec §5.9).
    ///
    /// # Errors
    /// The background save's error, naming its step (the step is then not listed and nothing was
    /// deleted for it); `Timeout` naming the phase when it takes longer than `async_timeout_secs`
    /// (the save is then abandoned).
    pub fn wait_until_finished(&self) -> Result<()> {
        let taken = lock(&self.in_flight).take();
        if let Some(f) = taken {
            self.wait_for(f)?;
        }
        match lock(&self.pending_error).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.root.options.async_timeout_secs)
    }

    /// Waits for `f` at most `async_timeout_secs`. A save that times out is abandoned: fenced so
    /// that it commits nothing (unless it is already committing), and kept as the save in flight
    /// until its thread stops, so that no other save runs beside it (issue 11, item 3).
    fn wait_for(&self, f: InFlight) -> Result<()> {
        let step = f.info.step;
        match f.done.recv_timeout(self.timeout()) {
            Ok(result) => {
                // Not joined: after reporting, the thread only frees the captured items.
                drop(f.handle);
                if f.fence.is_abandoned() {
                    // Its Timeout was reported when it was abandoned; what it ended with is not
                    // news (it committed nothing).
                    if let Err(e) = result {
                        tracing::debug!(step, error = %e, "an abandoned background save stopped");
                    }
                    return Ok(());
                }
                result
            }
            Err(RecvTimeoutError::Timeout) => {
                let phase = *lock(&f.phase);
                let secs = self.root.options.async_timeout_secs;
                let err = if f.fence.is_abandoned() {
                    format!(
                        "the background save of step {step}, abandoned earlier, has still not stopped after another {secs} s (phase: {}); no other save starts until it has",
                        phase.name()
                    )
                } else if f.fence.abandon() {
                    tracing::error!(
                        step,
                        phase = phase.name(),
                        "abandoning a stalled background save"
                    );
                    format!(
                        "the background save of step {step} did not finish within {secs} s (phase: {}); it was abandoned and will not commit",
                        phase.name()
                    )
                } else {
                    format!(
                        "the background save of step {step} did not finish within {secs} s (phase: {}); it is committing and may still commit",
                        phase.name()
                    )
                };
                *lock(&self.in_flight) = Some(f);
                Err(Error::new(ErrorKind::Timeout, err).with_step(step))
            }
            Err(RecvTimeoutError::Disconnected) => Err(Error::new(
                ErrorKind::Handler,
                format!("the background save of step {step} panicked"),
            )
            .with_step(step)),
        }
    }

    /// If the save in flight has finished, collects it and returns its error (once).
    fn report_finished(&self) -> Result<()> {
        let finished = {
            let mut g = lock(&self.in_flight);
            match g.as_ref() {
                Some(f) if f.is_done() => g.take(),
                _ => None,
            }
        };
        if let Some(f) = finished {
            self.wait_for(f)?;
        }
        match lock(&self.pending_error).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Waits for the save in flight, keeping its error for the next `save`/`wait`/`close`. An
    /// abandoned save is not waited for here (it commits nothing); `save`, `wait_until_finished`
    /// and `close` wait for its thread to stop.
    fn settle_quietly(&self) {
        let taken = {
            let mut g = lock(&self.in_flight);
            match g.as_ref() {
                Some(f) if f.fence.is_abandoned() => None,
                _ => g.take(),
            }
        };
        if let Some(f) = taken {
            if let Err(e) = self.wait_for(f) {
                *lock(&self.pending_error) = Some(e);
            }
        }
    }

    fn settle_if_in_flight(&self, step: Step) {
        let same = lock(&self.in_flight)
            .as_ref()
            .is_some_and(|f| f.info.step == step);
        if same {
            self.settle_quietly();
        }
    }

    /// Deletes `step` (spec §4.5): removes its directory (or moves it into `todelete_subdir`) and
    /// drops it from the listing. Waits for a save in flight first.
    ///
    /// # Errors
    /// `ReadOnly` on a read-only manager (deviation D3: Orbax silently does nothing); `NotFound`
    /// when `step` is not listed; `Storage` when the store fails (the step then stays listed).
    pub fn delete(&mut self, step: Step) -> Result<()> {
        if self.root.options.read_only {
            return Err(Error::new(
                ErrorKind::ReadOnly,
                format!("cannot delete step {step}: the manager is read-only"),
            )
            .with_step(step));
        }
        self.settle_quietly();
        if !self.root.state().dir_names.contains_key(&step) {
            return Err(
                Error::not_found(format!("cannot delete step {step}: no such step"))
                    .with_step(step),
            );
        }
        tracing::info!(step, reason = "asked by the caller", "deleting step");
        self.root.delete_step(step)
    }

    /// Applies `policy` to the committed steps now (what `ckpt gc` does): each step gets the
    /// policy's verdict, and unless `dry_run` the steps it does not keep are deleted (or moved
    /// into `todelete_subdir`). Waits for a save in flight first.
    ///
    /// # Errors
    /// `ReadOnly` on a read-only manager unless `dry_run`; `InvalidConfig` when the policy's own
    /// validation fails, or when it ranks by a metric no step has while some steps have metrics
    /// (a misspelt name, naming it and the metrics that exist; unless
    /// [`CheckpointManagerOptions::allow_missing_best_metric`]) — nothing is deleted then;
    /// `Storage` when a delete fails (steps deleted before it stay deleted and unlisted; the
    /// failing one stays listed).
    pub fn apply_preservation(
        &mut self,
        policy: &dyn PreservationPolicy,
        dry_run: bool,
    ) -> Result<Vec<RetentionDecision>> {
        if self.root.options.read_only && !dry_run {
            return Err(Error::new(
                ErrorKind::ReadOnly,
                "cannot delete steps: the manager is read-only (use a dry run)",
            ));
        }
        policy.validate()?;
        self.settle_quietly();
        let checkpoints = self.checkpoints();
        crate::retention::apply(&self.root, policy, &checkpoints, dry_run)
    }

    /// Waits for the save in flight and for background deletions, and closes the manager (spec
    /// §5.10).
    ///
    /// # Errors
    /// As [`CheckpointManager::wait_until_finished`]; the first background deletion error.
    pub fn close(self) -> Result<()> {
        let waited = self.wait_until_finished();
        let drained = self.root.drain_deletions();
        waited.and(drained)
    }
}

impl Drop for CheckpointManager {
    /// Waits (at most `async_timeout_secs`) for a save in flight and logs what it abandons or what
    /// failed, since `Drop` cannot return an error; call [`CheckpointManager::close`] to get it.
    fn drop(&mut self) {
        let taken = lock(&self.in_flight).take();
        if let Some(f) = taken {
            let step = f.info.step;
            let started = f.started;
            if let Err(e) = self.wait_for(f) {
                tracing::error!(step, error = %e, waited_ms = started.elapsed().as_millis() as u64,
                    "a background save failed or was abandoned while the manager was dropped");
            }
        }
        if let Some(e) = lock(&self.pending_error).take() {
            tracing::error!(error = %e, "an unreported background save error was dropped with the manager");
        }
        if let Err(e) = self.root.drain_deletions() {
            tracing::error!(error = %e, "a background deletion failed");
        }
    }
}
