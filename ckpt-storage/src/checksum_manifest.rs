//! The checksum manifest of a step, `<step>/_CKPT_CHECKSUMS` ([`MANIFEST_FILE`]): its format
//! ([`ChecksumManifest`], one [`FileChecksum`] per file), the CRC32C of bytes, and what checking
//! bytes against a checksum finds ([`FileStatus`]). The layers that record and check checksums
//! are in `layers/checksum.rs`; the walk over a whole step, which needs to know what a step
//! holds, is `ckpt_manager::verify_step` (ckpt-manager/src/verify.rs).
//!
//! ckpt's own; Orbax has no checksums. The manifest is a file at step level, beside
//! `_CHECKPOINT_METADATA`: Orbax treats only the subdirectories of a step as items and ignores
//! the files there, so a step that carries one still restores in Orbax.
//!
//! CRC32C (Castagnoli) is computed with the `crc32c` crate, which uses the SSE 4.2 / ARMv8 CRC
//! instructions when the CPU has them (several GB/s per core) and a table otherwise.

use crate::{join_path, validate_path, Store};
use ckpt_core::{Error, ErrorKind, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// File name of the checksum manifest inside a step directory: `<step>/_CKPT_CHECKSUMS`.
/// ckpt's own; Orbax ignores files in a step directory (only subdirectories are items).
pub const MANIFEST_FILE: &str = "_CKPT_CHECKSUMS";

/// The value of the manifest's `"algorithm"` key: the only algorithm this version writes and
/// reads.
pub const CHECKSUM_ALGORITHM: &str = "crc32c";

/// The size and CRC32C of one file's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileChecksum {
    /// Size in bytes.
    pub size: u64,
    /// CRC32C (Castagnoli polynomial, as iSCSI, ext4 and Google Cloud Storage use) of the bytes.
    pub crc32c: u32,
}

impl FileChecksum {
    /// The checksum of `data`.
    pub fn of(data: &[u8]) -> Self {
        FileChecksum {
            size: data.len() as u64,
            crc32c: crc32c::crc32c(data),
        }
    }

    /// The checksum of `parts` one after another (the file [`Store::write_parts`] writes),
    /// computed incrementally: the same as [`FileChecksum::of`] their concatenation, without
    /// concatenating them.
    pub fn of_parts(parts: &[&[u8]]) -> Self {
        let mut c = FileChecksum { size: 0, crc32c: 0 };
        for p in parts {
            c.size += p.len() as u64;
            c.crc32c = crc32c::crc32c_append(c.crc32c, p);
        }
        c
    }

    /// Checks `data` against this checksum: size first, then CRC. Returns [`FileStatus::Ok`],
    /// [`FileStatus::WrongSize`] or [`FileStatus::WrongCrc`].
    pub fn check(&self, data: &[u8]) -> FileStatus {
        let size = data.len() as u64;
        if size != self.size {
            return FileStatus::WrongSize {
                expected: self.size,
                actual: size,
            };
        }
        let crc = crc32c::crc32c(data);
        if crc != self.crc32c {
            return FileStatus::WrongCrc {
                expected: self.crc32c,
                actual: crc,
            };
        }
        FileStatus::Ok
    }
}

/// The checksums of the files of one step, keyed by their path relative to the step directory
/// (`"state/tensors.safetensors"`), as stored in [`MANIFEST_FILE`].
///
/// On disk it is one JSON object, written with Python `json.dumps` separators like every other
/// ckpt file:
///
/// ```text
/// {"algorithm": "crc32c", "files": {"state/tensors.safetensors": {"size": 123, "crc32c": "0a1b2c3d"}}}
/// ```
///
/// `size` is in bytes; `crc32c` is 8 lowercase hexadecimal digits. Keys are sorted. Readers
/// ignore unknown keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChecksumManifest {
    /// Checksums by path relative to the step directory.
    pub files: BTreeMap<String, FileChecksum>,
}

impl ChecksumManifest {
    /// An empty manifest.
    pub fn new() -> Self {
        ChecksumManifest::default()
    }

    /// Records `checksum` for `key` (a path relative to the step directory), replacing any
    /// earlier one.
    pub fn insert(&mut self, key: impl Into<String>, checksum: FileChecksum) {
        self.files.insert(key.into(), checksum);
    }

    /// The checksum recorded for `key`.
    pub fn get(&self, key: &str) -> Option<&FileChecksum> {
        self.files.get(key)
    }

