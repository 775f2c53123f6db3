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
#[path = "../examples/train/distributed.rs"]
mod distributed;
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
        best_n: 1,
        keep_period: None,
        seed: 7,
        config_file: None,
        preemption: None,
        resume_from: None,
        ignore_other_steps: false,
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

    // Train to step 75 keeping the newest 2 and the best 1 by val_loss, and "crash": no final
    // save, the manager and model dropped. Steps 71..=75 are lost; the newest kept step is 70
    // (saves are every 10 steps, and the newest always survives).
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), N, 2);
    let latest = {
        let mut mngr = checkpoint::open_manager(&cfg).unwrap();
        let (mut t, resumed) = checkpoint::resume_or_init(&mngr, &data, cfg.seed).unwrap();
        assert_eq!(resumed, None);
        let stopped =
            checkpoint::train_until(&mut mngr, &mut t, 75, false, None, &mut Vec::new()).unwrap();
        assert_eq!(stopped, None);
        assert_eq!(t.state.step, 75);
        let latest = mngr.latest_step().unwrap();
        assert_eq!(latest, 70);
        assert!(mngr.all_steps().len() <= 3, "{:?}", mngr.all_steps());
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

/// The composed retention: after a run, the root holds exactly the newest `max_to_keep`, the best
/// `best_n` by val_loss and the multiples of `keep_period` — so the best step survives, and a
/// rerun resumes from the newest.
#[test]
fn retention_keeps_the_newest_the_best_and_every_keep_period_th_step() {
    let data = Data::wine_quality();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), N, 2);
    cfg.best_n = 2;
    cfg.keep_period = Some(50);
    let outcome = checkpoint::run(&cfg, &data, &mut Vec::new()).unwrap();
    assert_eq!(outcome.preempted, None);

    let reader = ckpt_manager::CheckpointManager::builder(cfg.dir.clone())
        .read_only(true)
        .build()
        .unwrap();
    let kept = reader.all_steps();
    // Every step saved: 10, 20, ..., 130 (N is a multiple of 10), each with its val_loss.
    // Recompute the expected survivors from the metrics of a straight run with nothing deleted.
    let all_dir = tempfile::tempdir().unwrap();
    checkpoint::run(&config(all_dir.path(), N, 100), &data, &mut Vec::new()).unwrap();
    let all = ckpt_manager::CheckpointManager::builder(all_dir.path().to_str().unwrap())
        .read_only(true)
        .build()
        .unwrap();
    let mut by_loss: Vec<(f64, u64)> = all
        .checkpoints()
        .iter()
        .map(|c| {
            let loss = c.metrics.as_ref().unwrap()["val_loss"].as_f64().unwrap();
            (loss, c.step)
        })
        .collect();
    // Lower loss first; on a tie the later step ranks better (spec §4.2).
    by_loss.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
    let steps = all.all_steps();
    let mut expected: Vec<u64> = steps[steps.len() - 2..].to_vec();
    expected.extend(by_loss.iter().take(2).map(|&(_, s)| s));
    expected.extend(steps.iter().copied().filter(|s| s % 50 == 0));
    expected.sort_unstable();
    expected.dedup();
    assert_eq!(kept, expected);
    assert_eq!(reader.latest_step(), Some(N));
    assert!(
        kept.contains(&by_loss[0].1),
        "the best step {} survives",
        by_loss[0].1
    );
}

/// `--config FILE` overrides the options built from the command line: here a TOML file that
/// replaces the retention with `LatestN(1)` and names the steps `ckpt_<step>`; the save interval
/// stays the command line's.
#[test]
fn a_config_file_overrides_the_options() {
    let data = Data::wine_quality();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("manager.toml");
    std::fs::write(
        &file,
        "step_prefix = \"ckpt\"\n\n[preservation_policy]\ntype = \"LatestN\"\nn = 1\n",
    )
    .unwrap();
    let mut cfg = config(&dir.path().join("root"), 35, 5);
    cfg.config_file = Some(file.clone());
    checkpoint::run(&cfg, &data, &mut Vec::new()).unwrap();
    let names: Vec<String> = std::fs::read_dir(dir.path().join("root"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ckpt_"))
        .collect();
    assert_eq!(names, ["ckpt_35"]);
    // A rerun with the same config resumes from it.
    cfg.steps = 40;
    let out = checkpoint::run(&cfg, &data, &mut Vec::new()).unwrap();
    assert_eq!(out.resumed_from, Some(35));

    // A bad config stops the run before anything is written, naming the file.
    std::fs::write(&file, "max_to_kepe = 1\n").unwrap();
    let e = checkpoint::run(&cfg, &data, &mut Vec::new()).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("max_to_kepe") && text.contains("manager.toml"),
        "{text}"
    );

    // max_to_keep = 0 would leave nothing to resume from: refused, naming the file, before
    // anything is saved or deleted.
    let listing = || {
        let mut v: Vec<String> = std::fs::read_dir(dir.path().join("root"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let before = listing();
    std::fs::write(&file, "max_to_keep = 0\n").unwrap();
    cfg.steps = 60;
    let e = checkpoint::run(&cfg, &data, &mut Vec::new()).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("max_to_keep = 0") && text.contains("manager.toml"),
        "{text}"
    );
    assert_eq!(before, listing());
    // The same through a policy that keeps nothing.
    std::fs::write(&file, "[preservation_policy]\ntype = \"LatestN\"\nn = 0\n").unwrap();
    let e = checkpoint::run(&cfg, &data, &mut Vec::new()).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("newest checkpoint") && text.contains("manager.toml"),
        "{text}"
    );
    assert_eq!(before, listing());
}
