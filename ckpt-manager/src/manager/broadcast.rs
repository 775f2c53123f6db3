//! Single-host load and broadcast (issue 15; Orbax's `single_host_load_and_broadcast`): while a
//! restore of a multi-process manager with that option runs, the primary alone reads the store,
//! and every other process gets each byte it reads through the job's coordinator instead.
//!
//! [`BroadcastReads`] is a store layer around the root's store. Outside a restore every call
//! goes straight through. During one (between [`BroadcastReads::begin`] and the end of its
//! [`Loading`] guard), each read — `read`, `read_range`, `read_range_into`, `open_read`, `stat`,
//! `list_dir`, `list_recursive` — is named by its request (the operation, the path and the
//! range: an FNV-1a hash under the restore's name, so the order of reads does not matter and
//! handlers may read in parallel). The primary does the read and publishes its outcome under
//! that name: a header (`ok <bytes> <chunks>`, or the error as a [`Report`]) and the bytes in
//! chunks of at most [`MAX_PUBLISHED_LEN`]; the others wait for it (at most
//! `coordination_timeout_secs`) and get the same bytes, or the same error kind with the
//! primary's message. Writes are never broadcast.
//!
//! Every process must restore the same steps and items in the same order (a restore becomes a
//! collective call). Values stay on the coordination service until the job's next run (etcd:
//! the session's keys): meant for small items (metadata, JSON, a small model), not for large
//! arrays — each process reads its own slice of those with `restore_array_slice`.

use crate::coordination::{Coordinator, Report, MAX_PUBLISHED_LEN};
use ckpt_core::{Error, ErrorKind, Result};
use ckpt_storage::{BufferStream, Entry, EntryKind, EntryMeta, ReadStream, Store};
use serde_json::{json, Value};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The store layer of a manager with `single_host_load_and_broadcast` (see the module docs).
#[derive(Debug)]
pub(crate) struct BroadcastReads {
    inner: Arc<dyn Store>,
    coordinator: Arc<dyn Coordinator>,
    primary: bool,
    timeout: Duration,
    /// The name of the restore in progress, if any.
    active: Mutex<Option<String>>,
}

/// A restore in progress on a [`BroadcastReads`]; reads go through the broadcast until it is
/// dropped.
pub(crate) struct Loading<'a> {
    layer: &'a BroadcastReads,
}

impl Drop for Loading<'_> {
    fn drop(&mut self) {
        *self.layer.active.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl BroadcastReads {
    /// The layer over `inner` for a process of the job of `coordinator`.
    pub fn new(
        inner: Arc<dyn Store>,
        coordinator: Arc<dyn Coordinator>,
        timeout: Duration,
    ) -> Self {
        BroadcastReads {
            inner,
            primary: coordinator.is_primary(),
            coordinator,
            timeout,
            active: Mutex::new(None),
        }
    }

    /// Starts the restore named `name` (the same name on every process, fresh per restore).
    pub fn begin(&self, name: String) -> Loading<'_> {
        *self.active.lock().unwrap_or_else(|p| p.into_inner()) = Some(name);
        Loading { layer: self }
    }

    fn active(&self) -> Option<String> {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `read` on the primary, its published outcome elsewhere: the request `request`, under the
    /// active restore `name`.
    fn shared(
        &self,
        name: &str,
        request: &str,
        read: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<Vec<u8>> {
        let key = format!("{name}.{:016x}", fnv1a(request.as_bytes()));
        if self.primary {
            let result = read();
            let header = match &result {
                Ok(bytes) => {
                    let chunks = bytes.len().div_ceil(MAX_PUBLISHED_LEN);
                    format!("ok {} {chunks}", bytes.len()).into_bytes()
                }
                Err(e) => Report::failed(e).encode(),
            };
            self.coordinator.publish(&format!("{key}.0"), &header)?;
            if let Ok(bytes) = &result {
                for (i, chunk) in bytes.chunks(MAX_PUBLISHED_LEN).enumerate() {
                    self.coordinator
                        .publish(&format!("{key}.{}", i + 1), chunk)?;
                }
            }
            return result;
        }
        let header = self
            .coordinator
            .await_published(&format!("{key}.0"), self.timeout)?;
        let text = String::from_utf8_lossy(&header).into_owned();
        let mut words = text.split(' ');
        let (len, chunks) = match (words.next(), words.next(), words.next()) {
            (Some("ok"), Some(len), Some(chunks)) => (
                len.parse::<usize>().map_err(|_| garbled(request, &text))?,
                chunks
                    .parse::<usize>()
                    .map_err(|_| garbled(request, &text))?,
            ),
            _ => {
                return Err(match Report::decode(&header) {
                    Report::Failed { kind, message } => Error::new(
                        kind,
                        format!("the primary's read for this restore failed: {message}"),
                    ),
                    Report::Ok => garbled(request, &text),
                })
            }
        };
        let mut out = Vec::with_capacity(len);
        for i in 1..=chunks {
            out.extend(
                self.coordinator
                    .await_published(&format!("{key}.{i}"), self.timeout)?,
            );
        }
        if out.len() != len {
            return Err(garbled(request, &text));
        }
        Ok(out)
    }
}

fn garbled(request: &str, header: &str) -> Error {
    Error::new(
        ErrorKind::Coordination,
        format!(
            "the primary's broadcast of {:?} is unreadable (header {header:?})",
            request.replace('\0', " ")
        ),
    )
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn kind_name(k: EntryKind) -> &'static str {
    match k {
        EntryKind::File => "file",
        EntryKind::Dir => "dir",
        EntryKind::Symlink => "symlink",
    }
}

fn kind_of(s: &str) -> Option<EntryKind> {
    match s {
        "file" => Some(EntryKind::File),
        "dir" => Some(EntryKind::Dir),
        "symlink" => Some(EntryKind::Symlink),
        _ => None,
    }
}

fn json_bytes(v: Value) -> Result<Vec<u8>> {
    serde_json::to_vec(&v).map_err(|e| {
        Error::new(ErrorKind::Coordination, "cannot encode a broadcast listing").with_source(e)
    })
}

fn from_json(bytes: &[u8], what: &str) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::new(
            ErrorKind::Coordination,
            format!("the primary's broadcast {what} is unreadable"),
        )
        .with_source(e)
    })
}

