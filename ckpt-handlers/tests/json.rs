//! JsonHandler: Orbax JsonCheckpointHandler's format (spec §2.1), byte for byte.

mod common;

use ckpt_core::ErrorKind;
use ckpt_handlers::{
    CheckpointHandler, ItemDir, JsonHandler, RestoredItem, SaveItem, ORBAX_JSON_HANDLER,
};
use ckpt_storage::{OpendalStore, Store};
use serde::Serialize;
use serde_json::json;
use std::borrow::Cow;

/// Bytes Orbax 0.12.8 wrote for `args.JsonSave(meta)` (fixture `composite/0/meta/metadata`).
const ORBAX_BYTES: &[u8] = include_bytes!("fixtures/orbax_composite_0_meta_metadata");

/// The Python dict of that fixture, in insertion order.
fn fixture_value() -> serde_json::Value {
    json!({
        "name": "run-\u{3b1}", "epoch": 0, "lr": 0.001, "tags": ["baseline", "small"],
        "nested": {"none": null, "list": [1, 2.5, "three", null, true, false], "empty": {},
                   "big": 9007199254740993u64, "neg": -7, "sci": 1e-10}
    })
}

#[derive(Serialize)]
struct Nested {
    none: Option<u8>,
    list: (u8, f64, &'static str, Option<u8>, bool, bool),
    empty: std::collections::BTreeMap<String, u8>,
    big: u64,
    neg: i32,
    sci: f64,
}

#[derive(Serialize)]
struct Meta {
    name: String,
    epoch: u32,
    lr: f64,
    tags: Vec<&'static str>,
    nested: Nested,
}

fn fixture_struct() -> Meta {
    Meta {
        name: "run-α".into(),
        epoch: 0,
        lr: 0.001,
        tags: vec!["baseline", "small"],
        nested: Nested {
            none: None,
            list: (1, 2.5, "three", None, true, false),
            empty: Default::default(),
            big: 9007199254740993,
            neg: -7,
            sci: 1e-10,
        },
    }
}

#[test]
fn fixture_bytes_are_reproduced_from_a_value() {
    let store = common::memory();
    let dir = ItemDir::new(&store, "0/meta");
    let h = JsonHandler::default();
    h.save(&dir, &SaveItem::JsonValue(Cow::Owned(fixture_value())))
        .unwrap();
    assert_eq!(common::read(&store, "0/meta/metadata"), ORBAX_BYTES);
}

#[test]
fn fixture_bytes_are_reproduced_from_a_serialize_struct() {
    let store = common::memory();
    let dir = ItemDir::new(&store, "0/meta");
    let meta = fixture_struct();
    JsonHandler::default()
        .save(&dir, &SaveItem::Json(&meta))
        .unwrap();
    assert_eq!(common::read(&store, "0/meta/metadata"), ORBAX_BYTES);
}

#[test]
fn the_shared_fixture_matches_the_copy() {
    // The copy in tests/fixtures is verbatim; check it against the original when present.
    let original = std::path::Path::new("/work/shared/orbax/fixtures/composite/0/meta/metadata");
    if let Ok(bytes) = std::fs::read(original) {
        assert_eq!(bytes, ORBAX_BYTES);
    }
}

#[test]
fn restores_a_file_written_by_orbax() {
    let (_tmp, store) = common::local();
    store.write("0/meta/metadata", ORBAX_BYTES).unwrap();
    let dir = ItemDir::new(&store, "0/meta");
    let RestoredItem::Json(v) = JsonHandler::default().restore(&dir).unwrap() else {
        panic!("not JSON")
    };
    assert_eq!(v, fixture_value());
    // Key order is kept (serde_json preserve_order), so a re-save is byte-identical.
    assert_eq!(ckpt_core::pyjson::to_vec(&v).unwrap(), ORBAX_BYTES);
}

#[test]
fn round_trip_and_file_name() {
    let store = common::memory();
    let dir = ItemDir::new(&store, "3/metrics");
    let h = JsonHandler::with_filename("metrics");
    h.save(
        &dir,
        &SaveItem::JsonValue(Cow::Owned(json!({"loss": 2, "acc": [1, 2]}))),
    )
    .unwrap();
    assert_eq!(
        common::read(&store, "3/metrics/metrics"),
        br#"{"loss": 2, "acc": [1, 2]}"#
    );
    let RestoredItem::Json(v) = h.restore(&dir).unwrap() else {
        panic!("not JSON")
    };
    assert_eq!(v, json!({"loss": 2, "acc": [1, 2]}));
    assert_eq!(h.metadata(&dir).unwrap(), None);
    assert_eq!(h.type_string(), ORBAX_JSON_HANDLER);
}

#[test]
fn spec_example_x_2() {
    let store = common::memory();
    let dir = ItemDir::new(&store, "1/extra");
    JsonHandler::default()
        .save(&dir, &SaveItem::Json(&json!({"x": 2})))
        .unwrap();
    assert_eq!(common::read(&store, "1/extra/metadata"), br#"{"x": 2}"#);
}

#[test]
fn missing_file_is_not_found_naming_the_path() {
    let store = common::memory();
    let dir = ItemDir::new(&store, "5/extra");
    let e = JsonHandler::default().restore(&dir).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("5/extra/metadata"), "{e}");
    assert_eq!(e.path(), Some(store.location("5/extra/metadata").as_str()));
}

#[test]
fn bad_json_is_corrupt_naming_the_path() {
    let store = common::memory();
    for junk in [&b"{\"a\": "[..], b"", b"\xff\xfe", b"{} trailing"] {
        store.write("5/extra/metadata", junk).unwrap();
        let e = JsonHandler::default()
            .restore(&ItemDir::new(&store, "5/extra"))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{junk:?}");
        assert!(e.to_string().contains("5/extra/metadata"), "{e}");
    }
}

#[test]
fn python_non_finite_tokens_are_read_as_null() {
    let store = common::memory();
    store
        .write(
            "0/m/metadata",
            b"{\"a\": NaN, \"b\": [Infinity, -Infinity], \"c\": \"NaN\"}",
        )
        .unwrap();
    let RestoredItem::Json(v) = JsonHandler::default()
        .restore(&ItemDir::new(&store, "0/m"))
        .unwrap()
    else {
        panic!("not JSON")
    };
    assert_eq!(v, json!({"a": null, "b": [null, null], "c": "NaN"}));
}

#[test]
fn other_variants_are_invalid_argument_naming_the_handler() {
    let store = common::memory();
    let dir = ItemDir::new(&store, "0/x");
    let tensors = ckpt_handlers::TensorMap::new();
    for item in [
        SaveItem::Bytes(Cow::Borrowed(b"x")),
        SaveItem::Tensors(Cow::Borrowed(&tensors)),
        SaveItem::Custom(&1u8),
    ] {
        let e = JsonHandler::default().save(&dir, &item).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("JsonHandler"), "{e}");
    }
    assert!(store.list_dir("0").unwrap().is_empty());
}

