//! The write path of a save: items into the step's tmp directory, item commits, step commit,
//! then retention over the committed steps. Runs on the caller's thread (synchronous saves) or on
//! the background save thread (asynchronous saves, spec §5.8).

use crate::open_root::OpenRoot;
use crate::progress::{Operation, ProgressStore, Tracker};
use crate::{Composite, SaveOptions};
use chrono::{DateTime, Utc};
use ckpt_core::{
    pyjson, CheckpointInfo, Error, ErrorKind, ItemHandlers, Metrics, Result, Step, StepMetadata,
    METRICS_ITEM_NAME, STEP_METADATA_FILE,
};
use ckpt_handlers::{CheckpointHandler, ItemDir, JsonHandler, SaveItem};
use ckpt_storage::{
    sync_files, AtomicityMode, ChecksumManifest, DeferredSyncStore, EntryKind, RecordingStore,
    Store,
};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What a background save is doing, for `Timeout` errors and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting to start.
    Queued,
    /// Handlers are writing the items into the tmp directory.
    WritingItems,
    /// Items and the step are being committed.
    Committing,
    /// The preservation policy runs and old steps are deleted.
    Retention,
    /// Finished (successfully or not).
    Done,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::WritingItems => "writing items",
            Phase::Committing => "committing",
            Phase::Retention => "retention",
            Phase::Done => "done",
        }
    }
}

/// Shared view of a save's phase.
pub(crate) type PhaseCell = Arc<Mutex<Phase>>;

fn set_phase(cell: &PhaseCell, phase: Phase) {
    *cell.lock().unwrap_or_else(|p| p.into_inner()) = phase;
}

/// Whether a background save may still commit (issue 11, item 3): a save abandoned by a
/// `Timeout` before its commit point never commits; one already committing is waited for.
#[derive(Debug, Default)]
pub(crate) struct Fence {
    state: Mutex<FenceState>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum FenceState {
    /// Writing; may still be abandoned.
    #[default]
    Open,
    /// Past the commit point: the step's commit is under way or done.
    Committing,
    /// Abandoned by a `Timeout`: it stops at its next check and commits nothing.
    Abandoned,
}

impl Fence {
    fn lock(&self) -> std::sync::MutexGuard<'_, FenceState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called by the save right before it commits the step: whether it may (it then can no
    /// longer be abandoned).
    fn enter_commit(&self) -> bool {
        let mut st = self.lock();
        match *st {
            FenceState::Abandoned => false,
            _ => {
                *st = FenceState::Committing;
                true
            }
        }
    }

    /// Called by a waiter that gave up: true when the save is abandoned before its commit point
    /// (it will commit nothing), false when it is already committing.
    pub(crate) fn abandon(&self) -> bool {
        let mut st = self.lock();
        match *st {
            FenceState::Committing => false,
            _ => {
                *st = FenceState::Abandoned;
                true
            }
        }
    }

    /// Whether the save was abandoned.
    pub(crate) fn is_abandoned(&self) -> bool {
        *self.lock() == FenceState::Abandoned
    }

    /// `Timeout` when the save was abandoned: it stops before writing more.
    fn check(&self, step: Step) -> Result<()> {
        if self.is_abandoned() {
            return Err(abandoned_error(step));
        }
        Ok(())
    }
}

fn abandoned_error(step: Step) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!("the background save of step {step} was abandoned after a timeout; it stopped before its commit and committed nothing"),
    )
    .with_step(step)
}

/// Everything one save needs once the caller's checks have passed.
pub(crate) struct SaveJob<'a> {
    pub step: Step,
    pub name: String,
    pub items: Composite<'a>,
    pub options: SaveOptions,
    pub write_metrics: bool,
    /// The step's time in the listing: when the blocking part of `save` finished (spec §8.4).
    pub time: DateTime<Utc>,
    /// Whether [`run`] must first check that no committed step is there unlisted (the caller
    /// deferred that check to the background thread).
    pub check_committed: bool,
    /// Whether the save was abandoned (checked between items and before the commit).
    pub fence: Arc<Fence>,
    /// How many items the save writes in all, the metrics item included (for progress).
    pub items_total: usize,
}

