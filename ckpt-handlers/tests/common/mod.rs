//! Shared helpers of the integration tests.
#![allow(dead_code)]

use ckpt_storage::{OpendalStore, Store};

/// A fresh in-memory store.
pub fn memory() -> OpendalStore {
    OpendalStore::memory().expect("memory store")
}

/// A store on a fresh temporary directory (kept alive by the returned guard).
pub fn local() -> (tempfile::TempDir, OpendalStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = OpendalStore::local(dir.path()).expect("local store");
    (dir, store)
}

/// Reads a file of the store.
pub fn read(store: &dyn Store, path: &str) -> Vec<u8> {
    store.read(path).expect("read")
}