    /// How many files are recorded.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether no file is recorded.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The entries of the files inside item directory `item` of the step (keys `<item>/…`), in
    /// key order.
    pub fn item_files<'a>(
        &'a self,
        item: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a FileChecksum)> + 'a {
        self.files
            .iter()
            .filter(move |(key, _)| key.strip_prefix(item).is_some_and(|r| r.starts_with('/')))
    }

    /// Adds every entry of `other` (one per item, say) to this manifest; for a key in both, the
    /// entry of `other` wins.
    pub fn merge(&mut self, other: ChecksumManifest) {
        self.files.extend(other.files);
    }

    /// The manifest as the bytes of [`MANIFEST_FILE`] (see the type's docs for the format).
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut s = String::with_capacity(48 + 64 * self.files.len());
        s.push_str("{\"algorithm\": \"");
        s.push_str(CHECKSUM_ALGORITHM);
        s.push_str("\", \"files\": {");
        for (i, (key, c)) in self.files.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            // serde_json's Display of a string value is its JSON literal, escapes and all.
            s.push_str(&Value::from(key.as_str()).to_string());
            s.push_str(&format!(
                ": {{\"size\": {}, \"crc32c\": \"{:08x}\"}}",
                c.size, c.crc32c
            ));
        }
        s.push_str("}}");
        s.into_bytes()
    }

    /// Parses the bytes of a [`MANIFEST_FILE`].
    ///
    /// # Errors
    /// [`ErrorKind::Corrupt`] when the bytes are not JSON, not an object of the documented
    /// shape, a size is not a non-negative integer, a CRC is not 8 hexadecimal digits, or a key
    /// is not a valid relative path (empty, absolute, with `..`: see [`validate_path`]), so a
    /// manifest can never name a file outside its step; [`ErrorKind::Unsupported`] when the
    /// `algorithm` is another than [`CHECKSUM_ALGORITHM`] (a later ckpt may write others). The
    /// error has no path: [`ChecksumManifest::read_from`] attaches the file's.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |why: String| Error::corrupt(format!("bad checksum manifest: {why}"));
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| bad("not valid JSON".to_string()).with_source(e))?;
        let obj = v
            .as_object()
            .ok_or_else(|| bad("not a JSON object".to_string()))?;
        match obj.get("algorithm") {
            Some(Value::String(a)) if a == CHECKSUM_ALGORITHM => {}
            Some(Value::String(a)) => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "checksum manifest uses algorithm {a:?}; this ckpt knows only {:?}",
                        CHECKSUM_ALGORITHM
                    ),
                ))
            }
            Some(_) => return Err(bad("\"algorithm\" is not a string".to_string())),
            None => return Err(bad("no \"algorithm\" key".to_string())),
        }
        let files = match obj.get("files") {
            Some(Value::Object(f)) => f,
            Some(_) => return Err(bad("\"files\" is not an object".to_string())),
            None => return Err(bad("no \"files\" key".to_string())),
        };
        let mut out = ChecksumManifest::new();
        for (key, entry) in files {
            if key.is_empty() || validate_path(key).is_err() {
                return Err(bad(format!("{key:?} is not a relative path")));
            }
            let entry = entry
                .as_object()
                .ok_or_else(|| bad(format!("the entry of {key:?} is not an object")))?;
            let size = entry
                .get("size")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad(format!("the size of {key:?} is not a byte count")))?;
            let crc = entry
                .get("crc32c")
                .and_then(Value::as_str)
                .and_then(parse_crc)
                .ok_or_else(|| bad(format!("the crc32c of {key:?} is not 8 hex digits")))?;
            out.insert(key.clone(), FileChecksum { size, crc32c: crc });
        }
        Ok(out)
    }

    /// Reads `<step_dir>/_CKPT_CHECKSUMS` from `store`; `Ok(None)` when there is none (a step
    /// written by Orbax, or by ckpt with checksums off).
    ///
    /// # Errors
    /// As [`ChecksumManifest::from_json_bytes`], with the file's location attached;
    /// `InvalidArgument` for a bad `step_dir`; `Storage` when the store fails.
    pub fn read_from(store: &dyn Store, step_dir: &str) -> Result<Option<Self>> {
        let path = join_path(step_dir, MANIFEST_FILE);
        match store.read(&path) {
            Ok(bytes) => Self::from_json_bytes(&bytes)
                .map(Some)
                .map_err(|e| e.with_path(store.location(&path))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes this manifest to `<step_dir>/_CKPT_CHECKSUMS` in `store`, replacing any there.
    ///
    /// # Errors
    /// As [`Store::write`].
    pub fn write_to(&self, store: &dyn Store, step_dir: &str) -> Result<()> {
        store.write(&join_path(step_dir, MANIFEST_FILE), &self.to_json_bytes())
    }
}

/// Exactly 8 hexadecimal digits (either case) as a `u32`.
fn parse_crc(s: &str) -> Option<u32> {
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        u32::from_str_radix(s, 16).ok()
    } else {
        None
    }
}

/// What a [`crate::VerifyingStore`] read (or `ckpt_manager::verify_step`, the check of a whole
/// step) found for one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStatus {
    /// Size and CRC32C match the manifest.
    Ok,
    /// In the manifest, but there is no file at its path.
    Missing,
    /// In the manifest, but the path is a directory or a symbolic link (never followed).
    NotAFile,
    /// The size differs from the manifest's (bytes): truncated when `actual < expected`.
    WrongSize {
        /// Size recorded in the manifest, in bytes.
        expected: u64,
        /// Size found, in bytes.
        actual: u64,
    },
    /// The size matches but the CRC32C does not: the contents changed (a flipped bit).
    WrongCrc {
        /// CRC32C recorded in the manifest.
        expected: u32,
        /// CRC32C of the contents found.
        actual: u32,
    },
    /// A file present in the step directory, outside every item directory, that the manifest
    /// does not list (only reported when the step has a manifest; never makes a report bad).
    Unchecked,
    /// A file inside an item directory of a step that has a manifest, which the manifest does
    /// not list: ckpt records every file its save writes into an item, so the manifest lost
    /// the entry (it was emptied or replaced) or the file was added afterwards. Bad: nothing
    /// vouches for its contents.
    Unrecorded,
}

