//! The two commit protocols that make a step (or item) directory visible atomically, as Orbax's
//! `AtomicRenameTemporaryPath` and `CommitFileTemporaryPath` (spec §1.3), and the choice between
//! them (Orbax's `AtomicityMode`).
//!
//! A save goes `prepare` → write into the returned working directory → `commit`. Items use the
//! same protocol one level down, inside the step's working directory: with atomic rename the
//! manager prepares `3.orbax-checkpoint-tmp/state` (working dir
//! `3.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp`), commits it to
//! `3.orbax-checkpoint-tmp/state`, and only then commits the step.

use crate::path::{file_name, join_path, parent_path, validate_path};
use crate::{Capabilities, EntryKind, Store};
use ckpt_core::{
    commit_success_text, is_tmp_name, Error, ErrorKind, Result, COMMIT_SUCCESS_FILE,
    STEP_CLAIM_FILE, TMP_DIR_SUFFIX,
};
use std::fmt::{self, Debug};
use std::str::FromStr;
use std::sync::Arc;

/// How a step becomes visible, as Orbax's `AtomicityMode` (spec §1.3); written and parsed as
/// `"auto"`, `"atomic_rename"`, `"commit_file"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AtomicityMode {
    /// Atomic rename where the store can rename (local file systems), commit file elsewhere.
    /// Orbax's AUTO picks by URI (commit file for `gs://` only); ckpt picks by
    /// [`Capabilities::rename`], which gives the same answer for local paths and GCS and the only
    /// workable one for S3 and Azure.
    #[default]
    Auto,
    /// Write `<name>.orbax-checkpoint-tmp/`, then `commit_success.txt`, then rename it to `<name>`
    /// (Orbax `AtomicRenameTemporaryPath`).
    AtomicRename,
    /// Write `<name>/` in place, `commit_success.txt` last (Orbax `CommitFileTemporaryPath`).
    CommitFile,
}

impl AtomicityMode {
    /// The mode's name as Orbax writes it: `"auto"`, `"atomic_rename"` or `"commit_file"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AtomicityMode::Auto => "auto",
            AtomicityMode::AtomicRename => "atomic_rename",
            AtomicityMode::CommitFile => "commit_file",
        }
    }
}

impl fmt::Display for AtomicityMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AtomicityMode {
    type Err = Error;

    /// Parses `"auto"`, `"atomic_rename"` or `"commit_file"` (exactly, as Orbax's enum values).
    ///
    /// # Errors
    /// `InvalidArgument` naming the string for anything else.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(AtomicityMode::Auto),
            "atomic_rename" => Ok(AtomicityMode::AtomicRename),
            "commit_file" => Ok(AtomicityMode::CommitFile),
            other => Err(Error::invalid_argument(format!(
                "unknown atomicity mode {other:?} (expected \"auto\", \"atomic_rename\" or \"commit_file\")"
            ))),
        }
    }
}

/// The commit protocol for `mode` on a store with `caps`: [`AtomicityMode::Auto`] gives
/// [`AtomicRenameProtocol`] when `caps.rename`, else [`CommitFileProtocol`].
///
/// # Errors
/// `InvalidConfig` when [`AtomicityMode::AtomicRename`] is asked of a store that cannot rename.
pub fn protocol_for(mode: AtomicityMode, caps: Capabilities) -> Result<Arc<dyn CommitProtocol>> {
    match mode {
        AtomicityMode::Auto if caps.rename => Ok(Arc::new(AtomicRenameProtocol)),
        AtomicityMode::Auto | AtomicityMode::CommitFile => Ok(Arc::new(CommitFileProtocol)),
        AtomicityMode::AtomicRename if caps.rename => Ok(Arc::new(AtomicRenameProtocol)),
        AtomicityMode::AtomicRename => Err(Error::invalid_config(
            "atomicity mode atomic_rename needs a store that can rename directories; \
             use commit_file (or auto) on this store",
        )),
    }
}

