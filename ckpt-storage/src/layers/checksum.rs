//! Checksums of the files of a step: [`ChecksumManifest`] (the `_CKPT_CHECKSUMS` file),
//! [`RecordingStore`] (records a CRC32C of every file written through it), [`VerifyingStore`]
//! (checks files against a manifest as they are read) and [`verify_step`] (checks a whole step).
//!
//! ckpt's own; Orbax has no checksums. The manifest is a file at step level, beside
//! `_CHECKPOINT_METADATA`: Orbax treats only the subdirectories of a step as items and ignores
//! the files there, so a step that carries one still restores in Orbax.
//!
//! CRC32C (Castagnoli) is computed with the `crc32c` crate, which uses the SSE 4.2 / ARMv8 CRC
//! instructions when the CPU has them (several GB/s per core) and a table otherwise.

use super::lock;
use crate::{join_path, validate_path, Entry, EntryKind, ReadStream, Store};
use ckpt_core::{Error, ErrorKind, Result, COMMIT_SUCCESS_FILE, STEP_METADATA_FILE};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

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

    /// [`FileChecksum::of_parts`] on another thread while `f` runs on this one, for writes of at
    /// least [`PARALLEL_CRC_MIN`] bytes (below that, or when no thread can be started, one after
    /// the other): the CRC then costs no time next to the write on a machine with a spare core.
    fn of_parts_beside<T>(parts: &[&[u8]], f: impl FnOnce() -> T) -> (T, FileChecksum) {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total < PARALLEL_CRC_MIN {
            return (f(), FileChecksum::of_parts(parts));
        }
        std::thread::scope(|s| {
            let spawned = std::thread::Builder::new()
                .name("ckpt-crc32c".into())
                .spawn_scoped(s, || FileChecksum::of_parts(parts));
            let out = f();
            let c = match spawned.map(|h| h.join()) {
                Ok(Ok(c)) => c,
                _ => FileChecksum::of_parts(parts),
            };
            (out, c)
        })
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

/// From this many bytes on, a checksum is computed on a second thread beside the write or read
/// it covers (16 MiB; smaller files are checked inline, where a thread would cost more than it
/// saves).
pub const PARALLEL_CRC_MIN: usize = 16 << 20;

/// The piece of a large read handed to the checksum thread at a time (4 MiB).
const CRC_CHUNK: usize = 4 << 20;

/// Exactly 8 hexadecimal digits (either case) as a `u32`.
fn parse_crc(s: &str) -> Option<u32> {
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        u32::from_str_radix(s, 16).ok()
    } else {
        None
    }
}

/// What [`verify_step`] (or a [`VerifyingStore`] read) found for one file.
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
    /// A file present in the step directory that the manifest does not list (only reported
    /// when the step has a manifest; never makes a report bad).
    Unchecked,
}

impl FileStatus {
    /// Whether this status means the file is damaged or gone: `Missing`, `NotAFile`,
    /// `WrongSize` or `WrongCrc`.
    pub fn is_bad(&self) -> bool {
        !matches!(self, FileStatus::Ok | FileStatus::Unchecked)
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
        }
    }
}

/// The `Corrupt` error for a bad file at `location`.
fn corrupt(location: &str, status: FileStatus) -> Error {
    Error::corrupt(format!(
        "{location} does not match its checksum ({MANIFEST_FILE}): {status}"
    ))
    .with_path(location.to_string())
}

/// The result of [`verify_step`]: one entry per file, sorted by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The step directory, as a store path.
    pub step_dir: String,
    /// The step directory's full location ([`Store::location`]), for messages.
    pub step_location: String,
    /// Whether the step has a [`MANIFEST_FILE`]. Without one nothing is checked and `files` is
    /// empty ("no checksums recorded"): not an error, Orbax and ckpt with checksums off write
    /// none.
    pub has_checksums: bool,
    /// Each file, by path relative to the step directory (`"state/t.bin"`), with its status:
    /// every file of the manifest, then every other file found below the step directory except
    /// `_CKPT_CHECKSUMS`, `_CHECKPOINT_METADATA` and `commit_success.txt` ([`FileStatus::Unchecked`]).
    pub files: Vec<(String, FileStatus)>,
}

