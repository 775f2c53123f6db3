//! [`TensorHandler`]: named tensors in one safetensors file (ckpt's own format).
//!
//! Here: the handler (save, restore, metadata); writing the safetensors format is `encode.rs`,
//! reading and checking it (header, offsets, dtypes) `decode.rs`, the restore into the caller's
//! tensors `restore_into.rs`, the memory-mapped restore `mapped.rs`.

mod decode;
mod encode;
mod mapped;
mod restore_into;

pub use mapped::{MappedTensor, MappedTensors};

use crate::common::{read_error, write_file_parts, wrong_item};
use crate::{CheckpointHandler, DType, ItemDir, RestoredItem, SaveItem, Tensor, TensorMap};
use ckpt_core::{Error, ErrorKind, Result};
use decode::{parse_header, read_tensors, split_header, unsupported_dtype, Entry};
use serde::{Deserialize, Serialize};

/// The length of the little-endian `u64` header size that starts a safetensors file.
pub(super) const LEN_PREFIX: usize = 8;
/// The largest header the safetensors crate reads (100 MB); larger ones are corrupt.
pub(super) const MAX_HEADER: usize = 100_000_000;
/// The name the safetensors format reserves for its string-to-string metadata.
pub(super) const RESERVED_NAME: &str = "__metadata__";

/// Writes a [`TensorMap`] as the one file `<item dir>/tensors.safetensors` in the
/// [safetensors](https://github.com/huggingface/safetensors) format (ckpt's own handler, type
/// string `ckpt.tensors`; Orbax cannot restore it, but any safetensors reader can read the file).
///
/// Every [`DType`] is stored as the safetensors dtype of the same kind (`float32` as `F32`, `bool`
/// as `BOOL`, ...), data little-endian in C order, and restored bit for bit (NaN payloads, -0.0,
/// subnormals). Tensor names are any strings except `__metadata__` (reserved by the format);
/// empty maps and tensors with a zero-sized dimension round-trip.
///
/// Saves [`SaveItem::Tensors`]; restores [`RestoredItem::Tensors`], or without fresh memory:
/// into tensors the caller owns ([`TensorHandler::restore_into`]) or served from the file mapped
/// into memory ([`TensorHandler::map`], a local file only); `metadata()` is
/// `{"tensors": {"<name>": {"dtype": "float32", "shape": [2, 3], "bytes": 24}, ...}}` (names
/// sorted; `bytes`: the tensor's data in the file), read from the file's header only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorHandler;

impl TensorHandler {
    /// The type string, `ckpt.tensors`.
    pub const TYPE_STRING: &'static str = "ckpt.tensors";
    /// The file inside the item directory, `tensors.safetensors`.
    pub const FILENAME: &'static str = "tensors.safetensors";
}

/// Attaches the file's full location to a decoding error.
fn at_file(dir: &ItemDir<'_>, e: Error) -> Error {
    e.with_path(dir.location(TensorHandler::FILENAME))
}

#[typetag::serde(name = "ckpt.tensors")]
impl CheckpointHandler for TensorHandler {
    /// [`TensorHandler::TYPE_STRING`].
    fn type_string(&self) -> String {
        Self::TYPE_STRING.to_string()
    }

    /// Writes the tensors to `<dir>/tensors.safetensors`.
    ///
    /// # Errors
    /// `InvalidArgument` for variants other than `Tensors` and as [`TensorHandler::encode`]; the
    /// store's errors naming the file.
    fn save(&self, dir: &ItemDir<'_>, item: &SaveItem<'_>) -> Result<()> {
        let SaveItem::Tensors(tensors) = item else {
            return Err(wrong_item("TensorHandler", item, "SaveItem::Tensors"));
        };
        let (start, order) = Self::encode_parts(tensors).map_err(|e| at_file(dir, e))?;
        let mut parts: Vec<&[u8]> = Vec::with_capacity(order.len() + 1);
        parts.push(&start);
        parts.extend(order.iter().map(|t| t.as_bytes()));
        write_file_parts(dir, Self::FILENAME, &parts, "tensors item file")
    }

