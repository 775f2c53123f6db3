//! `CheckpointManagerOptions` and its builder.

use ckpt_core::{Clock, Error, Metrics, NameFormat, Result, StandardNameFormat, SystemClock};
use ckpt_handlers::CheckpointHandler;
use ckpt_policy::{BestMode, PreservationPolicy, SaveDecisionPolicy};
use ckpt_storage::{AtomicityMode, Store};
use std::sync::Arc;

/// How a manager behaves: when it saves, what it keeps, how it names and commits steps.
///
/// Field names and defaults are Orbax `CheckpointManagerOptions`' (spec §5.1), restricted to what
/// ckpt implements; deviations are noted per field. Build it with [`CheckpointManagerOptions::default`]
/// and struct update syntax, or through [`crate::CheckpointManager::builder`].
#[derive(Debug, Clone)]
pub struct CheckpointManagerOptions {
    /// Save when `step % save_interval_steps == 0` (default 1, every step). `None` turns the
    /// interval off. `Some(0)` is rejected when the manager is built unless `read_only`
    /// (deviation D4). Ignored when `save_decision_policy` is set.
    pub save_interval_steps: Option<u64>,
    /// Also save at these steps. Ignored when `save_decision_policy` is set.
    pub save_on_steps: Vec<u64>,
    /// Keep at most this many checkpoints (the newest, or the best by `best_metric`). `None` keeps
    /// all; `0` deletes every checkpoint nothing else keeps, including the one just saved.
    pub max_to_keep: Option<u64>,
    /// Also keep every step that is a multiple of this (steps). `Some(0)` is rejected (D4).
    pub keep_period: Option<u64>,
    /// Also keep one checkpoint per this many seconds (anchored at the oldest kept).
    pub keep_time_interval_secs: Option<u64>,
    /// Rank checkpoints by this metric key (Orbax `best_fn = lambda m: m[key]`): retention keeps
    /// the best `max_to_keep` and [`crate::CheckpointManager::best_step`] returns the best. A save
    /// whose metrics lack the key is refused before anything is written (deviation D5).
    pub best_metric: Option<String>,
    /// Whether lower (`Min`) or higher (`Max`, Orbax's default) values of `best_metric` are better.
    pub best_mode: BestMode,
    /// With `best_metric`: keep checkpoints that have no metrics (default true).
    pub keep_checkpoints_without_metrics: bool,
    /// Accept a preservation policy (or `best_metric`) that ranks by a metric no step has
    /// (default false). Without it, a misspelt metric (`val_los`) is an `InvalidConfig` error
    /// naming the metric and the metrics that exist — when the manager is opened on a root
    /// whose steps have metrics, at a `save` whose step and committed steps all lack it (before
    /// anything is written), and in [`crate::CheckpointManager::apply_preservation`] — instead
    /// of ranking every step as having no value and deleting the best ones
    /// ([`ckpt_policy::check_metrics_exist`]). ckpt's own (Orbax raises `KeyError` at a save
    /// whose metrics lack the key, and nothing for a `BestN` policy).
    pub allow_missing_best_metric: bool,
    /// Step directories are named `<step_prefix>_<step>` (prefix matched literally, deviation D7).
    pub step_prefix: Option<String>,
    /// Zero-pad the step in directory names to this many digits.
    pub step_format_fixed_length: Option<usize>,
    /// A custom name format; overrides `step_prefix` and `step_format_fixed_length`.
    pub step_name_format: Option<Arc<dyn NameFormat>>,
    /// Create the root when opening it (default true; never when `read_only`).
    pub create: bool,
    /// Never write: `should_save` is false, a non-forced `save` returns `false`, a forced `save`
    /// and `delete` are `ReadOnly` errors (deviation D3). Disables the retention options, as Orbax.
    pub read_only: bool,
    /// On open, remove tmp directories left by saves that died (default false).
    pub cleanup_tmp_directories: bool,
    /// Move deleted steps into `<root>/<todelete_subdir>/` instead of removing them.
    pub todelete_subdir: Option<String>,
    /// Write `root_metadata` once, when the root has none yet (default true).
    pub save_root_metadata: bool,
    /// The root metadata's `custom_metadata` (Orbax's `metadata=` constructor argument). Written
    /// once and never overwritten.
    pub root_metadata: Option<Metrics>,
    /// Never write a step's metrics file (they still count in memory until a reopen).
    pub prevent_write_metrics: bool,
    /// Replaces the save decision built from `save_interval_steps` and `save_on_steps`.
    pub save_decision_policy: Option<Arc<dyn SaveDecisionPolicy>>,
    /// Replaces the preservation built from `max_to_keep`, `keep_period`, `keep_time_interval_secs`
    /// and `best_metric`; exclusive with those (InvalidConfig).
    pub preservation_policy: Option<Arc<dyn PreservationPolicy>>,
    /// How steps are committed: atomic rename of a tmp directory, or a commit file written last
    /// (Orbax `AtomicityOptions.mode`; `Auto` picks by the store's capabilities).
    pub atomicity: AtomicityMode,
    /// On open, list steps without reading their metadata or metrics (times are unknown and
    /// metrics absent until `reload`).
    pub lightweight_initialize: bool,
    /// Write, commit and apply retention in the background (default true, as Orbax): `save`
    /// returns once the items no longer need the caller's memory (moved in; or, when borrowed,
    /// written without fsync on a local store and copied on an object store), at most one save is
    /// in flight, and a background failure is reported once by the next `save`,
    /// `wait_until_finished` or `close` (spec §5.8–§5.9).
    pub enable_async_checkpointing: bool,
    /// How long (seconds) waiting for a background save may take before it is abandoned with a
    /// `Timeout` error naming its phase (Orbax `AsyncOptions.timeout_secs`, default 1200).
    pub async_timeout_secs: u64,
    /// Delete steps on a background deleter thread (Orbax `enable_background_delete`, default
    /// false): retention and `delete` drop the step from the listing at once and its directory
    /// goes later; `close` waits for the queue and reports the first deletion error.
    pub enable_background_delete: bool,
    /// Verify, on restore, every file recorded in the step's checksum manifest (`_CKPT_CHECKSUMS`:
    /// size and CRC32C of each file a handler wrote) before a handler sees it (default true). A
    /// flipped bit or a truncated file is then a `Corrupt` error naming the file. ckpt's own
    /// addition: Orbax has no checksums (and ignores the file).
    pub verify_checksums: bool,
    /// The writer lease of a root on a store without a lock of its own (object stores, memory):
    /// its time to live in seconds (default 30), i.e. how long a writer that died without
    /// releasing it keeps the next writer out (`Locked`, naming the holder and the expiry).
    /// Renewed every third of it while the manager lives ([`ckpt_storage::WriterLease`]).
    /// `None` turns the guard off: nothing then keeps a second writer out, each step is still
    /// claimed by the writer that writes it (so two writers of one step never mix or delete
    /// each other's files), and `cleanup_tmp_directories` is refused (it could remove a live
    /// writer's step). Local roots always take their file lock. ckpt's own; Orbax has no guard.
    pub writer_lease_ttl_secs: Option<u64>,
    /// How long (seconds) opening a writer waits, polling every second, while another writer
    /// holds the root (its local lock, or its writer lease until it is released or expires)
    /// before giving up with `Locked` (default 0: at once). A job restarted right after its
    /// previous run was killed on an object store waits out that run's lease this way. ckpt's
    /// own.
    pub wait_for_writer_secs: u64,
    /// How storage operations that fail with a temporary error (an object store's 500, 503 or
    /// `SlowDown`) are retried: the manager puts a [`ckpt_storage::RetryStore`] of this policy
    /// over any store that is not local (default [`ckpt_storage::RetryPolicy::default`]: 10
    /// attempts, exponential backoff with full jitter from 100 ms up to 5 s, 60 s at most);
    /// `None`: no retries. Local file systems report no temporary errors. ckpt's own.
    pub retry: Option<ckpt_storage::RetryPolicy>,
    /// The clock for save times and time-based policies.
    pub clock: Arc<dyn Clock>,
    /// Where a preemption signal comes from (none by default): when it reports one, the default
    /// save decision saves the current step (`PreemptionCheckpointingPolicy`).
    pub preemption: Option<Arc<dyn crate::PreemptionSource>>,
    /// Handlers for named items, overriding the default handler chosen from the item's kind and,
    /// on restore, the handler named in the step metadata.
    pub handlers: Vec<(String, Arc<dyn CheckpointHandler>)>,
}

