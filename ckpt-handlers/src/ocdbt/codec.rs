//! The primitive encodings of OCDBT (docs/orbax-arrays/ocdbt.md §2, §3, §5): a bounds-checked
//! reader over a byte slice, the writer's counterparts, the envelope shared by manifests and
//! nodes, and the data file table.

use ckpt_core::{Error, Result};
use std::io::Read;

/// Magic number of a manifest (`manifest.ocdbt`), big-endian on disk.
pub const MANIFEST_MAGIC: u32 = 0x0cdb_3a2a;
/// Magic number of a version tree node.
pub const VERSION_NODE_MAGIC: u32 = 0x0cdb_1234;
/// Magic number of a B+tree node.
pub const BTREE_NODE_MAGIC: u32 = 0x0cdb_20de;

/// Largest decompressed envelope body a reader accepts, in bytes (256 MiB). tensorstore's
/// writers split nodes far below this (Orbax: 100 MB `max_decoded_node_bytes`).
pub const MAX_BODY_BYTES: u64 = 256 << 20;

/// A cursor over untrusted bytes: every read is bounds-checked and fails with `Corrupt` naming
/// `what` (the file, and the structure being read).
pub struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    what: &'a str,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `bytes`; `what` names them in errors.
    pub fn new(bytes: &'a [u8], what: &'a str) -> Self {
        Cursor {
            bytes,
            pos: 0,
            what,
        }
    }

    /// A `Corrupt` error about these bytes at the current offset.
    pub fn error(&self, msg: impl std::fmt::Display) -> Error {
        Error::corrupt(format!("{}: {msg} (at byte {})", self.what, self.pos))
    }

    /// The offset of the next byte.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.error(format!(
                "needs {n} more bytes, {} left (truncated)",
                self.remaining()
            )));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    /// A little-endian u32.
    pub fn u32le(&mut self) -> Result<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A little-endian i32.
    pub fn i32le(&mut self) -> Result<i32> {
        Ok(self.u32le()? as i32)
    }

    /// A little-endian u64.
    pub fn u64le(&mut self) -> Result<u64> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// An unsigned LEB128 varint of at most 64 bits.
    pub fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            let low = u64::from(b & 0x7f);
            if i == 9 && low > 1 {
                return Err(self.error("varint overflows 64 bits"));
            }
            value |= low << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.error("varint longer than 10 bytes"))
    }

    /// A varint that must be at most `max` (a 32- or 16-bit field, or a count).
    pub fn varint_max(&mut self, max: u64, field: &str) -> Result<u64> {
        let v = self.varint()?;
        if v > max {
            return Err(self.error(format!("{field} is {v}, above its limit {max}")));
        }
        Ok(v)
    }

    /// A count of `n` columns entries, checked against the bytes left: each entry takes at least
    /// `min_bytes` bytes, so a count no file could hold is refused before anything is allocated.
    pub fn count(&mut self, max: u64, min_bytes: usize, field: &str) -> Result<usize> {
        let n = self.varint_max(max, field)? as usize;
        if n.saturating_mul(min_bytes) > self.remaining() {
            return Err(self.error(format!(
                "{field} {n} cannot fit in the {} bytes left",
                self.remaining()
            )));
        }
        Ok(n)
    }

    /// `n` varints, each at most `max`.
    pub fn varints(&mut self, n: usize, max: u64, field: &str) -> Result<Vec<u64>> {
        (0..n).map(|_| self.varint_max(max, field)).collect()
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<()> {
        if self.remaining() != 0 {
            return Err(self.error(format!("{} trailing bytes", self.remaining())));
        }
        Ok(())
    }
}

