//! The [`Store`] calls of [`OpendalStore`], each a few opendal operator calls (see the module
//! documentation of `opendal_store` for the choices on object stores).

use super::OpendalStore;
use crate::path::{not_root, validate_path};
use crate::stream::IoStream;
use crate::{Capabilities, Entry, EntryKind, EntryMeta, ReadStream, Store};
use chrono::{DateTime, Utc};
use ckpt_core::{Error, ErrorKind, Result};
use opendal::options::{DeleteOptions, ListOptions, ReadOptions, WriteOptions};
use std::ops::Range;

fn to_utc(t: std::time::SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(t)
}

impl Store for OpendalStore {
    fn capabilities(&self) -> Capabilities {
        self.backend.capabilities()
    }

    fn location(&self, path: &str) -> String {
        self.backend.location(path)
    }

    /// Object stores: `data` of [`crate::UploadOptions::multipart_threshold`] bytes or more is
    /// a concurrent multipart upload, anything smaller one PUT.
    fn write(&self, path: &str, data: &[u8]) -> Result<()> {
        self.write_parts(path, &[data])
    }

    /// Each part copied once into opendal's buffer (object stores: a multipart upload from
    /// [`crate::UploadOptions::multipart_threshold`] bytes on, as `write`).
    fn write_parts(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        validate_path(path)?;
        not_root(path, "write")?;
        #[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
        if let Some(config) = self.backend.object() {
            let up = config.upload();
            let total: usize = parts.iter().map(|p| p.len()).sum();
            if total >= up.multipart_threshold {
                return self.write_multipart(path, parts, up);
            }
        }
        let buf: opendal::Buffer = parts
            .iter()
            .flat_map(|p| opendal::Buffer::from(p.to_vec()))
            .collect();
        self.op()
            .write_options(path, buf, self.write_options())
            .map_err(|e| self.err(e, "write", path))?;
        Ok(())
    }

    /// As [`Store::write_parts`]: memory has nothing to sync, and an object store's write is
    /// durable when it returns.
    fn write_parts_unsynced(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        validate_path(path)?;
        not_root(path, "write")?;
        self.write_parts(path, parts)
    }

    /// Nothing to do (every write is durable, or there is no durability, when it returns).
    fn sync_file(&self, path: &str) -> Result<()> {
        validate_path(path)
    }

    /// A conditional create (`If-None-Match: *` on S3) where the store has one; on an object
    /// store without it, a check then a write (racy: [`Capabilities::write_if_absent`] is false
    /// there). Always one PUT, whatever the size.
    fn write_if_absent(&self, path: &str, data: &[u8]) -> Result<()> {
        validate_path(path)?;
        not_root(path, "write_if_absent")?;
        if !self.capabilities().write_if_absent {
            if self.stat(path)?.is_some() {
                return Err(Error::new(ErrorKind::AlreadyExists, "the file exists")
                    .with_path(self.location(path)));
            }
            return self
                .op()
                .write_options(path, data.to_vec(), self.write_options())
                .map(|_| ())
                .map_err(|e| self.err(e, "write", path));
        }
        let opts = WriteOptions {
            if_not_exists: true,
            ..self.write_options()
        };
        self.op()
            .write_options(path, data.to_vec(), opts)
            .map_err(|e| self.err(e, "conditional write", path))?;
        Ok(())
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        validate_path(path)?;
        not_root(path, "read")?;
        match self.op().read(path) {
            Ok(buf) => Ok(buf.to_vec()),
            Err(e) if e.kind() == opendal::ErrorKind::IsADirectory => {
                Err(Error::not_found("no file: the path is a directory")
                    .with_path(self.location(path))
                    .with_source(e))
            }
            Err(e) => Err(self.err(e, "read", path)),
        }
    }

