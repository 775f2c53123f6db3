//! The bench payload: a tensor item of a given size, as one large `float32` array or as 64
//! arrays of mixed sizes, filled with pseudo-random bytes (no zero pages, nothing compressible).

use ckpt_manager::handlers::{DType, Tensor, TensorMap};

/// How the payload's bytes are split into arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One `float32` array holding every byte.
    One,
    /// 64 `float32` arrays of mixed sizes: per 16 arrays one of weight 64, three of 16, six of 4
    /// and six of 1 (the largest about 11 % of the payload, the smallest about 0.2 %).
    Mixed64,
}

impl Layout {
    /// Short name for keys and command lines: `one`, `mixed64`.
    pub fn key(self) -> &'static str {
        match self {
            Layout::One => "one",
            Layout::Mixed64 => "mixed64",
        }
    }

    /// Human name for the table.
    pub fn label(self) -> &'static str {
        match self {
            Layout::One => "1 array",
            Layout::Mixed64 => "64 arrays",
        }
    }

    /// Parses [`Layout::key`].
    pub fn parse(s: &str) -> Option<Layout> {
        match s {
            "one" => Some(Layout::One),
            "mixed64" => Some(Layout::Mixed64),
            _ => None,
        }
    }

    /// The byte size of each array for a payload of `total` bytes (a multiple of 4; every size
    /// a multiple of 4; they sum to `total`).
    pub fn sizes(self, total: usize) -> Vec<usize> {
        match self {
            Layout::One => vec![total],
            Layout::Mixed64 => {
                let weights: Vec<usize> = (0..64)
                    .map(|i| match i % 16 {
                        0 => 64,
                        1..=3 => 16,
                        4..=9 => 4,
                        _ => 1,
                    })
                    .collect();
                let sum: usize = weights.iter().sum();
                let elems = total / 4;
                let mut sizes: Vec<usize> = weights.iter().map(|w| elems * w / sum * 4).collect();
                let used: usize = sizes.iter().sum();
                if let Some(last) = sizes.last_mut() {
                    *last += total - used;
                }
                sizes
            }
        }
    }
}

/// A payload: the tensor item saved by the bench.
#[derive(Debug, Clone)]
pub struct Payload {
    /// The layout.
    pub layout: Layout,
    /// Total bytes of tensor data.
    pub bytes: usize,
    /// The arrays, named `a00` .. `a63` (or `w` for [`Layout::One`]).
    pub tensors: TensorMap,
}

impl Payload {
    /// A payload of `bytes` (rounded down to a multiple of 4) in `layout`, filled from a
    /// xorshift generator seeded with `seed`.
    ///
    /// # Errors
    /// When a tensor cannot be built (cannot happen for these sizes).
    pub fn new(layout: Layout, bytes: usize, seed: u64) -> Result<Payload, String> {
        let bytes = bytes / 4 * 4;
        let mut tensors = TensorMap::new();
        let mut state = seed | 1;
        for (i, size) in layout.sizes(bytes).into_iter().enumerate() {
            let mut data = vec![0u8; size];
            fill(&mut data, &mut state);
            let name = match layout {
                Layout::One => "w".to_string(),
                Layout::Mixed64 => format!("a{i:02}"),
            };
            let t = Tensor::new(DType::F32, [size / 4], data).map_err(|e| e.to_string())?;
            tensors.insert(name, t);
        }
        Ok(Payload {
            layout,
            bytes,
            tensors,
        })
    }

    /// The arrays' bytes, in name order (the order of the safetensors data section).
    pub fn parts(&self) -> Vec<&[u8]> {
        self.tensors.values().map(Tensor::as_bytes).collect()
    }
}

/// Fills `buf` with xorshift64 output.
fn fill(buf: &mut [u8], state: &mut u64) {
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut x = *state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *state = x;
        c.copy_from_slice(&x.to_le_bytes());
    }
    for b in chunks.into_remainder() {
        *b = (*state >> 24) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_sum_and_align() {
        for total in [4096usize, 1 << 20, 256 << 20, 1 << 30] {
            for layout in [Layout::One, Layout::Mixed64] {
                let s = layout.sizes(total);
                assert_eq!(s.iter().sum::<usize>(), total);
                assert!(s.iter().all(|x| x % 4 == 0 && *x > 0), "{layout:?} {total}");
            }
        }
        assert_eq!(Layout::Mixed64.sizes(1 << 20).len(), 64);
    }

    #[test]
    fn payload_builds() {
        let p = Payload::new(Layout::Mixed64, 1 << 20, 7).unwrap();
        assert_eq!(p.tensors.len(), 64);
        assert_eq!(p.parts().iter().map(|b| b.len()).sum::<usize>(), 1 << 20);
    }
}