/// Appends `v` as an unsigned LEB128 varint (the shortest form).
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Decodes an envelope (§3): checks magic, length, format version, crc32c, and returns the body,
/// decompressed if it was stored with zstd (bounded by [`MAX_BODY_BYTES`]).
///
/// # Errors
/// `Corrupt` naming `what` for a wrong magic, a length that disagrees with the bytes, a crc
/// mismatch, an unknown version or compression, a zstd frame that does not decode or decodes
/// larger than [`MAX_BODY_BYTES`].
pub fn decode_envelope(bytes: &[u8], magic: u32, what: &str) -> Result<Vec<u8>> {
    let mut c = Cursor::new(bytes, what);
    if bytes.len() < 16 {
        return Err(c.error(format!(
            "{} bytes is too short for an OCDBT envelope",
            bytes.len()
        )));
    }
    let m = c.bytes(4)?;
    let found = u32::from_be_bytes([m[0], m[1], m[2], m[3]]);
    if found != magic {
        return Err(c.error(format!("magic {found:#010x}, expected {magic:#010x}")));
    }
    let length = c.u64le()?;
    if length != bytes.len() as u64 {
        return Err(c.error(format!(
            "header says {length} bytes, the data has {}",
            bytes.len()
        )));
    }
    let body_end = bytes.len() - 4;
    let stored_crc = u32::from_le_bytes([
        bytes[body_end],
        bytes[body_end + 1],
        bytes[body_end + 2],
        bytes[body_end + 3],
    ]);
    let crc = crc32c::crc32c(&bytes[..body_end]);
    if crc != stored_crc {
        return Err(c.error(format!(
            "crc32c {crc:#010x} of the envelope, stored {stored_crc:#010x}"
        )));
    }
    let version = c.varint()?;
    if version != 0 {
        return Err(c.error(format!("format version {version}, only 0 is known")));
    }
    let compression = c.varint()?;
    let start = c.position();
    if start > body_end {
        return Err(c.error("header runs into the checksum"));
    }
    let stored = &bytes[start..body_end];
    match compression {
        0 => Ok(stored.to_vec()),
        1 => {
            let mut out = Vec::new();
            let decoder = zstd::stream::read::Decoder::with_buffer(stored)
                .map_err(|e| Error::corrupt(format!("{what}: zstd body")).with_source(e))?;
            decoder
                .take(MAX_BODY_BYTES + 1)
                .read_to_end(&mut out)
                .map_err(|e| {
                    Error::corrupt(format!("{what}: zstd body does not decode")).with_source(e)
                })?;
            if out.len() as u64 > MAX_BODY_BYTES {
                return Err(Error::corrupt(format!(
                    "{what}: body decodes to more than {MAX_BODY_BYTES} bytes"
                )));
            }
            Ok(out)
        }
        other => Err(Error::corrupt(format!(
            "{what}: compression format {other}, only 0 (raw) and 1 (zstd) are known"
        ))),
    }
}

/// Encodes `body` as an envelope with `magic`: raw when `zstd_level` is `None`, else one zstd
/// frame at that level.
///
/// # Errors
/// `Handler` when zstd fails to compress.
pub fn encode_envelope(magic: u32, body: &[u8], zstd_level: Option<i32>) -> Result<Vec<u8>> {
    let stored: std::borrow::Cow<'_, [u8]> = match zstd_level {
        None => body.into(),
        Some(level) => zstd::bulk::compress(body, level)
            .map_err(|e| {
                Error::new(ckpt_core::ErrorKind::Handler, "zstd compression failed").with_source(e)
            })?
            .into(),
    };
    let length = 4 + 8 + 2 + stored.len() + 4;
    let mut out = Vec::with_capacity(length);
    out.extend_from_slice(&magic.to_be_bytes());
    out.extend_from_slice(&(length as u64).to_le_bytes());
    out.push(0);
    out.push(u8::from(zstd_level.is_some()));
    out.extend_from_slice(&stored);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Largest full path in a data file table (§5), in bytes.
const MAX_PATH: u64 = 65535;

/// Reads a data file table (§5): the list of `(base_path, relative_path)` joined into full
/// paths relative to `transitive` (already prefixed); returns `(full_path, base_path)` pairs.
///
/// # Errors
/// `Corrupt` for counts or lengths that do not fit, a prefix longer than the previous path, a
/// base path longer than its path, or a path that is not UTF-8 or escapes the database
/// (`..`, absolute).
pub fn read_file_table(c: &mut Cursor<'_>, transitive: &str) -> Result<Vec<(String, String)>> {
    let n = c.count(u64::from(u32::MAX), 2, "num_files")?;
    if n == 0 {
        return Ok(Vec::new());
    }
    let prefix = c.varints(n - 1, MAX_PATH, "path_prefix_length")?;
    let suffix = c.varints(n, MAX_PATH, "path_suffix_length")?;
    let base = c.varints(n, MAX_PATH, "base_path_length")?;
    let mut out = Vec::with_capacity(n);
    let mut prev: Vec<u8> = Vec::new();
    let mut prev_base = 0usize;
    for i in 0..n {
        let keep = if i == 0 { 0 } else { prefix[i - 1] as usize };
        if keep > prev.len() {
            return Err(c.error(format!(
                "data file {i}: prefix {keep} longer than the previous path"
            )));
        }
        let mut path = prev[..keep].to_vec();
        path.extend_from_slice(c.bytes(suffix[i] as usize)?);
        if path.len() as u64 > MAX_PATH {
            return Err(c.error(format!("data file {i}: path longer than {MAX_PATH}")));
        }
        let b = base[i] as usize;
        if b > path.len() {
            return Err(c.error(format!("data file {i}: base path longer than its path")));
        }
        if i > 0 && keep > b.min(prev_base) && prev[..prev_base] != path[..b] {
            return Err(c.error(format!(
                "data file {i}: shared prefix runs past differing base paths"
            )));
        }
        let text = std::str::from_utf8(&path)
            .map_err(|_| c.error(format!("data file {i}: path is not UTF-8")))?;
        let base_text = &text[..b.min(text.len())];
        if !text.is_char_boundary(b) {
            return Err(c.error(format!("data file {i}: base path splits a character")));
        }
        let full = format!("{transitive}{text}");
        check_relative(&full).map_err(|m| c.error(format!("data file {i} {full:?}: {m}")))?;
        out.push((full, format!("{transitive}{base_text}")));
        prev = path;
        prev_base = b;
    }
    Ok(out)
}

