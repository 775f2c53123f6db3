//! [`TensorHandler`]: named tensors in one safetensors file (ckpt's own format).

use crate::common::{read_error, write_file_parts, wrong_item};
use crate::{CheckpointHandler, DType, ItemDir, RestoredItem, SaveItem, Tensor, TensorMap};
use ckpt_core::{Error, ErrorKind, Result};
use safetensors::tensor::TensorInfo;
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};

/// The length of the little-endian `u64` header size that starts a safetensors file.
const LEN_PREFIX: usize = 8;
/// The largest header the safetensors crate reads (100 MB); larger ones are corrupt.
const MAX_HEADER: usize = 100_000_000;
/// The name the safetensors format reserves for its string-to-string metadata.
const RESERVED_NAME: &str = "__metadata__";

/// Writes a [`TensorMap`] as the one file `<item dir>/tensors.safetensors` in the
/// [safetensors](https://github.com/huggingface/safetensors) format (ckpt's own handler, type
/// string `ckpt.tensors`; Orbax cannot restore it, but any safetensors reader can read the file).
///
/// Every [`DType`] is stored as the safetensors dtype of the same kind (`float32` as `F32`, `bool`
/// as `BOOL`, ...), data little-endian in C order, and restored bit for bit (NaN payloads, -0.0,
/// subnormals). Tensor names are any strings except `__metadata__` (reserved by the format);
/// empty maps and tensors with a zero-sized dimension round-trip.
///
/// Saves [`SaveItem::Tensors`]; restores [`RestoredItem::Tensors`]; `metadata()` is
/// `{"tensors": {"<name>": {"dtype": "float32", "shape": [2, 3]}, ...}}` (names sorted), read from
/// the file's header only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorHandler;

impl TensorHandler {
    /// The type string, `ckpt.tensors`.
    pub const TYPE_STRING: &'static str = "ckpt.tensors";
    /// The file inside the item directory, `tensors.safetensors`.
    pub const FILENAME: &'static str = "tensors.safetensors";

    /// Encodes `tensors` as the bytes of a safetensors file: [`TensorHandler::encode_parts`]
    /// concatenated (`save` does not build this: it writes the parts).
    ///
    /// # Errors
    /// As [`TensorHandler::encode_parts`].
    pub fn encode(tensors: &TensorMap) -> Result<Vec<u8>> {
        let (header, order) = Self::encode_parts(tensors)?;
        let mut out = Vec::with_capacity(
            header.len() + order.iter().map(|t| t.as_bytes().len()).sum::<usize>(),
        );
        out.extend_from_slice(&header);
        for t in order {
            out.extend_from_slice(t.as_bytes());
        }
        Ok(out)
    }

    /// The safetensors file of `tensors` in pieces: its start (the 8-byte little-endian header
    /// length and the JSON header, padded with spaces to a multiple of 8 bytes), and the tensors
    /// in the order of their data in the file (by dtype alignment, largest first, then by name,
    /// as the safetensors crate orders them). The file is the start followed by each tensor's
    /// [`Tensor::as_bytes`], byte for byte what `safetensors::serialize` writes; `save` writes
    /// these pieces straight from the tensors' buffers, without a copy of the whole file.
    ///
    /// # Errors
    /// `InvalidArgument` when a tensor is named `__metadata__` or the header would exceed the
    /// format's 100 MB limit.
    pub fn encode_parts(tensors: &TensorMap) -> Result<(Vec<u8>, Vec<&Tensor>)> {
        if tensors.contains_key(RESERVED_NAME) {
            return Err(Error::invalid_argument(format!(
                "tensor name {RESERVED_NAME:?} is reserved by the safetensors format"
            )));
        }
        // safetensors' own order (its `prepare`): dtype descending, then name.
        let mut order: Vec<(&String, &Tensor, safetensors::Dtype)> = tensors
            .iter()
            .map(|(n, t)| {
                safetensors::Dtype::try_from(t.dtype())
                    .map(|d| (n, t, d))
                    .map_err(|e| e.prefixed(&format!("tensor {n:?}: ")))
            })
            .collect::<Result<_>>()?;
        order.sort_by(|(ln, _, l), (rn, _, r)| r.cmp(l).then(ln.cmp(rn)));
        let mut offset = 0usize;
        let mut infos = Vec::with_capacity(order.len());
        for (name, t, dtype) in &order {
            let n = t.as_bytes().len();
            infos.push((
                (*name).clone(),
                TensorInfo {
                    dtype: *dtype,
                    shape: t.shape().to_vec(),
                    data_offsets: (offset, offset + n),
                },
            ));
            offset += n;
        }
        let bad = |e: safetensors::SafeTensorError| {
            Error::invalid_argument("tensors cannot be encoded as safetensors").with_source(e)
        };
        let metadata = safetensors::tensor::Metadata::new(None, infos).map_err(bad)?;
        let mut json = serde_json::to_vec(&metadata).map_err(|e| {
            Error::invalid_argument("tensors cannot be encoded as safetensors").with_source(e)
        })?;
        json.resize(json.len().next_multiple_of(LEN_PREFIX), b' ');
        if json.len() > MAX_HEADER {
            return Err(Error::invalid_argument(format!(
                "the safetensors header would be {} bytes, above the format's limit of {MAX_HEADER}",
                json.len()
            )));
        }
        let mut start = Vec::with_capacity(LEN_PREFIX + json.len());
        start.extend_from_slice(&(json.len() as u64).to_le_bytes());
        start.extend_from_slice(&json);
        Ok((start, order.into_iter().map(|(_, t, _)| t).collect()))
    }

