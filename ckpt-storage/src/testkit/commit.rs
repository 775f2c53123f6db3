//! The commit protocols (atomic rename, commit file) over the store.

use super::{err_kind, listing, names, ok};
use crate::{
    join_path, AtomicRenameProtocol, AtomicityMode, CommitFileProtocol, CommitProtocol, EntryKind,
    Store,
};
use ckpt_core::{commit_success_text, ErrorKind, COMMIT_SUCCESS_FILE};

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
