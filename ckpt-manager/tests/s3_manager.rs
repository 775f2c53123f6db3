//! The manager on S3 (issue 5), against the local S3-compatible server that `cargo xtask test`
//! starts (see `s3_common`): listing a big root in one request, save and restore, retention,
//! async saves, metrics, root metadata, checksums, and the commit-file protocol's write order.

mod s3_common;

use ckpt_manager::core::{commit_success_text, COMMIT_SUCCESS_FILE, STEP_METADATA_FILE};
use ckpt_manager::handlers::{Tensor, TensorMap};
use ckpt_manager::storage::{CountingStore, Gate, LatencyStore, OpKind, Store};
use ckpt_manager::verify_step;
use ckpt_manager::{BestMode, CheckpointManager, Composite, ErrorKind, Metrics, SaveOptions};
use serde_json::json;
use std::sync::{mpsc, Arc};
use std::time::Duration;

fn tensors(step: u64) -> TensorMap {
    let mut t = TensorMap::new();
    t.insert(
        "w".into(),
        Tensor::from_slice([16, 8], &vec![step as f32 + 0.5; 128]).unwrap(),
    );
    t
}

fn metrics(loss: f64) -> Metrics {
    let mut m = Metrics::new();
    m.insert("loss".into(), json!(loss));
    m
}

fn save(m: &mut CheckpointManager, step: u64, loss: f64) -> bool {
    m.save(
        step,
        Composite::new()
            .tensors_owned("params", tensors(step))
            .json_value("state", json!({"step": step, "name": "ünï code"})),
        SaveOptions::default().metrics(metrics(loss)),
    )
    .unwrap()
}

/// Writes `n` committed steps `0..n` with raw store writes (a `_CHECKPOINT_METADATA` and a
/// `commit_success.txt` each), from 8 threads: far quicker than `n` manager saves.
fn write_raw_steps(store: &Arc<dyn Store>, n: u64) {
    let meta = br#"{"item_handlers": {}, "metrics": {}, "performance_metrics": {}, "init_timestamp_nsecs": 1, "commit_timestamp_nsecs": 2, "custom_metadata": {}}"#;
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let store = Arc::clone(store);
            s.spawn(move || {
                for step in (t..n).step_by(8) {
                    let dir = step.to_string();
                    store
                        .write(&format!("{dir}/{STEP_METADATA_FILE}"), meta)
                        .unwrap();
                    store
                        .write(
                            &format!("{dir}/{COMMIT_SUCCESS_FILE}"),
                            commit_success_text(&store.location(&dir)).as_bytes(),
                        )
                        .unwrap();
                }
            });
        }
    });
}

#[test]
fn opening_2000_steps_is_one_listing() {
    let Some((_uri, config)) = s3_common::fresh_root("list2000") else {
        return;
    };
    let s3 = s3_common::store(&config);
    write_raw_steps(&s3, 2000);
    // An uncommitted step (no commit file) and a stray object: neither is a step.
    s3.write("2000/_CHECKPOINT_METADATA", b"{}").unwrap();
    s3.write("notes.txt", b"x").unwrap();

    let counting = Arc::new(CountingStore::new(Arc::clone(&s3)));
    let m = CheckpointManager::builder_with_store(counting.clone())
        .lightweight_initialize(true)
        // No lease renewal (a read and a write) during the count, however slow the machine.
        .writer_lease_ttl_secs(Some(3600))
        .build()
        .unwrap();
    let counts = counting.counts();
    assert_eq!(m.all_steps(), (0..2000).collect::<Vec<u64>>());
    // A 500 from moto (a loaded machine) is retried by the manager's retry layer above the
    // counting one: each such attempt is counted once more, and as a temporary failure.
    let retried = counts.temporary_failures;
    assert!(
        counts.get(OpKind::ListDir) <= 1 + retried,
        "one (paginated, recursive) listing: {counts:?}"
    );
    // Opening checks the root itself (two stats of `""`, one of `_CHECKPOINT_METADATA`: a
    // writer refuses a step directory as its root; one `create_dir("")`, a no-op on S3) and
    // takes the writer lease (one conditional create): a fixed cost, whatever the number of
    // steps. Nothing is asked of any step.
    assert!(counts.stat <= 3 + retried, "no stat per step: {counts:?}");
    assert_eq!(
        counts.read + counts.read_range,
        0,
        "no read per step: {counts:?}"
    );
    assert!(
        counts.total() <= 6 + retried,
        "nothing per step: {counts:?}"
    );
    assert!(
        counts.write_if_absent >= 1 && counts.write_if_absent <= 1 + retried,
        "the writer lease: {counts:?}"
    );
    assert_eq!(counts.write, 0, "{counts:?}");
}

