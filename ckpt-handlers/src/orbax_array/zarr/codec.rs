//! Chunk decoding into an array buffer (zstd or raw, v3 shards, in parallel across chunks) and
//! encoding (zstd level 1, as Orbax).

use super::*;
use crate::orbax_array::parallel::{on_threads, Failures};

/// Decompresses (or takes) one stored chunk into `out`, which it must fill exactly.
///
/// # Errors
/// `Corrupt` naming `what` when the bytes do not decode to exactly `out.len()` bytes.
pub fn decode_plain(stored: &[u8], zstd: bool, out: &mut [u8], what: &str) -> Result<()> {
    if !zstd {
        if stored.len() != out.len() {
            return Err(bad(
                what,
                format!(
                    "chunk is {} bytes, {} expected uncompressed",
                    stored.len(),
                    out.len()
                ),
            ));
        }
        out.copy_from_slice(stored);
        return Ok(());
    }
    let n = zstd::bulk::decompress_to_buffer(stored, out)
        .map_err(|e| bad(what, "zstd chunk does not decode to the chunk's size").with_source(e))?;
    if n != out.len() {
        return Err(bad(
            what,
            format!("zstd chunk decodes to {n} bytes, {} expected", out.len()),
        ));
    }
    Ok(())
}

/// Decodes every chunk of an array into `out` (its C-order bytes, `product(shape) * itemsize`
/// long), reading chunk `key` through `read`. A chunk covering the whole array decodes straight
/// into `out`.
///
/// # Errors
/// `NotFound` (from `read`) for a missing chunk (Orbax reads never fill missing chunks);
/// `Corrupt` naming `what` and the chunk for a chunk that does not decode to its size, a shard
/// index that is wrong or fails its crc32c.
pub fn decode_array(
    meta: &ArrayMeta,
    out: &mut [u8],
    src: &dyn ChunkSource,
    what: &str,
) -> Result<()> {
    if meta.inner.is_some() {
        for index in chunk_grid(meta) {
            decode_shard(meta, &index, out, src, what)?;
        }
        return Ok(());
    }
    let chunk_bytes = checked_sizes(meta.dtype, &meta.chunks)
        .map(|(_, b)| b)
        .ok_or_else(|| bad(what, "chunk size overflows"))?;
    // Chunks that are contiguous runs of the array decode straight into their part of `out`,
    // on several threads, a batch at a time (the chunk count comes from metadata: nothing is
    // held for the whole grid); the others (edge chunks, chunks cut across trailing dimensions)
    // decode into a scratch buffer and are copied into place, in a second pass over the grid.
    let direct_range = |index: &[usize], consumed: usize, room: usize| {
        contiguous_range(meta.dtype, &meta.shape, &meta.chunks, index)
            .filter(|r| r.start >= consumed && r.end - consumed <= room)
    };
    let mut any_rest = false;
    {
        let mut direct: Vec<(String, &mut [u8])> = Vec::new();
        let mut tail: &mut [u8] = out;
        let mut consumed = 0usize;
        for index in chunk_grid(meta) {
            match direct_range(&index, consumed, tail.len()) {
                Some(r) => {
                    let (_, t) = std::mem::take(&mut tail).split_at_mut(r.start - consumed);
                    let (piece, t2) = t.split_at_mut(r.len());
                    direct.push((chunk_key(meta.version, &index), piece));
                    tail = t2;
                    consumed = r.end;
                    if direct.len() == DECODE_BATCH {
                        parallel_decode(std::mem::take(&mut direct), meta.zstd, src, what)?;
                    }
                }
                None => any_rest = true,
            }
        }
        parallel_decode(direct, meta.zstd, src, what)?;
    }
    if !any_rest {
        return Ok(());
    }
    // The same walk again gives the same decisions: what went direct above is skipped. The
    // other chunks are decoded a batch at a time, on several threads when they are small enough
    // for a scratch buffer per thread, each copied into place under a lock (the copy is a
    // small part of a chunk's decoding).
    let total = out.len();
    let threads = if chunk_bytes <= PARALLEL_SCATTER_MAX_CHUNK {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        1
    };
    let out = std::sync::Mutex::new(out);
    let mut batch: Vec<Vec<usize>> = Vec::new();
    let mut consumed = 0usize;
    for index in chunk_grid(meta) {
        if let Some(r) = direct_range(&index, consumed, total - consumed) {
            consumed = r.end;
            continue;
        }
        batch.push(index);
        if batch.len() == DECODE_BATCH {
            scatter_batch(
                meta,
                &std::mem::take(&mut batch),
                chunk_bytes,
                threads,
                &out,
                src,
                what,
            )?;
        }
    }
    scatter_batch(meta, &batch, chunk_bytes, threads, &out, src, what)
}

/// Chunks of at most this many bytes (64 MiB) that are not contiguous runs of their array are
/// decoded on several threads, each with a scratch buffer of one chunk.
const PARALLEL_SCATTER_MAX_CHUNK: usize = 64 << 20;

