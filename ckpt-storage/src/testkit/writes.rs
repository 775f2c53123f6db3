//! Writes: `write` and `write_if_absent` (the conditional create), empty and large files, and
//! `sync_dir`.

use super::{err_kind, listing, names, ok};
use crate::{EntryKind, Store};
use ckpt_core::ErrorKind;

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

/// `sync_dir` of an existing directory and of the root succeeds.
pub fn sync_dir(store: &dyn Store) {
    ok(store, store.write("tk_sync/d/f", b"x"), "write");
    ok(store, store.sync_dir("tk_sync/d"), "sync_dir");
    ok(store, store.sync_dir("tk_sync"), "sync_dir");
    ok(store, store.sync_dir(""), "sync_dir of the root");
}
