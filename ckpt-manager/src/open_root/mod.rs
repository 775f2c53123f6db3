//! [`OpenRoot`], the open checkpoint root a manager and its background save share: what is fixed when it is opened (store, protocol, name format,
//! options, policies, handlers) and the listing of committed steps, which the background save
//! updates when a step commits.

mod read;
mod tensors;

pub(crate) use read::PyTreeRestore;

use crate::deleter::{remove_dir, Deleter};
use crate::listing::{committed_steps_with_shadowed, load_infos};
use crate::options::CheckpointManagerOptions;
use crate::retention::{check_policy_metrics, RetentionRun};
use ckpt_core::{
    is_tmp_name, validate_item_name, CheckpointInfo, Error, ErrorKind, NameFormat, Result,
    RootMetadata, Step, LEGACY_ROOT_METADATA_FILE, ROOT_METADATA_DIR,
};
use ckpt_handlers::HandlerRegistry;
use ckpt_policy::{
    legacy_preservation, legacy_save_decision, LegacyRetention, PreservationPolicy,
    SaveDecisionPolicy, Verdict,
};
use ckpt_storage::{
    protocol_for, CommitProtocol, EntryKind, StepClaim, Store, WriterLease, WriterLock,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The committed steps as the manager knows them.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Committed checkpoints, ascending by step (D1).
    pub checkpoints: Vec<CheckpointInfo>,
    /// The directory name each committed step was listed or saved under.
    pub dir_names: BTreeMap<Step, String>,
    /// Other committed directory names of a listed step (a composite name format that reads
    /// two names of one step): deleted with the step.
    pub shadowed: BTreeMap<Step, Vec<String>>,
    /// The last retention run, whose verdicts are computed only when asked for.
    pub last_retention: Option<RetentionRun>,
}

impl State {
    pub fn insert(&mut self, info: CheckpointInfo, name: String) {
        let step = info.step;
        let pos = self.checkpoints.partition_point(|c| c.step < step);
        self.checkpoints.insert(pos, info);
        self.dir_names.insert(step, name);
    }

    pub fn forget(&mut self, step: Step) {
        let start = self.checkpoints.partition_point(|c| c.step < step);
        let end = start + self.checkpoints[start..].partition_point(|c| c.step == step);
        for info in self.checkpoints.drain(start..end) {
            if let Some(run) = self.last_retention.as_mut() {
                run.keep_info(info);
            }
        }
        self.dir_names.remove(&step);
        self.shadowed.remove(&step);
    }

    /// Replaces the listing (a reload), keeping what the last retention run saw.
    pub fn replace(&mut self, checkpoints: Vec<CheckpointInfo>, names: BTreeMap<Step, String>) {
        let old = std::mem::replace(&mut self.checkpoints, checkpoints);
        if let Some(run) = self.last_retention.as_mut() {
            for info in old {
                run.keep_info(info);
            }
        }
        self.dir_names = names;
    }

    /// The verdicts of the last retention run ([`RetentionRun::verdicts`]), empty before the
    /// first.
    pub fn retention_verdicts(&mut self, policy: &dyn PreservationPolicy) -> Vec<(Step, Verdict)> {
        match self.last_retention.as_mut() {
            Some(run) => run.verdicts(&self.checkpoints, policy),
            None => Vec::new(),
        }
    }
}

/// Refuses a root that is itself a step directory (it holds `_CHECKPOINT_METADATA`): a writer
/// there would put steps inside a committed step, which then no longer restores.
///
/// # Errors
/// `InvalidArgument` naming the directory and saying to use its parent; store errors.
pub(crate) fn refuse_step_dir_as_root(store: &dyn Store) -> Result<()> {
    if store.stat(ckpt_core::STEP_METADATA_FILE)?.is_some() {
        return Err(Error::invalid_argument(format!(
            "{} is a step directory (it holds {}), not a checkpoint root: write to its parent",
            store.location(""),
            ckpt_core::STEP_METADATA_FILE
        ))
        .with_path(store.location("")));
    }
    Ok(())
}

