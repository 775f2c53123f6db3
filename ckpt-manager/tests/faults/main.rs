//! Fault injection (issue 4, "What it must show" 2): for every k, failing the k-th storage
//! operation of a save leaves no visible partial step, returns an error naming the step, and the
//! next save succeeds; plus torn writes, path patterns, and a delete cut short.
//!
//! Each case runs on a fresh local root (in `/dev/shm` where there is one) through `FaultStore`
//! (ckpt-storage), with steps 1 and 2 committed first and `max_to_keep(2)`, so that the save of
//! step 3 also runs retention (deletes step 1). The operations of a clean save of step 3 are first
//! recorded one by one (kind and path) by a tracing store under the `FaultStore`, and their number
//! checked against `FaultStore::ops_seen`; then for every k from 1 to that number the k-th is
//! failed (`FaultRule::nth`), plainly, torn when it is a write, and (async) with the failure
//! collected by the next `save` instead of `wait_until_finished` for every other k — for
//! synchronous and asynchronous saves, with the atomic-rename and the commit-file protocol.
//!
//! Whatever the outcome, the invariant checked is "a step is listed iff it restores completely"
//! (contents equal to what was saved, checksum manifest verified), by the failing manager and by a
//! fresh read-only manager over the plain store. The expected outcome depends on where op k lies
//! relative to the commit (the rename of `3.orbax-checkpoint-tmp` to `3`, or the conditional create
//! of `3/commit_success.txt`):
//!
//! - before or at the commit: the save fails naming step 3 (`err.step() == Some(3)`), step 3 is
//!   not visible, nothing was deleted for it (steps 1 and 2 listed), nothing is left over;
//! - after it (the parent-directory fsync of the commit, retention's listing and deletion): the
//!   step is committed and restorable; the save may succeed (retention failures are logged, the
//!   step it could not delete stays listed) or, for the fsync that completes an atomic-rename
//!   commit, fail naming step 3 — then step 3 is complete on disk, and a fresh manager lists it.
//!
//! After disarming, the next save must succeed and be listed, and a manager opened with
//! `cleanup_tmp_directories` leaves nothing over.
#![cfg(feature = "latest")]

use ckpt_manager::core::{ErrorKind, Result, TMP_DIR_SUFFIX};
use ckpt_manager::handlers::{PyTree, RestoredItem, Tensor, TensorMap};
use ckpt_manager::storage::{
    provided, AtomicityMode, Entry, EntryMeta, FaultRule, FaultStore, LocalStore, OpKind,
    ReadStream, Store,
};
use ckpt_manager::{CheckpointManager, Composite, Error, Metrics, SaveOptions, Step};
use serde_json::{json, Value};
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};

mod step_items;
mod tracing_store;
use step_items::*;
use tracing_store::{Op, Tracer};

/// Fails `cond` with a message (for functions that report problems rather than panic).
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// How the manager under test saves.
#[derive(Debug, Clone, Copy)]
struct Mode {
    asynchronous: bool,
    atomicity: AtomicityMode,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = if self.asynchronous { "async" } else { "sync" };
        let c = match self.atomicity {
            AtomicityMode::CommitFile => "commit file",
            _ => "atomic rename",
        };
        write!(f, "{a} save, {c}")
    }
}

const SYNC: Mode = Mode {
    asynchronous: false,
    atomicity: AtomicityMode::AtomicRename,
};
const ASYNC: Mode = Mode {
    asynchronous: true,
    atomicity: AtomicityMode::AtomicRename,
};

// ------------------------------------------------------------------------- the setup

/// A fresh root with steps 1 and 2 committed through `FaultStore(Tracer(local))`.
struct Setup {
    dir: tempfile::TempDir,
    local: Arc<dyn Store>,
    tracer: Arc<Tracer>,
    fault: Arc<FaultStore>,
    mngr: CheckpointManager,
    /// `fault.ops_seen()` once steps 1 and 2 are committed.
    ops_before: u64,
    mode: Mode,
}