impl Default for CheckpointManagerOptions {
    fn default() -> Self {
        CheckpointManagerOptions {
            save_interval_steps: Some(1),
            save_on_steps: Vec::new(),
            max_to_keep: None,
            keep_period: None,
            keep_time_interval_secs: None,
            best_metric: None,
            best_mode: BestMode::Max,
            keep_checkpoints_without_metrics: true,
            allow_missing_best_metric: false,
            step_prefix: None,
            step_format_fixed_length: None,
            step_name_format: None,
            create: true,
            read_only: false,
            cleanup_tmp_directories: false,
            todelete_subdir: None,
            save_root_metadata: true,
            root_metadata: None,
            prevent_write_metrics: false,
            save_decision_policy: None,
            preservation_policy: None,
            atomicity: AtomicityMode::Auto,
            lightweight_initialize: false,
            enable_async_checkpointing: true,
            async_timeout_secs: 1200,
            enable_background_delete: false,
            verify_checksums: true,
            writer_lease_ttl_secs: Some(ckpt_storage::DEFAULT_LEASE_TTL_SECS),
            wait_for_writer_secs: 0,
            retry: Some(ckpt_storage::RetryPolicy::default()),
            clock: Arc::new(SystemClock),
            preemption: None,
            handlers: Vec::new(),
        }
    }
}

