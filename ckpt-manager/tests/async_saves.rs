//! Asynchronous saves (spec §5.8–§5.9, issue 4): `save` returns before the write is done, at most
//! one save is in flight, a background failure is reported once and deletes nothing, restore and
//! drop wait, a stalled save times out naming its phase; and the regressions of issue 4's table.

use ckpt_manager::core::{ErrorKind, Result};
use ckpt_manager::handlers::{CheckpointHandler, ItemDir, RestoredItem, SaveItem};
use ckpt_manager::policy::{AnyPreservationPolicy, BestMode, BestN, LatestN};
use ckpt_manager::{CheckpointManager, CheckpointManagerOptions, Composite, SaveOptions};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::time::Duration;

/// A gate a test opens; handlers wait on it before writing.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    waiting: Mutex<usize>,
    cv: Condvar,
}

impl Gate {
    fn wait(&self) {
        *self.waiting.lock().unwrap() += 1;
        self.cv.notify_all();
        let mut g = self.open.lock().unwrap();
        while !*g {
            g = self.cv.wait(g).unwrap();
        }
    }
    /// Blocks until a writer is held at the gate.
    fn wait_for_writer(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while *self.waiting.lock().unwrap() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "no writer reached the gate"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

static GATES: LazyLock<Mutex<HashMap<String, Arc<Gate>>>> = LazyLock::new(Default::default);

fn gate(id: &str) -> Arc<Gate> {
    GATES
        .lock()
        .unwrap()
        .entry(id.to_string())
        .or_default()
        .clone()
}

/// Writes bytes like the bytes handler, but first waits on gate `gate`; fails when `fail` is set.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct GatedHandler {
    gate: String,
    fail: bool,
}

#[typetag::serde(name = "test.gated")]
impl CheckpointHandler for GatedHandler {
    fn type_string(&self) -> String {
        "test.gated".into()
    }
    fn save(&self, dir: &ItemDir<'_>, item: &SaveItem<'_>) -> Result<()> {
        gate(&self.gate).wait();
        if self.fail {
            return Err(ckpt_manager::Error::new(
                ErrorKind::Handler,
                "the disk is full (test)",
            ));
        }
        match item {
            SaveItem::Bytes(b) => dir.write("data.bin", b),
            _ => Err(ckpt_manager::Error::invalid_argument("bytes only")),
        }
    }
    fn restore(&self, dir: &ItemDir<'_>) -> Result<RestoredItem> {
        Ok(RestoredItem::Bytes(dir.read("data.bin")?))
    }
    fn metadata(&self, _dir: &ItemDir<'_>) -> Result<Option<Value>> {
        Ok(None)
    }
}

fn manager(
    root: &Path,
    gate_id: &str,
    fail: bool,
    tweak: impl FnOnce(&mut CheckpointManagerOptions),
) -> CheckpointManager {
    // A short timeout, so a failing assertion cannot leave `Drop` waiting on a closed gate for long.
    let mut o = CheckpointManagerOptions {
        async_timeout_secs: 20,
        ..Default::default()
    };
    tweak(&mut o);
    CheckpointManager::builder(root.to_str().unwrap())
        .options(o)
        .handler(
            "slow",
            Arc::new(GatedHandler {
                gate: gate_id.into(),
                fail,
            }),
        )
        .build()
        .unwrap()
}

fn items(step: u64) -> Composite<'static> {
    Composite::new().bytes_owned("slow", step.to_le_bytes().to_vec())
}

fn dir_names(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .is_ok_and(|e| e.file_name() == ".ckpt-writer.lock")
        })
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn open_later(id: &str, after: Duration) -> std::thread::JoinHandle<()> {
    let g = gate(id);
    std::thread::spawn(move || {
        std::thread::sleep(after);
        g.open();
    })
}

#[test]
fn save_returns_before_the_write_is_done() {
    let d = tempfile::tempdir().unwrap();
    let mut m = manager(d.path(), "returns-early", false, |_| {});
    assert!(m.save(1, items(1), SaveOptions::default()).unwrap());
    gate("returns-early").wait_for_writer();
    // The handler is still blocked: nothing is committed, the step is not listed.
    assert!(m.is_saving_in_progress());
    assert!(m.all_steps().is_empty());
    assert_eq!(m.latest_step(), None);
    assert_eq!(dir_names(d.path()), vec!["1.orbax-checkpoint-tmp"]);
    // A save decision sees the step in flight: 1 again is refused.
    assert!(!m.should_save(1));
    gate("returns-early").open();
    m.wait_until_finished().unwrap();
    assert!(!m.is_saving_in_progress());
    assert_eq!(m.all_steps(), vec![1]);
    assert_eq!(dir_names(d.path()), vec!["1"]);
    assert_eq!(
        m.restore(Some(1)).unwrap().bytes("slow").unwrap(),
        1u64.to_le_bytes()
    );
}

