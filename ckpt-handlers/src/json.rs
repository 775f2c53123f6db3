//! [`JsonHandler`]: Orbax `JsonCheckpointHandler`'s format (spec §2.1).

use crate::common::{read_file, write_file, wrong_item};
use crate::{CheckpointHandler, ItemDir, RestoredItem, SaveItem, ORBAX_JSON_HANDLER};
use ckpt_core::{pyjson, Result};
use serde::{Deserialize, Serialize};

/// Writes an item as one JSON file `<item dir>/<filename>`, as Orbax's `JsonCheckpointHandler`
/// does (spec §2.1), and records Orbax's type string ([`ORBAX_JSON_HANDLER`]), so Orbax restores
/// ckpt's JSON items and ckpt restores Orbax's.
///
/// The file holds exactly what Python's `json.dumps(obj)` writes (see [`ckpt_core::pyjson`]), e.g.
/// `{"x": 2}`, with no trailing newline. One deviation, from `ckpt_core::pyjson`: a non-finite
/// float inside a `SaveItem::Json` value is written as `null` (Python writes `NaN`); files holding
/// `NaN`/`Infinity` are still read, those values becoming `null`. A value nested deeper than
/// [`pyjson::MAX_NESTING_DEPTH`] levels of arrays and objects is refused at save
/// (`InvalidArgument`): the reader could not parse it back.
///
/// Saves [`SaveItem::Json`] and [`SaveItem::JsonValue`]; restores [`RestoredItem::Json`].
/// Serialized (typetag) as `{"type": "<ORBAX_JSON_HANDLER>", "filename": "metadata"}`; a missing
/// `filename` defaults to `"metadata"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonHandler {
    /// Name of the JSON file inside the item directory: `metadata` by default (Orbax's default),
    /// `metrics` for the manager's metrics item (`<step>/metrics/metrics`, spec §1.7).
    #[serde(default = "default_filename")]
    pub filename: String,
}

fn default_filename() -> String {
    JsonHandler::DEFAULT_FILENAME.to_string()
}

impl Default for JsonHandler {
    fn default() -> Self {
        JsonHandler {
            filename: default_filename(),
        }
    }
}

impl JsonHandler {
    /// Orbax's default file name, `metadata`.
    pub const DEFAULT_FILENAME: &'static str = "metadata";

    /// A handler writing `<item dir>/<filename>` (Orbax `JsonCheckpointHandler(filename=...)`).
    /// The name is checked when used: a name that is not one path component makes `save` and
    /// `restore` fail with `InvalidArgument`.
    pub fn with_filename(filename: impl Into<String>) -> Self {
        JsonHandler {
            filename: filename.into(),
        }
    }
}

#[typetag::serde(
    name = "orbax.checkpoint._src.handlers.json_checkpoint_handler.JsonCheckpointHandler"
)]
impl CheckpointHandler for JsonHandler {
    /// [`ORBAX_JSON_HANDLER`].
    fn type_string(&self) -> String {
        ORBAX_JSON_HANDLER.to_string()
    }

    /// Writes `json.dumps(item)` to `<dir>/<filename>`, replacing any file there.
    ///
    /// # Errors
    /// `InvalidArgument` for variants other than `Json`/`JsonValue`, for a value that cannot be
    /// JSON (e.g. a map with non-string keys), for a value nested deeper than
    /// [`pyjson::MAX_NESTING_DEPTH`] levels of arrays and objects (which `restore` could not
    /// parse; nothing is written), and for a bad `filename`; the store's errors (`Storage`, ...)
    /// naming the file.
    fn save(&self, dir: &ItemDir<'_>, item: &SaveItem<'_>) -> Result<()> {
        let bytes = match item {
            SaveItem::Json(v) => pyjson::to_vec(*v),
            SaveItem::JsonValue(v) => pyjson::to_vec(v.as_ref()),
            other => {
                return Err(wrong_item(
                    "JsonHandler",
                    other,
                    "SaveItem::Json or SaveItem::JsonValue",
                ))
            }
        };
        let bytes = bytes.map_err(|e| e.with_path(dir.location(&self.filename)))?;
        // What `restore` cannot parse is never written (issue 11, item 4).
        pyjson::check_nesting_depth(
            "the value",
            pyjson::nesting_depth(&bytes),
            pyjson::MAX_NESTING_DEPTH,
        )
        .map_err(|e| e.with_path(dir.location(&self.filename)))?;
        write_file(dir, &self.filename, &bytes, "JSON item file")
    }

    /// Reads and parses `<dir>/<filename>` (leniently: `NaN`/`Infinity` become `null`).
    ///
    /// # Errors
    /// `NotFound` naming the file when it is missing (Orbax: `FileNotFoundError`); `Corrupt`
    /// naming it when it is not JSON; `InvalidArgument` for a bad `filename`; the store's errors.
    fn restore(&self, dir: &ItemDir<'_>) -> Result<RestoredItem> {
        let bytes = read_file(dir, &self.filename, "JSON item file")?;
        let value =
            pyjson::from_slice(&bytes).map_err(|e| e.with_path(dir.location(&self.filename)))?;
        Ok(RestoredItem::Json(value))
    }

    /// Always `Ok(None)`, as Orbax's `JsonCheckpointHandler.metadata()` (spec §2.1).
    fn metadata(&self, _dir: &ItemDir<'_>) -> Result<Option<serde_json::Value>> {
        Ok(None)
    }
}
