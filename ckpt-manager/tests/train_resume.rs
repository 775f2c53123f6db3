//! Resume is exact (issue 2, "What it must show" 4): the `train` example's loop, trained N steps
//! straight, and trained K < N steps, its manager dropped, then resumed from the checkpoint and
//! continued to N, ends with bit-identical parameters, Adam moments and training state.
//!
//! The example's modules are compiled into this test as they are, so the test runs the very code
//! `cargo run --example train` runs.

#[allow(dead_code)]
#[path = "../examples/train/checkpoint.rs"]
mod checkpoint;
#[allow(dead_code)]
#[path = "../examples/train/data.rs"]
mod data;
#[allow(dead_code)]
#[path = "../examples/train/model.rs"]
mod model;
#[allow(dead_code)]
#[path = "../examples/train/optim.rs"]
mod optim;
#[allow(dead_code)]
#[path = "../examples/train/rng.rs"]
mod rng;
#[allow(dead_code)]
#[path = "../examples/train/trainer.rs"]
mod trainer;

use checkpoint::RunConfig;
use data::Data;
use model::Params;
use std::path::Path;
use trainer::Trainer;

/// The step both runs train to: a bit over three epochs of 40 batches.
const N: u64 = 130;

fn config(dir: &Path, steps: u64, max_to_keep: u64) -> RunConfig {
    RunConfig {
        dir: dir.to_str().expect("temp dir is UTF-8").to_string(),
        steps,
        save_every: 10,
        max_to_keep,
        keep_period: None,
        seed: 7,
    }
}

/// Panics naming the first tensor element whose f32 bit pattern differs between `a` and `b`.
fn assert_same_bits(a: &Params, b: &Params, what: &str) {
    for ((name, x), (_, y)) in a.tensors().into_iter().zip(b.tensors()) {
        assert_eq!(x.shape(), y.shape(), "{what} {name}: shapes differ");
        let differing: Vec<_> = x
            .indexed_iter()
            .zip(y.iter())
            .filter(|((_, u), v)| u.to_bits() != v.to_bits())
            .map(|((i, u), v)| (i, *u, *v))
            .collect();
        if let Some((i, u, v)) = differing.first() {
            panic!(
                "{what} {name}: {} of {} elements differ; first at {i:?}: {u:e} vs {v:e}",
                differing.len(),
                x.len()
            );
        }
    }
}

fn assert_bitwise_identical(a: &Trainer<'_>, b: &Trainer<'_>) {
    assert_same_bits(&a.params, &b.params, "parameter");
    assert_same_bits(&a.adam.m, &b.adam.m, "Adam first moment");
    assert_same_bits(&a.adam.v, &b.adam.v, "Adam second moment");
    assert_eq!(a.state, b.state, "training states differ");
}

/// Trains `steps` in a fresh root and returns the final model.
fn straight<'d>(data: &'d Data, steps: u64) -> Trainer<'d> {
    let dir = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    let outcome = checkpoint::run(&config(dir.path(), steps, 100), data, &mut out).unwrap();
    assert_eq!(outcome.resumed_from, None);
    assert_eq!(outcome.trainer.state.step, steps);
    outcome.trainer
}

#[test]
fn resumed_run_is_bitwise_identical_to_a_straight_run() {
    let data = Data::wine_quality();
    let reference = straight(&data, N);

    // K = 57: mid-epoch (epoch 1, position 17 × 32) and not a save interval, so the last save
    // is the forced final one.
    let k = 57;
    let dir = tempfile::tempdir().unwrap();
    let first = checkpoint::run(&config(dir.path(), k, 100), &data, &mut Vec::new()).unwrap();
    assert_eq!(first.trainer.state.step, k);
    assert_eq!(
        (first.trainer.state.epoch, first.trainer.state.position),
        (1, 17 * 32)
    );
    drop(first); // the manager was closed inside `run`; drop the model too

    let mut out = Vec::new();
    let second = checkpoint::run(&config(dir.path(), N, 100), &data, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(second.resumed_from, Some(k), "{text}");
    assert!(text.contains("resumed from step 57"), "{text}");
    assert_bitwise_identical(&reference, &second.trainer);

    // The checkpoint of step N restores to the same model in both roots' sense: a third run
    // finds nothing to do and holds exactly the reference.
    let mut out = Vec::new();
    let third = checkpoint::run(&config(dir.path(), N, 100), &data, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(third.resumed_from, Some(N));
    assert!(text.contains("nothing to do"), "{text}");
    assert_bitwise_identical(&reference, &third.trainer);
}

#[test]
fn resume_after_a_crash_recomputes_the_lost_steps_exactly() {
    let data = Data::wine_quality();
    let reference = straight(&data, N);

    // Train to step 75 with best-by-val_loss retention keeping 2, and "crash": no final save,
    // the manager and model dropped. Steps 71..=75 are lost; the latest kept step is at most 70 (saves
    // are at step 1, Orbax's initial save, and every 10 steps).
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), N, 2);
    let latest = {
        let mut mngr = checkpoint::open_manager(&cfg).unwrap();
        let (mut t, resumed) = checkpoint::resume_or_init(&mngr, &data, cfg.seed).unwrap();
        assert_eq!(resumed, None);
        checkpoint::train_until(&mut mngr, &mut t, 75, false, &mut Vec::new()).unwrap();
        assert_eq!(t.state.step, 75);
        let latest = mngr.latest_step().unwrap();
        assert!(latest <= 70, "latest {latest}");
        assert!(mngr.all_steps().len() <= 2, "{:?}", mngr.all_steps());
        latest
    };

    let resumed = checkpoint::run(&cfg, &data, &mut Vec::new()).unwrap();
    assert_eq!(resumed.resumed_from, Some(latest));
    assert_bitwise_identical(&reference, &resumed.trainer);
}

#[test]
fn the_seed_decides_the_run() {
    let data = Data::wine_quality();
    let a = Trainer::new(&data, 1);
    let b = Trainer::new(&data, 1);
    let c = Trainer::new(&data, 2);
    assert_same_bits(&a.params, &b.params, "same seed");
    assert_ne!(a.params, c.params);
    assert_ne!(a.state.epoch_rng_state, c.state.epoch_rng_state);
}
