//! ckpt's safetensors reader (header length, JSON header, offsets, dtypes, shapes, then the
//! tensors) on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ckpt_handlers::TensorHandler::decode(data);
});
