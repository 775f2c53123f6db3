//! Where an item's arrays are read from: its OCDBT database or a directory per leaf
//! ([`Source`]), and the chunks of one leaf ([`LeafSource`]).

use super::stream::{stream_decode, stream_decode_run, STREAM_VALUE_BYTES};
use super::zarr::{self, ArrayMeta};
use crate::ocdbt::{self, Database, DbFiles};
use crate::ItemDir;
use ckpt_core::{Error, Result};

/// The database files of an item, read through its [`ItemDir`].
pub(super) struct ItemFiles<'a>(pub(super) &'a ItemDir<'a>);

impl DbFiles for ItemFiles<'_> {
    fn size(&self, path: &str) -> Result<u64> {
        self.0.size_at(path)
    }
    fn read_range(&self, path: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>> {
        self.0.read_range_at(path, range)
    }
    fn read_range_into(&self, path: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.0.read_range_into_at(path, offset, buf)
    }
}

/// Where an item's arrays are read from.
pub(super) enum Source<'a> {
    Ocdbt(Database, ItemFiles<'a>),
    Dirs(&'a ItemDir<'a>),
}

impl Source<'_> {
    pub(super) fn open<'a>(dir: &'a ItemDir<'a>) -> Result<Source<'a>> {
        if dir.exists(ocdbt::MANIFEST_FILE)? {
            let manifest = dir.read(ocdbt::MANIFEST_FILE)?;
            let files = ItemFiles(dir);
            let db = Database::open(&files, &manifest, &dir.location(ocdbt::MANIFEST_FILE))?;
            Ok(Source::Ocdbt(db, files))
        } else {
            Ok(Source::Dirs(dir))
        }
    }

    /// Reads `<param>/<key>`.
    pub(super) fn read(&self, param: &str, key: &str) -> Result<Vec<u8>> {
        let full = format!("{param}/{key}");
        match self {
            Source::Ocdbt(db, files) => db
                .read(files, full.as_bytes())
                .map_err(|e| e.prefixed(&format!("{}: ", files.0.location(ocdbt::MANIFEST_FILE)))),
            Source::Dirs(dir) => dir.read_at(&full),
        }
    }

    /// The stored length of `<param>/<key>` in bytes, without reading it.
    pub(super) fn stored_len(&self, param: &str, key: &str) -> Result<u64> {
        let full = format!("{param}/{key}");
        match self {
            Source::Ocdbt(db, files) => db.get(full.as_bytes()).map(|v| v.len()).ok_or_else(|| {
                Error::not_found(format!(
                    "{}: key {full:?} is not in the OCDBT database",
                    files.0.location(ocdbt::MANIFEST_FILE)
                ))
            }),
            Source::Dirs(dir) => dir.size_at(&full),
        }
    }

    pub(super) fn array_meta(&self, param: &str, zarr3: bool, what: &str) -> Result<ArrayMeta> {
        if zarr3 {
            zarr::parse_zarr_json(&self.read(param, "zarr.json")?, what)
        } else {
            zarr::parse_zarray(&self.read(param, ".zarray")?, what)
        }
    }
}

/// The chunks of one array leaf.
pub(super) struct LeafSource<'s, 'a> {
    pub(super) source: &'s Source<'a>,
    pub(super) param: &'s str,
}

impl zarr::ChunkSource for LeafSource<'_, '_> {
    fn read(&self, key: &str) -> Result<Vec<u8>> {
        self.source.read(self.param, key)
    }

    fn decode_into(&self, key: &str, zstd: bool, out: &mut [u8], what: &str) -> Result<()> {
        if let Source::Ocdbt(db, files) = self.source {
            let full = format!("{}/{key}", self.param);
            if let Some(ocdbt::Value::Indirect {
                file,
                offset,
                length,
            }) = db.get(full.as_bytes())
            {
                if *length > STREAM_VALUE_BYTES {
                    let size = db.file_size(files, file)?;
                    if offset.saturating_add(*length) > size {
                        return Err(Error::corrupt(format!(
                            "OCDBT reference {file}@{offset}+{length} is outside the file ({size} bytes)"
                        )));
                    }
                    let whole_file = *offset == 0 && *length == size;
                    return stream_decode(
                        files, file, *offset, *length, whole_file, zstd, out, what,
                    );
                }
            }
        }
        zarr::decode_plain(&self.read(key)?, zstd, out, what)
    }

