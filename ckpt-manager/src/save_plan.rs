//! The first two parts of a save: the plan (every check made before anything is written) and
//! the staging of what must be written before `save` returns. The third part, writing the rest
//! and committing, is [`crate::save::run`], on the caller's thread or in the background.

use crate::composite::Captured;
use crate::open_root::OpenRoot;
use crate::save::{self, Fence, SaveJob, Staged};
use crate::staging::StagingPool;
use crate::{Composite, SaveOptions};
use chrono::{DateTime, Utc};
use ckpt_core::{CheckpointInfo, Error, ErrorKind, Result, Step};
use ckpt_storage::AtomicityMode;
use std::sync::Arc;

/// A save that passed every check: what it writes and how.
pub(crate) struct SavePlan {
    pub step: Step,
    /// The step directory's name.
    pub name: String,
    pub options: SaveOptions,
    /// Whether the metrics item is written.
    pub write_metrics: bool,
    /// Whether the background thread, not the caller, checks that no committed step is there
    /// unlisted (a network round trip on an object store).
    pub deferred_check: bool,
    /// Whether the rest of the save runs in the background.
    pub background: bool,
    /// How many items the save writes in all, the metrics item included.
    pub items_total: usize,
}

/// Where the items of a planned save are written after staging.
pub(crate) enum Rest<'a> {
    /// Before `save` returns (a synchronous save, or items that cannot be captured).
    Now(Composite<'a>),
    /// On the background thread: every item owned.
    Background {
        /// The items.
        items: Composite<'static>,
        /// The names (sorted) of the items copied into the staging pool, whose buffers go back
        /// to it when the save has finished.
        staged: Vec<String>,
    },
}

impl SavePlan {
    /// Checks a save of `items` at `step` (the caller has checked read-only and the save
    /// decision, and waited for the previous save).
    ///
    /// # Errors
    /// As [`crate::CheckpointManager::save`], for everything refused before anything is
    /// written: `AlreadyExists`, `InvalidArgument` (items, best metric, nesting depth),
    /// `InvalidConfig` (a ranking metric no step has), `Storage`.
    pub fn new(
        root: &OpenRoot,
        step: Step,
        items: &Composite<'_>,
        options: SaveOptions,
    ) -> Result<SavePlan> {
        SavePlan::new_as(root, step, items, options, false)
    }

    /// As [`SavePlan::new`]; a `part` (one process's part of a multi-process save) may be
    /// empty and never runs in the background.
    ///
    /// # Errors
    /// As [`SavePlan::new`].
    pub fn new_as(
        root: &OpenRoot,
        step: Step,
        items: &Composite<'_>,
        options: SaveOptions,
        part: bool,
    ) -> Result<SavePlan> {
        if root.state().dir_names.contains_key(&step) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("checkpoint for step {step} already exists"),
            )
            .with_step(step));
        }
        let write_metrics = options.metrics.is_some() && !root.options.prevent_write_metrics;
        save::check_items(step, items, write_metrics, part)?;
        if let (Some(metric), Some(m)) = (&root.options.best_metric, &options.metrics) {
            if !m.contains_key(metric) {
                return Err(Error::invalid_argument(format!(
                    "metrics of step {step} lack the best metric {metric:?}; nothing was saved"
                ))
                .with_step(step));
            }
        }
        // A policy ranking by a metric that neither this step nor any committed one has (a
        // typo) would delete the best steps: refused before anything is written. The new step
        // comes first: it usually has the metric, which ends the check.
        if !root.ranking_metrics.is_empty() && !root.options.allow_missing_best_metric {
            let new = CheckpointInfo::new(step, root.options.clock.now(), options.metrics.clone());
            let st = root.state();
            root.check_metrics_exist(std::iter::once(&new).chain(st.checkpoints.iter()))
                .map_err(|e| e.with_step(step))?;
        }
        save::check_json_depth(step, items, &options)?;
        save::warn_unusable_metrics(step, options.metrics.as_ref());
        let name = root.format.build_name(step);
        let background = root.options.enable_async_checkpointing && !part;
        // Whether a committed step is there unlisted: checked here and now, except for a
        // background save on an object store (commit-file mode), where it is a network round
        // trip that would block the caller; its background thread checks first, before writing
        // anything (Orbax checks only its cached listing, spec §5.1).
        let deferred_check =
            background && root.protocol.mode() == AtomicityMode::CommitFile && items.capturable();
        if !deferred_check {
            save::check_not_committed(root, step, &name)?;
        }
        Ok(SavePlan {
            step,
            name,
            options,
            write_metrics,
            deferred_check,
            background,
            items_total: items.len() + usize::from(write_metrics),
        })
    }

    /// Writes what must be written before `save` returns and says where the rest goes.
    ///
    /// A background save first copies its borrowed tensors and bytes into `pool` (issue 14;
    /// `None`: staging is off): one copy into reused memory, no storage call. Other borrowed
    /// items (and those the pool has no room for) are, on a local store (disk or memory),
    /// written here and now: into the page cache without fsync, which the background thread
    /// syncs before it commits. On object stores (a write is an upload) they are copied into
    /// fresh memory instead. Staging is skipped when the save cannot run in the background
    /// anyway (a borrowed custom item on an object store).
    ///
    /// # Errors
    /// `Handler`/`Storage`/… from writing the borrowed items, or copying the others; the tmp
    /// directory is then removed.
    pub fn stage<'a>(
        &self,
        root: &OpenRoot,
        items: Composite<'a>,
        pool: Option<&StagingPool>,
    ) -> Result<(Option<Staged>, Rest<'a>)> {
        let local = root.store.capabilities().local;
        let (copies, items) = match pool {
            Some(pool) if self.background && (local || items.capturable()) => {
                let c = items.stage(pool).map_err(|e| e.with_step(self.step))?;
                (Some((c.staged, c.names)), c.rest)
            }
            _ => (None, items),
        };
        let (now, later) = if self.background && local {
            items.split_borrowed()
        } else {
            (Composite::new(), items)
        };
        let staged = if now.is_empty() {
            None
        } else {
            let mut staged = Staged::begin(root, self.step, &self.name, self.items_total)?;
            if let Err(e) = staged.write_items(root, &now, None, true) {
                return Err(staged.abandon(root, e));
            }
            Some(staged)
        };
        let (copied, names) = copies.unwrap_or_default();
        if !self.background {
            return Ok((staged, Rest::Now(later.append(copied))));
        }
        match later.capture().map_err(|e| e.with_step(self.step)) {
            Ok(Captured::Owned(owned)) => Ok((
                staged,
                Rest::Background {
                    items: owned.append(copied),
                    staged: names,
                },
            )),
            // Not reached with staged items (staging is skipped for such saves); their copies
            // are then written now and freed.
            Ok(Captured::NotCapturable(items)) => Ok((staged, Rest::Now(items.append(copied)))),
            Err(e) => Err(match staged {
                Some(staged) => staged.abandon(root, e),
                None => e,
            }),
        }
    }

    /// The job that writes `items` and commits, timed now (the step's time in the listing is
    /// when the blocking part of `save` finished, spec §8.4).
    pub fn job<'a>(
        self,
        items: Composite<'a>,
        time: DateTime<Utc>,
        fence: Arc<Fence>,
    ) -> SaveJob<'a> {
        SaveJob {
            step: self.step,
            name: self.name,
            items,
            options: self.options,
            write_metrics: self.write_metrics,
            time,
            check_committed: self.deferred_check,
            fence,
            items_total: self.items_total,
        }
    }
}
