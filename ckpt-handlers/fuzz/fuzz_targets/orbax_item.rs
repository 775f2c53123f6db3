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

#[path = "files.rs"]
mod files;
use std::sync::OnceLock;

fn store() -> &'static OpendalStore {
    static STORE: OnceLock<OpendalStore> = OnceLock::new();
    STORE.get_or_init(|| OpendalStore::memory().expect("a memory store"))
}

fuzz_target!(|data: &[u8]| {
    let store = store();
    let _ = store.delete_prefix("item");
    for (name, bytes) in files::split(data) {
        // Names the store refuses (empty, `..`, absolute) are skipped, as a root cannot hold them.
        let _ = store.write(&format!("item/{name}"), &bytes);
    }
    let dir = ItemDir::new(store, "item");
    let _ = restore_tree(&dir, None);
    let _ = tree_metadata(&dir);
});
