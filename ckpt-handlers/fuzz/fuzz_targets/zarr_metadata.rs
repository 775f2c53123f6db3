//! The zarr array metadata decoders on arbitrary bytes: v2 `.zarray` and v3 `zarr.json` (with
//! `sharding_indexed`), and the chunk keys of an accepted array's first chunks.
#![no_main]
use ckpt_handlers::orbax_array::zarr;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for meta in [
        zarr::parse_zarray(data, "fuzz/.zarray"),
        zarr::parse_zarr_json(data, "fuzz/zarr.json"),
    ]
    .into_iter()
    .flatten()
    {
        let index = vec![0usize; meta.shape.len()];
        let _ = zarr::chunk_key(meta.version, &index);
    }
});
