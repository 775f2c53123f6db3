//! The storage conformance suite (`ckpt_storage::testkit`) against the memory and local stores.

use ckpt_storage::testkit;
use ckpt_storage::{AtomicityMode, LocalStore, OpendalStore, Store};

fn memory() -> OpendalStore {
    OpendalStore::memory().expect("memory store")
}

/// A local store in a fresh temporary directory (kept alive by the returned guard).
fn local() -> (tempfile::TempDir, LocalStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path().join("root")).expect("local store");
    (dir, store)
}

macro_rules! conformance {
    ($($name:ident => $check:expr;)*) => {
        mod memory {
            use super::*;
            $(#[test] fn $name() { let store = memory(); ($check)(&store as &dyn Store); })*
        }
        mod local {
            use super::*;
            $(#[test] fn $name() { let (_dir, store) = local(); ($check)(&store as &dyn Store); })*
        }
        /// Every durable write through O_DIRECT (from 0 bytes up).
        mod local_direct_io {
            use super::*;
            $(#[test] fn $name() {
                let (_dir, store) = local();
                let store = store.with_direct_io(0);
                ($check)(&store as &dyn Store);
            })*
        }
    };
}

conformance! {
    put_get => testkit::put_get;
    put_if_absent => testkit::put_if_absent;
    range_get => testkit::range_get;
    stat => testkit::stat;
    list_dir => testkit::list_dir;
    delete => testkit::delete;
    delete_prefix => testkit::delete_prefix;
    rename => testkit::rename;
    odd_names => testkit::odd_names;
    empty_files => testkit::empty_files;
    large_file => testkit::large_file;
    bad_paths => testkit::bad_paths;
    sync_dir => testkit::sync_dir;
    commit_file => |s: &dyn Store| testkit::commit_protocol(s, AtomicityMode::CommitFile);
    run_all => testkit::run_all;
}

#[test]
fn local_atomic_rename() {
    let (_dir, store) = local();
    testkit::commit_protocol(&store, AtomicityMode::AtomicRename);
}

#[test]
fn stores_from_open_pass_too() {
    let mem = ckpt_storage::open("memory://").expect("open memory://");
    testkit::run_all(mem.as_ref());
    let dir = tempfile::tempdir().expect("tempdir");
    let uri = format!("file://{}", dir.path().join("via-uri").display());
    let fs = ckpt_storage::open(&uri).expect("open file://");
    testkit::run_all(fs.as_ref());
}

/// O_DIRECT writes on the local file system give the same files as buffered ones, for sizes
/// around the alignment and the 8 MiB buffer, written in parts; on tmpfs (which refuses
/// O_DIRECT) the store falls back to a buffered write.
#[test]
fn direct_io_writes_are_the_same_files() {
    let mut dirs = vec![tempfile::tempdir().expect("tempdir")];
    if std::path::Path::new("/dev/shm").is_dir() {
        dirs.push(tempfile::tempdir_in("/dev/shm").expect("tmpfs dir"));
    }
    for dir in &dirs {
        let store = LocalStore::open(dir.path()).unwrap().with_direct_io(1);
        for size in [1usize, 4095, 4096, 4097, (8 << 20) - 1, (8 << 20) + 12_345] {
            let data: Vec<u8> = (0..size).map(|i| (i * 7 % 253) as u8).collect();
            let (a, b) = data.split_at(size / 2);
            let path = format!("s{size}/data");
            store
                .write(&path, b"something longer than one byte here")
                .unwrap();
            store.write_parts(&path, &[a, b]).unwrap();
            assert_eq!(
                store.read(&path).unwrap(),
                data,
                "{size} in {:?}",
                dir.path()
            );
        }
    }
}
