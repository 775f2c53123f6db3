//! Issue 11, item 6: a clean-clone CI run failed because moto answered one ListObjectsV2 with a
//! 500 under load and ckpt passed it up as a failed operation. Object stores now come behind a
//! retry layer (`RetryStore`, put there by `ckpt_storage::open` for every object-store URI):
//! temporary errors are retried with backoff and jitter, bounded; a retried conditional create
//! whose first attempt did reach the store is recognised as the writer's own by content.

use ckpt_manager::core::{Error, ErrorKind, Result};
use ckpt_manager::handlers::{Tensor, TensorMap};
use ckpt_manager::storage::{
    CountingStore, FaultRule, FaultStore, OpendalStore, RetryPolicy, RetryStore, Store,
};
use ckpt_manager::{CheckpointManager, Composite, SaveOptions};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        max_elapsed: Duration::from_secs(30),
    }
}

fn params() -> TensorMap {
    let mut t = TensorMap::new();
    t.insert(
        "w".to_string(),
        Tensor::from_slice(vec![2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap(),
    );
    t
}

fn save_and_restore(store: Arc<dyn Store>, async_saves: bool) {
    let mut m = CheckpointManager::builder_with_store(Arc::clone(&store))
        .enable_async_checkpointing(async_saves)
        .max_to_keep(2)
        .build()
        .unwrap();
    for step in 1..=3u64 {
        let items = Composite::new()
            .json_value("state", json!({"step": step}))
            .bytes_owned("blob", vec![step as u8; 100_000])
            .tensors_owned("params", params());
        assert!(m.save(step, items, SaveOptions::default()).unwrap());
    }
    m.wait_until_finished().unwrap();
    assert_eq!(m.all_steps(), vec![2, 3]);
    let r = m.restore(Some(3)).unwrap();
    assert_eq!(r.json_value("state").unwrap(), &json!({"step": 3}));
    assert_eq!(r.bytes("blob").unwrap(), &vec![3u8; 100_000][..]);
    assert_eq!(r.tensors("params").unwrap(), &params());
    m.close().unwrap();
}

#[test]
fn every_operation_failing_once_with_a_temporary_error_still_saves_and_restores() {
    for async_saves in [false, true] {
        let memory: Arc<dyn Store> = Arc::new(OpendalStore::memory().unwrap());
        let fault = Arc::new(FaultStore::new(Arc::clone(&memory)));
        // Every odd-numbered operation fails, temporarily: each call's first attempt fails and
        // its retry (the next operation) goes through.
        for k in (1..20_000u64).step_by(2) {
            fault.add_rule(FaultRule::nth(k).temporary());
        }
        let counting = Arc::new(CountingStore::new(fault.clone()));
        let retry = Arc::new(RetryStore::new(counting.clone(), quick_retries()));
        save_and_restore(retry.clone(), async_saves);
        let injected = fault.faults_injected();
        assert!(injected > 20, "faults were injected: {injected}");
        assert_eq!(
            retry.retries(),
            injected,
            "one retry per injected fault (async {async_saves})"
        );
        assert_eq!(
            counting.counts().total(),
            fault.ops_seen(),
            "the counting layer below the retries sees every attempt"
        );
    }
}

#[test]
fn a_permanent_error_is_not_retried_and_a_temporary_one_gives_up_after_its_attempts() {
    let memory: Arc<dyn Store> = Arc::new(OpendalStore::memory().unwrap());
    let fault = Arc::new(FaultStore::new(Arc::clone(&memory)));
    let retry = RetryStore::new(fault.clone(), quick_retries());
    fault.add_rule(FaultRule::path("permanent"));
    let e = retry.write("permanent", b"x").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Storage, "{e}");
    assert_eq!(retry.retries(), 0, "a permanent error is returned at once");
    fault.add_rule(FaultRule::path("flaky").temporary());
    let e = retry.write("flaky", b"x").unwrap_err();
    assert!(e.is_temporary(), "{e}");
    assert!(e.to_string().contains("after 3 attempts"), "{e}");
    assert_eq!(retry.retries(), 2);
}

/// A store whose conditional creates reach the store but whose first answer is lost (a
/// temporary error after the write happened), as a timed-out request does.
#[derive(Debug)]
struct LostAnswers {
    inner: Arc<dyn Store>,
    lost: Mutex<Vec<String>>,
}

impl ckpt_manager::storage::StoreLayer for LostAnswers {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }
    fn write_if_absent(&self, path: &str, data: &[u8]) -> Result<()> {
        self.inner.write_if_absent(path, data)?;
        let mut lost = self.lost.lock().unwrap();
        if lost.iter().any(|p| p == path) {
            return Ok(());
        }
        lost.push(path.to_string());
        Err(Error::storage(format!("the answer to creating {path} was lost")).with_temporary(true))
    }
}

