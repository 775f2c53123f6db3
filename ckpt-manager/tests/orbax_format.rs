//! A root written by ckpt has Orbax's layout and file formats, byte for byte where the spec says
//! so (docs/orbax-behaviour.md §1.3–§1.7), compared with the files orbax-checkpoint 0.12.8 wrote in
//! `testdata/orbax/fixtures`.

use ckpt_manager::core::pyjson;
use ckpt_manager::{BestMode, CheckpointManager, Composite, SaveOptions};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

const JSON_HANDLER: &str =
    "orbax.checkpoint._src.handlers.json_checkpoint_handler.JsonCheckpointHandler";

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../testdata/orbax/fixtures")
            .join(rel),
    )
    .unwrap()
}

fn object(bytes: &[u8]) -> Map<String, Value> {
    match pyjson::from_slice(bytes).unwrap() {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from(root)];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().filter(|e| {
            !e.as_ref()
                .is_ok_and(|e| e.file_name() == ".ckpt-writer.lock")
        }) {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
                out.push(rel + "/");
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_ckpt_root_is_laid_out_and_written_as_orbax_writes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("run");
    let root_custom = object(&fixture("composite/metadata/_ROOT_METADATA"))["custom_metadata"]
        .as_object()
        .unwrap()
        .clone();
    let mut m = CheckpointManager::builder(root.to_str().unwrap())
        .root_metadata(root_custom)
        .best_metric("loss", BestMode::Min)
        .build()
        .unwrap();

    // The JSON item of the composite fixture, with the step's custom metadata and the metrics of
    // the metrics fixture.
    let meta = Value::Object(object(&fixture("composite/0/meta/metadata")));
    let fixture_step_meta = object(&fixture("composite/0/_CHECKPOINT_METADATA"));
    let custom = fixture_step_meta["custom_metadata"]
        .as_object()
        .unwrap()
        .clone();
    let metrics = object(&fixture("metrics/1/metrics/metrics"));
    let saved = m
        .save(
            0,
            Composite::new().json_value("meta", meta),
            SaveOptions::default()
                .metrics(metrics)
                .custom_metadata(custom),
        )
        .unwrap();
    assert!(saved);
    // Saves are asynchronous by default: wait for the commit before looking at the files.
    m.wait_until_finished().unwrap();

    let loc = root.canonicalize().unwrap().display().to_string();
    assert_eq!(
        files_under(&root),
        vec![
            "0/",
            "0/_CHECKPOINT_METADATA",
            // ckpt's checksum manifest: a file, which Orbax ignores (it treats subdirectories as
            // items); see xtask interop for Orbax reading such a root.
            "0/_CKPT_CHECKSUMS",
            "0/commit_success.txt",
            "0/meta/",
            "0/meta/commit_success.txt",
            "0/meta/metadata",
            "0/metrics/",
            "0/metrics/commit_success.txt",
            "0/metrics/metrics",
            "metadata/",
            "metadata/_ROOT_METADATA",
        ]
    );
    // Byte for byte: the JSON item, the metrics file, the root metadata.
    assert_eq!(
        std::fs::read(root.join("0/meta/metadata")).unwrap(),
        fixture("composite/0/meta/metadata")
    );
    assert_eq!(
        std::fs::read(root.join("0/metrics/metrics")).unwrap(),
        fixture("metrics/1/metrics/metrics")
    );
    assert_eq!(
        std::fs::read(root.join("metadata/_ROOT_METADATA")).unwrap(),
        fixture("composite/metadata/_ROOT_METADATA")
    );

    // The step metadata: Orbax's key order and spacing; only the timestamps and handlers differ.
    let written = std::fs::read_to_string(root.join("0/_CHECKPOINT_METADATA")).unwrap();
    let parsed = object(written.as_bytes());
    let init = parsed["init_timestamp_nsecs"].as_i64().unwrap();
    let commit = parsed["commit_timestamp_nsecs"].as_i64().unwrap();
    assert!(
        commit >= init && init > 1_700_000_000_000_000_000,
        "nanosecond timestamps"
    );
    let expected = format!(
        "{{\"item_handlers\": {{\"meta\": \"{JSON_HANDLER}\", \"metrics\": \"{JSON_HANDLER}\"}}, \"metrics\": {{}}, \"performance_metrics\": {{}}, \"init_timestamp_nsecs\": {init}, \"commit_timestamp_nsecs\": {commit}, \"custom_metadata\": {{\"lr\": 0.001, \"note\": \"step 0\", \"flags\": [0, null, true]}}}}"
    );
    assert_eq!(written, expected);

    // commit_success.txt: the step names its final path, items their path inside the step's tmp dir.
    let text = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    assert_eq!(
        text("0/commit_success.txt"),
        format!("Checkpoint commit was successful to {loc}/0")
    );
    assert_eq!(
        text("0/meta/commit_success.txt"),
        format!("Checkpoint commit was successful to {loc}/0.orbax-checkpoint-tmp/meta")
    );
    assert_eq!(
        text("0/metrics/commit_success.txt"),
        format!("Checkpoint commit was successful to {loc}/0.orbax-checkpoint-tmp/metrics")
    );
    // Same shape as Orbax's own text (fixtures rewrote the absolute prefix only).
    let orbax_text = String::from_utf8(fixture("metrics/1/metrics/commit_success.txt")).unwrap();
    assert!(
        orbax_text.starts_with("Checkpoint commit was successful to ")
            && orbax_text.ends_with("1.orbax-checkpoint-tmp/metrics")
    );

    // Root metadata is written once and never overwritten.
    m.close().unwrap();
    let mut other = Map::new();
    other.insert("version".into(), Value::from(2));
    let m2 = CheckpointManager::builder(root.to_str().unwrap())
        .root_metadata(other)
        .build()
        .unwrap();
    assert_eq!(
        std::fs::read(root.join("metadata/_ROOT_METADATA")).unwrap(),
        fixture("composite/metadata/_ROOT_METADATA")
    );
    assert_eq!(
        m2.metadata().unwrap().custom_metadata["version"],
        Value::from(1.1)
    );
}

#[test]
fn prefixed_and_padded_names_as_orbax() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("p");
    let mut m = CheckpointManager::builder(root.to_str().unwrap())
        .step_prefix("ckpt")
        .step_format_fixed_length(8)
        .build()
        .unwrap();
    for step in [0, 5, 12345] {
        assert!(m
            .save(
                step,
                Composite::new().json_value("default", Value::from(step)),
                SaveOptions::default().force(true)
            )
            .unwrap());
    }
    m.wait_until_finished().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .is_ok_and(|e| e.file_name() == ".ckpt-writer.lock")
        })
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    // The same names as the `prefix` fixture written by Orbax.
    assert_eq!(
        names,
        vec!["ckpt_00000000", "ckpt_00000005", "ckpt_00012345"]
    );
    assert_eq!(
        std::fs::read_to_string(root.join("ckpt_00000005/default/metadata")).unwrap(),
        "5"
    );
}
