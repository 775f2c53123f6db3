//! [`BytesHandler`]: one opaque byte string (ckpt's own format).

use crate::common::{read_file, write_file, wrong_item};
use crate::{CheckpointHandler, ItemDir, RestoredItem, SaveItem};
use ckpt_core::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

/// Writes an item's bytes, unchanged, as the one file `<item dir>/data.bin` (ckpt's own format,
/// type string `ckpt.bytes`; Orbax cannot restore it).
///
/// Saves [`SaveItem::Bytes`]; restores [`RestoredItem::Bytes`]; `metadata()` is
/// `{"size": <bytes>}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BytesHandler;

impl BytesHandler {
    /// The type string, `ckpt.bytes`.
    pub const TYPE_STRING: &'static str = "ckpt.bytes";
    /// The file inside the item directory, `data.bin`.
    pub const FILENAME: &'static str = "data.bin";
}

#[typetag::serde(name = "ckpt.bytes")]
impl CheckpointHandler for BytesHandler {
    /// [`BytesHandler::TYPE_STRING`].
    fn type_string(&self) -> String {
        Self::TYPE_STRING.to_string()
    }

    /// Writes the bytes to `<dir>/data.bin`.
    ///
    /// # Errors
    /// `InvalidArgument` for variants other than `Bytes`; the store's errors naming the file.
    fn save(&self, dir: &ItemDir<'_>, item: &SaveItem<'_>) -> Result<()> {
        match item {
            SaveItem::Bytes(b) => write_file(dir, Self::FILENAME, b, "bytes item file"),
            other => Err(wrong_item("BytesHandler", other, "SaveItem::Bytes")),
        }
    }

    /// Reads `<dir>/data.bin`.
    ///
    /// # Errors
    /// `NotFound` naming the file when it is missing; the store's errors.
    fn restore(&self, dir: &ItemDir<'_>) -> Result<RestoredItem> {
        read_file(dir, Self::FILENAME, "bytes item file").map(RestoredItem::Bytes)
    }

    /// `{"size": <length of data.bin in bytes>}`, from the store's `stat` (the file is not read).
    ///
    /// # Errors
    /// `NotFound` naming the file when it is missing; `Corrupt` when a directory is in its place;
    /// the store's errors.
    fn metadata(&self, dir: &ItemDir<'_>) -> Result<Option<serde_json::Value>> {
        let path = dir.file_path(Self::FILENAME)?;
        let stat = dir.store().stat(&path).map_err(|e| {
            Error::new(e.kind(), "cannot stat bytes item file")
                .with_path(dir.location(Self::FILENAME))
                .with_source(e)
        })?;
        match stat {
            Some(meta) if meta.kind == ckpt_storage::EntryKind::File => {
                Ok(Some(serde_json::json!({ "size": meta.size })))
            }
            Some(_) => Err(
                Error::corrupt("a directory is where the bytes item file should be")
                    .with_path(dir.location(Self::FILENAME)),
            ),
            None => Err(Error::new(ErrorKind::NotFound, "bytes item file not found")
                .with_path(dir.location(Self::FILENAME))),
        }
    }
}
