//! The two commit protocols that make a step (or item) directory visible atomically, as Orbax's
//! `AtomicRenameTemporaryPath` and `CommitFileTemporaryPath` (spec §1.3), and the choice between
//! them (Orbax's `AtomicityMode`).
//!
//! A save goes `prepare` → write into the returned working directory → `commit`. Items use the
//! same protocol one level down, inside the step's working directory: with atomic rename the
//! manager prepares `3.orbax-checkpoint-tmp/state` (working dir
//! `3.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp`), commits it to
//! `3.orbax-checkpoint-tmp/state`, and only then commits the step.
//!
//! One file per idea: the mode and [`protocol_for`] (`mode.rs`), the trait (here), each protocol
//! (`atomic_rename.rs`, `commit_file.rs`), the step claim of commit-file mode (`claim.rs`), and
//! what both share: the path checks and leftover removal (`checks.rs`), the directory fsyncs
//! (`sync.rs`).

mod atomic_rename;
mod checks;
mod claim;
mod commit_file;
mod mode;
mod sync;

pub use atomic_rename::AtomicRenameProtocol;
pub use claim::{read_step_claim, StepClaim};
pub use commit_file::CommitFileProtocol;
pub use mode::{protocol_for, AtomicityMode};

use crate::{EntryKind, Store};
use ckpt_core::Result;
use std::fmt::Debug;

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