#[test]
fn a_retried_conditional_create_that_had_reached_the_store_counts_as_its_own() {
    let memory: Arc<dyn Store> = Arc::new(OpendalStore::memory().unwrap());
    let lossy = Arc::new(LostAnswers {
        inner: Arc::clone(&memory),
        lost: Mutex::new(Vec::new()),
    });
    let retry: Arc<dyn Store> = Arc::new(RetryStore::new(lossy.clone(), quick_retries()));
    // The writer lease, the step claim and the commit file are all conditional creates whose
    // first answer is lost; each retry finds the object there and must see it is its own.
    save_and_restore(Arc::clone(&retry), false);
    let lost = lossy.lost.lock().unwrap().clone();
    for must in [
        ".ckpt-writer.lease",
        "3/_CKPT_WRITER",
        "3/commit_success.txt",
    ] {
        assert!(
            lost.iter().any(|p| p == must),
            "{must} was retried: {lost:?}"
        );
    }
    let fresh = CheckpointManager::builder_with_store(memory)
        .read_only(true)
        .build()
        .unwrap();
    assert_eq!(fresh.all_steps(), vec![2, 3]);
}

/// Memory that says it is not local (as an object store), so the manager adds its retries.
#[derive(Debug)]
struct Remote(Arc<dyn Store>);

impl ckpt_manager::storage::StoreLayer for Remote {
    fn inner(&self) -> &dyn Store {
        self.0.as_ref()
    }
    fn capabilities(&self) -> ckpt_manager::storage::Capabilities {
        ckpt_manager::storage::Capabilities {
            local: false,
            ..self.0.capabilities()
        }
    }
}

/// Found by trying `ckpt ls s3://…` with the endpoint down: the error said "(after 10 attempts)
/// (after 7 attempts)": the manager put its retries over those of the store `open` made, and
/// each of its attempts was a whole round of the store's. Now a store that retries says so
/// (`Capabilities::retries`) and the manager adds none.
#[test]
fn retries_do_not_multiply_when_a_retrying_store_is_given_to_a_manager() {
    let memory: Arc<dyn Store> = Arc::new(OpendalStore::memory().unwrap());
    let fault = Arc::new(FaultStore::new(Arc::new(Remote(memory))));
    let retrying = Arc::new(RetryStore::new(fault.clone(), quick_retries()));
    assert!(retrying.capabilities().retries && !fault.capabilities().retries);
    let mut m = CheckpointManager::builder_with_store(retrying)
        .enable_async_checkpointing(false)
        .retry(Some(quick_retries()))
        .build()
        .unwrap();
    fault.add_rule(FaultRule::path("1.orbax-checkpoint-tmp/state").temporary());
    fault.add_rule(FaultRule::path("1/state").temporary());
    let before = fault.faults_injected();
    let e = m
        .save(
            1,
            Composite::new().json_value("state", json!({"a": 1})),
            SaveOptions::default(),
        )
        .unwrap_err();
    let attempts = fault.faults_injected() - before;
    assert_eq!(attempts, 3, "one round of 3 attempts, not 3 x 3: {e}");
    assert!(!e.to_string().contains("attempts) (after"), "{e}");
}
