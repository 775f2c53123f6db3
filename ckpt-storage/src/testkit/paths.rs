//! Path names: the odd ones every store must keep, the bad ones it must refuse.

use super::{err_kind, listing, names, ok};
use crate::{join_path, EntryKind, Store};
use ckpt_core::ErrorKind;

/// Names with spaces, unicode and punctuation round-trip through write, read and list.
pub fn odd_names(store: &dyn Store) {
    let files = [
        "with space.txt",
        "ünïcødé 日本語.bin",
        "a+b=c@d#e%f&g",
        ".hidden",
        "...",
        "x.orbax-checkpoint-tmp",
    ];
    for (i, f) in files.iter().enumerate() {
        let p = join_path("tk_names/sub dir", f);
        ok(
            store,
            store.write(&p, f.as_bytes()),
            &format!("write {p:?}"),
        );
        assert_eq!(
            ok(store, store.read(&p), "read"),
            f.as_bytes(),
            "{store:?}: {p:?}"
        );
        assert_eq!(
            ok(store, store.stat(&p), "stat").map(|m| m.size),
            Some(f.len() as u64),
            "{store:?}: file {i}"
        );
    }
    let got = listing(store, "tk_names/sub dir");
    let want = names(
        &files
            .iter()
            .map(|f| (*f, EntryKind::File))
            .collect::<Vec<_>>(),
    );
    assert_eq!(got, want, "{store:?}: listing of odd names");
    assert_eq!(
        listing(store, "tk_names"),
        names(&[("sub dir", EntryKind::Dir)]),
        "{store:?}"
    );
}

/// Paths that are not store paths are refused by every method with `InvalidArgument`.
pub fn bad_paths(store: &dyn Store) {
    let bad = [
        "../x", "/abs", "a//b", "a/./b", "a/", "a/../b", ".", "..", "a\\b", "a\0b", " a", "a ",
    ];
    for p in bad {
        let calls: Vec<(&str, ErrorKind)> = vec![
            ("write", err_kind(store.write(p, b"x"), p)),
            (
                "write_if_absent",
                err_kind(store.write_if_absent(p, b"x"), p),
            ),
            ("read", err_kind(store.read(p), p)),
            ("read_range", err_kind(store.read_range(p, 0..1), p)),
            ("stat", err_kind(store.stat(p), p)),
            ("list_dir", err_kind(store.list_dir(p), p)),
            ("create_dir", err_kind(store.create_dir(p), p)),
            ("delete", err_kind(store.delete(p), p)),
            ("delete_prefix", err_kind(store.delete_prefix(p), p)),
            ("rename from", err_kind(store.rename(p, "tk_bad/ok"), p)),
            ("rename to", err_kind(store.rename("tk_bad/ok", p), p)),
            ("sync_dir", err_kind(store.sync_dir(p), p)),
        ];
        for (call, kind) in calls {
            assert_eq!(kind, ErrorKind::InvalidArgument, "{store:?}: {call}({p:?})");
        }
    }
    let root = listing(store, "");
    assert!(
        !root.iter().any(|(n, _)| n == "a" || n == "abs" || n == "x"),
        "{store:?}: a bad path wrote {root:?}"
    );
}
