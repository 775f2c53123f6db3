//! Saving: `save` as a short sequence (the gate, the plan, the staging, then the rest on this
//! thread or in the background), the save in flight, and waiting for it.

use super::{lock, CheckpointManager, SaveOutcome};
use crate::save::{self, Fence, Phase, PhaseCell, SaveJob, Staged};
use crate::save_plan::{Rest, SavePlan};
use crate::{Composite, SaveOptions};
use ckpt_core::{CheckpointInfo, Error, ErrorKind, Result, Step};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A save running on the background thread.
#[derive(Debug)]
pub(super) struct InFlight {
    pub(super) info: CheckpointInfo,
    pub(super) done: mpsc::Receiver<Result<()>>,
    pub(super) handle: JoinHandle<()>,
    pub(super) phase: PhaseCell,
    pub(super) started: Instant,
    /// Abandoned by a `Timeout` or not; an abandoned save stays here until its thread stops.
    pub(super) fence: Arc<Fence>,
}

impl InFlight {
    /// Whether the save has finished (committed and retention run, or failed): its result is
    /// then sent or about to be. The thread itself may still be freeing the captured items.
    pub(super) fn is_done(&self) -> bool {
        *lock(&self.phase) == Phase::Done || self.handle.is_finished()
    }
}
impl CheckpointManager {
    /// Saves `items` as `step` (spec §3.5), returning `Ok(false)` when the save decision says no
    /// (or, read-only, without `force`). Writes every item into the step's tmp directory, commits
    /// items then the step, records the step, then applies the preservation policy over all steps
    /// and deletes what it does not keep — possibly the new step itself. A metric whose value is
    /// `null` (what a NaN becomes, see [`SaveOptions::metrics`]) is logged as a warning naming
    /// the step and the metric.
    ///
    /// With `enable_async_checkpointing` (the default) `save` returns `Ok(true)` as soon as the
    /// items no longer need the caller's memory, and the rest runs on a background thread: items
    /// moved in are not copied; JSON items are serialized once; borrowed tensors and bytes are
    /// copied into the staging pool (issue 14,
    /// [`crate::CheckpointManagerOptions::async_staging_max_bytes`]: memory kept and reused
    /// from one save to the next, no storage call per item), and the
    /// background thread writes them (with fsync) or uploads them, commits, and gives the
    /// buffers back. Borrowed pytrees and `SaveItem::Custom` items (and, with the pool off or
    /// full, borrowed tensors and bytes) are, on a local store
    /// ([`ckpt_storage::Capabilities::local`]), written into the step's tmp directory before
    /// `save` returns, without fsync (the background thread fsyncs them, then commits), and on
    /// an object store copied once (a borrowed `Custom` item cannot be copied: there the whole
    /// save is written before `save` returns). The caller may change or drop its items as soon
    /// as `save` returns.
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
    ///   [`crate::CheckpointManagerOptions::allow_missing_best_metric`]) — nothing is written;
    /// - `InvalidArgument` naming the item when a JSON item (or the metrics, or the custom
    ///   metadata) is nested deeper than a restore can read back
    ///   ([`ckpt_core::pyjson::MAX_NESTING_DEPTH`] levels of arrays and objects) — nothing is
    ///   written (a borrowed `serde::Serialize` item of a synchronous save is measured when its
    ///   handler serializes it: the step's tmp directory is then removed);
    /// - `Timeout` when waiting for the previous save takes longer than `async_timeout_secs`;
    /// - `Handler`/`Storage`/… from writing what is written before `save` returns (a synchronous
    ///   save; of an asynchronous one on a local store, the borrowed items that are not staged),
    ///   naming the step; the tmp directory is removed and no step becomes visible. Failures of
    ///   the background part — including the write of staged items (before issue 14, a failed
    ///   write of borrowed tensors or bytes on a local disk came from `save` itself) — come from
    ///   the next call instead.
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
            let decision = self.agreed(step)?.outcome;
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
        if let Some(job) = &self.job {
            super::job_save::save_in_job(&self.root, job, step, items, options)?;
            return Ok(SaveOutcome::Saved);
        }
        let root = &self.root;
        let plan = SavePlan::new(root, step, &items, options)?;
        let (staged, rest) = plan.stage(root, items, self.staging.as_deref())?;
        let phase: PhaseCell = Arc::new(Mutex::new(Phase::Queued));
        let fence = Arc::new(Fence::default());
        let time = root.options.clock.now();
        let (items, staged_items) = match rest {
            Rest::Now(items) => {
                let job = plan.job(items, time, fence);
                return save::run(root, &job, staged, &phase).map(|()| SaveOutcome::Saved);
            }
            Rest::Background { items, staged } => (items, staged),
        };
        let job = plan.job(items, time, Arc::clone(&fence));
        self.start_background(job, staged, staged_items, phase, fence)?;
        Ok(SaveOutcome::Saved)
    }

    /// Runs the rest of a save (`job`, begun as `staged`) on a background thread and records it
    /// as the save in flight. The buffers of the items named in `staged_items` (sorted) go back
    /// to the staging pool when the save has finished, before its result is reported, so the
    /// next save finds them there.
    ///
    /// # Errors
    /// `Storage` naming the step when the thread cannot be started.
    pub(super) fn start_background(
        &self,
        job: SaveJob<'static>,
        staged: Option<Staged>,
        staged_items: Vec<String>,
        phase: PhaseCell,
        fence: Arc<Fence>,
    ) -> Result<()> {
        let step = job.step;
        let info = CheckpointInfo::new(step, job.time, job.options.metrics.clone());
        let root = &self.root;
        let (tx, done) = mpsc::channel();
        let (core2, phase2) = (Arc::clone(root), Arc::clone(&phase));
        let pool = self.staging.clone().filter(|_| !staged_items.is_empty());
        let handle = std::thread::Builder::new()
            .name(format!("ckpt-save-{step}"))
            .spawn(move || {
                let mut job = job;
                let result = save::run(&core2, &job, staged, &phase2);
                // Never keep the open root (and its writer lock) alive while freeing memory.
                drop(core2);
                if let Some(pool) = pool {
                    pool.give_back(job.items.take_staging_buffers(&staged_items));
                }
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
        Ok(())
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

    pub(super) fn timeout(&self) -> Duration {
        Duration::from_secs(self.root.options.async_timeout_secs)
    }

    /// Waits for `f` at most `async_timeout_secs`. A save that times out is abandoned: fenced so
    /// that it commits nothing (unless it is already committing), and kept as the save in flight
    /// until its thread stops, so that no other save runs beside it (issue 11, item 3).
    pub(super) fn wait_for(&self, f: InFlight) -> Result<()> {
        let step = f.info.step;
        match f.done.recv_timeout(self.timeout()) {
            Ok(result) => {
                // Not joined: after reporting, the thread only frees the captured items.
                drop(f.handle);
                if f.fence.is_abandoned() {
                    // Its Timeout was reported when it was abandoned; what it ended with is not
                    // news (it committed nothing).
                    if let Err(e) = result {
                        tracing::debug!(step, error = %e.chain(), "an abandoned background save stopped");
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
    pub(super) fn report_finished(&self) -> Result<()> {
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
    pub(crate) fn settle_quietly(&self) {
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

    pub(super) fn settle_if_in_flight(&self, step: Step) {
        let same = lock(&self.in_flight)
            .as_ref()
            .is_some_and(|f| f.info.step == step);
        if same {
            self.settle_quietly();
        }
    }
}