impl VerifyReport {
    /// Whether no file is bad (see [`FileStatus::is_bad`]). A step without checksums is ok.
    pub fn is_ok(&self) -> bool {
        !self.files.iter().any(|(_, s)| s.is_bad())
    }

    /// The bad files and their statuses.
    pub fn bad_files(&self) -> impl Iterator<Item = &(String, FileStatus)> {
        self.files.iter().filter(|(_, s)| s.is_bad())
    }

    /// The full location of the file `key` of this step (for messages).
    pub fn location_of(&self, key: &str) -> String {
        if self.step_location.ends_with('/') {
            format!("{}{key}", self.step_location)
        } else {
            format!("{}/{key}", self.step_location)
        }
    }

    /// `Ok(())` when [`VerifyReport::is_ok`].
    ///
    /// # Errors
    /// [`ErrorKind::Corrupt`] naming every bad file (its location and what is wrong with it),
    /// with the path of the first.
    pub fn check(&self) -> Result<()> {
        let bad: Vec<&(String, FileStatus)> = self.bad_files().collect();
        let Some((first, first_status)) = bad.first() else {
            return Ok(());
        };
        if bad.len() == 1 {
            return Err(corrupt(&self.location_of(first), *first_status));
        }
        let list: Vec<String> = bad
            .iter()
            .map(|(k, s)| format!("{} ({s})", self.location_of(k)))
            .collect();
        Err(Error::corrupt(format!(
            "{} files of {} do not match their checksums ({MANIFEST_FILE}): {}",
            bad.len(),
            self.step_location,
            list.join("; ")
        ))
        .with_path(self.location_of(first)))
    }
}

impl fmt::Display for VerifyReport {
    /// One line per file, `<location>: <status>`, or one line saying that no checksums are
    /// recorded.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.has_checksums {
            return write!(f, "{}: no checksums recorded", self.step_location);
        }
        if self.files.is_empty() {
            return write!(f, "{}: no files", self.step_location);
        }
        for (i, (key, status)) in self.files.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {status}", self.location_of(key))?;
        }
        Ok(())
    }
}