/// Decodes the chunks at `indices` (none a contiguous run of the array) into scratch buffers of
/// `chunk_bytes`, on up to `threads` threads, and copies each into its place in `out`; the
/// first error (in chunk order) wins.
fn scatter_batch(
    meta: &ArrayMeta,
    indices: &[Vec<usize>],
    chunk_bytes: usize,
    threads: usize,
    out: &std::sync::Mutex<&mut [u8]>,
    src: &dyn ChunkSource,
    what: &str,
) -> Result<()> {
    if indices.is_empty() {
        return Ok(());
    }
    let item = meta.dtype.size_in_bytes();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = Failures::default();
    let work = || {
        let Some(mut scratch) = ckpt_storage::try_zeroed_bytes(chunk_bytes) else {
            failures.record(
                next.load(std::sync::atomic::Ordering::Relaxed),
                bad(
                    what,
                    format!("a chunk of {chunk_bytes} bytes cannot be allocated"),
                ),
            );
            return;
        };
        loop {
            if failures.any() {
                break;
            }
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(index) = indices.get(i) else { break };
            let key = chunk_key(meta.version, index);
            let at = format!("{what} chunk {key}");
            if let Err(e) = src.decode_into(&key, meta.zstd, &mut scratch, &at) {
                failures.record(i, e);
                break;
            }
            let origin: Vec<usize> = index.iter().zip(&meta.chunks).map(|(i, c)| i * c).collect();
            let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
            scatter(&meta.shape, &meta.chunks, &origin, item, &scratch, &mut out);
        }
    };
    on_threads(threads.min(indices.len()), work);
    failures.into_result()
}

/// How many directly decoded chunks are handed to the decoding threads at a time.
const DECODE_BATCH: usize = 1024;

/// Where an array's stored chunks come from (a key below the array's name: `0.0`, `c/0/1`).
pub trait ChunkSource: Sync {
    /// The stored bytes of chunk `key`.
    ///
    /// # Errors
    /// `NotFound` for a missing chunk; as the store.
    fn read(&self, key: &str) -> Result<Vec<u8>>;

    /// Decodes stored chunk `key` (a zstd frame when `zstd`, else raw bytes) into `out`, which it
    /// must fill exactly. The default reads it whole; a source may stream large values.
    ///
    /// # Errors
    /// As [`ChunkSource::read`]; `Corrupt` naming `what` when it does not decode to `out.len()`
    /// bytes.
    fn decode_into(&self, key: &str, zstd: bool, out: &mut [u8], what: &str) -> Result<()> {
        decode_plain(&self.read(key)?, zstd, out, what)
    }

    /// Which of `keys` to decode together, in one pass over what stores them ([`ChunkSource::decode_run`]):
    /// each run a list of indices into `keys`, in the order to decode them; every index in
    /// exactly one run. The default: every key a run of its own.
    fn runs(&self, keys: &[&str]) -> Vec<Vec<usize>> {
        (0..keys.len()).map(|i| vec![i]).collect()
    }

    /// Decodes a run of chunks (as [`ChunkSource::runs`] grouped them), each `(key, out)` as
    /// [`ChunkSource::decode_into`]. The default decodes them one by one.
    ///
    /// # Errors
    /// As [`ChunkSource::decode_into`], for the first chunk that fails (`what` names the array;
    /// the error names the chunk).
    fn decode_run(&self, run: &mut [(String, &mut [u8])], zstd: bool, what: &str) -> Result<()> {
        decode_each(self, run, zstd, what)
    }
}

/// Decodes the chunks of `run` one by one, through [`ChunkSource::decode_into`].
///
/// # Errors
/// As [`ChunkSource::decode_into`], for the first chunk that fails.
pub(crate) fn decode_each<S: ChunkSource + ?Sized>(
    src: &S,
    run: &mut [(String, &mut [u8])],
    zstd: bool,
    what: &str,
) -> Result<()> {
    for (key, out) in run.iter_mut() {
        src.decode_into(key, zstd, out, &format!("{what} chunk {key}"))?;
    }
    Ok(())
}

/// Chunks decoded together: each its key and its destination.
type Run<'a> = Vec<(String, &'a mut [u8])>;