impl FileStatus {
    /// Whether this status means the file is damaged, gone or not vouched for: `Missing`,
    /// `NotAFile`, `WrongSize`, `WrongCrc` or `Unrecorded`.
    pub fn is_bad(&self) -> bool {
        !matches!(self, FileStatus::Ok | FileStatus::Unchecked)
    }

    /// The `Corrupt` error for a file at `location` (its full location) with this status:
    /// `"<location> does not match its checksum (_CKPT_CHECKSUMS): <status>"`, with the
    /// location as the error's path. What the checking layers return, and what a report of a
    /// whole step (`ckpt_manager::VerifyReport`) turns a bad file into.
    pub fn corrupt_at(self, location: &str) -> Error {
        Error::corrupt(format!(
            "{location} does not match its checksum ({MANIFEST_FILE}): {self}"
        ))
        .with_path(location.to_string())
    }
}

impl fmt::Display for FileStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FileStatus::Ok => f.write_str("ok"),
            FileStatus::Missing => f.write_str("missing"),
            FileStatus::NotAFile => f.write_str("not a regular file"),
            FileStatus::WrongSize { expected, actual } if actual < expected => {
                write!(f, "truncated: {actual} of {expected} bytes")
            }
            FileStatus::WrongSize { expected, actual } => {
                write!(f, "wrong size: {actual} bytes, expected {expected}")
            }
            FileStatus::WrongCrc { expected, actual } => {
                write!(f, "wrong crc32c: {actual:08x}, expected {expected:08x}")
            }
            FileStatus::Unchecked => f.write_str("unchecked (not in the checksum manifest)"),
            FileStatus::Unrecorded => f.write_str(
                "not in the checksum manifest, though inside an item (the manifest lost its entry, or the file was added later)",
            ),
        }
    }
}

/// The `Corrupt` error for a bad file at `location` ([`FileStatus::corrupt_at`]).
pub(crate) fn corrupt(location: &str, status: FileStatus) -> Error {
    status.corrupt_at(location)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_value() {
        // The check value of CRC-32C (RFC 3720 B.4): "123456789" -> 0xe3069283.
        assert_eq!(FileChecksum::of(b"123456789").crc32c, 0xe306_9283);
        assert_eq!(FileChecksum::of(b"").crc32c, 0);
    }

    #[test]
    fn json_format_is_exact() {
        let mut m = ChecksumManifest::new();
        m.insert(
            "state/tensors.safetensors",
            FileChecksum {
                size: 123,
                crc32c: 0x0a1b_2c3d,
            },
        );
        m.insert("a \"q\"", FileChecksum { size: 0, crc32c: 0 });
        assert_eq!(
            String::from_utf8_lossy(&m.to_json_bytes()),
            "{\"algorithm\": \"crc32c\", \"files\": {\"a \\\"q\\\"\": {\"size\": 0, \"crc32c\": \"00000000\"}, \
             \"state/tensors.safetensors\": {\"size\": 123, \"crc32c\": \"0a1b2c3d\"}}}"
        );
        assert_eq!(
            ChecksumManifest::new().to_json_bytes(),
            b"{\"algorithm\": \"crc32c\", \"files\": {}}"
        );
    }

    #[test]
    fn status_messages() {
        let t = FileStatus::WrongSize {
            expected: 10,
            actual: 5,
        };
        assert_eq!(t.to_string(), "truncated: 5 of 10 bytes");
        let l = FileStatus::WrongSize {
            expected: 10,
            actual: 11,
        };
        assert_eq!(l.to_string(), "wrong size: 11 bytes, expected 10");
        let c = FileStatus::WrongCrc {
            expected: 1,
            actual: 0xffff_ffff,
        };
        assert_eq!(c.to_string(), "wrong crc32c: ffffffff, expected 00000001");
        assert!(!FileStatus::Unchecked.is_bad() && !FileStatus::Ok.is_bad());
        assert!(FileStatus::Missing.is_bad() && FileStatus::NotAFile.is_bad());
    }

    /// Bytes that differ everywhere, `n` of them.
    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8 ^ (i >> 12) as u8).collect()
    }

    #[test]
    fn parts_checksum_as_their_concatenation() {
        let d = data(1000);
        let (a, b) = d.split_at(300);
        assert_eq!(FileChecksum::of_parts(&[a, &[], b]), FileChecksum::of(&d));
        assert_eq!(FileChecksum::of_parts(&[]), FileChecksum::of(b""));
    }
}