/// Checks every file of the step at `step_dir` against its [`MANIFEST_FILE`]: re-reads each file
/// the manifest lists and reports it ok, missing, not a file, wrong size or wrong CRC, and lists
/// the other files below the step directory as unchecked (except the manifest itself,
/// `_CHECKPOINT_METADATA` and `commit_success.txt` files, at any depth). A step without a
/// manifest gives a report with [`VerifyReport::has_checksums`] false and no files.
///
/// Reads every listed file whole (one `read` per file) and walks the step directory with
/// `list_dir`; symbolic links are reported, never followed, so nothing outside the step is read.
/// Use [`VerifyReport::check`] to turn a bad report into an error.
///
/// # Errors
/// `NotFound` when nothing is at `step_dir`; `Corrupt` (or `Unsupported`) when the manifest
/// cannot be parsed, naming it; `InvalidArgument` for a bad path; `Storage` when the store fails
/// (a storage failure is not reported as a bad file).
pub fn verify_step(store: &dyn Store, step_dir: &str) -> Result<VerifyReport> {
    validate_path(step_dir)?;
    let step_location = store.location(step_dir);
    if step_dir.is_empty() {
        // The root: always there.
    } else if store.stat(step_dir)?.is_none() {
        return Err(
            Error::not_found("no step directory to verify").with_path(step_location.clone())
        );
    }
    let Some(manifest) = ChecksumManifest::read_from(store, step_dir)? else {
        return Ok(VerifyReport {
            step_dir: step_dir.to_string(),
            step_location,
            has_checksums: false,
            files: Vec::new(),
        });
    };
    // Everything below the step directory, never following a link.
    let mut found: BTreeMap<String, EntryKind> = BTreeMap::new();
    walk(store, step_dir, "", &mut found)?;

    let mut files = Vec::with_capacity(found.len().max(manifest.len()));
    for (key, expected) in &manifest.files {
        let status = match found.get(key) {
            None => FileStatus::Missing,
            Some(EntryKind::Dir | EntryKind::Symlink) => FileStatus::NotAFile,
            Some(EntryKind::File) => match store.read(&join_path(step_dir, key)) {
                Ok(data) => expected.check(&data),
                // Deleted between the listing and the read.
                Err(e) if e.kind() == ErrorKind::NotFound => FileStatus::Missing,
                Err(e) => return Err(e),
            },
        };
        files.push((key.clone(), status));
    }
    for (key, kind) in &found {
        let name = crate::file_name(key);
        let ignored = *kind == EntryKind::Dir
            || name == MANIFEST_FILE
            || name == STEP_METADATA_FILE
            || name == COMMIT_SUCCESS_FILE;
        if !ignored && !manifest.files.contains_key(key) {
            files.push((key.clone(), FileStatus::Unchecked));
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(VerifyReport {
        step_dir: step_dir.to_string(),
        step_location,
        has_checksums: true,
        files,
    })
}

/// Adds every entry below `base/rel` to `found`, keyed by its path relative to `base`;
/// descends into directories only.
fn walk(
    store: &dyn Store,
    base: &str,
    rel: &str,
    found: &mut BTreeMap<String, EntryKind>,
) -> Result<()> {
    for Entry { name, kind } in store.list_dir(&join_path(base, rel))? {
        let key = join_path(rel, &name);
        if kind == EntryKind::Dir {
            walk(store, base, &key, found)?;
        }
        found.insert(key, kind);
    }
    Ok(())
}

/// The part of `path` below `dir` (`dir` empty: all of `path`); `None` when `path` is not
/// strictly below `dir`.
fn below<'a>(dir: &str, path: &'a str) -> Option<&'a str> {
    if dir.is_empty() {
        return (!path.is_empty()).then_some(path);
    }
    path.strip_prefix(dir)?
        .strip_prefix('/')
        .filter(|r| !r.is_empty())
}

/// A [`Store`] that records the size and CRC32C of every file written through it, so that they
/// can be stored in the step's [`MANIFEST_FILE`]. ckpt's own; Orbax has no checksums.
///
/// Every call passes through unchanged. After each *successful* `write` or `write_if_absent` of a
/// path `P` below `strip_prefix` (`P` = `strip_prefix/rest`), it records
/// `key_prefix/rest` → [`FileChecksum::of`] the data written (a later write of the same path
/// replaces it). Paths elsewhere are not recorded. An empty `strip_prefix` records every path,
/// an empty `key_prefix` records `rest` as it is.
///
/// The manager writes an item through it with `strip_prefix` = the item's working directory
/// (`3.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp`) and `key_prefix` = the item's name
/// (`state`), so the keys are relative to the *final* step directory.
///
/// So that the manifest describes what is on storage, successful changes through this store
/// update it too: `delete` of a recorded path forgets it; `delete_prefix` of a recorded
/// directory forgets everything below it, and of `strip_prefix` itself or one of its ancestors
/// forgets everything; `rename` within `strip_prefix` moves the entries, and out of it forgets
/// them. A `rename` of `strip_prefix` itself (or an ancestor), as when the item is committed,
/// changes nothing: keys are relative to it and move with it. (Committing the item through this
/// store therefore also records the item's `commit_success.txt`, a file written below
/// `strip_prefix`: harmless, it is then checked like any other file.)
///
/// Cost: one CRC32C pass over the data of each write (hardware-accelerated).
#[derive(Debug)]
pub struct RecordingStore {
    inner: Arc<dyn Store>,
    strip_prefix: String,
    key_prefix: String,
    recorded: Mutex<ChecksumManifest>,
}

impl RecordingStore {
    /// Wraps `inner`, recording files written below `strip_prefix` under `key_prefix` (see the
    /// type's docs).
    pub fn new(inner: Arc<dyn Store>, strip_prefix: &str, key_prefix: &str) -> Self {
        RecordingStore {
            inner,
            strip_prefix: strip_prefix.to_string(),
            key_prefix: key_prefix.to_string(),
            recorded: Mutex::new(ChecksumManifest::new()),
        }
    }

