//! Reading the safetensors format: [`TensorHandler::decode`], and the header checks shared
//! with the handler's `restore` and `metadata` (overflow-safe offsets, sizes that match dtype
//! and shape).

use super::{TensorHandler, LEN_PREFIX, MAX_HEADER, RESERVED_NAME};
use crate::{DType, Tensor, TensorMap};
use ckpt_core::{Error, ErrorKind, Result};
use safetensors::tensor::TensorInfo;
use safetensors::SafeTensors;

impl TensorHandler {
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

/// The `Unsupported` error for tensor `name`, whose dtype has no [`DType`].
pub(super) fn unsupported_dtype(name: &str, e: Error) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!("tensor {name:?} has a dtype ckpt cannot read"),
    )
    .with_source(e)
}

/// The header length and the data length of a safetensors file of `file_len` bytes whose first
/// bytes are `prefix` (at least the 8-byte length prefix).
pub(super) fn split_header(prefix: &[u8], file_len: u64) -> Result<(usize, usize)> {
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
pub(super) struct Entry {
    pub(super) name: String,
    pub(super) info: TensorInfo,
}

/// Parses and checks a safetensors header: a JSON object mapping names to
/// `{"dtype", "shape", "data_offsets"}` (plus an optional `__metadata__` string map), whose
/// offsets tile `0..data_len` exactly and whose sizes match dtype and shape. Returns the entries
/// sorted by name.
pub(super) fn parse_header(header: &[u8], data_len: usize) -> Result<Vec<Entry>> {
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

/// Reads the length prefix and the header of a safetensors file from the start of `s`, checked
/// as [`TensorHandler::decode`] checks them; returns the entries in file order (by offset),
/// leaving the stream at the start of the data.
pub(super) fn read_header(s: &mut dyn ckpt_storage::ReadStream) -> Result<Vec<Entry>> {
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
    Ok(entries)
}

/// One tensor as read from a file: name, dtype, shape, bytes.
pub(super) type RawTensor = (String, DType, Vec<usize>, Vec<u8>);

/// Reads a whole safetensors file from `s`: the length prefix and header (checked as
/// [`TensorHandler::decode`] checks them), then each tensor's bytes, in file order, into a
/// buffer of its own. The stream is left at the end of the file, not finished.
///
/// With `huge_pages` the buffers are advised for transparent huge pages
/// ([`ckpt_storage::try_zeroed_bytes`]): faster to fill from a local file, but filled at
/// network speed (an object store) the advice halved the restore on this project's machines
/// (S3 on moto: 1.01× the raw get without it, 0.52× with it, the bisect of 2026-12-07), so
/// callers pass it only for local files.
pub(super) fn read_tensors(
    s: &mut dyn ckpt_storage::ReadStream,
    huge_pages: bool,
) -> Result<Vec<RawTensor>> {
    let entries = read_header(s)?;
    let mut out = Vec::with_capacity(entries.len());
    for Entry { name, info } in entries {
        let dtype = DType::try_from(info.dtype).map_err(|e| unsupported_dtype(&name, e))?;
        let (start, end) = info.data_offsets;
        // parse_header checked that the offsets tile the data, which the file holds.
        let fresh = if huge_pages {
            ckpt_storage::try_zeroed_bytes(end - start)
        } else {
            ckpt_storage::try_zeroed_bytes_unadvised(end - start)
        };
        let buf = fresh.ok_or_else(|| {
            Error::corrupt(format!(
                "tensor \"{name}\": {} bytes cannot be allocated",
                end - start
            ))
        })?;
        out.push((name, dtype, info.shape, buf));
    }
    // One call for every tensor: a checking store checks each while reading the next.
    let mut bufs: Vec<&mut [u8]> = out.iter_mut().map(|t| t.3.as_mut_slice()).collect();
    s.read_parts(&mut bufs)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample;
    use super::*;

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
