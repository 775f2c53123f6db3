//! [`verify_step`]: every file of a step checked against the step's checksum manifest, and
//! its result, [`VerifyReport`]. ckpt's own; Orbax has no checksums.
//!
//! Here rather than in ckpt-storage because it walks a step directory and must know what a step
//! holds (which files the manifest does not list on purpose: the manifest itself,
//! `_CHECKPOINT_METADATA`, `commit_success.txt`); storage keeps the manifest format
//! ([`ChecksumManifest`], [`FileStatus`]) and the checking layers.

use ckpt_core::{is_tmp_name, Error, ErrorKind, Result, COMMIT_SUCCESS_FILE, STEP_METADATA_FILE};
use ckpt_storage::{
    file_name, join_path, validate_path, ChecksumManifest, Entry, EntryKind, FileStatus, Store,
    MANIFEST_FILE,
};
use std::collections::BTreeMap;
use std::fmt;

/// The result of [`verify_step`]: one entry per file, sorted by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The step directory, as a store path.
    pub step_dir: String,
    /// The step directory's full location ([`Store::location`]), for messages.
    pub step_location: String,
    /// Whether the step has a [`MANIFEST_FILE`]. Without one nothing is checked and `files` is
    /// empty ("no checksums recorded"): not an error, Orbax and ckpt with checksums off write
    /// none.
    pub has_checksums: bool,
    /// Each file, by path relative to the step directory (`"state/t.bin"`), with its status:
    /// every file of the manifest, then every other file found below the step directory except
    /// `_CKPT_CHECKSUMS`, `_CHECKPOINT_METADATA` and `commit_success.txt` ([`FileStatus::Unchecked`]).
    pub files: Vec<(String, FileStatus)>,
    /// What is wrong with the step as a whole: no item at all (looked for in every step), and,
    /// in a step with a manifest, an item directory without a recorded file or an item its
    /// `_CHECKPOINT_METADATA` names but that is not there. Each makes the report bad: a restore
    /// of such a step fails, or gives less than was saved.
    pub problems: Vec<StepProblem>,
}

/// Something wrong with a step as a whole, found by [`verify_step`] (ckpt's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepProblem {
    /// The step directory holds no item directory.
    NoItems,
    /// An item directory (its name) in which no file is recorded in the checksum manifest: an
    /// empty or stray directory, or an item whose manifest entries were lost. It cannot be
    /// restored, or nothing vouches for what it would restore.
    UnrecordedItem(String),
    /// An item (its name) that the step metadata's `item_handlers` names but whose directory is
    /// not there.
    MissingItem(String),
}

impl fmt::Display for StepProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepProblem::NoItems => f.write_str("the step holds no items"),
            StepProblem::UnrecordedItem(item) => write!(
                f,
                "item {item:?} has no file recorded in the checksum manifest ({MANIFEST_FILE}): an empty or stray directory, or its entries were lost"
            ),
            StepProblem::MissingItem(item) => write!(
                f,
                "item {item:?} is named in {STEP_METADATA_FILE} but its directory is missing"
            ),
        }
    }
}

impl VerifyReport {
    /// Whether no file is bad (see [`FileStatus::is_bad`]) and the step has no
    /// [`StepProblem`]. A step without checksums is ok.
    pub fn is_ok(&self) -> bool {
        !self.files.iter().any(|(_, s)| s.is_bad()) && self.problems.is_empty()
    }

    /// The bad files and their statuses.
    pub fn bad_files(&self) -> impl Iterator<Item = &(String, FileStatus)> {
        self.files.iter().filter(|(_, s)| s.is_bad())
    }

    /// The full location of the file `key` of this step (for messages).
    pub fn location_of(&self, key: &str) -> String {
        if self.step_location.ends_with('/') {
            format!("{}{key}", self.step_location)
        } else {
            format!("{}/{key}", self.step_location)
        }
    }

