//! `ckpt cp` between local disk and S3 (issue 5), against the local S3 server of `s3_common`:
//! local → S3 → local keeps every step, its checksums and the root metadata, and `ckpt verify`
//! passes on each copy; a corrupted source file makes `cp` fail naming it, with no visible
//! partial step at the destination; a committed destination step is never overwritten.
// These tests run the `ckpt` binary, which needs the `cli` feature.
#![cfg(feature = "cli")]

mod s3_common;

use ckpt_manager::copy::{copy_step, CopySpec};
use ckpt_manager::handlers::{Tensor, TensorMap};
use ckpt_manager::storage::{CountingStore, OpKind, Store};
use ckpt_manager::{CheckpointManager, Composite, ErrorKind, SaveOptions};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

fn ckpt(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(args)
        .output()
        .expect("run ckpt");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn save_steps(root: &Path, steps: &[u64]) {
    let mut custom = serde_json::Map::new();
    custom.insert("run".into(), json!("exp1"));
    let mut m = CheckpointManager::builder(root.to_str().unwrap())
        .root_metadata(custom)
        .build()
        .unwrap();
    for &s in steps {
        let mut t = TensorMap::new();
        t.insert(
            "w".into(),
            Tensor::from_slice([32, 32], &vec![s as f32; 32 * 32]).unwrap(),
        );
        let mut metrics = serde_json::Map::new();
        metrics.insert("loss".into(), json!(1.0 / (s as f64 + 1.0)));
        m.save(
            s,
            Composite::new()
                .tensors_owned("params", t)
                .json_value("state", json!({"step": s})),
            SaveOptions::default().metrics(metrics),
        )
        .unwrap();
    }
    m.close().unwrap();
}

#[test]
fn local_to_s3_to_local_then_verify() {
    let Some((uri, config)) = s3_common::fresh_root("cp") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    save_steps(&src, &[1, 2, 3]);

    let (ok, out, err) = ckpt(&["cp", src.to_str().unwrap(), &uri]);
    assert!(ok, "cp local -> s3 failed: {out}\n{err}");
    assert!(out.contains("copied step 3"), "{out}");
    assert!(out.contains("3 step(s) copied"), "{out}");
    let (ok, out, err) = ckpt(&["verify", &uri]);
    assert!(ok, "verify on s3 failed: {out}\n{err}");
    // On S3 each step is committed with the commit-file protocol, naming its S3 location.
    let s3 = s3_common::store(&config);
    let marker = String::from_utf8(s3.read("2/commit_success.txt").unwrap()).unwrap();
    assert!(marker.contains(&s3.location("2")), "{marker}");

    // Again: every step is skipped, nothing overwritten.
    let (ok, out, _) = ckpt(&["cp", src.to_str().unwrap(), &uri]);
    assert!(
        ok && out.contains("skipped step 1") && out.contains("0 step(s) copied"),
        "{out}"
    );
    // One step that exists: an error.
    let (ok, _, err) = ckpt(&["cp", src.to_str().unwrap(), &uri, "--step", "2"]);
    assert!(!ok && err.contains("already holds step 2"), "{err}");

    // Back to local disk: atomic rename there, checksums verified, root metadata copied.
    let back = d.path().join("back");
    let (ok, out, err) = ckpt(&["cp", &uri, back.to_str().unwrap()]);
    assert!(ok, "cp s3 -> local failed: {out}\n{err}");
    let (ok, out, err) = ckpt(&["verify", back.to_str().unwrap()]);
    assert!(ok, "verify on the local copy failed: {out}\n{err}");
    for f in [
        "1/params/tensors.safetensors",
        "3/state/metadata",
        "3/metrics/metrics",
        "3/_CKPT_CHECKSUMS",
        "metadata/_ROOT_METADATA",
    ] {
        assert_eq!(
            std::fs::read(src.join(f)).unwrap(),
            std::fs::read(back.join(f)).unwrap(),
            "{f} differs after local -> s3 -> local"
        );
    }
    assert!(!back.join("3.orbax-checkpoint-tmp").exists());
    let m = CheckpointManager::builder(back.to_str().unwrap())
        .read_only(true)
        .build()
        .unwrap();
    assert_eq!(m.all_steps(), vec![1, 2, 3]);
    let r = m.restore(Some(2)).unwrap();
    assert_eq!(r.json_value("state").unwrap(), &json!({"step": 2}));
    assert_eq!(
        m.metadata().unwrap().custom_metadata.get("run"),
        Some(&json!("exp1"))
    );
}

#[test]
fn corrupted_source_fails_naming_the_file_and_leaves_no_step() {
    let Some((uri, config)) = s3_common::fresh_root("cpbad") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    save_steps(&src, &[1, 2]);
    // Flip one byte of step 2's tensors.
    let f = src.join("2/params/tensors.safetensors");
    let mut data = std::fs::read(&f).unwrap();
    let last = data.len() - 1;
    data[last] ^= 0x55;
    std::fs::write(&f, &data).unwrap();

    let (ok, out, err) = ckpt(&["cp", src.to_str().unwrap(), &uri]);
    assert!(!ok, "cp of a corrupted step succeeded: {out}");
    assert!(
        err.contains("2/params/tensors.safetensors") && err.contains("checksum"),
        "{err}"
    );
    // Step 1 (before the bad one) was copied; of step 2 nothing is left at all.
    let s3 = s3_common::store(&config);
    assert!(s3.stat("1/commit_success.txt").unwrap().is_some());
    assert!(
        s3.list_recursive("2").unwrap().is_empty(),
        "partial step 2 left"
    );
    let m = CheckpointManager::builder(uri.as_str())
        .read_only(true)
        .build()
        .unwrap();
    assert_eq!(m.all_steps(), vec![1]);
}

#[test]
fn copy_to_s3_commits_last_without_rename() {
    let Some((_uri, config)) = s3_common::fresh_root("cpcount") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    save_steps(d.path(), &[7]);
    let src: Arc<dyn Store> = Arc::new(ckpt_manager::storage::LocalStore::open(d.path()).unwrap());
    let dst = Arc::new(CountingStore::new(s3_common::store(&config)));
    let spec = CopySpec::new(src, dst.clone());
    let summary = copy_step(&spec, 7, &mut |_| {}).unwrap();
    assert_eq!(summary.copied, vec![7]);
    assert_eq!(dst.counts().get(OpKind::Rename), 0);
    let written = dst.written_paths();
    let step_files: Vec<&String> = written.iter().filter(|p| p.starts_with("7/")).collect();
    assert_eq!(
        step_files.last().map(|s| s.as_str()),
        Some("7/commit_success.txt"),
        "{written:?}"
    );
    let e = copy_step(&spec, 7, &mut |_| {}).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
}
