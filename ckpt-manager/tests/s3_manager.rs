//! The manager on S3 (issue 5), against the local S3-compatible server that `cargo xtask test`
//! starts (see `s3_common`): listing a big root in one request, save and restore, retention,
//! async saves, metrics, root metadata, checksums, and the commit-file protocol's write order.

mod s3_common;

use ckpt_manager::core::{commit_success_text, COMMIT_SUCCESS_FILE, STEP_METADATA_FILE};
use ckpt_manager::storage::{CountingStore, OpKind, Store};
use ckpt_manager::CheckpointManager;
use std::sync::Arc;

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
        .build()
        .unwrap();
    let counts = counting.counts();
    assert_eq!(m.all_steps(), (0..2000).collect::<Vec<u64>>());
    assert_eq!(
        counts.get(OpKind::ListDir),
        1,
        "one (paginated, recursive) listing: {counts:?}"
    );
    // Opening checks the root itself (two stats of `""`, one `create_dir("")`, a no-op on S3):
    // a fixed cost, whatever the number of steps. Nothing is asked of any step.
    assert!(counts.stat <= 2, "no stat per step: {counts:?}");
    assert_eq!(
        counts.read + counts.read_range,
        0,
        "no read per step: {counts:?}"
    );
    assert!(counts.total() <= 4, "nothing per step: {counts:?}");
    assert_eq!(counts.writes(), 0, "{counts:?}");
}