    /// Decodes the bytes of a safetensors file (as written by [`TensorHandler::encode`] or any
    /// safetensors writer) into tensors, copying the data.
    ///
    /// # Errors
    /// `Corrupt` when the bytes are not a valid safetensors file (truncated, bad header, offsets
    /// that do not tile the data, a bool byte other than 0/1); `Unsupported` for a dtype ckpt has no
    /// [`DType`] for (FP8, FP6, FP4). Never panics on any input.
    pub fn decode(bytes: &[u8]) -> Result<TensorMap> {
        let (header_len, data_len) = split_header(bytes, bytes.len() as u64)?;
        let header_bytes = bytes
            .get(LEN_PREFIX..LEN_PREFIX + header_len)
            .ok_or_else(|| Error::corrupt("safetensors header is truncated"))?;
        // Our own checks first (overflow-safe), so the safetensors crate only sees sane offsets:
        // safetensors 0.8 adds the last offset and the header length unchecked, which panics (debug
        // builds) on offsets near usize::MAX.
        parse_header(header_bytes, data_len)?;
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| Error::corrupt("invalid safetensors file").with_source(e))?;
        let mut out = TensorMap::new();
        for (name, view) in st.tensors() {
            let dtype = DType::try_from(view.dtype()).map_err(|e| unsupported_dtype(&name, e))?;
            let tensor =
                Tensor::new(dtype, view.shape().to_vec(), view.data().to_vec()).map_err(|e| {
                    Error::corrupt(format!("tensor {name:?} is invalid")).with_source(e)
                })?;
            out.insert(name, tensor);
        }
        Ok(out)
    }
}

fn unsupported_dtype(name: &str, e: Error) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!("tensor {name:?} has a dtype ckpt cannot read"),
    )
    .with_source(e)
}

/// The header length and the data length of a safetensors file of `file_len` bytes whose first
/// bytes are `prefix` (at least the 8-byte length prefix).
fn split_header(prefix: &[u8], file_len: u64) -> Result<(usize, usize)> {
    let too_short = || {
        Error::corrupt(format!(
            "safetensors file is {file_len} bytes, too short for a header"
        ))
    };
    let len_bytes: [u8; LEN_PREFIX] = prefix
        .get(..LEN_PREFIX)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(too_short)?;
    let n = u64::from_le_bytes(len_bytes);
    let rest = file_len
        .checked_sub(LEN_PREFIX as u64)
        .ok_or_else(too_short)?;
    if n > MAX_HEADER as u64 || n > rest {
        return Err(Error::corrupt(format!(
            "safetensors header length {n} does not fit a {file_len}-byte file"
        )));
    }
    let data_len = usize::try_from(rest - n)
        .map_err(|_| Error::corrupt("safetensors file is too large for this platform"))?;
    // n <= MAX_HEADER, so it fits usize.
    Ok((n as usize, data_len))
}