/// Who writes a step: what [`CommitProtocol::prepare_step`], [`CommitProtocol::commit_step`]
/// and [`CommitProtocol::abandon_step`] need to keep two writers of one step apart (issue 11,
/// item 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepClaim {
    /// The writer's token ([`crate::writer_token`]), written into the step's claim file.
    pub token: String,
    /// Whether the writer holds the root's single-writer guard (the local lock or the writer
    /// lease). Then no other writer is alive, and a claim or an unfinished directory found in
    /// its way was left by a save that died and is removed; without the guard another writer's
    /// claim is respected (`AlreadyExists`).
    pub exclusive: bool,
}

impl StepClaim {
    /// Whether the claim file of the step directory `step_dir` holds this writer's token.
    ///
    /// # Errors
    /// Store errors other than `NotFound` (no claim file: `Ok(false)`).
    pub fn is_held_in(&self, store: &dyn Store, step_dir: &str) -> Result<bool> {
        Ok(read_step_claim(store, step_dir)?.as_deref() == Some(self.token.as_str()))
    }
}

/// How a directory is written and made visible (spec §1.3). Object-safe; the manager keeps an
/// `Arc<dyn CommitProtocol>` from [`protocol_for`].
///
/// Paths are store paths (see [`crate::validate_path`]); the final path is never the root.
pub trait CommitProtocol: Debug + Send + Sync {
    /// The resolved mode: [`AtomicityMode::AtomicRename`] or [`AtomicityMode::CommitFile`],
    /// never `Auto`.
    fn mode(&self) -> AtomicityMode;

    /// Where the data for `final_path` is written before the commit: `<final>.orbax-checkpoint-tmp`
    /// for atomic rename, `final_path` itself for commit file. Pure; no I/O.
    fn working_path(&self, final_path: &str) -> String;

    /// Makes a fresh, empty working directory for `final_path` and returns its path. A leftover
    /// working directory (a save that died) is removed first, with a `tracing` warning.
    ///
    /// # Errors
    /// `AlreadyExists` when `final_path` is already committed (atomic rename: it exists at all;
    /// commit file: it holds `commit_success.txt`); `InvalidArgument` for a bad or empty path or
    /// a final name that is itself a tmp name; `Unsupported` (atomic rename) on a store that
    /// cannot rename; store errors.
    fn prepare(&self, store: &dyn Store, final_path: &str) -> Result<String>;

    /// Commits `working` (from [`CommitProtocol::prepare`]) as `final_path`, making everything
    /// written below it durable first on a durable store.
    ///
    /// # Errors
    /// `InvalidArgument` when `working` is not `working_path(final_path)`; `AlreadyExists` when
    /// `final_path` exists (atomic rename) or was committed by someone else (commit file); store
    /// errors, after which nothing is committed.
    fn commit(&self, store: &dyn Store, working: &str, final_path: &str) -> Result<()>;

    /// As [`CommitProtocol::prepare`], for a step directory written by `claim`'s writer. The
    /// default is `prepare` (atomic rename: the tmp directory belongs to the holder of the local
    /// writer lock). [`CommitFileProtocol`] writes in place, where two writers of one step would
    /// write into the same directory: it first creates the claim file `_CKPT_WRITER` holding
    /// the writer's token with a conditional create, and only the writer whose claim was
    /// created goes on.
    ///
    /// # Errors
    /// As `prepare`; commit file: `AlreadyExists` when another writer's claim is there and
    /// `claim.exclusive` is false (it may be alive), or when another writer claimed the step at
    /// the same moment.
    fn prepare_step(
        &self,
        store: &dyn Store,
        final_path: &str,
        claim: &StepClaim,
    ) -> Result<String> {
        let _ = claim;
        self.prepare(store, final_path)
    }

    /// As [`CommitProtocol::commit`], for a step prepared by [`CommitProtocol::prepare_step`].
    /// Commit file: a commit file that is already there when the conditional create is refused
    /// counts as this writer's own when the step's claim is this writer's (a retried create whose
    /// first attempt reached the store); only the claim holder ever commits.
    ///
    /// # Errors
    /// As `commit`; `AlreadyExists` when the step was committed by another writer.
    fn commit_step(
        &self,
        store: &dyn Store,
        working: &str,
        final_path: &str,
        claim: &StepClaim,
    ) -> Result<()> {
        let _ = claim;
        self.commit(store, working, final_path)
    }

