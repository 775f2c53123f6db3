//! Where an item's arrays are read from: its OCDBT database or a directory per leaf
//! ([`Source`]), and the chunks of one leaf ([`LeafSource`]).

use super::stream::{stream_decode, STREAM_VALUE_BYTES};
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
}
