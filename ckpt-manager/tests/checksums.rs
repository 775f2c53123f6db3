//! Checksums (issue 4): every file a handler writes has its size and CRC32C recorded in the step's
//! `_CKPT_CHECKSUMS`; restore verifies by default, so a flipped bit or a truncated file is a
//! `Corrupt` error naming the file, never wrong data.
// These tests run the `ckpt` binary, which needs the `cli` feature.
#![cfg(feature = "cli")]

use ckpt_manager::core::ErrorKind;
use ckpt_manager::handlers::{Tensor, TensorMap};
use ckpt_manager::storage::{ChecksumManifest, LocalStore};
use ckpt_manager::verify_step;
use ckpt_manager::{CheckpointManager, Composite, SaveOptions};
use serde_json::json;
use std::path::Path;

fn save_one(root: &Path) {
    let mut t = TensorMap::new();
    t.insert(
        "w".into(),
        Tensor::from_slice([64, 64], &vec![0.5f32; 64 * 64]).unwrap(),
    );
    let mut m = CheckpointManager::builder(root.to_str().unwrap())
        .build()
        .unwrap();
    let mut metrics = serde_json::Map::new();
    metrics.insert("loss".into(), json!(0.25));
    m.save(
        1,
        Composite::new()
            .tensors_owned("params", t)
            .json_value("state", json!({"epoch": 3})),
        SaveOptions::default().metrics(metrics),
    )
    .unwrap();
    m.close().unwrap();
}

#[test]
fn every_handler_file_is_recorded() {
    let d = tempfile::tempdir().unwrap();
    save_one(d.path());
    let manifest = ChecksumManifest::from_json_bytes(
        &std::fs::read(d.path().join("1/_CKPT_CHECKSUMS")).unwrap(),
    )
    .unwrap();
    let keys: Vec<&String> = manifest.files.keys().collect();
    assert_eq!(
        keys,
        vec![
            "metrics/metrics",
            "params/tensors.safetensors",
            "state/metadata"
        ]
    );
    let size = std::fs::metadata(d.path().join("1/params/tensors.safetensors"))
        .unwrap()
        .len();
    assert_eq!(
        manifest.get("params/tensors.safetensors").unwrap().size,
        size
    );
    let store = LocalStore::open(d.path()).unwrap();
    assert!(verify_step(&store, "1").unwrap().is_ok());
}