    /// What has been recorded so far; the store's record is emptied.
    pub fn take_manifest(&self) -> ChecksumManifest {
        std::mem::take(&mut *lock(&self.recorded))
    }

    /// A copy of what has been recorded so far.
    pub fn manifest(&self) -> ChecksumManifest {
        lock(&self.recorded).clone()
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// The manifest key of `path`, when it lies below `strip_prefix`.
    fn key(&self, path: &str) -> Option<String> {
        below(&self.strip_prefix, path).map(|rest| join_path(&self.key_prefix, rest))
    }

    /// Whether `path` is `strip_prefix` itself or one of its ancestors.
    fn covers_prefix(&self, path: &str) -> bool {
        path == self.strip_prefix || below(path, &self.strip_prefix).is_some()
    }

    fn record_write(&self, path: &str, data: &[u8]) {
        if let Some(key) = self.key(path) {
            let c = FileChecksum::of(data);
            lock(&self.recorded).insert(key, c);
        }
    }

    /// Removes `key` and every key below it, returning them with their suffix after `key`.
    fn take_tree(
        files: &mut BTreeMap<String, FileChecksum>,
        key: &str,
    ) -> Vec<(String, FileChecksum)> {
        let keys: Vec<String> = files
            .keys()
            .filter(|k| k.as_str() == key || below(key, k).is_some())
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|k| {
                let c = files.remove(&k)?;
                Some((k[key.len()..].to_string(), c))
            })
            .collect()
    }
}

impl crate::StoreLayer for RecordingStore {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }

    /// Not forwarded: a durable [`Store::write_parts`] through this store (so it is recorded), what
    /// [`Store::write_parts_unsynced`] does by default; [`Store::sync_file`] then has nothing to do.
    fn write_parts_unsynced(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        crate::provided::write_parts_unsynced(self, path, parts)
    }

    /// Not forwarded: nothing to do, every write through this store is durable.
    fn sync_file(&self, path: &str) -> Result<()> {
        crate::provided::sync_file(path)
    }

    fn write(&self, path: &str, data: &[u8]) -> Result<()> {
        Store::write_parts(self, path, &[data])
    }

    /// Passes the parts through to the inner store's `write_parts` (no concatenation), and
    /// computes their CRC32C incrementally in file order — on a second thread during the write
    /// from [`PARALLEL_CRC_MIN`] bytes on.
    fn write_parts(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        let Some(key) = self.key(path) else {
            return self.inner.write_parts(path, parts);
        };
        let (written, c) =
            FileChecksum::of_parts_beside(parts, || self.inner.write_parts(path, parts));
        written?;
        lock(&self.recorded).insert(key, c);
        Ok(())
    }

    fn write_if_absent(&self, path: &str, data: &[u8]) -> Result<()> {
        self.inner.write_if_absent(path, data)?;
        self.record_write(path, data);
        Ok(())
    }

    fn delete(&self, path: &str) -> Result<()> {
        self.inner.delete(path)?;
        if let Some(key) = self.key(path) {
            lock(&self.recorded).files.remove(&key);
        }
        Ok(())
    }

    fn delete_prefix(&self, path: &str) -> Result<()> {
        self.inner.delete_prefix(path)?;
        if self.covers_prefix(path) {
            lock(&self.recorded).files.clear();
        } else if let Some(key) = self.key(path) {
            Self::take_tree(&mut lock(&self.recorded).files, &key);
        }
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.inner.rename(from, to)?;
        if self.covers_prefix(from) {
            return Ok(());
        }
        if let Some(from_key) = self.key(from) {
            let mut rec = lock(&self.recorded);
            let moved = Self::take_tree(&mut rec.files, &from_key);
            if let Some(to_key) = self.key(to) {
                for (suffix, c) in moved {
                    rec.files.insert(format!("{to_key}{suffix}"), c);
                }
            }
        }
        Ok(())
    }
}

