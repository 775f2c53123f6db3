//! Found by a fresh user's review (issue 16): writes that were accepted and then lost data or
//! left a step that does not restore, and a copy that ignored a live writer.
//! - an item name added twice was dropped silently (the last won);
//! - an item named `metrics` saved without metrics was written, then read back as metrics;
//! - a writing manager (and `ckpt cp`, `ckpt import`) accepted a committed step directory as its
//!   root and put steps inside it;
//! - `ckpt cp` into a root a live job writes committed steps under the job's feet (the job then
//!   failed at its own save of that step);
//! - `ckpt cp` from a root of `ckpt_100`-style names without `--step-prefix` copied nothing and
//!   exited 0; `ckpt import` of a file of no tensors committed a step Orbax cannot restore.

use super::common::ckpt;
use ckpt_manager::core::ErrorKind;
use ckpt_manager::handlers::{Tensor, TensorMap};
use ckpt_manager::{CheckpointManager, Composite, SaveOptions};
use serde_json::json;

fn manager(root: &std::path::Path) -> CheckpointManager {
    CheckpointManager::builder(root.to_str().unwrap())
        .enable_async_checkpointing(false)
        .build()
        .unwrap()
}

#[test]
fn an_item_name_added_twice_is_refused_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = manager(&dir.path().join("r"));
    let (one, two) = (1, 2);
    let e = m
        .save(
            1,
            Composite::new().json("a", &one).json("a", &two),
            SaveOptions::default(),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.message().contains("\"a\" was added twice"), "{e}");
    let mut t = TensorMap::new();
    t.insert("w".into(), Tensor::from_slice(vec![1], &[1f32]).unwrap());
    let e = m
        .save(
            1,
            Composite::new().json("a", &one).tensors_owned("a", t),
            SaveOptions::default(),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(m.all_steps().is_empty(), "nothing was saved");
    assert!(!dir.path().join("r/1").exists());
}

#[test]
fn an_item_named_metrics_is_refused_with_or_without_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = manager(&dir.path().join("r"));
    let e = m
        .save(
            5,
            Composite::new().json_value("metrics", json!(1)),
            SaveOptions::default(),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.message().contains("\"metrics\""), "{e}");
    assert!(m.all_steps().is_empty());
}

#[test]
fn a_step_directory_is_refused_as_a_root_to_write() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("r");
    let mut m = manager(&root);
    m.save(
        1,
        Composite::new().json_value("s", json!(1)),
        SaveOptions::default(),
    )
    .unwrap();
    m.close().unwrap();
    let step_dir = root.join("1");
    let before = super::common::names(&step_dir);
    let e = CheckpointManager::builder(step_dir.to_str().unwrap())
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.message().contains("is a step directory"), "{e}");
    // Reading it is still allowed (and lists nothing).
    let reader = CheckpointManager::builder(step_dir.to_str().unwrap())
        .read_only(true)
        .build()
        .unwrap();
    assert!(reader.all_steps().is_empty());
    // ckpt cp into it is refused too, and the step is untouched.
    let (code, _, err) = ckpt(&["cp", root.to_str().unwrap(), step_dir.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is a step directory"), "{err}");
    assert_eq!(super::common::names(&step_dir), before);
    let r = manager(&root).restore(Some(1)).unwrap();
    assert_eq!(r.json_value("s").unwrap(), &json!(1));
}

#[test]
fn cp_into_a_root_a_live_writer_holds_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let mut m = manager(&src);
    m.save(
        7,
        Composite::new().json_value("s", json!(7)),
        SaveOptions::default(),
    )
    .unwrap();
    m.close().unwrap();
    let live_root = dir.path().join("live");
    let live = manager(&live_root);
    let (code, _, err) = ckpt(&["cp", src.to_str().unwrap(), live_root.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("Locked"), "{err}");
    assert!(
        !live_root.join("7").exists(),
        "nothing copied under the live writer"
    );
    drop(live);
    let (code, out, err) = ckpt(&["cp", src.to_str().unwrap(), live_root.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(live_root.join("7/commit_success.txt").exists() || live_root.join("7").exists());
}

#[test]
fn cp_of_a_root_of_other_step_names_says_what_to_pass() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let mut m = CheckpointManager::builder(src.to_str().unwrap())
        .enable_async_checkpointing(false)
        .step_prefix("ckpt")
        .build()
        .unwrap();
    m.save(
        100,
        Composite::new().json_value("s", json!(1)),
        SaveOptions::default(),
    )
    .unwrap();
    m.close().unwrap();
    let dst = dir.path().join("dst");
    let (code, _, err) = ckpt(&["cp", src.to_str().unwrap(), dst.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--step-prefix ckpt"), "{err}");
    let (code, out, err) = ckpt(&[
        "cp",
        src.to_str().unwrap(),
        dst.to_str().unwrap(),
        "--step-prefix",
        "ckpt",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(dst.join("ckpt_100").exists());
}

#[test]
fn import_of_no_tensors_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("empty.safetensors");
    // A safetensors file of no tensors: an 8-byte header length, then the header `{}` padded.
    let mut bytes = 8u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}      ");
    std::fs::write(&file, bytes).unwrap();
    let root = dir.path().join("r");
    let (code, _, err) = ckpt(&[
        "import",
        file.to_str().unwrap(),
        root.to_str().unwrap(),
        "4",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("holds no tensors"), "{err}");
    assert!(!root.join("4").exists());
}
