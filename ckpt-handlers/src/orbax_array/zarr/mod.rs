//! The zarr arrays of Orbax's array items (docs/orbax-arrays/zarr-and-metadata.md §2–§4): array
//! metadata (zarr v2 `.zarray`, zarr v3 `zarr.json` with `sharding_indexed`), chunk keys, chunk
//! decoding into an array buffer and encoding from one, and Orbax's choice of chunk shape.
//!
//! Deviation: not the `zarrs` crate. Orbax's arrays live inside an OCDBT database more often than
//! in directories, chunks must decode straight into the caller's buffer (no per-chunk copy for
//! the one-chunk arrays Orbax writes by default), and Orbax uses two codecs (zstd, and v3
//! `sharding_indexed` with one inner chunk); the modules here cover exactly that:
//! `meta` (array metadata), `grid` (chunk geometry), `codec` (decoding, encoding).

use crate::tensor::checked_sizes;
use crate::DType;
use ckpt_core::{Error, ErrorKind, Result};
use serde_json::Value as Json;

mod codec;
mod grid;
mod meta;
pub use codec::*;
pub use grid::*;
pub use meta::*;

/// The zarr format version of an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZarrVersion {
    /// zarr v2: `.zarray`, chunk keys `0.0`.
    V2,
    /// zarr v3: `zarr.json`, chunk keys `c/0/0`.
    V3,
}

/// How one array's chunks are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrayMeta {
    /// zarr v2 or v3.
    pub version: ZarrVersion,
    /// Element type.
    pub dtype: DType,
    /// Array shape, in elements (empty for 0-d).
    pub shape: Vec<usize>,
    /// Chunk (v3: shard) shape, in elements; the array shape for 0-d arrays (empty).
    pub chunks: Vec<usize>,
    /// v3 sharding: the inner chunk shape (`None` when not sharded).
    pub inner: Option<Vec<usize>>,
    /// Whether chunk (v3: inner chunk) bytes are zstd frames.
    pub zstd: bool,
    /// v3 sharding: whether the shard index is at the start (else at the end).
    pub index_at_start: bool,
}

pub(crate) fn bad(what: &str, msg: impl std::fmt::Display) -> Error {
    Error::corrupt(format!("{what}: {msg}"))
}