/// Refuses a save of `step` (directory `name`) when a committed step is already there though not
/// listed (written behind this manager's back): one request on an object store (in commit-file
/// mode the commit file alone says it), a `stat` on a local disk.
///
/// # Errors
/// `AlreadyExists` naming the step and the directory; `Storage` when the store fails.
pub(crate) fn check_not_committed(root: &OpenRoot, step: Step, name: &str) -> Result<()> {
    let store = root.store.as_ref();
    let committed_there = match root.protocol.mode() {
        AtomicityMode::CommitFile => root
            .protocol
            .is_committed(store, "", name)
            .map_err(|e| e.with_step(step))?,
        _ => {
            store
                .stat(name)
                .map_err(|e| e.with_step(step))?
                .is_some_and(|m| m.kind == EntryKind::Dir)
                && root.protocol.is_committed(store, "", name)?
        }
    };
    if committed_there {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "a committed directory for step {step} exists but was not listed; reload first"
            ),
        )
        .with_step(step)
        .with_path(store.location(name)));
    }
    Ok(())
}

/// The progress tracker of a save of `items_total` items at `step`, when someone listens.
fn save_tracker(root: &OpenRoot, step: Step, items_total: usize) -> Option<Arc<Tracker>> {
    root.options.progress.as_ref().map(|observer| {
        Tracker::new(
            Arc::clone(observer),
            Operation::Save,
            step,
            items_total,
            None,
        )
    })
}

/// A step being written: its tmp directory, the items written into it so far (not yet
/// committed), and what the step's metadata and checksum manifest will say.
pub(crate) struct Staged {
    step: Step,
    /// The step's final directory name.
    name: String,
    /// The step's working (tmp) directory.
    working: String,
    /// `(working item directory, final item directory)` of each item written.
    items: Vec<(String, String)>,
    handler_strings: BTreeMap<String, String>,
    checksums: ChecksumManifest,
    /// Files written without fsync ([`DeferredSyncStore`]): synced before the commit.
    unsynced: Vec<String>,
    meta: StepMetadata,
    /// Where the save's progress goes, when someone listens
    /// ([`crate::CheckpointManagerOptions::progress`]).
    progress: Option<Arc<Tracker>>,
}

impl Staged {
    /// Creates the working directory of step `name`, a save of `items_total` items (the
    /// metrics item included) in all.
    ///
    /// # Errors
    /// From the commit protocol's `prepare`, naming the step.
    pub(crate) fn begin(
        root: &OpenRoot,
        step: Step,
        name: &str,
        items_total: usize,
    ) -> Result<Staged> {
        root.check_writer().map_err(|e| e.with_step(step))?;
        let working = root
            .protocol
            .prepare_step(root.store.as_ref(), name, &root.claim)
            .map_err(|e| e.with_step(step))?;
        Ok(Staged::in_dir(root, step, name, working, items_total))
    }

    /// A step `name` being written into the working directory `working`, nothing written yet.
    fn in_dir(
        root: &OpenRoot,
        step: Step,
        name: &str,
        working: String,
        items_total: usize,
    ) -> Staged {
        Staged {
            step,
            name: name.to_string(),
            working,
            items: Vec::new(),
            handler_strings: BTreeMap::new(),
            checksums: ChecksumManifest::new(),
            unsynced: Vec::new(),
            meta: StepMetadata::started_at(root.options.clock.now()),
            progress: save_tracker(root, step, items_total),
        }
    }

    /// Sends the last progress report of this save (once it committed), when someone listens.
    pub(crate) fn report_finished(&self) {
        if let Some(tracker) = &self.progress {
            tracker.finish();
        }
    }

    /// The step `name` as a process of a multi-process job other than the primary writes its
    /// part of it — `items_total` items — into the working directory the primary prepared (no
    /// I/O here).
    pub(crate) fn join(root: &OpenRoot, step: Step, name: &str, items_total: usize) -> Staged {
        Staged::in_dir(
            root,
            step,
            name,
            root.protocol.working_path(name),
            items_total,
        )
    }

