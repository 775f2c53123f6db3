//! The directory fsyncs of a commit, where the store is durable and has directories.

use crate::path::{join_path, parent_path};
use crate::{EntryKind, Store};
use ckpt_core::Result;

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
pub(super) fn sync_tree(store: &dyn Store, dir: &str) -> Result<()> {
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
pub(super) fn sync_parent(store: &dyn Store, path: &str) -> Result<()> {
    let caps = store.capabilities();
    if !(caps.durable && caps.directories) {
        return Ok(());
    }
    store.sync_dir(parent_path(path).unwrap_or(""))
}