impl CheckpointManagerOptions {
    /// The name format these options describe.
    ///
    /// # Errors
    /// `InvalidConfig` for a step prefix that cannot be part of a directory name.
    pub fn name_format(&self) -> Result<Arc<dyn NameFormat>> {
        if let Some(f) = &self.step_name_format {
            return Ok(f.clone());
        }
        Ok(Arc::new(StandardNameFormat::new(
            self.step_prefix.as_deref(),
            self.step_format_fixed_length,
        )?))
    }

    /// The options a read-only manager really uses: Orbax's `__post_init__` rewrites (spec §5.1)
    /// clear the interval, retention, creation, cleanup and todelete options.
    pub(crate) fn effective(&self) -> CheckpointManagerOptions {
        let mut o = self.clone();
        if o.read_only {
            o.save_interval_steps = None; // Orbax sets 0; a read-only manager never asks the policy
            o.max_to_keep = None;
            o.keep_time_interval_secs = None;
            o.keep_period = None;
            o.create = false;
            o.cleanup_tmp_directories = false;
            o.save_on_steps.clear();
            o.todelete_subdir = None;
        }
        o
    }

    /// Checks the options (spec §4.3 validation, deviation D4).
    ///
    /// # Errors
    /// `InvalidConfig` naming the option: `save_interval_steps` 0 (not read-only), `keep_period` 0,
    /// a policy whose own validation fails, `preservation_policy` together with `max_to_keep`,
    /// `keep_period` or `keep_time_interval_secs`, a `todelete_subdir` that is not one path
    /// component or parses as a step name, a `root_metadata` nested deeper than the root
    /// metadata file could be read back with (`ckpt_core::pyjson::MAX_NESTING_DEPTH` - 1 levels).
    pub fn validate(&self) -> Result<()> {
        if !self.read_only
            && self.save_interval_steps == Some(0)
            && self.save_decision_policy.is_none()
        {
            return Err(Error::invalid_config("save_interval_steps must not be 0"));
        }
        if self.keep_period == Some(0) {
            return Err(Error::invalid_config("keep_period must not be 0"));
        }
        if let Some(p) = &self.preservation_policy {
            p.validate()?;
            let conflicting = !self.read_only
                && (self.max_to_keep.is_some_and(|n| n > 0)
                    || self.keep_period.is_some_and(|n| n > 0)
                    || self.keep_time_interval_secs.is_some_and(|n| n > 0));
            if conflicting {
                return Err(Error::invalid_config(
                    "preservation_policy and max_to_keep / keep_period / keep_time_interval_secs are mutually exclusive",
                ));
            }
        }
        if let Some(p) = &self.save_decision_policy {
            p.validate()?;
        }
        if let Some(d) = &self.todelete_subdir {
            ckpt_core::validate_item_name(d).map_err(|_| {
                Error::invalid_config(format!("todelete_subdir {d:?} must be one directory name"))
            })?;
            if self.name_format()?.parse_name(d).is_some() {
                return Err(Error::invalid_config(format!(
                    "todelete_subdir {d:?} would be read as a step"
                )));
            }
        }
        if self.writer_lease_ttl_secs == Some(0) {
            return Err(Error::invalid_config(
                "writer_lease_ttl_secs must be at least 1 (or None to turn the writer lease off)",
            ));
        }
        if let Some(m) = &self.root_metadata {
            // Written inside `_ROOT_METADATA`'s top-level object: one level less than a file.
            let max = ckpt_core::pyjson::MAX_NESTING_DEPTH;
            let depth = crate::save::map_nesting_depth(m, max);
            ckpt_core::pyjson::check_nesting_depth("root_metadata", depth, max - 1)
                .map_err(|e| Error::invalid_config(e.message()))?;
        }
        if let Some(m) = &self.best_metric {
            if m.is_empty() {
                return Err(Error::invalid_config("best_metric must not be empty"));
            }
        }
        self.name_format()?;
        Ok(())
    }
}