    /// Removes what a failed save of `final_path` wrote into `working`, and nothing that is not
    /// its own: the default removes the tmp directory (atomic rename: it belongs to the lock
    /// holder). Commit file removes the directory only while it holds no commit file and its
    /// claim is `claim`'s: a committed step, or a step another writer claimed, is left alone.
    ///
    /// # Errors
    /// Store errors (the caller logs them; nothing was committed).
    fn abandon_step(
        &self,
        store: &dyn Store,
        working: &str,
        final_path: &str,
        claim: &StepClaim,
    ) -> Result<()> {
        let _ = (final_path, claim);
        store.delete_prefix(working)
    }

    /// Whether the directory entry `name` of directory `dir` (`""` for the root) is committed.
    /// Callers pass only entries listed as [`EntryKind::Dir`].
    ///
    /// # Errors
    /// Store errors (commit file looks for `commit_success.txt`).
    fn is_committed(&self, store: &dyn Store, dir: &str, name: &str) -> Result<bool>;

    /// The names, ascending, of the committed directories directly inside `dir` (`""` for the
    /// root): what a listing of steps needs, in as few requests as the store allows.
    ///
    /// The default lists `dir` once and asks [`CommitProtocol::is_committed`] of each directory
    /// entry (no I/O per entry for atomic rename). [`CommitFileProtocol`] on a store without
    /// directories of its own (object stores, memory) overrides it with ONE
    /// [`Store::list_recursive`] of `dir`, keeping the names that hold `commit_success.txt`
    /// directly inside: no request per step (a stat each would be 2,000 requests for a root of
    /// 2,000 steps).
    ///
    /// # Errors
    /// Store errors.
    fn committed_children(&self, store: &dyn Store, dir: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for e in store.list_dir(dir)? {
            if e.kind == EntryKind::Dir && self.is_committed(store, dir, &e.name)? {
                out.push(e.name);
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Whether the directory entry `name` of `dir` is a tmp directory that a cleanup may remove
    /// (spec §1.3, "counts as temporary"). Callers pass only entries listed as
    /// [`EntryKind::Dir`] (never symbolic links), and must not pass directories that are not
    /// theirs: with commit file every uncommitted directory counts, which in Orbax includes the
    /// root's `metadata/` (spec §1.3, "Caution").
    ///
    /// # Errors
    /// Store errors.
    fn is_tmp(&self, store: &dyn Store, dir: &str, name: &str) -> Result<bool>;
}

/// Write into `<final>.orbax-checkpoint-tmp/`, then `commit_success.txt`, fsync, rename to
/// `<final>`: as Orbax `AtomicRenameTemporaryPath` (spec §1.3), plus the directory fsyncs Orbax
/// leaves to the file system. Needs [`Capabilities::rename`].
///
/// A directory is committed when its name has no tmp suffix (`commit_success.txt` is not
/// required, so older Orbax checkpoints stay valid); it is tmp when its name contains
/// `.orbax-checkpoint-tmp` anywhere (also the legacy `-<number>` form).
#[derive(Debug, Clone, Copy, Default)]
pub struct AtomicRenameProtocol;

/// Write `<final>/` in place, then `commit_success.txt` last, with a conditional create so that
/// a second committer loses: as Orbax `CommitFileTemporaryPath` (spec §1.3). Works on any store.
///
/// A directory is committed when it holds `commit_success.txt`, and tmp otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommitFileProtocol;

/// Validates a final path: valid, not the root, and not itself a tmp name.
fn check_final(final_path: &str) -> Result<()> {
    validate_path(final_path)?;
    if final_path.is_empty() {
        return Err(Error::invalid_argument(
            "the store root cannot be committed as a checkpoint directory",
        )
        .with_path(final_path.to_string()));
    }
    if is_tmp_name(file_name(final_path)) {
        return Err(Error::invalid_argument(format!(
            "final path {final_path:?} has a tmp name (contains {TMP_DIR_SUFFIX:?})"
        ))
        .with_path(final_path.to_string()));
    }
    Ok(())
}

/// Every directory below `dir`, and `dir` itself, each after all of its subdirectories (so
/// deepest first). Symbolic links are not followed.
fn dirs_deepest_first(store: &dyn Store, dir: &str) -> Result<Vec<String>> {
    let mut preorder = Vec::new();
    let mut stack = vec![dir.to_string()];
    while let Some(d) = stack.pop() {
        for entry in store.list_dir(&d)? {
            if entry.kind == EntryKind::Dir {
                stack.push(join_path(&d, &entry.name));
            }
        }
        preorder.push(d);
    }
    // In pre-order a directory comes before all of its descendants; reversed, after them.
    preorder.reverse();
    Ok(preorder)
}

/// fsyncs every directory of the tree at `dir`, deepest first, on a durable store with
/// directories (files are already durable: [`Store::write`] syncs them).
fn sync_tree(store: &dyn Store, dir: &str) -> Result<()> {
    let caps = store.capabilities();
    if !(caps.durable && caps.directories) {
        return Ok(());
    }
    for d in dirs_deepest_first(store, dir)? {
        store.sync_dir(&d)?;
    }
    Ok(())
}

/// fsyncs the parent directory of `path`, where the store is durable.
fn sync_parent(store: &dyn Store, path: &str) -> Result<()> {
    let caps = store.capabilities();
    if !(caps.durable && caps.directories) {
        return Ok(());
    }
    store.sync_dir(parent_path(path).unwrap_or(""))
}

/// Removes a leftover at `path` (a dead save's working directory), with a warning.
fn remove_leftover(store: &dyn Store, path: &str, what: &str) -> Result<()> {
    if store.stat(path)?.is_some() {
        tracing::warn!(path = %store.location(path), "removing {what} left by an earlier save that did not finish");
        store.delete_prefix(path)?;
    }
    Ok(())
}

/// Validates `final_path` ([`check_final`]) and refuses it when it holds a commit file.
fn check_uncommitted(store: &dyn Store, final_path: &str) -> Result<()> {
    check_final(final_path)?;
    if store
        .stat(&join_path(final_path, COMMIT_SUCCESS_FILE))?
        .is_some()
    {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            "the directory is already committed",
        )
        .with_path(store.location(final_path)));
    }
    Ok(())
}

/// The writer token in the claim file of the step directory `step_dir` (commit-file mode), or
/// `None` when it has none.
///
/// # Errors
/// Store errors other than `NotFound`.
pub fn read_step_claim(store: &dyn Store, step_dir: &str) -> Result<Option<String>> {
    read_claim(store, &join_path(step_dir, STEP_CLAIM_FILE))
}

/// The writer token in the claim file at `claim_path`, or `None` when there is none.
fn read_claim(store: &dyn Store, claim_path: &str) -> Result<Option<String>> {
    match store.read(claim_path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl CommitProtocol for AtomicRenameProtocol {
    fn mode(&self) -> AtomicityMode {
        AtomicityMode::AtomicRename
    }

    fn working_path(&self, final_path: &str) -> String {
        format!("{final_path}{TMP_DIR_SUFFIX}")
    }

    fn prepare(&self, store: &dyn Store, final_path: &str) -> Result<String> {
        check_final(final_path)?;
        if !store.capabilities().rename {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "atomic rename needs a store that can rename directories",
            )
            .with_path(store.location(final_path)));
        }
        if store.stat(final_path)?.is_some() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                "the final directory already exists",
            )
            .with_path(store.location(final_path)));
        }
        let working = self.working_path(final_path);
        remove_leftover(store, &working, "a tmp directory")?;
        store.create_dir(&working)?;
        Ok(working)
    }

    fn commit(&self, store: &dyn Store, working: &str, final_path: &str) -> Result<()> {
        check_final(final_path)?;
        if working != self.working_path(final_path) {
            return Err(Error::invalid_argument(format!(
                "{working:?} is not the working directory of {final_path:?}"
            ))
            .with_path(working.to_string()));
        }
        let marker = join_path(working, COMMIT_SUCCESS_FILE);
        store.write(
            &marker,
            commit_success_text(&store.location(final_path)).as_bytes(),
        )?;
        sync_tree(store, working)?;
        store.rename(working, final_path)?;
        sync_parent(store, final_path)
    }

    fn is_committed(&self, _store: &dyn Store, _dir: &str, name: &str) -> Result<bool> {
        Ok(!is_tmp_name(name))
    }

    fn is_tmp(&self, _store: &dyn Store, _dir: &str, name: &str) -> Result<bool> {
        Ok(is_tmp_name(name))
    }
}

