//! Commit protocols on real stores, beyond the conformance checks.

use ckpt_core::{commit_success_text, ErrorKind};
use ckpt_storage::{
    protocol_for, AtomicRenameProtocol, AtomicityMode, CommitFileProtocol, CommitProtocol,
    LocalStore, OpendalStore, Store,
};

#[test]
fn auto_picks_by_store() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = LocalStore::open(tmp.path()).unwrap();
    let mem = OpendalStore::memory().unwrap();
    assert_eq!(
        protocol_for(AtomicityMode::Auto, fs.capabilities())
            .unwrap()
            .mode(),
        AtomicityMode::AtomicRename
    );
    assert_eq!(
        protocol_for(AtomicityMode::Auto, mem.capabilities())
            .unwrap()
            .mode(),
        AtomicityMode::CommitFile
    );
    assert_eq!(
        protocol_for(AtomicityMode::AtomicRename, mem.capabilities())
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidConfig
    );
    assert_eq!(
        AtomicRenameProtocol.prepare(&mem, "3").unwrap_err().kind(),
        ErrorKind::Unsupported
    );
}

#[test]
fn atomic_rename_on_disk_matches_orbax_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap().join("run");
    let store = LocalStore::open(&root).unwrap();
    let p = AtomicRenameProtocol;
    let step = p.prepare(&store, "3").unwrap();
    assert_eq!(step, "3.orbax-checkpoint-tmp");
    assert!(root.join("3.orbax-checkpoint-tmp").is_dir());
    let item = p.prepare(&store, "3.orbax-checkpoint-tmp/default").unwrap();
    assert_eq!(item, "3.orbax-checkpoint-tmp/default.orbax-checkpoint-tmp");
    store.write(&format!("{item}/metadata"), b"{}").unwrap();
    p.commit(&store, &item, "3.orbax-checkpoint-tmp/default")
        .unwrap();
    store
        .write("3.orbax-checkpoint-tmp/_CHECKPOINT_METADATA", b"{}")
        .unwrap();
    p.commit(&store, &step, "3").unwrap();

    assert!(!root.join("3.orbax-checkpoint-tmp").exists());
    assert_eq!(
        std::fs::read_to_string(root.join("3/commit_success.txt")).unwrap(),
        format!(
            "Checkpoint commit was successful to {}",
            root.join("3").display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(root.join("3/default/commit_success.txt")).unwrap(),
        format!(
            "Checkpoint commit was successful to {}",
            root.join("3.orbax-checkpoint-tmp/default").display()
        )
    );
    assert_eq!(
        std::fs::read(root.join("3/default/metadata")).unwrap(),
        b"{}"
    );
}

#[test]
fn leftover_tmp_dir_is_wiped_and_reported_as_tmp() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("run");
    std::fs::create_dir_all(root.join("7.orbax-checkpoint-tmp/default")).unwrap();
    std::fs::write(
        root.join("7.orbax-checkpoint-tmp/default/stale"),
        b"dead save",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("4.orbax-checkpoint-tmp-1234")).unwrap();
    let store = LocalStore::open(&root).unwrap();
    let p = AtomicRenameProtocol;
    for name in ["7.orbax-checkpoint-tmp", "4.orbax-checkpoint-tmp-1234"] {
        assert!(p.is_tmp(&store, "", name).unwrap(), "{name}");
        assert!(!p.is_committed(&store, "", name).unwrap(), "{name}");
    }
    let w = p.prepare(&store, "7").unwrap();
    assert_eq!(store.list_dir(&w).unwrap(), vec![]);
    assert!(!root.join("7.orbax-checkpoint-tmp/default/stale").exists());
}

#[test]
fn commit_file_in_memory_and_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let stores: Vec<Box<dyn Store>> = vec![
        Box::new(OpendalStore::memory().unwrap()),
        Box::new(LocalStore::open(tmp.path()).unwrap()),
    ];
    for store in &stores {
        let store = store.as_ref();
        let p = CommitFileProtocol;
        let w = p.prepare(store, "ckpt_00007").unwrap();
        assert_eq!(w, "ckpt_00007");
        store.write("ckpt_00007/default/metadata", b"{}").unwrap();
        assert!(p.is_tmp(store, "", "ckpt_00007").unwrap());
        assert!(!p.is_committed(store, "", "ckpt_00007").unwrap());
        p.commit(store, &w, "ckpt_00007").unwrap();
        assert_eq!(
            store.read("ckpt_00007/commit_success.txt").unwrap(),
            commit_success_text(&store.location("ckpt_00007")).as_bytes()
        );
        assert!(p.is_committed(store, "", "ckpt_00007").unwrap());
        let again = p.commit(store, &w, "ckpt_00007").unwrap_err();
        assert_eq!(again.kind(), ErrorKind::AlreadyExists, "{again}");
        assert_eq!(
            p.prepare(store, "ckpt_00007").unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
    }
}
