//! Orbax's step metadata (`_CHECKPOINT_METADATA`) and root metadata (`_ROOT_METADATA`).

use crate::{pyjson, Error, Metrics, Result};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The `item_handlers` field of step metadata: which handler wrote each item (spec §1.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemHandlers {
    /// `{item name: handler type string}`, written for composite saves (ckpt always writes this).
    Map(BTreeMap<String, String>),
    /// One handler type string, written by Orbax's non-composite checkpointers.
    Single(String),
}

/// Step metadata, the file `<step dir>/_CHECKPOINT_METADATA`, as Orbax
/// `StepMetadata` (spec §1.5): written with keys in Orbax's order as Python's `json.dumps`
/// writes them, read with Orbax's validation rules.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepMetadata {
    /// Handler type string per item; `None` until the items are written.
    pub item_handlers: Option<ItemHandlers>,
    /// Always `{}` when written by a manager; metrics live in the `metrics` item (spec §1.7).
    pub metrics: Metrics,
    /// Always `{}` in practice (spec §1.5).
    pub performance_metrics: Metrics,
    /// Nanoseconds since the Unix epoch when the step's tmp directory was created.
    pub init_timestamp_nsecs: Option<i64>,
    /// Nanoseconds since the Unix epoch when the step was committed; `None` until then.
    pub commit_timestamp_nsecs: Option<i64>,
    /// The `custom_metadata` given to `save`, or `{}`; also receives unknown top-level keys.
    pub custom_metadata: Metrics,
}

/// Root metadata, the file `<root>/metadata/_ROOT_METADATA` (spec §1.6).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RootMetadata {
    /// Reserved by Orbax; always `{}` in what it writes.
    pub internal_metadata: Metrics,
    /// The user's metadata given when the root was first opened for writing.
    pub custom_metadata: Metrics,
}

const STEP_KEYS: [&str; 6] = [
    "item_handlers",
    "metrics",
    "performance_metrics",
    "init_timestamp_nsecs",
    "commit_timestamp_nsecs",
    "custom_metadata",
];

impl StepMetadata {
    /// Metadata of a step whose tmp directory was just created at `init`.
    pub fn started_at(init: DateTime<Utc>) -> Self {
        StepMetadata {
            init_timestamp_nsecs: nanos(init),
            ..Default::default()
        }
    }

    /// The commit time, from `commit_timestamp_nsecs`, if present.
    pub fn commit_time(&self) -> Option<DateTime<Utc>> {
        self.commit_timestamp_nsecs
            .map(DateTime::from_timestamp_nanos)
    }

    /// The item names and handler type strings, as a map; a [`ItemHandlers::Single`] string is
    /// reported under the item name `default`.
    pub fn item_handler_map(&self) -> BTreeMap<String, String> {
        match &self.item_handlers {
            None => BTreeMap::new(),
            Some(ItemHandlers::Map(m)) => m.clone(),
            Some(ItemHandlers::Single(s)) => {
                BTreeMap::from([(crate::DEFAULT_ITEM_NAME.to_string(), s.clone())])
            }
        }
    }

