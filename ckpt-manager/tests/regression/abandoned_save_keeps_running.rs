//! Issue 11, item 3: after `async_timeout_secs` fired (`Timeout: … it was abandoned`), the
//! background save still committed later when its writes unblocked, and the next save ran at
//! the same time as it while `is_saving_in_progress()` said false. Now an abandoned save is
//! fenced: it commits nothing and removes what it wrote, it stays "in progress" until its
//! thread stops, and no other save starts before that.

use ckpt_manager::core::ErrorKind;
use ckpt_manager::storage::{Gate, LatencyStore, LocalStore, Store};
use ckpt_manager::{CheckpointManager, Composite, SaveOptions};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "{what} within 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn an_abandoned_background_save_never_commits_and_blocks_the_next_save() {
    let d = tempfile::tempdir().unwrap();
    let local: Arc<dyn Store> = Arc::new(LocalStore::open(d.path()).unwrap());
    let gate = Gate::new();
    // Only the writes of step 1's item are held.
    let store: Arc<dyn Store> = Arc::new(
        LatencyStore::new(Arc::clone(&local), Duration::ZERO)
            .only_paths("1.orbax-checkpoint-tmp/state")
            .with_gate(gate.clone()),
    );
    let mut m = CheckpointManager::builder_with_store(store)
        .async_timeout_secs(1)
        .build()
        .unwrap();
    gate.close();
    assert!(m
        .save(
            1,
            Composite::new().json_value("state", json!(1)),
            SaveOptions::default()
        )
        .unwrap());
    assert!(
        gate.wait_for_waiting(1, Duration::from_secs(60)),
        "the save is held"
    );
    let err = m.wait_until_finished().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains("will not commit"), "{err}");
    assert!(
        m.is_saving_in_progress(),
        "an abandoned save whose thread still runs is in progress"
    );

    // The next save does not start beside it: it waits for it, and times out too.
    let err = m
        .save(
            2,
            Composite::new().json_value("state", json!(2)),
            SaveOptions::default(),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains("has still not stopped"), "{err}");
    assert!(
        !d.path().join("2.orbax-checkpoint-tmp").exists(),
        "step 2 never began"
    );

    // Its writes unblock: it stops at its commit point, commits nothing, removes its tmp dir.
    gate.open();
    wait_until("the abandoned save stops", || !m.is_saving_in_progress());
    m.wait_until_finished().unwrap();
    assert!(m.all_steps().is_empty());
    assert!(
        !d.path().join("1").exists(),
        "the abandoned step never committed"
    );
    assert!(
        !d.path().join("1.orbax-checkpoint-tmp").exists(),
        "and left no tmp dir"
    );

    // Saves work again, one at a time.
    assert!(m
        .save(
            2,
            Composite::new().json_value("state", json!(2)),
            SaveOptions::default()
        )
        .unwrap());
    m.wait_until_finished().unwrap();
    assert_eq!(m.all_steps(), vec![2]);
    m.close().unwrap();
    let fresh = CheckpointManager::builder_with_store(local)
        .read_only(true)
        .build()
        .unwrap();
    assert_eq!(fresh.all_steps(), vec![2]);
}
