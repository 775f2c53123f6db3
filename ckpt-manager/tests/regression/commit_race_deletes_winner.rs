//! Issue 11, item 1: two writers saved step 10 of one root at once (two managers, memory store
//! or S3). The loser got `AlreadyExists` and then its cleanup removed the step directory — the
//! winner's committed data on a store without rename — so the writer that got `Ok(true)` found
//! its step `NotFound` (28 of 30 rounds on memory, 10 of 10 on S3). Now each writer claims the
//! step before writing into it: the loser writes nothing there and removes nothing it did not
//! write, and the winner's step restores, with the winner's values.
//!
//! The managers run with the writer lease off (`writer_lease_ttl_secs(None)`), the only way two
//! managers can write one root at once now; with it on, the second is `Locked` (item 2).

use crate::s3_common;
use ckpt_manager::core::ErrorKind;
use ckpt_manager::storage::{OpendalStore, Store};
use ckpt_manager::{CheckpointManager, Composite, SaveOptions};
use serde_json::json;
use std::sync::{Arc, Barrier};

/// One round: two managers on `store` save step 10 at once with different values. Returns the
/// number of `Ok(true)`s and checks that the step restores with the winner's value.
fn race_once(store: Arc<dyn Store>, round: usize, async_saves: bool) {
    let barrier = Arc::new(Barrier::new(2));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let mut m = CheckpointManager::builder_with_store(store)
                    .writer_lease_ttl_secs(None)
                    .enable_async_checkpointing(async_saves)
                    .build()
                    .unwrap();
                let items = Composite::new()
                    .json_value("state", json!({"writer": w, "round": round}))
                    .bytes_owned("blob", vec![w as u8; 4096 + w]);
                barrier.wait();
                let saved = m
                    .save(10, items, SaveOptions::default())
                    .and_then(|s| m.wait_until_finished().map(|()| s));
                (w, saved)
            })
        })
        .collect();
    let results: Vec<_> = writers.into_iter().map(|h| h.join().unwrap()).collect();
    let winners: Vec<usize> = results
        .iter()
        .filter(|(_, r)| matches!(r, Ok(true)))
        .map(|(w, _)| *w)
        .collect();
    for (w, r) in &results {
        if let Err(e) = r {
            assert_eq!(
                e.kind(),
                ErrorKind::AlreadyExists,
                "round {round}: writer {w}'s failure is AlreadyExists: {e}"
            );
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "round {round}: exactly one writer gets Ok(true): {results:?}"
    );
    let winner = winners[0];
    let reader = CheckpointManager::builder_with_store(store)
        .read_only(true)
        .build()
        .unwrap();
    assert_eq!(reader.all_steps(), vec![10], "round {round}");
    let restored = reader.restore(Some(10)).unwrap_or_else(|e| {
        panic!("round {round}: the winner's (writer {winner}) step restores: {e}")
    });
    assert_eq!(
        restored.json_value("state").unwrap(),
        &json!({"writer": winner, "round": round}),
        "round {round}: the step holds the winner's values"
    );
    assert_eq!(
        restored.bytes("blob").unwrap(),
        &vec![winner as u8; 4096 + winner][..],
        "round {round}"
    );
}

#[test]
fn a_losing_committer_never_deletes_the_winners_step_on_memory() {
    for round in 0..100 {
        race_once(
            Arc::new(OpendalStore::memory().unwrap()),
            round,
            round % 2 == 1,
        );
    }
}

#[test]
fn a_losing_committer_never_deletes_the_winners_step_on_s3() {
    let Some((_, config)) = s3_common::fresh_root("race") else {
        return;
    };
    for round in 0..100 {
        let mut c = config.clone();
        c.prefix = format!("{}/r{round}", config.prefix);
        race_once(s3_common::store(&c), round, round % 2 == 1);
    }
}
