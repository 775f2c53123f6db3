//! `CheckpointManager`: the public API.

mod broadcast;
mod job;
mod job_save;
mod read;
mod saving;

use crate::open_root::OpenRoot;
use crate::options::{CheckpointManagerBuilder, CheckpointManagerOptions, RootSpec};
use crate::staging::{StagingPool, StagingStats};
use crate::RetentionDecision;
use ckpt_core::{CheckpointInfo, Error, ErrorKind, Result, Step};
use ckpt_policy::{DecisionContext, PreservationContext, PreservationPolicy, Verdict};
use ckpt_storage::Store;
use job::{Job, Vote};
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
///
/// # Multi-process jobs
///
/// With a [`coordinator`](CheckpointManagerOptions::coordinator) (issue 15; e.g.
/// `coordination::EtcdCoordinator`, feature `etcd`), every participating process of the job opens
/// a manager of the same root with the same options and calls the same methods in the same
/// order, as every JAX process calls Orbax's manager (spec §5.11):
///
/// - Opening: the primary ([`MultiprocessingOptions::primary_host`], default 0) opens the root
///   as a single process would (creates it, takes the root's writer guard, cleans up, writes the
///   root metadata), then the others open it without writing. The writer guard belongs to the
///   job: the processes of one job never get `Locked`; a second job on the same root gets
///   `Locked` on every one of its processes (its primary's error, naming it).
/// - Deciding: `should_save`, `save_decision` and `reached_preemption` of a step give the same
///   answer on every process: the processes exchange, once per step, whether their preemption
///   source fired and their decision both ways, and every process takes the primary's decision
///   given whether ANY process reached a preemption. A SIGTERM that reaches one process thus
///   makes every process save that step.
/// - Saving: each process calls `save(step, items, options)` with its own part of the step (item
///   names differ between processes; a part may be empty). The primary prepares the step's
///   working directory; each process writes its items into it and reports its outcome with the
///   handler strings and checksums of its files; only when every process succeeded does the
///   primary merge them into one `_CKPT_CHECKSUMS` and one `_CHECKPOINT_METADATA`, commit, and
///   run retention, whose deletions every process then learns. If any process fails before the
///   commit, nothing is committed and every process's `save` returns the same error, naming the
///   failing process and the phase (`…save-<step>.<attempt>.prepared`, `.written`,
///   `.committed`). The step's metrics and custom metadata are the primary's. The committed step
///   is the step one process saving the union of the parts would have written.
/// - Deleting (`delete`, `apply_preservation`): the primary deletes, every process forgets.
/// - Reading (`restore`, `metrics`, listing queries): each process reads on its own; with
///   [`single_host_load_and_broadcast`](crate::CheckpointManagerOptions::single_host_load_and_broadcast)
///   the restores (`restore`, `restore_items`, `restore_leaves`, `restore_pytree_into`,
///   `restore_array_slice`) read on the primary only, the others getting the bytes through the
///   coordinator (then every process restores the same things in the same order).
///
/// Deviations: multi-process saves run synchronously (`save` returns once the step is
/// committed on every process; `enable_async_checkpointing` and the staging pool are not used);
/// `primary_host = None` (every process a primary) does not exist; a read-only manager does not
/// coordinate. Each phase waits at most `coordination_timeout_secs` for the others (`Timeout`
/// naming the missing processes; a process known gone fails the wait at once with
/// `Coordination` naming it; a coordination service that stops answering is tried again for
/// that long, then `Timeout` naming the phase and the step, nothing committed unless the
/// primary had committed before).
///
/// [`MultiprocessingOptions::primary_host`]: crate::coordination::MultiprocessingOptions::primary_host
#[derive(Debug)]
pub struct CheckpointManager {
    pub(crate) root: Arc<OpenRoot>,
    /// The staging pool of async saves (`None`: off, or a synchronous manager).
    staging: Option<Arc<StagingPool>>,
    in_flight: Mutex<Option<InFlight>>,
    pending_error: Mutex<Option<Error>>,
    /// This manager's place in a multi-process job (`None`: one process, or read-only).
    job: Option<Job>,
    /// The store layer of `single_host_load_and_broadcast` (a job's manager with that option).
    broadcast: Option<Arc<broadcast::BroadcastReads>>,
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
    /// Not saved: the processes of a multi-process job could not agree on the decision (a
    /// process did not come in time, or the coordination service failed). Only
    /// [`CheckpointManager::save_decision`] and `should_save` answer so; `save` returns the
    /// error instead. ckpt's own (issue 15).
    NotAgreed {
        /// The error, displayed with its causes.
        error: String,
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
            SaveOutcome::NotAgreed { error } => Some(format!(
                "the processes of the job could not agree on the decision: {error}"
            )),
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
    /// A builder for a manager of the root at `root`: a local path, `file:///abs/path`,
    /// `memory://`, or an object-store URI (`s3://bucket/prefix`, `gs://…`, `azblob://…`,
    /// configured from the environment as [`ckpt_storage::open`] says).
    pub fn builder(root: impl Into<String>) -> CheckpointManagerBuilder {
        CheckpointManagerBuilder::new(RootSpec::Uri(root.into()))
    }

    /// A builder for a manager of the root of `store`.
    pub fn builder_with_store(store: Arc<dyn Store>) -> CheckpointManagerBuilder {
        CheckpointManagerBuilder::new(RootSpec::Store(store))
    }

    /// Opens the root at `root` (a local path, `file:///…`, `memory://`, or an object-store URI:
    /// `s3://bucket/prefix`, `gs://…`, `azblob://…`) with `options`.
    ///
    /// # Errors
    /// `InvalidArgument` for an unknown URI scheme or a root that is a file; otherwise as
    /// [`CheckpointManager::with_store`].
    pub fn open(root: &str, options: CheckpointManagerOptions) -> Result<Self> {
        let write_behind = options.write_behind_min_bytes;
        let default_writes = write_behind == Some(ckpt_storage::WRITE_BEHIND_MIN_BYTES);
        if options.direct_io_min_bytes.is_some() || !default_writes {
            if let Some(local) = ckpt_storage::open_local(root)? {
                let mut local = local.with_write_behind(write_behind);
                if let Some(min) = options.direct_io_min_bytes {
                    local = local.with_direct_io(min);
                }
                return Self::with_store(Arc::new(local), options);
            }
        }
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
        if let Some(coordinator) = options.coordinator.clone().filter(|_| !options.read_only) {
            return Self::open_in_job(store, options, coordinator);
        }
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
            job: None,
            broadcast: None,
        })
    }

    /// Opens the root as one process of a multi-process job: the primary opens it as a single
    /// process would (creates it, takes the writer guard, cleans up, writes the root metadata);
    /// every process learns how that went (phase `open`); then the others open it without
    /// writing anything, and every process learns how that went (phase `opened`). A second job
    /// on the same root therefore fails on every one of its processes with the `Locked` its
    /// primary met.
    fn open_in_job(
        store: Arc<dyn Store>,
        options: CheckpointManagerOptions,
        coordinator: Arc<dyn crate::coordination::Coordinator>,
    ) -> Result<Self> {
        options.validate()?;
        let broadcast = options.single_host_load_and_broadcast.then(|| {
            Arc::new(broadcast::BroadcastReads::new(
                Arc::clone(&store),
                Arc::clone(&coordinator),
                std::time::Duration::from_secs(options.coordination_timeout_secs),
            ))
        });
        let store: Arc<dyn Store> = match &broadcast {
            Some(layer) => Arc::clone(layer) as Arc<dyn Store>,
            None => store,
        };
        let job = Job::new(coordinator, &options)?;
        // An error of this process goes to every process through the exchange, which then
        // returns it (naming this process) here too.
        let (opened, mine) = if job.is_primary() {
            match OpenRoot::open_as(Arc::clone(&store), options.clone(), false) {
                Ok(root) => (Some(root), Ok(serde_json::Value::Null)),
                Err(e) => (None, Err(e)),
            }
        } else {
            (None, Ok(serde_json::Value::Null))
        };
        job.exchange(&job.open_name("open"), mine)?;
        let (root, mine) = match opened {
            Some(root) => (Some(root), Ok(serde_json::Value::Null)),
            None => match OpenRoot::open_as(store, options, true) {
                Ok(root) => (Some(root), Ok(serde_json::Value::Null)),
                Err(e) => (None, Err(e)),
            },
        };
        job.exchange(&job.open_name("opened"), mine)?;
        let root = root.ok_or_else(|| {
            Error::new(
                ErrorKind::Coordination,
                "opened without a root (a bug in ckpt)",
            )
        })?;
        Ok(CheckpointManager {
            root: Arc::new(root),
            staging: None,
            in_flight: Mutex::new(None),
            pending_error: Mutex::new(None),
            job: Some(job),
            broadcast,
        })
    }

    /// Whether this manager is one process of a multi-process job (a coordinator was given and
    /// the manager writes), and if so this process's index and the primary's. ckpt's own.
    pub fn process(&self) -> Option<(usize, usize)> {
        self.job.as_ref().map(|j| (j.index(), j.primary()))
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
    ///
    /// In a multi-process job: whether the source of ANY process reports one at `step`, agreed
    /// once per step with the save decision of `step` (as Orbax's `reached_preemption`, a
    /// sync point of every process, spec §3.4), so a SIGTERM that reaches one process makes
    /// every process save the same step. Every process must then ask about the same steps in
    /// the same order. When the processes cannot agree (one did not come within
    /// `coordination_timeout_secs`), the error is logged and the answer is `false`.
    pub fn reached_preemption(&self, step: Step) -> bool {
        if self.job.is_some() {
            return match self.agreed(step) {
                Ok(d) => d.preempted,
                Err(e) => {
                    tracing::error!(step, error = %e.chain(), "the processes could not agree whether a preemption was reached");
                    false
                }
            };
        }
        self.local_preemption(step)
    }

    fn local_preemption(&self, step: Step) -> bool {
        self.root
            .options
            .preemption
            .as_ref()
            .is_some_and(|p| p.reached_preemption(step))
    }

    /// The decision of `step` agreed by every process of the job (one exchange per step).
    fn agreed(&self, step: Step) -> Result<job::Decided> {
        let Some(job) = &self.job else {
            let preempted = self.local_preemption(step);
            return Ok(job::Decided {
                step,
                preempted,
                outcome: self.decide_with(step, preempted),
            });
        };
        if let Some(d) = job.decided(step) {
            return Ok(d);
        }
        let vote = Vote {
            preempted: self.local_preemption(step),
            if_not: (&self.decide_with(step, false)).into(),
            if_preempted: (&self.decide_with(step, true)).into(),
        };
        job.decide(step, vote).map_err(|e| e.with_step(step))
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
    ///
    /// In a multi-process job the answer is the primary's, given whether any process reached a
    /// preemption at `step` (see [`CheckpointManager::reached_preemption`]): the same on every
    /// process, agreed once per step; [`SaveOutcome::NotAgreed`] when the processes could not
    /// agree.
    pub fn save_decision(&self, step: Step) -> SaveOutcome {
        if self.root.options.read_only {
            return SaveOutcome::ReadOnly;
        }
        match self.agreed(step) {
            Ok(d) => d.outcome,
            Err(e) => SaveOutcome::NotAgreed {
                error: e.chain().to_string(),
            },
        }
    }

    /// This process's own decision of `step`, given whether a preemption was reached.
    fn decide_with(&self, step: Step, reached_preemption: bool) -> SaveOutcome {
        if self.root.options.read_only {
            return SaveOutcome::ReadOnly;
        }
        let (in_flight, running) = match lock(&self.in_flight).as_ref() {
            Some(f) => (Some(f.info.clone()), !f.is_done()),
            None => (None, false),
        };
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
        if let Some(job) = &self.job {
            // The primary deletes; every process learns how that went and forgets the step.
            let name = job.op_name(&format!("delete-{step}"));
            let mine = if job.is_primary() {
                tracing::info!(step, reason = "asked by the caller", "deleting step");
                self.root
                    .delete_step(step)
                    .map(|()| serde_json::Value::Null)
            } else {
                Ok(serde_json::Value::Null)
            };
            job.exchange(&name, mine).map_err(|e| e.with_step(step))?;
            self.root.state().forget(step);
            return Ok(());
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
        match &self.job {
            Some(job) if !dry_run => {
                // The primary decides and deletes; every process gets its decisions and forgets
                // what it deleted.
                let name = job.op_name("gc");
                let mine = if job.is_primary() {
                    crate::retention::apply(&self.root, policy, &checkpoints, false)
                        .map(|d| decisions_to_json(&d))
                } else {
                    Ok(serde_json::Value::Null)
                };
                let all = job.exchange(&name, mine)?;
                let primary = all
                    .into_iter()
                    .find(|(i, _)| *i == job.primary())
                    .map(|(_, v)| v)
                    .unwrap_or_default();
                let decisions = decisions_from_json(&primary)?;
                let mut st = self.root.state();
                for d in decisions.iter().filter(|d| d.deleted) {
                    st.forget(d.step);
                }
                Ok(decisions)
            }
            _ => crate::retention::apply(&self.root, policy, &checkpoints, dry_run),
        }
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

/// Retention decisions on the wire (from the primary to the other processes of a job).
fn decisions_to_json(decisions: &[RetentionDecision]) -> serde_json::Value {
    decisions
        .iter()
        .map(|d| {
            serde_json::json!({"step": d.step, "keep": d.keep, "reason": d.reason, "deleted": d.deleted})
        })
        .collect()
}

/// The decisions [`decisions_to_json`] wrote.
///
/// # Errors
/// `Coordination` when they are not what it writes.
fn decisions_from_json(v: &serde_json::Value) -> Result<Vec<RetentionDecision>> {
    let bad = || {
        Error::new(
            ErrorKind::Coordination,
            "the primary's retention decisions are unreadable",
        )
    };
    v.as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|d| {
            Ok(RetentionDecision {
                step: d
                    .get("step")
                    .and_then(serde_json::Value::as_u64)
                    .ok_or_else(bad)?,
                keep: d
                    .get("keep")
                    .and_then(serde_json::Value::as_bool)
                    .ok_or_else(bad)?,
                reason: d
                    .get("reason")
                    .and_then(serde_json::Value::as_str)
                    .ok_or_else(bad)?
                    .to_string(),
                deleted: d
                    .get("deleted")
                    .and_then(serde_json::Value::as_bool)
                    .ok_or_else(bad)?,
            })
        })
        .collect()
}