#[test]
fn the_next_save_waits_for_the_one_in_flight() {
    let d = tempfile::tempdir().unwrap();
    let mut m = manager(d.path(), "one-in-flight", false, |_| {});
    assert!(m.save(1, items(1), SaveOptions::default()).unwrap());
    let opener = open_later("one-in-flight", Duration::from_millis(150));
    assert!(m.save(2, items(2), SaveOptions::default()).unwrap());
    // save(2) could only start once save(1) had committed.
    assert!(m.all_steps().contains(&1));
    opener.join().unwrap();
    m.close().unwrap();
    let m = manager(d.path(), "one-in-flight", false, |_| {});
    assert_eq!(m.all_steps(), vec![1, 2]);
}

#[test]
fn a_failed_async_save_is_reported_once_and_deletes_nothing() {
    let d = tempfile::tempdir().unwrap();
    {
        let mut ok = manager(d.path(), "failing-setup", false, |o| {
            o.max_to_keep = Some(1)
        });
        gate("failing-setup").open();
        assert!(ok.save(10, items(10), SaveOptions::default()).unwrap());
        ok.close().unwrap();
    }
    gate("failing").open();
    let mut m = manager(d.path(), "failing", true, |o| o.max_to_keep = Some(1));
    // save(20) returns; the failure comes back on the next call, naming step 20.
    assert!(m.save(20, items(20), SaveOptions::default()).unwrap());
    let err = m
        .save(30, items(30), SaveOptions::default())
        .expect_err("save(30) must report the failure of step 20 first");
    assert_eq!(err.kind(), ErrorKind::Handler);
    assert_eq!(err.step(), Some(20), "{err}");
    // Reported once: the failed step is not listed, nothing was deleted for it, no tmp is left.
    m.wait_until_finished().unwrap();
    assert_eq!(m.all_steps(), vec![10]);
    assert_eq!(dir_names(d.path()), vec!["10"]);
    // 20 is never listed, even after a reopen.
    m.close().unwrap();
    let m = manager(d.path(), "failing", true, |o| o.max_to_keep = Some(1));
    assert_eq!(m.all_steps(), vec![10]);
}

#[test]
fn the_failure_is_also_reported_by_wait_and_close() {
    let d = tempfile::tempdir().unwrap();
    gate("fail-wait").open();
    let mut m = manager(d.path(), "fail-wait", true, |_| {});
    assert!(m.save(1, items(1), SaveOptions::default()).unwrap());
    assert_eq!(m.wait_until_finished().unwrap_err().step(), Some(1));
    m.wait_until_finished().unwrap();
    assert!(m.save(2, items(2), SaveOptions::default()).unwrap());
    assert_eq!(m.close().unwrap_err().step(), Some(2));
}

#[test]
fn restore_waits_for_the_save_in_flight() {
    let d = tempfile::tempdir().unwrap();
    let mut m = manager(d.path(), "restore-waits", false, |_| {});
    assert!(m.save(7, items(7), SaveOptions::default()).unwrap());
    let opener = open_later("restore-waits", Duration::from_millis(100));
    let r = m.restore(Some(7)).unwrap();
    assert_eq!(r.bytes("slow").unwrap(), 7u64.to_le_bytes());
    opener.join().unwrap();
}

#[test]
fn drop_waits_for_the_save_in_flight() {
    let d = tempfile::tempdir().unwrap();
    {
        let mut m = manager(d.path(), "drop-waits", false, |_| {});
        assert!(m.save(3, items(3), SaveOptions::default()).unwrap());
        let _opener = open_later("drop-waits", Duration::from_millis(100));
    }
    assert_eq!(dir_names(d.path()), vec!["3"]);
}

#[test]
fn a_stalled_save_times_out_naming_its_phase() {
    let d = tempfile::tempdir().unwrap();
    let mut m = manager(d.path(), "stalled", false, |o| o.async_timeout_secs = 1);
    assert!(m.save(1, items(1), SaveOptions::default()).unwrap());
    let err = m.wait_until_finished().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.to_string().contains("writing items"), "{err}");
    gate("stalled").open();
}

// ------------------------------------------------------------------ issue 4's regression table

fn loss(v: f64) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("loss".into(), json!(v));
    m
}

