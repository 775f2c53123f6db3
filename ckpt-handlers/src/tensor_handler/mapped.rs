//! Memory-mapped restore of a tensors item: [`TensorHandler::map`], [`MappedTensors`] and
//! [`MappedTensor`] (issue 14).

use super::decode::{parse_header, split_header, unsupported_dtype};
use super::{at_file, TensorHandler, LEN_PREFIX};
use crate::common::read_error;
use crate::tensor::elements_of;
use crate::{DType, Element, ItemDir, Tensor, TensorMap};
use ckpt_core::{Error, ErrorKind, Result};
use ckpt_storage::MappedFile;
use std::collections::BTreeMap;
use std::ops::Range;

impl TensorHandler {
    /// Maps the item's file (`<dir>/tensors.safetensors`) read-only into memory and serves its
    /// tensors from the mapping ([`MappedTensors`]): no copy of the data and no fresh memory
    /// (the pages are the page cache's). Through a checking store
    /// ([`ckpt_storage::VerifyingStore`]) the whole file is verified over the mapping before
    /// this returns. The header is checked as by [`TensorHandler::decode`], and every `bool`
    /// tensor's bytes (0 or 1). ckpt's own (Orbax has no mapped restore; the safetensors format
    /// is made for it).
    ///
    /// **Caveat**: the file must not be truncated or rewritten while the [`MappedTensors`] is
    /// alive (a truncated file kills the process with `SIGBUS` on access; one rewritten in
    /// place changes the tensors under the caller, after the checksum was verified). ckpt never
    /// changes a committed step's files; deleting the step (retention) is harmless.
    ///
    /// # Errors
    /// `Unsupported` naming the file when the store does not keep it as a local file (memory,
    /// object stores: [`ckpt_storage::Store::map_file`] gives `None`), or for a dtype ckpt
    /// cannot read; `NotFound` naming the file when it is missing; `Corrupt` naming it when it
    /// does not match its checksum or is not valid safetensors; `Storage` when it cannot be
    /// mapped.
    pub fn map(&self, dir: &ItemDir<'_>) -> Result<MappedTensors> {
        const WHAT: &str = "tensors item file";
        let path = dir.file_path(Self::FILENAME)?;
        let file = dir
            .store()
            .map_file(&path, false)
            .map_err(|e| read_error(dir, Self::FILENAME, WHAT, e))?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Unsupported,
                    "a memory-mapped restore needs the item's file on the local file system; \
                     this store keeps no local files (restore into memory instead)",
                )
                .with_path(dir.location(Self::FILENAME))
            })?;
        MappedTensors::new(file).map_err(|e| at_file(dir, e))
    }
}

/// The tensors of a `ckpt.tensors` item served from its file, mapped read-only into memory
/// ([`TensorHandler::map`], `CheckpointManager::restore_tensors_mapped`): each
/// [`MappedTensor`] borrows its bytes from the mapping, which is undone when this is dropped.
/// Names are sorted. ckpt's own.
///
/// The file must not be truncated or rewritten while this is alive (see
/// [`TensorHandler::map`]); it can be deleted.
#[derive(Debug)]
pub struct MappedTensors {
    file: MappedFile,
    entries: BTreeMap<String, Slot>,
}

/// Where one tensor lies in the mapping.
#[derive(Debug)]
struct Slot {
    dtype: DType,
    shape: Vec<usize>,
    /// Byte range in the file (not in the data section).
    bytes: Range<usize>,
}

