//! The main job in several processes (issue 15): `train --processes 4` on a real etcd server
//! (`CKPT_TEST_ETCD`), on local disk and on S3 (the local moto server), is stopped by a SIGTERM
//! sent to its launcher (which forwards it to its 4 processes: every one saves the same step and
//! stops, exit 0); the job
//! resumes in 2 processes started the way any launcher starts them (`RANK`, `WORLD_SIZE`,
//! `CKPT_ETCD_ENDPOINTS`), each reading its half of each parameter's rows from the 4 shards;
//! then in 3 processes, of which one alone gets a SIGTERM (all 3 save the same step and stop);
//! then a single process (no job) resumes from the 3-process checkpoint. At every stage the
//! parameters, Adam's moments and the training state are bit for bit those of a single process
//! trained on the same data without interruption: the gradient is the same fixed-order sum of 8
//! micro-batch gradients whatever the process count (see examples/train/distributed.rs).
//!
//! The program under test is the `train` example's own `main.rs`, run in child processes the
//! way tests/train_sigterm.rs runs it (this test binary re-runs itself as the child; the
//! launcher of `--processes` starts copies of that child). Nothing waits on a timer: the test
//! waits for lines and for processes to end (with a limit that only catches hangs).
//!
//! Run: `cargo xtask etcd-server` and `cargo xtask s3-server` (export what they print), then
//! `cargo test -p ckpt-manager --features etcd --test train_multiprocess` (or `cargo xtask ci`).

mod s3_common;
mod train_child;

#[allow(dead_code)]
#[path = "../examples/train/main.rs"]
mod train;
// The example's modules name each other as `crate::data` etc.
use train::{checkpoint, data, distributed, model, optim, rng, trainer};

use ckpt_manager::CheckpointManager;
use model::Params;
use std::path::Path;
use std::time::{Duration, Instant};
use train_child::{finish, lines_of, spawn_train, spawn_train_env};
use trainer::{TrainState, Trainer};

/// The longest a child may run before the test counts it as hung.
const HANG: Duration = Duration::from_secs(600);

/// In the child process: runs `train` (see `train_child`).
#[test]
fn child_runs_the_train_program() {
    train_child::run_if_child(train::run_main);
}

/// The etcd server of the tests; `None` (skipped, with a message) when `CKPT_TEST_ETCD` is unset
/// outside CI (under `CI=true` that fails the test).
fn etcd_endpoint(test: &str) -> Option<String> {
    match std::env::var("CKPT_TEST_ETCD") {
        Ok(url) if !url.trim().is_empty() => {
            assert!(
                url.contains("://127.") || url.contains("://localhost"),
                "CKPT_TEST_ETCD={url:?} is not a loopback address"
            );
            Some(url)
        }
        _ if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
            panic!("CKPT_TEST_ETCD is not set under CI=true: run under `cargo xtask ci`")
        }
        _ => {
            eprintln!(
                "SKIPPED {test}: CKPT_TEST_ETCD is not set (start `cargo xtask etcd-server` and \
                 export what it prints)"
            );
            None
        }
    }
}

/// The run of `train --dir dir --steps steps --save-every 10` with the program's defaults, as
/// a config for an in-process run.
fn config(dir: &str, steps: u64) -> checkpoint::RunConfig {
    checkpoint::RunConfig {
        dir: dir.to_string(),
        steps,
        save_every: 10,
        max_to_keep: 3,
        best_n: 1,
        keep_period: Some(250),
        seed: 0,
        config_file: None,
        preemption: None,
        resume_from: None,
        ignore_other_steps: false,
    }
}

/// Every value's bits, tensor by tensor.
fn bits(p: &Params) -> Vec<(&'static str, Vec<u32>)> {
    p.tensors()
        .into_iter()
        .map(|(name, t)| (name, t.iter().map(|v| v.to_bits()).collect()))
        .collect()
}