/// Builds a [`crate::CheckpointManager`]: `CheckpointManager::builder("runs/exp1").max_to_keep(3).build()?`.
#[derive(Debug)]
pub struct CheckpointManagerBuilder {
    root: RootSpec,
    options: CheckpointManagerOptions,
}

#[derive(Debug)]
pub(crate) enum RootSpec {
    Uri(String),
    Store(Arc<dyn Store>),
}

impl CheckpointManagerBuilder {
    pub(crate) fn new(root: RootSpec) -> Self {
        CheckpointManagerBuilder {
            root,
            options: CheckpointManagerOptions::default(),
        }
    }

    /// Replaces all options at once.
    pub fn options(mut self, options: CheckpointManagerOptions) -> Self {
        self.options = options;
        self
    }

    /// See [`CheckpointManagerOptions::save_interval_steps`] (steps).
    pub fn save_interval_steps(mut self, steps: u64) -> Self {
        self.options.save_interval_steps = Some(steps);
        self
    }

    /// See [`CheckpointManagerOptions::save_on_steps`].
    pub fn save_on_steps(mut self, steps: impl IntoIterator<Item = u64>) -> Self {
        self.options.save_on_steps = steps.into_iter().collect();
        self
    }

    /// See [`CheckpointManagerOptions::max_to_keep`] (checkpoints).
    pub fn max_to_keep(mut self, n: u64) -> Self {
        self.options.max_to_keep = Some(n);
        self
    }

    /// See [`CheckpointManagerOptions::keep_period`] (steps).
    pub fn keep_period(mut self, steps: u64) -> Self {
        self.options.keep_period = Some(steps);
        self
    }

    /// See [`CheckpointManagerOptions::keep_time_interval_secs`] (seconds).
    pub fn keep_time_interval_secs(mut self, secs: u64) -> Self {
        self.options.keep_time_interval_secs = Some(secs);
        self
    }

    /// Ranks checkpoints by `metric`; see [`CheckpointManagerOptions::best_metric`].
    pub fn best_metric(mut self, metric: impl Into<String>, mode: BestMode) -> Self {
        self.options.best_metric = Some(metric.into());
        self.options.best_mode = mode;
        self
    }

    /// See [`CheckpointManagerOptions::keep_checkpoints_without_metrics`].
    pub fn keep_checkpoints_without_metrics(mut self, keep: bool) -> Self {
        self.options.keep_checkpoints_without_metrics = keep;
        self
    }

    /// See [`CheckpointManagerOptions::allow_missing_best_metric`].
    pub fn allow_missing_best_metric(mut self, allow: bool) -> Self {
        self.options.allow_missing_best_metric = allow;
        self
    }

