//! Orbax's `_METADATA` (the tree metadata of a StandardSave / PyTreeSave item: Python
//! tuple-repr keys, key and value metadata) on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ckpt_handlers::orbax_array::metadata::parse(data, "fuzz/_METADATA");
});