#[test]
fn save_restore_metrics_root_metadata_and_checksums_on_s3() {
    let Some((uri, config)) = s3_common::fresh_root("saverestore") else {
        return;
    };
    let mut custom = Metrics::new();
    custom.insert("run".into(), json!("exp-s3"));
    let mut m = CheckpointManager::builder(uri.as_str())
        .root_metadata(custom)
        .build()
        .unwrap();
    assert!(save(&mut m, 10, 0.5));
    assert!(save(&mut m, 20, 0.25));
    m.close().unwrap();

    // A fresh manager (a new process would do the same) sees both steps, restores both items.
    let m = CheckpointManager::builder(uri.as_str())
        .read_only(true)
        .build()
        .unwrap();
    assert_eq!(m.all_steps(), vec![10, 20]);
    assert_eq!(m.latest_step(), Some(20));
    let r = m.restore(None).unwrap();
    assert_eq!(r.step(), 20);
    assert_eq!(
        r.json_value("state").unwrap(),
        &json!({"step": 20, "name": "ünï code"})
    );
    assert_eq!(r.tensors("params").unwrap(), &tensors(20));
    let r = m.restore(Some(10)).unwrap();
    assert_eq!(r.tensors("params").unwrap(), &tensors(10));
    assert_eq!(m.metrics(10).unwrap(), Some(metrics(0.5)));
    assert_eq!(
        m.metadata().unwrap().custom_metadata.get("run"),
        Some(&json!("exp-s3"))
    );
    // Checksums: recorded for every file, verified on S3; a damaged object fails restore.
    let s3 = s3_common::store(&config);
    assert!(verify_step(s3.as_ref(), "20").unwrap().is_ok());
    let mut data = s3.read("10/params/tensors.safetensors").unwrap();
    let last = data.len() - 1;
    data[last] ^= 1;
    s3.write("10/params/tensors.safetensors", &data).unwrap();
    assert!(!verify_step(s3.as_ref(), "10").unwrap().is_ok());
    let e = m.restore(Some(10)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(e.to_string().contains("tensors.safetensors"), "{e}");
}

#[test]
fn retention_max_to_keep_and_best_metric_on_s3() {
    let Some((uri, config)) = s3_common::fresh_root("retention") else {
        return;
    };
    let mut m = CheckpointManager::builder(uri.as_str())
        .max_to_keep(2)
        .best_metric("loss", BestMode::Min)
        .build()
        .unwrap();
    // Losses: step 3 is the best; the best two by loss are kept.
    for (step, loss) in [(1, 0.9), (2, 0.8), (3, 0.1), (4, 0.7), (5, 0.6)] {
        assert!(save(&mut m, step, loss));
    }
    m.wait_until_finished().unwrap();
    assert_eq!(m.all_steps(), vec![3, 5]);
    assert_eq!(m.best_step(), Some(3));
    m.close().unwrap();
    // Deleted steps are gone from the bucket, not only from the listing.
    let s3 = s3_common::store(&config);
    for gone in [1, 2, 4] {
        assert!(
            s3.list_recursive(&gone.to_string()).unwrap().is_empty(),
            "step {gone} left objects"
        );
    }
    let m = CheckpointManager::builder(uri.as_str())
        .max_to_keep(2)
        .best_metric("loss", BestMode::Min)
        .read_only(true)
        .build()
        .unwrap();
    assert_eq!(m.all_steps(), vec![3, 5]);
    assert_eq!(m.best_step(), Some(3));

    // max_to_keep alone: the newest n.
    let Some((uri, _)) = s3_common::fresh_root("latestn") else {
        return;
    };
    let mut m = CheckpointManager::builder(uri.as_str())
        .max_to_keep(2)
        .build()
        .unwrap();
    for step in 1..=4 {
        assert!(save(&mut m, step, 1.0));
    }
    m.close().unwrap();
    let m = CheckpointManager::builder(uri.as_str())
        .read_only(true)
        .build()
        .unwrap();
    assert_eq!(m.all_steps(), vec![3, 4]);
}

#[test]
fn async_saves_on_s3() {
    let Some((uri, _)) = s3_common::fresh_root("async") else {
        return;
    };
    let mut m = CheckpointManager::builder(uri.as_str())
        .enable_async_checkpointing(true)
        .max_to_keep(3)
        .build()
        .unwrap();
    for step in 0..6 {
        assert!(save(&mut m, step, 1.0 / (step as f64 + 1.0)));
    }
    m.wait_until_finished().unwrap();
    assert_eq!(m.all_steps(), vec![3, 4, 5]);
    assert_eq!(
        m.restore(None).unwrap().tensors("params").unwrap(),
        &tensors(5)
    );
    m.close().unwrap();
}

/// A committed step written behind the manager's back: a background save on S3 does not block
/// on checking for it (a network round trip: no request is made before `save` returns), but its
/// thread checks before writing anything, so the save fails with `AlreadyExists` reported by the
/// next call and the existing step is untouched; a synchronous save refuses it at once.
#[test]
fn unlisted_committed_step_on_s3_is_refused_without_blocking_the_caller() {
    let Some((_uri, config)) = s3_common::fresh_root("unlisted") else {
        return;
    };
    let s3 = s3_common::store(&config);
    let gate = Gate::new();
    let gated: Arc<dyn Store> =
        Arc::new(LatencyStore::new(Arc::clone(&s3), Duration::ZERO).with_gate(gate.clone()));
    // Two writers of one root: only without the writer lease (each still claims its steps).
    let mut m = CheckpointManager::builder_with_store(gated)
        .enable_async_checkpointing(true)
        .writer_lease_ttl_secs(None)
        .build()
        .unwrap();
    let mut sync = CheckpointManager::builder_with_store(Arc::clone(&s3))
        .enable_async_checkpointing(false)
        .writer_lease_ttl_secs(None)
        .build()
        .unwrap();
    write_raw_steps(&s3, 6);
    let before = s3.read("5/_CHECKPOINT_METADATA").unwrap();
    // Every request now blocks until the gate opens: `save` returns only if it makes none.
    gate.close();
    let (tx, rx) = mpsc::channel();
    let saver = std::thread::spawn(move || {
        let started = save(&mut m, 5, 0.5);
        let _ = tx.send(());
        (m, started)
    });
    let returned = rx.recv_timeout(Duration::from_secs(20)).is_ok();
    gate.open();
    let (m, started) = saver.join().unwrap();
    assert!(returned, "save blocked on a store request");
    assert!(started, "the save was started");
    let e = m.wait_until_finished().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert_eq!(e.step(), Some(5), "{e}");
    assert!(e.to_string().contains("reload"), "{e}");
    assert_eq!(s3.read("5/_CHECKPOINT_METADATA").unwrap(), before);
    assert!(s3.stat("5/params").unwrap().is_none(), "nothing written");
    assert!(m.all_steps().is_empty());

    let e = sync
        .save(
            5,
            Composite::new().json_value("s", json!(5)),
            SaveOptions::default(),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert_eq!(s3.read("5/_CHECKPOINT_METADATA").unwrap(), before);
    m.close().unwrap();
}

#[test]
fn commit_file_on_s3_no_rename_and_commit_file_last() {
    let Some((_uri, config)) = s3_common::fresh_root("order") else {
        return;
    };
    let counting = Arc::new(CountingStore::new(s3_common::store(&config)));
    let mut m = CheckpointManager::builder_with_store(counting.clone())
        .max_to_keep(1)
        .build()
        .unwrap();
    assert!(save(&mut m, 1, 0.5));
    assert!(save(&mut m, 2, 0.4));
    m.close().unwrap();
    let counts = counting.counts();
    assert_eq!(counts.rename, 0, "{counts:?}");
    for step in ["1", "2"] {
        let written: Vec<String> = counting
            .written_paths()
            .into_iter()
            .filter(|p| p.starts_with(&format!("{step}/")))
            .collect();
        assert!(written.len() > 3, "{written:?}");
        assert_eq!(
            written.last().map(String::as_str),
            Some(format!("{step}/{COMMIT_SUCCESS_FILE}").as_str()),
            "the step's commit file is its last object written: {written:?}"
        );
    }
    // No tmp names on S3: everything is written in place.
    assert!(counting
        .written_paths()
        .iter()
        .all(|p| !p.contains(".orbax-checkpoint-tmp")));
}
