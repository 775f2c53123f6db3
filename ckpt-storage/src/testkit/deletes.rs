//! Deletes: `delete` of a file, `delete_prefix` of a directory.

use super::{err_kind, listing, names, ok};
use crate::Store;
use ckpt_core::ErrorKind;

/// `delete` removes one file; a missing file is fine; it never removes a directory's contents.
pub fn delete(store: &dyn Store) {
    ok(store, store.write("tk_delete/f", b"x"), "write");
    ok(store, store.write("tk_delete/keep", b"x"), "write");
    ok(store, store.delete("tk_delete/f"), "delete");
    assert_eq!(
        ok(store, store.stat("tk_delete/f"), "stat"),
        None,
        "{store:?}: deleted file"
    );
    ok(store, store.delete("tk_delete/f"), "delete again");
    ok(
        store,
        store.delete("tk_delete/never/was"),
        "delete of a missing file",
    );
    assert!(
        ok(store, store.stat("tk_delete/keep"), "stat").is_some(),
        "{store:?}: sibling deleted"
    );
    ok(store, store.write("tk_delete/dir/inner", b"x"), "write");
    match store.delete("tk_delete/dir") {
        Ok(()) => {}
        Err(e) => assert_eq!(
            e.kind(),
            ErrorKind::InvalidArgument,
            "{store:?}: delete of a dir: {e}"
        ),
    }
    assert!(
        ok(store, store.stat("tk_delete/dir/inner"), "stat").is_some(),
        "{store:?}: delete emptied a dir"
    );
    assert_eq!(
        err_kind(store.delete(""), "delete of the root"),
        ErrorKind::InvalidArgument
    );
}

/// `delete_prefix` removes a tree and nothing beside it (not even names sharing a prefix); a
/// missing path is fine; the root is refused.
pub fn delete_prefix(store: &dyn Store) {
    for p in [
        "tk_dp/t/a",
        "tk_dp/t/b/c",
        "tk_dp/t/b/d/e",
        "tk_dp/t2/x",
        "tk_dp/tt",
        "tk_dp/t.orbax-checkpoint-tmp/y",
    ] {
        ok(store, store.write(p, b"x"), "write");
    }
    ok(store, store.delete_prefix("tk_dp/t"), "delete_prefix");
    assert_eq!(
        ok(store, store.stat("tk_dp/t"), "stat"),
        None,
        "{store:?}: tree still there"
    );
    assert_eq!(
        ok(store, store.stat("tk_dp/t/b/d/e"), "stat"),
        None,
        "{store:?}: deep file still there"
    );
    assert_eq!(listing(store, "tk_dp/t"), names(&[]), "{store:?}");
    for p in ["tk_dp/t2/x", "tk_dp/tt", "tk_dp/t.orbax-checkpoint-tmp/y"] {
        assert!(
            ok(store, store.stat(p), "stat").is_some(),
            "{store:?}: delete_prefix removed {p}"
        );
    }
    ok(
        store,
        store.delete_prefix("tk_dp/t"),
        "delete_prefix of a missing dir",
    );
    ok(
        store,
        store.delete_prefix("tk_dp/tt"),
        "delete_prefix of a file",
    );
    assert_eq!(
        ok(store, store.stat("tk_dp/tt"), "stat"),
        None,
        "{store:?}: delete_prefix of a file"
    );
    assert_eq!(
        err_kind(store.delete_prefix(""), "delete_prefix of the root"),
        ErrorKind::InvalidArgument
    );
    assert!(
        ok(store, store.stat("tk_dp/t2/x"), "stat").is_some(),
        "{store:?}: root delete did something"
    );
}
