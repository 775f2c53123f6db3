//! Reading a step of an open root: its metrics, metadata, item names and handlers, and the
//! restore of its items (checksums verified first when asked).

use super::OpenRoot;
use crate::listing::{read_metrics, read_step_metadata};
use crate::progress::{Operation, ProgressStore, Tracker};
use crate::Restored;
use ckpt_core::{
    is_tmp_name, Error, ErrorKind, Metrics, Result, RootMetadata, Step, StepMetadata,
    LEGACY_ROOT_METADATA_FILE, METRICS_ITEM_NAME, ROOT_METADATA_DIR, ROOT_METADATA_FILE,
};
use ckpt_handlers::{CheckpointHandler, ItemDir, JsonHandler};
use ckpt_storage::{ChecksumManifest, EntryKind, Store, VerifyingStore, MANIFEST_FILE};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How [`OpenRoot::restore`] restores a pytree item (an Orbax `StandardSave` / `PyTreeSave`
/// item) instead of through its handler's plain restore.
pub(crate) enum PyTreeRestore<'t> {
    /// Only these leaves (param names), each read alone.
    Leaves(&'t std::collections::BTreeSet<String>),
    /// Into this tree, the caller's, leaf by leaf in place.
    Into(&'t mut ckpt_handlers::PyTree),
}

impl OpenRoot {
    pub fn metrics(&self, step: Step) -> Result<Option<Metrics>> {
        let dir = self.existing_step_dir(step)?;
        read_metrics(self.store.as_ref(), &dir).map_err(|e| e.with_step(step))
    }

    pub fn root_metadata(&self) -> Result<RootMetadata> {
        if let Some(m) = self.store.stat(ROOT_METADATA_DIR)? {
            if m.kind != EntryKind::Dir {
                let path = ckpt_core::layout::root_metadata_file();
                return Err(Error::storage(format!(
                    "cannot read the root metadata {path}: `{ROOT_METADATA_DIR}` is not a directory"
                ))
                .with_path(self.store.location(&path)));
            }
        }
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

    /// As `recorded_handlers`, but a broken metadata file is an error (restore must not guess).
    fn recorded_handlers_strict(&self, dir: &str) -> Result<BTreeMap<String, String>> {
        Ok(read_step_metadata(self.store.as_ref(), dir)?
            .map(|m| m.item_handler_map())
            .unwrap_or_default())
    }

    pub fn existing_step_dir(&self, step: Step) -> Result<String> {
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

    /// The item directories of `step`, sorted.
    pub fn item_names(&self, step: Step) -> Result<Vec<String>> {
        let dir = self.existing_step_dir(step)?;
        self.item_dirs(&dir).map_err(|e| e.with_step(step))
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

    /// Opens committed step `step` for reading its items: `NotFound` when there is no such step
    /// directory, `InvalidArgument` when it is not committed; `Corrupt` when the manager
    /// verifies checksums and a step written by ckpt lost its checksum manifest.
    pub(crate) fn read_step(&self, step: Step) -> Result<StepReader> {
        let dir = self.existing_step_dir(step)?;
        if !self.protocol.is_committed(self.store.as_ref(), "", &dir)? || is_tmp_name(&dir) {
            return Err(Error::invalid_argument(format!(
                "found an incomplete checkpoint for step {step}"
            ))
            .with_step(step)
            .with_path(self.store.location(&dir)));
        }
        let handlers = self
            .recorded_handlers_strict(&dir)
            .map_err(|e| e.with_step(step))?;
        let available = self.item_dirs(&dir)?;
        // Files recorded in the step's checksum manifest are verified as handlers read them
        // (issue 4); steps written by Orbax have no manifest and read as they are. The manifest
        // also gives the byte total of progress reports.
        let manifest = if self.options.verify_checksums || self.options.progress.is_some() {
            ChecksumManifest::read_from(self.store.as_ref(), &dir).map_err(|e| e.with_step(step))?
        } else {
            None
        };
        let recorded = manifest.is_some();
        let verifying = if self.options.verify_checksums {
            let manifest = match manifest.clone() {
                Some(m) => m,
                // ckpt writes a manifest with every step, so a step whose items were written by
                // ckpt's own handlers but that has none lost it: its files cannot be trusted.
                None if handlers.values().any(|h| h.starts_with("ckpt.")) => {
                    return Err(Error::corrupt(format!(
                        "step {step} was written by ckpt but its checksum manifest {MANIFEST_FILE} is missing"
                    ))
                    .with_step(step)
                    .with_path(self.store.location(&format!("{dir}/{MANIFEST_FILE}"))));
                }
                None => ChecksumManifest::new(),
            };
            Some(verifying_store(
                Arc::clone(&self.store),
                &dir,
                manifest,
                recorded,
            ))
        } else {
            None
        };
        Ok(StepReader {
            step,
            dir,
            handlers,
            available,
            verifying,
            store: Arc::clone(&self.store),
            manifest,
            recorded,
        })
    }

    /// The handler of item `item` of the step `reader` reads.
    ///
    /// # Errors
    /// As the handler registry's `resolve`; for a directory the step metadata does not name, in
    /// a step whose metadata names its items, an error saying it is most likely a stray
    /// directory and naming the recorded items.
    pub(crate) fn item_handler(
        &self,
        reader: &StepReader,
        item: &str,
    ) -> Result<Arc<dyn CheckpointHandler>> {
        let recorded = reader.handlers.get(item).map(String::as_str);
        let (step, handlers) = (reader.step, &reader.handlers);
        self.handler_for(item, recorded).map_err(|e| {
            if recorded.is_none() && !handlers.is_empty() {
                Error::new(
                    e.kind(),
                    format!(
                        "item {item:?} is not one of the items the step metadata records ({}): an empty or stray directory?",
                        handlers.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                )
                .with_step(step)
                .with_path(self.store.location(&format!("{}/{item}", reader.dir)))
                .with_source(e)
            } else {
                e.with_step(step)
            }
        })
    }

    /// The progress tracker of a restore of the items `wanted` of the step `rs` reads (their
    /// bytes in the step's manifest as the total), when the manager reports progress.
    pub(crate) fn restore_tracker(
        &self,
        rs: &StepReader,
        wanted: &[String],
    ) -> Option<Arc<Tracker>> {
        let observer = self.options.progress.as_ref()?;
        let bytes_total = rs.manifest.as_ref().map(|m| {
            wanted
                .iter()
                .flat_map(|w| m.item_files(w))
                .map(|(_, c)| c.size)
                .sum()
        });
        Some(Tracker::new(
            Arc::clone(observer),
            Operation::Restore,
            rs.step,
            wanted.len(),
            bytes_total,
        ))
    }

    /// Restores the items `names` (all when `None`) of `step` (spec §5.4, §6.4).
    pub fn restore(
        &self,
        step: Step,
        names: Option<&[&str]>,
        mut pytree: Option<PyTreeRestore<'_>>,
    ) -> Result<Restored> {
        let mut rs = self.read_step(step)?;
        let dir = rs.dir.clone();
        let wanted: Vec<String> = match names {
            None => rs.available.clone(),
            Some(ns) => {
                let mut v = Vec::new();
                for n in ns {
                    rs.check_item(n)?;
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
        let tracker = self.restore_tracker(&rs, &wanted);
        if let Some(t) = &tracker {
            rs.count_into(Arc::clone(t));
        }
        let mut items = BTreeMap::new();
        for item in wanted {
            let handler = self.item_handler(&rs, &item)?;
            let path = format!("{dir}/{item}");
            let item_dir = ItemDir::new(rs.store(), &path);
            if let Some(t) = &tracker {
                t.start_item(&item);
            }
            let value = match pytree.as_mut() {
                None => handler.restore(&item_dir),
                Some(how) => {
                    let ts = handler.type_string();
                    if ts != ckpt_handlers::orbax_array::STANDARD_HANDLER
                        && ts != ckpt_handlers::orbax_array::PYTREE_HANDLER
                    {
                        return Err(Error::invalid_argument(format!(
                            "item {item:?} is not a pytree item (its handler is {ts:?}): only pytree leaves can be restored by name"
                        ))
                        .with_step(step));
                    }
                    match how {
                        PyTreeRestore::Leaves(only) => {
                            ckpt_handlers::orbax_array::restore_tree(&item_dir, Some(only))
                                .map(ckpt_handlers::RestoredItem::PyTree)
                        }
                        PyTreeRestore::Into(tree) => {
                            ckpt_handlers::orbax_array::restore_tree_into(&item_dir, tree)
                                .map_err(|e| e.with_step(step))?;
                            if let Some(t) = &tracker {
                                t.finish_item();
                            }
                            continue;
                        }
                    }
                }
            }
            .map_err(|e| e.with_step(step))?;
            items.insert(item, value);
            if let Some(t) = &tracker {
                t.finish_item();
            }
        }
        if let Some(t) = &tracker {
            t.finish();
        }
        Ok(Restored::new(step, items))
    }
}

/// A committed step opened for reading ([`OpenRoot::read_step`]): its directory, the handler
/// type strings its metadata records, its items, and the store its files are read through
/// (checked against the step's checksum manifest when the manager verifies checksums).
pub(crate) struct StepReader {
    pub(crate) step: Step,
    /// The step directory (store path).
    pub(crate) dir: String,
    handlers: BTreeMap<String, String>,
    /// The step's item directories, sorted.
    available: Vec<String>,
    verifying: Option<VerifyingStore>,
    store: Arc<dyn Store>,
    /// The step's checksum manifest, when read (checksums verified, or progress reported).
    manifest: Option<ChecksumManifest>,
    /// Whether the step has a manifest: ckpt wrote it and recorded every item file.
    recorded: bool,
}

/// The store that checks the files below `dir` against `manifest` as they are read from
/// `inner`; with `recorded` (ckpt wrote the step: every item file is in the manifest), an item
/// file the manifest lacks is refused too.
fn verifying_store(
    inner: Arc<dyn Store>,
    dir: &str,
    manifest: ChecksumManifest,
    recorded: bool,
) -> VerifyingStore {
    let v = VerifyingStore::new(inner, dir, manifest);
    if recorded {
        v.requiring_recorded_item_files()
    } else {
        v
    }
}

impl StepReader {
    /// The store to read the step's files through.
    pub(crate) fn store(&self) -> &dyn Store {
        match &self.verifying {
            Some(v) => v,
            None => self.store.as_ref(),
        }
    }

    /// Counts every byte read from here on into `tracker` (beneath the checksum check, so that
    /// what is counted is what the store delivered).
    pub(crate) fn count_into(&mut self, tracker: Arc<Tracker>) {
        let counted: Arc<dyn Store> =
            Arc::new(ProgressStore::new(Arc::clone(&self.store), tracker));
        if let Some(v) = &self.verifying {
            let manifest = v.manifest().clone();
            self.verifying = Some(verifying_store(
                Arc::clone(&counted),
                &self.dir,
                manifest,
                self.recorded,
            ));
        }
        self.store = counted;
    }

    /// `NotFound` naming the item and the available items when the step has no item `item`.
    pub(crate) fn check_item(&self, item: &str) -> Result<()> {
        if self.available.iter().any(|a| a == item) {
            return Ok(());
        }
        let available = &self.available;
        Err(Error::not_found(format!(
            "item {item:?} was not found in the checkpoint; available items: {available:?}"
        ))
        .with_step(self.step)
        .with_path(self.store.location(&self.dir)))
    }
}