    /// What this process wrote into the step (a part of a multi-process save), for the primary:
    /// its items' handler strings and its files' checksums.
    ///
    /// # Errors
    /// `Corrupt` when the manifest cannot be put into JSON (not expected).
    pub(crate) fn part(&self) -> Result<serde_json::Value> {
        let checksums: serde_json::Value = serde_json::from_slice(&self.checksums.to_json_bytes())
            .map_err(|e| {
                Error::corrupt("the checksums of a part do not read back").with_source(e)
            })?;
        Ok(serde_json::json!({
            "handlers": self.handler_strings,
            "checksums": checksums,
        }))
    }

    /// Adds the part another process wrote ([`Staged::part`]) to what the primary commits: its
    /// items (committed with the step), handler strings and checksums (one manifest and one
    /// `item_handlers` map for the whole step).
    ///
    /// # Errors
    /// `Coordination` when the part is not what [`Staged::part`] makes.
    pub(crate) fn add_part(
        &mut self,
        root: &OpenRoot,
        process: usize,
        part: &serde_json::Value,
    ) -> Result<()> {
        let bad = |what: &str| {
            Error::new(
                ErrorKind::Coordination,
                format!("the part of process {process} is unreadable: {what}"),
            )
        };
        let handlers: BTreeMap<String, String> = part
            .get("handlers")
            .cloned()
            .map(serde_json::from_value)
            .ok_or_else(|| bad("no handlers"))?
            .map_err(|e| bad(&e.to_string()))?;
        let checksums = part.get("checksums").ok_or_else(|| bad("no checksums"))?;
        let bytes = serde_json::to_vec(checksums).map_err(|e| bad(&e.to_string()))?;
        let manifest = ChecksumManifest::from_json_bytes(&bytes).map_err(|e| bad(e.message()))?;
        self.checksums.merge(manifest);
        for (item, handler) in handlers {
            let final_item = format!("{}/{item}", self.working);
            let w = root.protocol.working_path(&final_item);
            // A pytree shard item is written by several processes and committed once.
            if self.items.iter().any(|(_, f)| *f == final_item) {
                continue;
            }
            self.items.push((w, final_item));
            self.handler_strings.insert(item, handler);
        }
        Ok(())
    }

    /// The primary prepares the working directories of `items` (pytree shard items, written by
    /// several processes), before any process writes into them.
    ///
    /// # Errors
    /// From the commit protocol's `prepare`, naming the step.
    pub(crate) fn prepare_shared(&self, root: &OpenRoot, items: &[&str]) -> Result<()> {
        for item in items {
            let final_item = format!("{}/{item}", self.working);
            root.protocol
                .prepare(root.store.as_ref(), &final_item)
                .map_err(|e| e.with_step(self.step))?;
        }
        Ok(())
    }

    /// The primary's merge of each pytree shard item (item name → the processes that wrote a
    /// part of it): their `ocdbt.process_<i>/` databases into the item's `manifest.ocdbt`
    /// ([`ckpt_handlers::orbax_array::merge_process_databases`]), the files written recorded in
    /// the checksum manifest.
    ///
    /// # Errors
    /// As the merge, naming the item and the step.
    pub(crate) fn merge_shards(
        &mut self,
        root: &OpenRoot,
        owners: &BTreeMap<String, Vec<usize>>,
    ) -> Result<()> {
        for (item, processes) in owners {
            let final_item = format!("{}/{item}", self.working);
            let w = root.protocol.working_path(&final_item);
            let recorder = RecordingStore::new(Arc::clone(&root.store), &w, item);
            ckpt_handlers::orbax_array::merge_process_databases(
                &ItemDir::new(&recorder, &w),
                processes,
            )
            .map_err(|e| naming_item(e, item).with_step(self.step))?;
            self.checksums.merge(recorder.take_manifest());
        }
        Ok(())
    }

