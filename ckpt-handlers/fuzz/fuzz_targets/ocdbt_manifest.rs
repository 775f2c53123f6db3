//! The OCDBT manifest decoder (`manifest.ocdbt`: envelope, config, file table, version tree
//! references) on arbitrary bytes: an error or a manifest, never a panic or a hang.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ckpt_handlers::ocdbt::decode_manifest(data, "fuzz/manifest.ocdbt");
});