/// The root's single-writer guard: the store's own lock (local roots), else a writer lease
/// where the store has conditional creates and the lease is on; waits up to
/// `wait_for_writer_secs` while another writer holds it.
pub(crate) fn take_writer_guard(
    store: &Arc<dyn Store>,
    options: &CheckpointManagerOptions,
) -> Result<Option<Box<dyn WriterLock>>> {
    let started = std::time::Instant::now();
    let wait = Duration::from_secs(options.wait_for_writer_secs);
    let mut warned = false;
    loop {
        let taken = match store.lock_for_writing() {
            Ok(Some(lock)) => Ok(Some(lock)),
            Ok(None) => match options.writer_lease_ttl_secs {
                Some(ttl) if store.capabilities().write_if_absent => {
                    WriterLease::acquire(Arc::clone(store), Duration::from_secs(ttl))
                        .map(|lease| Some(Box::new(lease) as Box<dyn WriterLock>))
                }
                _ => Ok(None),
            },
            Err(e) => Err(e),
        };
        match taken {
            Err(e) if e.kind() == ErrorKind::Locked && started.elapsed() < wait => {
                if !warned {
                    tracing::warn!(root = %store.location(""), error = %e.chain(),
                        wait_secs = options.wait_for_writer_secs, "waiting for the root's other writer to go");
                    warned = true;
                }
                std::thread::sleep(
                    Duration::from_secs(1).min(wait.saturating_sub(started.elapsed())),
                );
            }
            other => return other,
        }
    }
}

/// An open checkpoint root: the store, commit protocol, name format, options, policies and
/// handlers fixed at opening, the writer guard, and the listing of committed steps. Shared (in an
/// `Arc`) by a manager and its background save.
#[derive(Debug)]
pub(crate) struct OpenRoot {
    pub store: Arc<dyn Store>,
    pub protocol: Arc<dyn CommitProtocol>,
    pub format: Arc<dyn NameFormat>,
    pub options: CheckpointManagerOptions,
    pub save_policy: Arc<dyn SaveDecisionPolicy>,
    pub preservation: Arc<dyn PreservationPolicy>,
    /// The metrics `preservation` ranks by ([`PreservationPolicy::ranking_metrics`]).
    pub ranking_metrics: Vec<String>,
    pub registry: HandlerRegistry,
    state: Mutex<State>,
    /// The deleter thread, with `enable_background_delete`.
    deleter: Option<Deleter>,
    /// The root's single-writer guard (local lock or writer lease), held while this manager (or
    /// its background save) lives.
    writer_lock: Option<Box<dyn WriterLock>>,
    /// How this manager claims the steps it writes (commit-file mode).
    pub claim: StepClaim,
}

impl OpenRoot {
    /// Validates the options, builds the policies and handlers, creates the root, cleans tmp
    /// directories, lists the steps and writes the root metadata once (spec §5.2).
    pub fn open(store: Arc<dyn Store>, options: CheckpointManagerOptions) -> Result<OpenRoot> {
        OpenRoot::open_as(store, options, false)
    }