impl Setup {
    fn new(mode: Mode) -> Setup {
        let dir = scratch();
        let local: Arc<dyn Store> =
            Arc::new(LocalStore::open(dir.path().join("root")).expect("local store"));
        let tracer = Arc::new(Tracer::new(Arc::clone(&local)));
        let fault = Arc::new(FaultStore::new(tracer.clone() as Arc<dyn Store>));
        let mut mngr = CheckpointManager::builder_with_store(fault.clone() as Arc<dyn Store>)
            .max_to_keep(2)
            .enable_async_checkpointing(mode.asynchronous)
            .atomicity(mode.atomicity)
            .build()
            .expect("open");
        for step in [1, 2] {
            assert!(mngr.save(step, items(step), opts(step)).expect("save"));
        }
        mngr.wait_until_finished().expect("steps 1 and 2");
        assert_eq!(mngr.all_steps(), vec![1, 2]);
        let ops_before = fault.ops_seen();
        Setup {
            dir,
            local,
            tracer,
            fault,
            mngr,
            ops_before,
            mode,
        }
    }

    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("root")
    }

    /// Saves step 3 and waits for it: the error of the save, or of the wait (async).
    fn save_and_wait(&mut self, step: Step) -> Result<bool> {
        let saved = self.mngr.save(step, items(step), opts(step))?;
        self.mngr.wait_until_finished()?;
        Ok(saved)
    }

    /// After a fault: disarms, saves `next`, which must succeed, be listed and restore (through
    /// this manager, and through a fresh one opened with `cleanup_tmp_directories`, which must
    /// leave nothing over). Every other listed step was checked after the fault already.
    fn recover(mut self, next: Step) -> std::result::Result<(), String> {
        self.fault.disarm();
        match self.save_and_wait(next) {
            Ok(true) => {}
            other => return Err(format!("the next save after disarming gives {other:?}")),
        }
        let listed = self.mngr.all_steps();
        ensure!(listed.contains(&next), "step {next} not listed: {listed:?}");
        check_step(&self.mngr, next)?;
        let local = Arc::clone(&self.local);
        let root = self.root();
        drop(self.mngr);
        let fresh = CheckpointManager::builder_with_store(local)
            .atomicity(self.mode.atomicity)
            .cleanup_tmp_directories(true)
            .build()
            .map_err(|e| format!("reopen with cleanup: {e}"))?;
        let left = leftovers(&root);
        ensure!(left.is_empty(), "leftovers after cleanup: {left:?}");
        let steps = fresh.all_steps();
        ensure!(
            steps.contains(&next),
            "a fresh manager does not list step {next}: {steps:?}"
        );
        check_step(&fresh, next)
    }
}

/// The store operations of a clean save of step 3 (after steps 1 and 2), as the fault store
/// counts them.
fn clean_trace(mode: Mode) -> Vec<Op> {
    let mut s = Setup::new(mode);
    let before_trace = s.tracer.ops().len();
    assert!(s.save_and_wait(3).expect("clean save"));
    let n = s.fault.ops_seen() - s.ops_before;
    let trace: Vec<Op> = s.tracer.ops()[before_trace..].to_vec();
    assert_eq!(
        trace.len() as u64,
        n,
        "the tracer sees every operation the fault store counts"
    );
    assert_eq!(
        s.mngr.all_steps(),
        vec![2, 3],
        "clean save: retention keeps 2"
    );
    trace
}

/// The position (1-based) of the commit of step 3: the rename of its tmp directory to `3`
/// (atomic rename), or the conditional create of `3/commit_success.txt` (commit file).
fn commit_index(trace: &[Op]) -> usize {
    trace
        .iter()
        .position(|op| {
            (op.kind == OpKind::Rename && op.to.as_deref() == Some("3"))
                || (op.kind == OpKind::WriteIfAbsent && op.path == "3/commit_success.txt")
        })
        .map(|i| i + 1)
        .expect("a save of step 3 commits it")
}

