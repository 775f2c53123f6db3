//! [`AtomicRenameProtocol`]: write into a tmp directory, then rename it (Orbax
//! `AtomicRenameTemporaryPath`).

use super::checks::{check_final, remove_leftover};
use super::sync::{sync_parent, sync_tree};
use super::{AtomicityMode, CommitProtocol};
use crate::path::join_path;
use crate::Store;
use ckpt_core::{
    commit_success_text, is_tmp_name, Error, ErrorKind, Result, COMMIT_SUCCESS_FILE, TMP_DIR_SUFFIX,
};

/// Write into `<final>.orbax-checkpoint-tmp/`, then `commit_success.txt`, fsync, rename to
/// `<final>`: as Orbax `AtomicRenameTemporaryPath` (spec §1.3), plus the directory fsyncs Orbax
/// leaves to the file system. Needs [`Capabilities::rename`](crate::Capabilities::rename).
///
/// A directory is committed when its name has no tmp suffix (`commit_success.txt` is not
/// required, so older Orbax checkpoints stay valid); it is tmp when its name contains
/// `.orbax-checkpoint-tmp` anywhere (also the legacy `-<number>` form).
#[derive(Debug, Clone, Copy, Default)]
pub struct AtomicRenameProtocol;

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

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