/// Decodes each `(key, destination)` on up to `available_parallelism` threads, a run of chunks
/// (see [`ChunkSource::runs`]) at a time; the first error (in chunk order) wins.
pub(crate) fn parallel_decode(
    jobs: Vec<(String, &mut [u8])>,
    zstd: bool,
    src: &dyn ChunkSource,
    what: &str,
) -> Result<()> {
    let runs = {
        let keys: Vec<&str> = jobs.iter().map(|(k, _)| k.as_str()).collect();
        src.runs(&keys)
    };
    let mut slots: Vec<Option<(String, &mut [u8])>> = jobs.into_iter().map(Some).collect();
    // Each run with the index of its first chunk (for the order of errors).
    let mut units: Vec<(usize, Run<'_>)> = Vec::with_capacity(runs.len());
    for run in runs {
        let first = run.iter().copied().min().unwrap_or(0);
        let unit: Run<'_> = run
            .into_iter()
            .filter_map(|i| slots.get_mut(i).and_then(Option::take))
            .collect();
        if !unit.is_empty() {
            units.push((first, unit));
        }
    }
    // A source that left a chunk out of every run: it is decoded on its own.
    units.extend(
        slots
            .into_iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|job| (i, vec![job]))),
    );
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(units.len());
    let n = units.len();
    // Popped from the end: the runs in reverse, so the first chunks are decoded first.
    units.reverse();
    let queue = std::sync::Mutex::new(units);
    let failures = Failures::default();
    let work = || loop {
        if failures.any() {
            break;
        }
        let unit = queue.lock().ok().and_then(|mut q| q.pop());
        let Some((i, mut run)) = unit else { break };
        let result = match run.as_mut_slice() {
            [(key, out)] => src.decode_into(key, zstd, out, &format!("{what} chunk {key}")),
            run => src.decode_run(run, zstd, what),
        };
        if let Err(e) = result {
            failures.record(i, e);
        }
    };
    on_threads(if n <= 1 { 1 } else { threads }, work);
    failures.into_result()
}

/// Decodes one zarr v3 shard (`sharding_indexed`) into `out`.
pub(crate) fn decode_shard(
    meta: &ArrayMeta,
    index: &[usize],
    out: &mut [u8],
    src: &dyn ChunkSource,
    what: &str,
) -> Result<()> {
    let Some(inner) = &meta.inner else {
        return Err(bad(what, "not a sharded array"));
    };
    let item = meta.dtype.size_in_bytes();
    let whole = meta.chunks == meta.shape || meta.shape.is_empty();
    let key = chunk_key(meta.version, index);
    let stored = src.read(&key)?;
    let at = format!("{what} chunk {key}");
    let origin: Vec<usize> = index.iter().zip(&meta.chunks).map(|(i, c)| i * c).collect();
    let counts: Vec<usize> = meta.chunks.iter().zip(inner).map(|(c, i)| c / i).collect();
    let n: usize = counts.iter().product();
    let index_len = n
        .checked_mul(16)
        .and_then(|x| x.checked_add(4))
        .ok_or_else(|| bad(&at, "shard index overflows"))?;
    if stored.len() < index_len {
        return Err(bad(&at, "shard is shorter than its index"));
    }
    let idx = if meta.index_at_start {
        &stored[..index_len]
    } else {
        &stored[stored.len() - index_len..]
    };
    let crc = crc32c::crc32c(&idx[..index_len - 4]);
    let stored_crc = u32::from_le_bytes([
        idx[index_len - 4],
        idx[index_len - 3],
        idx[index_len - 2],
        idx[index_len - 1],
    ]);
    if crc != stored_crc {
        return Err(bad(&at, "shard index fails its crc32c"));
    }
    let inner_bytes = checked_sizes(meta.dtype, inner)
        .map(|(_, b)| b)
        .ok_or_else(|| bad(&at, "inner chunk size overflows"))?;
    let single = n == 1 && whole;
    let mut scratch = Vec::new();
    for (k, sub) in grid_indices(&counts).enumerate() {
        let e = &idx[k * 16..k * 16 + 16];
        let off = u64::from_le_bytes(e[..8].try_into().unwrap_or([0; 8]));
        let len = u64::from_le_bytes(e[8..].try_into().unwrap_or([0; 8]));
        if off == u64::MAX && len == u64::MAX {
            return Err(Error::not_found(format!(
                "{at}: inner chunk {sub:?} is missing"
            )));
        }
        let end = off
            .checked_add(len)
            .filter(|e| *e as usize <= stored.len())
            .ok_or_else(|| bad(&at, format!("inner chunk {sub:?} lies outside the shard")))?;
        let body = &stored[off as usize..end as usize];
        if single {
            decode_plain(body, meta.zstd, out, &at)?;
        } else {
            scratch.resize(inner_bytes, 0);
            decode_plain(body, meta.zstd, &mut scratch, &at)?;
            let o: Vec<usize> = origin
                .iter()
                .zip(&sub)
                .zip(inner)
                .map(|((o, s), i)| o + s * i)
                .collect();
            scatter(&meta.shape, inner, &o, item, &scratch, out);
        }
    }
    Ok(())
}

/// zstd level 1 (Orbax's zarr compressor), with the content size in the frame header.
///
/// # Errors
/// `Handler` when zstd fails.
pub fn compress(data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    compress_into(data, &mut out)?;
    Ok(out)
}

/// Compresses `data` as one zstd frame at level 1 (as Orbax) into `out`, replacing what it held;
/// its capacity is reused (grown to zstd's bound for `data` if smaller).
///
/// # Errors
/// `Handler` when zstd fails.
pub fn compress_into(data: &[u8], out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    out.reserve(zstd::zstd_safe::compress_bound(data.len()));
    zstd::zstd_safe::compress(out, data, 1)
        .map(|_| ())
        .map_err(|code| {
            Error::new(
                ErrorKind::Handler,
                format!(
                    "zstd compression of a chunk failed: {}",
                    zstd::zstd_safe::get_error_name(code)
                ),
            )
        })
}
