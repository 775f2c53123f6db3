//! Issue 16: an error's `Display` is its own text and its cause is only `source()`, so a report
//! that walks the sources (anyhow's `{:#}`, eyre, `Error::chain`) shows each cause once. Checked on
//! real errors of a local root: a flipped bit, a truncated file, a missing item file, bad JSON, a
//! root that is a file.

use ckpt_manager::handlers::{Tensor, TensorMap};
use ckpt_manager::{CheckpointManager, Composite, Error, SaveOptions};
use std::path::Path;

/// Every (error, cause) pair of the chain: the cause's text is not already in the error's own
/// text (else a walk of the chain prints it twice).
fn assert_cause_once(e: &Error) {
    let mut parent: &(dyn std::error::Error + 'static) = e;
    let mut walked = e.to_string();
    while let Some(cause) = parent.source() {
        let (p, c) = (parent.to_string(), cause.to_string());
        assert!(!p.contains(&c), "{p:?} already holds its cause {c:?}");
        walked.push_str(": ");
        walked.push_str(&c);
        parent = cause;
    }
    // What anyhow would print is what the chain prints (no cause was left out or repeated).
    assert_eq!(e.chain().to_string(), walked.replace('\n', " "));
}

fn save_one(root: &Path) {
    let mut t = TensorMap::new();
    let values = vec![0.5f32; 32 * 32];
    let w = Tensor::from_slice([32, 32], &values).expect("tensor");
    t.insert("w".into(), w);
    let mut m = CheckpointManager::builder(root.to_str().expect("utf-8 path"))
        .build()
        .expect("manager");
    let state = serde_json::json!({"epoch": 1});
    m.save(
        1,
        Composite::new()
            .tensors_owned("params", t)
            .json("state", &state),
        SaveOptions::default(),
    )
    .expect("save");
    m.close().expect("close");
}

fn open(root: &Path, verify: bool) -> CheckpointManager {
    CheckpointManager::builder(root.to_str().expect("utf-8 path"))
        .verify_checksums(verify)
        .build()
        .expect("manager")
}

#[test]
fn a_flipped_bit_shows_the_checksum_mismatch_once() {
    let d = tempfile::tempdir().expect("tempdir");
    save_one(d.path());
    let f = d.path().join("1/params/tensors.safetensors");
    let mut bytes = std::fs::read(&f).expect("read");
    let n = bytes.len();
    bytes[n - 10] ^= 0x01;
    std::fs::write(&f, &bytes).expect("write");
    let Err(e) = open(d.path(), true).restore(Some(1)) else {
        panic!("a flipped bit restored")
    };
    assert_cause_once(&e);
    let chain = e.chain().to_string();
    assert_eq!(chain.matches("crc32c").count(), 1, "{chain}");
}

#[test]
fn unreadable_items_and_roots_show_each_cause_once() {
    let d = tempfile::tempdir().expect("tempdir");
    save_one(d.path());
    // A truncated safetensors file, read without checksums: the parser's reason.
    let f = d.path().join("1/params/tensors.safetensors");
    let bytes = std::fs::read(&f).expect("read");
    std::fs::write(&f, &bytes[..bytes.len() / 2]).expect("write");
    let Err(e) = open(d.path(), false).restore(Some(1)) else {
        panic!("a truncated file restored")
    };
    assert_cause_once(&e);
    // The item file gone: the file system's "not found".
    std::fs::remove_file(&f).expect("remove");
    let Err(e) = open(d.path(), false).restore(Some(1)) else {
        panic!("a missing file restored")
    };
    assert_cause_once(&e);
    // A JSON item that is not JSON: serde_json's line and column.
    std::fs::write(d.path().join("1/state/metadata"), b"{\"epoch\": ").expect("write");
    let Err(e) = open(d.path(), false).restore_items(Some(1), &["state"]) else {
        panic!("bad JSON restored")
    };
    assert_cause_once(&e);
    // A root that is a file.
    let file_root = d.path().join("not-a-dir");
    std::fs::write(&file_root, b"x").expect("write");
    if let Err(e) = CheckpointManager::builder(file_root.to_str().expect("utf-8 path")).build() {
        assert_cause_once(&e);
    }
}