/// A [`Store`] that checks files against a [`ChecksumManifest`] as they are read, so that a
/// restore gets a `Corrupt` error instead of wrong data. ckpt's own; Orbax has no checksums.
///
/// On `read` of a path below `step_dir` whose key (path relative to `step_dir`) is in the
/// manifest, the data read is checked, size first, then CRC32C; a mismatch is an
/// [`ErrorKind::Corrupt`] error naming the file's location and saying what differs
/// (`truncated: 5 of 10 bytes`, `wrong size: 11 bytes, expected 10`,
/// `wrong crc32c: …, expected …`). `read_range` of such a file reads the *whole* file, checks it
/// and returns the slice: a CRC covers the whole file, so a checked range read costs a full read
/// (fine for ckpt's handlers, which read whole files; use the inner store directly for ranges of
/// huge files when checking is not wanted). Files not in the manifest, and every other call,
/// pass through unchecked. Meant for reading a committed step; writing through it changes
/// nothing in the manifest.
#[derive(Debug)]
pub struct VerifyingStore {
    inner: Arc<dyn Store>,
    step_dir: String,
    manifest: ChecksumManifest,
}

impl VerifyingStore {
    /// Wraps `inner`, checking files below `step_dir` against `manifest` (keys relative to
    /// `step_dir`).
    pub fn new(inner: Arc<dyn Store>, step_dir: &str, manifest: ChecksumManifest) -> Self {
        VerifyingStore {
            inner,
            step_dir: step_dir.to_string(),
            manifest,
        }
    }

    /// Wraps `inner` with the manifest stored in `<step_dir>/_CKPT_CHECKSUMS`; with an empty one
    /// (nothing checked) when the step has none.
    ///
    /// # Errors
    /// As [`ChecksumManifest::read_from`].
    pub fn load(inner: Arc<dyn Store>, step_dir: &str) -> Result<Self> {
        let manifest = ChecksumManifest::read_from(inner.as_ref(), step_dir)?.unwrap_or_default();
        Ok(VerifyingStore::new(inner, step_dir, manifest))
    }

    /// The manifest files are checked against.
    pub fn manifest(&self) -> &ChecksumManifest {
        &self.manifest
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    fn expected(&self, path: &str) -> Option<&FileChecksum> {
        below(&self.step_dir, path).and_then(|key| self.manifest.get(key))
    }

    fn checked(&self, path: &str, data: &[u8], expected: &FileChecksum) -> Result<()> {
        match expected.check(data) {
            FileStatus::Ok => Ok(()),
            status => Err(corrupt(&self.inner.location(path), status)),
        }
    }
}

impl crate::StoreLayer for VerifyingStore {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }

    /// Not forwarded: a durable [`Store::write_parts`] through this store (unchecked, as every write), what
    /// [`Store::write_parts_unsynced`] does by default; [`Store::sync_file`] then has nothing to do.
    fn write_parts_unsynced(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        crate::provided::write_parts_unsynced(self, path, parts)
    }

    /// Not forwarded: nothing to do, every write through this store is durable.
    fn sync_file(&self, path: &str) -> Result<()> {
        crate::provided::sync_file(path)
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        let data = self.inner.read(path)?;
        if let Some(expected) = self.expected(path) {
            self.checked(path, &data, expected)?;
        }
        Ok(data)
    }

