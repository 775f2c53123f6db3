//! `CheckpointManager`: the synchronous API.

use crate::listing::{committed_steps, load_info, read_metrics, read_step_metadata};
use crate::options::{CheckpointManagerBuilder, CheckpointManagerOptions, RootSpec};
use crate::{Composite, Restored, SaveOptions};
use ckpt_core::{
    is_tmp_name, validate_item_name, CheckpointInfo, Error, ErrorKind, ItemHandlers, Metrics,
    NameFormat, Result, RootMetadata, Step, StepMetadata, COMMIT_SUCCESS_FILE,
    LEGACY_ROOT_METADATA_FILE, METRICS_ITEM_NAME, ROOT_METADATA_DIR, ROOT_METADATA_FILE,
    STEP_METADATA_FILE,
};
use ckpt_handlers::{CheckpointHandler, HandlerRegistry, ItemDir, JsonHandler, SaveItem};
use ckpt_policy::{
    legacy_preservation, legacy_save_decision, DecisionContext, LegacyRetention,
    PreservationContext, PreservationPolicy, SaveDecisionPolicy, Verdict,
};
use ckpt_storage::{protocol_for, CommitProtocol, EntryKind, Store};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Manages a series of checkpoints in one root: decides when to save, writes and commits steps,
/// keeps what the preservation policy keeps, and restores (as Orbax `CheckpointManager`, spec §5).
///
/// Deviations from Orbax 0.12.8 (DESIGN.md): `all_steps` is ascending and `latest_step` is the
/// largest committed step (D1); metrics given to `save` are always written (D2); a forced save or
/// a delete on a read-only manager is a `ReadOnly` error (D3); zero intervals are rejected when the
/// manager is built (D4); metrics lacking the best metric are refused before anything is written
/// (D5); a failed restore changes nothing (D6); the step prefix is matched literally (D7). Saves
/// are synchronous in this version: `save` returns once the step is committed and retention has run.
///
/// Not thread-safe for writing (`&mut self`); one writer per root.
#[derive(Debug)]
pub struct CheckpointManager {
    store: Arc<dyn Store>,
    protocol: Arc<dyn CommitProtocol>,
    format: Arc<dyn NameFormat>,
    options: CheckpointManagerOptions,
    save_policy: Arc<dyn SaveDecisionPolicy>,
    preservation: Arc<dyn PreservationPolicy>,
    registry: HandlerRegistry,
    checkpoints: Vec<CheckpointInfo>,
    dir_names: BTreeMap<Step, String>,
    last_retention: Vec<(Step, Verdict)>,
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
        let store = ckpt_storage::open(root)?;
        Self::with_store(store, options)
    }

    /// Opens the root of `store` with `options` (spec §5.2): validates the options, builds the
    /// policies, creates the root (`create`), removes tmp directories (`cleanup_tmp_directories`),
    /// lists the committed steps with their times and metrics, and writes the root metadata if it
    /// was given and the root has none. Opening a root for reading changes no file in it.
    ///
    /// # Errors
    /// `InvalidConfig` for options that cannot work (see [`CheckpointManagerOptions::validate`]);
    /// `InvalidArgument` when the root is a file; `Storage` when the store fails.
    pub fn with_store(store: Arc<dyn Store>, options: CheckpointManagerOptions) -> Result<Self> {
        options.validate()?;
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
            validate_item_name(item)?;
            registry.add(item, handler.clone())?;
        }
        if let Some(meta) = store.stat("")? {
            if meta.kind == EntryKind::File {
                return Err(Error::invalid_argument(
                    "the checkpoint root is a file, not a directory",
                )
                .with_path(store.location("")));
            }
        }
        let mut mngr = CheckpointManager {
            store,
            protocol,
            format,
            options,
            save_policy,
            preservation,
            registry,
            checkpoints: Vec::new(),
            dir_names: BTreeMap::new(),
            last_retention: Vec::new(),
        };
        if mngr.options.create && !mngr.options.read_only {
            mngr.store.create_dir("")?;
        }
        if mngr.options.cleanup_tmp_directories && !mngr.options.read_only {
            mngr.cleanup_tmp_directories()?;
        }
        let light = mngr.options.lightweight_initialize;
        mngr.load(light)?;
        mngr.write_root_metadata_once()?;
        Ok(mngr)
    }

    fn load(&mut self, lightweight: bool) -> Result<()> {
        let names = committed_steps(
            self.store.as_ref(),
            self.protocol.as_ref(),
            self.format.as_ref(),
        )?;
        self.checkpoints = names
            .iter()
            .map(|(step, name)| load_info(self.store.as_ref(), *step, name, lightweight))
            .collect();
        self.dir_names = names;
        Ok(())
    }

    fn cleanup_tmp_directories(&self) -> Result<()> {
        for e in self.store.list_dir("")? {
            if e.kind != EntryKind::Dir {
                continue;
            }
            // Only names that are ours: a tmp name, or (commit-file mode) a step name.
            let ours = is_tmp_name(&e.name) || self.format.parse_name(&e.name).is_some();
            if ours && self.protocol.is_tmp(self.store.as_ref(), "", &e.name)? {
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
        let path = format!("{ROOT_METADATA_DIR}/{ROOT_METADATA_FILE}");
        let legacy = format!("{ROOT_METADATA_DIR}/{LEGACY_ROOT_METADATA_FILE}");
        if self.store.stat(&path)?.is_some() || self.store.stat(&legacy)?.is_some() {
            return Ok(());
        }
        let bytes = RootMetadata::with_custom(custom.clone()).to_json_bytes()?;
        match self.store.write_if_absent(&path, &bytes) {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            other => other,
        }
    }

    // ----------------------------------------------------------------------------- queries

    /// The committed steps, ascending (deviation D1: Orbax keeps insertion order).
    pub fn all_steps(&self) -> Vec<Step> {
        self.checkpoints.iter().map(|c| c.step).collect()
    }

    /// The committed checkpoints with their times and metrics, ascending by step.
    pub fn checkpoints(&self) -> &[CheckpointInfo] {
        &self.checkpoints
    }

    /// The largest committed step, or `None` (deviation D1: Orbax returns the step saved last).
    pub fn latest_step(&self) -> Option<Step> {
        self.checkpoints.last().map(|c| c.step)
    }

    /// The best step by `best_metric` (ties: the higher step), or the latest step when no
    /// `best_metric` is set; `None` when no listed checkpoint has a usable value (spec §5.3).
    pub fn best_step(&self) -> Option<Step> {
        match &self.options.best_metric {
            None => self.latest_step(),
            Some(metric) => {
                ckpt_policy::best_step(&self.checkpoints, metric, self.options.best_mode)
            }
        }
    }

    /// The root, as a local path or URI.
    pub fn directory(&self) -> String {
        self.store.location("")
    }

    /// The options in effect (after the read-only rewrites of spec §5.1).
    pub fn options(&self) -> &CheckpointManagerOptions {
        &self.options
    }

    /// The verdicts of the last retention run (one per checkpoint it saw, with reasons), empty
    /// before the first save.
    pub fn last_retention(&self) -> &[(Step, Verdict)] {
        &self.last_retention
    }

    /// Whether `save(step)` would save (spec §3.4): false when read-only or `step <= latest_step()`,
    /// else the save decision policy's answer.
    pub fn should_save(&self, step: Step) -> bool {
        if self.options.read_only {
            return false;
        }
        if self.latest_step().is_some_and(|l| step <= l) {
            return false;
        }
        let now = self.options.clock.now();
        let cx = DecisionContext {
            is_saving_in_progress: false,
            reached_preemption: false,
            now,
        };
        self.save_policy.should_save(
            &CheckpointInfo::new(step, now, None),
            &self.checkpoints,
            &cx,
        )
    }

    /// The directory name of `step` in this root: the name it was listed under, else the name the
    /// format builds.
    pub fn step_dir_name(&self, step: Step) -> String {
        self.dir_names
            .get(&step)
            .cloned()
            .unwrap_or_else(|| self.format.build_name(step))
    }

    /// Re-reads the steps, their times and metrics from the root (Orbax `reload`, always a full
    /// metadata read).
    ///
    /// # Errors
    /// `Storage` when the root cannot be listed.
    pub fn reload(&mut self) -> Result<()> {
        self.load(false)
    }

    /// The metrics stored with `step` (`<step>/metrics/metrics`), or `None` when it has none.
    ///
    /// # Errors
    /// `NotFound` when there is no such step directory; `Corrupt` when the file is broken.
    pub fn metrics(&self, step: Step) -> Result<Option<Metrics>> {
        let dir = self.existing_step_dir(step)?;
        read_metrics(self.store.as_ref(), &dir).map_err(|e| e.with_step(step))
    }

    /// The root metadata (spec §1.6): `_ROOT_METADATA`, else the legacy `metadata/metadata`, else
    /// (no `metadata/` directory) empty — or, on a read-only manager, what was given as
    /// `root_metadata`.
    ///
    /// # Errors
    /// `NotFound` when `metadata/` exists but holds neither file; `Corrupt` when the file is broken.
    pub fn metadata(&self) -> Result<RootMetadata> {
        for name in [ROOT_METADATA_FILE, LEGACY_ROOT_METADATA_FILE] {
            let path = format!("{ROOT_METADATA_DIR}/{name}");
            match self.store.read(&path) {
                Ok(bytes) => {
                    return RootMetadata::from_json_bytes(&bytes).map_err(|e| {
                        Error::corrupt(format!("cannot read root metadata: {}", e.message()))
                            .with_path(self.store.location(&path))
                    })
                }
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        let dir_exists = match self.store.stat(ROOT_METADATA_DIR)? {
            Some(m) => m.kind == EntryKind::Dir,
            None => !self.store.list_dir(ROOT_METADATA_DIR)?.is_empty(),
        };
        if dir_exists {
            return Err(Error::not_found(
                "failed to read root metadata: the metadata directory holds no metadata file",
            )
            .with_path(self.store.location(ROOT_METADATA_DIR)));
        }
        let custom = if self.options.read_only {
            self.options.root_metadata.clone()
        } else {
            None
        };
        Ok(RootMetadata::with_custom(custom.unwrap_or_default()))
    }

    /// The step metadata of `step` (spec §5.5), its `metrics` filled from the metrics file. A step
    /// without a metadata file gets empty metadata.
    ///
    /// # Errors
    /// `NotFound` when there is no such step directory; `Corrupt` when a file is broken.
    pub fn step_metadata(&self, step: Step) -> Result<StepMetadata> {
        let dir = self.existing_step_dir(step)?;
        let mut meta = read_step_metadata(self.store.as_ref(), &dir)
            .map_err(|e| e.with_step(step))?
            .unwrap_or_default();
        if let Some(m) = read_metrics(self.store.as_ref(), &dir).map_err(|e| e.with_step(step))? {
            meta.metrics = m;
        }
        Ok(meta)
    }

    /// What each item's handler tells about it without restoring (spec §5.5 `item_metadata`): one
    /// entry per item directory, `None` when its handler has nothing to say or cannot be found.
    ///
    /// # Errors
    /// `NotFound` when there is no such step; `Corrupt` when a handler finds a broken file.
    pub fn item_metadata(&self, step: Step) -> Result<BTreeMap<String, Option<serde_json::Value>>> {
        let dir = self.existing_step_dir(step)?;
        let handlers = self.recorded_handlers(&dir);
        let mut out = BTreeMap::new();
        for item in self.item_dirs(&dir)? {
            let path = format!("{dir}/{item}");
            let value = match self.handler_for(&item, handlers.get(&item).map(String::as_str)) {
                Ok(h) => h
                    .metadata(&ItemDir::new(self.store.as_ref(), &path))
                    .map_err(|e| e.with_step(step))?,
                Err(_) => None,
            };
            out.insert(item, value);
        }
        Ok(out)
    }

    /// The handler type string recorded for each item of a step (empty when the step has no
    /// readable metadata).
    ///
    /// # Errors
    /// `NotFound` when there is no such step.
    pub fn item_handlers(&self, step: Step) -> Result<BTreeMap<String, String>> {
        let dir = self.existing_step_dir(step)?;
        Ok(self.recorded_handlers(&dir))
    }

    fn recorded_handlers(&self, dir: &str) -> BTreeMap<String, String> {
        match read_step_metadata(self.store.as_ref(), dir) {
            Ok(Some(m)) => m.item_handler_map(),
            _ => BTreeMap::new(),
        }
    }

    fn existing_step_dir(&self, step: Step) -> Result<String> {
        let name = self.step_dir_name(step);
        match self.store.stat(&name)? {
            Some(m) if m.kind == EntryKind::Dir => Ok(name),
            _ if !self.store.capabilities().directories
                && !self.store.list_dir(&name)?.is_empty() =>
            {
                Ok(name)
            }
            _ => Err(
                Error::not_found(format!("there is no checkpoint for step {step}"))
                    .with_step(step)
                    .with_path(self.store.location(&name)),
            ),
        }
    }

    fn item_dirs(&self, dir: &str) -> Result<Vec<String>> {
        let mut items: Vec<String> = self
            .store
            .list_dir(dir)?
            .into_iter()
            .filter(|e| e.kind == EntryKind::Dir && !is_tmp_name(&e.name))
            .map(|e| e.name)
            .collect();
        items.sort();
        Ok(items)
    }

    fn handler_for(
        &self,
        item: &str,
        type_string: Option<&str>,
    ) -> Result<Arc<dyn CheckpointHandler>> {
        if self.registry.get(item).is_none() && item == METRICS_ITEM_NAME {
            let json = ckpt_handlers::ORBAX_JSON_HANDLER;
            if type_string.is_none() || type_string == Some(json) {
                return Ok(Arc::new(JsonHandler::with_filename(METRICS_ITEM_NAME)));
            }
        }
        self.registry.resolve(item, type_string)
    }

    // ----------------------------------------------------------------------------- restore

    /// Restores every item of `step` (the latest committed step when `None`), as Orbax `restore`
    /// with no args (spec §5.4, §6.4): each item's handler is the one registered for it, else the
    /// one named in the step metadata, found by type string in this process.
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

    fn restore_impl(&self, step: Option<Step>, names: Option<&[&str]>) -> Result<Restored> {
        let step = match step {
            Some(s) => s,
            None => self.latest_step().ok_or_else(|| {
                Error::not_found("no committed steps to restore").with_path(self.store.location(""))
            })?,
        };
        let dir = self.existing_step_dir(step)?;
        if !self.protocol.is_committed(self.store.as_ref(), "", &dir)? || is_tmp_name(&dir) {
            return Err(Error::invalid_argument(format!(
                "found an incomplete checkpoint for step {step}"
            ))
            .with_step(step)
            .with_path(self.store.location(&dir)));
        }
        let handlers = self.recorded_handlers(&dir);
        let available = self.item_dirs(&dir)?;
        let wanted: Vec<String> = match names {
            None => available.clone(),
            Some(ns) => {
                let mut v = Vec::new();
                for n in ns {
                    if !available.iter().any(|a| a == n) {
                        return Err(Error::not_found(format!(
                            "item {n:?} was not found in the checkpoint; available items: {available:?}"
                        ))
                        .with_step(step)
                        .with_path(self.store.location(&dir)));
                    }
                    v.push((*n).to_string());
                }
                v
            }
        };
        if wanted.is_empty() {
            return Err(
                Error::invalid_argument(format!("step {step} holds no items to restore"))
                    .with_step(step)
                    .with_path(self.store.location(&dir)),
            );
        }
        let mut items = BTreeMap::new();
        for item in wanted {
            let handler = self
                .handler_for(&item, handlers.get(&item).map(String::as_str))
                .map_err(|e| e.with_step(step))?;
            let path = format!("{dir}/{item}");
            let value = handler
                .restore(&ItemDir::new(self.store.as_ref(), &path))
                .map_err(|e| e.with_step(step))?;
            items.insert(item, value);
        }
        Ok(Restored::new(step, items))
    }

    // ----------------------------------------------------------------------------- save

    /// Saves `items` as `step` (spec §3.5), returning `Ok(false)` when the save decision says no
    /// (or, read-only, without `force`). Writes every item into the step's tmp directory, commits
    /// items then the step, records the step, then applies the preservation policy over all steps
    /// and deletes what it does not keep — possibly the new step itself.
    ///
    /// A retention delete that fails is logged and the step stays listed (retried at the next
    /// save); the save still returns `Ok(true)`.
    ///
    /// # Errors
    /// - `ReadOnly` for a forced save on a read-only manager (D3);
    /// - `AlreadyExists` when `step` is already listed, or a committed directory for it exists;
    /// - `InvalidArgument` when `items` is empty, an item name is not one path component, is
    ///   reserved (`_CHECKPOINT_METADATA`, `commit_success.txt`, or `metrics` when metrics are
    ///   written), or the metrics lack `best_metric` (D5) — nothing is written;
    /// - `Handler`/`Storage`/… from writing, naming the step; the tmp directory is removed and no
    ///   step becomes visible.
    pub fn save(
        &mut self,
        step: Step,
        items: &Composite<'_>,
        options: SaveOptions,
    ) -> Result<bool> {
        if self.options.read_only {
            if options.force {
                return Err(
                    Error::new(ErrorKind::ReadOnly, "cannot save on a read-only manager")
                        .with_step(step),
                );
            }
            return Ok(false);
        }
        if !options.force && !self.should_save(step) {
            return Ok(false);
        }
        if self.dir_names.contains_key(&step) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("checkpoint for step {step} already exists"),
            )
            .with_step(step));
        }
        let write_metrics = options.metrics.is_some() && !self.options.prevent_write_metrics;
        self.check_items(step, items, write_metrics)?;
        if let (Some(metric), Some(m)) = (&self.options.best_metric, &options.metrics) {
            if !m.contains_key(metric) {
                return Err(Error::invalid_argument(format!(
                    "metrics of step {step} lack the best metric {metric:?}; nothing was saved"
                ))
                .with_step(step));
            }
        }
        let name = self.format.build_name(step);
        if let Some(meta) = self.store.stat(&name)? {
            if meta.kind == EntryKind::Dir
                && self.protocol.is_committed(self.store.as_ref(), "", &name)?
            {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("a committed directory for step {step} exists but was not listed; reload first"),
                )
                .with_step(step)
                .with_path(self.store.location(&name)));
            }
        }
        let working = self
            .protocol
            .prepare(self.store.as_ref(), &name)
            .map_err(|e| e.with_step(step))?;
        match self.write_step(step, &name, &working, items, &options, write_metrics) {
            Ok(()) => {}
            Err(e) => {
                if let Err(cleanup) = self.store.delete_prefix(&working) {
                    tracing::warn!(step, error = %cleanup, "could not remove the tmp directory of a failed save");
                }
                return Err(if e.step().is_some() {
                    e
                } else {
                    e.with_step(step)
                });
            }
        }
        let now = self.options.clock.now();
        let info = CheckpointInfo::new(step, now, options.metrics.clone());
        let pos = self.checkpoints.partition_point(|c| c.step < step);
        self.checkpoints.insert(pos, info);
        self.dir_names.insert(step, name);
        self.apply_retention();
        Ok(true)
    }

    fn check_items(&self, step: Step, items: &Composite<'_>, write_metrics: bool) -> Result<()> {
        if items.is_empty() {
            return Err(Error::invalid_argument(format!(
                "nothing to save for step {step}: the item set is empty"
            ))
            .with_step(step));
        }
        for name in items.names() {
            validate_item_name(name).map_err(|e| e.with_step(step))?;
            if name == STEP_METADATA_FILE || name == COMMIT_SUCCESS_FILE {
                return Err(
                    Error::invalid_argument(format!("item name {name:?} is reserved"))
                        .with_step(step),
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

    fn write_step(
        &self,
        step: Step,
        name: &str,
        working: &str,
        items: &Composite<'_>,
        options: &SaveOptions,
        write_metrics: bool,
    ) -> Result<()> {
        let store = self.store.as_ref();
        let meta_path = format!("{working}/{STEP_METADATA_FILE}");
        let mut meta = StepMetadata::started_at(self.options.clock.now());
        store.write(&meta_path, &meta.to_json_bytes()?)?;

        let metrics_value;
        let mut all: Vec<(&str, &SaveItem<'_>, Arc<dyn CheckpointHandler>)> = Vec::new();
        for (item, value) in items.sorted() {
            let handler = match self.registry.get(item) {
                Some(h) => h,
                None => ckpt_handlers::default_handler_for(value)?,
            };
            all.push((item, value, handler));
        }
        if write_metrics {
            let m = options.metrics.clone().unwrap_or_default();
            metrics_value = SaveItem::JsonValue(Cow::Owned(serde_json::Value::Object(m)));
            let handler: Arc<dyn CheckpointHandler> =
                Arc::new(JsonHandler::with_filename(METRICS_ITEM_NAME));
            all.push((METRICS_ITEM_NAME, &metrics_value, handler));
            all.sort_by(|a, b| a.0.cmp(b.0));
        }

        let mut handler_strings = BTreeMap::new();
        let mut item_working = Vec::new();
        for (item, value, handler) in &all {
            let final_item = format!("{working}/{item}");
            let w = self.protocol.prepare(store, &final_item)?;
            handler
                .save(&ItemDir::new(store, &w), value)
                .map_err(|e| e.with_step(step))?;
            handler_strings.insert((*item).to_string(), handler.type_string());
            item_working.push((w, final_item));
        }
        meta.item_handlers = Some(ItemHandlers::Map(handler_strings));
        meta.custom_metadata = options.custom_metadata.clone().unwrap_or_default();
        store.write(&meta_path, &meta.to_json_bytes()?)?;
        for (w, final_item) in &item_working {
            self.protocol.commit(store, w, final_item)?;
        }
        meta.commit_timestamp_nsecs = self.options.clock.now().timestamp_nanos_opt();
        store.write(&meta_path, &meta.to_json_bytes()?)?;
        self.protocol.commit(store, working, name)
    }

    fn apply_retention(&mut self) {
        let cx = PreservationContext {
            now: self.options.clock.now(),
        };
        let verdicts = self.preservation.should_preserve(&self.checkpoints, &cx);
        let decided: Vec<(Step, Verdict)> = self
            .checkpoints
            .iter()
            .map(|c| c.step)
            .zip(verdicts)
            .collect();
        for (step, verdict) in &decided {
            if verdict.keep {
                tracing::debug!(step, reason = %verdict.reason, "keeping step");
                continue;
            }
            tracing::info!(step, reason = %verdict.reason, "deleting step");
            if let Err(e) = self.remove_step_dir(*step) {
                tracing::error!(step, error = %e, "retention could not delete the step; it stays listed");
                continue;
            }
            self.forget(*step);
        }
        self.last_retention = decided;
    }

    fn forget(&mut self, step: Step) {
        self.checkpoints.retain(|c| c.step != step);
        self.dir_names.remove(&step);
    }

    fn remove_step_dir(&self, step: Step) -> Result<()> {
        let name = self.step_dir_name(step);
        if let Some(sub) = &self.options.todelete_subdir {
            if self.store.capabilities().rename {
                self.store.create_dir(sub)?;
                let target = format!("{sub}/{name}");
                self.store.delete_prefix(&target)?;
                return self
                    .store
                    .rename(&name, &target)
                    .map_err(|e| e.with_step(step));
            }
        }
        self.store
            .delete_prefix(&name)
            .map_err(|e| e.with_step(step))
    }

    /// Deletes `step` (spec §4.5): removes its directory (or moves it into `todelete_subdir`) and
    /// drops it from the listing.
    ///
    /// # Errors
    /// `ReadOnly` on a read-only manager (deviation D3: Orbax silently does nothing); `NotFound`
    /// when `step` is not listed; `Storage` when the store fails (the step then stays listed).
    pub fn delete(&mut self, step: Step) -> Result<()> {
        if self.options.read_only {
            return Err(
                Error::new(ErrorKind::ReadOnly, "cannot delete on a read-only manager")
                    .with_step(step),
            );
        }
        if !self.dir_names.contains_key(&step) {
            return Err(Error::not_found(format!(
                "requested deleting a non-existent step: {step}"
            ))
            .with_step(step));
        }
        self.remove_step_dir(step)?;
        self.forget(step);
        Ok(())
    }

    /// Finishes all work and closes the manager (spec §5.10). Saves are synchronous in this
    /// version, so there is nothing in flight; this exists so code written now keeps working
    /// when saves become asynchronous.
    ///
    /// # Errors
    /// None at present.
    pub fn close(self) -> Result<()> {
        Ok(())
    }
}
