//! Waiting for new checkpoints, for evaluator jobs (as Orbax's `checkpoint_utils`, spec §5.12:
//! an evaluator must not open a second writing manager on a trainer's root).
//!
//! [`StepWatcher`] opens the root read-only and polls its listing: each committed step after the
//! last one it gave is yielded once, in ascending order — never a tmp directory or an
//! uncommitted step (the listing holds committed steps only, on local disk and on object stores
//! alike). Deviation: Orbax's `checkpoints_iterator` yields only the latest step of each round
//! and can skip steps in between; an evaluator here sees every step that is still there when it
//! looks (a step that retention deleted before the watcher saw it is skipped, not an error).
//! Orbax's snapshots (`_SNAPSHOTS/`, a copy of the step held while it is evaluated) are not made.

use crate::{CheckpointManager, CheckpointManagerOptions};
use ckpt_core::{CheckpointInfo, ErrorKind, Result, Step};
use ckpt_storage::Store;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a [`StepWatcher`] reads.
enum Root {
    Uri(String),
    Store(Arc<dyn Store>),
}

/// A read-only waiter for the newly committed steps of a root (see the module docs). Use it as
/// an iterator of `Result<CheckpointInfo>`, which ends at the timeout, or call
/// [`StepWatcher::wait_for_new_step`].
pub struct StepWatcher {
    root: Root,
    options: CheckpointManagerOptions,
    reader: Option<CheckpointManager>,
    last: Option<Step>,
    pending: VecDeque<CheckpointInfo>,
    poll: Duration,
    timeout: Option<Duration>,
    timeout_fn: Option<Box<dyn FnMut() -> bool + Send>>,
    until: Option<Step>,
    ended: bool,
}

impl std::fmt::Debug for StepWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepWatcher")
            .field("last", &self.last)
            .field("poll", &self.poll)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl StepWatcher {
    /// A watcher of the root at `uri` (a path or a bucket URI, as [`CheckpointManager::open`]),
    /// polling every second with no timeout, starting before the first step. The root need not
    /// exist yet: until it does, it has no steps.
    pub fn new(uri: impl Into<String>) -> Self {
        Self::with_root(Root::Uri(uri.into()))
    }

    /// A watcher of the root `store` (as [`StepWatcher::new`]).
    pub fn with_store(store: Arc<dyn Store>) -> Self {
        Self::with_root(Root::Store(store))
    }

    fn with_root(root: Root) -> Self {
        StepWatcher {
            root,
            options: CheckpointManagerOptions::default(),
            reader: None,
            last: None,
            pending: VecDeque::new(),
            poll: Duration::from_secs(1),
            timeout: None,
            timeout_fn: None,
            until: None,
            ended: false,
        }
    }

    /// How the root's steps are named and read (`step_prefix`, `step_format_fixed_length`,
    /// `step_name_format`, `verify_checksums`, …); the watcher always opens the root read-only
    /// (`read_only` and `create` are overridden).
    pub fn options(mut self, options: CheckpointManagerOptions) -> Self {
        self.options = options;
        self
    }

    /// Yield only steps after `step` (Orbax's `until_step = step + 1`).
    pub fn after(mut self, step: Step) -> Self {
        self.last = Some(step);
        self
    }

    /// Seconds between two looks at the listing (Orbax `seconds_to_sleep`, default 1), at least
    /// 0.01: a smaller value, a negative one or NaN is taken as 0.01 (a loop without pause would
    /// list an object store as fast as it answers, paying a request each time).
    pub fn poll_interval_secs(mut self, secs: f64) -> Self {
        self.poll = secs_duration(secs).max(std::time::Duration::from_millis(10));
        self
    }

    /// Give up waiting after this many seconds without a new step (Orbax `timeout`, measured from
    /// the start of each wait; default `None`: wait for ever).
    pub fn timeout_secs(mut self, secs: Option<f64>) -> Self {
        self.timeout = secs.map(secs_duration);
        self
    }

    /// At a timeout, whether to stop (`true`) or keep waiting (`false`): as Orbax's `timeout_fn`,
    /// e.g. "the trainer has finished". When it says stop, the listing is read once more, so a
    /// step committed before the condition turned true is still given. Without one, a timeout
    /// stops.
    pub fn timeout_fn(mut self, done: impl FnMut() -> bool + Send + 'static) -> Self {
        self.timeout_fn = Some(Box::new(done));
        self
    }

    /// As an iterator, end after giving a step at or after `step` (e.g. the trainer's last
    /// step): a done condition that needs no timeout.
    pub fn until(mut self, step: Step) -> Self {
        self.until = Some(step);
        self
    }

    /// The last step given (or set with [`StepWatcher::after`]).
    pub fn last_step(&self) -> Option<Step> {
        self.last
    }

    /// The next committed step after the last one given, waiting for it: `Ok(None)` at the
    /// timeout (when the timeout function, if any, says stop).
    ///
    /// # Errors
    /// As [`CheckpointManager::open`] and [`CheckpointManager::reload`] (e.g. `Storage` when the
    /// store fails after its retries; `Corrupt` for a broken root metadata), except `NotFound`
    /// for a root that does not exist yet, which waits.
    pub fn wait_for_new_step(&mut self) -> Result<Option<CheckpointInfo>> {
        let start = Instant::now();
        loop {
            if let Some(info) = self.pending.pop_front() {
                if info.metrics.is_none() && self.vanished(info.step) {
                    // Deleted (retention of the writer) between the listing and the read of its
                    // metrics: gone, not a step without metrics. Skipped, as if never listed.
                    continue;
                }
                self.last = Some(info.step);
                return Ok(Some(info));
            }
            self.look()?;
            if !self.pending.is_empty() {
                continue;
            }
            // Deviation: Orbax stops when the next sleep would end past the timeout (up to one
            // poll interval early); here the watcher waits the whole timeout, sleeping at most
            // what is left of it, so a step committed just before the timeout is still seen.
            let out_of_time = self.timeout.is_some_and(|t| start.elapsed() >= t);
            if out_of_time {
                match self.timeout_fn.as_mut() {
                    None => return Ok(None),
                    Some(done) => {
                        if done() {
                            // A step committed after the look above and before the done
                            // condition turned true (the trainer's last) is still given.
                            self.look()?;
                            if self.pending.is_empty() {
                                return Ok(None);
                            }
                            continue;
                        }
                    }
                }
            }
            let nap = match self.timeout {
                Some(t) => self.poll.min(t.saturating_sub(start.elapsed())),
                None => self.poll,
            };
            std::thread::sleep(nap);
        }
    }

    /// Whether `step`, listed as committed by the last look, is no longer there (checked after
    /// its files were read, so a step read while being deleted is caught: a rename-style delete
    /// removes its directory at once, a commit-file delete removes its marker first). A failing
    /// check counts as not vanished (the step is given as read).
    fn vanished(&self, step: Step) -> bool {
        let Some(m) = &self.reader else {
            return false;
        };
        let name = m.step_dir_name(step);
        let store = m.store().as_ref();
        if matches!(m.root.protocol.is_committed(store, "", &name), Ok(false)) {
            return true;
        }
        // Atomic rename commits by name alone: a directory that is gone was deleted.
        store.capabilities().directories && matches!(store.stat(&name), Ok(None))
    }

    /// Reads the listing once, queueing the committed steps after the last one given.
    fn look(&mut self) -> Result<()> {
        if self.reader.is_none() {
            let mut options = self.options.clone();
            options.read_only = true;
            options.create = false;
            let opened = match &self.root {
                Root::Uri(uri) => CheckpointManager::open(uri, options),
                Root::Store(store) => CheckpointManager::with_store(Arc::clone(store), options),
            };
            match opened {
                Ok(m) => self.reader = Some(m),
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            }
        } else if let Some(m) = self.reader.as_mut() {
            m.reload()?;
        }
        if let Some(m) = &self.reader {
            let last = self.last;
            self.pending = m
                .checkpoints()
                .into_iter()
                .filter(|c| last.is_none_or(|l| c.step > l))
                .collect();
        }
        Ok(())
    }
}

