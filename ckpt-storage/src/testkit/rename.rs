//! `rename` of files and directories, and what it refuses.

use super::{err_kind, ok};
use crate::Store;
use ckpt_core::ErrorKind;

/// `rename` of a file and of a directory; to an existing target → `AlreadyExists`; from a missing
/// path → `NotFound`. On a store without rename: `Unsupported`.
pub fn rename(store: &dyn Store) {
    ok(store, store.write("tk_rename/a", b"A"), "write");
    if !store.capabilities().rename {
        assert_eq!(
            err_kind(store.rename("tk_rename/a", "tk_rename/b"), "rename"),
            ErrorKind::Unsupported
        );
        assert_eq!(ok(store, store.read("tk_rename/a"), "read"), b"A");
        return;
    }
    ok(
        store,
        store.rename("tk_rename/a", "tk_rename/b"),
        "rename of a file",
    );
    assert_eq!(
        ok(store, store.read("tk_rename/b"), "read"),
        b"A",
        "{store:?}"
    );
    assert_eq!(
        ok(store, store.stat("tk_rename/a"), "stat"),
        None,
        "{store:?}: source still there"
    );

    for p in [
        "tk_rename/d.orbax-checkpoint-tmp/x",
        "tk_rename/d.orbax-checkpoint-tmp/y/z",
    ] {
        ok(store, store.write(p, p.as_bytes()), "write");
    }
    ok(
        store,
        store.rename("tk_rename/d.orbax-checkpoint-tmp", "tk_rename/d"),
        "rename of a directory",
    );
    assert_eq!(
        ok(store, store.read("tk_rename/d/y/z"), "read"),
        b"tk_rename/d.orbax-checkpoint-tmp/y/z"
    );
    assert_eq!(
        ok(
            store,
            store.stat("tk_rename/d.orbax-checkpoint-tmp"),
            "stat"
        ),
        None,
        "{store:?}"
    );

    ok(store, store.write("tk_rename/c", b"C"), "write");
    assert_eq!(
        err_kind(
            store.rename("tk_rename/c", "tk_rename/b"),
            "rename onto a file"
        ),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        ok(store, store.read("tk_rename/b"), "read"),
        b"A",
        "{store:?}: target replaced"
    );
    assert_eq!(
        err_kind(
            store.rename("tk_rename/c", "tk_rename/d"),
            "rename onto a dir"
        ),
        ErrorKind::AlreadyExists
    );
    ok(
        store,
        store.write("tk_rename/e.orbax-checkpoint-tmp/x", b"x"),
        "write",
    );
    assert_eq!(
        err_kind(
            store.rename("tk_rename/e.orbax-checkpoint-tmp", "tk_rename/d"),
            "rename of a dir onto a dir"
        ),
        ErrorKind::AlreadyExists
    );
    if store.capabilities().directories {
        ok(store, store.create_dir("tk_rename/empty"), "create_dir");
        assert_eq!(
            err_kind(
                store.rename("tk_rename/e.orbax-checkpoint-tmp", "tk_rename/empty"),
                "rename onto an empty dir"
            ),
            ErrorKind::AlreadyExists
        );
    }
    assert!(
        ok(
            store,
            store.stat("tk_rename/e.orbax-checkpoint-tmp/x"),
            "stat"
        )
        .is_some(),
        "{store:?}"
    );
    assert_eq!(
        err_kind(
            store.rename("tk_rename/missing", "tk_rename/m2"),
            "rename of a missing path"
        ),
        ErrorKind::NotFound
    );
    assert_eq!(
        err_kind(
            store.rename("tk_rename/d", "tk_rename/d/inside"),
            "rename into itself"
        ),
        ErrorKind::InvalidArgument
    );
}
