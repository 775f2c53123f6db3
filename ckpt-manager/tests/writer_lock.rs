//! One writer per root (issue 4; Orbax has no such lock): a second manager opened for writing on a
//! root a live manager writes gets a `Locked` error; read-only managers are never blocked; the lock
//! goes away with the manager, and leaves no file in the root.

use ckpt_manager::core::ErrorKind;
use ckpt_manager::{CheckpointManager, Composite, SaveOptions};
use serde_json::json;

#[test]
fn a_second_writer_is_refused_and_readers_are_not() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().to_str().unwrap();
    let mut first = CheckpointManager::builder(root).build().unwrap();
    first
        .save(
            1,
            Composite::new().json_value("s", json!(1)),
            SaveOptions::default(),
        )
        .unwrap();

    let err = CheckpointManager::builder(root).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    assert!(
        err.to_string().contains(root),
        "the error names the root: {err}"
    );

    let reader = CheckpointManager::builder(root)
        .read_only(true)
        .build()
        .unwrap();
    first.wait_until_finished().unwrap();
    reader.wait_until_finished().unwrap();
    let mut reader = reader;
    reader.reload().unwrap();
    assert_eq!(reader.all_steps(), vec![1]);
    assert_eq!(
        reader.restore(None).unwrap().json_value("s").unwrap(),
        &json!(1)
    );

    first.close().unwrap();
    let mut second = CheckpointManager::builder(root).build().unwrap();
    second
        .save(
            2,
            Composite::new().json_value("s", json!(2)),
            SaveOptions::default(),
        )
        .unwrap();
    second.close().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["1", "2"], "no lock file in the root");
}

#[test]
fn dropping_a_writer_releases_the_root() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().to_str().unwrap();
    {
        let _w = CheckpointManager::builder(root).build().unwrap();
    }
    CheckpointManager::builder(root)
        .build()
        .unwrap()
        .close()
        .unwrap();
}