#[test]
fn a_flipped_bit_is_corrupt_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    save_one(d.path());
    let f = d.path().join("1/params/tensors.safetensors");
    let mut bytes = std::fs::read(&f).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0x04; // inside the tensor data: the safetensors header still parses
    std::fs::write(&f, &bytes).unwrap();
    let m = CheckpointManager::builder(d.path().to_str().unwrap())
        .build()
        .unwrap();
    let err = m.restore(Some(1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(
        err.to_string().contains("params/tensors.safetensors"),
        "{err}"
    );
    // The reason is the cause (`source()`), shown by the chain.
    assert!(
        err.chain().to_string().contains("crc32c"),
        "{}",
        err.chain()
    );
    // The other items still restore; the report names the bad file.
    assert!(m.restore_items(Some(1), &["state"]).is_ok());
    let store = LocalStore::open(d.path()).unwrap();
    let report = verify_step(&store, "1").unwrap();
    let bad: Vec<&String> = report.bad_files().map(|(k, _)| k).collect();
    assert_eq!(bad, vec!["params/tensors.safetensors"]);
    // With verification off the handler reads the flipped value: wrong data, which is why it is on.
    drop(m);
    let unchecked = CheckpointManager::builder(d.path().to_str().unwrap())
        .verify_checksums(false)
        .build()
        .unwrap();
    let r = unchecked.restore(Some(1)).unwrap();
    let w = r.tensors("params").unwrap()["w"].to_vec::<f32>().unwrap();
    assert!(w.iter().any(|v| *v != 0.5));
}

#[test]
fn a_truncated_file_is_corrupt_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    save_one(d.path());
    let f = d.path().join("1/state/metadata");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 1]).unwrap();
    let m = CheckpointManager::builder(d.path().to_str().unwrap())
        .build()
        .unwrap();
    let err = m.restore_items(Some(1), &["state"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(
        err.to_string().contains("state/metadata") && err.chain().to_string().contains("truncated"),
        "{err}"
    );
    assert_eq!(err.step(), Some(1));
}

#[test]
fn a_broken_manifest_is_corrupt() {
    let d = tempfile::tempdir().unwrap();
    save_one(d.path());
    std::fs::write(d.path().join("1/_CKPT_CHECKSUMS"), b"{\"files\": 7").unwrap();
    let m = CheckpointManager::builder(d.path().to_str().unwrap())
        .build()
        .unwrap();
    let err = m.restore(Some(1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("_CKPT_CHECKSUMS"), "{err}");
}

fn ckpt(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ckpt_verify_checks_a_whole_root_and_prints_each_bad_file() {
    let d = tempfile::tempdir().unwrap();
    save_one(d.path());
    let root = d.path().to_str().unwrap();
    let (code, out, err) = ckpt(&["verify", root]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("step 1: ok (3 files)"), "{out}");

    // A truncated file and a flipped bit: both printed, exit status 3 (corrupt data found),
    // one-line error.
    let t = d.path().join("1/state/metadata");
    let bytes = std::fs::read(&t).unwrap();
    std::fs::write(&t, &bytes[..3]).unwrap();
    let f = d.path().join("1/params/tensors.safetensors");
    let mut bytes = std::fs::read(&f).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    std::fs::write(&f, &bytes).unwrap();
    let (code, out, err) = ckpt(&["verify", root, "1"]);
    assert_eq!(code, Some(3));
    assert!(out.contains("step 1: BAD"), "{out}");
    assert!(
        out.contains("params/tensors.safetensors: wrong crc32c"),
        "{out}"
    );
    assert!(out.contains("state/metadata: truncated: 3 of"), "{out}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("ckpt: Corrupt: 2 bad file(s)"), "{err}");

    let (code, out, _) = ckpt(&["verify", "--json", root]);
    assert_eq!(code, Some(3));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["ok"], false);
    assert_eq!(
        v[0]["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["bad"] == true)
            .count(),
        2
    );
}

#[test]
fn ckpt_verify_on_an_orbax_root_says_no_checksums() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("5/default")).unwrap();
    std::fs::write(d.path().join("5/default/metadata"), b"{}").unwrap();
    let (code, out, err) = ckpt(&["verify", d.path().to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("step 5: no checksums recorded"), "{out}");
}

#[test]
fn ckpt_verify_checks_the_step_metadata_and_a_missing_manifest() {
    let d = tempfile::tempdir().unwrap();
    save_one(d.path());
    let root = d.path().to_str().unwrap();
    let meta = d.path().join("1/_CHECKPOINT_METADATA");
    let good = std::fs::read(&meta).unwrap();
    std::fs::write(&meta, b"{garbage").unwrap();
    let (code, out, err) = ckpt(&["verify", root]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("step 1: BAD metadata"), "{out}");
    assert!(err.contains("Corrupt"), "{err}");
    std::fs::write(&meta, good).unwrap();

    // A ckpt-written step whose manifest was removed cannot be trusted: verify and restore say so.
    std::fs::remove_file(d.path().join("1/_CKPT_CHECKSUMS")).unwrap();
    let (code, out, _) = ckpt(&["verify", root]);
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("checksum manifest _CKPT_CHECKSUMS is missing"),
        "{out}"
    );
    let m = CheckpointManager::builder(root)
        .read_only(true)
        .build()
        .unwrap();
    let e = m.restore(Some(1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("_CKPT_CHECKSUMS"), "{e}");
}

#[test]
fn ckpt_survives_a_closed_stdout() {
    let d = tempfile::tempdir().unwrap();
    save_one(d.path());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(["ls", d.path().to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // `ckpt ls | head -0`
    let out = child.wait_with_output().unwrap();
    assert_ne!(
        out.status.code(),
        Some(101),
        "panicked: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

#[test]
fn a_restore_refuses_item_files_the_manifest_lost() {
    let d = tempfile::tempdir().unwrap();
    save_one(d.path());
    // The manifest emptied: every item file is now unrecorded.
    std::fs::write(
        d.path().join("1/_CKPT_CHECKSUMS"),
        br#"{"algorithm": "crc32c", "files": {}}"#,
    )
    .unwrap();
    let m = CheckpointManager::builder(d.path().to_str().unwrap())
        .read_only(true)
        .build()
        .unwrap();
    let e = m.restore_items(Some(1), &["params"]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{}", e.chain());
    assert!(
        e.chain().to_string().contains("params/tensors.safetensors"),
        "{}",
        e.chain()
    );
    assert!(
        e.chain()
            .to_string()
            .contains("not in the checksum manifest"),
        "{}",
        e.chain()
    );
    // With verification off the files are read as they are.
    let m = CheckpointManager::builder(d.path().to_str().unwrap())
        .read_only(true)
        .verify_checksums(false)
        .build()
        .unwrap();
    m.restore_items(Some(1), &["params"]).unwrap();
}