    /// Writes `items` (and the metrics item when `metrics` is given) into the working directory,
    /// each by its handler, recording every file's checksum. With `defer_sync`, the files are
    /// written without fsync (through a [`DeferredSyncStore`]) and synced by [`Staged::commit`].
    ///
    /// # Errors
    /// The first handler or store error, naming the step (the caller removes the working
    /// directory: [`Staged::abandon`]).
    pub(crate) fn write_items(
        &mut self,
        root: &OpenRoot,
        items: &Composite<'_>,
        metrics: Option<&Metrics>,
        defer_sync: bool,
    ) -> Result<()> {
        let step = self.step;
        let metrics_value;
        let mut all: Vec<(&str, &SaveItem<'_>, Arc<dyn CheckpointHandler>)> = Vec::new();
        for (item, value) in items.sorted() {
            let handler = match root.registry.get(item) {
                Some(h) => h,
                None => ckpt_handlers::default_handler_for(value)?,
            };
            all.push((item, value, handler));
        }
        if let Some(m) = metrics {
            metrics_value = SaveItem::JsonValue(Cow::Owned(serde_json::Value::Object(m.clone())));
            let handler: Arc<dyn CheckpointHandler> =
                Arc::new(JsonHandler::with_filename(METRICS_ITEM_NAME));
            all.push((METRICS_ITEM_NAME, &metrics_value, handler));
            all.sort_by(|a, b| a.0.cmp(b.0));
        }
        let deferred =
            defer_sync.then(|| Arc::new(DeferredSyncStore::new(Arc::clone(&root.store))));
        let mut target: Arc<dyn Store> = match &deferred {
            Some(d) => d.clone(),
            None => Arc::clone(&root.store),
        };
        if let Some(tracker) = &self.progress {
            target = Arc::new(ProgressStore::new(target, Arc::clone(tracker)));
        }
        for (item, value, handler) in &all {
            let final_item = format!("{}/{item}", self.working);
            let w = match value {
                // A pytree shard of a job: every process writes into the item's working
                // directory, which the primary prepared before ([`Staged::prepare_shared`]).
                SaveItem::PyTreeShard(_, role) if !role.merge => {
                    root.protocol.working_path(&final_item)
                }
                _ => root.protocol.prepare(root.store.as_ref(), &final_item)?,
            };
            // Every file the handler writes gets its size and CRC32C recorded (issue 4).
            let recorder = RecordingStore::new(Arc::clone(&target), &w, item);
            if let Some(tracker) = &self.progress {
                tracker.start_item(item);
            }
            let written = handler.save(&ItemDir::new(&recorder, &w), value);
            if let Some(d) = &deferred {
                self.unsynced.extend(d.take_unsynced());
            }
            written.map_err(|e| naming_item(e, item).with_step(step))?;
            self.checksums.merge(recorder.take_manifest());
            self.handler_strings
                .insert((*item).to_string(), handler.type_string());
            self.items.push((w, final_item));
            if let Some(tracker) = &self.progress {
                tracker.finish_item();
            }
        }
        Ok(())
    }

    /// Syncs the files written without fsync, writes the checksum manifest, commits the items,
    /// writes the step metadata, and commits the step as `name`.
    ///
    /// # Errors
    /// The first store or protocol error (the caller removes the working directory).
    pub(crate) fn commit(
        &mut self,
        root: &OpenRoot,
        job: &SaveJob<'_>,
        phase: &PhaseCell,
    ) -> Result<()> {
        let store = root.store.as_ref();
        job.fence.check(job.step)?;
        sync_files(store, &self.unsynced)?;
        self.checksums.write_to(store, &self.working)?;
        set_phase(phase, Phase::Committing);
        self.meta.item_handlers =
            Some(ItemHandlers::Map(std::mem::take(&mut self.handler_strings)));
        self.meta.custom_metadata = job.options.custom_metadata.clone().unwrap_or_default();
        for (w, final_item) in &self.items {
            match root.protocol.commit(store, w, final_item) {
                // In commit-file mode the item lies in a step directory this writer claimed: a
                // commit file already there is its own earlier (retried) create.
                Err(e)
                    if e.kind() == ErrorKind::AlreadyExists
                        && root.protocol.mode() == AtomicityMode::CommitFile
                        && root.claim.is_held_in(store, &self.working)? => {}
                other => other?,
            }
        }
        // Written once, complete, just before the step commits: the working directory is
        // invisible until then (a tmp name, or no commit file), so earlier versions of the file
        // served no reader, and each cost a durable write (an fsync, or a PUT on an object store).
        self.meta.commit_timestamp_nsecs = root.options.clock.now().timestamp_nanos_opt();
        let meta_path = ckpt_core::layout::step_metadata_file(&self.working);
        store.write(&meta_path, &self.meta.to_json_bytes()?)?;
        // Last chance to find the root's writer guard lost before the step becomes visible; past
        // the fence, a timeout no longer abandons this save.
        root.check_writer()?;
        if !job.fence.enter_commit() {
            return Err(abandoned_error(job.step));
        }
        root.protocol
            .commit_step(store, &self.working, &job.name, &root.claim)
    }

    /// Removes what a save that failed with `e` wrote (best effort, logged) — never a step
    /// directory that holds a commit file or another writer's claim
    /// ([`ckpt_storage::CommitProtocol::abandon_step`]) — and returns `e` naming the step
    /// (unless it names one already).
    pub(crate) fn abandon(self, root: &OpenRoot, e: Error) -> Error {
        let removed =
            root.protocol
                .abandon_step(root.store.as_ref(), &self.working, &self.name, &root.claim);
        if let Err(cleanup) = removed {
            tracing::warn!(step = self.step, error = %cleanup, "could not remove the tmp directory of a failed save");
        }
        if e.step().is_some() {
            e
        } else {
            e.with_step(self.step)
        }
    }
}

/// Writes whatever of the step is left to write (the items of `job`, and the metrics item),
/// syncs and commits the step, records it, and applies retention.
/// `staged` is the step as the caller began it (`None`: begun here). On failure the working
/// directory is removed (best effort), nothing is recorded and nothing is deleted.
pub(crate) fn run(
    root: &OpenRoot,
    job: &SaveJob<'_>,
    staged: Option<Staged>,
    phase: &PhaseCell,
) -> Result<()> {
    let step = job.step;
    let fail = |e: Error| {
        set_phase(phase, Phase::Done);
        if e.step().is_some() {
            e
        } else {
            e.with_step(step)
        }
    };
    job.fence.check(step).map_err(fail)?;
    if job.check_committed {
        check_not_committed(root, step, &job.name).map_err(fail)?;
    }
    set_phase(phase, Phase::WritingItems);
    let mut staged = match staged {
        Some(s) => s,
        None => Staged::begin(root, step, &job.name, job.items_total).map_err(fail)?,
    };
    let metrics = job
        .write_metrics
        .then(|| job.options.metrics.clone().unwrap_or_default());
    let written = staged
        .write_items(root, &job.items, metrics.as_ref(), false)
        .and_then(|()| staged.commit(root, job, phase));
    if let Err(e) = written {
        return Err(fail(staged.abandon(root, e)));
    }
    staged.report_finished();
    set_phase(phase, Phase::Retention);
    let info = CheckpointInfo::new(step, job.time, job.options.metrics.clone());
    root.state().insert(info, job.name.clone());
    crate::retention::after_save(root);
    set_phase(phase, Phase::Done);
    Ok(())
}

/// Warns (once, at the save of `step`) about each metric whose value is `null`: what a NaN or
/// ±infinite `f64` becomes in JSON (`serde_json::Value` cannot hold it), written so to disk, and
/// ranked below every number by `BestN` (never best; the first to go).
pub(crate) fn warn_unusable_metrics(step: Step, metrics: Option<&Metrics>) {
    for (metric, value) in metrics.into_iter().flatten() {
        if value.is_null() {
            tracing::warn!(
                step,
                metric = metric.as_str(),
                "metric {metric:?} of step {step} is null (a NaN or infinite value becomes null in JSON): \
                 it is written as null and has no usable value for ranking"
            );
        }
    }
}

/// How deeply arrays and objects nest in the JSON object `map` (as a whole file: `{}` is 1);
/// the walk stops beyond `limit`.
pub(crate) fn map_nesting_depth(map: &Metrics, limit: usize) -> usize {
    let inner = map
        .values()
        .map(|v| pyjson::value_nesting_depth(v, limit))
        .max()
        .unwrap_or(0);
    1 + inner
}

/// Refuses, before anything is written, JSON that a restore could not read back (issue 11,
/// item 4): a JSON value item, the metrics (`<step>/metrics/metrics`) or the custom metadata
/// (inside `_CHECKPOINT_METADATA`, one level down) nested deeper than the reader's limit
/// ([`pyjson::MAX_NESTING_DEPTH`]). Borrowed `serde::Serialize` items are checked when they are
/// serialized (a capture, or the JSON handler itself).
///
/// # Errors
/// `InvalidArgument` naming the item (or `metrics` / `custom_metadata`), its depth, the limit
/// and the step.
pub(crate) fn check_json_depth(
    step: Step,
    items: &Composite<'_>,
    options: &SaveOptions,
) -> Result<()> {
    let max = pyjson::MAX_NESTING_DEPTH;
    for (name, item) in items.sorted() {
        if let SaveItem::JsonValue(v) = item {
            let depth = pyjson::value_nesting_depth(v, max);
            pyjson::check_nesting_depth(&format!("item {name:?}"), depth, max)
                .map_err(|e| e.with_step(step))?;
        }
    }
    if let Some(m) = &options.metrics {
        pyjson::check_nesting_depth("the metrics", map_nesting_depth(m, max), max)
            .map_err(|e| e.with_step(step))?;
    }
    if let Some(m) = &options.custom_metadata {
        pyjson::check_nesting_depth(
            "the custom metadata (inside _CHECKPOINT_METADATA)",
            map_nesting_depth(m, max),
            max - 1,
        )
        .map_err(|e| e.with_step(step))?;
    }
    Ok(())
}

/// `e` (a handler's error for item `item`) naming the item, if it is bad input
/// (`InvalidArgument`) whose message does not name it yet.
pub(crate) fn naming_item(e: Error, item: &str) -> Error {
    let quoted = format!("{item:?}");
    if e.kind() != ErrorKind::InvalidArgument || e.message().contains(&quoted) {
        return e;
    }
    e.prefixed(&format!("item {quoted}: "))
}

/// Checks the items of a save before anything is written (`part`: one process's part of a
/// multi-process save, which may be empty).
pub(crate) fn check_items(
    step: Step,
    items: &Composite<'_>,
    write_metrics: bool,
    part: bool,
) -> Result<()> {
    if items.is_empty() && !part {
        return Err(Error::invalid_argument(format!(
            "nothing to save for step {step}: the item set is empty"
        ))
        .with_step(step));
    }
    if let Some(name) = items.duplicates().first() {
        return Err(Error::invalid_argument(format!(
            "item {name:?} was added twice to the items of step {step}; each item needs a name \
             of its own; nothing was saved"
        ))
        .with_step(step));
    }
    for name in items.names() {
        ckpt_core::validate_item_name(name).map_err(|e| e.with_step(step))?;
        if name == STEP_METADATA_FILE
            || name == ckpt_core::COMMIT_SUCCESS_FILE
            || name == ckpt_core::STEP_CLAIM_FILE
            || name == ckpt_storage::MANIFEST_FILE
        {
            return Err(
                Error::invalid_argument(format!("item name {name:?} is reserved")).with_step(step),
            );
        }
        if name == METRICS_ITEM_NAME {
            // Without metrics too: a step's `metrics` directory is read back as its metrics.
            let why = if write_metrics {
                "cannot be saved together with metrics"
            } else {
                "is where a step's metrics are kept (SaveOptions::metrics), and is read back as them"
            };
            return Err(Error::invalid_argument(format!(
                "an item named \"metrics\" {why}; rename the item"
            ))
            .with_step(step));
        }
    }
    Ok(())
}
