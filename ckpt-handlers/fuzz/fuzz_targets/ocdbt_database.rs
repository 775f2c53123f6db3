//! A whole OCDBT database on arbitrary bytes: the manifest, version tree nodes, B+tree nodes
//! (leaf and interior) and value references, then every value read. The input is a set of files
//! (`[u16 le name length][name][u32 le length][bytes]`, repeated; see README.md) of which
//! `manifest.ocdbt` is the manifest; seeds are the Orbax-written databases of the test data.
#![no_main]
use ckpt_core::{Error, Result};
use ckpt_handlers::ocdbt::{Database, DbFiles};
use libfuzzer_sys::fuzz_target;

#[path = "files.rs"]
mod files;
use std::collections::BTreeMap;
use std::ops::Range;

struct Files(BTreeMap<String, Vec<u8>>);

impl DbFiles for Files {
    fn size(&self, path: &str) -> Result<u64> {
        self.0
            .get(path)
            .map(|b| b.len() as u64)
            .ok_or_else(|| Error::not_found(format!("{path}: no such file")))
    }

    fn read_range(&self, path: &str, range: Range<u64>) -> Result<Vec<u8>> {
        let b = self.0.get(path).ok_or_else(|| Error::not_found(path.to_string()))?;
        let (s, e) = (range.start as usize, range.end as usize);
        b.get(s..e)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| Error::corrupt(format!("{path}: range {s}..{e} outside")))
    }
}

fuzz_target!(|data: &[u8]| {
    let mut files = Files(files::split(data).into_iter().collect());
    let Some(manifest) = files.0.remove("manifest.ocdbt") else {
        return;
    };
    if let Ok(db) = Database::open(&files, &manifest, "fuzz/manifest.ocdbt") {
        let keys: Vec<Vec<u8>> = db.entries().keys().cloned().collect();
        for key in keys {
            let _ = db.read(&files, &key);
        }
    }
});
