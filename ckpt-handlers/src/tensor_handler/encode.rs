//! Writing the safetensors format: [`TensorHandler::encode`] and
//! [`TensorHandler::encode_parts`], byte for byte what the safetensors crate writes.

use super::{TensorHandler, LEN_PREFIX, MAX_HEADER, RESERVED_NAME};
use crate::{Tensor, TensorMap};
use ckpt_core::{Error, Result};
use safetensors::tensor::TensorInfo;

impl TensorHandler {
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
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample;
    use super::*;
    use ckpt_core::ErrorKind;
    use safetensors::tensor::TensorView;

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
    fn reserved_name_is_rejected() {
        let mut m = TensorMap::new();
        m.insert(RESERVED_NAME.into(), Tensor::scalar(1u8));
        assert_eq!(
            TensorHandler::encode(&m).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
}