    /// A file in the manifest: its size is checked at once (a wrong size is `Corrupt` before
    /// anything is read), its CRC32C computed incrementally, in file order, over the buffers as
    /// they are filled (on a second thread, pipelined with the reading, for reads of
    /// [`PARALLEL_CRC_MIN`] bytes or more), and compared in [`ReadStream::finish`], which first
    /// reads whatever the caller left unread. Other files pass through unchecked.
    fn open_read(&self, path: &str) -> Result<Box<dyn ReadStream + '_>> {
        let inner = self.inner.open_read(path)?;
        let Some(expected) = self.expected(path) else {
            return Ok(inner);
        };
        let location = self.inner.location(path);
        if inner.size() != expected.size {
            return Err(corrupt(
                &location,
                FileStatus::WrongSize {
                    expected: expected.size,
                    actual: inner.size(),
                },
            ));
        }
        Ok(Box::new(VerifyingStream {
            inner,
            expected: *expected,
            crc: 0,
            location,
        }))
    }

    fn read_range(&self, path: &str, range: Range<u64>) -> Result<Vec<u8>> {
        let Some(expected) = self.expected(path) else {
            return self.inner.read_range(path, range);
        };
        if range.start > range.end {
            return Err(Error::invalid_argument(format!(
                "bad byte range {}..{}: start after end",
                range.start, range.end
            ))
            .with_path(self.inner.location(path)));
        }
        let data = self.inner.read(path)?;
        self.checked(path, &data, expected)?;
        let size = data.len() as u64;
        if range.end > size {
            return Err(Error::invalid_argument(format!(
                "byte range {}..{} lies beyond the end of the file ({size} bytes)",
                range.start, range.end
            ))
            .with_path(self.inner.location(path)));
        }
        // Both bounds are <= size, which is a usize: the casts cannot truncate.
        Ok(data[range.start as usize..range.end as usize].to_vec())
    }
}

/// The stream of [`VerifyingStore::open_read`] for a file in the manifest.
struct VerifyingStream<'a> {
    inner: Box<dyn ReadStream + 'a>,
    expected: FileChecksum,
    /// CRC32C of the bytes read so far.
    crc: u32,
    location: String,
}

impl VerifyingStream<'_> {
    /// Fills `bufs` in turn while a second thread computes the CRC of each piece (at most
    /// 4 MiB) as soon as it is filled (inline when no thread can be started).
    fn read_pipelined(&mut self, bufs: &mut [&mut [u8]]) -> Result<()> {
        let crc0 = self.crc;
        let inner = &mut self.inner;
        let pieces: Vec<&mut [u8]> = bufs
            .iter_mut()
            .flat_map(|b| b.chunks_mut(CRC_CHUNK))
            .collect();
        let summed: Result<u32> = std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<&[u8]>(4);
            let summer = std::thread::Builder::new()
                .name("ckpt-crc32c".into())
                .spawn_scoped(s, move || rx.iter().fold(crc0, crc32c::crc32c_append));
            let Ok(summer) = summer else {
                let mut c = crc0;
                for piece in pieces {
                    inner.read_exact(piece)?;
                    c = crc32c::crc32c_append(c, piece);
                }
                return Ok(c);
            };
            for piece in pieces {
                inner.read_exact(piece)?;
                let piece: &[u8] = piece;
                // Fails only if the summing thread is gone, which `join` reports below.
                let _ = tx.send(piece);
            }
            drop(tx);
            summer
                .join()
                .map_err(|_| Error::storage("the checksum thread panicked"))
        });
        self.crc = summed.map_err(|e| {
            if e.path().is_some() {
                e
            } else {
                e.with_path(self.location.clone())
            }
        })?;
        Ok(())
    }
}