    /// `Ok(())` when [`VerifyReport::is_ok`].
    ///
    /// # Errors
    /// [`ErrorKind::Corrupt`] naming every bad file (its location and what is wrong with it),
    /// with the path of the first, and every [`StepProblem`] (with the step's path when there
    /// is no bad file).
    pub fn check(&self) -> Result<()> {
        let bad: Vec<&(String, FileStatus)> = self.bad_files().collect();
        if !self.problems.is_empty() {
            let mut list: Vec<String> = self.problems.iter().map(|p| p.to_string()).collect();
            list.extend(
                bad.iter()
                    .map(|(k, s)| format!("{} ({s})", self.location_of(k))),
            );
            let path = match bad.first() {
                Some((first, _)) => self.location_of(first),
                None => self.step_location.clone(),
            };
            return Err(Error::corrupt(format!(
                "step {} cannot be trusted: {}",
                self.step_location,
                list.join("; ")
            ))
            .with_path(path));
        }
        let Some((first, first_status)) = bad.first() else {
            return Ok(());
        };
        if bad.len() == 1 {
            return Err(first_status.corrupt_at(&self.location_of(first)));
        }
        let list: Vec<String> = bad
            .iter()
            .map(|(k, s)| format!("{} ({s})", self.location_of(k)))
            .collect();
        Err(Error::corrupt(format!(
            "{} files of {} do not match their checksums ({MANIFEST_FILE}): {}",
            bad.len(),
            self.step_location,
            list.join("; ")
        ))
        .with_path(self.location_of(first)))
    }
}

impl fmt::Display for VerifyReport {
    /// One line per file, `<location>: <status>`, or one line saying that no checksums are
    /// recorded.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.has_checksums && self.problems.is_empty() {
            return write!(f, "{}: no checksums recorded", self.step_location);
        }
        if self.files.is_empty() && self.problems.is_empty() {
            return write!(f, "{}: no files", self.step_location);
        }
        let mut first = true;
        for p in &self.problems {
            if !first {
                writeln!(f)?;
            }
            first = false;
            write!(f, "{}: {p}", self.step_location)?;
        }
        for (key, status) in &self.files {
            if !first {
                writeln!(f)?;
            }
            first = false;
            write!(f, "{}: {status}", self.location_of(key))?;
        }
        Ok(())
    }
}