    /// As [`OpenRoot::open`]; a `follower` (a process of a multi-process job other than the
    /// primary, which did all that already) neither creates the root, takes its writer guard,
    /// cleans tmp directories, starts a deleter nor writes the root metadata (spec §5.11: the
    /// primary host's work).
    pub fn open_as(
        store: Arc<dyn Store>,
        options: CheckpointManagerOptions,
        follower: bool,
    ) -> Result<OpenRoot> {
        options.validate()?;
        let store: Arc<dyn Store> = match options.retry {
            // Not again over a store that retries already (one opened from a URI): attempts
            // would multiply.
            Some(policy) if !store.capabilities().local && !store.capabilities().retries => {
                Arc::new(ckpt_storage::RetryStore::new(store, policy))
            }
            _ => store,
        };
        let options = options.effective();
        let format = options.name_format()?;
        let protocol = protocol_for(options.atomicity, store.capabilities())?;
        let save_policy: Arc<dyn SaveDecisionPolicy> = match &options.save_decision_policy {
            Some(p) => p.clone(),
            None => Arc::from(legacy_save_decision(
                options.save_interval_steps,
                &options.save_on_steps,
            )),
        };
        let preservation: Arc<dyn PreservationPolicy> = match &options.preservation_policy {
            Some(p) => p.clone(),
            None => Arc::from(legacy_preservation(&LegacyRetention {
                max_to_keep: options.max_to_keep,
                keep_period: options.keep_period,
                keep_time_interval_secs: options.keep_time_interval_secs,
                best: options.best_metric.clone().map(|m| (m, options.best_mode)),
                keep_checkpoints_without_metrics: options.keep_checkpoints_without_metrics,
            })?),
        };
        preservation.validate()?;
        save_policy.validate()?;
        let mut registry = HandlerRegistry::new();
        for (item, handler) in &options.handlers {
            validate_item_name(item)
                .map_err(|e| Error::invalid_config(format!("handlers option: {}", e.message())))?;
            registry
                .add(item, handler.clone())
                .map_err(|e| Error::invalid_config(format!("handlers option: {}", e.message())))?;
        }
        if let Some(meta) = store.stat("")? {
            if meta.kind == EntryKind::File {
                return Err(Error::invalid_argument(
                    "the checkpoint root is a file, not a directory",
                )
                .with_path(store.location("")));
            }
        }
        if !options.read_only {
            refuse_step_dir_as_root(store.as_ref())?;
        }
        if options.create && !options.read_only && !follower {
            store.create_dir("")?;
        }
        // One writer per root: readers never lock, so they are never blocked. The processes of
        // one job share the guard their primary holds.
        let writer_lock = if options.read_only || follower || store.stat("")?.is_none() {
            None
        } else {
            take_writer_guard(&store, &options)?
        };
        if options.cleanup_tmp_directories
            && !options.read_only
            && !follower
            && writer_lock.is_none()
        {
            return Err(Error::invalid_config(
                "cleanup_tmp_directories needs the root's writer guard (it could remove a step a live \
                 writer is writing): keep writer_lease_ttl_secs set",
            ));
        }
        if options.max_to_keep == Some(0) && !options.read_only {
            // As Orbax (spec §7.2 M2), but a surprise: every save is deleted once committed
            // unless another option keeps it.
            tracing::warn!(
                root = %store.location(""),
                "max_to_keep is 0: each checkpoint is deleted right after it commits unless keep_period or keep_time_interval_secs keeps it"
            );
        }
        let claim = StepClaim {
            token: ckpt_storage::writer_token(),
            exclusive: writer_lock.is_some(),
        };
        let ranking_metrics = preservation.ranking_metrics();
        let mut root = OpenRoot {
            store,
            protocol,
            format,
            options,
            save_policy,
            preservation,
            ranking_metrics,
            registry,
            state: Mutex::new(State::default()),
            deleter: None,
            writer_lock,
            claim,
        };
        let writes = !root.options.read_only && !follower;
        if root.options.cleanup_tmp_directories && writes {
            root.cleanup_tmp_directories()?;
        }
        if root.options.enable_background_delete && writes {
            root.deleter = Some(Deleter::start(
                Arc::clone(&root.store),
                Arc::clone(&root.protocol),
                root.options.todelete_subdir.clone(),
            )?);
        }
        root.load(root.options.lightweight_initialize)?;
        crate::listing::warn_linked_steps(root.store.as_ref(), root.format.as_ref())?;
        // A policy ranking by a metric none of the root's steps has (a typo) would delete the
        // best steps at the first save: refused now (issue 11, item 8).
        if !root.options.read_only {
            root.check_metrics_exist(&root.state().checkpoints)?;
        }
        if !follower {
            root.write_root_metadata_once()?;
        }
        Ok(root)
    }

    /// Whether this manager may still write: its writer guard, if any, is still held (a lease
    /// can be lost).
    ///
    /// # Errors
    /// `Locked` saying why the guard was lost.
    pub fn check_writer(&self) -> Result<()> {
        match &self.writer_lock {
            Some(lock) => lock.check(),
            None => Ok(()),
        }
    }

    /// [`ckpt_policy::check_metrics_exist`] for this manager's preservation policy over
    /// `checkpoints`, unless `allow_missing_best_metric`; the error says how to opt in.
    pub fn check_metrics_exist<'a, I>(&self, checkpoints: I) -> Result<()>
    where
        I: IntoIterator<Item = &'a CheckpointInfo>,
        I::IntoIter: Clone,
    {
        check_policy_metrics(
            self.preservation.as_ref(),
            checkpoints,
            self.options.allow_missing_best_metric,
        )
    }

