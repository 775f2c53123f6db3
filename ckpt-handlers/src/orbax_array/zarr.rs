//! The zarr arrays of Orbax's array items (docs/orbax-arrays/zarr-and-metadata.md §2–§4): array
//! metadata (zarr v2 `.zarray`, zarr v3 `zarr.json` with `sharding_indexed`), chunk keys, chunk
//! decoding into an array buffer and encoding from one, and Orbax's choice of chunk shape.
//!
//! Deviation: not the `zarrs` crate. Orbax's arrays live inside an OCDBT database more often than
//! in directories, chunks must decode straight into the caller's buffer (no per-chunk copy for
//! the one-chunk arrays Orbax writes by default), and Orbax uses two codecs (zstd, and v3
//! `sharding_indexed` with one inner chunk); the ~400 lines here cover exactly that.

use crate::tensor::checked_sizes;
use crate::DType;
use ckpt_core::{Error, ErrorKind, Result};
use serde_json::Value as Json;

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

fn bad(what: &str, msg: impl std::fmt::Display) -> Error {
    Error::corrupt(format!("{what}: {msg}"))
}

fn unsupported(what: &str, msg: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Unsupported, format!("{what}: {msg}"))
}

/// The `.zarray` dtype string of `d` (`<f4`, `|b1`, `bfloat16`, ...).
pub fn v2_dtype(d: DType) -> &'static str {
    match d {
        DType::Bool => "|b1",
        DType::I8 => "|i1",
        DType::I16 => "<i2",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::U8 => "|u1",
        DType::U16 => "<u2",
        DType::U32 => "<u4",
        DType::U64 => "<u8",
        DType::F16 => "<f2",
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::BF16 => "bfloat16",
        DType::C64 => "<c8",
        DType::C128 => "<c16",
    }
}

fn dtype_from_v2(s: &str) -> Option<DType> {
    let s = match s {
        "<b1" => "|b1",
        "<i1" => "|i1",
        "<u1" => "|u1",
        other => other,
    };
    DType::ALL.into_iter().find(|d| v2_dtype(*d) == s)
}

fn dims(v: Option<&Json>, field: &str, what: &str) -> Result<Vec<usize>> {
    let arr = v
        .and_then(Json::as_array)
        .ok_or_else(|| bad(what, format!("`{field}` is not a list")))?;
    if arr.len() > 32 {
        return Err(bad(what, format!("`{field}` has {} dimensions", arr.len())));
    }
    arr.iter()
        .map(|d| {
            d.as_u64()
                .and_then(|d| usize::try_from(d).ok())
                .ok_or_else(|| bad(what, format!("`{field}` holds {d}, not a size")))
        })
        .collect()
}

/// Checks chunk shape against array shape, and that the array's size fits in memory terms.
fn check_shapes(meta: &ArrayMeta, what: &str) -> Result<()> {
    if meta.chunks.len() != meta.shape.len() {
        return Err(bad(
            what,
            format!(
                "chunks {:?} and shape {:?} have different ranks",
                meta.chunks, meta.shape
            ),
        ));
    }
    if meta.chunks.contains(&0) {
        return Err(bad(what, format!("chunk shape {:?} has a 0", meta.chunks)));
    }
    if checked_sizes(meta.dtype, &meta.shape).is_none_or(|(_, b)| b > isize::MAX as usize)
        || checked_sizes(meta.dtype, &meta.chunks).is_none_or(|(_, b)| b > isize::MAX as usize)
    {
        return Err(bad(
            what,
            format!(
                "shape {:?} / chunks {:?} of {} overflow",
                meta.shape, meta.chunks, meta.dtype
            ),
        ));
    }
    if let Some(inner) = &meta.inner {
        if inner.len() != meta.chunks.len()
            || inner
                .iter()
                .zip(&meta.chunks)
                .any(|(i, c)| *i == 0 || c % i != 0)
        {
            return Err(bad(
                what,
                format!(
                    "inner chunk shape {inner:?} does not divide the shard shape {:?}",
                    meta.chunks
                ),
            ));
        }
    }
    Ok(())
}

