//! Array metadata: zarr v2 `.zarray` and zarr v3 `zarr.json` (with `sharding_indexed`), parsed
//! and checked, and `.zarray` written as Orbax writes it.

use super::*;

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

pub(crate) fn dtype_from_v2(s: &str) -> Option<DType> {
    let s = match s {
        "<b1" => "|b1",
        "<i1" => "|i1",
        "<u1" => "|u1",
        other => other,
    };
    DType::ALL.into_iter().find(|d| v2_dtype(*d) == s)
}

pub(crate) fn dims(v: Option<&Json>, field: &str, what: &str) -> Result<Vec<usize>> {
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
pub(crate) fn check_shapes(meta: &ArrayMeta, what: &str) -> Result<()> {
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

pub(crate) fn v3_dtype(name: &str) -> Option<DType> {
    DType::from_name(name)
}

/// Reads a v3 codec chain of `bytes` (little-endian) and optionally `zstd`; returns whether zstd
/// is in it.
pub(crate) fn plain_codecs(codecs: &[Json], what: &str) -> Result<bool> {
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