    /// One `stat` (for the size), then one ranged read.
    fn read_range(&self, path: &str, range: Range<u64>) -> Result<Vec<u8>> {
        validate_path(path)?;
        not_root(path, "read_range")?;
        if range.start > range.end {
            return Err(Error::invalid_argument(format!(
                "bad byte range {}..{}: start after end",
                range.start, range.end
            ))
            .with_path(self.location(path)));
        }
        let op = self.op();
        let meta = op.stat(path).map_err(|e| self.err(e, "stat", path))?;
        if meta.is_dir() {
            return Err(
                Error::not_found("no file: the path is a directory").with_path(self.location(path))
            );
        }
        let size = meta.content_length();
        if range.end > size {
            return Err(Error::invalid_argument(format!(
                "byte range {}..{} lies beyond the end of the file ({size} bytes)",
                range.start, range.end
            ))
            .with_path(self.location(path)));
        }
        if range.start == range.end {
            return Ok(Vec::new());
        }
        let len = range.end - range.start;
        let opts = ReadOptions {
            range: range.into(),
            ..Default::default()
        };
        let buf = op
            .read_options(path, opts)
            .map_err(|e| self.err(e, "ranged read", path))?;
        if buf.len() as u64 != len {
            return Err(Error::storage(format!(
                "ranged read returned {} bytes where {len} were asked for",
                buf.len()
            ))
            .with_path(self.location(path)));
        }
        Ok(buf.to_vec())
    }