/// Parses a zarr v2 `.zarray` (`what` names it in errors).
///
/// # Errors
/// `Corrupt` when it is not JSON or a field is missing or wrong (including shapes whose size
/// overflows); `Unsupported` for a dtype, compressor, filter or order Orbax never writes
/// (big-endian, F order, blosc, ...).
pub fn parse_zarray(bytes: &[u8], what: &str) -> Result<ArrayMeta> {
    let v: Json = serde_json::from_slice(bytes)
        .map_err(|e| Error::corrupt(format!("{what}: not JSON")).with_source(e))?;
    if v.get("zarr_format").and_then(Json::as_u64) != Some(2) {
        return Err(bad(what, "`zarr_format` is not 2"));
    }
    let dt = v
        .get("dtype")
        .and_then(Json::as_str)
        .ok_or_else(|| bad(what, "`dtype` is not a string"))?;
    let dtype = dtype_from_v2(dt).ok_or_else(|| unsupported(what, format!("dtype {dt:?}")))?;
    let shape = dims(v.get("shape"), "shape", what)?;
    let chunks = dims(v.get("chunks"), "chunks", what)?;
    if v.get("order").and_then(Json::as_str).unwrap_or("C") != "C" {
        return Err(unsupported(what, "order other than \"C\""));
    }
    if !v.get("filters").is_none_or(Json::is_null) {
        return Err(unsupported(what, "zarr filters"));
    }
    let sep = v
        .get("dimension_separator")
        .and_then(Json::as_str)
        .unwrap_or(".");
    if sep != "." {
        return Err(unsupported(what, format!("dimension_separator {sep:?}")));
    }
    let zstd = match v.get("compressor") {
        None | Some(Json::Null) => false,
        Some(c) => match c.get("id").and_then(Json::as_str) {
            Some("zstd") => true,
            other => return Err(unsupported(what, format!("compressor {other:?}"))),
        },
    };
    let meta = ArrayMeta {
        version: ZarrVersion::V2,
        dtype,
        shape,
        chunks,
        inner: None,
        zstd,
        index_at_start: false,
    };
    check_shapes(&meta, what)?;
    Ok(meta)
}

fn v3_dtype(name: &str) -> Option<DType> {
    DType::from_name(name)
}

/// Reads a v3 codec chain of `bytes` (little-endian) and optionally `zstd`; returns whether zstd
/// is in it.
fn plain_codecs(codecs: &[Json], what: &str) -> Result<bool> {
    let mut zstd = false;
    for (i, c) in codecs.iter().enumerate() {
        let name = c.get("name").and_then(Json::as_str).unwrap_or("");
        match (i, name) {
            (0, "bytes") => {
                let endian = c
                    .get("configuration")
                    .and_then(|c| c.get("endian"))
                    .and_then(Json::as_str)
                    .unwrap_or("little");
                if endian != "little" {
                    return Err(unsupported(what, format!("bytes codec endian {endian:?}")));
                }
            }
            (1, "zstd") => zstd = true,
            _ => return Err(unsupported(what, format!("codec chain {codecs:?}"))),
        }
    }
    if codecs.is_empty() {
        return Err(bad(what, "empty codec chain"));
    }
    Ok(zstd)
}

