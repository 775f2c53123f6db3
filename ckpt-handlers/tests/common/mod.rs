//! Shared helpers of the integration tests.
#![allow(dead_code)]

use ckpt_storage::{LocalStore, OpendalStore, Store};

/// A fresh in-memory store.
pub fn memory() -> OpendalStore {
    OpendalStore::memory().expect("memory store")
}

/// A store on a fresh temporary directory (kept alive by the returned guard).
pub fn local() -> (tempfile::TempDir, LocalStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("local store");
    (dir, store)
}

/// Reads a file of the store.
pub fn read(store: &dyn Store, path: &str) -> Vec<u8> {
    store.read(path).expect("read")
}

/// `n` pseudo-random bytes (xorshift64 from `seed`, which must not be 0): data zstd cannot
/// shrink, the same on every run.
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
