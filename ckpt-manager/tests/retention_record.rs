//! The per-save bookkeeping made cheap for large roots (issue 6): the retention decision from the
//! policies' keep flags, `last_retention` computed only when asked (and still exact after
//! deletions and reloads), `steps_to_delete`, and `should_save` looking at the save in flight
//! without copying the listing (and leaving no trace of it).

use ckpt_manager::storage::{Gate, LatencyStore, OpendalStore, Store};
use ckpt_manager::{BestMode, CheckpointManager, Composite, Metrics, SaveOptions};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

fn loss(v: f64) -> Metrics {
    let mut m = Metrics::new();
    m.insert("loss".into(), json!(v));
    m
}

fn save(m: &mut CheckpointManager, step: u64, l: f64) {
    assert!(m
        .save(
            step,
            Composite::new().json_value("s", json!(step)),
            SaveOptions::default().metrics(loss(l)),
        )
        .unwrap());
}

#[test]
fn last_retention_lists_every_step_the_run_saw_with_reasons() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().to_str().unwrap();
    let mut m = CheckpointManager::builder(root)
        .max_to_keep(2)
        .enable_async_checkpointing(false)
        .build()
        .unwrap();
    assert!(m.last_retention().is_empty());
    for s in 1..=3 {
        save(&mut m, s, 0.5);
    }
    assert_eq!(m.all_steps(), vec![2, 3]);
    let expect = |m: &CheckpointManager| {
        let r = m.last_retention();
        let got: Vec<(u64, bool)> = r.iter().map(|(s, v)| (*s, v.keep)).collect();
        assert_eq!(got, vec![(1, false), (2, true), (3, true)]);
        assert!(r[0].1.reason.contains("not among newest 2"), "{r:?}");
        assert!(r[2].1.reason.contains("newest 2"), "{r:?}");
    };
    // Step 1 was deleted by the run itself; asking later still gives its verdict.
    expect(&m);
    // Nor do a reload or a later delete change what the last run decided.
    m.reload().unwrap();
    expect(&m);
    m.delete(3).unwrap();
    expect(&m);
    save(&mut m, 4, 0.5);
    let r: Vec<(u64, bool)> = m
        .last_retention()
        .iter()
        .map(|(s, v)| (*s, v.keep))
        .collect();
    assert_eq!(r, vec![(2, true), (4, true)]);
}

#[test]
fn verdicts_are_computed_from_the_listing_of_the_run_after_a_reload() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().to_str().unwrap();
    let mut m = CheckpointManager::builder(root)
        .best_metric("loss", BestMode::Min)
        .max_to_keep(2)
        .enable_async_checkpointing(false)
        .build()
        .unwrap();
    save(&mut m, 1, 0.3);
    save(&mut m, 2, 0.1);
    save(&mut m, 3, 0.2);
    // The worst (step 1, loss 0.3) went. After a reload the last
    // run's verdicts are still about steps 1, 2, 3, computed lazily from what that run saw.
    m.reload().unwrap();
    let r = m.last_retention();
    let got: Vec<(u64, bool)> = r.iter().map(|(s, v)| (*s, v.keep)).collect();
    assert_eq!(got, vec![(1, false), (2, true), (3, true)]);
    assert!(r[1].1.reason.contains("rank 1"), "{r:?}");
}

#[test]
fn steps_to_delete_is_the_decision_without_deleting() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().to_str().unwrap();
    {
        let mut m = CheckpointManager::builder(root)
            .enable_async_checkpointing(false)
            .build()
            .unwrap();
        for s in 1..=5 {
            save(&mut m, s, s as f64);
        }
        assert!(m.steps_to_delete().is_empty());
    }
    let m = CheckpointManager::builder(root)
        .max_to_keep(2)
        .keep_period(2)
        .build()
        .unwrap();
    assert_eq!(m.steps_to_delete(), vec![1, 3]);
    assert_eq!(m.all_steps(), vec![1, 2, 3, 4, 5]);
    drop(m);
    let m = CheckpointManager::builder(root)
        .max_to_keep(2)
        .best_metric("loss", BestMode::Max)
        .build()
        .unwrap();
    assert_eq!(m.steps_to_delete(), vec![1, 2, 3]);
}

#[test]
fn should_save_sees_the_save_in_flight_and_leaves_no_trace_of_it() {
    let gate = Gate::closed();
    let inner: Arc<dyn Store> = Arc::new(OpendalStore::memory().unwrap());
    let store: Arc<dyn Store> = Arc::new(
        LatencyStore::new(inner, Duration::ZERO)
            .only_paths("8/s")
            .with_gate(gate.clone()),
    );
    let mut m = CheckpointManager::builder_with_store(store)
        .save_interval_steps(2)
        .build()
        .unwrap();
    save(&mut m, 2, 0.1);
    m.wait_until_finished().unwrap();
    save(&mut m, 8, 0.1);
    assert!(gate.wait_for_waiting(1, Duration::from_secs(20)));
    // Step 8 is in flight: nothing at or below it is saved; above it the policy decides.
    assert!(!m.should_save(8));
    assert!(!m.should_save(6));
    assert!(m.should_save(10));
    assert!(!m.should_save(11));
    // The step in flight was only lent to the decision: the listing is unchanged.
    assert_eq!(m.all_steps(), vec![2]);
    assert_eq!(m.checkpoints().len(), 1);
    gate.open();
    m.wait_until_finished().unwrap();
    assert_eq!(m.all_steps(), vec![2, 8]);
}