/// A trained model as a checkpoint holds it (or a trainer has it): parameters, moments, state.
#[derive(Debug, PartialEq)]
struct Model {
    params: Vec<(&'static str, Vec<u32>)>,
    mu: Vec<(&'static str, Vec<u32>)>,
    nu: Vec<(&'static str, Vec<u32>)>,
    state: TrainState,
}

fn model_of(t: &Trainer<'_>) -> Model {
    Model {
        params: bits(&t.params),
        mu: bits(&t.adam.m),
        nu: bits(&t.adam.v),
        state: t.state.clone(),
    }
}

/// Step `step` of the sharded root `root`, read by one process (whole arrays).
fn sharded_step(root: &str, step: u64, data: &data::Data) -> Model {
    let m = CheckpointManager::builder(root)
        .read_only(true)
        .build()
        .unwrap();
    let like = Trainer::new(data, 0).params;
    let params = distributed::read_params_whole(&m, step, &like).unwrap();
    let r = m
        .restore_items(Some(step), &["train_state", "opt_state"])
        .unwrap();
    let opt = r.json_value("opt_state").unwrap();
    Model {
        params: bits(&params),
        mu: bits(&distributed::moments_from_json(&opt["mu"], &like, "mu").unwrap()),
        nu: bits(&distributed::moments_from_json(&opt["nu"], &like, "nu").unwrap()),
        state: r.json("train_state").unwrap(),
    }
}

/// The items of `step` in `root`.
fn items(root: &str, step: u64) -> Vec<String> {
    CheckpointManager::builder(root)
        .read_only(true)
        .build()
        .unwrap()
        .item_names(step)
        .unwrap()
}

/// Waits for `child` to end and returns its stdout (lines already read in `so_far`, the rest
/// from `rx`), asserting exit status 0.
fn succeeded(
    child: std::process::Child,
    rx: std::sync::mpsc::Receiver<String>,
    mut so_far: Vec<String>,
    what: &str,
) -> String {
    let (status, err) = finish(child, HANG);
    so_far.extend(rx.iter());
    let text = so_far.join("\n");
    assert!(
        status.success(),
        "{what}: exit status {status:?}\nstdout:\n{text}\nstderr:\n{err}"
    );
    text
}

#[test]
fn four_processes_stopped_by_sigterm_resume_on_2_then_3_then_1_bit_for_bit_as_one_process() {
    let test =
        "four_processes_stopped_by_sigterm_resume_on_2_then_3_then_1_bit_for_bit_as_one_process";
    let Some(endpoint) = etcd_endpoint(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("job");
    stop_resume_and_compare(&endpoint, root.to_str().unwrap(), dir.path());
}

#[test]
fn on_s3_four_processes_stopped_by_sigterm_resume_on_2_then_3_then_1_bit_for_bit_as_one_process() {
    let test =
        "on_s3_four_processes_stopped_by_sigterm_resume_on_2_then_3_then_1_bit_for_bit_as_one_process";
    let Some(endpoint) = etcd_endpoint(test) else {
        return;
    };
    let Some((root, _)) = s3_common::fresh_root("train-mp") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    stop_resume_and_compare(&endpoint, &root, dir.path());
}

/// The stages of the tests above on the root `root_arg` (a path or an `s3://` URI), with the
/// single-process references under `tmp`.
fn stop_resume_and_compare(endpoint: &str, root_arg: &str, tmp: &Path) {
    let endpoint = endpoint.to_string();
    let started = Instant::now();
    let data = data::Data::wine_quality();
    let root = root_arg;

    // 1. `train --processes 4`, far too long to finish; SIGTERM to the launcher once two
    //    checkpoints are saved.
    let mut launcher = spawn_train(&[
        "--dir",
        root_arg,
        "--steps",
        "100000000",
        "--save-every",
        "10",
        "--processes",
        "4",
        "--etcd",
        &endpoint,
    ]);
    let rx = lines_of(&mut launcher);
    let mut out: Vec<String> = Vec::new();
    while out.iter().filter(|l| l.contains("saved step")).count() < 2 {
        match rx.recv_timeout(HANG) {
            Ok(line) => out.push(line),
            Err(_) => {
                let _ = launcher.kill();
                panic!(
                    "train --processes 4 did not save twice; output:\n{}",
                    out.join("\n")
                );
            }
        }
    }
    let pid = i32::try_from(launcher.id()).unwrap();
    // SAFETY: kill(2) of a child process of this test, with a valid signal number.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let text = succeeded(launcher, rx, out, "train --processes 4");
    let saved: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("preempted: saved step "))
        .unwrap_or_else(|| panic!("no 'preempted: saved step' line in\n{text}"))
        .trim()
        .parse()
        .unwrap();
    // Every process stopped at the same step, having saved it.
    for rank in 1..4 {
        let line = format!("process {rank} of 4: stopped by preemption, saved at step {saved}");
        assert!(text.contains(&line), "no {line:?} in\n{text}");
    }
    let mut want_items: Vec<String> = ["w1", "b1", "w2", "b2"]
        .iter()
        .flat_map(|p| (0..4).map(move |i| format!("params.{p}.shard-{i}")))
        .chain(["metrics", "opt_state", "train_state"].map(String::from))
        .collect();
    want_items.sort();
    assert_eq!(items(root, saved), want_items);
    eprintln!(
        "{root}: 4 processes preempted at step {saved} after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The same data in one process, uninterrupted to `saved`: the same bits.
    let single = tmp.join("single_to_saved");
    let single = single.to_str().unwrap();
    let reference = checkpoint::run(&config(single, saved), &data, &mut Vec::new()).unwrap();
    assert_eq!(
        sharded_step(root, saved, &data),
        model_of(&reference.trainer),
        "step {saved}: 4 processes vs 1"
    );

    // 2. The job resumes in 2 processes started as a launcher starts them.
    let target = saved + 35;
    let args = [
        "--dir",
        root_arg,
        "--steps",
        &target.to_string(),
        "--save-every",
        "10",
    ];
    let resumed = Instant::now();
    let workers: Vec<_> = (0..2)
        .map(|rank| {
            spawn_train_env(
                &args,
                &[
                    ("RANK", rank.to_string()),
                    ("WORLD_SIZE", "2".to_string()),
                    ("CKPT_ETCD_ENDPOINTS", endpoint.clone()),
                ],
            )
        })
        .collect();
    let texts: Vec<String> = workers
        .into_iter()
        .enumerate()
        .map(|(rank, mut c)| {
            let rx = lines_of(&mut c);
            succeeded(c, rx, Vec::new(), &format!("process {rank} of 2"))
        })
        .collect();
    assert!(
        texts[0].contains(&format!("resumed from step {saved} ")),
        "{}",
        texts[0]
    );
    assert!(
        texts[1].contains(&format!("process 1 of 2: done at step {target}")),
        "{}",
        texts[1]
    );
    let mut want_items: Vec<String> = ["w1", "b1", "w2", "b2"]
        .iter()
        .flat_map(|p| (0..2).map(move |i| format!("params.{p}.shard-{i}")))
        .chain(["metrics", "opt_state", "train_state"].map(String::from))
        .collect();
    want_items.sort();
    assert_eq!(items(root, target), want_items);
    eprintln!(
        "2 processes resumed from {saved} and trained to {target} in {:.1} s",
        resumed.elapsed().as_secs_f64()
    );

    // The same data in one process, uninterrupted to `target`: the same bits.
    let single = tmp.join("single");
    let single = single.to_str().unwrap();
    let reference = checkpoint::run(&config(single, target), &data, &mut Vec::new()).unwrap();
    assert_eq!(
        sharded_step(root, target, &data),
        model_of(&reference.trainer),
        "step {target}: 4 then 2 processes vs 1"
    );

    // 3. The job resumes in 3 processes (not a divisor of the 8 micro-batches), far too long
    //    to finish; a SIGTERM reaching process 2 alone (as when a scheduler preempts one node)
    //    makes all 3 save the same step and stop.
    let worker_env = |rank: usize| {
        vec![
            ("RANK", rank.to_string()),
            ("WORLD_SIZE", "3".to_string()),
            ("CKPT_ETCD_ENDPOINTS", endpoint.clone()),
        ]
    };
    let far = [
        "--dir",
        root_arg,
        "--steps",
        "100000000",
        "--save-every",
        "10",
    ];
    let mut workers: Vec<_> = (0..3)
        .map(|rank| spawn_train_env(&far, &worker_env(rank)))
        .collect();
    let rxs: Vec<_> = workers.iter_mut().map(lines_of).collect();
    let mut out0: Vec<String> = Vec::new();
    while out0.iter().filter(|l| l.contains("saved step")).count() < 2 {
        match rxs[0].recv_timeout(HANG) {
            Ok(line) => out0.push(line),
            Err(_) => {
                for w in &mut workers {
                    let _ = w.kill();
                }
                panic!(
                    "3 processes did not save twice; output:\n{}",
                    out0.join("\n")
                );
            }
        }
    }
    let pid = i32::try_from(workers[2].id()).unwrap();
    // SAFETY: kill(2) of a child process of this test, with a valid signal number.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let mut texts = Vec::new();
    for (rank, (w, rx)) in workers.into_iter().zip(rxs).enumerate() {
        let so_far = if rank == 0 {
            std::mem::take(&mut out0)
        } else {
            Vec::new()
        };
        texts.push(succeeded(w, rx, so_far, &format!("process {rank} of 3")));
    }
    let stopped: u64 = texts[0]
        .lines()
        .find_map(|l| l.strip_prefix("preempted: saved step "))
        .unwrap_or_else(|| panic!("no 'preempted: saved step' line in\n{}", texts[0]))
        .trim()
        .parse()
        .unwrap();
    assert!(stopped > target, "{}", texts[0]);
    eprintln!(
        "3 processes resumed from {target}; process 2 got a SIGTERM; all stopped at {stopped}"
    );
    for (rank, text) in texts.iter().enumerate().skip(1) {
        let line = format!("process {rank} of 3: stopped by preemption, saved at step {stopped}");
        assert!(text.contains(&line), "no {line:?} in\n{text}");
    }
    // The uninterrupted single process, continued to that step (resuming a single process is
    // bit-exact: tests/train_resume.rs).
    let reference = checkpoint::run(&config(single, stopped), &data, &mut Vec::new()).unwrap();
    assert_eq!(
        sharded_step(root, stopped, &data),
        model_of(&reference.trainer),
        "step {stopped}: 4, 2, then 3 processes vs 1"
    );

    // 4. One process (no job) resumes from the 3-process checkpoint, reading whole arrays,
    //    and goes on exactly as the single process does.
    let last = stopped + 12;
    let one = checkpoint::run(&config(root, last), &data, &mut Vec::new()).unwrap();
    assert_eq!(one.resumed_from, Some(stopped));
    let reference = checkpoint::run(&config(single, last), &data, &mut Vec::new()).unwrap();
    assert_eq!(
        model_of(&one.trainer),
        model_of(&reference.trainer),
        "step {last}: 4, 2, 3, then 1 process vs 1"
    );
    eprintln!("whole test {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn bad_process_options_are_usage_errors_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("r");
    let root = root.to_str().unwrap();
    let none = || vec![("CKPT_ETCD_ENDPOINTS", String::new())];
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec!["--processes", "9"], none(), "9 processes: give 1 to 8"),
        (vec!["--processes", "0"], none(), "0 processes: give 1 to 8"),
        (vec!["--processes", "2"], none(), "needs an etcd server"),
        (
            vec![],
            vec![("RANK", "1".to_string())],
            "RANK and WORLD_SIZE must be set together",
        ),
        (
            vec![],
            vec![
                ("RANK", "2".to_string()),
                ("WORLD_SIZE", "2".to_string()),
                ("CKPT_ETCD_ENDPOINTS", "http://127.0.0.1:1".to_string()),
            ],
            "RANK=2 is not below WORLD_SIZE=2",
        ),
        (
            vec!["--processes", "4"],
            vec![
                ("RANK", "0".to_string()),
                ("WORLD_SIZE", "2".to_string()),
                ("CKPT_ETCD_ENDPOINTS", "http://127.0.0.1:1".to_string()),
            ],
            "--processes 4 but WORLD_SIZE=2",
        ),
    ];
    for (extra, env, want) in cases {
        let mut args = vec!["--dir", root, "--steps", "5"];
        args.extend(&extra);
        let out = spawn_train_env(&args, &env).wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
        assert!(err.contains(want), "{args:?} {env:?}: {err}");
    }
    // Nothing was created.
    assert!(!Path::new(root).exists());
}