    /// Reads `<dir>/tensors.safetensors` straight into one buffer per tensor: the header first,
    /// then each tensor's bytes into a `Vec` of exactly its size (no copy of the whole file, no
    /// second copy per tensor). On a checking store the file is verified (`finish`) before any
    /// tensor is returned; when decoding fails on a damaged file, the checksum error is reported.
    ///
    /// # Errors
    /// `NotFound` naming the file when it is missing; `Corrupt` / `Unsupported` naming it as
    /// [`TensorHandler::decode`]; `Corrupt` when it does not match its checksum; the store's
    /// errors.
    fn restore(&self, dir: &ItemDir<'_>) -> Result<RestoredItem> {
        const WHAT: &str = "tensors item file";
        let mut stream = dir
            .open_read(Self::FILENAME)
            .map_err(|e| read_error(dir, Self::FILENAME, WHAT, e))?;
        let read = read_tensors(stream.as_mut(), dir.store().capabilities().local);
        match read {
            Ok(raw) => {
                stream
                    .finish()
                    .map_err(|e| read_error(dir, Self::FILENAME, WHAT, e))?;
                let mut out = TensorMap::new();
                for (name, dtype, shape, data) in raw {
                    let t = Tensor::new(dtype, shape, data).map_err(|e| {
                        at_file(
                            dir,
                            Error::corrupt(format!("tensor {name:?} is invalid")).with_source(e),
                        )
                    })?;
                    out.insert(name, t);
                }
                Ok(RestoredItem::Tensors(out))
            }
            Err(e) => {
                // A damaged file: say so (its checksum) rather than what decoding tripped on.
                match stream.finish() {
                    Err(c) if c.kind() == ErrorKind::Corrupt => {
                        Err(read_error(dir, Self::FILENAME, WHAT, c))
                    }
                    _ if e.path().is_some() => Err(e),
                    _ => Err(at_file(dir, e)),
                }
            }
        }
    }

