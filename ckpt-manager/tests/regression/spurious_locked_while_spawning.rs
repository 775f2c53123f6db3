//! Issue 11, item 5: a writer opened right after the previous writer of the root was closed got
//! `Locked` when another thread of the process was spawning a child at that moment: the child,
//! between `fork` and `exec`, held a copy of the root's `flock` descriptor. The lock is now a
//! record lock, which a child never inherits.

use ckpt_manager::{CheckpointManager, Composite, SaveOptions};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[test]
fn reopening_a_closed_root_while_another_thread_spawns_children_is_never_locked() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().to_str().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let spawners: Vec<_> = (0..2)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut spawned = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let mut child = std::process::Command::new("true").spawn().unwrap();
                    child.wait().unwrap();
                    spawned += 1;
                }
                spawned
            })
        })
        .collect();
    let mut failures = Vec::new();
    for i in 0..300u64 {
        match CheckpointManager::builder(root.as_str())
            .enable_async_checkpointing(false)
            .build()
        {
            Ok(mut m) => {
                if i % 50 == 0 {
                    m.save(
                        i + 1,
                        Composite::new().json_value("s", json!(i)),
                        SaveOptions::default(),
                    )
                    .unwrap();
                }
                m.close().unwrap();
            }
            Err(e) => failures.push(format!("round {i}: {e}")),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let spawned: u32 = spawners.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(spawned > 0, "the spawning threads ran");
    assert!(
        failures.is_empty(),
        "{} of 300 reopenings failed while {spawned} children were spawned: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
}