    /// One read of the whole object (one GET: ranged GETs are far slower on some servers), then
    /// copied out of opendal's buffer once.
    fn open_read(&self, path: &str) -> Result<Box<dyn ReadStream + '_>> {
        validate_path(path)?;
        not_root(path, "read")?;
        let buf = self.op().read(path).map_err(|e| {
            if e.kind() == opendal::ErrorKind::IsADirectory {
                Error::not_found("no file: the path is a directory")
                    .with_path(self.location(path))
                    .with_source(e)
            } else {
                self.err(e, "read", path)
            }
        })?;
        Ok(Box::new(IoStream {
            size: buf.len() as u64,
            inner: buf,
            pos: 0,
            location: self.location(path),
        }))
    }

    /// The root is always a directory; a path holding an object is a file; any other path is
    /// a directory when something is stored below it (one listing with a page of one key).
    fn stat(&self, path: &str) -> Result<Option<EntryMeta>> {
        validate_path(path)?;
        if path.is_empty() {
            return Ok(Some(EntryMeta {
                kind: EntryKind::Dir,
                size: 0,
                modified: None,
            }));
        }
        let op = self.op();
        match op.stat(path) {
            Ok(m) => {
                let modified = m.last_modified().map(|t| to_utc(t.into()));
                if m.is_dir() {
                    return Ok(Some(EntryMeta {
                        kind: EntryKind::Dir,
                        size: 0,
                        modified,
                    }));
                }
                return Ok(Some(EntryMeta {
                    kind: EntryKind::File,
                    size: m.content_length(),
                    modified,
                }));
            }
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => {}
            Err(e) => return Err(self.err(e, "stat", path)),
        }
        // No object at `path`: a directory exists where something is stored below it.
        // One listing request with a page of one key.
        let prefix = format!("{path}/");
        let opts = ListOptions {
            limit: Some(1),
            ..Default::default()
        };
        let mut lister = op
            .lister_options(&prefix, opts)
            .map_err(|e| self.err(e, "list", path))?;
        match lister.next() {
            Some(Ok(_)) => Ok(Some(EntryMeta {
                kind: EntryKind::Dir,
                size: 0,
                modified: None,
            })),
            Some(Err(e)) => Err(self.err(e, "list", path)),
            None => Ok(None),
        }
    }

    /// One paginated listing (every page is fetched) of `path/` with delimiter `/`: the objects
    /// are the files, the common prefixes the directories.
    fn list_dir(&self, path: &str) -> Result<Vec<Entry>> {
        validate_path(path)?;
        let prefix = dir_prefix(path);
        let opts = ListOptions {
            limit: self.backend.list_page_size(),
            ..Default::default()
        };
        let listed = self
            .op()
            .list_options(if path.is_empty() { "/" } else { &prefix }, opts)
            .map_err(|e| self.err(e, "list", path))?;
        let mut out = Vec::with_capacity(listed.len());
        for entry in listed {
            let rel = entry.path().trim_start_matches('/');
            let Some(rest) = rel.strip_prefix(prefix.as_str()) else {
                continue;
            };
            let (name, is_dir) = match rest.strip_suffix('/') {
                Some(name) => (name, true),
                None => (rest, false),
            };
            // Skip the listed directory itself and anything deeper than one level.
            if name.is_empty() || name.contains('/') {
                continue;
            }
            let kind = if is_dir || entry.metadata().mode() == opendal::EntryMode::DIR {
                EntryKind::Dir
            } else {
                EntryKind::File
            };
            out.push(Entry {
                name: name.to_string(),
                kind,
            });
        }
        out.sort_by(|a, b| {
            a.name
                .cmp(&b.name)
                .then((a.kind as u8).cmp(&(b.kind as u8)))
        });
        out.dedup();
        Ok(out)
    }

    /// One listing of `path/` without delimiter, every page fetched (S3 `ListObjectsV2` pages
    /// of [`crate::S3Config::list_page_size`] keys, 1,000 by default).
    fn list_recursive(&self, path: &str) -> Result<Vec<String>> {
        validate_path(path)?;
        let prefix = dir_prefix(path);
        let opts = ListOptions {
            limit: self.backend.list_page_size(),
            recursive: true,
            ..Default::default()
        };
        let listed = self
            .op()
            .list_options(if path.is_empty() { "/" } else { &prefix }, opts)
            .map_err(|e| self.err(e, "list", path))?;
        let mut out = Vec::with_capacity(listed.len());
        for entry in listed {
            let rel = entry.path().trim_start_matches('/');
            let Some(rest) = rel.strip_prefix(prefix.as_str()) else {
                continue;
            };
            // Directory markers (`a/`) and the listed directory itself are not files.
            if rest.is_empty()
                || rest.ends_with('/')
                || entry.metadata().mode() == opendal::EntryMode::DIR
            {
                continue;
            }
            out.push(rest.to_string());
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// A no-op: directories do not exist on their own here.
    fn create_dir(&self, path: &str) -> Result<()> {
        validate_path(path)
    }

    fn delete(&self, path: &str) -> Result<()> {
        validate_path(path)?;
        not_root(path, "delete")?;
        self.op()
            .delete(path)
            .map_err(|e| self.err(e, "delete", path))
    }

    /// opendal's recursive delete of `path/` (batched), then of an object at `path` itself.
    fn delete_prefix(&self, path: &str) -> Result<()> {
        validate_path(path)?;
        if path.is_empty() {
            return Err(
                Error::invalid_argument("refusing to delete the whole store root")
                    .with_path(self.location(path)),
            );
        }
        let op = self.op();
        let opts = DeleteOptions {
            recursive: true,
            ..Default::default()
        };
        op.delete_options(&format!("{path}/"), opts)
            .map_err(|e| self.err(e, "recursive delete", path))?;
        op.delete(path).map_err(|e| self.err(e, "delete", path))
    }

    /// `Unsupported` (after the paths are checked): neither memory nor object stores rename.
    fn rename(&self, from: &str, to: &str) -> Result<()> {
        validate_path(from)?;
        validate_path(to)?;
        not_root(from, "rename")?;
        not_root(to, "rename")?;
        Err(
            Error::new(ErrorKind::Unsupported, "this store cannot rename")
                .with_path(self.location(from)),
        )
    }

    /// A no-op: nothing to fsync.
    fn sync_dir(&self, path: &str) -> Result<()> {
        validate_path(path)
    }
}

/// The object-key prefix of the entries below directory `path`: `"{path}/"`, or `""` for the
/// root.
fn dir_prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    }
}
