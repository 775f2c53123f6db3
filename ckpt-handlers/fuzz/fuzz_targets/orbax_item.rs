//! A whole Orbax array item on arbitrary bytes, restored as a user would: `_METADATA`, the zarr
//! metadata (`.zarray`, `zarr.json`) and the chunks, in either layout (an OCDBT database, or a
//! directory per leaf), read by `restore_tree` and described by `tree_metadata`. This is where a
//! chunk grid, a chunk size or an array size claimed by metadata meets allocation: a 2^40-chunk
//! `.zarray` once aborted the reader here. The input is a set of files
//! (`[u16 le name length][name][u32 le length][bytes]`, repeated; see README.md) put below the
//! item directory of an in-memory store; seeds are the Orbax-written items of the test data.
#![no_main]
use ckpt_handlers::orbax_array::{restore_tree, tree_metadata};
use ckpt_handlers::ItemDir;
use ckpt_storage::{OpendalStore, Store};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn store() -> &'static OpendalStore {
    static STORE: OnceLock<OpendalStore> = OnceLock::new();
    STORE.get_or_init(|| OpendalStore::memory().expect("a memory store"))
}

fn split(mut data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    while data.len() >= 2 {
        let n = u16::from_le_bytes([data[0], data[1]]) as usize;
        data = &data[2..];
        if data.len() < n + 4 {
            break;
        }
        let name = String::from_utf8_lossy(&data[..n]).into_owned();
        data = &data[n..];
        let len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
        data = &data[4..];
        let len = len.min(data.len());
        files.push((name, data[..len].to_vec()));
        data = &data[len..];
    }
    files
}

fuzz_target!(|data: &[u8]| {
    let store = store();
    let _ = store.delete_prefix("item");
    for (name, bytes) in split(data) {
        // Names the store refuses (empty, `..`, absolute) are skipped, as a root cannot hold them.
        let _ = store.write(&format!("item/{name}"), &bytes);
    }
    let dir = ItemDir::new(store, "item");
    let _ = restore_tree(&dir, None);
    let _ = tree_metadata(&dir);
});
