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

use crate::{
    join_path, AtomicRenameProtocol, AtomicityMode, CommitFileProtocol, CommitProtocol, Entry,
    EntryKind, Store,
};
use ckpt_core::{commit_success_text, ErrorKind, Result, COMMIT_SUCCESS_FILE};

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

/// How many files [`run_all`] lists in [`list_many`]: more than 1,000, S3's largest page, so
/// that a listing must fetch a second page, and a prefix delete must send a second batch.
pub const LIST_MANY: usize = 1001;

/// The kind of the error of `r`, panicking (with `what`) if it succeeded.
#[track_caller]
fn err_kind<T: std::fmt::Debug>(r: Result<T>, what: &str) -> ErrorKind {
    match r {
        Ok(v) => panic!("{what}: expected an error, got Ok({v:?})"),
        Err(e) => e.kind(),
    }
}

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

fn names(pairs: &[(&str, EntryKind)]) -> Vec<(String, EntryKind)> {
    let mut v: Vec<(String, EntryKind)> = pairs.iter().map(|(n, k)| (n.to_string(), *k)).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// `write` then `read`; overwrite; parents are created; a missing file or a directory reads as
/// `NotFound`.
pub fn put_get(store: &dyn Store) {
    ok(store, store.write("tk_put_get/a.txt", b"hello"), "write");
    assert_eq!(
        ok(store, store.read("tk_put_get/a.txt"), "read"),
        b"hello",
        "{store:?}: read back"
    );
    ok(store, store.write("tk_put_get/a.txt", b"bye"), "overwrite");
    assert_eq!(
        ok(store, store.read("tk_put_get/a.txt"), "read"),
        b"bye",
        "{store:?}: overwrite"
    );
    ok(
        store,
        store.write("tk_put_get/x/y/z.bin", &[0, 1, 2, 255]),
        "write with new parents",
    );
    assert_eq!(
        ok(store, store.read("tk_put_get/x/y/z.bin"), "read nested"),
        [0, 1, 2, 255]
    );
    assert_eq!(
        err_kind(store.read("tk_put_get/missing"), "read of a missing file"),
        ErrorKind::NotFound,
        "{store:?}"
    );
    assert_eq!(
        err_kind(store.read("tk_put_get/x/y"), "read of a directory"),
        ErrorKind::NotFound,
        "{store:?}"
    );
    assert_eq!(
        err_kind(store.read("tk_nothing_here/a"), "read below a missing dir"),
        ErrorKind::NotFound,
        "{store:?}"
    );
}

/// `write_if_absent`: the first succeeds, the second gets `AlreadyExists` and changes nothing.
pub fn put_if_absent(store: &dyn Store) {
    ok(
        store,
        store.write_if_absent("tk_put_if_absent/m", b"first"),
        "first write_if_absent",
    );
    assert_eq!(
        err_kind(
            store.write_if_absent("tk_put_if_absent/m", b"second"),
            "second write_if_absent"
        ),
        ErrorKind::AlreadyExists,
        "{store:?}"
    );
    assert_eq!(
        ok(store, store.read("tk_put_if_absent/m"), "read"),
        b"first",
        "{store:?}: loser wrote"
    );
    ok(store, store.write("tk_put_if_absent/w", b"plain"), "write");
    assert_eq!(
        err_kind(
            store.write_if_absent("tk_put_if_absent/w", b"x"),
            "write_if_absent over a file"
        ),
        ErrorKind::AlreadyExists,
        "{store:?}"
    );
}

/// `read_range`: inner, whole, empty ranges; beyond the end or reversed → `InvalidArgument`;
/// a missing file → `NotFound`.
pub fn range_get(store: &dyn Store) {
    let p = "tk_range_get/digits";
    ok(store, store.write(p, b"0123456789"), "write");
    let r = |range: std::ops::Range<u64>| {
        ok(
            store,
            store.read_range(p, range.clone()),
            &format!("read_range {range:?}"),
        )
    };
    assert_eq!(r(2..5), b"234", "{store:?}");
    assert_eq!(r(0..10), b"0123456789", "{store:?}");
    assert_eq!(r(9..10), b"9", "{store:?}");
    assert_eq!(r(5..5), b"", "{store:?}");
    assert_eq!(r(10..10), b"", "{store:?}");
    assert_eq!(
        err_kind(store.read_range(p, 3..11), "range past the end"),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        err_kind(store.read_range(p, 11..12), "range after the end"),
        ErrorKind::InvalidArgument
    );
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = 5..3;
    assert_eq!(
        err_kind(store.read_range(p, reversed), "reversed range"),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        err_kind(
            store.read_range("tk_range_get/missing", 0..1),
            "range of a missing file"
        ),
        ErrorKind::NotFound
    );
}

/// `write_parts` writes the concatenation of its parts (empty parts and no parts included, over
/// an existing file too, above the object stores' multipart threshold too); `open_read` reads a
/// file in pieces in order, refuses to read past the end (reading nothing), is `NotFound` for a
/// missing file and for a directory, and its `finish` succeeds.
pub fn parts_and_streams(store: &dyn Store) {
    let p = "tk_parts/file";
    ok(store, store.write(p, b"old contents, longer"), "write");
    ok(
        store,
        store.write_parts(p, &[b"head", b"", b"-", b"tail"]),
        "write_parts",
    );
    assert_eq!(ok(store, store.read(p), "read"), b"head-tail", "{store:?}");
    ok(
        store,
        store.write_parts("tk_parts/none", &[]),
        "write_parts of nothing",
    );
    assert_eq!(
        ok(store, store.read("tk_parts/none"), "read"),
        b"",
        "{store:?}"
    );
    let big: Vec<u8> = (0..(17usize << 20)).map(|i| (i % 253) as u8).collect();
    let (a, b) = big.split_at(3 << 20);
    ok(
        store,
        store.write_parts("tk_parts/big", &[b"x", a, b]),
        "write_parts of 17 MiB",
    );
    let back = ok(store, store.read("tk_parts/big"), "read of 17 MiB");
    assert!(
        back.len() == big.len() + 1 && back[0] == b'x' && back[1..] == big[..],
        "{store:?}: write_parts of 17 MiB read back differs"
    );

    let mut s = ok(store, store.open_read(p), "open_read");
    assert_eq!(s.size(), 9, "{store:?}");
    let mut head = [0u8; 4];
    ok(store, s.read_exact(&mut head), "read_exact");
    assert_eq!(&head, b"head", "{store:?}");
    let mut too_much = [0u8; 6];
    assert_eq!(
        err_kind(s.read_exact(&mut too_much), "read past the end"),
        ErrorKind::InvalidArgument
    );
    assert_eq!(s.position(), 4, "{store:?}: a refused read reads nothing");
    let mut rest = [0u8; 5];
    ok(store, s.read_exact(&mut rest), "read_exact");
    assert_eq!(&rest, b"-tail", "{store:?}");
    ok(store, s.read_exact(&mut []), "empty read_exact at the end");
    ok(store, s.finish(), "finish");
    let mut s = ok(
        store,
        store.open_read("tk_parts/big"),
        "open_read of 17 MiB",
    );
    let mut first = vec![0u8; 1 + (3 << 20)];
    let mut second = vec![0u8; big.len() - (3 << 20)];
    ok(store, s.read_exact(&mut first), "read_exact");
    ok(store, s.read_exact(&mut second), "read_exact");
    assert!(
        first[0] == b'x' && first[1..] == *a && second == b,
        "{store:?}"
    );
    ok(store, s.finish(), "finish");
    assert_eq!(
        err_kind(
            store.open_read("tk_parts/missing").map(|s| s.size()),
            "open_read of a missing file"
        ),
        ErrorKind::NotFound
    );
    assert_eq!(
        err_kind(
            store.open_read("tk_parts").map(|s| s.size()),
            "open_read of a directory"
        ),
        ErrorKind::NotFound
    );
    ok(store, store.delete_prefix("tk_parts"), "delete_prefix");
}

/// `stat` of a file (kind, size, time), a directory, the root and a missing path.
pub fn stat(store: &dyn Store) {
    ok(store, store.write("tk_stat/f", b"12345"), "write");
    ok(store, store.write("tk_stat/d/inner", b"x"), "write");
    let f = ok(store, store.stat("tk_stat/f"), "stat file")
        .unwrap_or_else(|| panic!("{store:?}: file not found by stat"));
    assert_eq!(
        (f.kind, f.size),
        (EntryKind::File, 5),
        "{store:?}: stat of a file"
    );
    let d = ok(store, store.stat("tk_stat/d"), "stat dir")
        .unwrap_or_else(|| panic!("{store:?}: dir not found by stat"));
    assert_eq!(d.kind, EntryKind::Dir, "{store:?}: stat of a directory");
    let root = ok(store, store.stat(""), "stat root")
        .unwrap_or_else(|| panic!("{store:?}: root not found by stat"));
    assert_eq!(root.kind, EntryKind::Dir, "{store:?}: stat of the root");
    assert_eq!(
        ok(store, store.stat("tk_stat/missing"), "stat missing"),
        None,
        "{store:?}"
    );
    assert_eq!(
        ok(
            store,
            store.stat("tk_stat/f/below_a_file"),
            "stat below a file"
        ),
        None,
        "{store:?}"
    );
    if store.capabilities().directories {
        ok(store, store.create_dir("tk_stat/empty"), "create_dir");
        let e = ok(store, store.stat("tk_stat/empty"), "stat empty dir");
        assert_eq!(
            e.map(|m| m.kind),
            Some(EntryKind::Dir),
            "{store:?}: an empty directory"
        );
    }
}

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

/// Empty files: written, read, stat-ed (size 0) and listed as files.
pub fn empty_files(store: &dyn Store) {
    ok(
        store,
        store.write("tk_empty/e", b""),
        "write of an empty file",
    );
    ok(
        store,
        store.write_if_absent("tk_empty/c", b""),
        "write_if_absent of an empty file",
    );
    for p in ["tk_empty/e", "tk_empty/c"] {
        assert_eq!(ok(store, store.read(p), "read"), b"", "{store:?}");
        let m =
            ok(store, store.stat(p), "stat").unwrap_or_else(|| panic!("{store:?}: {p} missing"));
        assert_eq!((m.kind, m.size), (EntryKind::File, 0), "{store:?}");
    }
    assert_eq!(
        listing(store, "tk_empty"),
        names(&[("c", EntryKind::File), ("e", EntryKind::File)]),
        "{store:?}"
    );
}

/// A 20 MiB file (on object stores, above the default multipart threshold of 16 MiB): see
/// [`large_file_of`].
pub fn large_file(store: &dyn Store) {
    large_file_of(store, "tk_large/blob", 20 << 20);
}

/// A file of `size` bytes (at least 6 MiB) at `path`: written, stat-ed, read whole and by a
/// 5 MiB range in its middle, each byte compared; then deleted.
pub fn large_file_of(store: &dyn Store, path: &str, size: usize) {
    assert!(size >= 6 << 20, "large_file_of needs at least 6 MiB");
    let data: Vec<u8> = (0..size)
        .map(|i| (i % 251) as u8 ^ (i >> 16) as u8)
        .collect();
    let mib = size >> 20;
    ok(store, store.write(path, &data), &format!("write {mib} MiB"));
    let m =
        ok(store, store.stat(path), "stat").unwrap_or_else(|| panic!("{store:?}: {path} missing"));
    assert_eq!(
        (m.kind, m.size),
        (EntryKind::File, size as u64),
        "{store:?}: size of the large file"
    );
    let back = ok(store, store.read(path), &format!("read {mib} MiB"));
    assert!(back == data, "{store:?}: the large file read back differs");
    let (a, b) = (size as u64 / 3, size as u64 / 3 + (5 << 20) + 7);
    let part = ok(store, store.read_range(path, a..b), "read_range");
    assert!(
        part == data[a as usize..b as usize],
        "{store:?}: the range read back differs"
    );
    ok(store, store.delete(path), "delete of the large file");
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

/// `sync_dir` of an existing directory and of the root succeeds.
pub fn sync_dir(store: &dyn Store) {
    ok(store, store.write("tk_sync/d/f", b"x"), "write");
    ok(store, store.sync_dir("tk_sync/d"), "sync_dir");
    ok(store, store.sync_dir("tk_sync"), "sync_dir");
    ok(store, store.sync_dir(""), "sync_dir of the root");
}

/// The commit protocol of `mode` (`AtomicRename` or `CommitFile`) on `store`, under
/// `tk_commit_<mode>/`: prepare, write, commit; the commit file names the final location; the
/// working directory is gone (atomic rename); uncommitted directories count as tmp and not as
/// committed; a leftover working directory is wiped by `prepare`; committing twice fails with
/// `AlreadyExists`; items committed inside a step's working directory survive the step commit.
///
/// # Panics
/// Also when `mode` is `Auto`.
pub fn commit_protocol(store: &dyn Store, mode: AtomicityMode) {
    let proto: &dyn CommitProtocol = match mode {
        AtomicityMode::AtomicRename => &AtomicRenameProtocol,
        AtomicityMode::CommitFile => &CommitFileProtocol,
        AtomicityMode::Auto => panic!("commit_protocol needs a resolved mode"),
    };
    assert_eq!(proto.mode(), mode);
    let root = format!("tk_commit_{mode}");
    let fin = join_path(&root, "3");

    // prepare + writes + commit.
    let working = ok(store, proto.prepare(store, &fin), "prepare");
    assert_eq!(
        working,
        proto.working_path(&fin),
        "{store:?}: prepare's working path"
    );
    ok(
        store,
        store.write(&join_path(&working, "data/a.bin"), b"payload"),
        "write into working dir",
    );
    ok(
        store,
        store.write(&join_path(&working, "meta"), b"{}"),
        "write into working dir",
    );
    let working_name = crate::file_name(&working).to_string();
    assert!(
        ok(store, proto.is_tmp(store, &root, &working_name), "is_tmp"),
        "{store:?}: uncommitted not tmp"
    );
    assert!(
        !ok(
            store,
            proto.is_committed(store, &root, &working_name),
            "is_committed"
        ),
        "{store:?}: uncommitted is committed"
    );
    ok(store, proto.commit(store, &working, &fin), "commit");
    let text = ok(
        store,
        store.read(&join_path(&fin, COMMIT_SUCCESS_FILE)),
        "read commit_success.txt",
    );
    assert_eq!(
        String::from_utf8_lossy(&text),
        commit_success_text(&store.location(&fin)),
        "{store:?}: commit_success.txt must name the final location"
    );
    assert_eq!(
        ok(
            store,
            store.read(&join_path(&fin, "data/a.bin")),
            "read committed data"
        ),
        b"payload"
    );
    assert!(
        ok(store, proto.is_committed(store, &root, "3"), "is_committed"),
        "{store:?}: committed dir not committed"
    );
    assert!(
        !ok(store, proto.is_tmp(store, &root, "3"), "is_tmp"),
        "{store:?}: committed dir is tmp"
    );
    if mode == AtomicityMode::AtomicRename {
        assert_eq!(
            ok(store, store.stat(&working), "stat"),
            None,
            "{store:?}: tmp dir still there"
        );
        let l = listing(store, &root);
        assert_eq!(
            l,
            names(&[("3", EntryKind::Dir)]),
            "{store:?}: after commit"
        );
    }

    // A committed directory cannot be prepared or committed again.
    assert_eq!(
        err_kind(proto.prepare(store, &fin), "prepare of a committed dir"),
        ErrorKind::AlreadyExists
    );
    if mode == AtomicityMode::CommitFile {
        assert_eq!(
            err_kind(proto.commit(store, &fin, &fin), "second commit"),
            ErrorKind::AlreadyExists
        );
    } else {
        ok(
            store,
            store.create_dir(&proto.working_path(&fin)),
            "create_dir",
        );
        ok(
            store,
            store.write(&join_path(&proto.working_path(&fin), "x"), b"x"),
            "write",
        );
        assert_eq!(
            err_kind(
                proto.commit(store, &proto.working_path(&fin), &fin),
                "commit over a committed dir"
            ),
            ErrorKind::AlreadyExists
        );
        ok(
            store,
            store.delete_prefix(&proto.working_path(&fin)),
            "cleanup",
        );
    }
    assert_eq!(
        ok(store, store.read(&join_path(&fin, "data/a.bin")), "read"),
        b"payload",
        "{store:?}: committed data changed"
    );

    // A leftover working directory is wiped by prepare.
    let fin4 = join_path(&root, "4");
    let w4 = ok(store, proto.prepare(store, &fin4), "prepare");
    ok(
        store,
        store.write(&join_path(&w4, "junk/j"), b"junk"),
        "write",
    );
    let w4_name = crate::file_name(&w4).to_string();
    assert!(
        ok(store, proto.is_tmp(store, &root, &w4_name), "is_tmp"),
        "{store:?}: leftover not tmp"
    );
    assert!(
        !ok(
            store,
            proto.is_committed(store, &root, &w4_name),
            "is_committed"
        ),
        "{store:?}: leftover committed"
    );
    let again = ok(
        store,
        proto.prepare(store, &fin4),
        "prepare over a leftover",
    );
    assert_eq!(again, w4);
    assert_eq!(
        ok(store, store.stat(&join_path(&w4, "junk/j")), "stat"),
        None,
        "{store:?}: leftover not wiped"
    );
    ok(store, store.write(&join_path(&w4, "fresh"), b"f"), "write");
    ok(store, proto.commit(store, &w4, &fin4), "commit after wipe");
    assert_eq!(
        listing(store, &fin4),
        names(&[
            (COMMIT_SUCCESS_FILE, EntryKind::File),
            ("fresh", EntryKind::File)
        ])
    );

    // Items one level down, inside the step's working directory.
    let fin5 = join_path(&root, "5");
    let w5 = ok(store, proto.prepare(store, &fin5), "prepare step");
    let item_final = join_path(&w5, "state");
    let item_working = ok(store, proto.prepare(store, &item_final), "prepare item");
    assert_eq!(item_working, proto.working_path(&item_final));
    ok(
        store,
        store.write(&join_path(&item_working, "t.bin"), b"tensor"),
        "write item",
    );
    ok(
        store,
        proto.commit(store, &item_working, &item_final),
        "commit item",
    );
    assert!(
        ok(
            store,
            proto.is_committed(store, &w5, "state"),
            "is_committed item"
        ),
        "{store:?}"
    );
    ok(
        store,
        store.write(&join_path(&w5, "_CHECKPOINT_METADATA"), b"{}"),
        "write step metadata",
    );
    ok(store, proto.commit(store, &w5, &fin5), "commit step");
    assert_eq!(
        ok(
            store,
            store.read(&join_path(&fin5, "state/t.bin")),
            "read item"
        ),
        b"tensor"
    );
    let item_text = ok(
        store,
        store.read(&join_path(&fin5, "state/commit_success.txt")),
        "read item commit file",
    );
    assert_eq!(
        String::from_utf8_lossy(&item_text),
        commit_success_text(&store.location(&item_final)),
        "{store:?}: an item's commit file names its path inside the step's working dir (as Orbax)"
    );
    let step_listing = listing(store, &fin5);
    assert_eq!(
        step_listing,
        names(&[
            ("_CHECKPOINT_METADATA", EntryKind::File),
            (COMMIT_SUCCESS_FILE, EntryKind::File),
            ("state", EntryKind::Dir)
        ]),
        "{store:?}: committed step"
    );

    // Bad final paths.
    assert_eq!(
        err_kind(proto.prepare(store, ""), "prepare of the root"),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        err_kind(
            proto.prepare(store, &join_path(&root, "6.orbax-checkpoint-tmp")),
            "prepare of a tmp name"
        ),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        err_kind(
            proto.commit(store, "elsewhere", &fin5),
            "commit of a wrong working dir"
        ),
        ErrorKind::InvalidArgument
    );
}
