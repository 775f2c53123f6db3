//! Listings: `list_dir` and `list_recursive`, including one of more than a page.

use super::{listing, names, ok};
use crate::{join_path, EntryKind, Store};

/// `list_dir` lists one level, files and directories, names without `/`; a missing directory
/// lists as empty; the root lists its children.
pub fn list_dir(store: &dyn Store) {
    for p in ["tk_list/a", "tk_list/b", "tk_list/d/x", "tk_list/e/f/g"] {
        ok(store, store.write(p, p.as_bytes()), "write");
    }
    use EntryKind::{Dir, File};
    assert_eq!(
        listing(store, "tk_list"),
        names(&[("a", File), ("b", File), ("d", Dir), ("e", Dir)]),
        "{store:?}: one level of tk_list"
    );
    assert_eq!(
        listing(store, "tk_list/d"),
        names(&[("x", File)]),
        "{store:?}"
    );
    assert_eq!(
        listing(store, "tk_list/e"),
        names(&[("f", Dir)]),
        "{store:?}"
    );
    assert_eq!(
        listing(store, "tk_list/missing"),
        names(&[]),
        "{store:?}: a missing dir"
    );
    assert_eq!(
        listing(store, "tk_list_missing/deeper"),
        names(&[]),
        "{store:?}: a missing dir"
    );
    let root = listing(store, "");
    assert!(
        root.contains(&("tk_list".to_string(), Dir)),
        "{store:?}: root listing {root:?}"
    );
    assert!(
        root.iter().all(|(n, _)| !n.is_empty() && !n.contains('/')),
        "{store:?}: {root:?}"
    );
    if store.capabilities().directories {
        ok(
            store,
            store.create_dir("tk_list/empty/deeper"),
            "create_dir with parents",
        );
        ok(
            store,
            store.create_dir("tk_list/empty/deeper"),
            "create_dir of an existing dir",
        );
        assert!(
            listing(store, "tk_list").contains(&("empty".to_string(), Dir)),
            "{store:?}"
        );
        assert_eq!(
            listing(store, "tk_list/empty/deeper"),
            names(&[]),
            "{store:?}: empty dir"
        );
    } else {
        ok(
            store,
            store.create_dir("tk_list/empty"),
            "create_dir (a no-op here)",
        );
    }
}

/// How many files [`run_all`](super::run_all) lists in [`list_many`]: more than 1,000, S3's largest page, so
/// that a listing must fetch a second page, and a prefix delete must send a second batch.
pub const LIST_MANY: usize = 1001;

/// `n` files and a few directories in one directory (written by 8 threads at once): one
/// `list_dir` returns every one of them exactly once (on an object store, every page of the
/// listing), the subdirectories as directories; then `delete_prefix` removes them all (on S3,
/// in batches of up to 1,000 keys) and the directory lists as empty.
pub fn list_many(store: &dyn Store, n: usize) {
    let dir = "tk_list_many";
    let name = |i: usize| format!("f{i:06}");
    let threads = 8;
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for i in (t..n).step_by(threads) {
                    let p = join_path(dir, &name(i));
                    ok(
                        store,
                        store.write(&p, &i.to_le_bytes()),
                        &format!("write {p}"),
                    );
                }
            });
        }
    });
    for d in ["d_a", "d_b", "zz"] {
        ok(
            store,
            store.write(&join_path(dir, &format!("{d}/inner/x")), b"x"),
            "write",
        );
    }
    let got = listing(store, dir);
    let mut want: Vec<(String, EntryKind)> = (0..n).map(|i| (name(i), EntryKind::File)).collect();
    for d in ["d_a", "d_b", "zz"] {
        want.push((d.to_string(), EntryKind::Dir));
    }
    want.sort_by(|a, b| a.0.cmp(&b.0));
    if got != want {
        let missing: Vec<_> = want.iter().filter(|w| !got.contains(w)).take(5).collect();
        let extra: Vec<_> = got.iter().filter(|g| !want.contains(g)).take(5).collect();
        panic!(
            "{store:?}: listing {n} files + 3 dirs gave {} entries; missing (first 5) {missing:?}, \
             unexpected (first 5) {extra:?}",
            got.len()
        );
    }
    ok(
        store,
        store.delete_prefix(dir),
        "delete_prefix of many files",
    );
    assert_eq!(
        listing(store, dir),
        names(&[]),
        "{store:?}: files left after delete_prefix"
    );
    assert_eq!(ok(store, store.stat(dir), "stat"), None, "{store:?}");
}
