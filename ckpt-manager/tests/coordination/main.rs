//! Issue 15: the `Coordinator` trait. `conformance` holds the functions every coordinator must
//! pass; `SingleProcess` runs them here, in this process. With the feature `etcd`, `etcd` runs
//! them with `EtcdCoordinator` in 4 real child processes (this test binary, started again in a
//! child role) against a local etcd server, plus the failure cases: a barrier that times out, a
//! SIGKILLed process noticed through its lease, etcd stopped mid-barrier, a duplicate process
//! index, a restarted job, and the cost of one barrier + one agreement.
//!
//! The etcd server comes from `CKPT_TEST_ETCD` (a loopback URL; `cargo xtask ci` and
//! `cargo xtask etcd-server` start one). Unset, the etcd tests FAIL under `CI=true` and are
//! skipped with a message otherwise.
//!
//! Run: `cargo test -p ckpt-manager --features etcd --test coordination`.

mod conformance;
#[cfg(feature = "etcd")]
mod etcd;
#[cfg(feature = "etcd")]
mod support;

use ckpt_manager::coordination::SingleProcess;

#[test]
fn single_process_passes_the_conformance_functions() {
    let c = SingleProcess::new();
    conformance::run_all(&c, "single");
    // Nobody else can publish: a wait for an unpublished value is a Timeout at once.
    let t = std::time::Instant::now();
    conformance::await_unpublished_times_out(
        &c,
        "single-again",
        std::time::Duration::from_secs(3600),
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(60));
}

/// A manager given the one-process coordinator runs the multi-process code path (the
/// exchanges of opening, deciding, saving, deleting) with one participant: the same results
/// as a manager without one, saves synchronous, preemption agreed.
#[test]
fn a_manager_with_the_single_process_coordinator_saves_restores_and_deletes() {
    use ckpt_manager::coordination::Coordinator;
    use ckpt_manager::{CheckpointManager, Composite, ManualPreemption, SaveOptions};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let c: Arc<dyn Coordinator> = Arc::new(SingleProcess::new());
    let preemption = ManualPreemption::new();
    let open = || {
        CheckpointManager::builder(dir.path().to_str().unwrap())
            .save_interval_steps(10)
            .max_to_keep(2)
            .preemption(Arc::new(preemption.clone()))
            .coordinator(Arc::clone(&c))
            .build()
            .unwrap()
    };
    let mut m = open();
    assert_eq!(m.process(), Some((0, 0)));
    for step in [10, 20, 30] {
        let bytes = vec![step as u8; 100];
        assert!(m
            .save(
                step,
                Composite::new().bytes_owned("b", bytes),
                SaveOptions::default()
            )
            .unwrap());
        // Synchronous: committed when save returns.
        assert_eq!(m.latest_step(), Some(step));
    }
    assert_eq!(m.all_steps(), vec![20, 30]);
    assert!(!m.should_save(31));
    assert!(!m.reached_preemption(32));
    preemption.trigger();
    // Step 32 was agreed before the trigger; step 33 sees it.
    assert!(!m.should_save(32));
    assert!(m.reached_preemption(33));
    assert!(m.should_save(33));
    // A part of nothing, with no metrics: nothing to save.
    let e = m
        .save(33, Composite::new(), SaveOptions::default())
        .unwrap_err();
    assert_eq!(e.kind(), ckpt_manager::ErrorKind::InvalidArgument, "{e}");
    // The retry of step 33 gets fresh names.
    assert!(m
        .save(
            33,
            Composite::new().bytes_owned("b", vec![1]),
            SaveOptions::default()
        )
        .unwrap());
    assert_eq!(m.all_steps(), vec![30, 33]);
    m.delete(30).unwrap();
    assert_eq!(m.all_steps(), vec![33]);
    let r = m.restore(None).unwrap();
    assert_eq!(r.bytes("b").unwrap(), &[1]);
    m.close().unwrap();
    // Opened again with the same coordinator: a second manager's names do not meet the first's.
    let m = open();
    assert_eq!(m.all_steps(), vec![33]);
    // A read-only manager does not coordinate.
    let ro = CheckpointManager::builder(dir.path().to_str().unwrap())
        .read_only(true)
        .coordinator(Arc::clone(&c))
        .build()
        .unwrap();
    assert_eq!(ro.process(), None);
    drop(m);
}