#[test]
fn best_never_evicts_the_newest() {
    let d = tempfile::tempdir().unwrap();
    let policy = AnyPreservationPolicy::new(vec![
        Box::new(LatestN::new(Some(2))),
        Box::new(BestN::new("loss", BestMode::Min, Some(1))),
    ]);
    let mut m = CheckpointManager::builder(d.path().to_str().unwrap())
        .preservation_policy(Arc::new(policy))
        .build()
        .unwrap();
    for (step, l) in [(100, 0.5), (200, 0.4), (300, 0.45), (400, 0.6), (500, 0.7)] {
        assert!(m
            .save(
                step,
                Composite::new().json_value("state", json!({"step": step})),
                SaveOptions::default().metrics(loss(l))
            )
            .unwrap());
    }
    m.wait_until_finished().unwrap();
    assert_eq!(m.all_steps(), vec![200, 400, 500]);
    assert_eq!(m.restore(None).unwrap().step(), 500);
    m.close().unwrap();
    let m = CheckpointManager::builder(d.path().to_str().unwrap())
        .build()
        .unwrap();
    assert_eq!(m.all_steps(), vec![200, 400, 500]);
}

#[test]
fn an_incomplete_latest_is_not_latest() {
    let d = tempfile::tempdir().unwrap();
    let mut m = CheckpointManager::builder(d.path().to_str().unwrap())
        .build()
        .unwrap();
    m.save(
        100,
        Composite::new().json_value("state", json!({"step": 100})),
        SaveOptions::default(),
    )
    .unwrap();
    m.close().unwrap();
    // Step 200 written but not committed (a save that died before its rename).
    std::fs::create_dir_all(d.path().join("200.orbax-checkpoint-tmp/state")).unwrap();
    std::fs::write(
        d.path().join("200.orbax-checkpoint-tmp/state/metadata"),
        b"{\"step\": 200}",
    )
    .unwrap();
    let m = CheckpointManager::builder(d.path().to_str().unwrap())
        .build()
        .unwrap();
    assert_eq!(m.latest_step(), Some(100));
    let r = m.restore(None).unwrap();
    assert_eq!(r.step(), 100);
    assert_eq!(r.json_value("state").unwrap(), &json!({"step": 100}));
    assert_eq!(
        m.restore(Some(200)).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn foreign_directories_are_never_listed_or_deleted() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    std::fs::create_dir_all(root.join("notes")).unwrap();
    std::fs::write(root.join("notes/todo.txt"), b"keep me").unwrap();
    std::fs::create_dir_all(root.join("300.bak")).unwrap();
    std::fs::write(root.join("300.bak/x"), b"keep me too").unwrap();
    std::fs::write(root.join("handpicked"), b"a file").unwrap();
    let mut m = CheckpointManager::builder(root.to_str().unwrap())
        .max_to_keep(1)
        .cleanup_tmp_directories(true)
        .build()
        .unwrap();
    for step in [100, 200, 300, 400] {
        m.save(
            step,
            Composite::new().json_value("state", json!({"step": step})),
            SaveOptions::default(),
        )
        .unwrap();
    }
    m.wait_until_finished().unwrap();
    assert_eq!(m.all_steps(), vec![400]);
    m.delete(400).unwrap();
    assert_eq!(m.delete(300).unwrap_err().kind(), ErrorKind::NotFound);
    m.close().unwrap();
    let m = CheckpointManager::builder(root.to_str().unwrap())
        .cleanup_tmp_directories(true)
        .build()
        .unwrap();
    assert!(m.all_steps().is_empty());
    assert_eq!(dir_names(root), vec!["300.bak", "handpicked", "notes"]);
    assert_eq!(
        std::fs::read(root.join("notes/todo.txt")).unwrap(),
        b"keep me"
    );
    assert_eq!(
        std::fs::read(root.join("300.bak/x")).unwrap(),
        b"keep me too"
    );
    assert_eq!(std::fs::read(root.join("handpicked")).unwrap(), b"a file");
}

#[test]
fn background_deletes_are_drained_by_close() {
    for subdir in [None, Some("ttl")] {
        let d = tempfile::tempdir().unwrap();
        let mut b = CheckpointManager::builder(d.path().to_str().unwrap())
            .max_to_keep(2)
            .enable_background_delete(true);
        if let Some(s) = subdir {
            b = b.todelete_subdir(s);
        }
        let mut m = b.build().unwrap();
        for step in 0..5 {
            m.save(
                step,
                Composite::new().json_value("s", json!(step)),
                SaveOptions::default(),
            )
            .unwrap();
        }
        m.wait_until_finished().unwrap();
        assert_eq!(
            m.all_steps(),
            vec![3, 4],
            "dropped from the listing at once"
        );
        m.close().unwrap();
        let mut names = dir_names(d.path());
        names.retain(|n| n != "ttl");
        assert_eq!(
            names,
            vec!["3", "4"],
            "and gone from disk once close returns"
        );
        if let Some(s) = subdir {
            assert_eq!(dir_names(&d.path().join(s)), vec!["0", "1", "2"]);
        }
    }
}
