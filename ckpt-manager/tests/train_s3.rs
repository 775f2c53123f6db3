//! The main job on S3 (issue 5): `train --dir s3://…` against the local S3 server (see
//! `s3_common`), killed with SIGKILL while it saves, resumes from the latest committed step; then
//! `ckpt cp` brings the root to local disk and `ckpt verify` passes on the copy.
//!
//! The program under test is the `train` example's own `main.rs`, run in a child process the
//! way tests/train_sigterm.rs runs it (this test binary re-runs itself as the child).

mod s3_common;

mod train_child;

#[allow(dead_code)]
#[path = "../examples/train/main.rs"]
mod train;
// The example's modules name each other as `crate::data` etc.
use train::{checkpoint, data, distributed, model, optim, rng, trainer};

use std::process::Command;
use std::time::{Duration, Instant};
use train_child::{finish, lines_of, spawn_train};

/// In the child process: runs `train` (see `train_child`).
#[test]
fn child_runs_the_train_program() {
    train_child::run_if_child(train::run_main);
}

fn latest_step(root: &str) -> Option<u64> {
    ckpt_manager::CheckpointManager::builder(root)
        .read_only(true)
        .build()
        .unwrap()
        .latest_step()
}

fn ckpt(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn sigkill_mid_save_on_s3_resumes_from_latest_committed_then_cp_and_verify() {
    // The kill must land inside a save: some of the next step's objects written, not its
    // commit file. Saves run every step, but how long a step trains varies with the machine's
    // load, so a few delays are tried, each run on a fresh root, until one lands mid-save.
    let mut tried = Vec::new();
    let (uri, latest, uncommitted) = loop {
        let delay = kill_delay_ms(tried.len());
        let Some((uri, config)) = s3_common::fresh_root("train") else {
            return;
        };
        let (latest, uncommitted) = run_and_kill(&uri, &config, delay);
        eprintln!(
            "SIGKILL {delay} ms after the 4th save: latest committed {latest}; \
             uncommitted objects {uncommitted:?}"
        );
        tried.push(delay);
        if !uncommitted.is_empty() {
            break (uri, latest, uncommitted);
        }
        assert!(
            tried.len() < 8,
            "no SIGKILL landed inside a save (delays tried: {tried:?} ms)"
        );
    };
    // What the kill left half-written belongs to steps after the latest committed one (and is
    // not listed: `latest_step` ignored it).
    assert!(uncommitted
        .iter()
        .all(|f| f.split('/').next().and_then(|d| d.parse::<u64>().ok()) > Some(latest)));

    // The rerun resumes from the latest committed step and trains on.
    let target = latest + 4;
    let rerun = spawn_train(&[
        "--dir",
        &uri,
        "--steps",
        &target.to_string(),
        "--save-every",
        "3",
    ]);
    let done = rerun.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(
        text.contains(&format!("resumed from step {latest} ")),
        "{text}"
    );
    assert_eq!(latest_step(&uri), Some(target));

    // `ckpt cp` brings the root to local disk; `ckpt verify` passes on the copy.
    let d = tempfile::tempdir().unwrap();
    let local = d.path().join("copy");
    let local = local.to_str().unwrap();
    let (ok, report) = ckpt(&["cp", &uri, local]);
    assert!(ok, "cp s3 -> local failed: {report}");
    let (ok, report) = ckpt(&["verify", local]);
    assert!(ok, "verify of the local copy failed: {report}");
    let on_s3 = ckpt_manager::CheckpointManager::builder(uri.as_str())
        .read_only(true)
        .build()
        .unwrap()
        .all_steps();
    let copied = ckpt_manager::CheckpointManager::builder(local)
        .read_only(true)
        .build()
        .unwrap()
        .all_steps();
    assert_eq!(copied, on_s3);
    assert_eq!(latest_step(local), Some(target));
}

/// Runs `train --dir URI` saving every step, SIGKILLs it `delay_ms` after its 4th `saved step`
/// line, and returns the latest committed step and the objects of uncommitted step directories.
/// Checks that every listed step verifies.
fn run_and_kill(
    uri: &str,
    config: &ckpt_manager::storage::S3Config,
    delay_ms: u64,
) -> (u64, Vec<String>) {
    let mut child = spawn_train(&["--dir", uri, "--steps", "100000000", "--save-every", "1"]);
    let rx = lines_of(&mut child);
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    while out
        .iter()
        .filter(|l: &&String| l.contains("saved step"))
        .count()
        < 4
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => out.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "train did not save 4 times in time; output so far:\n{}",
                    out.join("\n")
                );
            }
        }
    }
    std::thread::sleep(Duration::from_millis(delay_ms));
    // SIGKILL: std's `Child::kill`.
    child.kill().unwrap();
    let (status, _err) = finish(child, Duration::from_secs(60));
    assert!(!status.success());
    let text = out.join("\n");
    let latest =
        latest_step(uri).unwrap_or_else(|| panic!("no committed step after the kill\n{text}"));
    // Every listed step is complete: its checksums good.
    let (ok, report) = ckpt(&["verify", uri]);
    assert!(ok, "verify after SIGKILL failed: {report}");
    let s3 = s3_common::store(config);
    let files = s3.list_recursive("").unwrap();
    let uncommitted = files
        .iter()
        .filter(|f| {
            let d = f.split('/').next().unwrap_or("");
            d.parse::<u64>().is_ok() && !files.contains(&format!("{d}/commit_success.txt"))
        })
        .cloned()
        .collect();
    (latest, uncommitted)
}

/// Milliseconds between the 4th `saved step` line and the SIGKILL, for attempt `n`
/// (`CKPT_TEST_KILL_DELAY_MS` for the first attempt when set).
fn kill_delay_ms(n: usize) -> u64 {
    const DELAYS: [u64; 8] = [100, 150, 60, 200, 120, 80, 250, 40];
    if n == 0 {
        if let Some(d) = std::env::var("CKPT_TEST_KILL_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            return d;
        }
    }
    DELAYS[n % DELAYS.len()]
}