pub(crate) fn unsupported(what: &str, msg: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Unsupported, format!("{what}: {msg}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule as the spec states it, one divisor at a time (the reference for the fast one).
    fn chunk_shape_by_scan(shape: &[usize], item: usize, target: usize) -> Vec<usize> {
        let mut chunk: Vec<usize> = shape.iter().map(|d| (*d).max(1)).collect();
        let target_elems = (target / item).max(1);
        while chunk.iter().product::<usize>() > target_elems {
            let Some((d, _)) = chunk
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 1)
                .rev()
                .max_by_key(|(_, c)| **c)
            else {
                break;
            };
            let full = shape[d].max(1);
            chunk[d] = (1..chunk[d])
                .rev()
                .find(|x| full.is_multiple_of(*x))
                .unwrap_or(1);
        }
        chunk
    }

    #[test]
    fn chunk_shapes_equal_the_one_divisor_at_a_time_rule() {
        for a in 0..40 {
            for b in [0, 1, 7, 12, 30, 97] {
                for target in [4, 12, 100, 256, 1000] {
                    assert_eq!(
                        choose_chunk_shape(&[a, b], DType::F32, Some(target)),
                        chunk_shape_by_scan(&[a, b], 4, target),
                        "shape [{a}, {b}], target {target}"
                    );
                }
            }
        }
        // A large power of two and a large prime: the scan would take seconds.
        assert_eq!(
            choose_chunk_shape(&[1 << 26], DType::F32, Some(64 << 20)),
            [1 << 24]
        );
        assert_eq!(
            choose_chunk_shape(&[67_108_859], DType::F32, Some(64 << 20)),
            [1]
        );
    }

    #[test]
    fn orbax_chunk_shapes() {
        assert_eq!(
            choose_chunk_shape(&[48, 40], DType::F32, Some(4096)),
            [24, 40]
        );
        assert_eq!(
            choose_chunk_shape(&[8, 12, 10], DType::I64, Some(4096)),
            [8, 6, 10]
        );
        assert_eq!(
            choose_chunk_shape(&[64, 48], DType::BF16, Some(4096)),
            [32, 48]
        );
        assert_eq!(
            choose_chunk_shape(&[4, 4, 8, 24], DType::U16, Some(4096)),
            [4, 4, 8, 12]
        );
        assert_eq!(choose_chunk_shape(&[74, 8], DType::F32, Some(256)), [2, 8]);
        assert_eq!(choose_chunk_shape(&[3, 5], DType::F32, None), [3, 5]);
    }

    #[test]
    fn zarray_matches_orbax_bytes() {
        assert_eq!(
            String::from_utf8(zarray_bytes(DType::F32, &[2, 3], &[2, 3])).unwrap(),
            r#"{"chunks":[2,3],"compressor":{"id":"zstd","level":1},"dimension_separator":".","dtype":"<f4","fill_value":null,"filters":null,"order":"C","shape":[2,3],"zarr_format":2}"#
        );
        let m = parse_zarray(&zarray_bytes(DType::BF16, &[], &[]), "t").unwrap();
        assert_eq!((m.dtype, m.shape.len(), m.zstd), (DType::BF16, 0, true));
    }

    #[test]
    fn chunks_round_trip_with_edges() {
        let shape = [5usize, 3];
        let data: Vec<u8> = (0..15u8).collect();
        let mut stored = std::collections::BTreeMap::new();
        let meta0 = parse_zarray(&zarray_bytes(DType::U8, &shape, &[2, 2]), "t").unwrap();
        for index in chunk_grid(&meta0) {
            let raw = chunk_data(DType::U8, &shape, &[2, 2], &index, &data);
            stored.insert(chunk_key(ZarrVersion::V2, &index), compress(&raw).unwrap());
        }
        assert_eq!(stored.len(), 6);
        let meta = parse_zarray(&zarray_bytes(DType::U8, &shape, &[2, 2]), "t").unwrap();
        struct Map(std::collections::BTreeMap<String, Vec<u8>>);
        impl ChunkSource for Map {
            fn read(&self, key: &str) -> Result<Vec<u8>> {
                Ok(self.0[key].clone())
            }
        }
        let mut out = vec![0u8; 15];
        decode_array(&meta, &mut out, &Map(stored), "t").unwrap();
        assert_eq!(out, data);
    }

    /// Chunks cut across the trailing dimension (none a contiguous run of the array), more of
    /// them than one batch: decoded on several threads, each copied into its place; a chunk
    /// that does not decode fails the array, naming the first such chunk.
    #[test]
    fn scattered_chunks_decode_in_batches_and_the_first_bad_one_is_named() {
        struct Map(std::collections::BTreeMap<String, Vec<u8>>);
        impl ChunkSource for Map {
            fn read(&self, key: &str) -> Result<Vec<u8>> {
                Ok(self.0[key].clone())
            }
        }
        let (shape, chunks) = ([41usize, 119], [1usize, 2]);
        let data: Vec<u8> = (0..41 * 119).map(|i| (i * 7 % 253) as u8).collect();
        let meta = parse_zarray(&zarray_bytes(DType::U8, &shape, &chunks), "t").unwrap();
        let mut stored = std::collections::BTreeMap::new();
        for index in chunk_grid(&meta) {
            let raw = chunk_data(DType::U8, &shape, &chunks, &index, &data);
            stored.insert(chunk_key(ZarrVersion::V2, &index), compress(&raw).unwrap());
        }
        assert!(stored.len() > 2 * 1024, "{} chunks", stored.len());
        let mut out = vec![0u8; data.len()];
        decode_array(&meta, &mut out, &Map(stored.clone()), "t").unwrap();
        assert_eq!(out, data);
        for bad in ["30.7", "3.50"] {
            stored.insert(bad.to_string(), b"not zstd".to_vec());
        }
        let e = decode_array(&meta, &mut out, &Map(stored), "t").unwrap_err();
        assert_eq!(e.kind(), ckpt_core::ErrorKind::Corrupt, "{e}");
        assert!(e.message().contains("chunk 3.50"), "{e}");
    }
}