fn bad(what: &str) -> Error {
    Error::new(
        ErrorKind::Coordination,
        format!("the primary's broadcast {what} is unreadable"),
    )
}

impl ckpt_storage::StoreLayer for BroadcastReads {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        match self.active() {
            None => self.inner.read(path),
            Some(name) => self.shared(&name, &format!("read\0{path}"), || self.inner.read(path)),
        }
    }

    fn open_read(&self, path: &str) -> Result<Box<dyn ReadStream + '_>> {
        match self.active() {
            None => self.inner.open_read(path),
            Some(name) => {
                let bytes =
                    self.shared(&name, &format!("read\0{path}"), || self.inner.read(path))?;
                Ok(Box::new(BufferStream::new(
                    bytes,
                    self.inner.location(path),
                )))
            }
        }
    }

    fn read_range(&self, path: &str, range: Range<u64>) -> Result<Vec<u8>> {
        match self.active() {
            None => self.inner.read_range(path, range),
            Some(name) => {
                let request = format!("range\0{path}\0{}\0{}", range.start, range.end);
                self.shared(&name, &request, || {
                    self.inner.read_range(path, range.clone())
                })
            }
        }
    }

    fn read_range_into(&self, path: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        let Some(name) = self.active() else {
            return self.inner.read_range_into(path, offset, buf);
        };
        let end = offset + buf.len() as u64;
        let request = format!("range\0{path}\0{offset}\0{end}");
        let bytes = self.shared(&name, &request, || self.inner.read_range(path, offset..end))?;
        if bytes.len() != buf.len() {
            return Err(bad("range"));
        }
        buf.copy_from_slice(&bytes);
        Ok(())
    }

    fn stat(&self, path: &str) -> Result<Option<EntryMeta>> {
        let Some(name) = self.active() else {
            return self.inner.stat(path);
        };
        let bytes = self.shared(&name, &format!("stat\0{path}"), || {
            let v = match self.inner.stat(path)? {
                None => Value::Null,
                Some(m) => json!({
                    "kind": kind_name(m.kind),
                    "size": m.size,
                    "modified": m.modified.and_then(|t| t.timestamp_nanos_opt()),
                }),
            };
            json_bytes(v)
        })?;
        let v = from_json(&bytes, "stat")?;
        if v.is_null() {
            return Ok(None);
        }
        Ok(Some(EntryMeta {
            kind: v["kind"]
                .as_str()
                .and_then(kind_of)
                .ok_or_else(|| bad("stat"))?,
            size: v["size"].as_u64().ok_or_else(|| bad("stat"))?,
            modified: v["modified"]
                .as_i64()
                .map(chrono::DateTime::from_timestamp_nanos),
        }))
    }

    fn list_dir(&self, path: &str) -> Result<Vec<Entry>> {
        let Some(name) = self.active() else {
            return self.inner.list_dir(path);
        };
        let bytes = self.shared(&name, &format!("list\0{path}"), || {
            let entries: Vec<Value> = self
                .inner
                .list_dir(path)?
                .into_iter()
                .map(|e| json!([e.name, kind_name(e.kind)]))
                .collect();
            json_bytes(Value::Array(entries))
        })?;
        let v = from_json(&bytes, "listing")?;
        v.as_array()
            .ok_or_else(|| bad("listing"))?
            .iter()
            .map(|e| {
                let entry = |e: &Value| -> Option<Entry> {
                    Some(Entry {
                        name: e.get(0)?.as_str()?.to_string(),
                        kind: kind_of(e.get(1)?.as_str()?)?,
                    })
                };
                entry(e).ok_or_else(|| bad("listing"))
            })
            .collect()
    }

    fn list_recursive(&self, path: &str) -> Result<Vec<String>> {
        let Some(name) = self.active() else {
            return self.inner.list_recursive(path);
        };
        let bytes = self.shared(&name, &format!("rlist\0{path}"), || {
            json_bytes(json!(self.inner.list_recursive(path)?))
        })?;
        serde_json::from_value(from_json(&bytes, "listing")?).map_err(|_| bad("listing"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordination::SingleProcess;

    #[test]
    fn the_primary_reads_through_and_publishes() {
        let store = ckpt_storage::open("memory://").unwrap();
        store.write("a/b", b"hello").unwrap();
        let c: Arc<dyn Coordinator> = Arc::new(SingleProcess::new());
        let layer = BroadcastReads::new(Arc::clone(&store), c, Duration::from_secs(1));
        let _loading = layer.begin("t.load.1".into());
        assert_eq!(Store::read(&layer, "a/b").unwrap(), b"hello");
        assert_eq!(Store::read_range(&layer, "a/b", 1..3).unwrap(), b"el");
        assert_eq!(Store::stat(&layer, "a/b").unwrap().unwrap().size, 5);
        assert_eq!(Store::list_dir(&layer, "a").unwrap().len(), 1);
        let e = Store::read(&layer, "missing").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }
}
