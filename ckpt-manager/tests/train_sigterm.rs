//! Preemption of the main job (issue 3): SIGTERM sent to a running `train` makes it save the
//! current step, print `preempted: saved step S` and exit 0; the next run resumes from S.
//!
//! The program under test is the `train` example's own `main.rs` (with all its modules), compiled
//! into this test and run in a child process: this test binary re-runs itself with only the
//! `child_runs_the_train_program` test selected and the example's command line in an environment
//! variable. That needs no separately built example binary and no cargo call inside a test.

mod train_child;

#[allow(dead_code)]
#[path = "../examples/train/main.rs"]
mod train;
// The example's modules name each other as `crate::data` etc.
use train::{checkpoint, data, distributed, model, optim, rng, trainer};

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use train_child::{finish, lines_of, spawn_train};

/// In the child process: runs `train` (see `train_child`).
#[test]
fn child_runs_the_train_program() {
    train_child::run_if_child(train::run_main);
}

fn latest_step(root: &Path) -> Option<u64> {
    ckpt_manager::CheckpointManager::builder(root.to_str().unwrap())
        .read_only(true)
        .build()
        .unwrap()
        .latest_step()
}

#[test]
fn sigterm_saves_the_current_step_exits_0_and_a_rerun_resumes_there() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let root_arg = root.to_str().unwrap();

    // A run far too long to finish, saving every 25 steps.
    let mut child = spawn_train(&[
        "--dir",
        root_arg,
        "--steps",
        "100000000",
        "--save-every",
        "25",
    ]);
    let pid = child.id();
    let rx = lines_of(&mut child);
    let mut out = Vec::new();
    // Training is under way once two checkpoints have been saved.
    let deadline = Instant::now() + Duration::from_secs(120);
    while out
        .iter()
        .filter(|l: &&String| l.contains("saved step"))
        .count()
        < 2
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => out.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "train did not save twice in time; output so far:\n{}",
                    out.join("\n")
                );
            }
        }
    }
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -TERM {pid} failed");
    let (status, err) = finish(child, Duration::from_secs(120));
    out.extend(rx.iter());
    let text = out.join("\n");
    assert!(
        status.success(),
        "exit status {status:?}\nstdout:\n{text}\nstderr:\n{err}"
    );

    let saved: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("preempted: saved step "))
        .unwrap_or_else(|| panic!("no 'preempted: saved step' line in\n{text}"))
        .trim()
        .parse()
        .unwrap();
    // Saves so far: step 1 (the initial save) and 25; the signal came after the second.
    assert!(saved >= 25, "{text}");
    assert_eq!(latest_step(&root), Some(saved), "{text}");

    // The next run resumes from the saved step and trains on from there.
    let target = saved + 7;
    let rerun = spawn_train(&["--dir", root_arg, "--steps", &target.to_string()]);
    let out = rerun.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("resumed from step {saved} ")),
        "{text}"
    );
    assert!(!text.contains("preempted"), "{text}");
    assert_eq!(latest_step(&root), Some(target));
}
