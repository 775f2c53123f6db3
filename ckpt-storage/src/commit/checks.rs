//! What both protocols check before they write: a usable final path, not yet committed, and
//! no leftover of a save that died in the way.

use crate::path::{file_name, join_path, validate_path};
use crate::Store;
use ckpt_core::{is_tmp_name, Error, ErrorKind, Result, COMMIT_SUCCESS_FILE, TMP_DIR_SUFFIX};

/// Validates a final path: valid, not the root, and not itself a tmp name.
pub(super) fn check_final(final_path: &str) -> Result<()> {
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

/// Removes a leftover at `path` (a dead save's working directory), with a warning.
pub(super) fn remove_leftover(store: &dyn Store, path: &str, what: &str) -> Result<()> {
    if store.stat(path)?.is_some() {
        tracing::warn!(path = %store.location(path), "removing {what} left by an earlier save that did not finish");
        store.delete_prefix(path)?;
    }
    Ok(())
}

/// Validates `final_path` ([`check_final`]) and refuses it when it holds a commit file.
pub(super) fn check_uncommitted(store: &dyn Store, final_path: &str) -> Result<()> {
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