/// Refuses a database-relative path that could leave the database directory.
fn check_relative(path: &str) -> std::result::Result<(), &'static str> {
    if path.is_empty() {
        return Err("empty path");
    }
    if path.starts_with('/') || path.contains('\\') || path.contains('\0') {
        return Err("not a relative path");
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err("has an empty, `.` or `..` component");
    }
    Ok(())
}

/// Writes a data file table of `paths` (each with an empty base path, so `transitive + path`
/// names it), sharing prefixes with the previous path as tensorstore does.
pub fn put_file_table(out: &mut Vec<u8>, paths: &[&str]) {
    put_varint(out, paths.len() as u64);
    for i in 1..paths.len() {
        let shared = common_prefix(paths[i - 1].as_bytes(), paths[i].as_bytes());
        put_varint(out, shared as u64);
    }
    for (i, p) in paths.iter().enumerate() {
        let shared = if i == 0 {
            0
        } else {
            common_prefix(paths[i - 1].as_bytes(), p.as_bytes())
        };
        put_varint(out, (p.len() - shared) as u64);
    }
    for _ in paths {
        put_varint(out, 0);
    }
    for (i, p) in paths.iter().enumerate() {
        let shared = if i == 0 {
            0
        } else {
            common_prefix(paths[i - 1].as_bytes(), p.as_bytes())
        };
        out.extend_from_slice(&p.as_bytes()[shared..]);
    }
}

/// Length of the common prefix of `a` and `b`, in bytes.
pub fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_refuse_overflow() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut c = Cursor::new(&b, "t");
            assert_eq!(c.varint().unwrap(), v);
            c.finish().unwrap();
        }
        let eleven = [0xffu8; 11];
        assert!(Cursor::new(&eleven, "t").varint().is_err());
        let mut too_big = vec![0xffu8; 9];
        too_big.push(0x02);
        assert!(Cursor::new(&too_big, "t").varint().is_err());
        assert!(Cursor::new(&[0x80], "t").varint().is_err());
    }

    #[test]
    fn envelope_round_trips_and_checks() {
        for level in [None, Some(0), Some(1)] {
            let env = encode_envelope(BTREE_NODE_MAGIC, b"hello body", level).unwrap();
            assert_eq!(
                decode_envelope(&env, BTREE_NODE_MAGIC, "n").unwrap(),
                b"hello body"
            );
            assert!(decode_envelope(&env, MANIFEST_MAGIC, "n").is_err());
            let mut bad = env.clone();
            bad[14] ^= 1;
            assert!(decode_envelope(&bad, BTREE_NODE_MAGIC, "n").is_err());
            assert!(decode_envelope(&env[..env.len() - 1], BTREE_NODE_MAGIC, "n").is_err());
        }
    }

    #[test]
    fn file_table_round_trips() {
        let paths = ["d/aa", "d/ab", "ocdbt.process_0/d/cc"];
        let mut b = Vec::new();
        put_file_table(&mut b, &paths);
        let mut c = Cursor::new(&b, "t");
        let t = read_file_table(&mut c, "x/").unwrap();
        c.finish().unwrap();
        let full: Vec<&str> = t.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(full, ["x/d/aa", "x/d/ab", "x/ocdbt.process_0/d/cc"]);
        let mut evil = Vec::new();
        put_file_table(&mut evil, &["../etc/passwd"]);
        assert!(read_file_table(&mut Cursor::new(&evil, "t"), "").is_err());
    }
}
