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