    /// `{"tensors": {"<name>": {"dtype": "<numpy name>", "shape": [..], "bytes": n}}}`, from the
    /// header alone
    /// (the store's `stat` and two ranged reads; the tensor data is not read).
    ///
    /// # Errors
    /// `NotFound` naming the file when it is missing; `Corrupt` naming it when the header is
    /// invalid or does not match the file's size; `Unsupported` for a dtype ckpt cannot read.
    fn metadata(&self, dir: &ItemDir<'_>) -> Result<Option<serde_json::Value>> {
        let path = dir.file_path(Self::FILENAME)?;
        let store = dir.store();
        let wrap = |e: Error| {
            Error::new(e.kind(), "cannot read tensors item file")
                .with_path(dir.location(Self::FILENAME))
                .with_source(e)
        };
        let size = match store.stat(&path).map_err(wrap)? {
            Some(meta) if meta.kind == ckpt_storage::EntryKind::File => meta.size,
            Some(_) => {
                return Err(at_file(
                    dir,
                    Error::corrupt("a directory is where the file should be"),
                ))
            }
            None => {
                return Err(Error::not_found("tensors item file not found")
                    .with_path(dir.location(Self::FILENAME)))
            }
        };
        if size < LEN_PREFIX as u64 {
            return Err(at_file(
                dir,
                Error::corrupt(format!(
                    "safetensors file is {size} bytes, too short for a header"
                )),
            ));
        }
        let prefix = store
            .read_range(&path, 0..LEN_PREFIX as u64)
            .map_err(wrap)?;
        let (header_len, data_len) = split_header(&prefix, size).map_err(|e| at_file(dir, e))?;
        let header = store
            .read_range(&path, LEN_PREFIX as u64..(LEN_PREFIX + header_len) as u64)
            .map_err(wrap)?;
        if header.len() != header_len {
            return Err(at_file(
                dir,
                Error::corrupt("safetensors header is truncated"),
            ));
        }
        let entries = parse_header(&header, data_len).map_err(|e| at_file(dir, e))?;
        let mut tensors = serde_json::Map::with_capacity(entries.len());
        for Entry { name, info } in entries {
            let dtype = DType::try_from(info.dtype)
                .map_err(|e| at_file(dir, unsupported_dtype(&name, e)))?;
            let (start, end) = info.data_offsets;
            tensors.insert(
                name,
                serde_json::json!({
                    "dtype": dtype.name(),
                    "shape": info.shape,
                    "bytes": end.saturating_sub(start),
                }),
            );
        }
        Ok(Some(serde_json::json!({ "tensors": tensors })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn sample() -> TensorMap {
        let mut m = TensorMap::new();
        m.insert(
            "w".into(),
            Tensor::from_slice([2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap(),
        );
        m.insert("b".into(), Tensor::from_slice([2], &[true, false]).unwrap());
        m.insert(
            "empty".into(),
            Tensor::new(DType::I64, [0, 3], vec![]).unwrap(),
        );
        m
    }

    #[test]
    fn map_checks_the_header_and_bool_bytes() {
        use ckpt_storage::{LocalStore, OpendalStore, Store};
        let d = tempfile::tempdir().unwrap();
        let local = LocalStore::open(d.path()).unwrap();
        let m = sample();
        local
            .write("t/tensors.safetensors", &TensorHandler::encode(&m).unwrap())
            .unwrap();
        let mapped = TensorHandler.map(&ItemDir::new(&local, "t")).unwrap();
        assert_eq!(mapped.to_tensor_map(), m);
        assert_eq!(mapped.get("w").unwrap(), m["w"]);
        // A bool byte other than 0/1 (no checksum to catch it): Corrupt naming the tensor.
        let header = r#"{"x":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}}"#;
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(header.as_bytes());
        file.extend_from_slice(&[1, 2]);
        local.write("u/tensors.safetensors", &file).unwrap();
        let e = TensorHandler.map(&ItemDir::new(&local, "u")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
        assert!(e.to_string().contains("\"x\""), "{e}");
        // Truncated: Corrupt; missing: NotFound; a memory store: Unsupported.
        local
            .write("u/tensors.safetensors", &file[..file.len() - 1])
            .unwrap();
        let e = TensorHandler.map(&ItemDir::new(&local, "u")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
        let e = TensorHandler
            .map(&ItemDir::new(&local, "none"))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        let mem = OpendalStore::memory().unwrap();
        mem.write("t/tensors.safetensors", &TensorHandler::encode(&m).unwrap())
            .unwrap();
        let e = TensorHandler.map(&ItemDir::new(&mem, "t")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    }

    #[test]
    fn restore_reads_into_one_buffer_per_tensor_and_verifies() {
        use ckpt_storage::{ChecksumManifest, OpendalStore, RecordingStore, Store, VerifyingStore};
        use std::sync::Arc;
        let inner: Arc<dyn Store> = Arc::new(OpendalStore::memory().unwrap());
        let mut m = sample();
        m.insert(
            "big".into(),
            Tensor::new(
                DType::U8,
                [20 << 20],
                (0..20u32 << 20).map(|i| (i % 241) as u8).collect(),
            )
            .unwrap(),
        );
        let rec = RecordingStore::new(Arc::clone(&inner), "s/t", "t");
        TensorHandler
            .save(
                &ItemDir::new(&rec, "s/t"),
                &SaveItem::Tensors(std::borrow::Cow::Borrowed(&m)),
            )
            .unwrap();
        let manifest: ChecksumManifest = rec.take_manifest();
        let v = VerifyingStore::new(Arc::clone(&inner), "s", manifest);
        match TensorHandler.restore(&ItemDir::new(&v, "s/t")).unwrap() {
            RestoredItem::Tensors(t) => assert_eq!(t, m),
            other => panic!("{other:?}"),
        }
        // A flipped bit in the data, then in the header: the checksum error, naming the file.
        let path = "s/t/tensors.safetensors";
        let good = inner.read(path).unwrap();
        for at in [good.len() - 3, 12] {
            let mut bad = good.clone();
            bad[at] ^= 0x04;
            inner.write(path, &bad).unwrap();
            let e = TensorHandler.restore(&ItemDir::new(&v, "s/t")).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
            assert!(e.to_string().contains("tensors.safetensors"), "{e}");
            assert!(format!("{e:?}").contains("checksum"), "{e:?}");
        }
        // Without checking, a damaged header is still Corrupt (from decoding).
        let mut bad = good.clone();
        bad[9] = b'!';
        inner.write(path, &bad).unwrap();
        let e = TensorHandler
            .restore(&ItemDir::new(inner.as_ref(), "s/t"))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    }
}