    /// The chunks whose values fill one data file of at most [`RUN_FILE_BYTES`] between them,
    /// back to back from its start to its end (as ckpt packs its chunks), make a run read in one
    /// pass in file order: a checking store verifies the file during that pass, where a ranged
    /// read of each value would read the file once to check it and again for the value. Any
    /// other chunk (Orbax's: one value per array in files of up to 2 GiB) is a run of its own,
    /// so chunks of large files still decode in parallel; and when there would be fewer runs
    /// than threads, every chunk is.
    fn runs(&self, keys: &[&str]) -> Vec<Vec<usize>> {
        let singles = || (0..keys.len()).map(|i| vec![i]).collect();
        let Source::Ocdbt(db, files) = self.source else {
            return singles();
        };
        let mut by_file: std::collections::BTreeMap<&str, Vec<(u64, u64, usize)>> =
            std::collections::BTreeMap::new();
        let mut runs = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            match db.get(format!("{}/{key}", self.param).as_bytes()) {
                Some(ocdbt::Value::Indirect {
                    file,
                    offset,
                    length,
                }) => by_file
                    .entry(file.as_str())
                    .or_default()
                    .push((*offset, *length, i)),
                _ => runs.push(vec![i]),
            }
        }
        for (file, mut values) in by_file {
            values.sort_unstable();
            let tiles = |size: u64| {
                let mut at = 0u64;
                for (offset, length, _) in &values {
                    if *offset != at {
                        return false;
                    }
                    at = at.saturating_add(*length);
                }
                at == size
            };
            let whole = values.len() > 1
                && db
                    .file_size(files, file)
                    .is_ok_and(|size| size <= RUN_FILE_BYTES && tiles(size));
            if whole {
                runs.push(values.iter().map(|(_, _, i)| *i).collect());
            } else {
                runs.extend(values.iter().map(|(_, _, i)| vec![*i]));
            }
        }
        // Fewer runs than threads would decode on fewer cores than chunk by chunk.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        if runs.len() < threads.min(keys.len()) {
            return singles();
        }
        runs
    }

    /// A run from [`LeafSource::runs`]: its data file streamed once
    /// ([`ckpt_storage::Store::open_read`]), each value decoded from the stream in file order.
    fn decode_run(&self, run: &mut [(String, &mut [u8])], zstd: bool, what: &str) -> Result<()> {
        let Source::Ocdbt(db, files) = self.source else {
            return zarr::decode_each(self, run, zstd, what);
        };
        let mut file: Option<&str> = None;
        let mut values = Vec::with_capacity(run.len());
        for (key, out) in run.iter_mut() {
            let full = format!("{}/{key}", self.param);
            let Some(ocdbt::Value::Indirect {
                file: f, length, ..
            }) = db.get(full.as_bytes())
            else {
                return zarr::decode_each(self, run, zstd, what);
            };
            if file.is_some_and(|prev| prev != f) {
                return zarr::decode_each(self, run, zstd, what);
            }
            file = Some(f);
            values.push((*length, &mut **out, format!("{what} chunk {key}")));
        }
        match file {
            Some(file) => stream_decode_run(files, file, &mut values, zstd),
            None => Ok(()),
        }
    }
}

/// Largest data file, in bytes (64 MiB), whose chunks [`LeafSource::runs`] decodes in one pass
/// on one thread: ckpt writes files of about [`super::write::DATA_FILE_BYTES`].
const RUN_FILE_BYTES: u64 = 64 << 20;
