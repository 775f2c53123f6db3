//! Orbax's step metadata (`_CHECKPOINT_METADATA`) and root metadata (`_ROOT_METADATA`) readers
//! on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ckpt_core::StepMetadata::from_json_bytes(data);
    let _ = ckpt_core::RootMetadata::from_json_bytes(data);
});
