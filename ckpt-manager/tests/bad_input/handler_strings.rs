//! Bad input, 5: handler type strings.

use super::*;

/// An item recorded with a handler type string nothing in this program registers: restore is
/// `Unsupported` naming the item and the string; listing, `item_metadata` (None for it) and the
/// other items are unaffected.
#[test]
fn unknown_handler_strings_are_unsupported_naming_item_and_string() {
    let rows: &[(&str, &str)] = &[
        ("third-party class", "my_project.handlers.FancyHandler"),
        ("empty string", ""),
        (
            "json handler with a suffix",
            "orbax.checkpoint._src.handlers.json_checkpoint_handler.JsonCheckpointHandlerV2",
        ),
        ("ckpt-like name", "ckpt.tensors2"),
        ("whitespace around a known name", " ckpt.bytes "),
        ("unicode", "orbax.\u{441}heckpoint.Handler"),
    ];
    table(rows, |sb, type_string| {
        good_two_item_step(sb);
        set_handler(sb, "state", type_string);
        let m = reader(&sb.root).unwrap();
        assert_eq!(m.all_steps(), vec![1]);
        let quoted = format!("{type_string:?}");
        expect_err(
            m.restore(Some(1)),
            ErrorKind::Unsupported,
            &["\"state\"", &quoted, "step 1"],
        );
        let r = m.restore_items(Some(1), &["other"]).unwrap();
        assert_eq!(r.json_value("other").unwrap(), &json!("fine"));
        let meta = m.item_metadata(1).unwrap();
        assert_eq!(meta.get("state"), Some(&None));
        assert_eq!(
            m.item_handlers(1).unwrap().get("state").map(String::as_str),
            Some(*type_string)
        );
    });
}

/// Orbax's handlers ckpt cannot read (Array, Proto): `Unsupported` naming the item,
/// the string, the class and the format.
#[test]
fn orbax_tensorstore_handlers_are_unsupported() {
    let rows: Vec<(&str, &str)> = ORBAX_TENSORSTORE_HANDLERS
        .iter()
        .map(|ts| (ts.rsplit('.').next().unwrap(), *ts))
        .collect();
    table(&rows, |sb, type_string| {
        good_two_item_step(sb);
        set_handler(sb, "state", type_string);
        let class = type_string.rsplit('.').next().unwrap();
        let m = reader(&sb.root).unwrap();
        expect_err(
            m.restore(Some(1)),
            ErrorKind::Unsupported,
            &["\"state\"", *type_string, class, "tensorstore", "step 1"],
        );
        expect_err(
            m.restore_items(Some(1), &["state"]),
            ErrorKind::Unsupported,
            &["\"state\"", class],
        );
        assert_eq!(m.item_metadata(1).unwrap().get("state"), Some(&None));
    });
}

#[test]
fn item_handlers_edge_cases() {
    case("single (non-composite) unknown handler string", |sb| {
        good_root(&sb.root, &[1]);
        fs::rename(sb.root.join("1/state"), sb.root.join("1/default")).unwrap();
        fs::write(
            sb.root.join("1/_CHECKPOINT_METADATA"),
            b"{\"item_handlers\": \"some.module.SomeHandler\", \"metrics\": {}}",
        )
        .unwrap();
        let m = reader(&sb.root).unwrap();
        expect_err(
            m.restore(Some(1)),
            ErrorKind::Unsupported,
            &["\"default\"", "some.module.SomeHandler"],
        );
    });
    case("item directory not in item_handlers", |sb| {
        good_root(&sb.root, &[1]);
        fs::create_dir(sb.root.join("1/stray")).unwrap();
        fs::write(sb.root.join("1/stray/metadata"), b"{}").unwrap();
        let m = reader(&sb.root).unwrap();
        expect_err(
            m.restore(Some(1)),
            ErrorKind::InvalidArgument,
            &["\"stray\"", "no registered handler", "step 1"],
        );
        let r = m.restore_items(Some(1), &["state"]).unwrap();
        assert_eq!(r.json_value("state").unwrap(), &json!({"step": 1}));
    });
    case("tensor handler recorded for a JSON item", |sb| {
        good_root(&sb.root, &[1]);
        set_handler(sb, "state", "ckpt.tensors");
        let m = reader(&sb.root).unwrap();
        expect_err(
            m.restore(Some(1)),
            ErrorKind::NotFound,
            &["1/state/tensors.safetensors", "step 1"],
        );
    });
}

/// Step 1 with items `state` = `{"a": 1}` and `other` = `"fine"`.
pub(crate) fn good_two_item_step(sb: &Sandbox) {
    let mut m = writer(&sb.root).build().unwrap();
    m.save(
        1,
        Composite::new()
            .json_value("state", json!({"a": 1}))
            .json_value("other", json!("fine")),
        SaveOptions::default(),
    )
    .unwrap();
    m.close().unwrap();
}

/// Rewrites step 1's `_CHECKPOINT_METADATA` so that `item` is recorded with `type_string`.
pub(crate) fn set_handler(sb: &Sandbox, item: &str, type_string: &str) {
    let path = sb.root.join("1/_CHECKPOINT_METADATA");
    let mut v: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    v["item_handlers"][item] = Value::String(type_string.to_string());
    fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
}
