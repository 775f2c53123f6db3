//! Issue 16, evaluator jobs: `StepWatcher` (Orbax `checkpoint_utils`, docs/orbax-behaviour.md
//! §5.12) and `ckpt watch`, against a live writer on local disk and on S3 (moto). Every step is
//! yielded once, ascending, only once committed; steps retention deleted while the watcher
//! waited are skipped without an error; a root that does not exist yet is waited for. No test
//! depends on timing: a watcher stops on a done condition (the writer finished, or a last
//! step), timeouts only bound a failure.
#![cfg(feature = "latest")]

mod s3_common;

use ckpt_manager::storage::{LocalStore, Store};
use ckpt_manager::{CheckpointManager, Composite, SaveOptions, StepWatcher};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Saves steps `1..=last` on `store` with metrics, keeping `max_to_keep`, pausing `pause_ms`
/// between saves; sets `done` at the end.
fn writer(
    store: Arc<dyn Store>,
    last: u64,
    max_to_keep: Option<u64>,
    pause_ms: u64,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut b = CheckpointManager::builder_with_store(store).enable_async_checkpointing(false);
        if let Some(n) = max_to_keep {
            b = b.max_to_keep(n);
        }
        let mut m = b.build().unwrap();
        for step in 1..=last {
            let mut metrics = serde_json::Map::new();
            metrics.insert("loss".into(), json!(1.0 / step as f64));
            m.save(
                step,
                Composite::new().json_value("state", json!({ "step": step })),
                SaveOptions::default().metrics(metrics),
            )
            .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(pause_ms));
        }
        m.close().unwrap();
        done.store(true, Ordering::SeqCst);
    })
}

/// Watches `store` until the writer is done and nothing new is left; returns the steps given.
fn watch_all(store: Arc<dyn Store>, done: Arc<AtomicBool>) -> Vec<u64> {
    let watcher = StepWatcher::with_store(store)
        .poll_interval_secs(0.02)
        .timeout_secs(Some(0.1))
        .timeout_fn(move || done.load(Ordering::SeqCst));
    let mut steps = Vec::new();
    for info in watcher {
        let info = info.unwrap();
        assert_eq!(
            info.metrics.as_ref().unwrap()["loss"],
            json!(1.0 / info.step as f64),
            "step {} comes with its metrics",
            info.step
        );
        steps.push(info.step);
    }
    steps
}

fn check_live_writer(store: impl Fn() -> Arc<dyn Store>, what: &str) {
    // Every step kept: the watcher gives each exactly once, in order.
    let done = Arc::new(AtomicBool::new(false));
    let w = writer(store(), 8, None, 30, Arc::clone(&done));
    let seen = watch_all(store(), done);
    w.join().unwrap();
    assert_eq!(
        seen,
        (1..=8).collect::<Vec<_>>(),
        "{what}: every step once, in order"
    );
}

fn check_retention_while_waiting(store: Arc<dyn Store>, what: &str) {
    // Retention keeps one step: some are deleted before the watcher looks; it never errs,
    // gives each step it saw once, ascending, and always the last one.
    let done = Arc::new(AtomicBool::new(false));
    let w = writer(Arc::clone(&store), 10, Some(1), 0, Arc::clone(&done));
    let seen = watch_all(store, done);
    w.join().unwrap();
    assert!(
        seen.windows(2).all(|p| p[0] < p[1]),
        "{what}: ascending, no repeats: {seen:?}"
    );
    assert_eq!(
        seen.last(),
        Some(&10),
        "{what}: the last step is seen: {seen:?}"
    );
}

#[test]
fn a_live_writer_on_local_disk_is_followed_step_by_step() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    // The watcher starts before the root exists.
    let store = || -> Arc<dyn Store> { Arc::new(LocalStore::open(&root).unwrap()) };
    check_live_writer(store, "local");
    let dir2 = tempfile::tempdir().unwrap();
    check_retention_while_waiting(
        Arc::new(LocalStore::open(dir2.path()).unwrap()),
        "local, max_to_keep 1",
    );
}