impl CommitProtocol for CommitFileProtocol {
    fn mode(&self) -> AtomicityMode {
        AtomicityMode::CommitFile
    }

    fn working_path(&self, final_path: &str) -> String {
        final_path.to_string()
    }

    fn prepare(&self, store: &dyn Store, final_path: &str) -> Result<String> {
        check_uncommitted(store, final_path)?;
        remove_leftover(store, final_path, "an uncommitted directory")?;
        store.create_dir(final_path)?;
        Ok(final_path.to_string())
    }

    fn commit(&self, store: &dyn Store, working: &str, final_path: &str) -> Result<()> {
        check_final(final_path)?;
        if working != final_path {
            return Err(Error::invalid_argument(format!(
                "{working:?} is not the working directory of {final_path:?} (commit file writes in place)"
            ))
            .with_path(working.to_string()));
        }
        // Everything below and the directory's own entry first, the commit file last.
        sync_tree(store, final_path)?;
        sync_parent(store, final_path)?;
        let marker = join_path(final_path, COMMIT_SUCCESS_FILE);
        let text = commit_success_text(&store.location(final_path));
        store
            .write_if_absent(&marker, text.as_bytes())
            .map_err(|e| {
                if e.kind() == ErrorKind::AlreadyExists {
                    Error::new(
                        ErrorKind::AlreadyExists,
                        "the directory was already committed",
                    )
                    .with_path(store.location(final_path))
                    .with_source(e)
                } else {
                    e
                }
            })?;
        let caps = store.capabilities();
        if caps.durable && caps.directories {
            store.sync_dir(final_path)?;
        }
        Ok(())
    }