/// Checks every file of the step at `step_dir` against its [`MANIFEST_FILE`]: re-reads each file
/// the manifest lists and reports it ok, missing, not a file, wrong size or wrong CRC, and lists
/// the other files below the step directory as unchecked (except the manifest itself,
/// `_CHECKPOINT_METADATA` and `commit_success.txt` files, at any depth). A step without a
/// manifest gives a report with [`VerifyReport::has_checksums`] false and no files.
///
/// Reads every listed file whole (one `read` per file) and walks the step directory with
/// `list_dir`; symbolic links are reported, never followed, so nothing outside the step is read.
/// Use [`VerifyReport::check`] to turn a bad report into an error.
///
/// # Errors
/// `NotFound` when nothing is at `step_dir`; `Corrupt` (or `Unsupported`) when the manifest
/// cannot be parsed, naming it; `InvalidArgument` for a bad path; `Storage` when the store fails
/// (a storage failure is not reported as a bad file).
pub fn verify_step(store: &dyn Store, step_dir: &str) -> Result<VerifyReport> {
    validate_path(step_dir)?;
    let step_location = store.location(step_dir);
    if step_dir.is_empty() {
        // The root: always there.
    } else if store.stat(step_dir)?.is_none() {
        return Err(
            Error::not_found("no step directory to verify").with_path(step_location.clone())
        );
    }
    let Some(manifest) = ChecksumManifest::read_from(store, step_dir)? else {
        // Nothing to check the files against; a step with no item at all (an empty directory
        // named as a step, say) still cannot be restored.
        let has_items = store
            .list_dir(step_dir)?
            .iter()
            .any(|e| e.kind == EntryKind::Dir && !is_tmp_name(&e.name));
        return Ok(VerifyReport {
            step_dir: step_dir.to_string(),
            step_location,
            has_checksums: false,
            files: Vec::new(),
            problems: if has_items {
                Vec::new()
            } else {
                vec![StepProblem::NoItems]
            },
        });
    };
    // Everything below the step directory, never following a link.
    let mut found: BTreeMap<String, EntryKind> = BTreeMap::new();
    walk(store, step_dir, "", &mut found)?;

    let mut files = Vec::with_capacity(found.len().max(manifest.len()));
    for (key, expected) in &manifest.files {
        let status = match found.get(key) {
            None => FileStatus::Missing,
            Some(EntryKind::Dir | EntryKind::Symlink) => FileStatus::NotAFile,
            Some(EntryKind::File) => match store.read(&join_path(step_dir, key)) {
                Ok(data) => expected.check(&data),
                // Deleted between the listing and the read.
                Err(e) if e.kind() == ErrorKind::NotFound => FileStatus::Missing,
                Err(e) => return Err(e),
            },
        };
        files.push((key.clone(), status));
    }
    for (key, kind) in &found {
        let name = file_name(key);
        let ignored = *kind == EntryKind::Dir
            || name == MANIFEST_FILE
            || name == STEP_METADATA_FILE
            || name == COMMIT_SUCCESS_FILE;
        if !ignored && !manifest.files.contains_key(key) {
            // Inside an item ckpt records every file; beside the items, anything goes.
            let status = if key.contains('/') {
                FileStatus::Unrecorded
            } else {
                FileStatus::Unchecked
            };
            files.push((key.clone(), status));
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let problems = item_problems(store, step_dir, &found, &manifest)?;
    Ok(VerifyReport {
        step_dir: step_dir.to_string(),
        step_location,
        has_checksums: true,
        files,
        problems,
    })
}

/// The [`StepProblem`]s of a step with a manifest: its item directories (the subdirectories
/// found, tmp names left out) against the manifest's files and the step metadata's items.
///
/// # Errors
/// `Storage` when the step metadata cannot be read (an unparsable one is left to the caller,
/// which reports it).
fn item_problems(
    store: &dyn Store,
    step_dir: &str,
    found: &BTreeMap<String, EntryKind>,
    manifest: &ChecksumManifest,
) -> Result<Vec<StepProblem>> {
    let items: Vec<&str> = found
        .iter()
        .filter(|(k, kind)| **kind == EntryKind::Dir && !k.contains('/') && !is_tmp_name(k))
        .map(|(k, _)| k.as_str())
        .collect();
    let mut problems = Vec::new();
    if items.is_empty() {
        problems.push(StepProblem::NoItems);
    }
    for item in &items {
        if manifest.item_files(item).next().is_none() {
            problems.push(StepProblem::UnrecordedItem((*item).to_string()));
        }
    }
    let named = match crate::listing::read_step_metadata(store, step_dir) {
        Ok(Some(meta)) => meta.item_handler_map(),
        Ok(None) => Default::default(),
        Err(e) if e.kind() == ErrorKind::Corrupt => Default::default(),
        Err(e) => return Err(e),
    };
    for item in named.keys() {
        if !items.contains(&item.as_str()) {
            problems.push(StepProblem::MissingItem(item.clone()));
        }
    }
    Ok(problems)
}

/// Adds every entry below `base/rel` to `found`, keyed by its path relative to `base`;
/// descends into directories only.
fn walk(
    store: &dyn Store,
    base: &str,
    rel: &str,
    found: &mut BTreeMap<String, EntryKind>,
) -> Result<()> {
    for Entry { name, kind } in store.list_dir(&join_path(base, rel))? {
        let key = join_path(rel, &name);
        if kind == EntryKind::Dir {
            walk(store, base, &key, found)?;
        }
        found.insert(key, kind);
    }
    Ok(())
}
