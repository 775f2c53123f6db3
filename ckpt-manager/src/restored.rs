//! What `restore` returns.

use ckpt_core::{Error, Result, Step};
use ckpt_handlers::{PyTree, RestoredItem, TensorMap};
use std::collections::BTreeMap;

/// The items restored from one step, by name.
#[derive(Debug)]
pub struct Restored {
    step: Step,
    items: BTreeMap<String, RestoredItem>,
}

impl Restored {
    pub(crate) fn new(step: Step, items: BTreeMap<String, RestoredItem>) -> Self {
        Restored { step, items }
    }

    /// The step these items were restored from.
    pub fn step(&self) -> Step {
        self.step
    }

    /// The restored item names, in name order.
    pub fn names(&self) -> Vec<&str> {
        self.items.keys().map(String::as_str).collect()
    }

    /// Item `name`, if restored.
    pub fn get(&self, name: &str) -> Option<&RestoredItem> {
        self.items.get(name)
    }

    /// All items, by name.
    pub fn into_items(self) -> BTreeMap<String, RestoredItem> {
        self.items
    }

    /// JSON item `name` deserialized into `T`.
    ///
    /// # Errors
    /// `NotFound` when there is no such item; `InvalidArgument` when it is not a JSON item or
    /// does not deserialize into `T` (the message names the item).
    pub fn json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T> {
        let v = self.json_value(name)?;
        T::deserialize(v).map_err(|e| {
            Error::invalid_argument(format!(
                "item {name:?} of step {} does not have the asked type",
                self.step
            ))
            .with_step(self.step)
            .with_source(e)
        })
    }

    /// JSON item `name` as a value.
    ///
    /// # Errors
    /// `NotFound` when there is no such item; `InvalidArgument` when it is not a JSON item.
    pub fn json_value(&self, name: &str) -> Result<&serde_json::Value> {
        match self.require(name)? {
            RestoredItem::Json(v) => Ok(v),
            _ => Err(self.wrong_kind(name, "JSON")),
        }
    }

    /// Tensor item `name`.
    ///
    /// # Errors
    /// `NotFound` when there is no such item; `InvalidArgument` when it is not a tensor item.
    pub fn tensors(&self, name: &str) -> Result<&TensorMap> {
        match self.require(name)? {
            RestoredItem::Tensors(t) => Ok(t),
            _ => Err(self.wrong_kind(name, "tensor")),
        }
    }

    /// Pytree item `name` (an Orbax `StandardSave`/`PyTreeSave` item, or one ckpt wrote with
    /// [`crate::Composite::pytree`]).
    ///
    /// # Errors
    /// `NotFound` when there is no such item; `InvalidArgument` when it is not a pytree item.
    pub fn pytree(&self, name: &str) -> Result<&PyTree> {
        match self.require(name)? {
            RestoredItem::PyTree(t) => Ok(t),
            _ => Err(self.wrong_kind(name, "pytree")),
        }
    }

    /// Bytes item `name`.
    ///
    /// # Errors
    /// `NotFound` when there is no such item; `InvalidArgument` when it is not a bytes item.
    pub fn bytes(&self, name: &str) -> Result<&[u8]> {
        match self.require(name)? {
            RestoredItem::Bytes(b) => Ok(b),
            _ => Err(self.wrong_kind(name, "bytes")),
        }
    }

    fn require(&self, name: &str) -> Result<&RestoredItem> {
        self.items.get(name).ok_or_else(|| {
            Error::not_found(format!(
                "item {name:?} was not restored from step {}; restored items: {:?}",
                self.step,
                self.names()
            ))
            .with_step(self.step)
        })
    }

    fn wrong_kind(&self, name: &str, want: &str) -> Error {
        Error::invalid_argument(format!(
            "item {name:?} of step {} is not a {want} item",
            self.step
        ))
        .with_step(self.step)
    }
}