    fn prepare_step(
        &self,
        store: &dyn Store,
        final_path: &str,
        claim: &StepClaim,
    ) -> Result<String> {
        check_uncommitted(store, final_path)?;
        let claim_path = join_path(final_path, STEP_CLAIM_FILE);
        if !store.list_dir(final_path)?.is_empty() {
            if !claim.exclusive {
                if let Some(holder) = read_claim(store, &claim_path)? {
                    if holder != claim.token {
                        return Err(Error::new(
                            ErrorKind::AlreadyExists,
                            format!(
                                "another writer ({holder}) is writing this step, or a save of it died; \
                                 a manager holding the root's writer guard removes it"
                            ),
                        )
                        .with_path(store.location(final_path)));
                    }
                }
            }
            remove_leftover(store, final_path, "an uncommitted directory")?;
        }
        store.create_dir(final_path)?;
        match store.write_if_absent(&claim_path, claim.token.as_bytes()) {
            Ok(()) => Ok(final_path.to_string()),
            // Our own create, retried after its answer was lost.
            Err(e)
                if e.kind() == ErrorKind::AlreadyExists
                    && claim.is_held_in(store, final_path)? =>
            {
                Ok(final_path.to_string())
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(Error::new(
                ErrorKind::AlreadyExists,
                "another writer began writing this step at the same moment",
            )
            .with_path(store.location(final_path))
            .with_source(e)),
            Err(e) => {
                // The directory we made would read as a step to an atomic-rename reader: remove
                // it unless another writer's claim is there by now.
                match read_claim(store, &claim_path) {
                    Ok(Some(holder)) if holder != claim.token => {}
                    _ => {
                        if let Err(cleanup) = store.delete_prefix(final_path) {
                            tracing::warn!(path = %store.location(final_path), error = %cleanup,
                                "could not remove the step directory of a failed claim");
                        }
                    }
                }
                Err(e)
            }
        }
    }

    fn commit_step(
        &self,
        store: &dyn Store,
        working: &str,
        final_path: &str,
        claim: &StepClaim,
    ) -> Result<()> {
        match self.commit(store, working, final_path) {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                if claim.is_held_in(store, final_path)? {
                    // Only the claim holder commits: the commit file is our own earlier write.
                    return Ok(());
                }
                Err(e)
            }
            other => other,
        }
    }