impl Iterator for StepWatcher {
    type Item = Result<CheckpointInfo>;

    /// The next new step ([`StepWatcher::wait_for_new_step`]); `None` at the timeout, after the
    /// step of [`StepWatcher::until`], and after an error (which is given once).
    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        match self.wait_for_new_step() {
            Ok(Some(info)) => {
                if self.until.is_some_and(|u| info.step >= u) {
                    self.ended = true;
                }
                Some(Ok(info))
            }
            Ok(None) => {
                self.ended = true;
                None
            }
            Err(e) => {
                self.ended = true;
                Some(Err(e))
            }
        }
    }
}

/// Waits for a committed step of the root at `uri` at or after `until_step` (any step when
/// `None`) and returns the latest one, or `Ok(None)` after `timeout_secs` (as Orbax
/// `checkpoint_utils.wait_for_new_checkpoint`, which returns -1 then; no snapshot is made).
/// Polls every `poll_secs` seconds.
///
/// # Errors
/// As [`StepWatcher::wait_for_new_step`].
pub fn wait_for_new_checkpoint(
    uri: &str,
    until_step: Option<Step>,
    poll_secs: f64,
    timeout_secs: Option<f64>,
) -> Result<Option<Step>> {
    let mut w = StepWatcher::new(uri)
        .poll_interval_secs(poll_secs)
        .timeout_secs(timeout_secs);
    if let Some(u) = until_step {
        if u > 0 {
            w = w.after(u - 1);
        }
    }
    let Some(first) = w.wait_for_new_step()? else {
        return Ok(None);
    };
    // The latest of those committed now.
    Ok(Some(w.pending.back().map_or(first.step, |c| c.step)))
}

fn secs_duration(secs: f64) -> Duration {
    if secs.is_finite() && secs > 0.0 {
        Duration::from_secs_f64(secs.min(1e9))
    } else {
        Duration::ZERO
    }
}