    /// The listing, locked. A poisoned lock only means a thread panicked while holding plain data.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-reads the committed steps from the store.
    pub fn load(&self, lightweight: bool) -> Result<()> {
        let (names, shadowed) = committed_steps_with_shadowed(
            self.store.as_ref(),
            self.protocol.as_ref(),
            self.format.as_ref(),
        )?;
        let checkpoints = load_infos(self.store.as_ref(), &names, lightweight);
        let mut st = self.state();
        st.replace(checkpoints, names);
        st.shadowed = shadowed;
        Ok(())
    }

    fn cleanup_tmp_directories(&self) -> Result<()> {
        for e in self.store.list_dir("")? {
            if e.kind != EntryKind::Dir {
                continue;
            }
            // Only names that are ours: a tmp name (never a committed step, whatever the
            // protocol), or a step name that the protocol says is uncommitted (commit-file mode).
            let leftover = is_tmp_name(&e.name)
                || (self.format.parse_name(&e.name).is_some()
                    && self.protocol.is_tmp(self.store.as_ref(), "", &e.name)?);
            if leftover {
                tracing::info!(dir = %e.name, "removing tmp directory left by an unfinished save");
                self.store.delete_prefix(&e.name)?;
            }
        }
        Ok(())
    }

    fn write_root_metadata_once(&self) -> Result<()> {
        let o = &self.options;
        let Some(custom) = &o.root_metadata else {
            return Ok(());
        };
        if o.read_only || !o.save_root_metadata {
            return Ok(());
        }
        let path = ckpt_core::layout::root_metadata_file();
        let legacy = format!("{ROOT_METADATA_DIR}/{LEGACY_ROOT_METADATA_FILE}");
        if let Some(m) = self.store.stat(ROOT_METADATA_DIR)? {
            if m.kind != EntryKind::Dir {
                return Err(Error::invalid_argument(
                    "cannot write the root metadata: the root holds a non-directory named \"metadata\"",
                )
                .with_path(self.store.location(ROOT_METADATA_DIR)));
            }
        }
        if self.store.stat(&path)?.is_some() || self.store.stat(&legacy)?.is_some() {
            return Ok(());
        }
        let bytes = RootMetadata::with_custom(custom.clone()).to_json_bytes()?;
        match self.store.write_if_absent(&path, &bytes) {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            other => other,
        }
    }

    /// The directory name of `step`: the one it was listed under, else the one the format builds.
    pub fn step_dir_name(&self, step: Step) -> String {
        self.state()
            .dir_names
            .get(&step)
            .cloned()
            .unwrap_or_else(|| self.format.build_name(step))
    }

    /// Deletes a step (spec §4.5): drops it from the listing and removes its directory (or moves
    /// it into `todelete_subdir`) — now, or on the deleter thread with `enable_background_delete`.
    ///
    /// # Errors
    /// `Storage` when the removal fails (the step then stays listed), or when the deleter has
    /// stopped at an earlier failure.
    pub fn delete_step(&self, step: Step) -> Result<()> {
        self.check_writer().map_err(|e| e.with_step(step))?;
        let name = self.step_dir_name(step);
        // The step's other names (a composite format) go first: were they left, the step would
        // be listed again under one of them.
        let shadowed = self
            .state()
            .shadowed
            .get(&step)
            .cloned()
            .unwrap_or_default();
        match &self.deleter {
            Some(d) => {
                for other in shadowed {
                    d.enqueue(step, other)?;
                }
                d.enqueue(step, name)?;
                self.state().forget(step);
            }
            None => {
                for other in shadowed.iter().chain(std::iter::once(&name)) {
                    remove_dir(
                        self.store.as_ref(),
                        self.protocol.as_ref(),
                        step,
                        other,
                        self.options.todelete_subdir.as_deref(),
                    )?;
                    if other != &name {
                        if let Some(v) = self.state().shadowed.get_mut(&step) {
                            v.retain(|n| n != other);
                        }
                    }
                }
                self.state().forget(step);
            }
        }
        Ok(())
    }

    /// Waits until background deletions are done.
    ///
    /// # Errors
    /// The deleter's first error.
    pub fn drain_deletions(&self) -> Result<()> {
        match &self.deleter {
            Some(d) => d.drain(),
            None => Ok(()),
        }
    }
}
