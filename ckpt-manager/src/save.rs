//! The write path of a save: items into the step's tmp directory, item commits, step commit,
//! then retention over the committed steps. Runs on the caller's thread (synchronous saves) or on
//! the background save thread (asynchronous saves, spec §5.8).

use crate::shared::{Core, RetentionRun};
use crate::{Composite, SaveOptions};
use chrono::{DateTime, Utc};
use ckpt_core::{
    CheckpointInfo, Error, ErrorKind, ItemHandlers, Result, Step, StepMetadata, METRICS_ITEM_NAME,
    STEP_METADATA_FILE,
};
use ckpt_handlers::{CheckpointHandler, ItemDir, JsonHandler, SaveItem};
use ckpt_policy::{PreservationContext, Verdict};
use ckpt_storage::{AtomicityMode, ChecksumManifest, EntryKind, RecordingStore};
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
}

/// Refuses a save of `step` (directory `name`) when a committed step is already there though not
/// listed (written behind this manager's back): one request on an object store (in commit-file
/// mode the commit file alone says it), a `stat` on a local disk.
///
/// # Errors
/// `AlreadyExists` naming the step and the directory; `Storage` when the store fails.
pub(crate) fn check_not_committed(core: &Core, step: Step, name: &str) -> Result<()> {
    let store = core.store.as_ref();
    let committed_there = match core.protocol.mode() {
        AtomicityMode::CommitFile => core
            .protocol
            .is_committed(store, "", name)
            .map_err(|e| e.with_step(step))?,
        _ => {
            store
                .stat(name)
                .map_err(|e| e.with_step(step))?
                .is_some_and(|m| m.kind == EntryKind::Dir)
                && core.protocol.is_committed(store, "", name)?
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

/// Writes and commits the step, records it, and applies retention. On failure the tmp directory
/// is removed (best effort), nothing is recorded and nothing is deleted.
pub(crate) fn run(core: &Core, job: &SaveJob<'_>, phase: &PhaseCell) -> Result<()> {
    let step = job.step;
    if job.check_committed {
        if let Err(e) = check_not_committed(core, step, &job.name) {
            set_phase(phase, Phase::Done);
            return Err(e);
        }
    }
    set_phase(phase, Phase::WritingItems);
    let working = core
        .protocol
        .prepare(core.store.as_ref(), &job.name)
        .map_err(|e| e.with_step(step))?;
    if let Err(e) = write_step(core, job, &working, phase) {
        if let Err(cleanup) = core.store.delete_prefix(&working) {
            tracing::warn!(step, error = %cleanup, "could not remove the tmp directory of a failed save");
        }
        set_phase(phase, Phase::Done);
        return Err(if e.step().is_some() {
            e
        } else {
            e.with_step(step)
        });
    }
    set_phase(phase, Phase::Retention);
    let info = CheckpointInfo::new(step, job.time, job.options.metrics.clone());
    core.state().insert(info, job.name.clone());
    apply_retention(core);
    set_phase(phase, Phase::Done);
    Ok(())
}

fn write_step(core: &Core, job: &SaveJob<'_>, working: &str, phase: &PhaseCell) -> Result<()> {
    let store = core.store.as_ref();
    let step = job.step;
    let meta_path = format!("{working}/{STEP_METADATA_FILE}");
    // Written once, complete, just before the step commits: the working directory is invisible
    // until then (a tmp name, or no commit file), so earlier versions of the file served no
    // reader, and each cost a durable write (an fsync, or a PUT on an object store).
    let mut meta = StepMetadata::started_at(core.options.clock.now());

    let metrics_value;
    let mut all: Vec<(&str, &SaveItem<'_>, Arc<dyn CheckpointHandler>)> = Vec::new();
    for (item, value) in job.items.sorted() {
        let handler = match core.registry.get(item) {
            Some(h) => h,
            None => ckpt_handlers::default_handler_for(value)?,
        };
        all.push((item, value, handler));
    }
    if job.write_metrics {
        let m = job.options.metrics.clone().unwrap_or_default();
        metrics_value = SaveItem::JsonValue(Cow::Owned(serde_json::Value::Object(m)));
        let handler: Arc<dyn CheckpointHandler> =
            Arc::new(JsonHandler::with_filename(METRICS_ITEM_NAME));
        all.push((METRICS_ITEM_NAME, &metrics_value, handler));
        all.sort_by(|a, b| a.0.cmp(b.0));
    }

    let mut handler_strings = BTreeMap::new();
    let mut item_working = Vec::new();
    let mut checksums = ChecksumManifest::new();
    for (item, value, handler) in &all {
        let final_item = format!("{working}/{item}");
        let w = core.protocol.prepare(store, &final_item)?;
        // Every file the handler writes gets its size and CRC32C recorded (issue 4).
        let recorder = RecordingStore::new(Arc::clone(&core.store), &w, item);
        handler
            .save(&ItemDir::new(&recorder, &w), value)
            .map_err(|e| e.with_step(step))?;
        checksums.merge(recorder.take_manifest());
        handler_strings.insert((*item).to_string(), handler.type_string());
        item_working.push((w, final_item));
    }
    checksums.write_to(store, working)?;
    set_phase(phase, Phase::Committing);
    meta.item_handlers = Some(ItemHandlers::Map(handler_strings));
    meta.custom_metadata = job.options.custom_metadata.clone().unwrap_or_default();
    for (w, final_item) in &item_working {
        core.protocol.commit(store, w, final_item)?;
    }
    meta.commit_timestamp_nsecs = core.options.clock.now().timestamp_nanos_opt();
    store.write(&meta_path, &meta.to_json_bytes()?)?;
    core.protocol.commit(store, working, &job.name)
}

/// Runs the preservation policy over the committed steps and deletes what it does not keep
/// (spec §4.4). A delete that fails is logged and the step stays listed (retried next time).
///
/// The decision uses the policy's keep flags on the listing in place (no copy of it, no
/// reasons: well under a millisecond for 10,000 steps with the built-in policies); the
/// verdicts with their reasons are computed only when wanted: for the log line of a deleted
/// step when `info` logging is on, and by `last_retention`. A policy returning too few flags
/// keeps the steps it says nothing about.
pub(crate) fn apply_retention(core: &Core) {
    let cx = PreservationContext {
        now: core.options.clock.now(),
    };
    let to_delete: Vec<Step> = {
        let mut st = core.state();
        let (steps, to_delete) = retention_decision(core, &st.checkpoints, &cx);
        tracing::debug!(
            steps = steps.len(),
            "retention decided over the committed steps"
        );
        st.last_retention = Some(RetentionRun {
            steps,
            cx,
            removed: BTreeMap::new(),
            verdicts: None,
        });
        to_delete
    };
    let reasons: BTreeMap<Step, Verdict> =
        if !to_delete.is_empty() && tracing::enabled!(tracing::Level::INFO) {
            let verdicts = core.state().retention_verdicts(core.preservation.as_ref());
            verdicts.into_iter().filter(|(_, v)| !v.keep).collect()
        } else {
            BTreeMap::new()
        };
    for step in to_delete {
        let reason = reasons.get(&step).map_or("", |v| v.reason.as_str());
        tracing::info!(step, reason, "deleting step");
        if let Err(e) = core.delete_step(step) {
            tracing::error!(step, error = %e, "retention could not delete the step; it stays listed");
        }
    }
}

/// The steps of `checkpoints` and those of them the preservation policy does not keep (from its
/// keep flags; a missing flag keeps), both ascending.
pub(crate) fn retention_decision(
    core: &Core,
    checkpoints: &[CheckpointInfo],
    cx: &PreservationContext,
) -> (Vec<Step>, Vec<Step>) {
    let flags = core.preservation.keep_flags(checkpoints, cx);
    let steps: Vec<Step> = checkpoints.iter().map(|c| c.step).collect();
    let to_delete = steps
        .iter()
        .zip(flags.into_iter().chain(std::iter::repeat(true)))
        .filter(|(_, keep)| !keep)
        .map(|(s, _)| *s)
        .collect();
    (steps, to_delete)
}

/// Checks the items of a save before anything is written.
pub(crate) fn check_items(step: Step, items: &Composite<'_>, write_metrics: bool) -> Result<()> {
    if items.is_empty() {
        return Err(Error::invalid_argument(format!(
            "nothing to save for step {step}: the item set is empty"
        ))
        .with_step(step));
    }
    for name in items.names() {
        ckpt_core::validate_item_name(name).map_err(|e| e.with_step(step))?;
        if name == STEP_METADATA_FILE || name == ckpt_core::COMMIT_SUCCESS_FILE {
            return Err(
                Error::invalid_argument(format!("item name {name:?} is reserved")).with_step(step),
            );
        }
        if write_metrics && name == METRICS_ITEM_NAME {
            return Err(Error::invalid_argument(
                "an item named \"metrics\" cannot be saved together with metrics; rename the item",
            )
            .with_step(step));
        }
    }
    Ok(())
}
