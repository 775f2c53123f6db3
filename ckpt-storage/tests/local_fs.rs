//! Behaviour specific to the local file system store: symbolic links, the root, locations, URIs.

use ckpt_core::ErrorKind;
use ckpt_storage::{open, Entry, EntryKind, LocalStore, OpendalStore, Store};
use std::os::unix::fs::symlink;
use std::path::Path;

fn kinds(store: &dyn Store, dir: &str) -> Vec<(String, EntryKind)> {
    let mut v: Vec<_> = store
        .list_dir(dir)
        .unwrap()
        .into_iter()
        .map(|Entry { name, kind }| (name, kind))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// A directory outside the store with a file in it, and a store whose root holds links to it.
fn with_links() -> (tempfile::TempDir, LocalStore) {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(outside.join("sub")).unwrap();
    std::fs::write(outside.join("precious"), b"keep me").unwrap();
    std::fs::write(outside.join("sub/also"), b"keep me too").unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("step")).unwrap();
    symlink(&outside, root.join("link_dir")).unwrap();
    symlink(outside.join("precious"), root.join("link_file")).unwrap();
    symlink(tmp.path().join("nowhere"), root.join("dangling")).unwrap();
    symlink(&outside, root.join("step/inner_link")).unwrap();
    std::fs::write(root.join("step/f"), b"x").unwrap();
    let store = LocalStore::open(&root).unwrap();
    (tmp, store)
}

fn outside_intact(tmp: &Path) {
    assert_eq!(
        std::fs::read(tmp.join("outside/precious")).unwrap(),
        b"keep me"
    );
    assert_eq!(
        std::fs::read(tmp.join("outside/sub/also")).unwrap(),
        b"keep me too"
    );
}

#[test]
fn symlinks_are_listed_and_stated_as_links() {
    let (_tmp, store) = with_links();
    assert_eq!(
        kinds(&store, ""),
        vec![
            ("dangling".to_string(), EntryKind::Symlink),
            ("link_dir".to_string(), EntryKind::Symlink),
            ("link_file".to_string(), EntryKind::Symlink),
            ("step".to_string(), EntryKind::Dir),
        ]
    );
    for name in ["link_dir", "link_file", "dangling"] {
        let m = store.stat(name).unwrap().unwrap();
        assert_eq!((m.kind, m.size), (EntryKind::Symlink, 0), "{name}");
    }
}

#[test]
fn delete_prefix_of_a_link_removes_the_link_only() {
    let (tmp, store) = with_links();
    store.delete_prefix("link_dir").unwrap();
    store.delete_prefix("link_file").unwrap();
    store.delete_prefix("dangling").unwrap();
    assert_eq!(
        kinds(&store, ""),
        vec![("step".to_string(), EntryKind::Dir)]
    );
    outside_intact(tmp.path());
}

#[test]
fn delete_prefix_of_a_tree_does_not_follow_links_inside_it() {
    let (tmp, store) = with_links();
    store.delete_prefix("step").unwrap();
    assert!(store.stat("step").unwrap().is_none());
    outside_intact(tmp.path());
    assert_eq!(
        store.stat("link_dir").unwrap().map(|m| m.kind),
        Some(EntryKind::Symlink)
    );
}

#[test]
fn delete_of_a_link_removes_the_link_only() {
    let (tmp, store) = with_links();
    store.delete("link_dir").unwrap();
    store.delete("link_file").unwrap();
    assert!(store.stat("link_dir").unwrap().is_none());
    assert!(store.stat("link_file").unwrap().is_none());
    outside_intact(tmp.path());
}

#[test]
fn delete_refuses_a_directory() {
    let (_tmp, store) = with_links();
    assert_eq!(
        store.delete("step").unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert!(store.stat("step/f").unwrap().is_some());
}

#[test]
fn opening_and_reading_do_not_create_the_root_but_writing_does() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("a/b/root");
    let store = LocalStore::open(&root).unwrap();
    assert!(!tmp.path().join("a").exists());
    assert_eq!(store.list_dir("").unwrap(), vec![]);
    assert_eq!(store.stat("").unwrap(), None);
    assert_eq!(store.stat("x").unwrap(), None);
    assert_eq!(store.read("x").unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(
        store.read_range("x", 0..1).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    store.delete("x").unwrap();
    store.delete_prefix("x").unwrap();
    assert!(
        !tmp.path().join("a").exists(),
        "a read-only call created the root"
    );
    store.write("3/default/f", b"x").unwrap();
    assert_eq!(std::fs::read(root.join("3/default/f")).unwrap(), b"x");
    assert_eq!(
        store.stat("").unwrap().map(|m| m.kind),
        Some(EntryKind::Dir)
    );
}

#[test]
fn create_dir_of_the_root_creates_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path().join("r")).unwrap();
    store.create_dir("").unwrap();
    assert!(tmp.path().join("r").is_dir());
}

