//! Item 4, "written but unreadable": JSON nested deeper than the reader's recursion limit saved,
//! committed and passed `ckpt verify`, and then every restore failed `Corrupt: … recursion limit
//! exceeded`; and `ckpt verify` checked checksums only, so a crafted safetensors file whose
//! manifest matched passed although restore rejects it.

use crate::common::{ckpt, names};
use ckpt_manager::core::pyjson::MAX_NESTING_DEPTH;
use ckpt_manager::storage::{ChecksumManifest, FileChecksum};
use ckpt_manager::{CheckpointManager, Composite, ErrorKind, SaveOptions};
use serde_json::{json, Value};
use std::path::Path;

/// `1` inside `depth` arrays: `[[…[1]…]]`.
fn nested(depth: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..depth {
        v = json!([v]);
    }
    v
}

/// A root with no step directory, tmp or committed.
fn assert_no_step_written(root: &Path) {
    let left: Vec<String> = names(root)
        .into_iter()
        .filter(|n| n != "metadata" && n != ".ckpt-writer.lock")
        .collect();
    assert!(
        left.is_empty(),
        "the refused save left {left:?} in the root"
    );
}

#[test]
fn json_nested_deeper_than_restore_can_read_is_refused_at_save() {
    let too_deep = nested(MAX_NESTING_DEPTH + 1);
    for async_save in [true, false] {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().to_str().unwrap();
        let mut m = CheckpointManager::builder(root)
            .enable_async_checkpointing(async_save)
            .build()
            .unwrap();

        // A JSON value moved in, and a borrowed `Serialize` value: both refused by `save`
        // itself, naming the item and the limit, with nothing written.
        let e = m
            .save(
                1,
                Composite::new().json_value("state", too_deep.clone()),
                SaveOptions::default(),
            )
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        let text = e.to_string();
        assert!(
            text.contains("\"state\"") && text.contains(&MAX_NESTING_DEPTH.to_string()),
            "async={async_save}: {text}"
        );
        assert_eq!(e.step(), Some(1));
        let e = m
            .save(
                1,
                Composite::new().json("borrowed", &too_deep),
                SaveOptions::default(),
            )
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(
            e.to_string().contains("\"borrowed\""),
            "async={async_save}: {e}"
        );
        // Metrics nested too deep would make the step's metrics file unreadable.
        let mut deep_metrics = ckpt_manager::Metrics::new();
        deep_metrics.insert("loss".into(), nested(MAX_NESTING_DEPTH));
        let e = m
            .save(
                1,
                Composite::new().json_value("state", json!(1)),
                SaveOptions::default().metrics(deep_metrics),
            )
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains("metrics"), "{e}");
        m.wait_until_finished().unwrap();
        assert_eq!(m.all_steps(), Vec::<u64>::new());
        assert_no_step_written(d.path());

        // The deepest value the reader takes saves, commits and restores as it was.
        let deepest = nested(MAX_NESTING_DEPTH);
        assert!(m
            .save(
                2,
                Composite::new().json("state", &deepest),
                SaveOptions::default()
            )
            .unwrap());
        m.close().unwrap();
        let r = CheckpointManager::builder(root)
            .read_only(true)
            .build()
            .unwrap();
        assert_eq!(r.all_steps(), [2]);
        let back = r.restore(Some(2)).unwrap();
        assert_eq!(back.json_value("state").unwrap(), &deepest);
    }
}

/// A root with step 1 holding a tensor item `params` and a JSON item `state`.
fn root_with_tensors(dir: &Path) -> String {
    let root = dir.join("root");
    let mut m = CheckpointManager::builder(root.to_str().unwrap())
        .build()
        .unwrap();
    let mut t = ckpt_manager::handlers::TensorMap::new();
    t.insert(
        "w".into(),
        ckpt_manager::handlers::Tensor::from_slice::<f32>(vec![2], &[1.0, 2.0]).unwrap(),
    );
    m.save(
        1,
        Composite::new()
            .tensors_owned("params", t)
            .json_value("state", json!({"a": 1})),
        SaveOptions::default(),
    )
    .unwrap();
    m.close().unwrap();
    root.to_str().unwrap().to_string()
}

/// Rewrites `1/params/tensors.safetensors` with a header whose data offsets point past the data
/// (the same data, a valid JSON header), and the step's checksum manifest to match it, so every
/// checksum passes and only parsing the file finds the damage.
fn craft_bad_offsets(root: &str) {
    let file = Path::new(root).join("1/params/tensors.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    assert_eq!(header["w"]["data_offsets"], json!([0, 8]), "{header}");
    header["w"]["data_offsets"] = json!([0, 16]);
    let header = serde_json::to_vec(&header).unwrap();
    let mut crafted = (header.len() as u64).to_le_bytes().to_vec();
    crafted.extend_from_slice(&header);
    crafted.extend_from_slice(data);
    std::fs::write(&file, &crafted).unwrap();

    let store = ckpt_manager::storage::open(root).unwrap();
    let mut manifest = ChecksumManifest::read_from(store.as_ref(), "1")
        .unwrap()
        .unwrap();
    let key = "params/tensors.safetensors";
    assert!(manifest.get(key).is_some(), "no manifest entry {key}");
    manifest.insert(key, FileChecksum::of(&crafted));
    manifest.write_to(store.as_ref(), "1").unwrap();

    // Checksums pass; restore does not.
    let report = ckpt_manager::verify_step(store.as_ref(), "1").unwrap();
    assert!(report.is_ok(), "the manifest was not rewritten to match");
    let m = CheckpointManager::builder(root)
        .read_only(true)
        .build()
        .unwrap();
    let e = m.restore(Some(1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
}

#[test]
fn verify_fails_a_step_whose_checksums_pass_but_restore_fails() {
    let d = tempfile::tempdir().unwrap();
    let root = root_with_tensors(d.path());
    let (code, out, err) = ckpt(&["verify", &root]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("step 1: ok (2 files); 2 item(s) restore (params, state)"),
        "{out}"
    );

    craft_bad_offsets(&root);
    let (code, out, err) = ckpt(&["verify", &root]);
    // Exit status 3: verify found corrupt data (issue 16).
    assert_eq!(code, Some(3), "verify passed a step restore rejects: {out}");
    assert!(
        out.contains("step 1: BAD: item \"params\" does not restore: Corrupt"),
        "{out}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("ckpt: Corrupt: 1 item(s) that do not restore: step 1: item \"params\""),
        "{err}"
    );
    // The JSON report says the same, per item.
    let (code, out, _) = ckpt(&["verify", "--json", &root, "1"]);
    assert_eq!(code, Some(3));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["ok"], false, "{v}");
    let items = v[0]["items"].as_array().unwrap();
    let params = items.iter().find(|i| i["item"] == "params").unwrap();
    assert_eq!(params["restores"], false, "{v}");
    let state = items.iter().find(|i| i["item"] == "state").unwrap();
    assert_eq!(state["restores"], true, "{v}");
}

#[test]
fn verify_checksums_only_keeps_the_checksum_check_alone() {
    let d = tempfile::tempdir().unwrap();
    let root = root_with_tensors(d.path());
    craft_bad_offsets(&root);
    let (code, out, err) = ckpt(&["verify", "--checksums-only", &root]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("step 1: ok (2 files)\n"), "{out}");
    assert!(!out.contains("restore"), "{out}");
}
