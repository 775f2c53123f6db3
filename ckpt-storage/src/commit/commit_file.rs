//! [`CommitFileProtocol`]: write in place, `commit_success.txt` last (Orbax
//! `CommitFileTemporaryPath`), with the step claim that keeps two writers of one step apart.

use super::checks::{check_final, check_uncommitted, remove_leftover};
use super::claim::read_claim;
use super::sync::{sync_parent, sync_tree};
use super::{AtomicityMode, CommitProtocol, StepClaim};
use crate::path::join_path;
use crate::{EntryKind, Store};
use ckpt_core::{
    commit_success_text, Error, ErrorKind, Result, COMMIT_SUCCESS_FILE, STEP_CLAIM_FILE,
};

/// Write `<final>/` in place, then `commit_success.txt` last, with a conditional create so that
/// a second committer loses: as Orbax `CommitFileTemporaryPath` (spec §1.3). Works on any store.
///
/// A directory is committed when it holds `commit_success.txt`, and tmp otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommitFileProtocol;

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
    fn working_path_is_the_final_path() {
        assert_eq!(CommitFileProtocol.working_path("3"), "3");
    }
}