/// Parses a zarr v3 `zarr.json` (`what` names it in errors): a regular chunk grid, the default
/// chunk key encoding, and codecs `[bytes, zstd?]` or `[sharding_indexed{[bytes, zstd?],
/// index [bytes, crc32c]}]`.
///
/// # Errors
/// As [`parse_zarray`].
pub fn parse_zarr_json(bytes: &[u8], what: &str) -> Result<ArrayMeta> {
    let v: Json = serde_json::from_slice(bytes)
        .map_err(|e| Error::corrupt(format!("{what}: not JSON")).with_source(e))?;
    if v.get("zarr_format").and_then(Json::as_u64) != Some(3) {
        return Err(bad(what, "`zarr_format` is not 3"));
    }
    let dt = v
        .get("data_type")
        .and_then(Json::as_str)
        .ok_or_else(|| bad(what, "`data_type` is not a string"))?;
    let dtype = v3_dtype(dt).ok_or_else(|| unsupported(what, format!("data_type {dt:?}")))?;
    let shape = dims(v.get("shape"), "shape", what)?;
    let grid = v.get("chunk_grid");
    if grid.and_then(|g| g.get("name")).and_then(Json::as_str) != Some("regular") {
        return Err(unsupported(what, "chunk grid other than \"regular\""));
    }
    let chunks = dims(
        grid.and_then(|g| g.get("configuration"))
            .and_then(|c| c.get("chunk_shape")),
        "chunk_shape",
        what,
    )?;
    let enc = v.get("chunk_key_encoding");
    let enc_name = enc.and_then(|e| e.get("name")).and_then(Json::as_str);
    let sep = enc
        .and_then(|e| e.get("configuration"))
        .and_then(|c| c.get("separator"))
        .and_then(Json::as_str)
        .unwrap_or("/");
    if enc_name != Some("default") || sep != "/" {
        return Err(unsupported(
            what,
            "chunk key encoding other than default \"/\"",
        ));
    }
    let codecs = v
        .get("codecs")
        .and_then(Json::as_array)
        .ok_or_else(|| bad(what, "`codecs` is not a list"))?;
    let mut meta = ArrayMeta {
        version: ZarrVersion::V3,
        dtype,
        shape,
        chunks,
        inner: None,
        zstd: false,
        index_at_start: false,
    };
    match codecs.as_slice() {
        [one] if one.get("name").and_then(Json::as_str) == Some("sharding_indexed") => {
            let conf = one
                .get("configuration")
                .ok_or_else(|| bad(what, "sharding_indexed has no configuration"))?;
            meta.inner = Some(dims(conf.get("chunk_shape"), "chunk_shape", what)?);
            let inner = conf
                .get("codecs")
                .and_then(Json::as_array)
                .ok_or_else(|| bad(what, "sharding codecs are not a list"))?;
            meta.zstd = plain_codecs(inner, what)?;
            let index = conf
                .get("index_codecs")
                .and_then(Json::as_array)
                .ok_or_else(|| bad(what, "index_codecs are not a list"))?;
            let names: Vec<&str> = index
                .iter()
                .map(|c| c.get("name").and_then(Json::as_str).unwrap_or(""))
                .collect();
            if names != ["bytes", "crc32c"] {
                return Err(unsupported(what, format!("index codecs {names:?}")));
            }
            meta.index_at_start = match conf.get("index_location").and_then(Json::as_str) {
                None | Some("end") => false,
                Some("start") => true,
                Some(o) => return Err(bad(what, format!("index_location {o:?}"))),
            };
        }
        chain => meta.zstd = plain_codecs(chain, what)?,
    }
    check_shapes(&meta, what)?;
    Ok(meta)
}

/// The `.zarray` bytes Orbax writes for an array of `dtype`, `shape` and `chunks`: compact JSON,
/// keys sorted, zstd level 1 (zarr-and-metadata.md §2).
pub fn zarray_bytes(dtype: DType, shape: &[usize], chunks: &[usize]) -> Vec<u8> {
    let list = |d: &[usize]| {
        d.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        "{{\"chunks\":[{}],\"compressor\":{{\"id\":\"zstd\",\"level\":1}},\"dimension_separator\":\".\",\"dtype\":\"{}\",\"fill_value\":null,\"filters\":null,\"order\":\"C\",\"shape\":[{}],\"zarr_format\":2}}",
        list(chunks),
        v2_dtype(dtype),
        list(shape)
    )
    .into_bytes()
}

/// The chunk grid of `meta`: for each chunk (in C order of grid indices) its grid index.
pub fn chunk_grid(meta: &ArrayMeta) -> Vec<Vec<usize>> {
    let counts: Vec<usize> = meta
        .shape
        .iter()
        .zip(&meta.chunks)
        .map(|(s, c)| s.div_ceil(*c))
        .collect();
    grid_indices(&counts)
}