#[test]
fn locations_are_absolute_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let canon = tmp.path().canonicalize().unwrap();
    let store = LocalStore::open(tmp.path().join("run/./x/../root")).unwrap();
    let root = canon.join("run/root");
    assert_eq!(store.location(""), root.to_str().unwrap());
    assert_eq!(
        store.location("3/default"),
        root.join("3/default").to_str().unwrap()
    );
    assert_eq!(
        format!("{store:?}"),
        format!("LocalStore {{ location: {:?} }}", root.to_str().unwrap())
    );

    let rel = LocalStore::open("no-such-dir-ckpt-storage-test/run").unwrap();
    let cwd = std::env::current_dir().unwrap().canonicalize().unwrap();
    assert_eq!(
        rel.location(""),
        cwd.join("no-such-dir-ckpt-storage-test/run")
            .to_str()
            .unwrap()
    );
    assert!(!cwd.join("no-such-dir-ckpt-storage-test").exists());
}

#[test]
fn open_accepts_plain_paths_and_file_uris() {
    let tmp = tempfile::tempdir().unwrap();
    let canon = tmp.path().canonicalize().unwrap();
    let plain = open(tmp.path().join("p").to_str().unwrap()).unwrap();
    assert_eq!(plain.location("3"), canon.join("p/3").to_str().unwrap());
    let uri = open(&format!("file://{}", tmp.path().join("u").display())).unwrap();
    assert_eq!(uri.location("3"), canon.join("u/3").to_str().unwrap());
    assert!(
        uri.capabilities().rename && uri.capabilities().durable && uri.capabilities().directories
    );
    uri.write("3/f", b"x").unwrap();
    assert_eq!(std::fs::read(canon.join("u/3/f")).unwrap(), b"x");
}

#[test]
fn memory_stores_are_fresh_and_named_by_uri() {
    let a = open("memory://").unwrap();
    let b = open("memory:///").unwrap();
    a.write("3/default/x", b"1").unwrap();
    assert!(
        b.stat("3").unwrap().is_none(),
        "two memory stores share data"
    );
    assert_eq!(a.location("3/default"), "memory:///3/default");
    let caps = a.capabilities();
    assert!(caps.write_if_absent && !caps.rename && !caps.directories && !caps.durable);
}

#[test]
fn a_root_that_is_a_file_fails_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("f");
    std::fs::write(&file, b"not a dir").unwrap();
    // opendal's fs builder accepts an existing file as root; every directory call then fails.
    let store = LocalStore::open(&file).unwrap();
    assert_eq!(store.list_dir("").unwrap_err().kind(), ErrorKind::Storage);
    assert_eq!(
        store.stat("").unwrap().map(|m| m.kind),
        Some(EntryKind::File)
    );
    assert!(store.write("x", b"1").is_err());
    assert!(store.read("x").is_err());
    assert!(store.create_dir("d").is_err());
    assert_eq!(std::fs::read(&file).unwrap(), b"not a dir");
}

#[test]
fn read_through_a_file_parent_is_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path()).unwrap();
    store.write("f", b"x").unwrap();
    assert!(store.stat("f/g").unwrap().is_none());
    assert_eq!(store.list_dir("f").unwrap_err().kind(), ErrorKind::Storage);
    assert!(store.read("f/g").is_err());
}

#[test]
fn concurrent_write_if_absent_has_one_winner() {
    let tmp = tempfile::tempdir().unwrap();
    let stores: Vec<Box<dyn Store>> = vec![
        Box::new(OpendalStore::memory().unwrap()),
        Box::new(LocalStore::open(tmp.path()).unwrap()),
    ];
    for store in &stores {
        for round in 0..20 {
            let path = format!("race/{round}/commit_success.txt");
            let wins: usize = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|i| {
                        let path = &path;
                        let store = store.as_ref();
                        s.spawn(move || {
                            match store.write_if_absent(path, format!("{i}").as_bytes()) {
                                Ok(()) => 1,
                                Err(e) => {
                                    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
                                    0
                                }
                            }
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).sum()
            });
            assert_eq!(wins, 1, "{store:?}: round {round}");
        }
    }
}
