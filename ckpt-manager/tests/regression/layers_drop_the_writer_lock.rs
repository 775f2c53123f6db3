//! Issue 12: no store layer forwarded `lock_for_writing`, so a manager opened over any layer
//! (counting, fault, latency, deferred-sync, checksum recording or verifying) ran with no writer
//! lock of its local root: a second writer was not refused. (With the writer lease of issue 11
//! such a manager fell back to a lease through the layer, which hangs behind a closed gate.)
//! Every layer is now a `StoreLayer` (ckpt-storage), which forwards every call it does not
//! override, `lock_for_writing` included; this test opens a writer through each layer the crate
//! ships, the retry layer too, and stacked.

use ckpt_manager::core::ErrorKind;
use ckpt_manager::storage::{
    ChecksumManifest, CountingStore, DeferredSyncStore, FaultStore, LatencyStore, LocalStore,
    RecordingStore, RetryPolicy, RetryStore, Store, VerifyingStore,
};
use ckpt_manager::CheckpointManager;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn every_shipped_layer_keeps_the_local_writer_lock() {
    let d = tempfile::tempdir().unwrap();
    let local: Arc<dyn Store> = Arc::new(LocalStore::open(d.path()).unwrap());
    let layers: Vec<(&str, Arc<dyn Store>)> = vec![
        ("counting", Arc::new(CountingStore::new(Arc::clone(&local)))),
        ("fault", Arc::new(FaultStore::new(Arc::clone(&local)))),
        (
            "latency",
            Arc::new(LatencyStore::new(Arc::clone(&local), Duration::ZERO)),
        ),
        (
            "deferred sync",
            Arc::new(DeferredSyncStore::new(Arc::clone(&local))),
        ),
        (
            "recording",
            Arc::new(RecordingStore::new(Arc::clone(&local), "", "item")),
        ),
        (
            "retry",
            Arc::new(RetryStore::new(Arc::clone(&local), RetryPolicy::default())),
        ),
        (
            "retry over counting over fault",
            Arc::new(RetryStore::new(
                Arc::new(CountingStore::new(Arc::new(FaultStore::new(Arc::clone(
                    &local,
                ))))),
                RetryPolicy::default(),
            )),
        ),
        (
            "verifying",
            Arc::new(VerifyingStore::new(
                Arc::clone(&local),
                "",
                ChecksumManifest::new(),
            )),
        ),
    ];
    for (name, layered) in layers {
        let first = CheckpointManager::builder_with_store(Arc::clone(&layered))
            .build()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let second = CheckpointManager::builder_with_store(Arc::clone(&local)).build();
        match second {
            Err(e) => assert_eq!(e.kind(), ErrorKind::Locked, "{name}: {e}"),
            Ok(_) => {
                panic!("{name}: a second writer opened while the first (through the layer) lives")
            }
        }
        let third = CheckpointManager::builder_with_store(Arc::clone(&layered)).build();
        assert!(
            third.is_err_and(|e| e.kind() == ErrorKind::Locked),
            "{name}: a second writer through the same layer is refused too"
        );
        drop(first);
        assert!(
            !d.path().join(".ckpt-writer.lease").exists(),
            "{name}: no writer lease on a local root"
        );
        CheckpointManager::builder_with_store(Arc::clone(&local))
            .build()
            .unwrap_or_else(|e| panic!("{name}: the lock is released with the manager: {e}"));
    }
}
