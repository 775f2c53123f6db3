//! [`StepClaim`]: who writes a step, and the claim file commit-file mode keeps it in.

use crate::path::join_path;
use crate::Store;
use ckpt_core::{ErrorKind, Result, STEP_CLAIM_FILE};

/// Who writes a step: what [`CommitProtocol::prepare_step`], [`CommitProtocol::commit_step`]
/// and [`CommitProtocol::abandon_step`] need to keep two writers of one step apart (issue 11,
/// item 1).
///
/// [`CommitProtocol::prepare_step`]: super::CommitProtocol::prepare_step
/// [`CommitProtocol::commit_step`]: super::CommitProtocol::commit_step
/// [`CommitProtocol::abandon_step`]: super::CommitProtocol::abandon_step
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

/// The writer token in the claim file of the step directory `step_dir` (commit-file mode), or
/// `None` when it has none.
///
/// # Errors
/// Store errors other than `NotFound`.
pub fn read_step_claim(store: &dyn Store, step_dir: &str) -> Result<Option<String>> {
    read_claim(store, &join_path(step_dir, STEP_CLAIM_FILE))
}

/// The writer token in the claim file at `claim_path`, or `None` when there is none.
pub(super) fn read_claim(store: &dyn Store, claim_path: &str) -> Result<Option<String>> {
    match store.read(claim_path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