#[test]
fn a_live_writer_on_s3_is_followed_step_by_step() {
    let Some((_, config)) = s3_common::fresh_root("watch") else {
        return;
    };
    check_live_writer(|| s3_common::store(&config), "s3");
    let Some((_, config2)) = s3_common::fresh_root("watch-retention") else {
        return;
    };
    check_retention_while_waiting(s3_common::store(&config2), "s3, max_to_keep 1");
}

#[test]
fn after_until_and_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(LocalStore::open(dir.path()).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    writer(Arc::clone(&store), 5, None, 0, Arc::clone(&done))
        .join()
        .unwrap();
    // After 2, until 4: steps 3 and 4, then the iterator ends without waiting.
    let got: Vec<u64> = StepWatcher::with_store(Arc::clone(&store))
        .after(2)
        .until(4)
        .map(|i| i.unwrap().step)
        .collect();
    assert_eq!(got, [3, 4]);
    // A timeout of 0 still gives what is there (Orbax: the existing latest step), then ends.
    let got: Vec<u64> = StepWatcher::with_store(Arc::clone(&store))
        .timeout_secs(Some(0.0))
        .map(|i| i.unwrap().step)
        .collect();
    assert_eq!(got, [1, 2, 3, 4, 5]);
    // Nothing new: wait_for_new_step gives None at the timeout; timeout_fn is asked each time.
    let mut asked = 0;
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = Arc::clone(&counter);
    let mut w = StepWatcher::with_store(Arc::clone(&store))
        .after(5)
        .poll_interval_secs(0.01)
        .timeout_secs(Some(0.0))
        .timeout_fn(move || c.fetch_add(1, Ordering::SeqCst) >= 2);
    assert!(w.wait_for_new_step().unwrap().is_none());
    asked += counter.load(Ordering::SeqCst);
    assert_eq!(asked, 3, "timeout_fn asked until it said stop");
    assert_eq!(w.last_step(), Some(5));
    // The Orbax-named helper: the latest step at or after until_step.
    let root = dir.path().to_string_lossy().into_owned();
    assert_eq!(
        ckpt_manager::wait_for_new_checkpoint(&root, Some(3), 0.01, Some(0.0)).unwrap(),
        Some(5)
    );
    assert_eq!(
        ckpt_manager::wait_for_new_checkpoint(&root, Some(6), 0.01, Some(0.0)).unwrap(),
        None
    );
    // A root that does not exist: no steps, no error, None at the timeout.
    let missing = dir.path().join("not-yet");
    assert_eq!(
        ckpt_manager::wait_for_new_checkpoint(&missing.to_string_lossy(), None, 0.01, Some(0.0))
            .unwrap(),
        None
    );
    assert!(!missing.exists(), "the watcher never creates the root");
}

/// `ckpt watch --json --until N` prints each step of a live writer once, in order, one JSON
/// object a line, and exits 0 after step N.
#[cfg(feature = "cli")]
#[test]
fn ckpt_watch_prints_each_step_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let done = Arc::new(AtomicBool::new(false));
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(["watch", &root.to_string_lossy(), "--json", "--until", "6"])
        .args(["--interval", "0.05", "--timeout", "600"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let w = writer(
        Arc::new(LocalStore::open(&root).unwrap()),
        6,
        None,
        50,
        done,
    );
    let out = child.wait_with_output().unwrap();
    w.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps: Vec<u64> = lines.iter().map(|l| l["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [1, 2, 3, 4, 5, 6], "{lines:?}");
    for l in &lines {
        assert!(l["committed_at"].as_str().unwrap().contains('T'), "{l}");
        assert_eq!(l["name"], l["step"].to_string());
        assert!(l["metrics"]["loss"].is_number(), "{l}");
    }
}
