//! Chunk geometry: the chunk grid, chunk keys, the rows of a chunk inside the array buffer, and
//! Orbax's choice of chunk shape.

use super::*;

/// The chunk grid of `meta`: for each chunk (in C order of grid indices) its grid index,
/// produced one at a time (the count comes from metadata anyone can write: nothing is allocated
/// for the whole grid, so a reader stops at its first missing chunk whatever the count claims).
pub fn chunk_grid(meta: &ArrayMeta) -> GridIndices {
    let counts: Vec<usize> = meta
        .shape
        .iter()
        .zip(&meta.chunks)
        .map(|(s, c)| s.div_ceil((*c).max(1)))
        .collect();
    grid_indices(&counts)
}

/// The number of chunks of `meta`'s grid, or `None` when it overflows `usize`.
pub fn chunk_count(meta: &ArrayMeta) -> Option<usize> {
    meta.shape
        .iter()
        .zip(&meta.chunks)
        .try_fold(1usize, |n, (s, c)| n.checked_mul(s.div_ceil((*c).max(1))))
}

/// Every index of a grid of `counts` chunks per dimension, in C order, one at a time.
pub(crate) fn grid_indices(counts: &[usize]) -> GridIndices {
    GridIndices {
        counts: counts.to_vec(),
        idx: vec![0; counts.len()],
        left: counts.iter().fold(1usize, |n, c| n.saturating_mul(*c)),
    }
}

/// The indices of a chunk grid in C order ([`chunk_grid`]).
#[derive(Debug, Clone)]
pub struct GridIndices {
    counts: Vec<usize>,
    idx: Vec<usize>,
    left: usize,
}

impl Iterator for GridIndices {
    type Item = Vec<usize>;

    fn next(&mut self) -> Option<Vec<usize>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let out = self.idx.clone();
        for d in (0..self.counts.len()).rev() {
            self.idx[d] += 1;
            if self.idx[d] < self.counts[d] {
                break;
            }
            self.idx[d] = 0;
        }
        Some(out)
    }
}

/// The key of chunk `index` below the array's name: v2 `0.1` (`0` for 0-d), v3 `c/0/1` (`c`).
pub fn chunk_key(version: ZarrVersion, index: &[usize]) -> String {
    let parts: Vec<String> = index.iter().map(|i| i.to_string()).collect();
    match version {
        ZarrVersion::V2 if index.is_empty() => "0".to_string(),
        ZarrVersion::V2 => parts.join("."),
        ZarrVersion::V3 if index.is_empty() => "c".to_string(),
        ZarrVersion::V3 => format!("c/{}", parts.join("/")),
    }
}

/// The rows of the in-bounds part of a chunk (full shape `chunk`, at element origin `origin`)
/// of an array of `shape`: `(offset in the array, offset in the chunk, length)`, in bytes.
pub(crate) fn box_rows(
    shape: &[usize],
    chunk: &[usize],
    origin: &[usize],
    item: usize,
) -> Vec<(usize, usize, usize)> {
    let rank = shape.len();
    if rank == 0 {
        return vec![(0, 0, item)];
    }
    let extent: Vec<usize> = (0..rank)
        .map(|d| chunk[d].min(shape[d].saturating_sub(origin[d])))
        .collect();
    if extent.contains(&0) {
        return Vec::new();
    }
    let row = extent[rank - 1] * item;
    grid_indices(&extent[..rank - 1])
        .map(|idx| {
            let mut a = 0usize;
            let mut c = 0usize;
            for d in 0..rank - 1 {
                a = a * shape[d] + origin[d] + idx[d];
                c = c * chunk[d] + idx[d];
            }
            a = (a * shape[rank - 1] + origin[rank - 1]) * item;
            c = c * chunk[rank - 1] * item;
            (a, c, row)
        })
        .collect()
}

/// Copies the in-bounds part of a decoded chunk into the array buffer.
pub(crate) fn scatter(
    shape: &[usize],
    chunk: &[usize],
    origin: &[usize],
    item: usize,
    src: &[u8],
    array: &mut [u8],
) {
    for (a, c, n) in box_rows(shape, chunk, origin, item) {
        array[a..a + n].copy_from_slice(&src[c..c + n]);
    }
}