/// One tensor entry of a safetensors header.
struct Entry {
    name: String,
    info: TensorInfo,
}

/// Parses and checks a safetensors header: a JSON object mapping names to
/// `{"dtype", "shape", "data_offsets"}` (plus an optional `__metadata__` string map), whose
/// offsets tile `0..data_len` exactly and whose sizes match dtype and shape. Returns the entries
/// sorted by name.
fn parse_header(header: &[u8], data_len: usize) -> Result<Vec<Entry>> {
    let text = std::str::from_utf8(header)
        .map_err(|e| Error::corrupt("safetensors header is not UTF-8").with_source(e))?;
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
        .map_err(|e| Error::corrupt("safetensors header is not a JSON object").with_source(e))?;
    let mut entries = Vec::with_capacity(map.len());
    for (name, value) in map {
        if name == RESERVED_NAME {
            serde_json::from_value::<std::collections::HashMap<String, String>>(value).map_err(
                |e| {
                    Error::corrupt("safetensors __metadata__ is not a map of strings")
                        .with_source(e)
                },
            )?;
            continue;
        }
        let info: TensorInfo = serde_json::from_value(value).map_err(|e| {
            Error::corrupt(format!("safetensors header entry {name:?} is invalid")).with_source(e)
        })?;
        entries.push(Entry { name, info });
    }
    entries.sort_by_key(|e| e.info.data_offsets);
    let mut start = 0usize;
    for Entry { name, info } in &entries {
        let (s, e) = info.data_offsets;
        if s != start || e < s || e > data_len {
            return Err(Error::corrupt(format!(
                "tensor {name:?} has offsets [{s}, {e}], which do not tile the {data_len}-byte data"
            )));
        }
        let bits = info
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .and_then(|n| n.checked_mul(info.dtype.bitsize()));
        match bits {
            Some(bits) if bits % 8 == 0 && bits / 8 == e - s => {}
            _ => {
                return Err(Error::corrupt(format!(
                    "tensor {name:?} of {} and shape {:?} does not fit its {} bytes",
                    info.dtype,
                    info.shape,
                    e - s
                )))
            }
        }
        start = e;
    }
    if start != data_len {
        return Err(Error::corrupt(format!(
            "safetensors data is {data_len} bytes but its tensors cover {start}"
        )));
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// One tensor as read from a file: name, dtype, shape, bytes.
type RawTensor = (String, DType, Vec<usize>, Vec<u8>);

/// Reads a whole safetensors file from `s`: the length prefix and header (checked as
/// [`TensorHandler::decode`] checks them), then each tensor's bytes, in file order, into a
/// buffer of its own. The stream is left at the end of the file, not finished.
fn read_tensors(s: &mut dyn ckpt_storage::ReadStream) -> Result<Vec<RawTensor>> {
    let size = s.size();
    if size < LEN_PREFIX as u64 {
        return Err(Error::corrupt(format!(
            "safetensors file is {size} bytes, too short for a header"
        )));
    }
    let mut prefix = [0u8; LEN_PREFIX];
    s.read_exact(&mut prefix)?;
    let (header_len, data_len) = split_header(&prefix, size)?;
    let mut header = vec![0u8; header_len];
    s.read_exact(&mut header)?;
    let mut entries = parse_header(&header, data_len)?;
    entries.sort_by_key(|e| e.info.data_offsets);
    let mut out = Vec::with_capacity(entries.len());
    for Entry { name, info } in entries {
        let dtype = DType::try_from(info.dtype).map_err(|e| unsupported_dtype(&name, e))?;
        let (start, end) = info.data_offsets;
        // parse_header checked that the offsets tile the data, which the file holds.
        out.push((name, dtype, info.shape, vec![0u8; end - start]));
    }
    // One call for every tensor: a checking store checks each while reading the next.
    let mut bufs: Vec<&mut [u8]> = out.iter_mut().map(|t| t.3.as_mut_slice()).collect();
    s.read_parts(&mut bufs)?;
    Ok(out)
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
        let read = read_tensors(stream.as_mut());
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

    /// `{"tensors": {"<name>": {"dtype": "<numpy name>", "shape": [..]}}}`, from the header alone
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
            tensors.insert(
                name,
                serde_json::json!({ "dtype": dtype.name(), "shape": info.shape }),
            );
        }
        Ok(Some(serde_json::json!({ "tensors": tensors })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    fn sample() -> TensorMap {
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
    fn encode_decode_round_trip() {
        let m = sample();
        let bytes = TensorHandler::encode(&m).unwrap();
        assert_eq!(TensorHandler::decode(&bytes).unwrap(), m);
        let empty = TensorMap::new();
        assert_eq!(
            TensorHandler::decode(&TensorHandler::encode(&empty).unwrap()).unwrap(),
            empty
        );
    }

    #[test]
    fn parts_are_byte_for_byte_what_safetensors_writes() {
        // Mixed dtypes (the crate orders data by alignment, then name), scalars, empty tensors.
        let mut m = sample();
        m.insert(
            "a16".into(),
            Tensor::from_slice([3], &[1u16, 2, 3]).unwrap(),
        );
        m.insert(
            "z64".into(),
            Tensor::from_slice([2], &[1.5f64, -2.0]).unwrap(),
        );
        m.insert("s".into(), Tensor::scalar(7i8));
        m.insert(
            "h".into(),
            Tensor::from_slice([2], &[half::bf16::from_f32(1.0), half::bf16::MAX]).unwrap(),
        );
        for map in [m, TensorMap::new(), sample()] {
            let views: Vec<(String, TensorView<'_>)> = map
                .iter()
                .map(|(n, t)| {
                    let v = TensorView::new(
                        safetensors::Dtype::try_from(t.dtype()).unwrap(),
                        t.shape().to_vec(),
                        t.as_bytes(),
                    );
                    (n.clone(), v.unwrap())
                })
                .collect();
            let reference = safetensors::serialize(views, None).unwrap();
            assert_eq!(TensorHandler::encode(&map).unwrap(), reference);
            let (start, order) = TensorHandler::encode_parts(&map).unwrap();
            assert_eq!(start.len() % 8, 0);
            assert_eq!(order.len(), map.len());
            assert_eq!(TensorHandler::decode(&reference).unwrap(), map);
        }
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

    #[test]
    fn header_is_parsed_and_checked() {
        let bytes = TensorHandler::encode(&sample()).unwrap();
        let (n, data_len) = split_header(&bytes, bytes.len() as u64).unwrap();
        let entries = parse_header(&bytes[8..8 + n], data_len).unwrap();
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["b", "empty", "w"]);
        assert!(parse_header(&bytes[8..8 + n], data_len + 1).is_err());
    }

    #[test]
    fn overflowing_offsets_are_corrupt() {
        // Eight valid-looking tensors whose offsets end just below usize::MAX, far beyond the
        // file: end + header length would overflow in a naive check.
        let q = usize::MAX / 8;
        let entries: Vec<String> = (0..8)
            .map(|i| {
                format!(
                    "\"t{i}\":{{\"dtype\":\"U8\",\"shape\":[{q}],\"data_offsets\":[{},{}]}}",
                    i * q,
                    (i + 1) * q
                )
            })
            .collect();
        let header = format!("{{{}}}", entries.join(","));
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(header.as_bytes());
        assert_eq!(
            TensorHandler::decode(&file).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
    }

    #[test]
    fn reserved_name_is_rejected() {
        let mut m = TensorMap::new();
        m.insert(RESERVED_NAME.into(), Tensor::scalar(1u8));
        assert_eq!(
            TensorHandler::encode(&m).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn unsupported_dtype() {
        let header = r#"{"x":{"dtype":"F8_E5M2","shape":[1],"data_offsets":[0,1]}}"#;
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(header.as_bytes());
        file.extend_from_slice(&[0; 1]);
        assert_eq!(
            TensorHandler::decode(&file).unwrap_err().kind(),
            ErrorKind::Unsupported
        );
    }

    #[test]
    fn bad_bool_is_corrupt() {
        let header = r#"{"x":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}}"#;
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(header.as_bytes());
        file.extend_from_slice(&[1, 2]);
        assert_eq!(
            TensorHandler::decode(&file).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
    }
}
