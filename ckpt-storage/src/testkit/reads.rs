//! Reads: byte ranges, parts written and read as streams, and `stat`.

use super::{err_kind, ok};
use crate::{EntryKind, Store};
use ckpt_core::ErrorKind;

/// `read_range`: inner, whole, empty ranges; beyond the end or reversed → `InvalidArgument`;
/// a missing file → `NotFound`; `read_range_into` gives the same bytes into the caller's buffer,
/// with the same errors.
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
    // read_range_into: the same bytes, into the caller's buffer (reused across calls).
    let mut buf = [0u8; 3];
    ok(
        store,
        store.read_range_into(p, 2, &mut buf),
        "read_range_into 2+3",
    );
    assert_eq!(&buf, b"234", "{store:?}");
    ok(
        store,
        store.read_range_into(p, 7, &mut buf),
        "read_range_into 7+3",
    );
    assert_eq!(&buf, b"789", "{store:?}");
    ok(
        store,
        store.read_range_into(p, 10, &mut []),
        "read_range_into 10+0",
    );
    assert_eq!(
        err_kind(store.read_range_into(p, 8, &mut buf), "into, past the end"),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        err_kind(
            store.read_range_into("tk_range_get/missing", 0, &mut buf),
            "into, a missing file"
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