/// Copies the in-bounds part of a chunk out of the array buffer (the rest of `dst` unchanged).
pub(crate) fn gather(
    shape: &[usize],
    chunk: &[usize],
    origin: &[usize],
    item: usize,
    array: &[u8],
    dst: &mut [u8],
) {
    for (a, c, n) in box_rows(shape, chunk, origin, item) {
        dst[c..c + n].copy_from_slice(&array[a..a + n]);
    }
}

/// The stored (uncompressed) bytes of chunk `index` of an array (C-order bytes `data` of
/// `dtype` and `shape`) cut into `chunks`: borrowed from `data` when the chunk is a contiguous
/// run of it (it spans every trailing dimension and lies within the array, e.g. the whole
/// array), else gathered into a new buffer, with zeros where an edge chunk reaches past the array
/// (zarr stores edge chunks at full size).
pub fn chunk_data<'a>(
    dtype: DType,
    shape: &[usize],
    chunks: &[usize],
    index: &[usize],
    data: &'a [u8],
) -> std::borrow::Cow<'a, [u8]> {
    let item = dtype.size_in_bytes();
    if shape.is_empty() {
        return std::borrow::Cow::Borrowed(data);
    }
    let origin: Vec<usize> = index.iter().zip(chunks).map(|(i, c)| i * c).collect();
    let inner: usize = shape[1..].iter().product::<usize>() * item;
    let contiguous = chunks[1..] == shape[1..] && origin[0] + chunks[0] <= shape[0];
    if contiguous {
        let start = origin[0] * inner;
        return std::borrow::Cow::Borrowed(&data[start..start + chunks[0] * inner]);
    }
    let n: usize = chunks.iter().product::<usize>() * item;
    let mut buf = vec![0u8; n];
    gather(shape, chunks, &origin, item, data, &mut buf);
    std::borrow::Cow::Owned(buf)
}

/// Whether chunk `index`'s bytes are a contiguous run of the array's (see [`chunk_data`]), and
/// if so their byte range in the array.
pub fn contiguous_range(
    dtype: DType,
    shape: &[usize],
    chunks: &[usize],
    index: &[usize],
) -> Option<std::ops::Range<usize>> {
    let item = dtype.size_in_bytes();
    if shape.is_empty() {
        return Some(0..item);
    }
    let first = index[0] * chunks[0];
    let inner: usize = shape[1..].iter().product::<usize>() * item;
    (chunks[1..] == shape[1..] && first + chunks[0] <= shape[0])
        .then(|| first * inner..(first + chunks[0]) * inner)
}

/// The divisors of `n` (≥ 1), ascending: trial division up to √n.
fn divisors_of(n: usize) -> Vec<usize> {
    let (mut small, mut large) = (Vec::new(), Vec::new());
    let mut i = 1;
    while i <= n / i {
        if n.is_multiple_of(i) {
            small.push(i);
            if i != n / i {
                large.push(n / i);
            }
        }
        i += 1;
    }
    small.extend(large.into_iter().rev());
    small
}

/// Orbax's chunk shape for an array (zarr-and-metadata.md §4, one process): the whole array when
/// `target_bytes` is `None`; else, starting from the shape (0 as 1), the largest dimension's
/// chunk size is replaced by the next smaller divisor of the dimension until the chunk holds at
/// most `target_bytes / itemsize` elements.
pub fn choose_chunk_shape(
    shape: &[usize],
    dtype: DType,
    target_bytes: Option<usize>,
) -> Vec<usize> {
    let mut chunk: Vec<usize> = shape.iter().map(|d| (*d).max(1)).collect();
    let Some(target) = target_bytes else {
        return chunk;
    };
    let target_elems = (target / dtype.size_in_bytes()).max(1);
    // Each dimension's divisors, ascending, computed once when first needed (a linear scan
    // for the next smaller divisor took a quarter of a 256 MiB save's time).
    let mut divisors: Vec<Option<Vec<usize>>> = vec![None; shape.len()];
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
        let divs = divisors[d].get_or_insert_with(|| divisors_of(shape[d].max(1)));
        let below = divs.partition_point(|&x| x < chunk[d]);
        chunk[d] = below.checked_sub(1).map_or(1, |i| divs[i]);
    }
    chunk
}