    fn abandon_step(
        &self,
        store: &dyn Store,
        working: &str,
        final_path: &str,
        claim: &StepClaim,
    ) -> Result<()> {
        let _ = working;
        if store
            .stat(&join_path(final_path, COMMIT_SUCCESS_FILE))?
            .is_some()
        {
            tracing::warn!(path = %store.location(final_path),
                "a failed save leaves its step directory alone: it holds a commit file");
            return Ok(());
        }
        match claim.is_held_in(store, final_path)? {
            true => store.delete_prefix(final_path),
            false => {
                tracing::warn!(path = %store.location(final_path),
                    "a failed save leaves its step directory alone: another writer claimed it");
                Ok(())
            }
        }
    }

    fn is_committed(&self, store: &dyn Store, dir: &str, name: &str) -> Result<bool> {
        let marker = join_path(&join_path(dir, name), COMMIT_SUCCESS_FILE);
        Ok(store.stat(&marker)?.is_some())
    }

    fn is_tmp(&self, store: &dyn Store, dir: &str, name: &str) -> Result<bool> {
        Ok(!self.is_committed(store, dir, name)?)
    }

    fn committed_children(&self, store: &dyn Store, dir: &str) -> Result<Vec<String>> {
        if store.capabilities().directories {
            // Local file systems: a walk of every step's tree would cost more than one stat
            // per step directory.
            let mut out = Vec::new();
            for e in store.list_dir(dir)? {
                if e.kind == EntryKind::Dir && self.is_committed(store, dir, &e.name)? {
                    out.push(e.name);
                }
            }
            out.sort();
            return Ok(out);
        }
        let mut out: Vec<String> = store
            .list_recursive(dir)?
            .into_iter()
            .filter_map(|rel| {
                let (name, rest) = rel.split_once('/')?;
                (rest == COMMIT_SUCCESS_FILE).then(|| name.to_string())
            })
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_names_round_trip() {
        for m in [
            AtomicityMode::Auto,
            AtomicityMode::AtomicRename,
            AtomicityMode::CommitFile,
        ] {
            assert_eq!(m.to_string().parse::<AtomicityMode>().unwrap(), m);
        }
        let e = "Atomic".parse::<AtomicityMode>().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("\"Atomic\""));
    }

    #[test]
    fn auto_follows_rename_capability() {
        let fs = Capabilities {
            rename: true,
            write_if_absent: true,
            directories: true,
            durable: true,
            local: true,
        };
        let mem = Capabilities {
            write_if_absent: true,
            ..Default::default()
        };
        assert_eq!(
            protocol_for(AtomicityMode::Auto, fs).unwrap().mode(),
            AtomicityMode::AtomicRename
        );
        assert_eq!(
            protocol_for(AtomicityMode::Auto, mem).unwrap().mode(),
            AtomicityMode::CommitFile
        );
        assert_eq!(
            protocol_for(AtomicityMode::CommitFile, fs).unwrap().mode(),
            AtomicityMode::CommitFile
        );
        assert_eq!(
            protocol_for(AtomicityMode::AtomicRename, mem)
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidConfig
        );
    }

    #[test]
    fn working_paths() {
        assert_eq!(
            AtomicRenameProtocol.working_path("3"),
            "3.orbax-checkpoint-tmp"
        );
        assert_eq!(
            AtomicRenameProtocol.working_path("3.orbax-checkpoint-tmp/state"),
            "3.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp"
        );
        assert_eq!(CommitFileProtocol.working_path("3"), "3");
    }
}
