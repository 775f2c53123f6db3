//! BytesHandler: one opaque file.

mod common;

use ckpt_core::ErrorKind;
use ckpt_handlers::{BytesHandler, CheckpointHandler, ItemDir, RestoredItem, SaveItem};
use serde_json::json;
use std::borrow::Cow;

#[test]
fn round_trip() {
    let store = common::memory();
    let dir = ItemDir::new(&store, "2/blob");
    for data in [&b""[..], b"\x00\xffabc", &[7u8; 10_000]] {
        BytesHandler
            .save(&dir, &SaveItem::Bytes(Cow::Borrowed(data)))
            .unwrap();
        assert_eq!(common::read(&store, "2/blob/data.bin"), data);
        let RestoredItem::Bytes(b) = BytesHandler.restore(&dir).unwrap() else {
            panic!("not bytes")
        };
        assert_eq!(b, data);
        assert_eq!(
            BytesHandler.metadata(&dir).unwrap(),
            Some(json!({"size": data.len()}))
        );
    }
    assert_eq!(BytesHandler.type_string(), "ckpt.bytes");
}

#[test]
fn missing_and_wrong_variant() {
    let (_tmp, store) = common::local();
    let dir = ItemDir::new(&store, "2/blob");
    let e = BytesHandler.restore(&dir).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("2/blob/data.bin"), "{e}");
    assert_eq!(
        BytesHandler.metadata(&dir).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let e = BytesHandler.save(&dir, &SaveItem::Json(&1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("BytesHandler"));
}