/// Fails op k (of the save of step 3) and checks the outcome; `torn` tears it if it is a write.
/// `report_on_next_save`: for async saves, let the next `save` (not `wait_until_finished`) report
/// the background failure. Returns the first problem found.
fn fault_case(
    mode: Mode,
    k: usize,
    trace: &[Op],
    torn: bool,
    report_on_next_save: bool,
) -> std::result::Result<(), String> {
    let op = &trace[k - 1];
    let commit = commit_index(trace);
    let ctx = format!(
        "{mode}, op {k}/{} ({} {:?}{}){}{}",
        trace.len(),
        op.kind,
        op.path,
        op.to
            .as_deref()
            .map(|t| format!(" -> {t:?}"))
            .unwrap_or_default(),
        if torn { ", torn" } else { "" },
        if report_on_next_save {
            ", reported by the next save"
        } else {
            ""
        }
    );
    let mut s = Setup::new(mode);
    let mut rule = FaultRule::nth(s.ops_before + k as u64);
    if torn {
        rule = rule.torn();
    }
    s.fault.add_rule(rule);

    let mut step4_saved = false;
    let result: Result<bool> = if report_on_next_save {
        // save(3) returns at once; the failure comes back from the next save (which then does
        // not save step 4), or from save(3) itself when it failed before going to the background.
        match s.mngr.save(3, items(3), opts(3)) {
            Err(e) => Err(e),
            Ok(_) => {
                // Let the background save finish before the next save asks (so the outcome
                // does not depend on timing), without collecting its result.
                while s.mngr.is_saving_in_progress() {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                match s.mngr.save(4, items(4), opts(4)) {
                    Err(e) => Err(e),
                    Ok(saved) => {
                        // No failure of step 3 was pending; step 4 is being saved.
                        step4_saved = saved;
                        s.mngr.wait_until_finished().map(|()| true)
                    }
                }
            }
        }
    } else {
        s.save_and_wait(3)
    };
    ensure!(
        s.fault.faults_injected() == 1,
        "{ctx}: the fault did not fire (the operations of the save changed?)"
    );
    let fresh = fresh_listing(&s.local).map_err(|e| format!("{ctx}: {e}"))?;
    let mine = s.mngr.all_steps();
    for &st in &mine {
        check_step(&s.mngr, st).map_err(|e| format!("{ctx}: the failing manager: {e}"))?;
    }
    match &result {
        Err(e) => {
            ensure!(
                e.step() == Some(3),
                "{ctx}: the error does not name step 3 (step {:?}): {e}",
                e.step()
            );
            ensure!(
                mine == [1, 2],
                "{ctx}: after the failed save its manager lists {mine:?}, not [1, 2]"
            );
            if k <= commit {
                ensure!(
                    fresh == [1, 2],
                    "{ctx}: a fresh manager lists {fresh:?} after a failure before the commit"
                );
                let left = leftovers(&s.root());
                ensure!(left.is_empty(), "{ctx}: the failed save left {left:?}");
            } else {
                // The rename happened; only what completes the commit failed. The step is whole
                // on disk (fresh_listing restored it) and a fresh manager may list it.
                ensure!(
                    op.kind == OpKind::SyncDir && k == commit + 1,
                    "{ctx}: a failure after the commit other than its fsync was reported: {e}"
                );
                ensure!(fresh.contains(&1) && fresh.contains(&2), "{ctx}: {fresh:?}");
            }
        }
        Ok(saved) => {
            ensure!(*saved, "{ctx}: save declined");
            ensure!(
                k > commit,
                "{ctx}: the save succeeded although an operation before its commit failed"
            );
            ensure!(mine.contains(&3), "{ctx}: step 3 not listed: {mine:?}");
            ensure!(fresh.contains(&3), "{ctx}: step 3 not visible: {fresh:?}");
            // max_to_keep 2: the step before the newest is kept.
            let kept = if step4_saved { 4 } else { 2 };
            ensure!(
                fresh.contains(&kept),
                "{ctx}: step {kept} was deleted: {fresh:?}"
            );
            ensure!(
                mine == fresh,
                "{ctx}: the manager lists {mine:?}, a fresh manager {fresh:?}"
            );
        }
    }
    s.recover(if step4_saved { 5 } else { 4 })
        .map_err(|e| format!("{ctx}: {e}"))
}

fn every_k(mode: Mode) {
    let trace = clean_trace(mode);
    let commit = commit_index(&trace);
    assert!(
        trace.iter().take(commit).any(|o| o.kind == OpKind::Write),
        "the save writes before it commits: {trace:#?}"
    );
    let mut problems = Vec::new();
    let mut cases = 0;
    for k in 1..=trace.len() {
        let mut variants = vec![(false, false)];
        if mode.asynchronous && k.is_multiple_of(2) {
            variants.push((false, true));
        }
        if trace[k - 1].kind == OpKind::Write {
            variants.push((true, false));
        }
        for (torn, next_save) in variants {
            cases += 1;
            if let Err(e) = fault_case(mode, k, &trace, torn, next_save) {
                problems.push(e);
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{mode}: {} of {cases} fault cases over the {} operations of a save went wrong:\n{}",
        problems.len(),
        trace.len(),
        problems.join("\n")
    );
}

#[test]
fn every_operation_of_a_sync_save_fails_cleanly() {
    every_k(SYNC);
}

#[test]
fn every_operation_of_an_async_save_fails_cleanly() {
    every_k(ASYNC);
}

/// The commit-file protocol (what object stores use), on the local store.
#[test]
fn every_operation_of_a_commit_file_save_fails_cleanly() {
    for asynchronous in [false, true] {
        every_k(Mode {
            asynchronous,
            atomicity: AtomicityMode::CommitFile,
        });
    }
}

/// Path patterns: every write below the step's tmp directory fails (plain and torn), the tensor
/// file's writes fail, every operation on the tmp directory fails (then even the failed save's own
/// cleanup fails, and the next manager's `cleanup_tmp_directories` removes what is left), the
/// commit file's write fails; and the same below `3/` for the commit-file protocol.
#[test]
fn path_pattern_faults() {
    let atomic = [
        (
            "writes under 3.orbax-checkpoint-tmp/",
            FaultRule::op(OpKind::Write).and_path("3.orbax-checkpoint-tmp/"),
        ),
        (
            "torn writes under 3.orbax-checkpoint-tmp/",
            FaultRule::op(OpKind::Write)
                .and_path("3.orbax-checkpoint-tmp/")
                .torn(),
        ),
        (
            "tensor file writes",
            FaultRule::op(OpKind::Write).and_path("3.orbax-checkpoint-tmp/params*"),
        ),
        (
            "every op on 3.orbax-checkpoint-tmp",
            FaultRule::path("3.orbax-checkpoint-tmp"),
        ),
        (
            "the commit file of step 3",
            FaultRule::path("3.orbax-checkpoint-tmp/commit_success.txt"),
        ),
    ];
    let commit_file = [
        (
            "writes under 3/",
            FaultRule::op(OpKind::Write).and_path("3/*"),
        ),
        (
            "torn writes under 3/",
            FaultRule::op(OpKind::Write).and_path("3/*").torn(),
        ),
        ("every op under 3/", FaultRule::path("3/*")),
        (
            "the commit file of step 3",
            FaultRule::path("3/commit_success.txt"),
        ),
    ];
    let modes = [
        (SYNC, &atomic[..]),
        (ASYNC, &atomic[..]),
        (
            Mode {
                asynchronous: false,
                atomicity: AtomicityMode::CommitFile,
            },
            &commit_file[..],
        ),
        (
            Mode {
                asynchronous: true,
                atomicity: AtomicityMode::CommitFile,
            },
            &commit_file[..],
        ),
    ];
    for (mode, rules) in modes {
        for (what, rule) in rules {
            let ctx = format!("{mode}, {what}");
            let mut s = Setup::new(mode);
            s.fault.add_rule(rule.clone());
            let err = match s.save_and_wait(3) {
                Err(e) => e,
                Ok(v) => panic!("{ctx}: save succeeded ({v})"),
            };
            assert_eq!(err.step(), Some(3), "{ctx}: {err}");
            assert!(s.fault.faults_injected() >= 1, "{ctx}: no fault fired");
            assert_eq!(s.mngr.all_steps(), vec![1, 2], "{ctx}");
            let fresh = fresh_listing(&s.local).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            assert_eq!(fresh, vec![1, 2], "{ctx}");
            s.recover(4).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        }
    }
}

/// Issue 4's regression row "failed async save", with the failure in the store: writes under the
/// step of save(20) fail; save(20) returns; the next call reports step 20; 20 is never listed;
/// the call after that saves.
#[test]
fn failed_async_save_is_reported_by_the_next_call() {
    let dir = scratch();
    let local: Arc<dyn Store> = Arc::new(LocalStore::open(dir.path()).expect("local"));
    let fault = Arc::new(FaultStore::new(Arc::clone(&local)));
    let mut m = CheckpointManager::builder_with_store(fault.clone() as Arc<dyn Store>)
        .max_to_keep(2)
        .build()
        .expect("open");
    for step in [10, 11] {
        m.save(step, items(step), opts(step)).expect("save");
    }
    m.wait_until_finished().expect("10, 11");
    fault.add_rule(FaultRule::op(OpKind::Write).and_path("20.orbax-checkpoint-tmp/"));
    assert!(m.save(20, items(20), opts(20)).expect("save(20) returns"));
    while m.is_saving_in_progress() {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let err = m
        .save(21, items(21), opts(21))
        .expect_err("the next call reports step 20");
    assert_eq!(err.step(), Some(20), "{err}");
    assert_eq!(
        m.all_steps(),
        vec![10, 11],
        "20 is never listed, nothing deleted"
    );
    assert_eq!(fresh_listing(&local).unwrap(), vec![10, 11]);
    // Reported once: the same call again saves.
    assert!(m.save(21, items(21), opts(21)).expect("save(21)"));
    m.wait_until_finished().expect("21");
    assert_eq!(m.all_steps(), vec![11, 21]);
    assert_eq!(fresh_listing(&local).unwrap(), vec![11, 21]);
}

/// A delete that stops half way (an I/O error, or a kill, in the middle of removing a step
/// directory) must not leave a listed step that does not restore. Retention deleting step 1 here
/// removes its `_CHECKPOINT_METADATA` and `commit_success.txt` and then fails.
#[test]
fn delete_cut_short_leaves_no_broken_listed_step() {
    let commit_file = Mode {
        asynchronous: false,
        atomicity: AtomicityMode::CommitFile,
    };
    for mode in [SYNC, ASYNC, commit_file] {
        let mut s = Setup::new(mode);
        *s.tracer.cut_delete.lock().unwrap() = Some((
            "1".to_string(),
            vec![
                "_CHECKPOINT_METADATA".to_string(),
                "commit_success.txt".to_string(),
            ],
        ));
        // Retention's failure to delete step 1 is logged; the save itself succeeds.
        assert!(s.save_and_wait(3).expect("save 3"));
        assert_eq!(
            *s.tracer.cuts.lock().unwrap(),
            1,
            "{mode}: the delete of step 1 was not cut"
        );
        for &st in &s.mngr.all_steps() {
            check_step(&s.mngr, st).unwrap_or_else(|e| {
                panic!("{mode}: after a delete cut short, the manager lists a broken step: {e}")
            });
        }
        let local = Arc::clone(&s.local);
        let root = s.root();
        drop(s.mngr);
        let fresh = fresh_listing(&local).unwrap_or_else(|e| {
            panic!("{mode}: after a delete cut short, a fresh manager lists a broken step: {e}")
        });
        assert_eq!(fresh, vec![2, 3], "{mode}");
        let cleaned = CheckpointManager::builder_with_store(local)
            .atomicity(mode.atomicity)
            .cleanup_tmp_directories(true)
            .build()
            .expect("reopen with cleanup");
        assert_eq!(cleaned.all_steps(), vec![2, 3], "{mode}");
        assert!(
            leftovers(&root).is_empty(),
            "{mode}: {:?}",
            leftovers(&root)
        );
    }
}

#[test]
fn error_kinds_of_injected_faults_are_storage() {
    // The injected error is a Storage error: what the manager reports for a failed write.
    let mut s = Setup::new(SYNC);
    s.fault
        .add_rule(FaultRule::op(OpKind::Write).and_path("3.orbax-checkpoint-tmp/state"));
    let err = s.save_and_wait(3).expect_err("save fails");
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    assert_eq!(err.step(), Some(3));
    assert!(
        err.chain().to_string().contains("injected fault"),
        "{}",
        err.chain()
    );
}
