//! `CheckpointManager`: the public API.

mod read;
mod saving;

use crate::open_root::OpenRoot;
use crate::options::{CheckpointManagerBuilder, CheckpointManagerOptions, RootSpec};
use crate::staging::{StagingPool, StagingStats};
use crate::RetentionDecision;
use ckpt_core::{CheckpointInfo, Error, ErrorKind, Result, Step};
use ckpt_policy::{DecisionContext, PreservationContext, PreservationPolicy, Verdict};
use ckpt_storage::Store;
use saving::InFlight;
use std::sync::{Arc, Mutex, MutexGuard};

/// Manages a series of checkpoints in one root: decides when to save, writes and commits steps,
/// keeps what the preservation policy keeps, and restores (as Orbax `CheckpointManager`, spec §5).
///
/// Saves are asynchronous by default (`enable_async_checkpointing`, spec §5.8): `save` returns
/// once the items are captured (borrowed tensors and bytes copied into a staging pool reused
/// across saves), and the write, commit, retention and deletions run on a background thread; at
/// most one save is in flight and the next `save` waits for it.
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
    /// The staging pool of async saves (`None`: off, or a synchronous manager).
    staging: Option<Arc<StagingPool>>,
    in_flight: Mutex<Option<InFlight>>,
    pending_error: Mutex<Option<Error>>,
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
        let root = Arc::new(OpenRoot::open(store, options)?);
        let o = &root.options;
        let staging = o
            .async_staging_max_bytes
            .filter(|_| o.enable_async_checkpointing && !o.read_only)
            .map(|max| Arc::new(StagingPool::new(max)));
        Ok(CheckpointManager {
            root,
            staging,
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

    /// The staging pool's figures (all zero when it is off): bytes and buffers kept between
    /// saves, bytes lent to the save in flight, buffers allocated and reused so far. ckpt's own.
    pub fn staging_stats(&self) -> StagingStats {
        self.staging.as_ref().map(|p| p.stats()).unwrap_or_default()
    }

    /// Frees the memory the staging pool keeps between async saves (see
    /// [`CheckpointManagerOptions::async_staging_max_bytes`]) and returns its size in bytes.
    /// Waits for the save in flight first (its failure, if any, is reported by the next
    /// `save`, `wait_until_finished` or `close`), so that its buffers are freed too. The next
    /// async save of borrowed items allocates (and faults in) its buffers again. Closing or
    /// dropping the manager frees them as well. ckpt's own.
    pub fn release_staging_memory(&self) -> u64 {
        self.settle_quietly();
        self.staging.as_ref().map_or(0, |p| p.release())
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

    // ----------------------------------------------------------------------------- save

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
                tracing::error!(step, error = %e.chain(), waited_ms = started.elapsed().as_millis() as u64,
                    "a background save failed or was abandoned while the manager was dropped");
            }
        }
        if let Some(e) = lock(&self.pending_error).take() {
            tracing::error!(error = %e.chain(), "an unreported background save error was dropped with the manager");
        }
        if let Err(e) = self.root.drain_deletions() {
            tracing::error!(error = %e.chain(), "a background deletion failed");
        }
    }
}