    /// See [`CheckpointManagerOptions::step_prefix`].
    pub fn step_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.options.step_prefix = Some(prefix.into());
        self
    }

    /// See [`CheckpointManagerOptions::step_format_fixed_length`] (digits).
    pub fn step_format_fixed_length(mut self, digits: usize) -> Self {
        self.options.step_format_fixed_length = Some(digits);
        self
    }

    /// See [`CheckpointManagerOptions::create`].
    pub fn create(mut self, create: bool) -> Self {
        self.options.create = create;
        self
    }

    /// See [`CheckpointManagerOptions::read_only`].
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.options.read_only = read_only;
        self
    }

    /// See [`CheckpointManagerOptions::cleanup_tmp_directories`].
    pub fn cleanup_tmp_directories(mut self, cleanup: bool) -> Self {
        self.options.cleanup_tmp_directories = cleanup;
        self
    }

    /// See [`CheckpointManagerOptions::todelete_subdir`].
    pub fn todelete_subdir(mut self, subdir: impl Into<String>) -> Self {
        self.options.todelete_subdir = Some(subdir.into());
        self
    }

    /// Root metadata written once (Orbax's `metadata=`); see [`CheckpointManagerOptions::root_metadata`].
    pub fn root_metadata(mut self, custom: Metrics) -> Self {
        self.options.root_metadata = Some(custom);
        self
    }

    /// See [`CheckpointManagerOptions::save_root_metadata`].
    pub fn save_root_metadata(mut self, save: bool) -> Self {
        self.options.save_root_metadata = save;
        self
    }

    /// See [`CheckpointManagerOptions::prevent_write_metrics`].
    pub fn prevent_write_metrics(mut self, prevent: bool) -> Self {
        self.options.prevent_write_metrics = prevent;
        self
    }

    /// See [`CheckpointManagerOptions::save_decision_policy`].
    pub fn save_decision_policy(mut self, policy: Arc<dyn SaveDecisionPolicy>) -> Self {
        self.options.save_decision_policy = Some(policy);
        self
    }

    /// See [`CheckpointManagerOptions::preservation_policy`].
    pub fn preservation_policy(mut self, policy: Arc<dyn PreservationPolicy>) -> Self {
        self.options.preservation_policy = Some(policy);
        self
    }

    /// See [`CheckpointManagerOptions::atomicity`].
    pub fn atomicity(mut self, mode: AtomicityMode) -> Self {
        self.options.atomicity = mode;
        self
    }

    /// See [`CheckpointManagerOptions::lightweight_initialize`].
    pub fn lightweight_initialize(mut self, light: bool) -> Self {
        self.options.lightweight_initialize = light;
        self
    }

    /// See [`CheckpointManagerOptions::enable_async_checkpointing`].
    pub fn enable_async_checkpointing(mut self, enable: bool) -> Self {
        self.options.enable_async_checkpointing = enable;
        self
    }

    /// See [`CheckpointManagerOptions::async_timeout_secs`] (seconds).
    pub fn async_timeout_secs(mut self, secs: u64) -> Self {
        self.options.async_timeout_secs = secs;
        self
    }

    /// See [`CheckpointManagerOptions::enable_background_delete`].
    pub fn enable_background_delete(mut self, enable: bool) -> Self {
        self.options.enable_background_delete = enable;
        self
    }

    /// See [`CheckpointManagerOptions::verify_checksums`].
    pub fn verify_checksums(mut self, verify: bool) -> Self {
        self.options.verify_checksums = verify;
        self
    }

    /// See [`CheckpointManagerOptions::writer_lease_ttl_secs`] (seconds; `None`: no lease).
    pub fn writer_lease_ttl_secs(mut self, secs: Option<u64>) -> Self {
        self.options.writer_lease_ttl_secs = secs;
        self
    }

    /// See [`CheckpointManagerOptions::wait_for_writer_secs`] (seconds).
    pub fn wait_for_writer_secs(mut self, secs: u64) -> Self {
        self.options.wait_for_writer_secs = secs;
        self
    }

    /// See [`CheckpointManagerOptions::retry`] (`None`: no retries).
    pub fn retry(mut self, policy: Option<ckpt_storage::RetryPolicy>) -> Self {
        self.options.retry = policy;
        self
    }

    /// See [`CheckpointManagerOptions::clock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.options.clock = clock;
        self
    }

    /// See [`CheckpointManagerOptions::preemption`].
    pub fn preemption(mut self, source: Arc<dyn crate::PreemptionSource>) -> Self {
        self.options.preemption = Some(source);
        self
    }

    /// Uses `handler` for item `item`; see [`CheckpointManagerOptions::handlers`].
    pub fn handler(mut self, item: impl Into<String>, handler: Arc<dyn CheckpointHandler>) -> Self {
        self.options.handlers.push((item.into(), handler));
        self
    }

    /// Opens the root and builds the manager.
    ///
    /// # Errors
    /// As [`crate::CheckpointManager::open`].
    pub fn build(self) -> Result<crate::CheckpointManager> {
        match self.root {
            RootSpec::Uri(uri) => crate::CheckpointManager::open(&uri, self.options),
            RootSpec::Store(store) => crate::CheckpointManager::with_store(store, self.options),
        }
    }
}