impl MappedTensors {
    /// Checks the header of the safetensors file `file` and locates its tensors.
    ///
    /// # Errors
    /// `Corrupt` for an invalid header or a bad `bool` byte; `Unsupported` for a dtype ckpt
    /// has no [`DType`] for.
    fn new(file: MappedFile) -> Result<MappedTensors> {
        let bytes: &[u8] = &file;
        let (header_len, data_len) = split_header(bytes, bytes.len() as u64)?;
        let data_start = LEN_PREFIX + header_len;
        let header = bytes
            .get(LEN_PREFIX..data_start)
            .ok_or_else(|| Error::corrupt("safetensors header is truncated"))?;
        let mut entries = BTreeMap::new();
        for e in parse_header(header, data_len)? {
            let dtype =
                DType::try_from(e.info.dtype).map_err(|err| unsupported_dtype(&e.name, err))?;
            let (s, t) = e.info.data_offsets;
            let slot = Slot {
                dtype,
                shape: e.info.shape,
                bytes: data_start + s..data_start + t,
            };
            // parse_header checked that the offsets tile the data, which the file holds; a
            // range outside it is corrupt all the same.
            let data = bytes.get(slot.bytes.clone()).ok_or_else(|| {
                Error::corrupt(format!(
                    "tensor {:?} lies beyond the end of the file",
                    e.name
                ))
            })?;
            if dtype == DType::Bool {
                if let Some((pos, b)) = data.iter().enumerate().find(|(_, b)| **b > 1) {
                    return Err(Error::corrupt(format!(
                        "tensor {:?}: bool byte {pos} is {b}, not 0 or 1",
                        e.name
                    )));
                }
            }
            entries.insert(e.name, slot);
        }
        Ok(MappedTensors { file, entries })
    }

    /// The tensor named `name`, or `None`.
    pub fn get(&self, name: &str) -> Option<MappedTensor<'_>> {
        self.entries.get(name).map(|s| self.view(s))
    }

    /// The tensors, by name (sorted).
    pub fn iter(&self) -> impl Iterator<Item = (&str, MappedTensor<'_>)> + '_ {
        self.entries.iter().map(|(n, s)| (n.as_str(), self.view(s)))
    }

    /// The tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.entries.keys().map(String::as_str)
    }

    /// The number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the item holds no tensors.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The mapped file's full location (an absolute local path).
    pub fn location(&self) -> &str {
        self.file.location()
    }

    /// Copies every tensor into memory of its own: the [`TensorMap`] a plain restore gives.
    pub fn to_tensor_map(&self) -> TensorMap {
        self.iter()
            .map(|(n, t)| (n.to_string(), t.to_tensor()))
            .collect()
    }

    fn view<'a>(&'a self, s: &'a Slot) -> MappedTensor<'a> {
        MappedTensor {
            dtype: s.dtype,
            shape: &s.shape,
            // The range was checked against the file when it was mapped.
            data: self.file.get(s.bytes.clone()).unwrap_or_default(),
        }
    }
}

/// One tensor of a [`MappedTensors`]: dtype, shape and its bytes in the mapping (little-endian,
/// C order, as in [`Tensor`]), borrowed. ckpt's own.
///
/// In a file ckpt wrote, each tensor's bytes start at a multiple of its element size from the
/// start of the file (safetensors orders tensors by alignment, and the mapping is page-aligned);
/// a file written by another safetensors writer need not be so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappedTensor<'a> {
    dtype: DType,
    shape: &'a [usize],
    data: &'a [u8],
}

impl<'a> MappedTensor<'a> {
    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The dimension sizes, in elements (empty for a scalar).
    pub fn shape(&self) -> &'a [usize] {
        self.shape
    }

    /// The elements as little-endian bytes in C order, in the mapping (no copy).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.data
    }

    /// The number of elements, `product(shape)` (1 for a scalar).
    pub fn num_elements(&self) -> usize {
        // The header check made sure the product fits.
        self.shape.iter().product()
    }

    /// The elements, copied out, in C order.
    ///
    /// # Errors
    /// `InvalidArgument` when `T::DTYPE` is not the tensor's dtype.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        elements_of(self.dtype, self.data)
    }

    /// A [`Tensor`] holding a copy of the bytes.
    pub fn to_tensor(&self) -> Tensor {
        Tensor::from_checked_parts(self.dtype, self.shape.to_vec(), self.data.to_vec())
    }
}

impl PartialEq<Tensor> for MappedTensor<'_> {
    /// Same dtype, shape and bytes.
    fn eq(&self, other: &Tensor) -> bool {
        self.dtype == other.dtype() && self.shape == other.shape() && self.data == other.as_bytes()
    }
}