    /// The metadata as a JSON value with Orbax's key order.
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "item_handlers".into(),
            match &self.item_handlers {
                None => Value::Null,
                Some(ItemHandlers::Single(s)) => Value::String(s.clone()),
                Some(ItemHandlers::Map(h)) => Value::Object(
                    h.iter()
                        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                        .collect(),
                ),
            },
        );
        m.insert("metrics".into(), Value::Object(self.metrics.clone()));
        m.insert(
            "performance_metrics".into(),
            Value::Object(self.performance_metrics.clone()),
        );
        m.insert(
            "init_timestamp_nsecs".into(),
            self.init_timestamp_nsecs.map_or(Value::Null, Value::from),
        );
        m.insert(
            "commit_timestamp_nsecs".into(),
            self.commit_timestamp_nsecs.map_or(Value::Null, Value::from),
        );
        m.insert(
            "custom_metadata".into(),
            Value::Object(self.custom_metadata.clone()),
        );
        Value::Object(m)
    }

    /// The file's bytes, exactly as Orbax writes them (one line, no trailing newline).
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidArgument`] if a custom metadata value cannot be written.
    pub fn to_json_bytes(&self) -> Result<Vec<u8>> {
        pyjson::to_vec(&self.to_value())
    }

    /// Reads the file's bytes with Orbax's rules: every key optional, null means default, unknown
    /// top-level keys moved into `custom_metadata` (an error if that is already non-empty).
    ///
    /// # Errors
    /// [`crate::ErrorKind::Corrupt`] when the bytes are not JSON, not an object, or a field has the
    /// wrong type (the message names the field).
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self> {
        Self::from_value(pyjson::from_slice(bytes)?)
    }

    /// As [`StepMetadata::from_json_bytes`], from a parsed value.
    ///
    /// # Errors
    /// As [`StepMetadata::from_json_bytes`].
    pub fn from_value(value: Value) -> Result<Self> {
        let Value::Object(mut obj) = value else {
            return Err(Error::corrupt("step metadata is not a JSON object"));
        };
        let item_handlers = match obj.shift_remove("item_handlers") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(ItemHandlers::Single(s)),
            Some(Value::Object(m)) => {
                let mut out = BTreeMap::new();
                for (k, v) in m {
                    match v {
                        Value::String(s) => {
                            out.insert(k, s);
                        }
                        other => {
                            return Err(Error::corrupt(format!(
                                "step metadata item_handlers[{k:?}] must be a string, got {}",
                                type_name(&other)
                            )))
                        }
                    }
                }
                Some(ItemHandlers::Map(out))
            }
            Some(other) => {
                return Err(Error::corrupt(format!(
                    "step metadata item_handlers must be an object or a string, got {}",
                    type_name(&other)
                )))
            }
        };
        let metrics = take_object(&mut obj, "metrics", "step metadata")?;
        let performance_metrics = take_object(&mut obj, "performance_metrics", "step metadata")?;
        let init_timestamp_nsecs = take_int(&mut obj, "init_timestamp_nsecs")?;
        let commit_timestamp_nsecs = take_int(&mut obj, "commit_timestamp_nsecs")?;
        let custom_metadata = take_object(&mut obj, "custom_metadata", "step metadata")?;
        let custom_metadata = merge_unknown(custom_metadata, obj, "step metadata")?;
        debug_assert!(STEP_KEYS.len() == 6);
        Ok(StepMetadata {
            item_handlers,
            metrics,
            performance_metrics,
            init_timestamp_nsecs,
            commit_timestamp_nsecs,
            custom_metadata,
        })
    }
}

impl RootMetadata {
    /// Root metadata holding the user's `custom_metadata`.
    pub fn with_custom(custom_metadata: Metrics) -> Self {
        RootMetadata {
            internal_metadata: Map::new(),
            custom_metadata,
        }
    }

    /// The file's bytes, as Orbax writes them: `{"internal_metadata": {}, "custom_metadata": {...}}`.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidArgument`] if a value cannot be written.
    pub fn to_json_bytes(&self) -> Result<Vec<u8>> {
        let mut m = Map::new();
        m.insert(
            "internal_metadata".into(),
            Value::Object(self.internal_metadata.clone()),
        );
        m.insert(
            "custom_metadata".into(),
            Value::Object(self.custom_metadata.clone()),
        );
        pyjson::to_vec(&Value::Object(m))
    }

    /// Reads `_ROOT_METADATA` (or the legacy `metadata/metadata`, a bare dict whose keys all land
    /// in `custom_metadata`) with the rules of [`StepMetadata::from_json_bytes`].
    ///
    /// # Errors
    /// [`crate::ErrorKind::Corrupt`] when the bytes are not a JSON object or a field has the wrong type.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self> {
        let Value::Object(mut obj) = pyjson::from_slice(bytes)? else {
            return Err(Error::corrupt("root metadata is not a JSON object"));
        };
        let internal_metadata = take_object(&mut obj, "internal_metadata", "root metadata")?;
        let custom_metadata = take_object(&mut obj, "custom_metadata", "root metadata")?;
        let custom_metadata = merge_unknown(custom_metadata, obj, "root metadata")?;
        Ok(RootMetadata {
            internal_metadata,
            custom_metadata,
        })
    }
}

fn nanos(t: DateTime<Utc>) -> Option<i64> {
    t.timestamp_nanos_opt()
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn take_object(obj: &mut Map<String, Value>, key: &str, what: &str) -> Result<Metrics> {
    match obj.shift_remove(key) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(other) => Err(Error::corrupt(format!(
            "{what} field {key} must be an object, got {}",
            type_name(&other)
        ))),
    }
}

