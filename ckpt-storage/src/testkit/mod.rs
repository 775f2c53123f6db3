//! Conformance checks every [`Store`] implementation must pass (feature `testkit`).
//!
//! Test code: each function panics with a message naming the store, the call and what was
//! expected. Each works below its own top-level directory (`tk_<name>`), so they can run one after
//! another on one store; give [`run_all`] a store whose root is empty. Run them from a test:
//!
//! ```no_run
//! # #[cfg(feature = "testkit")] {
//! let store = ckpt_storage::OpendalStore::memory().unwrap();
//! ckpt_storage::testkit::run_all(&store);
//! # }
//! ```
//!
//! By topic: `writes.rs` (`write`, the conditional create `write_if_absent`, empty and large
//! files, `sync_dir`), `reads.rs` (ranges, parts and streams, `stat`), `listing.rs`,
//! `deletes.rs`, `rename.rs`, `paths.rs` (odd names kept, bad paths refused) and `commit.rs`
//! (the commit protocols over the store).

mod commit;
mod deletes;
mod listing;
mod paths;
mod reads;
mod rename;
mod writes;

pub use commit::commit_protocol;
pub use deletes::{delete, delete_prefix};
pub use listing::{list_dir, list_many, LIST_MANY};
pub use paths::{bad_paths, odd_names};
pub use reads::{parts_and_streams, range_get, stat};
pub use rename::rename;
pub use writes::{empty_files, large_file, large_file_of, put_get, put_if_absent, sync_dir};

use crate::{AtomicityMode, Entry, EntryKind, Store};
use ckpt_core::{ErrorKind, Result};

/// Runs every check of this module on `store`, in order.
///
/// # Panics
/// On the first check that fails.
pub fn run_all(store: &dyn Store) {
    put_get(store);
    put_if_absent(store);
    range_get(store);
    parts_and_streams(store);
    stat(store);
    list_dir(store);
    list_many(store, LIST_MANY);
    delete(store);
    delete_prefix(store);
    rename(store);
    odd_names(store);
    empty_files(store);
    large_file(store);
    bad_paths(store);
    sync_dir(store);
    commit_protocol(store, AtomicityMode::CommitFile);
    if store.capabilities().rename {
        commit_protocol(store, AtomicityMode::AtomicRename);
    }
}

/// The kind of the error of `r`, panicking (with `what`) if it succeeded.
#[track_caller]
fn err_kind<T: std::fmt::Debug>(r: Result<T>, what: &str) -> ErrorKind {
    match r {
        Ok(v) => panic!("{what}: expected an error, got Ok({v:?})"),
        Err(e) => e.kind(),
    }
}

/// The value of `r`, panicking (naming `store` and `what`) if it failed.
#[track_caller]
fn ok<T>(store: &dyn Store, r: Result<T>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{store:?}: {what} failed: {e}"))
}

/// Sorted `(name, kind)` pairs of a listing.
fn listing(store: &dyn Store, dir: &str) -> Vec<(String, EntryKind)> {
    let mut v: Vec<(String, EntryKind)> =
        ok(store, store.list_dir(dir), &format!("list_dir({dir:?})"))
            .into_iter()
            .map(|Entry { name, kind }| (name, kind))
            .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Sorted `(name, kind)` pairs, as [`listing`] returns them.
fn names(pairs: &[(&str, EntryKind)]) -> Vec<(String, EntryKind)> {
    let mut v: Vec<(String, EntryKind)> = pairs.iter().map(|(n, k)| (n.to_string(), *k)).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}
