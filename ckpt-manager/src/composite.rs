//! The items of one save (`Composite`) and the per-save options (`SaveOptions`).

use ckpt_core::{Metrics, DEFAULT_ITEM_NAME};
use ckpt_handlers::{SaveItem, TensorMap};
use std::borrow::Cow;

/// The named items of one save, as Orbax `args.Composite` (spec §6). Each item is written into
/// its own directory `<step>/<name>/` by its handler, in name order.
///
/// ```
/// # use ckpt_manager::Composite;
/// # let params = ckpt_handlers::TensorMap::new();
/// #[derive(serde::Serialize)] struct State { epoch: u32 }
/// let state = State { epoch: 3 };
/// let items = Composite::new().tensors("params", &params).json("state", &state);
/// assert_eq!(items.names(), vec!["params", "state"]);
/// ```
#[derive(Debug, Default)]
pub struct Composite<'a> {
    items: Vec<(String, SaveItem<'a>)>,
}

impl<'a> Composite<'a> {
    /// No items yet.
    pub fn new() -> Self {
        Composite { items: Vec::new() }
    }

    /// A single unnamed item, stored as `default` (Orbax's default-item mode).
    pub fn single(item: SaveItem<'a>) -> Self {
        Composite::new().item(DEFAULT_ITEM_NAME, item)
    }

    /// Adds item `name`. A later item with the same name replaces the earlier one.
    pub fn item(mut self, name: impl Into<String>, item: SaveItem<'a>) -> Self {
        let name = name.into();
        self.items.retain(|(n, _)| *n != name);
        self.items.push((name, item));
        self
    }

    /// Adds a JSON item: any `serde::Serialize` value, written as Orbax's `JsonSave` would.
    pub fn json<T: serde::Serialize + Sync>(self, name: impl Into<String>, value: &'a T) -> Self {
        self.item(name, SaveItem::Json(value))
    }

    /// Adds a JSON item from a `serde_json::Value`, moved in.
    pub fn json_value(self, name: impl Into<String>, value: serde_json::Value) -> Self {
        self.item(name, SaveItem::JsonValue(Cow::Owned(value)))
    }

    /// Adds a tensor item (named n-d arrays, stored as one safetensors file), borrowed.
    pub fn tensors(self, name: impl Into<String>, tensors: &'a TensorMap) -> Self {
        self.item(name, SaveItem::Tensors(Cow::Borrowed(tensors)))
    }

    /// Adds a tensor item, moved in.
    pub fn tensors_owned(self, name: impl Into<String>, tensors: TensorMap) -> Self {
        self.item(name, SaveItem::Tensors(Cow::Owned(tensors)))
    }

    /// Adds an opaque bytes item, borrowed.
    pub fn bytes(self, name: impl Into<String>, bytes: &'a [u8]) -> Self {
        self.item(name, SaveItem::Bytes(Cow::Borrowed(bytes)))
    }

    /// Adds an opaque bytes item, moved in.
    pub fn bytes_owned(self, name: impl Into<String>, bytes: Vec<u8>) -> Self {
        self.item(name, SaveItem::Bytes(Cow::Owned(bytes)))
    }

    /// The item names, in name order.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.items.iter().map(|(n, _)| n.as_str()).collect();
        v.sort_unstable();
        v
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The items, sorted by name (Orbax processes items in sorted name order, spec §6.4).
    pub(crate) fn sorted(&self) -> Vec<(&str, &SaveItem<'a>)> {
        let mut v: Vec<(&str, &SaveItem<'a>)> =
            self.items.iter().map(|(n, i)| (n.as_str(), i)).collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }
}

/// The items of a save, made independent of the caller's memory for a background save.
pub(crate) enum Captured<'a> {
    /// Every item is owned now: moved-in items were moved, borrowed ones copied once, JSON
    /// values serialized once.
    Owned(Composite<'static>),
    /// An item cannot be captured (a borrowed `SaveItem::Custom`); the save must be written
    /// before `save` returns.
    NotCapturable(Composite<'a>),
}

impl<'a> Composite<'a> {
    /// Captures the items for a background save (at most one copy of each borrowed item; none
    /// for items moved in).
    ///
    /// # Errors
    /// `InvalidArgument` naming the item when a JSON item cannot be serialized.
    pub(crate) fn capture(self) -> ckpt_core::Result<Captured<'a>> {
        if self
            .items
            .iter()
            .any(|(_, i)| matches!(i, SaveItem::Custom(_)))
        {
            return Ok(Captured::NotCapturable(self));
        }
        let mut owned: Vec<(String, SaveItem<'static>)> = Vec::with_capacity(self.items.len());
        for (name, item) in self.items {
            let item = match item {
                SaveItem::Json(v) => {
                    let value = serde_json::to_value(v).map_err(|e| {
                        ckpt_core::Error::invalid_argument(format!(
                            "item {name:?} cannot be serialized as JSON"
                        ))
                        .with_source(e)
                    })?;
                    SaveItem::JsonValue(Cow::Owned(value))
                }
                SaveItem::JsonValue(v) => SaveItem::JsonValue(Cow::Owned(v.into_owned())),
                SaveItem::Tensors(t) => SaveItem::Tensors(Cow::Owned(t.into_owned())),
                SaveItem::Bytes(b) => SaveItem::Bytes(Cow::Owned(b.into_owned())),
                SaveItem::Custom(_) => {
                    return Err(ckpt_core::Error::invalid_argument(format!(
                        "item {name:?} cannot be captured"
                    )))
                }
            };
            owned.push((name, item));
        }
        Ok(Captured::Owned(Composite { items: owned }))
    }
}

/// Per-save options: metrics, custom metadata, force (the other arguments of Orbax `save`, spec §3.5).
#[derive(Debug, Clone, Default)]
pub struct SaveOptions {
    /// The step's metrics, e.g. `{"val_loss": 0.31}`: written to `<step>/metrics/metrics` (always,
    /// unless `prevent_write_metrics`; deviation D2) and used by `best_metric` retention.
    pub metrics: Option<Metrics>,
    /// Stored in the step metadata's `custom_metadata`.
    pub custom_metadata: Option<Metrics>,
    /// Save even if the save decision says no (never on a read-only manager, deviation D3).
    pub force: bool,
}

impl SaveOptions {
    /// Sets the metrics.
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Sets the custom metadata.
    pub fn custom_metadata(mut self, custom: Metrics) -> Self {
        self.custom_metadata = Some(custom);
        self
    }

    /// Sets `force`.
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }
}