fn grid_indices(counts: &[usize]) -> Vec<Vec<usize>> {
    let total: usize = counts.iter().product();
    let mut out = Vec::with_capacity(total);
    let mut idx = vec![0usize; counts.len()];
    for _ in 0..total {
        out.push(idx.clone());
        for d in (0..counts.len()).rev() {
            idx[d] += 1;
            if idx[d] < counts[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
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

/// The rows of the in-bounds part of a chunk (full shape `chunk`, at element origin `origin`)
/// of an array of `shape`: `(offset in the array, offset in the chunk, length)`, in bytes.
fn box_rows(
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
        .into_iter()
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
fn scatter(
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
fn gather(
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
    let item = meta.dtype.size_in_bytes();
    let chunk_bytes = checked_sizes(meta.dtype, &meta.chunks)
        .map(|(_, b)| b)
        .ok_or_else(|| bad(what, "chunk size overflows"))?;
    // Chunks that are contiguous runs of the array decode straight into their part of `out`,
    // on several threads; the others (edge chunks, chunks cut across trailing dimensions) decode
    // into a scratch buffer and are copied into place.
    let mut rest = Vec::new();
    {
        let mut direct: Vec<(String, &mut [u8])> = Vec::new();
        let mut tail: &mut [u8] = out;
        let mut consumed = 0usize;
        for index in chunk_grid(meta) {
            match contiguous_range(meta.dtype, &meta.shape, &meta.chunks, &index) {
                Some(r) if r.start >= consumed && r.end - consumed <= tail.len() => {
                    let (_, t) = std::mem::take(&mut tail).split_at_mut(r.start - consumed);
                    let (piece, t2) = t.split_at_mut(r.len());
                    direct.push((chunk_key(meta.version, &index), piece));
                    tail = t2;
                    consumed = r.end;
                }
                _ => rest.push(index),
            }
        }
        parallel_decode(direct, meta.zstd, src, what)?;
    }
    let mut scratch = vec![0u8; if rest.is_empty() { 0 } else { chunk_bytes }];
    for index in rest {
        let key = chunk_key(meta.version, &index);
        let at = format!("{what} chunk {key}");
        src.decode_into(&key, meta.zstd, &mut scratch, &at)?;
        let origin: Vec<usize> = index.iter().zip(&meta.chunks).map(|(i, c)| i * c).collect();
        scatter(&meta.shape, &meta.chunks, &origin, item, &scratch, out);
    }
    Ok(())
}

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
}

/// Decodes each `(key, destination)` on up to `available_parallelism` threads; the first error
/// (in chunk order) wins.
fn parallel_decode(
    jobs: Vec<(String, &mut [u8])>,
    zstd: bool,
    src: &dyn ChunkSource,
    what: &str,
) -> Result<()> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(jobs.len());
    let n = jobs.len();
    let queue = std::sync::Mutex::new(jobs.into_iter().enumerate().collect::<Vec<_>>());
    let errors: std::sync::Mutex<Vec<(usize, Error)>> = std::sync::Mutex::new(Vec::new());
    let failed = std::sync::atomic::AtomicBool::new(false);
    let work = || loop {
        if failed.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        let job = queue.lock().ok().and_then(|mut q| q.pop());
        let Some((i, (key, out))) = job else { break };
        let at = format!("{what} chunk {key}");
        if let Err(e) = src.decode_into(&key, zstd, out, &at) {
            failed.store(true, std::sync::atomic::Ordering::Relaxed);
            if let Ok(mut v) = errors.lock() {
                v.push((i, e));
            }
        }
    };
    if threads <= 1 || n <= 1 {
        work();
    } else {
        std::thread::scope(|s| {
            for _ in 1..threads {
                s.spawn(work);
            }
            work();
        });
    }
    let mut errs = errors.into_inner().unwrap_or_default();
    errs.sort_by_key(|(i, _)| *i);
    match errs.into_iter().next() {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

/// Decodes one zarr v3 shard (`sharding_indexed`) into `out`.
fn decode_shard(
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
    for (k, sub) in grid_indices(&counts).into_iter().enumerate() {
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

/// zstd level 1 (Orbax's zarr compressor), with the content size in the frame header.
pub fn compress(data: &[u8]) -> Result<Vec<u8>> {
    zstd::bulk::compress(data, 1).map_err(|e| {
        Error::new(ErrorKind::Handler, "zstd compression of a chunk failed").with_source(e)
    })
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
        let next = (1..chunk[d])
            .rev()
            .find(|x| full.is_multiple_of(*x))
            .unwrap_or(1);
        chunk[d] = next;
    }
    chunk
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
