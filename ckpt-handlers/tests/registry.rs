//! Handler lookup by type string (typetag), the registry, and a third-party handler.

mod common;

use ckpt_core::{Error, ErrorKind, Result};
use ckpt_handlers::{
    default_handler_for, handler_for_type_string, CheckpointHandler, HandlerRegistry, ItemDir,
    RestoredItem, SaveItem, TensorMap, ORBAX_JSON_HANDLER,
};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::Arc;

/// A third-party handler: stores a `u32` as decimal text in `value.txt`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CounterHandler {
    #[serde(default)]
    offset: u32,
}

#[typetag::serde(name = "test.custom")]
impl CheckpointHandler for CounterHandler {
    fn type_string(&self) -> String {
        "test.custom".into()
    }
    fn save(&self, dir: &ItemDir<'_>, item: &SaveItem<'_>) -> Result<()> {
        let n = item
            .downcast_custom::<u32>()
            .ok_or_else(|| Error::invalid_argument("want u32"))?;
        dir.write("value.txt", (n + self.offset).to_string().as_bytes())
    }
    fn restore(&self, dir: &ItemDir<'_>) -> Result<RestoredItem> {
        let text = String::from_utf8(dir.read("value.txt")?)
            .map_err(|e| Error::corrupt("utf8").with_source(e))?;
        let n: u32 = text
            .parse()
            .map_err(|e| Error::corrupt("number").with_source(e))?;
        Ok(RestoredItem::Custom(Box::new(n)))
    }
    fn metadata(&self, _dir: &ItemDir<'_>) -> Result<Option<serde_json::Value>> {
        Ok(None)
    }
}

/// A handler that cannot be built from its type string alone (a required field).
#[derive(Debug, Serialize, Deserialize)]
struct NeedsConfig {
    path: String,
}

#[typetag::serde(name = "test.needs_config")]
impl CheckpointHandler for NeedsConfig {
    fn type_string(&self) -> String {
        "test.needs_config".into()
    }
    fn save(&self, _dir: &ItemDir<'_>, _item: &SaveItem<'_>) -> Result<()> {
        Ok(())
    }
    fn restore(&self, _dir: &ItemDir<'_>) -> Result<RestoredItem> {
        Ok(RestoredItem::Bytes(Vec::new()))
    }
    fn metadata(&self, _dir: &ItemDir<'_>) -> Result<Option<serde_json::Value>> {
        Ok(None)
    }
}

#[test]
fn a_handler_defined_here_is_found_by_its_type_string() {
    let h = handler_for_type_string("test.custom").unwrap();
    assert_eq!(h.type_string(), "test.custom");
    // Save with one instance, restore with one found by type string (a "fresh process").
    let store = common::memory();
    let dir = ItemDir::new(&store, "4/counter");
    CounterHandler::default()
        .save(&dir, &SaveItem::Custom(&41u32))
        .unwrap();
    let RestoredItem::Custom(v) = h.restore(&dir).unwrap() else {
        panic!("not custom")
    };
    assert_eq!(v.downcast_ref::<u32>(), Some(&41));
    let resolved = HandlerRegistry::new()
        .resolve("counter", Some("test.custom"))
        .unwrap();
    assert_eq!(resolved.type_string(), "test.custom");
}

#[test]
fn a_registered_handler_wins_and_custom_items_need_one() {
    let mut r = HandlerRegistry::new();
    r.add("counter", Arc::new(CounterHandler { offset: 1 }))
        .unwrap();
    let store = common::memory();
    let dir = ItemDir::new(&store, "4/counter");
    r.get("counter")
        .unwrap()
        .save(&dir, &SaveItem::Custom(&1u32))
        .unwrap();
    assert_eq!(store_read(&store, "4/counter/value.txt"), b"2");
    let e = default_handler_for(&SaveItem::Custom(&1u32)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(r.resolve("counter", None).is_ok());
}

fn store_read(store: &dyn ckpt_storage::Store, path: &str) -> Vec<u8> {
    store.read(path).unwrap()
}

#[test]
fn a_handler_needing_config_is_a_handler_error() {
    let e = handler_for_type_string("test.needs_config").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Handler);
    assert!(e.to_string().contains("test.needs_config"), "{e}");
    // serde's reason is kept as the source (the lookup tells "unknown tag" apart by the
    // deserializer error's kind, not by its text).
    let source = std::error::Error::source(&e).map(|s| s.to_string());
    assert!(
        source
            .as_deref()
            .is_some_and(|s| s.contains("missing field")),
        "{source:?}"
    );
    let e = HandlerRegistry::new()
        .resolve("cfg", Some("test.needs_config"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Handler);
    assert!(e.to_string().contains("\"cfg\""), "{e}");
}

#[test]
fn default_handlers_save_and_a_fresh_lookup_restores() {
    let store = common::memory();
    let mut tensors = TensorMap::new();
    tensors.insert(
        "w".into(),
        ckpt_handlers::Tensor::from_slice([2], &[1.0f64, 2.0]).unwrap(),
    );
    let json = serde_json::json!({"k": [1, 2]});
    let items = [
        ("state", SaveItem::Json(&json)),
        ("params", SaveItem::Tensors(Cow::Borrowed(&tensors))),
        ("blob", SaveItem::Bytes(Cow::Borrowed(b"xyz"))),
    ];
    let mut recorded = Vec::new();
    for (name, item) in &items {
        let path = format!("0/{name}");
        let h = default_handler_for(item).unwrap();
        h.save(&ItemDir::new(&store, &path), item).unwrap();
        recorded.push((name.to_string(), h.type_string()));
    }
    assert_eq!(recorded[0].1, ORBAX_JSON_HANDLER);
    let registry = HandlerRegistry::new();
    for (name, ts) in recorded {
        let h = registry.resolve(&name, Some(&ts)).unwrap();
        let restored = h
            .restore(&ItemDir::new(&store, &format!("0/{name}")))
            .unwrap();
        match (name.as_str(), restored) {
            ("state", RestoredItem::Json(v)) => assert_eq!(v, json),
            ("params", RestoredItem::Tensors(t)) => assert_eq!(t, tensors),
            ("blob", RestoredItem::Bytes(b)) => assert_eq!(b, b"xyz"),
            (n, r) => panic!("{n}: {r:?}"),
        }
    }
}