#[test]
fn unserializable_value_is_invalid_argument() {
    let store = common::memory();
    let mut m = std::collections::HashMap::new();
    m.insert((1, 2), 3);
    let e = JsonHandler::default()
        .save(&ItemDir::new(&store, "0/x"), &SaveItem::Json(&m))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn bad_filename_is_invalid_argument() {
    let store = common::memory();
    let dir = ItemDir::new(&store, "0/x");
    for name in ["../escape", "", "a/b", ".."] {
        let h = JsonHandler::with_filename(name);
        let e = h.save(&dir, &SaveItem::Json(&1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{name:?}");
        assert_eq!(
            h.restore(&dir).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
}

#[test]
fn typetag_form() {
    let h: Box<dyn CheckpointHandler> = Box::new(JsonHandler::with_filename("metrics"));
    let s = serde_json::to_string(&h).unwrap();
    assert_eq!(
        s,
        format!(r#"{{"type":"{ORBAX_JSON_HANDLER}","filename":"metrics"}}"#)
    );
    let back: Box<dyn CheckpointHandler> = serde_json::from_str(&s).unwrap();
    assert_eq!(
        format!("{back:?}"),
        format!("{:?}", JsonHandler::with_filename("metrics"))
    );
    let default: Box<dyn CheckpointHandler> =
        serde_json::from_value(json!({ "type": ORBAX_JSON_HANDLER })).unwrap();
    assert_eq!(
        format!("{default:?}"),
        format!("{:?}", JsonHandler::default())
    );
}

#[test]
fn overwrites_an_existing_file() {
    let store = OpendalStore::memory().unwrap();
    let dir = ItemDir::new(&store, "0/x");
    JsonHandler::default()
        .save(&dir, &SaveItem::Json(&json!([1, 2, 3])))
        .unwrap();
    JsonHandler::default()
        .save(&dir, &SaveItem::Json(&json!("s")))
        .unwrap();
    assert_eq!(common::read(&store, "0/x/metadata"), br#""s""#);
}