impl ReadStream for VerifyingStream<'_> {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn position(&self) -> u64 {
        self.inner.position()
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        self.read_parts(&mut [buf])
    }

    /// Pipelined (see `read_pipelined`) when the buffers hold [`PARALLEL_CRC_MIN`] bytes or
    /// more in all: the CRC of one piece is computed while the next is read.
    fn read_parts(&mut self, bufs: &mut [&mut [u8]]) -> Result<()> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total >= PARALLEL_CRC_MIN {
            return self.read_pipelined(bufs);
        }
        for b in bufs.iter_mut() {
            self.inner.read_exact(b)?;
            self.crc = crc32c::crc32c_append(self.crc, b);
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        let mut rest =
            vec![0u8; CRC_CHUNK.min(self.size().saturating_sub(self.position()) as usize)];
        while self.position() < self.size() {
            let n = rest.len().min((self.size() - self.position()) as usize);
            self.inner.read_exact(&mut rest[..n])?;
            self.crc = crc32c::crc32c_append(self.crc, &rest[..n]);
        }
        let this = *self;
        this.inner.finish()?;
        if this.crc != this.expected.crc32c {
            return Err(corrupt(
                &this.location,
                FileStatus::WrongCrc {
                    expected: this.expected.crc32c,
                    actual: this.crc,
                },
            ));
        }
        Ok(())
    }
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
    fn below_is_strict() {
        assert_eq!(below("a/b", "a/b/c"), Some("c"));
        assert_eq!(below("a/b", "a/b"), None);
        assert_eq!(below("a/b", "a/bc"), None);
        assert_eq!(below("a/b", "a/b/"), None);
        assert_eq!(below("", "x/y"), Some("x/y"));
        assert_eq!(below("", ""), None);
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

    fn memory() -> Arc<dyn Store> {
        Arc::new(crate::OpendalStore::memory().unwrap())
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

    #[test]
    fn recording_write_parts_records_the_file_written() {
        // Small (inline CRC) and above PARALLEL_CRC_MIN (CRC on a second thread).
        for n in [1000, PARALLEL_CRC_MIN + 12345] {
            let inner = memory();
            let rec = RecordingStore::new(Arc::clone(&inner), "w", "item");
            let d = data(n);
            let (a, b) = d.split_at(n / 3);
            rec.write_parts("w/f", &[a, b]).unwrap();
            assert_eq!(inner.read("w/f").unwrap(), d);
            assert_eq!(rec.manifest().get("item/f"), Some(&FileChecksum::of(&d)));
            rec.write("w/g", b"xyz").unwrap();
            assert_eq!(
                rec.manifest().get("item/g"),
                Some(&FileChecksum::of(b"xyz"))
            );
            // Outside strip_prefix: written, not recorded.
            rec.write_parts("other", &[b"q"]).unwrap();
            assert_eq!(rec.manifest().len(), 2);
        }
    }

    /// Reads `path` of `store` in pieces of `piece` bytes (then `finish`), as a handler would.
    fn stream_all(store: &dyn Store, path: &str, piece: usize) -> Result<Vec<u8>> {
        let mut s = store.open_read(path)?;
        let mut out = vec![0u8; s.size() as usize];
        for chunk in out.chunks_mut(piece.max(1)) {
            s.read_exact(chunk)?;
        }
        s.finish()?;
        Ok(out)
    }

    #[test]
    fn verifying_open_read_checks_size_and_crc() {
        for n in [1000, PARALLEL_CRC_MIN + 4321] {
            let inner = memory();
            let d = data(n);
            inner.write("s/f", &d).unwrap();
            let mut m = ChecksumManifest::new();
            m.insert("f", FileChecksum::of(&d));
            let v = VerifyingStore::new(Arc::clone(&inner), "s", m.clone());
            // Whole, in pieces, and partly (finish reads and checks the rest).
            assert_eq!(stream_all(&v, "s/f", n).unwrap(), d);
            assert_eq!(stream_all(&v, "s/f", 7 << 20).unwrap(), d);
            let mut s = v.open_read("s/f").unwrap();
            let mut head = vec![0u8; n / 2];
            s.read_exact(&mut head).unwrap();
            s.finish().unwrap();
            // One flipped bit in the middle: the read succeeds, finish says Corrupt.
            let mut bad = d.clone();
            bad[n / 2 + 1] ^= 0x10;
            inner.write("s/f", &bad).unwrap();
            let e = stream_all(&v, "s/f", n).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
            assert!(e.to_string().contains("wrong crc32c"), "{e}");
            let mut s = v.open_read("s/f").unwrap();
            let mut head = vec![0u8; 10];
            s.read_exact(&mut head).unwrap();
            assert_eq!(s.finish().unwrap_err().kind(), ErrorKind::Corrupt);
            // Truncated: refused at open.
            inner.write("s/f", &d[..n - 1]).unwrap();
            let e = v.open_read("s/f").map(|s| s.size()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupt);
            assert!(e.to_string().contains("truncated"), "{e}");
            // Files not in the manifest pass through unchecked.
            inner.write("s/other", b"anything").unwrap();
            assert_eq!(stream_all(&v, "s/other", 3).unwrap(), b"anything");
        }
    }
}