fn take_int(obj: &mut Map<String, Value>, key: &str) -> Result<Option<i64>> {
    match obj.shift_remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64()),
        Some(other) => Err(Error::corrupt(format!(
            "step metadata field {key} must be an integer (nanoseconds), got {other}"
        ))),
    }
}

fn merge_unknown(custom: Metrics, unknown: Map<String, Value>, what: &str) -> Result<Metrics> {
    if unknown.is_empty() {
        return Ok(custom);
    }
    if !custom.is_empty() {
        let keys: Vec<&String> = unknown.keys().collect();
        return Err(Error::corrupt(format!(
            "{what} has unknown keys {keys:?} and a non-empty custom_metadata"
        )));
    }
    Ok(unknown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    const COMPOSITE: &str = r#"{"item_handlers": {"meta": "orbax.checkpoint._src.handlers.json_checkpoint_handler.JsonCheckpointHandler", "state": "orbax.checkpoint._src.handlers.standard_checkpoint_handler.StandardCheckpointHandler"}, "metrics": {}, "performance_metrics": {}, "init_timestamp_nsecs": 1795973802470844684, "commit_timestamp_nsecs": 1795973802542347974, "custom_metadata": {"lr": 0.001, "note": "step 0", "flags": [0, null, true]}}"#;

    #[test]
    fn orbax_step_metadata_round_trips_byte_for_byte() {
        let m = StepMetadata::from_json_bytes(COMPOSITE.as_bytes()).unwrap_or_default();
        assert_eq!(m.commit_timestamp_nsecs, Some(1795973802542347974));
        assert_eq!(m.item_handler_map().len(), 2);
        assert_eq!(
            String::from_utf8(m.to_json_bytes().unwrap_or_default()).unwrap_or_default(),
            COMPOSITE
        );
    }

    #[test]
    fn fresh_metadata_is_written_as_orbax_does() {
        let m = StepMetadata {
            init_timestamp_nsecs: Some(1795973162937459942),
            ..Default::default()
        };
        assert_eq!(
            String::from_utf8(m.to_json_bytes().unwrap_or_default()).unwrap_or_default(),
            r#"{"item_handlers": null, "metrics": {}, "performance_metrics": {}, "init_timestamp_nsecs": 1795973162937459942, "commit_timestamp_nsecs": null, "custom_metadata": {}}"#
        );
    }

    #[test]
    fn unknown_keys_move_into_custom_metadata() {
        let m =
            StepMetadata::from_json_bytes(br#"{"extra": 1, "metrics": null}"#).unwrap_or_default();
        assert_eq!(m.custom_metadata.get("extra"), Some(&Value::from(1)));
        let e = StepMetadata::from_json_bytes(br#"{"extra": 1, "custom_metadata": {"a": 2}}"#);
        assert_eq!(e.err().map(|e| e.kind()), Some(ErrorKind::Corrupt));
    }

    #[test]
    fn wrong_types_are_corrupt() {
        for bad in [
            &br#"[]"#[..],
            br#"{"item_handlers": 3}"#,
            br#"{"item_handlers": {"a": 3}}"#,
            br#"{"metrics": []}"#,
            br#"{"init_timestamp_nsecs": 1.5}"#,
            br#"{"commit_timestamp_nsecs": "x"}"#,
            br#"{"custom_metadata": "x"}"#,
        ] {
            let e = StepMetadata::from_json_bytes(bad).err().map(|e| e.kind());
            assert_eq!(
                e,
                Some(ErrorKind::Corrupt),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn root_metadata_and_legacy_file() {
        let raw = r#"{"internal_metadata": {}, "custom_metadata": {"version": 1.1, "lang": "en"}}"#;
        let r = RootMetadata::from_json_bytes(raw.as_bytes()).unwrap_or_default();
        assert_eq!(
            String::from_utf8(r.to_json_bytes().unwrap_or_default()).unwrap_or_default(),
            raw
        );
        let legacy = RootMetadata::from_json_bytes(br#"{"blah": "hello"}"#).unwrap_or_default();
        assert_eq!(
            legacy.custom_metadata.get("blah"),
            Some(&Value::from("hello"))
        );
    }
}
