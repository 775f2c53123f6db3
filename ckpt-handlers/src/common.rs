//! Helpers shared by the built-in handlers.

use crate::{ItemDir, SaveItem};
use ckpt_core::{Error, ErrorKind, Result};

/// Reads file `name` of `dir`; errors keep the store's kind and name the file's full location.
/// `what` says what the file is ("JSON item file").
pub(crate) fn read_file(dir: &ItemDir<'_>, name: &str, what: &str) -> Result<Vec<u8>> {
    dir.read(name).map_err(|e| read_error(dir, name, what, e))
}

/// Writes file `name` of `dir`; errors keep the store's kind and name the file's full location.
pub(crate) fn write_file(dir: &ItemDir<'_>, name: &str, data: &[u8], what: &str) -> Result<()> {
    dir.write(name, data).map_err(|e| {
        Error::new(e.kind(), format!("cannot write {what}"))
            .with_path(dir.location(name))
            .with_source(e)
    })
}

/// Writes file `name` of `dir` from `parts` (no concatenation); errors as [`write_file`].
pub(crate) fn write_file_parts(
    dir: &ItemDir<'_>,
    name: &str,
    parts: &[&[u8]],
    what: &str,
) -> Result<()> {
    dir.write_parts(name, parts).map_err(|e| {
        Error::new(e.kind(), format!("cannot write {what}"))
            .with_path(dir.location(name))
            .with_source(e)
    })
}

/// Wraps an error of opening or reading file `name` of `dir` as [`read_file`] does.
pub(crate) fn read_error(dir: &ItemDir<'_>, name: &str, what: &str, e: Error) -> Error {
    let msg = match e.kind() {
        ErrorKind::NotFound => format!("{what} not found"),
        _ => format!("cannot read {what}"),
    };
    Error::new(e.kind(), msg)
        .with_path(dir.location(name))
        .with_source(e)
}

/// The name of a [`SaveItem`] variant, for messages.
pub(crate) fn variant_name(item: &SaveItem<'_>) -> &'static str {
    match item {
        SaveItem::Json(_) => "SaveItem::Json",
        SaveItem::JsonValue(_) => "SaveItem::JsonValue",
        SaveItem::Tensors(_) => "SaveItem::Tensors",
        SaveItem::Bytes(_) => "SaveItem::Bytes",
        SaveItem::PyTree(_) => "SaveItem::PyTree",
        SaveItem::PyTreeShard(..) => "SaveItem::PyTreeShard",
        SaveItem::Custom(_) => "SaveItem::Custom",
    }
}

/// `InvalidArgument`: `handler` was given an item variant it does not write.
pub(crate) fn wrong_item(handler: &str, item: &SaveItem<'_>, expected: &str) -> Error {
    Error::invalid_argument(format!(
        "{handler} cannot save {}; it saves {expected}",
        variant_name(item)
    ))
}
