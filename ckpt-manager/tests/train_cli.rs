//! Issue 16, the `train` example's command line, on the real program (its `main.rs` run in a
//! child process, see `train_child`): a closed stdout (`train … | head -3`) stops the progress
//! lines but not the training, which saves to the end and exits 0; `--save-every 0` and
//! `--max-to-keep 0` say "must be at least 1"; a root holding steps named in another format
//! (`ckpt_20`, written with a config's `step_prefix`) and none in the run's is refused, naming
//! the format found and what to pass, unless `--ignore-other-steps`.

// Not every helper is used here (`lines_of`).
#[allow(dead_code)]
mod train_child;

#[allow(dead_code)]
#[path = "../examples/train/main.rs"]
mod train;
// The example's modules name each other as `crate::data` etc.
use train::{checkpoint, data, distributed, model, optim, rng, trainer};

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;
use train_child::{finish, spawn_train};

/// In the child process: runs `train` (see `train_child`).
#[test]
fn child_runs_the_train_program() {
    train_child::run_if_child(train::run_main);
}

/// The committed steps of the root at `root` read with `step_prefix`.
fn steps(root: &Path, step_prefix: Option<&str>) -> Vec<u64> {
    let mut b = ckpt_manager::CheckpointManager::builder(root.to_str().unwrap()).read_only(true);
    if let Some(p) = step_prefix {
        b = b.step_prefix(p);
    }
    b.build().unwrap().all_steps()
}

/// Runs `train` with `args` to the end; returns its exit status code, stdout and stderr.
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let child = spawn_train(args);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_stops_the_progress_lines_not_the_training() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let mut child = spawn_train(&[
        "--dir",
        root.to_str().unwrap(),
        "--steps",
        "1000",
        "--save-every",
        "10",
        "--max-to-keep",
        "2",
    ]);
    // `| head -3`: read up to train's third line, then close the pipe.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let mut seen = Vec::new();
    while stdout.read_line(&mut line).unwrap() > 0 {
        let done = line.starts_with("step ");
        seen.push(std::mem::take(&mut line));
        if done {
            break;
        }
    }
    assert!(seen.iter().any(|l| l.contains("data: ")), "{seen:?}");
    drop(stdout);
    let (status, err) = finish(child, Duration::from_secs(600));
    assert!(status.success(), "{status:?}: {err}");
    assert!(!err.contains("Broken pipe"), "{err}");
    // It noticed (so the pipe really was closed while it trained), said so once, and went on.
    assert_eq!(
        err.matches("stdout was closed (broken pipe)").count(),
        1,
        "{err}"
    );
    // The newest two and those retention keeps (every 250th, the best).
    let kept = steps(&root, None);
    assert!(
        kept.ends_with(&[990, 1000]),
        "trained and saved to the end: {kept:?}"
    );
}

#[test]
fn count_flags_of_0_say_must_be_at_least_1() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    for flag in ["--save-every", "--max-to-keep"] {
        let (code, out, err) = run(&["--dir", root.to_str().unwrap(), flag, "0"]);
        assert_eq!(code, Some(2), "{flag}: {err}");
        assert!(
            err.contains(&format!("invalid value '0' for '{flag}"))
                && err.contains("must be at least 1"),
            "{flag}: {err}"
        );
        assert!(!err.contains("18446744073709551615"), "{err}");
        assert!(!out.contains("step "), "{out}");
    }
    assert!(!root.exists(), "nothing created");
}

#[test]
fn a_root_of_steps_in_another_name_format_is_refused_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let root_arg = root.to_str().unwrap();
    let config = dir.path().join("manager.toml");
    std::fs::write(&config, "step_prefix = \"ckpt\"\n").unwrap();
    let config_arg = config.to_str().unwrap();
    let train = |extra: &[&str]| {
        let mut args = vec![
            "--dir",
            root_arg,
            "--save-every",
            "10",
            "--max-to-keep",
            "5",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let (code, _, err) = train(&["--steps", "20", "--config", config_arg]);
    assert_eq!(code, Some(0), "{err}");
    // A fresh run saves its first step too.
    assert_eq!(steps(&root, Some("ckpt")), [1, 10, 20]);

    // Without the config: refused, naming what it found and what to pass; nothing written.
    let names = |r: &Path| {
        let mut n: Vec<String> = std::fs::read_dir(r)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    };
    let before = names(&root);
    let (code, out, err) = train(&["--steps", "40"]);
    assert_eq!(code, Some(1), "{out}{err}");
    for needle in [
        "ckpt_1, ckpt_10, ckpt_20",
        "none named as this run names them (100)",
        "step_prefix = \"ckpt\"",
        "--config",
        "--ignore-other-steps",
    ] {
        assert!(err.contains(needle), "{err:?} lacks {needle:?}");
    }
    assert!(!out.contains("starting from scratch"), "{out}");
    assert_eq!(names(&root), before, "nothing written");

    // With the config it resumes from them.
    let (code, out, err) = train(&["--steps", "30", "--config", config_arg]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("resumed from step 20"), "{out}");
    assert_eq!(steps(&root, Some("ckpt")), [1, 10, 20, 30]);

    // --ignore-other-steps: a fresh run beside them.
    let (code, out, err) = train(&["--steps", "20", "--ignore-other-steps"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("starting from scratch"), "{out}");
    assert_eq!(steps(&root, None), [1, 10, 20]);
    assert_eq!(steps(&root, Some("ckpt")), [1, 10, 20, 30]);
}

#[test]
fn a_live_writer_on_a_local_root_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    // A live writer: this process holds the root's lock.
    let _writer = ckpt_manager::CheckpointManager::builder(root.to_str().unwrap())
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let (code, _, err) = run(&["--dir", root.to_str().unwrap(), "--steps", "20"]);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("Locked") || err.contains("locked"), "{err}");
    // Not the 45 s wait for an object store's lease (a local lock is the kernel's: it goes
    // with a dead holder at once, so waiting cannot help a live one). A loose bound: the
    // refusal itself takes well under a second.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}: {err}",
        started.elapsed()
    );
    assert!(
        !err.contains("waiting for the root's other writer"),
        "{err}"
    );
}
